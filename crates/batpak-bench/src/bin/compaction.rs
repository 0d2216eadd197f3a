//! Compaction at scale, batpak beside SQLite doing the same work in the same run:
//! N events (default 1,000,000) of a ~100-byte payload spread round-robin over
//! 10,000 entities, then a retention rule that keeps the newest tenth of every
//! entity, then the space reclaimed.
//!
//! - batpak: `set_retention(EntityPrefix("user"), MaxCount(K))` and `compact()`,
//!   while a second thread appends single events to `live:1` and records the
//!   longest single append;
//! - SQLite (WAL, `synchronous=NORMAL`): a `DELETE` keeping the newest K rows of
//!   every entity and a `VACUUM`, while a second connection inserts single rows
//!   and records the longest single insert.
//!
//! Appends use no fsync on batpak's side (`SyncPolicy::Never`); SQLite in WAL mode
//! at `synchronous=NORMAL` does not fsync commits either.
//!
//! `cargo run --release -p batpak-bench --bin compaction [-- --events N]`

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, Batch, Compaction, Coordinate, EventPayload, RetentionRule, RetentionSelector,
    Store, SyncPolicy,
};
use batpak_bench::status_bytes;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Events are spread round-robin over this many entities.
const ENTITIES: usize = 10_000;
/// Events per atomic batch (batpak) or transaction (SQLite) while filling.
const BATCH: usize = 1_000;
/// The scope of every event.
const SCOPE: &str = "bench";
/// The entity the concurrent writer appends to (outside the retention rule).
const LIVE: &str = "live:1";

/// The benchmark payload: 100 bytes of MessagePack with named fields, the same
/// length for every `i`.
#[derive(Serialize, Deserialize, EventPayload, Clone, Debug, PartialEq, Eq)]
#[batpak(category = 9, type_id = 1)]
struct UserAction {
    /// The user, `user:nnnnn`.
    user: String,
    /// What they did, `act-nnnn`.
    action: String,
    /// What they did it to.
    path: String,
    /// Session reference, 12 hex digits.
    session: String,
    /// An amount, 100,000 to 199,999 cents.
    cents: u64,
}

impl UserAction {
    fn sample(i: u64) -> Self {
        UserAction {
            user: format!("user:{:05}", i % 100_000),
            action: format!("act-{:04}", i % 7),
            path: format!("/catalog/item/{:06}/detail", i % 1_000_000),
            session: format!("s-{:012x}", i.wrapping_mul(0x9E37_79B9) & 0xFFFF_FFFF_FFFF),
            cents: 100_000 + i % 100_000,
        }
    }
}

/// `--events N` (or `--events=N`); default 1,000,000.
fn parse_events() -> Result<usize> {
    let mut n = 1_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--events" {
            let value = args.next().ok_or("--events needs a value")?;
            n = value.parse()?;
        } else if let Some(value) = arg.strip_prefix("--events=") {
            n = value.parse()?;
        } else {
            return Err(format!("unknown argument {arg:?}; usage: compaction [--events N]").into());
        }
    }
    Ok(n)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(_) => continue,
        };
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

fn peak_rss_bytes() -> u64 {
    status_bytes("VmHWM:")
}

