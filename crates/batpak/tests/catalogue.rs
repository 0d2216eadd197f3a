//! The catalogue beside store records and typed kinds, reverse reads, and time
//! ranges over timestamps a manual clock sets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use batpak::prelude::*;
use batpak::ManualClock;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 3, type_id = 1)]
struct Opened {
    n: u64,
}

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 3, type_id = 2, name = "shop.Closed")]
struct Closed {
    n: u64,
}

const T0: u64 = 1_800_000_000_000_000_000;
const SECOND: u64 = 1_000_000_000;

/// Ten accounts opened a second apart, every other one closed in the same second,
/// the first opening redacted (a store record on `batpak:redactions`).
fn store(dir: &std::path::Path) -> (Store, ManualClock) {
    let clock = ManualClock::new(T0);
    let store = Store::builder(dir).clock(clock.clone()).open().unwrap();
    let mut first = None;
    for n in 0..10u64 {
        let c = Coordinate::new(format!("acct:{n}"), if n < 5 { "eu" } else { "us" }).unwrap();
        let r = store.append(&c, &Opened { n }).unwrap();
        first.get_or_insert(r.event_id);
        if n % 2 == 0 {
            store.append(&c, &Closed { n }).unwrap();
        }
        clock.advance(std::time::Duration::from_secs(1));
    }
    store.redact(first.unwrap(), "test").unwrap();
    (store, clock)
}

#[test]
fn the_catalogue_counts_user_events_and_names_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path());
    let entities = store.entities("", None, usize::MAX);
    assert_eq!(
        entities.len(),
        10,
        "the store's own entities are not listed"
    );
    let acct0 = &entities[0];
    assert_eq!(
        (
            acct0.entity.as_str(),
            acct0.version,
            acct0.events,
            acct0.scopes.clone()
        ),
        ("acct:0", 1, 2, vec!["eu".to_string()])
    );
    assert_eq!(store.entity_version("acct:1"), Some(0));
    assert_eq!(store.entity_version("acct:99"), None);
    let own: Vec<String> = store
        .entities("batpak:", None, usize::MAX)
        .into_iter()
        .map(|e| e.entity)
        .collect();
    assert_eq!(own, vec!["batpak:kinds", "batpak:redactions"]);
    let scopes: Vec<(String, u64)> = store
        .scopes()
        .into_iter()
        .map(|s| (s.scope, s.events))
        .collect();
    assert_eq!(scopes, vec![("eu".into(), 8), ("us".into(), 7)]);
    let kinds: Vec<(String, Option<String>, u64)> = store
        .kinds()
        .into_iter()
        .map(|k| (k.kind.to_string(), k.name, k.events))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("0:3".into(), Some("batpak.Redaction".into()), 1),
            ("0:7".into(), Some("batpak.KindNamed".into()), 2),
            ("3:1".into(), Some("Opened".into()), 10),
            ("3:2".into(), Some("shop.Closed".into()), 5),
        ]
    );
    assert_eq!(store.count(&Region::all()).unwrap(), 15);
    assert_eq!(
        store.count(&Region::all().with_store_records()).unwrap(),
        18
    );
}

#[test]
fn reverse_reads_and_time_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path());
    // An entity's last event, and the newest three of a scope, newest first.
    let last = store
        .query_reverse(&Region::all().entity("acct:4"), u64::MAX, 1)
        .unwrap();
    assert_eq!(last[0].kind, Closed::KIND);
    let us: Vec<String> = store
        .query_reverse(&Region::all().scope("us"), u64::MAX, 3)
        .unwrap()
        .iter()
        .map(|e| e.coordinate.entity().to_string())
        .collect();
    assert_eq!(us, vec!["acct:9", "acct:8", "acct:8"]);
    // Seconds 2 to 4: accounts 2, 3 and 4, with the closings of 2 and 4.
    let window = Region::all().times(T0 + 2 * SECOND..T0 + 5 * SECOND);
    let got: Vec<String> = store
        .query(&window, 0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.coordinate.entity().to_string())
        .collect();
    assert_eq!(got, vec!["acct:2", "acct:2", "acct:3", "acct:4", "acct:4"]);
    assert_eq!(store.count(&window).unwrap(), 5);
    assert_eq!(store.count(&window.clone().kind(Closed::KIND)).unwrap(), 2);
    let back = store.query_reverse(&window, u64::MAX, 2).unwrap();
    assert_eq!(back[0].coordinate.entity(), "acct:4");
    assert_eq!(store.count(&Region::all().times(..T0)).unwrap(), 0);
    assert_eq!(
        store
            .count(&Region::all().times(T0 + 100 * SECOND..))
            .unwrap(),
        0
    );
    // Combined with a sequence range, both hold.
    let both = Region::all().times(T0 + 2 * SECOND..).sequences(..8);
    assert!(store
        .query(&both, 0, usize::MAX)
        .unwrap()
        .iter()
        .all(|e| e.sequence < 8 && e.timestamp_ns >= T0 + 2 * SECOND));
    // A time range keeps cursors' canonical text of regions without one.
    assert!(!Region::all().canonical().contains("times"));
    assert!(window.canonical().contains("times"));
    // Lookup by sequence.
    let e = store.get_sequence(3).unwrap().unwrap();
    assert_eq!(e.sequence, 3);
    assert_eq!(store.get_sequence(1_000).unwrap(), None);
}
