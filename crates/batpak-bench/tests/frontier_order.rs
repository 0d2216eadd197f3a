//! The frontier's watermarks keep their order: nothing is visible before it is
//! written, and under `SyncPolicy::Always` nothing is visible before it is durable.
//!
//! Both failed before the fix (found by the soak binary): each watermark was raised
//! after the index had published the events it covers, so for a moment
//! `Store::frontier()` (and `Store::stats()`) reported a visible sequence past it.
//! - `Always`: a sync leader publishes the events its fsync covered to the index
//!   (`Writer::sync_and_publish`) and only afterwards, under the durability lock
//!   again, raises `durable_seq` (`Writer::wait_durable`).
//! - `Never`, `EveryN`, `Interval`: `Writer::publish` inserts the new events into the
//!   index and then stores `written`.
//!
//! (crates/batpak/src/writer.rs; now each watermark is raised before the index
//! publishes.) The data was fine; the watermarks lagged, so a reader
//! that sees an event and then calls `wait_for(Watermark::Durable or Written, its
//! sequence)` waits for an event that is already there. `frontier()` reads `visible`
//! first and every watermark only grows, so each failure below is a real instant at
//! which the order was broken, not an artefact of reading three atomics in turn.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batpak::{AppendOptions, Coordinate, EventKind, Frontier, RawPayload, Store, SyncPolicy};

/// Appends from four threads for up to ten seconds; the first frontier for which
/// `broken` holds, if any.
fn first_broken(policy: SyncPolicy, broken: fn(&Frontier) -> bool) -> Option<Frontier> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(policy)
        .open()
        .unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, stop) = (&store, &stop);
            s.spawn(move || {
                let coord = Coordinate::new(format!("e:{t}"), "s").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    store
                        .append_raw(
                            &coord,
                            EventKind::custom(1, 1),
                            RawPayload::opaque(b"x"),
                            AppendOptions::default(),
                        )
                        .unwrap();
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            let f = store.frontier();
            if broken(&f) {
                seen = Some(f);
            }
        }
        stop.store(true, Ordering::Relaxed);
        seen
    })
}

#[test]
fn under_always_visible_never_passes_durable() {
    let seen = first_broken(SyncPolicy::Always, |f| f.visible > f.durable);
    assert!(
        seen.is_none(),
        "under SyncPolicy::Always the frontier showed {seen:?}: visible past durable"
    );
}

#[test]
fn visible_never_passes_written() {
    let seen = first_broken(SyncPolicy::Never, |f| f.visible > f.written);
    assert!(
        seen.is_none(),
        "under SyncPolicy::Never the frontier showed {seen:?}: visible past written"
    );
}