/// Resets the peak resident set (VmHWM) to the current one; false when the kernel
/// refuses (then VmHWM is the peak of the whole process so far).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Samples the anonymous and file-backed resident sets every 5 ms until stopped,
/// keeping the largest of each (VmHWM does not split them: mapped segment pages
/// count as resident too).
#[derive(Debug)]
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (mut anon, mut file) = (0, 0);
            loop {
                anon = status_bytes("RssAnon:").max(anon);
                file = status_bytes("RssFile:").max(file);
                if flag.load(Ordering::Acquire) {
                    return (anon, file);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssSampler { stop, handle }
    }

    /// The largest (anonymous, file-backed) resident bytes seen.
    fn finish(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Release);
        Ok(self.handle.join().map_err(|_| "the RSS sampler panicked")?)
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the concurrent writer saw.
#[derive(Clone, Copy, Debug, Default)]
struct WriterStats {
    /// Writes completed while the maintenance ran.
    writes: u64,
    /// The longest single write.
    longest: Duration,
    /// When it began, from the writer's epoch.
    longest_began: Duration,
    /// Writes that took over a millisecond.
    over_1ms: u64,
}

impl WriterStats {
    /// Records a write that began `began` after the epoch, if the window had opened.
    fn record(&mut self, window: &AtomicU64, began: Duration, took: Duration) {
        let began_ns = u64::try_from(began.as_nanos()).unwrap_or(u64::MAX);
        if began_ns < window.load(Ordering::Acquire) {
            return;
        }
        self.writes += 1;
        if took > self.longest {
            self.longest = took;
            self.longest_began = began;
        }
        if took > Duration::from_millis(1) {
            self.over_1ms += 1;
        }
    }
}

/// One side's results.
#[derive(Clone, Copy, Debug, Default)]
struct Side {
    fill: Duration,
    duration: Duration,
    input_bytes: u64,
    rows_read: u64,
    rows_removed: u64,
    bytes_before: u64,
    bytes_after: u64,
    writer: WriterStats,
    internal_stall: Option<Duration>,
    /// The same writer alone for as long as the maintenance took (batpak only): the
    /// stalls appends meet anyway (a segment rotation's fsync under `Never`).
    alone: Option<WriterStats>,
    rss_before: u64,
    peak_rss: u64,
    /// Largest sampled (anonymous, file-backed) resident bytes during maintenance.
    sampled: (u64, u64),
}

/// Spins until the writer thread has completed its first write.
fn wait_until_running(running: &AtomicU64) {
    while running.load(Ordering::Acquire) == 0 {
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn batpak_side(
    dir: &Path,
    n: usize,
    keep: u64,
    payloads: &[UserAction],
    peak_reset: bool,
) -> Result<Side> {
    let coords: Vec<Coordinate> = (0..ENTITIES)
        .map(|i| Coordinate::new(format!("user:{i}"), SCOPE))
        .collect::<std::result::Result<_, _>>()?;
    let mut builder = Store::builder(dir).sync_policy(SyncPolicy::Never);
    // `BATPAK_BENCH_SEGMENT_MIB`: another segment size, to see which stalls are rotations.
    if let Some(mib) = std::env::var("BATPAK_BENCH_SEGMENT_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        builder = builder.segment_size(mib << 20);
    }
    let store = Arc::new(builder.open()?);

    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let mut batch = Batch::new();
        for _ in 0..BATCH.min(n - i) {
            let e = i % ENTITIES;
            batch.push(&coords[e], &payloads[e], AppendOptions::default())?;
            i += 1;
        }
        store.append_batch(&batch)?;
    }
    store.sync()?;
    let fill = started.elapsed();
    let dir_before = dir_bytes(dir);

    store.set_retention(
        RetentionSelector::EntityPrefix("user".into()),
        RetentionRule::MaxCount(keep),
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicU64::new(0));
    // Nanoseconds from `epoch` at which the measured window opens (closed until set).
    let window = Arc::new(AtomicU64::new(u64::MAX));
    let epoch = Instant::now();
    let appender = {
        let store = Arc::clone(&store);
        let stop = Arc::clone(&stop);
        let running = Arc::clone(&running);
        let window = Arc::clone(&window);
        let payload = payloads[0].clone();
        std::thread::spawn(move || -> Result<WriterStats> {
            let coord = Coordinate::new(LIVE, SCOPE)?;
            let mut stats = WriterStats::default();
            while !stop.load(Ordering::Acquire) {
                let t = Instant::now();
                store.append(&coord, &payload)?;
                stats.record(&window, t - epoch, t.elapsed());
                running.fetch_add(1, Ordering::Release);
            }
            Ok(stats)
        })
    };
    wait_until_running(&running);
    let rss_before = rss_bytes();
    if peak_reset {
        reset_peak_rss();
    }
    let sampler = RssSampler::start();
    let began = epoch.elapsed();
    window.store(
        u64::try_from(began.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Release,
    );
    let wall = Instant::now();
    let compacted = store.compact();
    let wall = wall.elapsed();
    let peak_rss = peak_rss_bytes();
    let sampled = sampler.finish()?;
    stop.store(true, Ordering::Release);
    let writer = appender
        .join()
        .map_err(|_| "the appender thread panicked")?;
    // The compaction's own error first: an appender error may only follow from it.
    let report: Compaction = compacted?;
    let writer = writer?;

    println!(
        "batpak: filled {n} events in {fill:?}; store dir {} bytes; compact() took {wall:?} \
         wall, report {:?}",
        dir_before, report.duration
    );
    println!(
        "batpak: compaction report: generation {}, through {}, events_read {}, events_removed {}, \
         payloads_dropped {}, segments_rewritten {}, bytes_before {}, bytes_after {}, \
         reclaimed {}, longest_stall {:?}",
        report.generation,
        report.through,
        report.events_read,
        report.events_removed,
        report.payloads_dropped,
        report.segments_rewritten,
        report.bytes_before,
        report.bytes_after,
        report.reclaimed(),
        report.longest_stall
    );
    println!(
        "batpak: appender during compaction: {} appends, longest {:?} (began {:.1} ms after \
         compact() started), {} over 1 ms",
        writer.writes,
        writer.longest,
        ms(writer.longest_began.saturating_sub(began)),
        writer.over_1ms
    );
    let expected_removed = (n as u64).saturating_sub(kept_rows(n, keep));
    if report.events_removed != expected_removed {
        println!(
            "batpak: NOTE events_removed {} differs from the {expected_removed} the rule expires",
            report.events_removed
        );
    }

    let started = Instant::now();
    let verified = store.verify()?;
    println!(
        "batpak: verify after compaction: {} segments, {} events, {} bytes in {:?}, clean: {}, \
         {} horizons",
        verified.body.segments,
        verified.body.events,
        verified.body.bytes,
        started.elapsed(),
        verified.body.is_clean(),
        verified.body.horizons.len()
    );
    if !verified.body.is_clean() {
        for finding in verified.body.findings.iter().take(20) {
            println!("batpak: verify finding: {finding:?}");
        }
    }
    assert!(
        verified.body.is_clean(),
        "verify after compaction found {} problems",
        verified.body.findings.len()
    );
    println!(
        "batpak: store dir after compaction {} bytes",
        dir_bytes(dir)
    );
    let alone = append_alone(&store, &payloads[0], report.duration)?;
    println!(
        "batpak: the appender alone for {:?}: {} appends, longest {:?}, {} over 1 ms",
        report.duration, alone.writes, alone.longest, alone.over_1ms
    );
    drop(store);

    Ok(Side {
        fill,
        duration: report.duration,
        input_bytes: report.bytes_before,
        rows_read: report.events_read,
        rows_removed: report.events_removed,
        bytes_before: report.bytes_before,
        bytes_after: report.bytes_after,
        writer,
        internal_stall: Some(report.longest_stall),
        alone: Some(alone),
        rss_before,
        peak_rss,
        sampled,
    })
}

/// Single appends to the live entity for `duration` with nothing else running.
fn append_alone(store: &Store, payload: &UserAction, duration: Duration) -> Result<WriterStats> {
    let coord = Coordinate::new(LIVE, SCOPE)?;
    let open = AtomicU64::new(0);
    let epoch = Instant::now();
    let mut stats = WriterStats::default();
    while epoch.elapsed() < duration {
        let t = Instant::now();
        store.append(&coord, payload)?;
        stats.record(&open, t - epoch, t.elapsed());
    }
    Ok(stats)
}

/// Rows the rule keeps of the round-robin fill: the newest `keep` of each entity.
fn kept_rows(n: usize, keep: u64) -> u64 {
    (0..ENTITIES)
        .map(|e| {
            let count = (n / ENTITIES + usize::from(e < n % ENTITIES)) as u64;
            count.min(keep)
        })
        .sum()
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    entity TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX events_entity_version ON events (entity, version);
";

const SQLITE_INSERT: &str = "INSERT INTO events (entity, version, payload) VALUES (?1, ?2, ?3)";

/// Keeps the newest `?1` versions of every `user:` entity.
const SQLITE_RETAIN: &str = "DELETE FROM events WHERE entity LIKE 'user:%' AND version < \
    (SELECT MAX(version) FROM events e2 WHERE e2.entity = events.entity) - ?1 + 1";

fn sqlite_open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_millis(60_000))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal_mode is {mode}, not wal").into());
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Checkpoints the WAL into the database and truncates it; returns db + wal bytes.
fn sqlite_checkpointed_bytes(conn: &Connection, path: &Path) -> Result<u64> {
    let (busy, _log, _done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        return Err("the WAL checkpoint was blocked".into());
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    Ok(file_bytes(path) + file_bytes(Path::new(&wal)))
}

fn sqlite_side(
    path: &Path,
    n: usize,
    keep: u64,
    encoded: &[Vec<u8>],
    peak_reset: bool,
) -> Result<Side> {
    let names: Vec<String> = (0..ENTITIES).map(|i| format!("user:{i}")).collect();
    let mut conn = sqlite_open(path)?;
    conn.execute_batch(SQLITE_SCHEMA)?;

    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(SQLITE_INSERT)?;
            for _ in 0..BATCH.min(n - i) {
                let e = i % ENTITIES;
                let version = (i / ENTITIES) as i64;
                insert.execute(params![names[e], version, encoded[e]])?;
                i += 1;
            }
        }
        tx.commit()?;
    }
    let fill = started.elapsed();
    let bytes_before = sqlite_checkpointed_bytes(&conn, path)?;

    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicU64::new(0));
    // Nanoseconds from `epoch` at which the measured window opens (closed until set).
    let window = Arc::new(AtomicU64::new(u64::MAX));
    let epoch = Instant::now();
    let inserter = {
        let stop = Arc::clone(&stop);
        let running = Arc::clone(&running);
        let window = Arc::clone(&window);
        let path = path.to_path_buf();
        let payload = encoded[0].clone();
        std::thread::spawn(move || -> Result<WriterStats> {
            let conn = sqlite_open(&path)?;
            let mut insert = conn.prepare(SQLITE_INSERT)?;
            let mut stats = WriterStats::default();
            let mut version = 0i64;
            while !stop.load(Ordering::Acquire) {
                let t = Instant::now();
                insert.execute(params![LIVE, version, payload])?;
                stats.record(&window, t - epoch, t.elapsed());
                version += 1;
                running.fetch_add(1, Ordering::Release);
            }
            Ok(stats)
        })
    };
    wait_until_running(&running);
    let rss_before = rss_bytes();
    if peak_reset {
        reset_peak_rss();
    }
    let sampler = RssSampler::start();
    let began = epoch.elapsed();
    window.store(
        u64::try_from(began.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Release,
    );
    let started = Instant::now();
    let removed = conn.execute(SQLITE_RETAIN, params![i64::try_from(keep)?]);
    let deleted = started.elapsed();
    let vacuumed = removed.and_then(|rows| conn.execute_batch("VACUUM").map(|()| rows));
    let duration = started.elapsed();
    let peak_rss = peak_rss_bytes();
    let sampled = sampler.finish()?;
    stop.store(true, Ordering::Release);
    let writer = inserter
        .join()
        .map_err(|_| "the inserter thread panicked")?;
    let rows_removed = vacuumed? as u64;
    let writer = writer?;

    let kept: i64 = conn.query_row(
        "SELECT count(*) FROM events WHERE entity LIKE 'user:%'",
        [],
        |r| r.get(0),
    )?;
    let expected = kept_rows(n, keep);
    let kept = u64::try_from(kept)?;
    if kept != expected {
        return Err(format!("sqlite kept {kept} user rows, expected {expected}").into());
    }
    if rows_removed != n as u64 - expected {
        return Err(format!(
            "sqlite deleted {rows_removed} rows, expected {}",
            n as u64 - expected
        )
        .into());
    }
    let bytes_after = sqlite_checkpointed_bytes(&conn, path)?;

    println!(
        "sqlite: filled {n} rows in {fill:?}; db {bytes_before} bytes after checkpoint; \
         DELETE {deleted:?} + VACUUM {:?} = {duration:?}; kept {kept} user rows (expected \
         {expected})",
        duration.saturating_sub(deleted)
    );
    println!(
        "sqlite: inserter during DELETE+VACUUM: {} inserts, longest {:?} (began {:.1} ms after \
         the DELETE started), {} over 1 ms",
        writer.writes,
        writer.longest,
        ms(writer.longest_began.saturating_sub(began)),
        writer.over_1ms
    );
    println!("sqlite: db after VACUUM and checkpoint {bytes_after} bytes");

    Ok(Side {
        fill,
        duration,
        input_bytes: bytes_before,
        rows_read: n as u64,
        rows_removed,
        bytes_before,
        bytes_after,
        writer,
        internal_stall: None,
        alone: None,
        rss_before,
        peak_rss,
        sampled,
    })
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 || !a.is_finite() || !b.is_finite() {
        "n/a".into()
    } else {
        format!("{:.2}x", a / b)
    }
}

fn print_table(n: usize, keep: u64, payload_len: usize, b: &Side, s: &Side, peak_reset: bool) {
    let b_mbs = mb(b.input_bytes) / b.duration.as_secs_f64();
    let s_mbs = mb(s.input_bytes) / s.duration.as_secs_f64();
    let b_eps = per_sec(b.rows_read, b.duration);
    let s_eps = per_sec(s.rows_read, s.duration);
    let b_reclaimed = b.bytes_before.saturating_sub(b.bytes_after);
    let s_reclaimed = s.bytes_before.saturating_sub(s.bytes_after);

    println!();
    println!("| compaction, {n} events | batpak compact() | SQLite DELETE+VACUUM | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| fill (batches of {BATCH}) | {:.2} s | {:.2} s | {} (SQLite/batpak) |",
        b.fill.as_secs_f64(),
        s.fill.as_secs_f64(),
        ratio(s.fill.as_secs_f64(), b.fill.as_secs_f64())
    );
    println!(
        "| time | {:.0} ms | {:.0} ms | {} (SQLite/batpak) |",
        ms(b.duration),
        ms(s.duration),
        ratio(ms(s.duration), ms(b.duration))
    );
    println!(
        "| input MB/s (bytes before / time) | {b_mbs:.1} | {s_mbs:.1} | {} (batpak/SQLite) |",
        ratio(b_mbs, s_mbs)
    );
    println!(
        "| events/s (events read / time) | {b_eps:.0} | {s_eps:.0} | {} (batpak/SQLite) |",
        ratio(b_eps, s_eps)
    );
    println!(
        "| events removed | {} | {} | |",
        b.rows_removed, s.rows_removed
    );
    println!(
        "| bytes before | {} ({:.1} MB) | {} ({:.1} MB) | {} (batpak/SQLite) |",
        b.bytes_before,
        mb(b.bytes_before),
        s.bytes_before,
        mb(s.bytes_before),
        ratio(b.bytes_before as f64, s.bytes_before as f64)
    );
    println!(
        "| bytes after | {} ({:.1} MB) | {} ({:.1} MB) | {} (batpak/SQLite) |",
        b.bytes_after,
        mb(b.bytes_after),
        s.bytes_after,
        mb(s.bytes_after),
        ratio(b.bytes_after as f64, s.bytes_after as f64)
    );
    println!(
        "| bytes reclaimed | {} ({:.1} MB) | {} ({:.1} MB) | {} (batpak/SQLite) |",
        b_reclaimed,
        mb(b_reclaimed),
        s_reclaimed,
        mb(s_reclaimed),
        ratio(b_reclaimed as f64, s_reclaimed as f64)
    );
    println!(
        "| longest single write by a concurrent writer | {:.2} ms | {:.2} ms | {} (SQLite/batpak) |",
        ms(b.writer.longest),
        ms(s.writer.longest),
        ratio(ms(s.writer.longest), ms(b.writer.longest))
    );
    println!(
        "| longest_stall (batpak's report) | {:.2} ms | - | |",
        b.internal_stall.map_or(0.0, ms)
    );
    println!(
        "| longest single append, the appender alone for as long | {:.2} ms | - | |",
        b.alone.map_or(0.0, |a| ms(a.longest))
    );
    println!(
        "| concurrent writes completed | {} | {} | {} (batpak/SQLite) |",
        b.writer.writes,
        s.writer.writes,
        ratio(b.writer.writes as f64, s.writer.writes as f64)
    );
    println!(
        "| concurrent writes over 1 ms | {} | {} | |",
        b.writer.over_1ms, s.writer.over_1ms
    );
    println!(
        "| RSS before / peak during (MB) | {:.1} / {:.1} | {:.1} / {:.1} | |",
        mb(b.rss_before),
        mb(b.peak_rss),
        mb(s.rss_before),
        mb(s.peak_rss)
    );
    println!(
        "| largest sampled RssAnon / RssFile during (MB) | {:.1} / {:.1} | {:.1} / {:.1} | |",
        mb(b.sampled.0),
        mb(b.sampled.1),
        mb(s.sampled.0),
        mb(s.sampled.1)
    );
    println!();
    println!(
        "N = {n} events ({payload_len}-byte MessagePack payloads) over {ENTITIES} entities, \
         keeping the newest {keep} per entity ({} events); peak RSS is VmHWM {}.",
        kept_rows(n, keep),
        if peak_reset {
            "reset via /proc/self/clear_refs just before each side's maintenance"
        } else {
            "of the whole process (clear_refs refused)"
        }
    );
}

fn main() -> Result<()> {
    let n = parse_events()?;
    let keep = (n / ENTITIES / 10) as u64;
    if keep == 0 {
        return Err(format!(
            "--events {n} keeps nothing per entity (N / {ENTITIES} / 10 = 0); use at least {}",
            ENTITIES * 10
        )
        .into());
    }
    let payloads: Vec<UserAction> = (0..ENTITIES as u64).map(UserAction::sample).collect();
    let encoded: Vec<Vec<u8>> = payloads
        .iter()
        .map(EventPayload::encode)
        .collect::<std::result::Result<_, _>>()?;
    let payload_len = encoded[0].len();
    println!(
        "compaction benchmark: {n} events, {payload_len}-byte payloads, {ENTITIES} entities, \
         keep {keep} per entity"
    );
    let peak_reset = reset_peak_rss();
    if !peak_reset {
        println!("note: /proc/self/clear_refs refused; peak RSS covers the whole process");
    }

    let tmp = tempfile::tempdir()?;
    let batpak = batpak_side(&tmp.path().join("store"), n, keep, &payloads, peak_reset)?;
    let sqlite = sqlite_side(&tmp.path().join("events.db"), n, keep, &encoded, peak_reset)?;
    print_table(n, keep, payload_len, &batpak, &sqlite, peak_reset);
    Ok(())
}
