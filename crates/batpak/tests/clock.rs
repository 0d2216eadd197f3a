//! `StoreBuilder::clock`: tests fix and step the timestamps the store assigns, and
//! timestamps still never go backwards within a store.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use batpak::{Coordinate, EventKind, ManualClock, RawPayload, Store};

const T0: u64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

fn append(store: &Store) -> batpak::AppendReceipt {
    store
        .append_raw(
            &Coordinate::new("e", "s").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::opaque(b"x"),
            batpak::AppendOptions::default(),
        )
        .unwrap()
}

#[test]
fn a_manual_clock_fixes_and_steps_timestamps_and_ids_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = Store::builder(dir.path())
        .clock(clock.clone())
        .open()
        .unwrap();
    let a = append(&store);
    let b = append(&store);
    assert_eq!((a.timestamp_ns, b.timestamp_ns), (T0, T0));
    assert!(
        b.event_id > a.event_id,
        "ids still increase within a millisecond"
    );
    clock.advance(Duration::from_secs(90));
    let c = append(&store);
    assert_eq!(c.timestamp_ns, T0 + 90_000_000_000);
    assert_eq!(c.event_id.unix_millis(), (T0 + 90_000_000_000) / 1_000_000);
    // The clock goes back: the store does not.
    clock.set(T0 - 1_000_000_000);
    let d = append(&store);
    assert_eq!(d.timestamp_ns, c.timestamp_ns);
    assert!(d.event_id > c.event_id);
    let e = store.get(d.event_id).unwrap().unwrap();
    assert_eq!(e.timestamp_ns, c.timestamp_ns);
    store.close().unwrap();
    // Nor across a reopen with a clock set earlier still.
    let store = Store::builder(dir.path())
        .clock(ManualClock::new(T0 - 5_000_000_000))
        .open()
        .unwrap();
    assert_eq!(append(&store).timestamp_ns, c.timestamp_ns);
    assert!(store.verify().unwrap().body.is_clean());
}
