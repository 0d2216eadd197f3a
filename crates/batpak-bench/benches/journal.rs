//! batpak against a SQLite (WAL) baseline doing the same work, workload by workload.
//! Each criterion group has a `batpak` and a `sqlite` function fed the same inputs;
//! `scripts/bench-table.py` turns the results into a table.

// Benches abort on setup failure by design: a benchmark that cannot set up has no
// number to report, so unwrap/expect are the right tool here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::OnceCell;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, Batch, Coordinate, EventId, EventPayload, Freshness, Projection, Region, Store,
    SyncPolicy,
};

use batpak::gate::{gate, DecideOptions, Decision, Denial, GateSet, Proposal};
use batpak_bench::{
    entity_name, OrderPlaced, SqliteJournal, Synchronous, XorShift, ENTITIES, SCOPE,
};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use tempfile::TempDir;

/// Appenders in the concurrent workload.
const THREADS: usize = 16;
/// Events per batch in the batch workload.
const BATCH: usize = 1_000;
/// Events in the read workloads' stores (100 per entity).
const FILLED: usize = 100_000;

/// The same inputs for both sides: entity `i` gets coordinate `i` and payload `i`,
/// built once so no bench times string formatting.
struct Inputs {
    names: Vec<String>,
    coords: Vec<Coordinate>,
    payloads: Vec<OrderPlaced>,
}

impl Inputs {
    fn new() -> Self {
        let names: Vec<String> = (0..ENTITIES).map(entity_name).collect();
        let coords = names
            .iter()
            .map(|n| Coordinate::new(n, SCOPE).unwrap())
            .collect();
        let payloads = (0..ENTITIES as u64).map(OrderPlaced::sample).collect();
        Inputs {
            names,
            coords,
            payloads,
        }
    }
}

fn batpak_store(policy: SyncPolicy) -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(policy)
        .open()
        .unwrap();
    (dir, store)
}

fn sqlite_db(synchronous: Synchronous) -> (TempDir, SqliteJournal) {
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("events.db"), synchronous).unwrap();
    (dir, journal)
}

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Single appends, one thread, round-robin over the entities.
fn single_appends(group: &mut Group<'_>, inputs: &Inputs, policy: SyncPolicy, sync: Synchronous) {
    group.throughput(Throughput::Elements(1));
    // Stores are set up once, outside the closures: criterion calls a closure once per
    // warm-up round and once per sample, and every call should extend the same store.
    let (_batpak_dir, store) = batpak_store(policy);
    let (_sqlite_dir, mut db) = sqlite_db(sync);
    let mut i = 0;
    group.bench_function("batpak", |b| {
        b.iter(|| {
            let e = i % ENTITIES;
            i += 1;
            store
                .append(&inputs.coords[e], &inputs.payloads[e])
                .unwrap()
        });
    });
    let mut i = 0;
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            let e = i % ENTITIES;
            i += 1;
            db.append(&inputs.names[e], SCOPE, &inputs.payloads[e])
                .unwrap()
        });
    });
}

fn append_nosync(c: &mut Criterion) {
    let inputs = Inputs::new();
    let mut group = c.benchmark_group("append_nosync");
    single_appends(&mut group, &inputs, SyncPolicy::Never, Synchronous::Off);
    group.finish();
}

fn append_fsync(c: &mut Criterion) {
    let inputs = Inputs::new();
    let mut group = c.benchmark_group("append_fsync");
    single_appends(&mut group, &inputs, SyncPolicy::Always, Synchronous::Full);
    group.finish();
}

/// Signing overhead: the same single appends with and without a signing key, without
/// and with fsync. The table reports signed / unsigned throughput.
fn signing(c: &mut Criterion) {
    let inputs = Inputs::new();
    let key = batpak::proof::SigningKey::from_bytes(&[42; 32]);
    for (group_name, policy) in [
        ("signing_nosync", SyncPolicy::Never),
        ("signing_fsync", SyncPolicy::Always),
    ] {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        for (function, signer) in [("unsigned", None), ("signed", Some(key.clone()))] {
            let dir = tempfile::tempdir().unwrap();
            let mut builder = Store::builder(dir.path()).sync_policy(policy);
            if let Some(k) = signer {
                builder = builder.signing_key(k);
            }
            let store = builder.open().unwrap();
            let mut i = 0;
            group.bench_function(function, |b| {
                b.iter(|| {
                    let e = i % ENTITIES;
                    i += 1;
                    store
                        .append(&inputs.coords[e], &inputs.payloads[e])
                        .unwrap()
                });
            });
        }
        group.finish();
    }
}

