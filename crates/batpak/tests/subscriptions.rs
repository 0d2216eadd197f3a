//! Frontier waits and live subscriptions: catch-up then live with no gap and no
//! duplicate, lag signalling and resume, timeouts.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, Coordinate, Error, EventKind, RawPayload, RecvError, Region, Store, SyncPolicy,
    Watermark,
};

const KIND: EventKind = EventKind::custom(1, 1);

fn append(store: &Store, entity: &str, n: u32) -> u64 {
    store
        .append_raw(
            &Coordinate::new(entity, "s").unwrap(),
            KIND,
            RawPayload::opaque(&n.to_le_bytes()),
            AppendOptions::default(),
        )
        .unwrap()
        .sequence
}

fn seqs(events: &[batpak::StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

#[test]
fn catch_up_then_live_with_concurrent_appends_has_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    for i in 0..1_000 {
        append(&store, &format!("order:{}", i % 7), i);
    }
    const MORE: u32 = 3_000;
    let regions = [
        Region::all(),
        Region::all().entity_prefix("order"),
        Region::all().entity("order:3"),
    ];
    let writer_done = std::sync::atomic::AtomicBool::new(false);
    let received: Vec<Vec<u64>> = std::thread::scope(|s| {
        let readers: Vec<_> = regions
            .iter()
            .map(|r| {
                let (store, done) = (&store, &writer_done);
                let r = r.clone();
                s.spawn(move || {
                    let mut sub = store.subscribe_from(r, 1).lag_limit(u64::MAX);
                    let mut got = Vec::new();
                    // Every append is visible on return (`Never`), so a timeout after
                    // the writer finished means everything was delivered.
                    loop {
                        match sub.recv_timeout(Duration::from_millis(50)) {
                            Ok(e) => got.push(e.sequence),
                            Err(RecvError::Timeout)
                                if done.load(std::sync::atomic::Ordering::SeqCst) =>
                            {
                                break
                            }
                            Err(RecvError::Timeout) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    got
                })
            })
            .collect();
        for i in 0..MORE {
            append(&store, &format!("order:{}", i % 7), i);
            if i % 500 == 0 {
                std::thread::yield_now();
            }
        }
        append(&store, "done", 0);
        writer_done.store(true, std::sync::atomic::Ordering::SeqCst);
        readers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (region, got) in regions.iter().zip(&received) {
        let expected = seqs(&store.query(region, 0, usize::MAX).unwrap());
        assert!(expected.len() > 400, "{region:?}");
        assert_eq!(got, &expected, "region {region:?}");
    }
}

#[test]
fn subscribe_starts_now_and_try_recv_and_timeouts_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, "a", 0);
    let mut sub = store.subscribe(Region::all());
    assert!(matches!(sub.try_recv(), Err(RecvError::Empty)));
    let started = Instant::now();
    assert!(matches!(
        sub.recv_timeout(Duration::from_millis(40)),
        Err(RecvError::Timeout)
    ));
    assert!(started.elapsed() >= Duration::from_millis(40));
    let second = append(&store, "a", 1);
    assert_eq!(sub.try_recv().unwrap().sequence, second);
    assert_eq!(sub.position(), second);
    // A live event wakes a blocked receiver.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            append(&store, "b", 2);
        });
        let e = sub.recv().unwrap();
        assert_eq!(e.coordinate.entity(), "b");
    });
}

#[test]
fn a_slow_subscriber_is_told_it_lagged_and_resumes_exactly_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    let mut sub = store.subscribe(Region::all()).lag_limit(10);
    let first = append(&store, "e", 0);
    assert_eq!(sub.recv().unwrap().sequence, first);
    for i in 1..=50 {
        append(&store, "e", i);
    }
    let resume_from = match sub.recv() {
        Err(RecvError::Lagged { resume_from }) => resume_from,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        resume_from,
        first + 1,
        "nothing after the last delivery is lost"
    );
    assert!(
        matches!(sub.recv(), Err(RecvError::Lagged { .. })),
        "the subscription has ended"
    );
    let mut resumed = store.subscribe_from(Region::all(), resume_from);
    let got: Vec<u64> = (0..50).map(|_| resumed.recv().unwrap().sequence).collect();
    assert_eq!(got, (first + 1..=first + 50).collect::<Vec<_>>());
    // The iterator yields the lag once and ends.
    let mut sub = store.subscribe(Region::all()).lag_limit(1);
    assert!(matches!(sub.try_recv(), Err(RecvError::Empty)), "caught up");
    append(&store, "e", 99);
    append(&store, "e", 100);
    let items: Vec<_> = sub.by_ref().take(5).collect();
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Err(RecvError::Lagged { .. })));
}

