//! Kind names: each derived payload type names its kind, the store records the name
//! the first time the kind is appended, keeps it across reopen and rebuild, and
//! reports (does not follow) a program that names a recorded kind otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use batpak::prelude::*;
use batpak::KindRename;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 4, type_id = 1)]
struct OrderPlaced {
    qty: u32,
}

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 4, type_id = 2, name = "shop.OrderPaid")]
struct Paid {
    cents: u64,
}

/// Kind 4:3 as an older program named it (a hand-written impl, so it is not in this
/// program's registry).
#[derive(Serialize, Deserialize)]
struct Shipped {
    to: String,
}

impl EventPayload for Shipped {
    const KIND: EventKind = EventKind::custom(4, 3);
    const NAME: &'static str = "Shipped";
}

/// Kind 4:3 as this program names it.
#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 4, type_id = 3, name = "Dispatched")]
struct Dispatched {
    to: String,
}

fn c(entity: &str) -> Coordinate {
    Coordinate::new(entity, "shop").unwrap()
}

fn name_records(store: &Store) -> Vec<StoredEvent> {
    store
        .query(
            &Region::all().entity("batpak:kinds").with_store_records(),
            0,
            usize::MAX,
        )
        .unwrap()
}

#[test]
fn a_derived_kind_is_named_after_its_type_or_its_attribute() {
    assert_eq!(OrderPlaced::NAME, "OrderPlaced");
    assert_eq!(Paid::NAME, "shop.OrderPaid");
}

#[test]
fn the_first_append_of_a_kind_records_its_name_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.kind_name(OrderPlaced::KIND), None);
    for qty in 0..5 {
        store.append(&c("order:1"), &OrderPlaced { qty }).unwrap();
    }
    let mut batch = Batch::new();
    batch
        .push(&c("order:1"), &Paid { cents: 9 }, AppendOptions::default())
        .unwrap();
    batch
        .push(
            &c("order:2"),
            &OrderPlaced { qty: 1 },
            AppendOptions::default(),
        )
        .unwrap();
    store.append_batch(&batch).unwrap();
    // Raw bytes carry no name: nothing is recorded for them.
    store
        .append_raw(
            &c("order:1"),
            EventKind::custom(4, 9),
            RawPayload::json(b"{}"),
            AppendOptions::default(),
        )
        .unwrap();

    let records = name_records(&store);
    assert_eq!(records.len(), 2, "one record per named kind");
    assert!(records.iter().all(|e| e.kind == EventKind::custom(0, 7)));
    assert_eq!(
        store.kind_name(OrderPlaced::KIND).as_deref(),
        Some("OrderPlaced")
    );
    assert_eq!(
        store.kind_name(Paid::KIND).as_deref(),
        Some("shop.OrderPaid")
    );
    assert_eq!(store.kind_name(EventKind::custom(4, 9)), None);
    assert_eq!(
        store.kind_name(EventKind::custom(0, 3)).as_deref(),
        Some("batpak.Redaction")
    );
    // The records are the store's: user reads do not see them, and a user entity's
    // version counts only its own events (seven: versions 0 to 6).
    assert_eq!(store.stream("order:1").unwrap().len(), 7);
    assert!(store
        .query(&Region::all(), 0, usize::MAX)
        .unwrap()
        .iter()
        .all(|e| !e.coordinate.entity().starts_with("batpak:")));
    assert_eq!(store.stream("order:1").unwrap().last().unwrap().version, 6);

    // Persisted: a reopen from the checkpoint and a rebuild both know the names.
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.kind_name(Paid::KIND).as_deref(),
        Some("shop.OrderPaid")
    );
    store.close().unwrap();
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.open_report().index,
        batpak::IndexSource::Rebuilt { .. }
    ));
    let names = store.kind_names();
    assert_eq!(
        names.get(&OrderPlaced::KIND).map(String::as_str),
        Some("OrderPlaced")
    );
    store
        .append(&c("order:3"), &OrderPlaced { qty: 2 })
        .unwrap();
    assert_eq!(
        name_records(&store).len(),
        2,
        "not recorded again after reopen"
    );
    assert!(store.open_report().kind_renames.is_empty());
}

#[test]
fn appenders_racing_on_a_new_kind_record_its_name_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for qty in 0..20 {
                    store
                        .append(&c(&format!("order:{t}")), &OrderPlaced { qty })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(name_records(&store).len(), 1);
    // The name record comes before every event of its kind.
    let first_event = store.query(&Region::all(), 0, 1).unwrap().remove(0);
    assert!(name_records(&store)[0].sequence < first_event.sequence);
}

#[test]
fn a_renamed_kind_is_reported_and_keeps_its_recorded_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append(&c("order:1"), &Shipped { to: "Oslo".into() })
        .unwrap();
    assert_eq!(store.kind_name(Shipped::KIND).as_deref(), Some("Shipped"));
    store.close().unwrap();

    // This program's registry names kind 4:3 "Dispatched".
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.open_report().kind_renames,
        vec![KindRename {
            kind: EventKind::custom(4, 3),
            recorded: "Shipped".into(),
            program: "Dispatched".into(),
        }]
    );
    store
        .append(&c("order:1"), &Dispatched { to: "Rome".into() })
        .unwrap();
    assert_eq!(
        store.kind_name(Dispatched::KIND).as_deref(),
        Some("Shipped")
    );
    assert_eq!(name_records(&store).len(), 1, "not silently renamed");
    let json = serde_json::to_value(store.open_report()).unwrap();
    assert_eq!(
        json["kind_renames"],
        serde_json::json!([{"kind": "4:3", "recorded": "Shipped", "program": "Dispatched"}])
    );
}
