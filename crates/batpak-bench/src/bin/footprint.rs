//! Footprint at scale: disk bytes per event (every file in the store directory),
//! open time from a checkpoint and by a full rebuild, and resident memory with the
//! store open, for N events of the benchmark payload (default 1,000,000), beside the
//! SQLite baseline's file sizes for the same events.
//!
//! The peak resident memory of open + query + close (reading ten entities' streams of
//! scattered events) is measured in a fresh child process (`footprint peak DIR`), so
//! the fill does not count.
//!
//! `cargo run --release -p batpak-bench --bin footprint [-- N]`

use std::path::Path;
use std::time::Instant;

use batpak::{
    AppendOptions, Batch, Coordinate, EventPayload, Freshness, IndexSource, Projection, Region,
    Store, SyncPolicy,
};
use batpak_bench::{
    entity_name, status_bytes, OrderPlaced, SqliteJournal, Synchronous, ENTITIES, SCOPE,
};

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

/// Units ordered across every entity of the region.
#[derive(Clone, Default)]
struct Units(u64);

impl Projection for Units {
    const NAME: &'static str = "units";
    const KINDS: &'static [batpak::EventKind] = &[<OrderPlaced as EventPayload>::KIND];

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        self.0 += u64::from(event.decode::<OrderPlaced>()?.qty);
        Ok(())
    }
}

/// The child: open the store, read ten entities' streams, close; print the peak RSS.
fn peak(dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = Store::open(dir)?;
    let after_open = status_bytes("VmHWM:");
    let mut events = 0;
    for i in 0..10 {
        events += store.visit_stream(&entity_name(i * 97), |e| {
            std::hint::black_box(e.decode::<OrderPlaced>()?);
            Ok(())
        })?;
    }
    let after_reads = status_bytes("VmHWM:");
    // What the peak is made of: the store's own memory, and segment pages mapped by
    // the reads (page cache the kernel can take back at any time).
    let (anon, file) = (status_bytes("RssAnon:"), status_bytes("RssFile:"));
    store.close()?;
    println!(
        "peak RSS, open + read {events} events + close: {:.1} MB (after the open: {:.1} MB, after the reads: {:.1} MB)",
        status_bytes("VmHWM:") as f64 / 1e6,
        after_open as f64 / 1e6,
        after_reads as f64 / 1e6
    );
    println!(
        "  after the reads: {:.1} MB anonymous (the index and buffers), {:.1} MB of mapped segment pages",
        anon as f64 / 1e6,
        file as f64 / 1e6
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("peak") {
        let dir = args.next().ok_or("usage: footprint peak DIR")?;
        return peak(Path::new(&dir));
    }
    let n: usize = first.map_or(Ok(1_000_000), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("store");
    let coords: Vec<Coordinate> = (0..ENTITIES)
        .map(|i| Coordinate::new(entity_name(i), SCOPE))
        .collect::<Result<_, _>>()?;
    let payloads: Vec<OrderPlaced> = (0..ENTITIES as u64).map(OrderPlaced::sample).collect();

    let started = Instant::now();
    {
        let store = Store::builder(&dir).sync_policy(SyncPolicy::Never).open()?;
        let mut i = 0;
        while i < n {
            let mut batch = Batch::new();
            for _ in 0..1000.min(n - i) {
                let e = i % ENTITIES;
                batch.push(&coords[e], &payloads[e], AppendOptions::default())?;
                i += 1;
            }
            store.append_batch(&batch)?;
        }
        store.close()?;
    }
    println!("filled {n} events in {:?}", started.elapsed());
    let disk = dir_bytes(&dir);
    let ckpt = std::fs::metadata(dir.join("index.ckpt"))?.len();
    println!(
        "disk: {disk} bytes = {:.1} bytes/event (checkpoint {:.1} bytes/event)",
        disk as f64 / n as f64,
        ckpt as f64 / n as f64
    );

    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("peak")
        .arg(&dir)
        .output()?;
    if !child.status.success() {
        return Err(format!(
            "the peak-memory child failed: {}",
            String::from_utf8_lossy(&child.stderr)
        )
        .into());
    }
    print!("{}", String::from_utf8_lossy(&child.stdout));
    let checkpoint_written = std::fs::metadata(dir.join("index.ckpt"))?.modified()?;

    let rss_before = status_bytes("VmRSS:");
    let started = Instant::now();
    let store = Store::open(&dir)?;
    let took = started.elapsed();
    assert!(matches!(
        store.open_report().index,
        IndexSource::Checkpoint { .. }
    ));
    let rss_after = status_bytes("VmRSS:");
    println!(
        "open from checkpoint: {took:?}; resident memory grew {} bytes = {:.1} bytes/event",
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / n as f64
    );
    let region = Region::all().entity_prefix("order").scope(SCOPE);
    let started = Instant::now();
    let units = store.project_region::<Units>(&region, Freshness::Consistent)?;
    let took = started.elapsed();
    println!(
        "region read model over {n} events of {ENTITIES} entities: {took:?} = {:.0} events/s (units {})",
        n as f64 / took.as_secs_f64(),
        units.map_or(0, |u| u.0)
    );
    let started = Instant::now();
    let report = store.verify()?;
    let took = started.elapsed();
    println!(
        "verify: {} events, {} MB in {took:?} = {:.0} events/s, {:.0} MB/s, clean: {}",
        report.body.events,
        report.body.bytes / 1_000_000,
        report.body.events as f64 / took.as_secs_f64(),
        report.body.bytes as f64 / 1e6 / took.as_secs_f64(),
        report.body.is_clean()
    );
    drop(store);
    let rewritten = std::fs::metadata(dir.join("index.ckpt"))?.modified()? != checkpoint_written;
    println!("the opens since the fill rewrote the checkpoint: {rewritten}");
    for _ in 0..2 {
        let started = Instant::now();
        let store = Store::open_read_only(&dir)?;
        println!(
            "open from checkpoint (read-only, warm): {:?}",
            started.elapsed()
        );
        drop(store);
    }

    std::fs::remove_file(dir.join("index.ckpt"))?;
    let started = Instant::now();
    let store = Store::open_read_only(&dir)?;
    println!(
        "open by full rebuild (no checkpoint): {:?}",
        started.elapsed()
    );
    drop(store);

    let db_path = tmp.path().join("sqlite.db");
    let mut db = SqliteJournal::open(&db_path, Synchronous::Off)?;
    let mut i = 0;
    while i < n {
        let items: Vec<(&str, &OrderPlaced)> = (0..1000.min(n - i))
            .map(|k| {
                let e = (i + k) % ENTITIES;
                (coords[e].entity(), &payloads[e])
            })
            .collect();
        i += items.len();
        db.append_batch(SCOPE, &items)?;
    }
    drop(db);
    let sqlite = dir_bytes(tmp.path()) - dir_bytes(&dir);
    println!(
        "sqlite: {sqlite} bytes = {:.1} bytes/event",
        sqlite as f64 / n as f64
    );
    Ok(())
}