/// Runs `threads` appenders that each call `append(thread, k)` for `k` in `0..iters`,
/// released together; returns the wall time until the last one finishes.
fn run_threads<S: Send>(
    threads: usize,
    iters: u64,
    states: &mut [S],
    append: impl Fn(&mut S, usize, u64) + Sync,
) -> Duration {
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        let handles: Vec<_> = states
            .iter_mut()
            .take(threads)
            .enumerate()
            .map(|(t, state)| {
                let (barrier, append) = (&barrier, &append);
                s.spawn(move || {
                    barrier.wait();
                    for k in 0..iters {
                        append(state, t, k);
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    })
}

/// Entities of thread `t` of `threads`: every `threads`-th one, so threads never share
/// an entity (each SQLite connection keeps its own head cache).
fn thread_entities(t: usize, threads: usize) -> Vec<usize> {
    (t..ENTITIES).step_by(threads).collect()
}

fn append_fsync_16_threads(c: &mut Criterion) {
    let inputs = Inputs::new();
    let mut group = c.benchmark_group("append_fsync_16_threads");
    for (threads, suffix) in [(THREADS, ""), (1, "_1_thread")] {
        let owned: Vec<Vec<usize>> = (0..threads).map(|t| thread_entities(t, threads)).collect();
        group.throughput(Throughput::Elements(threads as u64));

        let (_batpak_dir, store) = batpak_store(SyncPolicy::Always);
        let store = Arc::new(store);
        let mut states: Vec<Arc<Store>> = (0..threads).map(|_| Arc::clone(&store)).collect();
        group.bench_function(format!("batpak{suffix}"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &mut states, |store, t, k| {
                    let mine = &owned[t];
                    let e = mine[k as usize % mine.len()];
                    store
                        .append(&inputs.coords[e], &inputs.payloads[e])
                        .unwrap();
                })
            });
        });

        // SQLite: one shared connection behind a mutex, the faster of the two fair
        // setups. One connection per thread on the same file (busy_timeout 60 s,
        // synchronous=FULL, disjoint entities) measured ~57 events/s with 16 threads
        // against ~580 for the mutex on this machine: WAL admits one writer at a time
        // either way, and a connection that finds the write lock taken sleeps in
        // busy_timeout's back-off instead of being woken when it frees up.
        let (_sqlite_dir, db) = sqlite_db(Synchronous::Full);
        let db = Arc::new(Mutex::new(db));
        let mut states: Vec<Arc<Mutex<SqliteJournal>>> =
            (0..threads).map(|_| Arc::clone(&db)).collect();
        group.bench_function(format!("sqlite{suffix}"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &mut states, |db, t, k| {
                    let mine = &owned[t];
                    let e = mine[k as usize % mine.len()];
                    db.lock()
                        .unwrap()
                        .append(&inputs.names[e], SCOPE, &inputs.payloads[e])
                        .unwrap();
                })
            });
        });
    }
    group.finish();
}

fn append_batch_1000(c: &mut Criterion) {
    let inputs = Inputs::new();
    let mut group = c.benchmark_group("append_batch_1000");
    group.throughput(Throughput::Elements(BATCH as u64));
    let (_batpak_dir, store) = batpak_store(SyncPolicy::Always);
    let (_sqlite_dir, mut db) = sqlite_db(Synchronous::Full);
    let mut i = 0;
    // One batch, cleared and refilled: its buffers are reused, as a user's loop would.
    let mut batch = Batch::with_capacity(BATCH);
    group.bench_function("batpak", |b| {
        b.iter(|| {
            batch.clear();
            for _ in 0..BATCH {
                let e = i % ENTITIES;
                i += 1;
                batch
                    .push(
                        &inputs.coords[e],
                        &inputs.payloads[e],
                        AppendOptions::default(),
                    )
                    .unwrap();
            }
            store.append_batch(&batch).unwrap()
        });
    });
    let mut i = 0;
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            let mut items = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                let e = i % ENTITIES;
                i += 1;
                items.push((inputs.names[e].as_str(), &inputs.payloads[e]));
            }
            db.append_batch(SCOPE, &items).unwrap()
        });
    });
    // The floor under both: appending a batch's bytes to a file and fdatasync-ing it,
    // which no store can beat (the bytes per event are what batpak wrote above).
    let stats = store.stats().unwrap();
    let per_event = (stats.segment_bytes / stats.events.max(1)) as usize;
    let floor_dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(floor_dir.path().join("floor")).unwrap();
    let bytes = vec![0x5a; per_event * BATCH];
    group.bench_function("fsync_floor", |b| {
        b.iter(|| {
            use std::io::Write;
            file.write_all(&bytes).unwrap();
            file.sync_data().unwrap();
        });
    });
    group.finish();
}

