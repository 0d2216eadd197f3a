//! Typed reads across codecs and schema versions: MessagePack and JSON side by side,
//! older stored versions upcast step by step on every read path, a newer stored
//! version or a missing step rejected with the versions named.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use batpak::{
    AppendOptions, Coordinate, Encoding, Error, EventKind, EventPayload, PayloadValue, RawPayload,
    Region, Store, StoredEvent,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Version 3 of an order line. Version 1 was `{ "qty": u32 }`; version 2 added
/// `currency`; version 3 renamed `qty` to `quantity`.
#[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq)]
#[batpak(category = 4, type_id = 1, version = 3, upcast = OrderLine::upcast_step)]
struct OrderLine {
    quantity: u32,
    currency: String,
}

impl OrderLine {
    fn upcast_step(from: u16, mut v: PayloadValue) -> Result<PayloadValue, String> {
        let obj = v.as_object_mut().ok_or("expected a map")?;
        match from {
            1 => {
                obj.insert("currency".into(), json!("EUR"));
            }
            2 => {
                let qty = obj.remove("qty").ok_or("version 2 without qty")?;
                obj.insert("quantity".into(), qty);
            }
            other => return Err(format!("unknown version {other}")),
        }
        Ok(v)
    }
}

/// Version 3 with a hole: it only knows how to go from 2 to 3.
#[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq)]
#[batpak(category = 4, type_id = 2, version = 3, upcast = Partial::upcast_step)]
struct Partial {
    quantity: u32,
}

impl Partial {
    fn upcast_step(from: u16, v: PayloadValue) -> Result<PayloadValue, String> {
        match from {
            2 => Ok(v),
            other => Err(format!("no step from version {other}")),
        }
    }
}

#[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq)]
#[batpak(category = 4, type_id = 3)]
struct Note {
    text: String,
}

fn raw(store: &Store, kind: EventKind, bytes: &[u8], encoding: Encoding, schema_version: u16) {
    let c = Coordinate::new("order:1", "s").unwrap();
    let payload = RawPayload {
        bytes,
        encoding,
        schema_version,
    };
    store
        .append_raw(&c, kind, payload, AppendOptions::default())
        .unwrap();
}

fn msgpack(v: &serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

#[test]
fn older_versions_are_upcast_on_every_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let k = OrderLine::KIND;
    // Fixtures as older builds of the type wrote them.
    raw(
        &store,
        k,
        &msgpack(&json!({ "qty": 1 })),
        Encoding::MessagePack,
        1,
    );
    raw(
        &store,
        k,
        &msgpack(&json!({ "qty": 2, "currency": "USD" })),
        Encoding::MessagePack,
        2,
    );
    raw(
        &store,
        k,
        br#"{"qty":3,"currency":"GBP"}"#,
        Encoding::Json,
        2,
    );
    let r = store
        .append(
            &Coordinate::new("order:1", "s").unwrap(),
            &OrderLine {
                quantity: 4,
                currency: "JPY".into(),
            },
        )
        .unwrap();
    raw(
        &store,
        k,
        br#"{"quantity":5,"currency":"CHF"}"#,
        Encoding::Json,
        3,
    );
    let want = vec![
        OrderLine {
            quantity: 1,
            currency: "EUR".into(),
        },
        OrderLine {
            quantity: 2,
            currency: "USD".into(),
        },
        OrderLine {
            quantity: 3,
            currency: "GBP".into(),
        },
        OrderLine {
            quantity: 4,
            currency: "JPY".into(),
        },
        OrderLine {
            quantity: 5,
            currency: "CHF".into(),
        },
    ];
    let decode = |events: Vec<StoredEvent>| -> Vec<OrderLine> {
        events
            .iter()
            .map(|e| e.decode::<OrderLine>().unwrap())
            .collect()
    };
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(decode(store.stream("order:1").unwrap()), want);
    assert_eq!(
        decode(store.query(&Region::all().kind(k), 0, 100).unwrap()),
        want
    );
    assert_eq!(
        store
            .get(r.event_id)
            .unwrap()
            .unwrap()
            .decode::<OrderLine>()
            .unwrap(),
        want[3]
    );
    let first = store.query(&Region::all(), 0, 1).unwrap().remove(0);
    assert_eq!(
        store
            .get(first.id)
            .unwrap()
            .unwrap()
            .decode::<OrderLine>()
            .unwrap(),
        want[0]
    );
}

#[test]
fn a_newer_stored_version_or_a_missing_step_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    raw(
        &store,
        OrderLine::KIND,
        &msgpack(&json!({ "quantity": 1, "currency": "EUR", "x": 1 })),
        Encoding::MessagePack,
        4,
    );
    raw(
        &store,
        Partial::KIND,
        &msgpack(&json!({ "quantity": 1 })),
        Encoding::MessagePack,
        1,
    );
    raw(
        &store,
        Partial::KIND,
        &msgpack(&json!({ "quantity": 2 })),
        Encoding::MessagePack,
        2,
    );
    let events = store.stream("order:1").unwrap();
    match events[0].decode::<OrderLine>() {
        Err(Error::Decode {
            id, kind, message, ..
        }) => {
            assert_eq!((id, kind), (events[0].id, OrderLine::KIND));
            assert!(
                message.contains("version 4") && message.contains("version 3"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    match events[1].decode::<Partial>() {
        Err(Error::Decode { message, .. }) => {
            assert!(message.contains("from schema version 1 to 2"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        events[2].decode::<Partial>().unwrap(),
        Partial { quantity: 2 }
    );
}

#[test]
fn json_and_messagepack_side_by_side_and_kind_filtering() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    raw(
        &store,
        Note::KIND,
        br#"{"text":"from json"}"#,
        Encoding::Json,
        1,
    );
    store
        .append(
            &Coordinate::new("order:1", "s").unwrap(),
            &Note {
                text: "typed".into(),
            },
        )
        .unwrap();
    raw(
        &store,
        OrderLine::KIND,
        br#"{"quantity":1,"currency":"EUR"}"#,
        Encoding::Json,
        3,
    );
    raw(&store, Note::KIND, b"\x00\x01", Encoding::Opaque, 1);
    let events = store.stream("order:1").unwrap();
    let notes: Vec<Option<Note>> = events[..3]
        .iter()
        .map(|e| e.decode_if::<Note>().unwrap())
        .collect();
    assert_eq!(
        notes,
        vec![
            Some(Note {
                text: "from json".into()
            }),
            Some(Note {
                text: "typed".into()
            }),
            None
        ]
    );
    match events[3].decode::<Note>() {
        Err(Error::Decode { message, .. }) => assert!(message.contains("opaque"), "{message}"),
        other => panic!("{other:?}"),
    }
    match events[0].decode::<OrderLine>() {
        Err(Error::Decode { message, .. }) => assert!(message.contains("kind"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// Pins the default codec: MessagePack with named fields, as a map.
#[test]
fn golden_bytes_of_a_typed_payload() {
    let bytes = OrderLine {
        quantity: 2,
        currency: "EUR".into(),
    }
    .encode()
    .unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // fixmap(2), "quantity" => 2, "currency" => "EUR"
    assert_eq!(hex, "82a87175616e7469747902a863757272656e6379a3455552");
}
