//! Borrowed reads: `visit_stream` and `visit_query` hand each event as an `EventView`
//! read in place. They see exactly what `stream` and `query` return, decode the same,
//! hash the same, and allocate nothing per event; and a reused batch appends without
//! an allocation per item.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use batpak::{
    AppendOptions, Batch, Coordinate, Error, EventPayload, Metadata, Region, Store, StoredEvent,
};
use serde::{Deserialize, Serialize};

/// Counts the allocations of the thread that asks (other test threads run meanwhile).
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

#[expect(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only forwards to System and counts"
)]
// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// const-initialised thread local, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq, Clone)]
#[batpak(category = 1, type_id = 1)]
struct Placed {
    sku: String,
    qty: u32,
}

#[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq)]
#[batpak(category = 1, type_id = 2)]
struct Cancelled {
    why: String,
}

fn placed(i: u32) -> Placed {
    Placed {
        sku: format!("SKU-{i:04}"),
        qty: i % 9 + 1,
    }
}

/// A store with two entities interleaved, one event carrying metadata, one causal link.
fn filled() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = Coordinate::new("order:a", "shop").unwrap();
    let b = Coordinate::new("order:b", "shop").unwrap();
    let mut batch = Batch::new();
    for i in 0..40 {
        let c = if i % 2 == 0 { &a } else { &b };
        batch.push(c, &placed(i), AppendOptions::default()).unwrap();
    }
    store.append_batch(&batch).unwrap();
    let first = store.stream("order:a").unwrap()[0].id;
    let metadata = Metadata::new().with("who", "alice");
    store
        .append_with(
            &a,
            &Cancelled { why: "late".into() },
            AppendOptions {
                metadata,
                ..AppendOptions::default()
            }
            .caused_by(first),
        )
        .unwrap();
    (dir, store)
}

#[test]
fn a_visit_sees_what_stream_returns_field_by_field() {
    let (_dir, store) = filled();
    for entity in ["order:a", "order:b"] {
        let owned = store.stream(entity).unwrap();
        let mut seen: Vec<StoredEvent> = Vec::new();
        let n = store
            .visit_stream(entity, |e| {
                let copy = e.to_stored()?;
                assert_eq!(e.payload(), copy.payload.as_slice());
                assert_eq!(e.id(), copy.id);
                assert_eq!(e.sequence(), copy.sequence);
                assert_eq!(e.version(), copy.version);
                assert_eq!(e.timestamp_ns(), copy.timestamp_ns);
                assert_eq!(e.kind(), copy.kind);
                assert_eq!(e.coordinate(), &copy.coordinate);
                assert_eq!(e.causation(), copy.causation);
                assert_eq!(e.correlation(), copy.correlation);
                assert_eq!(e.encoding(), copy.encoding);
                assert_eq!(e.schema_version(), copy.schema_version);
                assert_eq!(e.prev_hash(), copy.prev_hash);
                assert_eq!(e.metadata()?, copy.metadata);
                assert_eq!(e.has_metadata(), !copy.metadata.is_empty());
                assert_eq!(e.event_hash(), copy.event_hash());
                assert_eq!(e.continues_batch(), copy.continues_batch());
                seen.push(copy);
                Ok(())
            })
            .unwrap();
        assert_eq!(n, owned.len());
        assert_eq!(seen, owned);
    }
    // The chain links as the views say: each event's hash is the next one's prev_hash.
    let mut prev = None;
    store
        .visit_stream("order:a", |e| {
            if let Some(p) = prev {
                assert_eq!(e.prev_hash(), p);
            }
            prev = Some(e.event_hash());
            Ok(())
        })
        .unwrap();
}

