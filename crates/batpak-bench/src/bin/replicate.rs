//! Replication into PostgreSQL and NATS JetStream (Debian's, started here in
//! temporary directories), beside each engine's own baseline in the same run:
//!
//! - throughput: a store of N events (default 100,000) replicated by `Replicator`
//!   into an empty schema, against `COPY` of the same rows (every column, from CSV)
//!   into an identical table; and into an empty stream, against a plain publish loop
//!   of the same messages (subjects, ids, bodies; acknowledgements awaited per 1,000)
//!   into a stream of its own;
//! - lag under a steady load, for each sink: a writer appends durably at a fixed rate
//!   while the replicator follows; for every 10th event, the time from its append
//!   returning to the sink's position covering it (p50, p99).
//!
//! `cargo run --release -p batpak-bench --bin replicate [-- N RATE SECONDS]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, Batch, Coordinate, EventKind, ExportLine, RawPayload, Region, Store, SyncPolicy,
};
use batpak_bench::nats::Nats;
use batpak_bench::postgres::{run, Postgres};
use batpak_replicate::{JetStreamSink, PostgresSink, Replicator, Sink};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PAYLOAD: &str = r#"{"order":1,"total":12.5,"currency":"EUR"}"#;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn fill(store: &Store, n: u64) -> Result<()> {
    let mut written = 0;
    while written < n {
        let mut batch = Batch::new();
        for i in 0..1_000.min(n - written) {
            let coord = Coordinate::new(format!("order:{}", (written + i) % 1_000), "shop")?;
            batch.push_raw(
                &coord,
                EventKind::custom(1, 1),
                RawPayload::json(PAYLOAD.as_bytes()),
                AppendOptions::default(),
            );
        }
        store.append_batch(&batch)?;
        written += batch.len() as u64;
    }
    store.sync()?;
    Ok(())
}

/// One CSV field, quoted.
fn csv(value: Option<String>) -> String {
    match value {
        None => String::new(),
        Some(v) => format!("\"{}\"", v.replace('"', "\"\"")),
    }
}