/// Both stores filled with the same 100,000 events, round-robin over the entities (so
/// an entity's events are spread through the file), and the ids the appends returned.
struct Filled {
    _dirs: (TempDir, TempDir),
    store: Store,
    db: SqliteJournal,
    batpak_ids: Vec<EventId>,
    sqlite_ids: Vec<[u8; 16]>,
}

fn fill(inputs: &Inputs) -> Filled {
    let (batpak_dir, store) = batpak_store(SyncPolicy::Always);
    let (sqlite_dir, mut db) = sqlite_db(Synchronous::Full);
    let mut batpak_ids = Vec::with_capacity(FILLED);
    let mut sqlite_ids = Vec::with_capacity(FILLED);
    for first in (0..FILLED).step_by(BATCH) {
        let mut batch = Batch::new();
        let mut items = Vec::with_capacity(BATCH);
        for i in first..first + BATCH {
            let e = i % ENTITIES;
            batch
                .push(
                    &inputs.coords[e],
                    &inputs.payloads[e],
                    AppendOptions::default(),
                )
                .unwrap();
            items.push((inputs.names[e].as_str(), &inputs.payloads[e]));
        }
        batpak_ids.extend(
            store
                .append_batch(&batch)
                .unwrap()
                .iter()
                .map(|r| r.event_id),
        );
        sqlite_ids.extend(db.append_batch(SCOPE, &items).unwrap().iter().map(|r| r.id));
    }
    assert_eq!(store.count(&Region::all()).unwrap(), FILLED as u64);
    assert_eq!(db.count().unwrap(), FILLED as u64);
    Filled {
        _dirs: (batpak_dir, sqlite_dir),
        store,
        db,
        batpak_ids,
        sqlite_ids,
    }
}