#[test]
fn views_decode_like_stored_events() {
    let (_dir, store) = filled();
    let mut placed_seen = 0;
    let mut cancelled = None;
    store
        .visit_stream("order:a", |e| {
            if let Some(p) = e.decode_if::<Placed>()? {
                assert_eq!(p, placed(2 * placed_seen));
                placed_seen += 1;
            } else {
                cancelled = Some(e.decode::<Cancelled>()?);
                let err = e.decode::<Placed>().unwrap_err();
                assert!(
                    err.to_string().contains("is not the requested type's kind"),
                    "{err}"
                );
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(placed_seen, 20);
    assert_eq!(cancelled.unwrap().why, "late");
}

#[test]
fn visit_query_pages_like_query() {
    let (_dir, store) = filled();
    let region = Region::all().scope("shop");
    let owned = store.query(&region, 5, 7).unwrap();
    let mut seqs = Vec::new();
    let n = store
        .visit_query(&region, 5, 7, |e| {
            seqs.push(e.sequence());
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 7);
    assert_eq!(seqs, owned.iter().map(|e| e.sequence).collect::<Vec<_>>());
}

#[test]
fn an_error_from_the_callback_stops_the_visit_and_is_returned() {
    let (_dir, store) = filled();
    let mut calls = 0;
    let err = store
        .visit_stream("order:b", |_| {
            calls += 1;
            if calls == 3 {
                return Err(Error::InvalidConfig {
                    reason: "stop here".into(),
                });
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(calls, 3);
    assert!(err.to_string().contains("stop here"), "{err}");
}

#[test]
fn a_redacted_event_is_seen_without_its_payload() {
    let (_dir, store) = filled();
    let target = store.stream("order:b").unwrap()[1].clone();
    store.redact(target.id, "customer asked").unwrap();
    let mut found = false;
    store
        .visit_stream("order:b", |e| {
            if e.id() == target.id {
                found = true;
                assert!(e.is_redacted());
                assert!(e.payload().is_empty());
                assert!(matches!(
                    e.decode::<Placed>(),
                    Err(Error::Redacted { id, .. }) if id == target.id
                ));
                assert_eq!(e.decode_if::<Placed>().unwrap(), None);
                // The hash still holds: the digest stands in for the payload.
                assert_eq!(e.event_hash(), target.event_hash());
            }
            Ok(())
        })
        .unwrap();
    assert!(found);
}

#[test]
fn a_visit_allocates_nothing_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let short = Coordinate::new("order:short", "shop").unwrap();
    let long = Coordinate::new("order:long", "shop").unwrap();
    let mut batch = Batch::new();
    for i in 0..3000 {
        let c = if i % 30 == 0 { &short } else { &long };
        batch.push(c, &placed(i), AppendOptions::default()).unwrap();
    }
    store.append_batch(&batch).unwrap();
    let visit = |entity: &str| {
        let mut qty = 0u64;
        let n = store
            .visit_stream(entity, |e| {
                qty += u64::from(e.decode::<Placed>()?.qty);
                Ok(())
            })
            .unwrap();
        assert!(qty >= n as u64);
        n
    };
    assert_eq!((visit("order:short"), visit("order:long")), (100, 2900));
    // A visit costs a handful of allocations (the region, the list of places to read,
    // grown a few times), whatever its length; decoding `Placed` allocates its `sku`.
    let short_visit = allocations(|| {
        visit("order:short");
    });
    let long_visit = allocations(|| {
        visit("order:long");
    });
    let per_event_decode = 1;
    let fixed = |n: u64, total: u64| total - n * per_event_decode;
    for (n, total) in [(100, short_visit), (2900, long_visit)] {
        assert!(
            fixed(n, total) <= 32,
            "a visit of {n} events made {total} allocations, {} beyond decoding",
            fixed(n, total)
        );
    }
    // Against the owned read, which copies every event out.
    let owned = allocations(|| drop(store.stream("order:long").unwrap()));
    assert!(owned >= 2900, "stream made only {owned} allocations");
}

#[test]
fn a_read_across_many_entities_names_each_events_own_coordinate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coords: Vec<Coordinate> = (0..40)
        .map(|i| Coordinate::new(format!("order:{i}"), format!("tenant:{}", i % 3)).unwrap())
        .collect();
    let mut batch = Batch::new();
    for round in 0..5 {
        for (i, c) in coords.iter().enumerate() {
            batch
                .push(
                    c,
                    &placed((round * 40 + i) as u32),
                    AppendOptions::default(),
                )
                .unwrap();
        }
    }
    store.append_batch(&batch).unwrap();
    let mut seen = 0;
    store
        .visit_query(&Region::all(), 0, usize::MAX, |e| {
            let i = seen % 40;
            assert_eq!(e.coordinate(), &coords[i], "event {}", e.sequence());
            assert_eq!(e.decode::<Placed>()?, placed(seen as u32));
            seen += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, 200);
    let owned = store.query(&Region::all(), 0, usize::MAX).unwrap();
    for (k, e) in owned.iter().enumerate() {
        assert_eq!(e.coordinate, coords[k % 40]);
    }
}

#[test]
fn a_reused_batch_appends_without_an_allocation_per_item() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coords: Vec<Coordinate> = (0..50)
        .map(|i| Coordinate::new(format!("order:{i}"), "shop").unwrap())
        .collect();
    let payloads: Vec<Placed> = (0..50).map(placed).collect();
    let mut batch = Batch::with_capacity(1000);
    let fill_and_append = |batch: &mut Batch| {
        batch.clear();
        for i in 0..1000 {
            batch
                .push(&coords[i % 50], &payloads[i % 50], AppendOptions::default())
                .unwrap();
        }
        store.append_batch(batch).unwrap().len()
    };
    // Warm: the batch's buffers, the writer's frame buffer and the index columns grow.
    for _ in 0..3 {
        fill_and_append(&mut batch);
    }
    let made = allocations(|| {
        assert_eq!(fill_and_append(&mut batch), 1000);
    });
    // Per batch: the receipts, the writer's per-batch lists and maps, amortised column
    // growth; never one per item (that would be 1,000 or more).
    eprintln!("a batch of 1,000 made {made} allocations");
    assert!(made < 100, "a batch of 1,000 made {made} allocations");
}