#[test]
fn catching_up_from_the_start_is_not_lagging() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    for i in 0..2_000 {
        append(&store, "e", i);
    }
    let sub = store.subscribe_from(Region::all(), 1).lag_limit(5);
    let got: Vec<u64> = sub.take(2_000).map(|r| r.unwrap().sequence).collect();
    assert_eq!(got, (1..=2_000).collect::<Vec<_>>());
}

#[test]
fn waits_reach_watermarks_or_time_out_saying_how_far_they_got() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    append(&store, "e", 0);
    let f = store.frontier();
    assert_eq!((f.written, f.visible), (1, 1));
    // Another thread's append satisfies a waiter.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            append(&store, "e", 1);
        });
        let f = store
            .wait_for(Watermark::Visible, 2, Duration::from_secs(10))
            .unwrap();
        assert!(f.visible >= 2);
    });
    // Waiting for durability never syncs by itself.
    let durable = store.frontier().durable;
    match store.wait_for(Watermark::Durable, 2, Duration::from_millis(30)) {
        Err(Error::Timeout {
            watermark: Watermark::Durable,
            wanted: 2,
            reached,
            waited,
        }) => {
            assert_eq!(reached, durable);
            assert!(waited >= Duration::from_millis(30));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.frontier().durable, durable);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            store.sync().unwrap();
        });
        let f = store
            .wait_for(Watermark::Durable, 2, Duration::from_secs(10))
            .unwrap();
        assert_eq!(f.durable, 2);
    });
    let err = store
        .wait_for(Watermark::Written, 10, Duration::from_millis(5))
        .unwrap_err();
    assert!(err.to_string().contains("reached 2"), "{err}");
}

#[test]
fn under_always_events_are_delivered_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sub = store.subscribe(Region::all());
    let seq = append(&store, "e", 0);
    let e = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(e.sequence, seq);
    assert!(store.frontier().durable >= seq);
}

#[derive(Clone, Default, Debug, PartialEq)]
struct Count(u32);

impl batpak::Projection for Count {
    const NAME: &'static str = "count";
    const KINDS: &'static [EventKind] = &[KIND];

    fn apply(&mut self, _: &batpak::EventView<'_>) -> batpak::Result<()> {
        self.0 += 1;
        Ok(())
    }
}

#[test]
fn a_watcher_yields_the_new_state_after_each_relevant_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    append(&store, "acct:1", 0);
    let mut watch = store.watch::<Count>("acct:1");
    assert!(matches!(
        watch.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    ));
    append(&store, "acct:2", 0); // another entity
    store
        .append_raw(
            &Coordinate::new("acct:1", "s").unwrap(),
            EventKind::custom(1, 2), // a kind Count ignores
            RawPayload::opaque(b""),
            AppendOptions::default(),
        )
        .unwrap();
    assert!(matches!(
        watch.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    ));
    append(&store, "acct:1", 1);
    assert_eq!(
        watch.recv_timeout(Duration::from_secs(5)).unwrap(),
        Some(Count(2))
    );
    // A burst gives one state that covers it.
    append(&store, "acct:1", 2);
    append(&store, "acct:1", 3);
    assert_eq!(
        watch.recv_timeout(Duration::from_secs(5)).unwrap(),
        Some(Count(4))
    );
    assert!(matches!(
        watch.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    ));
    // From another thread, live.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            append(&store, "acct:1", 4);
        });
        assert_eq!(watch.recv().unwrap(), Some(Count(5)));
    });
    // Lag semantics are the subscription's.
    let mut watch = store.watch::<Count>("acct:1").lag_limit(2);
    assert!(matches!(
        watch.recv_timeout(Duration::from_millis(5)),
        Err(RecvError::Timeout)
    ));
    for i in 0..5 {
        append(&store, "acct:1", 10 + i);
    }
    assert!(matches!(watch.recv(), Err(RecvError::Lagged { .. })));
}
