//! batpak's KurrentDB (EventStoreDB) gRPC listener on loopback, driven by the official
//! Rust client (`kurrentdb` 1.2.0), beside the embedded API and the HTTP API doing the
//! same work in the same run:
//!
//! - appends: durable single-event appends (one JSON event each, spread over 1,000
//!   entities) from 1 and 16 concurrent writers:
//!   - embedded: `Store::append_raw` from N threads on a fresh store;
//!   - HTTP: `POST /v1/events` from N threads, each with its own keep-alive `ureq`
//!     agent, to a `batpak_server::Server` of a fresh store on 127.0.0.1;
//!   - KurrentDB: `Client::append_to_stream` from N tokio tasks sharing one client
//!     (one HTTP/2 connection) to the same server's KurrentDB listener;
//! - reads: whole 100-event streams (100 entities of 100 events, filled once through
//!   the embedded store) from 1 and 16 concurrent readers: embedded `Store::stream`,
//!   HTTP `GET /v1/entities/{entity}/events?limit=100` (the body parsed as far as
//!   counting its events), KurrentDB `Client::read_stream` read to its end. Every
//!   read is checked to return all 100 events.
//!
//! The server runs on a tokio runtime of its own in this process; the load
//! generators run outside it (threads, or a second runtime for the KurrentDB
//! client). Each row runs for SECONDS after a warm-up of one second and prints
//! ops/s (appends/s; events/s for reads) with the p50 and p99 latency of one call
//! (one append; one 100-event read), then the KurrentDB/HTTP and
//! KurrentDB/embedded ratios.
//!
//! What this shows: what a KurrentDB application pays, over batpak's own APIs, for
//! keeping its client library and protocol. Appends are bounded by the store's
//! durable commit (concurrent appends share an fsync, in the store and in the
//! server's appender alike), so at one writer the three paths differ by their
//! per-request overhead only, and at 16 the question is whether the gRPC path lets
//! the server group appends as well as HTTP does.
//! Reads have no fsync to hide behind: they measure the cost of encoding each event
//! into protobuf and streaming it over HTTP/2 against the JSON page of the HTTP API
//! and the in-process copy of the embedded one. On a machine of few cores the
//! load generators share the CPU with the server, so the loopback rows are a lower
//! bound for a server with a machine to itself.
//!
//! `cargo run --release -p batpak-bench --bin kurrentdb [-- SECONDS]`

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batpak::{AppendOptions, Batch, Coordinate, EventKind, RawPayload, Store};
use batpak_bench::timing::Run;
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PAYLOAD: &str = r#"{"order":1,"total":12.5,"currency":"EUR"}"#;
/// Entities the appends are spread over.
const ENTITIES: u64 = 1_000;
/// Entities the reads read, each of `READ_EVENTS` events.
const READ_ENTITIES: u64 = 100;
const READ_EVENTS: u64 = 100;
const WARM_UP: Duration = Duration::from_secs(1);
const CONCURRENCY: [usize; 2] = [1, 16];
/// The KurrentDB scope of the server (where KurrentDB appends go).
const KURRENT_SCOPE: &str = "kurrentdb";

/// The payload as the KurrentDB client serializes it: the same JSON as `PAYLOAD`.
#[derive(Serialize)]
struct Order {
    order: u32,
    total: f64,
    currency: &'static str,
}

const ORDER: Order = Order {
    order: 1,
    total: 12.5,
    currency: "EUR",
};

/// An HTTP page, parsed only as far as counting its events.
#[derive(Deserialize)]
struct Page {
    events: Vec<serde::de::IgnoredAny>,
}

/// The phases of a load: warming up (nothing recorded), measuring, stopped.
const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

/// What one thread or task of a load records: the operations of the calls it began
/// while measuring, and their latencies.
#[derive(Default)]
struct Tally {
    ops: u64,
    latencies_us: Vec<u64>,
}

impl Tally {
    fn record(&mut self, began_in: u8, began: Instant, ops: u64) {
        if began_in == MEASURING {
            self.ops += ops;
            self.latencies_us.push(began.elapsed().as_micros() as u64);
        }
    }
}

