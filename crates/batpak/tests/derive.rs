//! `#[derive(EventPayload)]`: the kind and schema version come from the attribute, and
//! every invalid attribute is a compile error that names the rule.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use batpak::{Coordinate, EventKind, EventPayload, Store};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq)]
#[batpak(category = 1, type_id = 7)]
struct OrderPlaced {
    sku: String,
    qty: u32,
}

#[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq)]
#[batpak(category = 15, type_id = 4095, version = 3)]
enum Shipment {
    Packed { parcels: u8 },
    Sent(String),
    Lost,
}

#[test]
fn the_attribute_sets_kind_and_version() {
    assert_eq!(OrderPlaced::KIND, EventKind::custom(1, 7));
    assert_eq!(OrderPlaced::SCHEMA_VERSION, 1);
    assert_eq!(Shipment::KIND, EventKind::custom(15, 4095));
    assert_eq!(Shipment::SCHEMA_VERSION, 3);
}

#[test]
fn derived_payloads_round_trip_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = Coordinate::new("order:1", "s").unwrap();
    let a = store
        .append(
            &c,
            &OrderPlaced {
                sku: "tea".into(),
                qty: 2,
            },
        )
        .unwrap();
    let b = store.append(&c, &Shipment::Sent("dhl".into())).unwrap();
    let a = store.get(a.event_id).unwrap().unwrap();
    let b = store.get(b.event_id).unwrap().unwrap();
    assert_eq!(
        a.decode::<OrderPlaced>().unwrap(),
        OrderPlaced {
            sku: "tea".into(),
            qty: 2
        }
    );
    assert_eq!((b.kind, b.schema_version), (Shipment::KIND, 3));
    assert_eq!(
        b.decode::<Shipment>().unwrap(),
        Shipment::Sent("dhl".into())
    );
}

#[test]
fn invalid_attributes_are_compile_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
