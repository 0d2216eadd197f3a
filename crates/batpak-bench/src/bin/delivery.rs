//! Delivery at scale, batpak beside SQLite doing the same work in the same run:
//!
//! - fan-out: 16 subscribers each receive every event while one writer appends
//!   (SQLite: 16 reader connections polling `seq > last`);
//! - cursor catch-up: a durable cursor reads a 1,000,000-event log in batches of
//!   1,000, committing its position after each batch (SQLite: the same paging with a
//!   position row updated at `synchronous=FULL`);
//! - reactor: one reaction per source event, committed with the position (SQLite:
//!   insert and position update in one transaction).
//!
//! Multi-threaded and seconds long, so a plain timed binary rather than criterion.
//! Appends use no fsync on both sides (`SyncPolicy::Never`, `synchronous=OFF`).
//!
//! `cargo run --release -p batpak-bench --bin delivery [-- FANOUT_EVENTS CURSOR_EVENTS REACTOR_EVENTS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use batpak::{Batch, Coordinate, CursorStart, Region, Store, StoredEvent, SyncPolicy};

use batpak::reactor::{Reactions, ReactorOptions};
use batpak_bench::{entity_name, OrderPlaced, SqliteJournal, Synchronous, ENTITIES, SCOPE};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const SUBSCRIBERS: usize = 16;

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn coords() -> Result<Vec<Coordinate>> {
    (0..ENTITIES)
        .map(|i| Ok(Coordinate::new(entity_name(i), SCOPE)?))
        .collect()
}

/// Appends `n` events one by one; returns the time taken.
fn batpak_writer(store: &Store, coords: &[Coordinate], n: u64) -> Result<Duration> {
    let started = Instant::now();
    for i in 0..n {
        let e = (i as usize) % ENTITIES;
        store.append(&coords[e], &OrderPlaced::sample(i))?;
    }
    Ok(started.elapsed())
}

fn sqlite_writer(db: &mut SqliteJournal, names: &[String], n: u64) -> Result<Duration> {
    let started = Instant::now();
    for i in 0..n {
        let e = (i as usize) % ENTITIES;
        db.append(&names[e], SCOPE, &OrderPlaced::sample(i))?;
    }
    Ok(started.elapsed())
}