/// Warms up, measures for `seconds`, stops; `start` marks the measurement's start.
fn phases(phase: &AtomicU8, seconds: Duration) -> Instant {
    std::thread::sleep(WARM_UP);
    phase.store(MEASURING, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(seconds);
    phase.store(STOPPED, Ordering::Relaxed);
    started
}

/// Runs `work(thread, i)` on `threads` threads: warm-up, then `seconds` measured.
/// Each call returns how many operations it did (1 append; the events read).
fn load(
    threads: usize,
    seconds: Duration,
    work: impl Fn(usize, u64) -> Result<u64> + Send + Sync + 'static,
) -> Result<Run> {
    let work = Arc::new(work);
    let phase = Arc::new(AtomicU8::new(WARMING));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (work, phase) = (Arc::clone(&work), Arc::clone(&phase));
            std::thread::spawn(move || -> Result<(u64, Vec<u64>)> {
                let mut tally = Tally::default();
                let mut i = 0;
                loop {
                    let began_in = phase.load(Ordering::Relaxed);
                    if began_in == STOPPED {
                        break;
                    }
                    let began = Instant::now();
                    let ops = work(t, i)?;
                    tally.record(began_in, began, ops);
                    i += 1;
                }
                Ok((tally.ops, tally.latencies_us))
            })
        })
        .collect();
    let started = phases(&phase, seconds);
    let mut parts = Vec::new();
    for h in handles {
        parts.push(h.join().map_err(|_| "a load thread panicked")??);
    }
    Ok(Run::merge(parts, started.elapsed()))
}

/// [`load`] as `tasks` tokio tasks on `runtime`.
fn load_async<F, W>(
    runtime: &tokio::runtime::Runtime,
    tasks: usize,
    seconds: Duration,
    work: W,
) -> Result<Run>
where
    W: Fn(usize, u64) -> F + Send + Sync + 'static,
    F: Future<Output = Result<u64>> + Send + 'static,
{
    let work = Arc::new(work);
    let phase = Arc::new(AtomicU8::new(WARMING));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (work, phase) = (Arc::clone(&work), Arc::clone(&phase));
            runtime.spawn(async move {
                let mut tally = Tally::default();
                let mut i = 0;
                loop {
                    let began_in = phase.load(Ordering::Relaxed);
                    if began_in == STOPPED {
                        break;
                    }
                    let began = Instant::now();
                    let ops = work(t, i).await?;
                    tally.record(began_in, began, ops);
                    i += 1;
                }
                Result::Ok((tally.ops, tally.latencies_us))
            })
        })
        .collect();
    let started = phases(&phase, seconds);
    let parts = runtime.block_on(async {
        let mut parts = Vec::new();
        for h in handles {
            parts.push(h.await.map_err(|e| format!("a load task failed: {e}"))??);
        }
        Result::Ok(parts)
    })?;
    Ok(Run::merge(parts, started.elapsed()))
}

/// The entity the `i`th append of `thread` goes to.
fn append_entity(thread: usize, i: u64) -> String {
    format!("order-{}", (thread as u64 * 7919 + i) % ENTITIES)
}

/// The entity the `i`th read of `thread` reads.
fn read_entity(thread: usize, i: u64) -> String {
    format!("order-{}", (thread as u64 * 37 + i) % READ_ENTITIES)
}

fn order_kind() -> EventKind {
    EventKind::custom(1, 1)
}

/// Checks that a read returned the whole stream.
fn whole(entity: &str, events: u64) -> Result<u64> {
    if events != READ_EVENTS {
        return Err(format!("{entity}: read {events} events, expected {READ_EVENTS}").into());
    }
    Ok(events)
}

