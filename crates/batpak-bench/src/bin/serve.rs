//! `batpak serve` under load on loopback, beside the embedded API and PostgreSQL doing
//! the same durable single-event appends in the same run:
//!
//! - embedded: `Store::append_raw` from 1, 16 and 64 threads (`SyncPolicy::Always`);
//! - HTTP: `POST /v1/events` from 1, 16 and 64 keep-alive connections of `wrk`
//!   (Debian's) to a server of a fresh store on 127.0.0.1;
//! - fan-out: 100 SSE subscribers receive every event one writer appends over HTTP;
//! - PostgreSQL (Debian's, started here in a temporary directory, `fsync=on`,
//!   `synchronous_commit=on`): `pgbench` with a one-row `INSERT` script at 1, 16 and
//!   64 connections over TCP on 127.0.0.1.
//!
//! Prints appends/s, p50 and p99 latency per row and the ratios the targets name:
//! HTTP at 64 connections against the embedded 16-thread rate, and against
//! PostgreSQL at 64 connections. Timed, multi-process and seconds long, so a plain
//! binary rather than criterion.
//!
//! `cargo run --release -p batpak-bench --bin serve [-- SECONDS [FANOUT_EVENTS]]`

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batpak::{AppendOptions, Coordinate, EventKind, RawPayload, Store};
use batpak_bench::postgres::{run, Postgres};
use batpak_bench::timing::Run;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PAYLOAD: &str = r#"{"order":1,"total":12.5,"currency":"EUR"}"#;
const ENTITIES: usize = 1_000;
const SUBSCRIBERS: usize = 100;

/// Runs `work(thread, i)` on `threads` threads for `seconds`; each call is one append.
fn load(
    threads: usize,
    seconds: Duration,
    work: impl Fn(usize, u64) -> Result<()> + Send + Sync + 'static,
) -> Result<Run> {
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (work, stop) = (Arc::clone(&work), Arc::clone(&stop));
            std::thread::spawn(move || -> Result<(u64, Vec<u64>)> {
                let mut latencies = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    work(t, i)?;
                    latencies.push(began.elapsed().as_micros() as u64);
                    i += 1;
                }
                Ok((i, latencies))
            })
        })
        .collect();
    std::thread::sleep(seconds);
    stop.store(true, Ordering::Relaxed);
    let mut parts = Vec::new();
    for h in handles {
        parts.push(h.join().map_err(|_| "a load thread panicked")??);
    }
    Ok(Run::merge(parts, started.elapsed()))
}

fn entity(thread: usize, i: u64) -> String {
    format!("order:{}", (thread as u64 * 7919 + i) % ENTITIES as u64)
}

fn embedded(dir: &Path, threads: usize, seconds: Duration) -> Result<Run> {
    let store = Arc::new(Store::open(dir)?);
    let s = Arc::clone(&store);
    let run = load(threads, seconds, move |t, i| {
        let coord = Coordinate::new(entity(t, i), "orders")?;
        s.append_raw(
            &coord,
            EventKind::custom(1, 1),
            RawPayload::json(PAYLOAD.as_bytes()),
            AppendOptions::default(),
        )?;
        Ok(())
    })?;
    drop(store);
    Ok(run)
}