fn fanout(n: u64) -> Result<()> {
    let coords = coords()?;
    let names: Vec<String> = (0..ENTITIES).map(entity_name).collect();

    // batpak: the writer alone, then with 16 subscribers.
    let alone = {
        let dir = tempfile::tempdir()?;
        let store = Store::builder(dir.path())
            .sync_policy(SyncPolicy::Never)
            .open()?;
        batpak_writer(&store, &coords, n)?
    };
    let dir = tempfile::tempdir()?;
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()?;
    let started = Instant::now();
    let (writer, per_sub) = std::thread::scope(|s| -> Result<(Duration, Vec<Duration>)> {
        let subs: Vec<_> = (0..SUBSCRIBERS)
            .map(|_| {
                let mut sub = store.subscribe(Region::all()).lag_limit(u64::MAX);
                s.spawn(move || -> Result<Duration> {
                    for _ in 0..n {
                        let e = sub.recv().map_err(|e| e.to_string())?;
                        std::hint::black_box(e.payload.len());
                    }
                    Ok(started.elapsed())
                })
            })
            .collect();
        let writer = batpak_writer(&store, &coords, n)?;
        let per_sub = subs
            .into_iter()
            .map(|h| h.join().map_err(|_| "subscriber panicked")?)
            .collect::<Result<Vec<_>>>()?;
        Ok((writer, per_sub))
    })?;
    let slowest = per_sub.iter().max().copied().unwrap_or_default();

    // SQLite: the same, with polling readers.
    let sqlite_alone = {
        let dir = tempfile::tempdir()?;
        let mut db = SqliteJournal::open(&dir.path().join("events.db"), Synchronous::Off)?;
        sqlite_writer(&mut db, &names, n)?
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.db");
    let mut db = SqliteJournal::open(&path, Synchronous::Off)?;
    let started = Instant::now();
    let (sqlite_with, sqlite_subs) =
        std::thread::scope(|s| -> Result<(Duration, Vec<Duration>)> {
            let subs: Vec<_> = (0..SUBSCRIBERS)
                .map(|_| {
                    let path = path.clone();
                    s.spawn(move || -> Result<Duration> {
                        let reader = SqliteJournal::open(&path, Synchronous::Off)?;
                        let (mut got, mut after) = (0u64, 0i64);
                        while got < n {
                            let page = reader.read_after(after, 256)?;
                            if page.is_empty() {
                                std::thread::sleep(Duration::from_micros(100));
                                continue;
                            }
                            for e in &page {
                                std::hint::black_box(e.payload.len());
                            }
                            got += page.len() as u64;
                            after = page.last().map_or(after, |e| e.sequence);
                        }
                        Ok(started.elapsed())
                    })
                })
                .collect();
            let writer = sqlite_writer(&mut db, &names, n)?;
            let per_sub = subs
                .into_iter()
                .map(|h| h.join().map_err(|_| "reader panicked")?)
                .collect::<Result<Vec<_>>>()?;
            Ok((writer, per_sub))
        })?;
    let sqlite_slowest = sqlite_subs.iter().max().copied().unwrap_or_default();

    println!("fan-out: {n} events, {SUBSCRIBERS} subscribers each receiving every event");
    println!(
        "  batpak: writer alone {:.0} ev/s, with subscribers {:.0} ev/s ({:.2}x); each subscriber {:.0} ev/s (slowest done after {:?})",
        rate(n, alone),
        rate(n, writer),
        alone.as_secs_f64() / writer.as_secs_f64(),
        rate(n, slowest),
        slowest
    );
    println!(
        "  sqlite: writer alone {:.0} ev/s, with readers {:.0} ev/s ({:.2}x); each reader {:.0} ev/s (slowest done after {:?})",
        rate(n, sqlite_alone),
        rate(n, sqlite_with),
        sqlite_alone.as_secs_f64() / sqlite_with.as_secs_f64(),
        rate(n, sqlite_slowest),
        sqlite_slowest
    );
    println!(
        "  ratio batpak/sqlite: delivery per subscriber {:.2}x, writer with subscribers {:.2}x",
        sqlite_slowest.as_secs_f64() / slowest.as_secs_f64(),
        sqlite_with.as_secs_f64() / writer.as_secs_f64()
    );
    Ok(())
}

fn cursor_catch_up(n: u64) -> Result<()> {
    const BATCH: usize = 1_000;
    let coords = coords()?;
    let names: Vec<String> = (0..ENTITIES).map(entity_name).collect();
    let dir = tempfile::tempdir()?;
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()?;
    let payloads: Vec<OrderPlaced> = (0..BATCH as u64).map(OrderPlaced::sample).collect();
    let mut i = 0u64;
    while i < n {
        let mut batch = Batch::new();
        for (k, payload) in payloads.iter().take((n - i) as usize).enumerate() {
            let e = (i as usize + k) % ENTITIES;
            batch.push(&coords[e], payload, Default::default())?;
        }
        i += batch.len() as u64;
        store.append_batch(&batch)?;
    }
    store.sync()?;
    let started = Instant::now();
    let mut cursor = store.cursor_from("catch-up", Region::all(), CursorStart::Beginning)?;
    let mut got = 0u64;
    while got < n {
        let batch = cursor.next_batch(BATCH, Duration::from_secs(5))?;
        if batch.is_empty() {
            return Err("the cursor stalled".into());
        }
        for e in &batch {
            std::hint::black_box(e.decode::<OrderPlaced>()?);
        }
        got += batch.len() as u64;
        let last = batch.last().map_or(0, |e| e.sequence);
        cursor.commit(last)?;
    }
    let batpak = started.elapsed();

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.db");
    {
        let mut db = SqliteJournal::open(&path, Synchronous::Off)?;
        let mut i = 0u64;
        while i < n {
            let items: Vec<(&str, &OrderPlaced)> = (0..BATCH.min((n - i) as usize))
                .map(|k| (names[(i as usize + k) % ENTITIES].as_str(), &payloads[k]))
                .collect();
            i += items.len() as u64;
            db.append_batch(SCOPE, &items)?;
        }
    }
    let db = SqliteJournal::open(&path, Synchronous::Full)?;
    let started = Instant::now();
    let (mut got, mut after) = (0u64, 0i64);
    while got < n {
        let page = db.read_after(after, BATCH)?;
        for e in &page {
            std::hint::black_box(e.decode()?);
        }
        got += page.len() as u64;
        after = page.last().map_or(after, |e| e.sequence);
        db.save_position("catch-up", after)?;
    }
    let sqlite = started.elapsed();
    println!(
        "cursor catch-up: {n} events in batches of {BATCH}, position committed durably after each"
    );
    println!(
        "  batpak {:.0} ev/s ({batpak:?}), sqlite {:.0} ev/s ({sqlite:?}), ratio {:.2}x",
        rate(n, batpak),
        rate(n, sqlite),
        sqlite.as_secs_f64() / batpak.as_secs_f64()
    );
    Ok(())
}

fn reactor(n: u64) -> Result<()> {
    let coords = coords()?;
    let names: Vec<String> = (0..ENTITIES).map(entity_name).collect();
    let dir = tempfile::tempdir()?;
    let store = Arc::new(
        Store::builder(dir.path())
            .sync_policy(SyncPolicy::Never)
            .open()?,
    );
    batpak_writer(&store, &coords, n)?;
    let last = store.frontier().visible;
    let reaction = Coordinate::new("shipping", SCOPE)?;
    let started = Instant::now();
    let handle = store.react(
        "ship",
        // Orders only: the reactions (on "shipping") are of the same kind.
        Region::all().entity_prefix("order"),
        ReactorOptions::default(),
        move |event: &StoredEvent, out: &mut Reactions| {
            let order: OrderPlaced = event.decode()?;
            out.emit(&reaction, &order)
        },
    )?;
    let status = handle.wait_for(last, Duration::from_secs(600));
    let batpak = started.elapsed();
    if status.reactions != n {
        return Err(format!("the reactor stopped early: {status:?}").into());
    }
    drop(handle);

    let dir = tempfile::tempdir()?;
    let mut db = SqliteJournal::open(&dir.path().join("events.db"), Synchronous::Off)?;
    sqlite_writer(&mut db, &names, n)?;
    let started = Instant::now();
    let (mut done, mut after) = (0u64, 0i64);
    while done < n {
        let page = db.read_after(after, 256)?;
        if page.is_empty() {
            return Err("the sqlite reactor ran out of sources".into());
        }
        for e in page {
            let order = e.decode()?;
            after = e.sequence;
            db.append_with_position("shipping", SCOPE, &order, "ship", after)?;
            done += 1;
        }
    }
    let sqlite = started.elapsed();
    println!(
        "reactor: one reaction per source, committed atomically with the position, {n} sources"
    );
    println!(
        "  batpak {:.0} sources/s ({batpak:?}), sqlite {:.0} sources/s ({sqlite:?}), ratio {:.2}x",
        rate(n, batpak),
        rate(done, sqlite),
        sqlite.as_secs_f64() / batpak.as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    let arg = |i: usize, default: u64| -> Result<u64> {
        Ok(std::env::args().nth(i).map_or(Ok(default), |s| s.parse())?)
    };
    fanout(arg(1, 100_000)?)?;
    cursor_catch_up(arg(2, 1_000_000)?)?;
    reactor(arg(3, 50_000)?)?;
    Ok(())
}