/// The same rows the sink writes, as CSV for `COPY`.
fn rows_csv(store: &Store, path: &std::path::Path) -> Result<u64> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let all = Region::all().with_store_records().with_hidden();
    let mut after = 0;
    let mut rows = 0;
    loop {
        let events = store.query(&all, after, 10_000)?;
        let Some(last) = events.last() else { break };
        after = last.sequence;
        for e in &events {
            let l = ExportLine::from_event(e, store.kind_name(e.kind));
            let hex: String = e.payload.iter().map(|b| format!("{b:02x}")).collect();
            let fields = [
                Some(e.sequence.to_string()),
                Some(e.id.to_string()),
                Some(e.timestamp_ns.to_string()),
                Some(l.entity.clone()),
                Some(l.scope.clone()),
                Some(e.version.to_string()),
                Some(e.kind.to_string()),
                l.kind_name.clone(),
                Some(e.schema_version.to_string()),
                Some("json".into()),
                Some(format!("\\x{hex}")),
                l.payload.as_ref().map(|v| v.to_string()),
                e.causation.map(|c| c.to_string()),
                e.correlation.map(|c| c.to_string()),
                Some(serde_json::to_string(&l.metadata)?),
                Some(l.redacted.to_string()),
                l.salt.clone(),
                l.digest.map(|d| d.to_string()),
                l.idempotency.clone(),
                Some(l.flags.unwrap_or(0).to_string()),
                Some(e.prev_hash.to_string()),
                Some(e.event_hash().to_string()),
            ];
            let line: Vec<String> = fields.into_iter().map(csv).collect();
            writeln!(out, "{}", line.join(","))?;
            rows += 1;
        }
    }
    out.flush()?;
    Ok(rows)
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Appends durably into a fresh store at `dir` at `rate` per second for `seconds`
/// while a replicator follows into `sink`; prints the lag quantiles.
fn lag<S: Sink + 'static>(
    dir: &std::path::Path,
    sink: S,
    engine: &str,
    rt: &tokio::runtime::Runtime,
    rate: u64,
    seconds: u64,
) -> Result<()> {
    let live = Arc::new(Store::open(dir)?);
    let mut follower = Replicator::new(Arc::clone(&live), sink);
    let control = follower.control();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = rt.handle().clone();
    let following = std::thread::spawn(move || {
        handle.block_on(follower.run(async move {
            let _ = stop_rx.await;
        }))
    });
    let appended: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (appended, lags, done, control) = (
            Arc::clone(&appended),
            Arc::clone(&lags),
            Arc::clone(&done),
            control.clone(),
        );
        std::thread::spawn(move || {
            let mut next = 0;
            loop {
                let position = control.status().position;
                let now = Instant::now();
                {
                    let appended = appended
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    while next < appended.len() && appended[next].0 <= position {
                        lags.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((now - appended[next].1).as_secs_f64() * 1e3);
                        next += 1;
                    }
                    if done.load(Ordering::SeqCst) && next == appended.len() {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let due = started + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let r = live.append_raw(
            &Coordinate::new(format!("order:{}", i % 1_000), "shop")?,
            EventKind::custom(1, 1),
            RawPayload::json(PAYLOAD.as_bytes()),
            AppendOptions::default(),
        )?;
        if i.is_multiple_of(10) {
            appended
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((r.sequence, Instant::now()));
        }
        i += 1;
    }
    done.store(true, Ordering::SeqCst);
    watcher.join().map_err(|_| "the lag watcher panicked")?;
    let _ = stop_tx.send(());
    following.join().map_err(|_| "the follower panicked")??;
    let mut lags = lags
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    lags.sort_by(f64::total_cmp);
    println!();
    println!(
        "{engine}, steady load: {i} durable appends at {rate}/s for {seconds} s; lag from the append returning to the sink holding it: p50 {:.1} ms, p99 {:.1} ms (target p99 <= 1,000 ms)",
        quantile(&lags, 0.5),
        quantile(&lags, 0.99)
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.first().map_or(Ok(100_000), |s| s.parse())?;
    let rate: u64 = args.get(1).map_or(Ok(1_000), |s| s.parse())?;
    let seconds: u64 = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let base = std::env::var_os("BATPAK_BENCH_DIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let work = tempfile::Builder::new()
        .prefix("batpak-replicate-bench")
        .tempdir_in(base)?;
    let pg = Postgres::start(&work.path().join("postgres"))?;
    let rt = runtime()?;

    // Throughput.
    let store = Arc::new(
        Store::builder(work.path().join("store"))
            .sync_policy(SyncPolicy::Never)
            .open()?,
    );
    fill(&store, n)?;
    let events = store.frontier().visible;
    let started = Instant::now();
    let batch: usize = std::env::var("BATPAK_BENCH_BATCH")
        .map_or(Ok(batpak_replicate::DEFAULT_BATCH), |b| b.parse())?;
    let mut replicator =
        Replicator::new(Arc::clone(&store), PostgresSink::new(&pg.url(), "bench")?).batch(batch);
    rt.block_on(replicator.catch_up())?;
    let replicated = started.elapsed();
    let csv_path = work.path().join("rows.csv");
    let rows = rows_csv(&store, &csv_path)?;
    pg.psql("CREATE SCHEMA copy; CREATE TABLE copy.events (LIKE bench.events INCLUDING ALL)")?;
    let copy_started = Instant::now();
    run(
        pg.client(std::path::Path::new("psql"))
            .args([
                "-q",
                "-c",
                &format!(
                    "\\copy copy.events FROM '{}' WITH (FORMAT csv)",
                    csv_path.display()
                ),
            ])
            .arg("postgres"),
        "psql \\copy",
    )?;
    let copied = copy_started.elapsed();
    let rep_rate = events as f64 / replicated.as_secs_f64();
    let copy_rate = rows as f64 / copied.as_secs_f64();
    println!("{events} events into PostgreSQL (same table, indexes included):");
    println!("| | events/s | seconds |");
    println!("|---|---|---|");
    println!(
        "| batpak replicate (batches of {batch}, one transaction each) | {rep_rate:.0} | {:.2} |",
        replicated.as_secs_f64()
    );
    println!(
        "| PostgreSQL COPY of the same rows (one statement) | {copy_rate:.0} | {:.2} |",
        copied.as_secs_f64()
    );
    println!(
        "replicate / COPY: {:.2} (target >= 0.50)",
        rep_rate / copy_rate
    );
    drop(replicator);
    drop(store);

    lag(
        &work.path().join("live-postgres"),
        PostgresSink::new(&pg.url(), "live")?,
        "PostgreSQL",
        &rt,
        rate,
        seconds,
    )?;

    // JetStream: the replicator against a plain publish loop of the same messages.
    let nats = Nats::start(&work.path().join("nats"))?;
    let store = Arc::new(
        Store::builder(work.path().join("store"))
            .sync_policy(SyncPolicy::Never)
            .open()?,
    );
    let started = Instant::now();
    let mut replicator = Replicator::new(
        Arc::clone(&store),
        JetStreamSink::new(&nats.url(), "bench")?,
    )
    .batch(batch);
    rt.block_on(replicator.catch_up())?;
    let replicated = started.elapsed();
    let all = Region::all().with_store_records().with_hidden();
    let mut messages = Vec::new();
    let mut after = 0;
    loop {
        let page = store.query(&all, after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        for e in &page {
            let line = ExportLine::from_event(e, store.kind_name(e.kind));
            let subject = batpak_replicate::event_subject(
                "plain",
                e.coordinate.scope(),
                e.coordinate.entity(),
            );
            messages.push((subject, e.id.to_string(), serde_json::to_vec(&line)?));
        }
    }
    let published = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await?;
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "PLAIN".into(),
            subjects: vec!["batpak.plain.>".into()],
            ..Default::default()
        })
        .await?;
        let started = Instant::now();
        for chunk in messages.chunks(1_000) {
            let mut acks = Vec::with_capacity(chunk.len());
            for (subject, id, body) in chunk {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", id.as_str());
                acks.push(
                    js.publish_with_headers(subject.clone(), headers, body.clone().into())
                        .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(started.elapsed())
    })?;
    let rep_rate = events as f64 / replicated.as_secs_f64();
    let pub_rate = messages.len() as f64 / published.as_secs_f64();
    println!();
    println!("{events} events into NATS JetStream (file storage, one message each):");
    println!("| | events/s | seconds |");
    println!("|---|---|---|");
    println!(
        "| batpak replicate (batches of {batch}, each message chained to the one before) | {rep_rate:.0} | {:.2} |",
        replicated.as_secs_f64()
    );
    println!(
        "| plain JetStream publish loop of the same messages (acks per 1,000) | {pub_rate:.0} | {:.2} |",
        published.as_secs_f64()
    );
    println!("replicate / publish loop: {:.2}", rep_rate / pub_rate);
    drop(replicator);
    drop(store);
    lag(
        &work.path().join("live-nats"),
        JetStreamSink::new(&nats.url(), "live")?,
        "JetStream",
        &rt,
        rate,
        seconds,
    )?;
    Ok(())
}