/// A server of a fresh store in this process, on a runtime of its own.
struct Served {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn start(dir: &Path) -> Result<Served> {
        let store = Store::open(dir)?;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<SocketAddr>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let served = (|| -> Result<()> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let server = batpak_server::Server::builder(store)
                        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                        .await?;
                    let _ = addr_tx.send(Ok(server.local_addr()?));
                    server
                        .serve_until(async move {
                            let _ = stop_rx.await;
                        })
                        .await?;
                    Ok(())
                })
            })();
            if let Err(e) = served {
                eprintln!("the server failed: {e}");
                let _ = addr_tx.send(Err(e));
            }
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30))??;
        Ok(Served {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// The request `wrk` sends: one event, spread over the entities.
const WRK_SCRIPT: &str = r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/events", nil, '{"entity":"order:' .. (n % 1000) .. '","scope":"orders","kind":"1:1","payload":PAYLOAD}')
end
"#;

/// A duration as `wrk` prints it (`483.00us`, `1.28ms`, `2.00s`), in microseconds.
fn wrk_duration(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// `POST /v1/events` from `connections` keep-alive connections of `wrk` (an
/// event-loop client in C, as `pgbench` is for PostgreSQL: on two cores a client of
/// one thread per connection would measure the client). Checks afterwards that the
/// store holds every event wrk saw acknowledged.
fn http(dir: &Path, connections: usize, seconds: Duration) -> Result<Run> {
    let served = Served::start(dir)?;
    let script = dir.with_extension("lua");
    std::fs::write(&script, WRK_SCRIPT.replace("PAYLOAD", PAYLOAD))?;
    let out = run(
        Command::new("wrk")
            .args(["-t", &connections.min(2).to_string()])
            .args(["-c", &connections.to_string()])
            .args(["-d", &format!("{}s", seconds.as_secs().max(1))])
            .arg("--latency")
            .arg("-s")
            .arg(&script)
            .arg(format!("http://{}", served.addr)),
        "wrk (apt-get install wrk)",
    )?;
    if out.contains("Non-2xx") {
        return Err(format!("some appends were refused:\n{out}").into());
    }
    let requests: u64 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.to_string())
        })
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no request count in wrk's output:\n{out}"))?;
    let rate: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|r| r.trim().parse().ok())
        .ok_or_else(|| format!("no rate in wrk's output:\n{out}"))?;
    let percentile = |p: &str| -> Result<f64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .and_then(|d| wrk_duration(d.trim()))
            .ok_or_else(|| format!("no {p} latency in wrk's output:\n{out}").into())
    };
    let (p50, p99) = (percentile("50%")?, percentile("99%")?);
    let stats = agent()
        .get(format!("http://{}/v1/stats", served.addr))
        .call()?
        .into_body()
        .read_to_string()?;
    let events: u64 = stats
        .split("\"events\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .ok_or("no event count in /v1/stats")?;
    if events < requests {
        return Err(
            format!("wrk saw {requests} appends acknowledged, the store holds {events}").into(),
        );
    }
    drop(served);
    Ok(Run {
        ops: requests,
        elapsed: Duration::from_secs_f64(requests as f64 / rate),
        p50_us: p50,
        p99_us: p99,
    })
}

/// 100 subscribers receive every one of `events` appends; deliveries per second.
fn fanout(dir: &Path, events: u64) -> Result<(f64, Duration)> {
    let served = Served::start(dir)?;
    let base = format!("http://{}", served.addr);
    let ready = Arc::new(std::sync::Barrier::new(SUBSCRIBERS + 1));
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let (base, ready) = (base.clone(), Arc::clone(&ready));
            std::thread::spawn(move || -> Result<Instant> {
                let response = agent().get(format!("{base}/v1/subscribe?from=1")).call()?;
                ready.wait();
                let mut lines = BufReader::new(response.into_body().into_reader());
                let mut seen = 0;
                let mut line = String::new();
                while seen < events {
                    line.clear();
                    if lines.read_line(&mut line)? == 0 {
                        return Err("the stream ended early".into());
                    }
                    if line.starts_with("id: ") {
                        seen += 1;
                    }
                }
                Ok(Instant::now())
            })
        })
        .collect();
    ready.wait();
    let started = Instant::now();
    let writer = agent();
    let mut sent = 0;
    while sent < events {
        let n = (events - sent).min(100);
        let items: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"entity":"{}","scope":"orders","kind":"1:1","payload":{PAYLOAD}}}"#,
                    entity(0, sent + i)
                )
            })
            .collect();
        let body = format!(r#"{{"events":[{}]}}"#, items.join(","));
        let response = writer
            .post(format!("{base}/v1/batches"))
            .header("content-type", "application/json")
            .send(body)?;
        let _ = response.into_body().read_to_vec()?;
        sent += n;
    }
    let mut last = started;
    for s in subscribers {
        last = last.max(s.join().map_err(|_| "a subscriber panicked")??);
    }
    let took = last - started;
    drop(served);
    Ok((
        (events * SUBSCRIBERS as u64) as f64 / took.as_secs_f64(),
        took,
    ))
}