/// Point reads by random id, and whole-entity reads, from the same filled stores.
/// Both sides decode every payload they read into `OrderPlaced`.
fn reads(c: &mut Criterion) {
    let inputs = Inputs::new();
    // Filled on first use, so a run filtered to other groups skips the fill.
    let fixture = OnceCell::new();
    let filled = || fixture.get_or_init(|| fill(&inputs));

    let mut group = c.benchmark_group("get_random");
    group.throughput(Throughput::Elements(1));
    let mut rng = XorShift::new(7);
    group.bench_function("batpak", |b| {
        let filled = filled();
        b.iter(|| {
            let id = filled.batpak_ids[rng.below(FILLED)];
            let event = filled.store.get(id).unwrap().unwrap();
            black_box(event.decode::<OrderPlaced>().unwrap())
        });
    });
    let mut rng = XorShift::new(7);
    group.bench_function("sqlite", |b| {
        let filled = filled();
        b.iter(|| {
            let id = &filled.sqlite_ids[rng.below(FILLED)];
            let event = filled.db.get(id).unwrap().unwrap();
            black_box(event.decode().unwrap())
        });
    });
    group.finish();

    // Throughput in events (100 per entity read): events/s; divide by 100 for entity
    // reads/s.
    let per_entity = (FILLED / ENTITIES) as u64;
    let mut group = c.benchmark_group("read_entity_100");
    group.throughput(Throughput::Elements(per_entity));
    // Both sides read what a caller decoding an entity's events needs: batpak visits
    // the events in place, SQLite selects the kind and payload and decodes from the
    // row; each collects the decoded payloads.
    let mut e = 0;
    group.bench_function("batpak", |b| {
        let filled = filled();
        b.iter(|| {
            let mut decoded: Vec<OrderPlaced> = Vec::with_capacity(per_entity as usize);
            filled
                .store
                .visit_stream(&inputs.names[e % ENTITIES], |ev| {
                    decoded.push(ev.decode::<OrderPlaced>()?);
                    Ok(())
                })
                .unwrap();
            e += 1;
            debug_assert_eq!(decoded.len() as u64, per_entity);
            black_box(decoded)
        });
    });
    // The owned read (`stream`: every event copied out, then decoded), for reference.
    let mut e = 0;
    group.bench_function("batpak_owned", |b| {
        let filled = filled();
        b.iter(|| {
            let events = filled.store.stream(&inputs.names[e % ENTITIES]).unwrap();
            e += 1;
            let decoded: Vec<OrderPlaced> = events
                .iter()
                .map(|ev| ev.decode::<OrderPlaced>().unwrap())
                .collect();
            black_box(decoded)
        });
    });
    let mut e = 0;
    group.bench_function("sqlite", |b| {
        let filled = filled();
        b.iter(|| {
            let mut decoded: Vec<OrderPlaced> = Vec::with_capacity(per_entity as usize);
            filled
                .db
                .fold_payloads(&inputs.names[e % ENTITIES], |kind, bytes| {
                    if kind != OrderPlaced::KIND.bits() {
                        return Err("another kind".into());
                    }
                    decoded.push(rmp_serde::from_slice(bytes)?);
                    Ok(())
                })
                .unwrap();
            e += 1;
            debug_assert_eq!(decoded.len() as u64, per_entity);
            black_box(decoded)
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .without_plots()
}

/// Walks 1,000 ancestors of an entity's newest event, verifying every link, in stores
/// of 50 entities x 1,000 interleaved events: batpak follows its chain; SQLite looks up
/// (entity, version - 1) per step and recomputes each row's hash.
fn walk_1000_ancestors(c: &mut Criterion) {
    const WALK: usize = 1_000;
    const WALKED: usize = 50;
    let inputs = Inputs::new();
    let (_batpak_dir, store) = batpak_store(SyncPolicy::Never);
    let (_sqlite_dir, mut db) = sqlite_db(Synchronous::Off);
    let mut heads = vec![(EventId::from_u128(0), [0u8; 16]); WALKED];
    for round in 0..WALK {
        let mut batch = Batch::new();
        let mut items = Vec::with_capacity(WALKED);
        for e in 0..WALKED {
            batch
                .push(
                    &inputs.coords[e],
                    &inputs.payloads[e],
                    AppendOptions::default(),
                )
                .unwrap();
            items.push((inputs.names[e].as_str(), &inputs.payloads[e]));
        }
        let ours = store.append_batch(&batch).unwrap();
        let theirs = db.append_batch(SCOPE, &items).unwrap();
        if round == WALK - 1 {
            for e in 0..WALKED {
                heads[e] = (ours[e].event_id, theirs[e].id);
            }
        }
    }
    let mut group = c.benchmark_group("walk_1000_ancestors");
    group.throughput(Throughput::Elements(WALK as u64));
    let mut e = 0;
    group.bench_function("batpak", |b| {
        b.iter(|| {
            let walk = store
                .walk_ancestors(heads[e % WALKED].0, WALK)
                .unwrap()
                .unwrap();
            e += 1;
            assert!(walk.broken.is_none() && walk.events.len() == WALK);
            black_box(walk)
        });
    });
    let mut e = 0;
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            let walk = db.walk_ancestors(&heads[e % WALKED].1, WALK).unwrap();
            e += 1;
            assert_eq!(walk.len(), WALK);
            black_box(walk)
        });
    });
    group.finish();
}

/// Opens a cleanly closed store of 1,000,000 events: from its checkpoint, and by a full
/// rebuild with the checkpoint removed (read-only opens, so nothing is rewritten).
fn open_1m(c: &mut Criterion) {
    const EVENTS: usize = 1_000_000;
    let inputs = Inputs::new();
    let (dir, store) = batpak_store(SyncPolicy::Never);
    for first in (0..EVENTS).step_by(BATCH) {
        let mut batch = Batch::new();
        for i in first..first + BATCH {
            let e = i % ENTITIES;
            batch
                .push(
                    &inputs.coords[e],
                    &inputs.payloads[e],
                    AppendOptions::default(),
                )
                .unwrap();
        }
        store.append_batch(&batch).unwrap();
    }
    store.close().unwrap();
    let mut group = c.benchmark_group("open_1m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("checkpoint", |b| {
        b.iter(|| {
            let store = Store::open_read_only(dir.path()).unwrap();
            // The events and the record of their kind's name.
            assert_eq!(store.open_report().events, EVENTS as u64 + 1);
            black_box(store)
        });
    });
    let ckpt = dir.path().join("index.ckpt");
    std::fs::rename(&ckpt, dir.path().join("saved.ckpt")).unwrap();
    group.bench_function("rebuild", |b| {
        b.iter(|| black_box(Store::open_read_only(dir.path()).unwrap()));
    });
    std::fs::rename(dir.path().join("saved.ckpt"), &ckpt).unwrap();
    group.finish();
}

