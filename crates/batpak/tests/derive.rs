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

mod every_shape {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Inner {
        name: String,
        tags: Vec<String>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Newtype(u64);

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Unit;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Variants {
        Unit,
        Newtype(i32),
        Tuple(u8, String),
        Struct { a: bool, b: Option<f64> },
    }

    /// Every kind of field serde can put into MessagePack.
    #[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq, Clone)]
    #[batpak(category = 9, type_id = 99)]
    struct Everything {
        b: bool,
        u8_: u8,
        u16_: u16,
        u32_: u32,
        u64_: u64,
        i8_: i8,
        i16_: i16,
        i32_: i32,
        i64_: i64,
        f32_: f32,
        f64_: f64,
        ch: char,
        text: String,
        empty: String,
        bytes: Vec<u8>,
        some: Option<u32>,
        none: Option<u32>,
        tuple: (u8, i64, String),
        array: [u16; 4],
        list: Vec<Inner>,
        map: BTreeMap<String, i32>,
        hash: HashMap<u32, Vec<bool>>,
        nested: Inner,
        newtype: Newtype,
        unit: Unit,
        unit_tuple: (),
        variants: Vec<Variants>,
    }

    fn sample() -> Everything {
        Everything {
            b: true,
            u8_: u8::MAX,
            u16_: u16::MAX,
            u32_: u32::MAX,
            u64_: u64::MAX,
            i8_: i8::MIN,
            i16_: i16::MIN,
            i32_: i32::MIN,
            i64_: i64::MIN,
            f32_: 1.5,
            f64_: -2.25e300,
            ch: 'é',
            text: "日本語 text".into(),
            empty: String::new(),
            bytes: vec![0, 1, 255],
            some: Some(7),
            none: None,
            tuple: (1, -2, "three".into()),
            array: [1, 2, 3, 65535],
            list: vec![Inner {
                name: "a".into(),
                tags: vec!["x".into(), "y".into()],
            }],
            map: [("k".to_string(), -1), ("z".to_string(), 26)]
                .into_iter()
                .collect(),
            hash: [(3u32, vec![true, false])].into_iter().collect(),
            nested: Inner {
                name: "n".into(),
                tags: vec![],
            },
            newtype: Newtype(42),
            unit: Unit,
            unit_tuple: (),
            variants: vec![
                Variants::Unit,
                Variants::Newtype(-5),
                Variants::Tuple(9, "t".into()),
                Variants::Struct {
                    a: false,
                    b: Some(0.5),
                },
                Variants::Struct { a: true, b: None },
            ],
        }
    }

    #[test]
    fn every_serde_shape_round_trips_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let value = sample();
        let r = store
            .append(&Coordinate::new("all:1", "s").unwrap(), &value)
            .unwrap();
        store.close().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let back: Everything = store.get(r.event_id).unwrap().unwrap().decode().unwrap();
        assert_eq!(back, value);
    }
}