fn pgbench(pg: &Postgres, work: &Path, clients: usize, seconds: Duration) -> Result<Run> {
    let script = work.join("insert.sql");
    std::fs::write(
        &script,
        format!(
            "\\set e random(0, {})\nINSERT INTO events (entity, payload) VALUES ('order:' || :e, '{PAYLOAD}');\n",
            ENTITIES - 1
        ),
    )?;
    let logs = work.join(format!("log-{clients}"));
    std::fs::create_dir_all(&logs)?;
    let out = run(
        pg.client(Path::new("pgbench"))
            .arg("-n")
            .arg("-f")
            .arg(&script)
            .args([
                "-c",
                &clients.to_string(),
                "-j",
                &clients.min(2).to_string(),
            ])
            .args(["-T", &seconds.as_secs().max(1).to_string(), "-l"])
            .arg(format!("--log-prefix={}/pgbench", logs.display()))
            .arg("postgres"),
        "pgbench",
    )?;
    let transactions: u64 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("number of transactions actually processed: ")
        })
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no transaction count in pgbench's output:\n{out}"))?;
    let tps: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench's output:\n{out}"))?;
    let mut latencies_us = Vec::new();
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|t| t.parse().ok()) {
                latencies_us.push(us);
            }
        }
    }
    Ok(Run::from_latencies(
        transactions,
        Duration::from_secs_f64(transactions as f64 / tps),
        latencies_us,
    ))
}

fn row(name: &str, run: &Run) {
    println!(
        "| {name:<34} | {:>10.0} | {:>8.2} | {:>8.2} |",
        run.rate(),
        run.p50_us / 1e3,
        run.p99_us / 1e3
    );
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = Duration::from_secs(args.first().map_or(Ok(5), |s| s.parse())?);
    let fanout_events: u64 = args.get(1).map_or(Ok(2_000), |s| s.parse())?;
    let base = std::env::var_os("BATPAK_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let work = tempfile::Builder::new()
        .prefix("batpak-serve-bench")
        .tempdir_in(base)?;
    let fresh = |name: &str| work.path().join(name);
    // `BATPAK_BENCH_ONLY=http` runs only the HTTP rows (for a profiler).
    if std::env::var("BATPAK_BENCH_ONLY").is_ok_and(|o| o == "http") {
        for connections in [1, 16, 64] {
            let r = http(&fresh(&format!("http-{connections}")), connections, seconds)?;
            row(&format!("HTTP, {connections} connections"), &r);
        }
        return Ok(());
    }

    println!(
        "durable single-event appends, {} s per row, payload {} bytes",
        seconds.as_secs(),
        PAYLOAD.len()
    );
    println!(
        "| {:<34} | {:>10} | {:>8} | {:>8} |",
        "", "appends/s", "p50 ms", "p99 ms"
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(36),
        "-".repeat(12),
        "-".repeat(10),
        "-".repeat(10)
    );
    let mut embedded_rates = Vec::new();
    for threads in [1, 16, 64] {
        let r = embedded(&fresh(&format!("embedded-{threads}")), threads, seconds)?;
        row(&format!("embedded, {threads} threads"), &r);
        embedded_rates.push(r.rate());
    }
    let mut http_rates = Vec::new();
    for connections in [1, 16, 64] {
        let r = http(&fresh(&format!("http-{connections}")), connections, seconds)?;
        row(&format!("HTTP, {connections} connections"), &r);
        http_rates.push(r.rate());
    }
    let pg = Postgres::start(&fresh("postgres"))?;
    let mut pg_rates = Vec::new();
    for clients in [1, 16, 64] {
        let r = pgbench(&pg, &fresh("postgres"), clients, seconds)?;
        row(&format!("PostgreSQL INSERT, {clients} connections"), &r);
        pg_rates.push(r.rate());
    }
    drop(pg);
    let (delivered, took) = fanout(&fresh("fanout"), fanout_events)?;
    println!();
    println!(
        "SSE fan-out: {SUBSCRIBERS} subscribers x {fanout_events} events delivered in {:.2} s: {delivered:.0} events/s",
        took.as_secs_f64()
    );
    println!();
    println!(
        "HTTP 64 connections / embedded 16 threads: {:.2} (target >= 0.50)",
        http_rates[2] / embedded_rates[1]
    );
    println!(
        "HTTP 64 connections / PostgreSQL 64 connections: {:.2}x (target > 1)",
        http_rates[2] / pg_rates[2]
    );
    println!(
        "HTTP / embedded at 1, 16, 64: {:.2}, {:.2}, {:.2}",
        http_rates[0] / embedded_rates[0],
        http_rates[1] / embedded_rates[1],
        http_rates[2] / embedded_rates[2]
    );
    Ok(())
}