/// A running total over the payloads of one entity.
#[derive(Clone, Default)]
struct Total {
    cents: u64,
    units: u64,
}

impl Projection for Total {
    const NAME: &'static str = "total";
    const KINDS: &'static [batpak::EventKind] = &[<OrderPlaced as EventPayload>::KIND];

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        let o: OrderPlaced = event.decode()?;
        self.cents += o.price_cents * u64::from(o.qty);
        self.units += u64::from(o.qty);
        Ok(())
    }
}

/// `Total`, persisted as snapshots.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct SavedTotal {
    cents: u64,
    units: u64,
}

impl Projection for SavedTotal {
    const NAME: &'static str = "saved-total";
    const KINDS: &'static [batpak::EventKind] = &[<OrderPlaced as EventPayload>::KIND];
    const PERSIST: bool = true;

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        let o: OrderPlaced = event.decode()?;
        self.cents += o.price_cents * u64::from(o.qty);
        self.units += u64::from(o.qty);
        Ok(())
    }

    fn to_snapshot(&self) -> Option<Vec<u8>> {
        rmp_serde::to_vec(self).ok()
    }

    fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        rmp_serde::from_slice(bytes).ok()
    }
}

/// A projection over one entity of 100,000 events: cold (no cache: every event read
/// and decoded), cached (nothing new), and after one more append; SQLite reads and
/// folds the same rows.
fn projection_100k(c: &mut Criterion) {
    const EVENTS: usize = 100_000;
    let inputs = Inputs::new();
    let (dir, store) = batpak_store(SyncPolicy::Never);
    let (_sqlite_dir, mut db) = sqlite_db(Synchronous::Off);
    for first in (0..EVENTS).step_by(BATCH) {
        let mut batch = Batch::new();
        let mut items = Vec::with_capacity(BATCH);
        for i in first..first + BATCH {
            let p = &inputs.payloads[i % ENTITIES];
            batch
                .push(&inputs.coords[0], p, AppendOptions::default())
                .unwrap();
            items.push((inputs.names[0].as_str(), p));
        }
        store.append_batch(&batch).unwrap();
        db.append_batch(SCOPE, &items).unwrap();
    }
    store.close().unwrap();
    let entity = inputs.names[0].as_str();
    let mut group = c.benchmark_group("projection_100k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    let cold = Store::builder(dir.path())
        .projection_cache(0)
        .open()
        .unwrap();
    group.bench_function("batpak", |b| {
        b.iter(|| {
            black_box(
                cold.project::<Total>(entity, Freshness::Consistent)
                    .unwrap(),
            )
        });
    });
    drop(cold);
    // SQLite as a user would fold: only kind and payload, decoded from the row.
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            let mut total = Total::default();
            db.fold_payloads(entity, |kind, bytes| {
                if kind != OrderPlaced::KIND.bits() {
                    return Err("another kind".into());
                }
                let o: OrderPlaced = rmp_serde::from_slice(bytes)?;
                total.cents += o.price_cents * u64::from(o.qty);
                total.units += u64::from(o.qty);
                Ok(())
            })
            .unwrap();
            black_box(total.cents + total.units)
        });
    });
    // The floor: the same payloads decoded and folded from memory in a tight loop.
    let encoded: Vec<Vec<u8>> = (0..EVENTS)
        .map(|i| inputs.payloads[i % ENTITIES].encode().unwrap())
        .collect();
    group.bench_function("decode_floor", |b| {
        b.iter(|| {
            let mut total = Total::default();
            for bytes in &encoded {
                let o: OrderPlaced = rmp_serde::from_slice(bytes).unwrap();
                total.cents += o.price_cents * u64::from(o.qty);
                total.units += u64::from(o.qty);
            }
            black_box(total.cents + total.units)
        });
    });
    group.throughput(Throughput::Elements(1));
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    store
        .project::<Total>(entity, Freshness::Consistent)
        .unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| {
            black_box(
                store
                    .project::<Total>(entity, Freshness::Consistent)
                    .unwrap(),
            )
        });
    });
    group.bench_function("after_one_append", |b| {
        b.iter(|| {
            store
                .append(&inputs.coords[0], &inputs.payloads[0])
                .unwrap();
            black_box(
                store
                    .project::<Total>(entity, Freshness::Consistent)
                    .unwrap(),
            )
        });
    });
    // The first call after a restart, resuming from a persisted snapshot (the store
    // open itself is not timed).
    store
        .project::<SavedTotal>(entity, Freshness::Consistent)
        .unwrap();
    store.close().unwrap();
    group.bench_function("restart_with_snapshot", |b| {
        // The store is opened, and dropped, outside the timing.
        b.iter_batched_ref(
            || Store::open_read_only(dir.path()).unwrap(),
            |fresh| {
                black_box(
                    fresh
                        .project::<SavedTotal>(entity, Freshness::Consistent)
                        .unwrap(),
                )
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// The projection `decide` reads: units ordered so far.
#[derive(Clone, Default)]
struct Stock {
    units: u64,
}

impl Projection for Stock {
    const NAME: &'static str = "stock";
    const KINDS: &'static [batpak::EventKind] = &[<OrderPlaced as EventPayload>::KIND];

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        self.units += u64::from(event.decode::<OrderPlaced>()?.qty);
        Ok(())
    }
}

fn stock_gates() -> GateSet<u64> {
    GateSet::new()
        .with(gate("positive", |units: &u64| {
            if *units < u64::MAX / 2 {
                Ok(())
            } else {
                Err(Denial::new("overflow", "too many"))
            }
        }))
        .with(gate("limit", |units: &u64| {
            if *units < u64::MAX / 4 {
                Ok(())
            } else {
                Err(Denial::new("limit", "over the limit"))
            }
        }))
        .with(gate("sane", |_: &u64| Ok(())))
}

/// Decide-and-commit on one hot entity (durable, `SyncPolicy::Always`) with 1, 4 and
/// 16 threads: every decision projects, runs three gates and appends with the expected
/// version, retrying on conflicts. And the gates' own cost: `propose` through three
/// gates against a plain append (no fsync).
fn gates_bench(c: &mut Criterion) {
    let inputs = Inputs::new();
    let mut group = c.benchmark_group("decide_hot_entity");
    group.sample_size(10);
    for threads in [1usize, 4, 16] {
        let (_dir, store) = batpak_store(SyncPolicy::Always);
        let store = Arc::new(store);
        let gates = Arc::new(stock_gates());
        let mut states: Vec<(Arc<Store>, Arc<GateSet<u64>>)> = (0..threads)
            .map(|_| (Arc::clone(&store), Arc::clone(&gates)))
            .collect();
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &mut states, |(store, gates), _, _| {
                    let decision = store
                        .decide::<Stock, OrderPlaced, u64>(
                            &inputs.coords[0],
                            gates,
                            DecideOptions {
                                attempts: 1000,
                                record_denials: false,
                            },
                            |s| (s.map_or(0, |s| s.units), inputs.payloads[0].clone()),
                        )
                        .unwrap();
                    assert!(matches!(decision, Decision::Committed { .. }));
                })
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("gate_overhead");
    group.throughput(Throughput::Elements(1));
    let (_dir, store) = batpak_store(SyncPolicy::Never);
    let gates = stock_gates();
    let mut i = 0;
    group.bench_function("append", |b| {
        b.iter(|| {
            i += 1;
            store
                .append(&inputs.coords[i % ENTITIES], &inputs.payloads[i % ENTITIES])
                .unwrap()
        });
    });
    group.bench_function("propose_3_gates", |b| {
        b.iter(|| {
            i += 1;
            let proposal = Proposal::new(
                inputs.coords[i % ENTITIES].clone(),
                inputs.payloads[i % ENTITIES].clone(),
            );
            store.propose(proposal, &gates, &7).unwrap()
        });
    });
    group.finish();
}

criterion_group! {
    name = journal;
    config = config();
    targets = append_nosync, append_fsync, append_fsync_16_threads, append_batch_1000, reads,
        walk_1000_ancestors, open_1m, projection_100k, gates_bench, signing
}
criterion_main!(journal);