/// A server of the store in `dir` (HTTP and KurrentDB gRPC) in this process, on a
/// runtime of its own.
struct Served {
    http: SocketAddr,
    kurrentdb: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Served {
    fn start(dir: &Path) -> Result<Served> {
        let store = Store::open(dir)?;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<(SocketAddr, SocketAddr)>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                let server = batpak_server::Server::builder(store)
                    .kurrentdb(loopback, KURRENT_SCOPE)
                    .bind(loopback)
                    .await?;
                let kurrentdb = server
                    .kurrentdb_addr()
                    .ok_or("the server has no KurrentDB listener")?;
                let _ = addr_tx.send((server.local_addr()?, kurrentdb));
                server
                    .serve_until(async move {
                        let _ = stop_rx.await;
                    })
                    .await?;
                Ok(())
            })
        });
        let Ok((http, kurrentdb)) = addr_rx.recv_timeout(Duration::from_secs(30)) else {
            // The thread ended without an address: its error says why.
            return Err(match thread.join() {
                Ok(Err(e)) => e,
                _ => "the server did not start".into(),
            });
        };
        Ok(Served {
            http,
            kurrentdb,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops the server; its error, if serving or closing the store failed.
    fn finish(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            None => Ok(()),
            Some(t) => t.join().map_err(|_| "the server thread panicked")?,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Err(e) = self.halt() {
            eprintln!("the server failed: {e}");
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A tokio runtime for the KurrentDB client, apart from the server's.
fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A client of the KurrentDB listener at `addr`.
fn kurrent_client(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
) -> Result<kurrentdb::Client> {
    let settings = format!("esdb://127.0.0.1:{}?tls=false", addr.port()).parse()?;
    kurrentdb::Client::with_runtime_handle(runtime.handle().clone(), settings)
        .map_err(|e| format!("the KurrentDB client: {e}").into())
}

fn embedded_appends(dir: &Path, threads: usize, seconds: Duration) -> Result<Run> {
    let store = Arc::new(Store::open(dir)?);
    let s = Arc::clone(&store);
    let run = load(threads, seconds, move |t, i| {
        let coord = Coordinate::new(append_entity(t, i), "orders")?;
        s.append_raw(
            &coord,
            order_kind(),
            RawPayload::json(PAYLOAD.as_bytes()),
            AppendOptions::default(),
        )?;
        Ok(1)
    })?;
    Arc::into_inner(store)
        .ok_or("the store is still shared")?
        .close()?;
    Ok(run)
}

fn http_appends(dir: &Path, threads: usize, seconds: Duration) -> Result<Run> {
    let served = Served::start(dir)?;
    let url = format!("http://{}/v1/events", served.http);
    let agents: Arc<Vec<ureq::Agent>> = Arc::new((0..threads).map(|_| agent()).collect());
    let run = load(threads, seconds, move |t, i| {
        let body = format!(
            r#"{{"entity":"{}","scope":"orders","kind":"1:1","payload":{PAYLOAD}}}"#,
            append_entity(t, i)
        );
        let response = agents[t]
            .post(&url)
            .header("content-type", "application/json")
            .send(body)?;
        let _ = response.into_body().read_to_vec()?;
        Ok(1)
    })?;
    served.finish()?;
    Ok(run)
}

fn kurrent_appends(dir: &Path, tasks: usize, seconds: Duration) -> Result<Run> {
    let served = Served::start(dir)?;
    let runtime = client_runtime()?;
    let client = kurrent_client(&runtime, served.kurrentdb)?;
    let run = load_async(&runtime, tasks, seconds, move |t, i| {
        let client = client.clone();
        async move {
            let event = kurrentdb::EventData::json("order-placed", &ORDER)?;
            client
                .append_to_stream(append_entity(t, i), &Default::default(), vec![event])
                .await?;
            Ok(1)
        }
    })?;
    drop(runtime);
    served.finish()?;
    Ok(run)
}

/// `READ_ENTITIES` entities of `READ_EVENTS` events each, one batch per entity, the
/// kind named as a KurrentDB client would name it.
fn fill(dir: &Path) -> Result<()> {
    let store = Store::open(dir)?;
    store.name_kind(order_kind(), "order-placed")?;
    let mut batch = Batch::with_capacity(READ_EVENTS as usize);
    for e in 0..READ_ENTITIES {
        batch.clear();
        let coord = Coordinate::new(format!("order-{e}"), "orders")?;
        for _ in 0..READ_EVENTS {
            batch.push_raw(
                &coord,
                order_kind(),
                RawPayload::json(PAYLOAD.as_bytes()),
                AppendOptions::default(),
            );
        }
        store.append_batch(&batch)?;
    }
    store.close()?;
    Ok(())
}

fn embedded_reads(dir: &Path, threads: usize, seconds: Duration) -> Result<Run> {
    let store = Arc::new(Store::open(dir)?);
    let s = Arc::clone(&store);
    let run = load(threads, seconds, move |t, i| {
        let entity = read_entity(t, i);
        let events = s.stream(&entity)?;
        whole(&entity, events.len() as u64)
    })?;
    Arc::into_inner(store)
        .ok_or("the store is still shared")?
        .close()?;
    Ok(run)
}

fn http_reads(served: &Served, threads: usize, seconds: Duration) -> Result<Run> {
    let base = format!("http://{}", served.http);
    let agents: Arc<Vec<ureq::Agent>> = Arc::new((0..threads).map(|_| agent()).collect());
    load(threads, seconds, move |t, i| {
        let entity = read_entity(t, i);
        let body = agents[t]
            .get(format!(
                "{base}/v1/entities/{entity}/events?limit={READ_EVENTS}"
            ))
            .call()?
            .into_body()
            .read_to_vec()?;
        let page: Page = serde_json::from_slice(&body)?;
        whole(&entity, page.events.len() as u64)
    })
}

fn kurrent_reads(served: &Served, tasks: usize, seconds: Duration) -> Result<Run> {
    let runtime = client_runtime()?;
    let client = kurrent_client(&runtime, served.kurrentdb)?;
    load_async(&runtime, tasks, seconds, move |t, i| {
        let client = client.clone();
        async move {
            let entity = read_entity(t, i);
            let mut stream = client
                .read_stream(entity.as_str(), &Default::default())
                .await?;
            let mut events = 0;
            while stream.next().await?.is_some() {
                events += 1;
            }
            whole(&entity, events)
        }
    })
}

fn header(ops: &str) {
    println!(
        "| {:<10} | {:>11} | {:>10} | {:>9} | {:>9} |",
        "path", "concurrency", ops, "p50 µs", "p99 µs"
    );
    println!(
        "|{}|{}|{}|{}|{}|",
        "-".repeat(12),
        "-".repeat(13),
        "-".repeat(12),
        "-".repeat(11),
        "-".repeat(11)
    );
}

fn row(path: &str, concurrency: usize, run: &Run) {
    println!(
        "| {path:<10} | {concurrency:>11} | {:>10.0} | {:>9.0} | {:>9.0} |",
        run.rate(),
        run.p50_us,
        run.p99_us
    );
}

/// The rows of one path at each concurrency: its rates, in `CONCURRENCY` order.
fn rows(path: &str, mut measure: impl FnMut(usize) -> Result<Run>) -> Result<Vec<f64>> {
    let mut rates = Vec::new();
    for n in CONCURRENCY {
        let run = measure(n)?;
        row(path, n, &run);
        rates.push(run.rate());
    }
    Ok(rates)
}

fn ratios(what: &str, kurrent: &[f64], http: &[f64], embedded: &[f64]) {
    for (i, n) in CONCURRENCY.iter().enumerate() {
        println!(
            "{what} at {n:>2}: KurrentDB/HTTP {:.3}, KurrentDB/embedded {:.3}",
            kurrent[i] / http[i],
            kurrent[i] / embedded[i]
        );
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = Duration::from_secs(args.first().map_or(Ok(5), |s| s.parse())?);
    let base = std::env::var_os("BATPAK_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let work = tempfile::Builder::new()
        .prefix("batpak-kurrentdb-bench")
        .tempdir_in(base)?;
    let fresh = |name: &str| work.path().join(name);

    println!(
        "durable single-event appends over {ENTITIES} entities, payload {} bytes, {} s per row after {} s of warm-up",
        PAYLOAD.len(),
        seconds.as_secs(),
        WARM_UP.as_secs()
    );
    header("appends/s");
    let embedded_a = rows("embedded", |n| {
        embedded_appends(&fresh(&format!("append-embedded-{n}")), n, seconds)
    })?;
    let http_a = rows("HTTP", |n| {
        http_appends(&fresh(&format!("append-http-{n}")), n, seconds)
    })?;
    let kurrent_a = rows("KurrentDB", |n| {
        kurrent_appends(&fresh(&format!("append-kurrentdb-{n}")), n, seconds)
    })?;

    println!();
    println!(
        "whole-stream reads of {READ_ENTITIES} entities of {READ_EVENTS} events; events/s, latency of one {READ_EVENTS}-event read"
    );
    header("events/s");
    let reads = fresh("reads");
    fill(&reads)?;
    let embedded_r = rows("embedded", |n| embedded_reads(&reads, n, seconds))?;
    let served = Served::start(&reads)?;
    let http_r = rows("HTTP", |n| http_reads(&served, n, seconds))?;
    let kurrent_r = rows("KurrentDB", |n| kurrent_reads(&served, n, seconds))?;
    served.finish()?;

    println!();
    ratios("appends", &kurrent_a, &http_a, &embedded_a);
    ratios("reads  ", &kurrent_r, &http_r, &embedded_r);
    Ok(())
}
