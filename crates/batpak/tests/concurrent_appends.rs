//! `Store` is `Send + Sync`: many threads append and read at once; group commit keeps
//! every receipt durable and every chain intact.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::collections::HashMap;
use std::sync::Arc;

use batpak::{
    AppendOptions, Coordinate, EventKind, ExpectedVersion, Hash, RawPayload, Region, Store,
    SyncPolicy,
};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn store_is_send_and_sync() {
    assert_send_sync::<Store>();
}

#[test]
fn many_threads_append_and_read_at_once() {
    for policy in [SyncPolicy::Always, SyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::builder(dir.path())
                .sync_policy(policy)
                .open()
                .unwrap(),
        );
        let threads = 8;
        let per_thread = 150;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut receipts = Vec::new();
                    for i in 0..per_thread {
                        // Entities shared between threads: chains interleave.
                        let c = Coordinate::new(format!("acct:{}", (t + i) % 5), "s").unwrap();
                        let payload = format!("{t}:{i}");
                        let r = store
                            .append_raw(
                                &c,
                                EventKind::custom(1, 1),
                                RawPayload::opaque(payload.as_bytes()),
                                AppendOptions::default(),
                            )
                            .unwrap();
                        // Our own write is visible at once, from this thread.
                        let got = store.get(r.event_id).unwrap().unwrap();
                        assert_eq!(got.payload, payload.as_bytes());
                        if i % 20 == 0 {
                            let page = store
                                .query(&Region::all().entity_prefix("acct"), 0, 50)
                                .unwrap();
                            assert!(page.windows(2).all(|w| w[0].sequence < w[1].sequence));
                        }
                        receipts.push(r);
                    }
                    receipts
                })
            })
            .collect();
        let receipts: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let total = threads * per_thread;
        let mut seqs: Vec<u64> = receipts.iter().map(|r| r.sequence).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "dense, no duplicates"
        );
        let stats = store.stats().unwrap();
        assert_eq!(stats.events, total as u64);
        if policy == SyncPolicy::Always {
            assert_eq!(stats.durable_sequence, total as u64);
        }
        let mut heads: HashMap<String, (u64, Hash)> = HashMap::new();
        for e in store.query(&Region::all(), 0, usize::MAX).unwrap() {
            let entity = e.coordinate.entity().to_string();
            let (version, prev) = heads
                .get(&entity)
                .map_or((0, Hash::ZERO), |(v, h)| (v + 1, *h));
            assert_eq!((e.version, e.prev_hash), (version, prev));
            heads.insert(entity, (e.version, e.event_hash()));
        }
    }
}

#[test]
fn expected_version_serialises_racing_writers() {
    // Every thread tries to take the next version of one entity; exactly one wins each.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let c = Coordinate::new("counter", "s").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let c = c.clone();
            std::thread::spawn(move || {
                let mut wins = 0;
                for _ in 0..200 {
                    let current = store.stream("counter").unwrap().last().map(|e| e.version);
                    let expected =
                        current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    match store.append_raw(
                        &c,
                        EventKind::custom(1, 1),
                        RawPayload::opaque(b"+"),
                        AppendOptions::expect(expected),
                    ) {
                        Ok(_) => wins += 1,
                        Err(batpak::Error::VersionConflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                wins
            })
        })
        .collect();
    let wins: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(store.stream("counter").unwrap().len(), wins);
}

#[test]
fn batches_appended_together_are_each_atomic_and_share_one_fsync() {
    use batpak::{AppendOptions, Batch, Coordinate, EventKind, ExpectedVersion, RawPayload};
    let dir = tempfile::tempdir().unwrap();
    let store = batpak::Store::open(dir.path()).unwrap();
    let kind = EventKind::custom(1, 1);
    let batch = |entity: &str, n: usize, expect: Option<u64>| {
        let coord = Coordinate::new(entity, "s").unwrap();
        let mut b = Batch::new();
        for i in 0..n {
            let options = match (i, expect) {
                (0, Some(v)) => AppendOptions::expect(ExpectedVersion::Exact(v)),
                _ => AppendOptions::default(),
            };
            b.push_raw(&coord, kind, RawPayload::json(b"{}"), options);
        }
        b
    };
    store
        .append_raw(
            &Coordinate::new("b", "s").unwrap(),
            kind,
            RawPayload::json(b"{}"),
            AppendOptions::default(),
        )
        .unwrap();
    let syncs_before = store.sync_latency().count;
    let results = store.append_batches(&[
        batch("a", 2, None),
        batch("b", 3, Some(7)), // b is at version 0: refused, whole
        Batch::new(),
        batch("c", 1, None),
    ]);
    assert_eq!(results.len(), 4);
    let a = results[0].as_ref().unwrap();
    assert_eq!(a.iter().map(|r| r.version).collect::<Vec<_>>(), [0, 1]);
    assert!(matches!(
        results[1],
        Err(batpak::Error::VersionConflict {
            actual: Some(0),
            ..
        })
    ));
    assert!(matches!(results[2], Err(batpak::Error::EmptyBatch)));
    let c = results[3].as_ref().unwrap();
    assert_eq!(
        c[0].sequence,
        a[1].sequence + 1,
        "no sequence for the refused batch"
    );
    assert_eq!(
        store.stream("b").unwrap().len(),
        1,
        "nothing of the refused batch"
    );
    assert_eq!(store.frontier().durable, c[0].sequence, "durable on return");
    assert_eq!(
        store.sync_latency().count - syncs_before,
        1,
        "one fsync for all of them"
    );
    for receipt in a.iter().chain(c) {
        assert!(store.verify_receipt(receipt).unwrap().is_valid());
    }
    drop(store);
    let store = batpak::Store::open(dir.path()).unwrap();
    assert_eq!(store.stream("a").unwrap().len(), 2);
    assert_eq!(store.stream("c").unwrap().len(), 1);
}

#[test]
fn sixteen_durable_appenders_share_their_fsyncs() {
    const THREADS: usize = 16;
    const EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let before = store.sync_latency().count;
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let c = Coordinate::new(format!("t:{t}"), "s").unwrap();
                barrier.wait();
                for _ in 0..EACH {
                    let r = store
                        .append_raw(
                            &c,
                            EventKind::custom(1, 1),
                            RawPayload::json(b"{}"),
                            AppendOptions::default(),
                        )
                        .unwrap();
                    // Durable on return: the frontier covers it.
                    assert!(store.frontier().durable >= r.sequence);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let syncs = store.sync_latency().count - before;
    let appends = (THREADS * EACH) as u64;
    eprintln!(
        "{appends} durable appends from {THREADS} threads in {syncs} fsyncs: {:.1} per fsync",
        appends as f64 / syncs as f64
    );
    // Group commit: a sync covers several waiting appenders (one each would be 640).
    assert!(
        syncs * 4 <= appends,
        "{syncs} fsyncs for {appends} durable appends from {THREADS} threads"
    );
    assert_eq!(store.count(&Region::all()).unwrap(), appends);
}
