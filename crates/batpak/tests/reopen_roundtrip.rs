//! Reopen returns exactly what was appended, and continues sequences, versions, chains
//! and timestamps exactly.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::collections::HashMap;

use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, Encoding, EventKind, EventPayload, Hash,
    RawPayload, Region, Store, StoredEvent, SyncPolicy,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Shipped {
    carrier: String,
    parcels: Vec<u32>,
}

impl EventPayload for Shipped {
    const KIND: EventKind = EventKind::custom(3, 17);
    const SCHEMA_VERSION: u16 = 4;
}

struct Expected {
    receipt: AppendReceipt,
    coordinate: Coordinate,
    kind: EventKind,
    encoding: Encoding,
    schema_version: u16,
    payload: Vec<u8>,
    causation: Option<batpak::EventId>,
    correlation: Option<batpak::EventId>,
}

fn check(event: &StoredEvent, e: &Expected) {
    assert_eq!(event.receipt(), e.receipt);
    assert_eq!(event.coordinate, e.coordinate);
    assert_eq!(event.kind, e.kind);
    assert_eq!(event.encoding, e.encoding);
    assert_eq!(event.schema_version, e.schema_version);
    assert_eq!(event.payload, e.payload);
    assert_eq!(event.causation, e.causation);
    assert_eq!(event.correlation, e.correlation);
}

#[test]
fn reopen_returns_exactly_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected: Vec<Expected> = Vec::new();
    {
        // Small segments so the history spans several files.
        let store = Store::builder(dir.path())
            .segment_size(4096)
            .open()
            .unwrap();
        let mut root = None;
        for i in 0..60u32 {
            let entity = format!("parcel:{}", i % 7);
            let coord = Coordinate::new(&entity, format!("tenant:{}", i % 2)).unwrap();
            let mut opts = AppendOptions::default();
            if let Some(r) = root {
                if i % 3 == 0 {
                    opts = opts.caused_by(r);
                }
                if i % 4 == 0 {
                    opts = opts.correlation(r);
                }
            }
            if i % 5 == 0 {
                opts = opts.idempotency_key(format!("k{i}"));
            }
            let (receipt, kind, encoding, schema, payload) = if i % 2 == 0 {
                let body = Shipped {
                    carrier: "dhl".into(),
                    parcels: vec![i, i + 1],
                };
                let r = store.append_with(&coord, &body, opts.clone()).unwrap();
                (
                    r,
                    Shipped::KIND,
                    Encoding::MessagePack,
                    4,
                    rmp_serde::to_vec_named(&body).unwrap(),
                )
            } else {
                let json = format!("{{\"n\":{i}}}").into_bytes();
                let r = store
                    .append_raw(
                        &coord,
                        EventKind::custom(2, 5),
                        RawPayload::json(&json),
                        opts.clone(),
                    )
                    .unwrap();
                (r, EventKind::custom(2, 5), Encoding::Json, 1, json)
            };
            root.get_or_insert(receipt.event_id);
            let causation = opts.causation.map(|c| match c {
                batpak::Cause::Event(id) => id,
                batpak::Cause::BatchItem(_) => unreachable!(),
            });
            expected.push(Expected {
                receipt,
                coordinate: coord,
                kind,
                encoding,
                schema_version: schema,
                payload,
                causation,
                correlation: opts.correlation,
            });
        }
        let mut batch = Batch::new();
        let c = Coordinate::new("parcel:0", "tenant:0").unwrap();
        let first = batch.push_raw(
            &c,
            EventKind::custom(1, 1),
            RawPayload::opaque(b"b0"),
            AppendOptions::default(),
        );
        batch.push_raw(
            &c,
            EventKind::custom(1, 2),
            RawPayload::opaque(b"b1"),
            AppendOptions::default().caused_by_item(first),
        );
        let receipts = store.append_batch(&batch).unwrap();
        for (i, r) in receipts.iter().enumerate() {
            expected.push(Expected {
                receipt: *r,
                coordinate: c.clone(),
                kind: EventKind::custom(1, 1 + i as u16),
                encoding: Encoding::Opaque,
                schema_version: 1,
                payload: format!("b{i}").into_bytes(),
                causation: (i == 1).then_some(receipts[0].event_id),
                correlation: None,
            });
        }
        assert!(store.stats().unwrap().segments > 1);
        store.close().unwrap();
    }

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.open_report().tail_cut, None);
    assert_eq!(store.open_report().events, expected.len() as u64);
    for e in &expected {
        check(&store.get(e.receipt.event_id).unwrap().unwrap(), e);
    }
    // Sequences dense, ids and timestamps increasing, chains linked per entity.
    let all = store.query(&Region::all(), 0, usize::MAX).unwrap();
    assert_eq!(all.len(), expected.len());
    let mut heads: HashMap<String, Hash> = HashMap::new();
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event.sequence, i as u64 + 1);
        check(event, &expected[i]);
        if i > 0 {
            assert!(event.id > all[i - 1].id);
            assert!(event.timestamp_ns >= all[i - 1].timestamp_ns);
        }
        let prev = heads.insert(event.coordinate.entity().to_string(), event.event_hash());
        assert_eq!(event.prev_hash, prev.unwrap_or(Hash::ZERO));
    }

    // The store continues exactly where it left off.
    let c = Coordinate::new("parcel:3", "tenant:1").unwrap();
    let last_of_entity = store.stream("parcel:3").unwrap().pop().unwrap();
    let next = store
        .append_raw(
            &c,
            EventKind::custom(1, 1),
            RawPayload::opaque(b"n"),
            AppendOptions::default(),
        )
        .unwrap();
    assert_eq!(next.sequence, expected.len() as u64 + 1);
    assert_eq!(next.version, last_of_entity.version + 1);
    assert_eq!(next.prev_hash, last_of_entity.event_hash());
    assert!(next.event_id > all.last().unwrap().id);
    assert!(next.timestamp_ns >= all.last().unwrap().timestamp_ns);
}

#[test]
fn every_sync_policy_round_trips() {
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::EveryN(3),
        SyncPolicy::Interval(std::time::Duration::from_millis(5)),
        SyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let c = Coordinate::new("e", "s").unwrap();
        let mut receipts = Vec::new();
        {
            let store = Store::builder(dir.path())
                .sync_policy(policy)
                .open()
                .unwrap();
            for i in 0..10u8 {
                let r = store
                    .append_raw(
                        &c,
                        EventKind::custom(1, 1),
                        RawPayload::opaque(&[i]),
                        AppendOptions::default(),
                    )
                    .unwrap();
                // Visible on return under every policy.
                assert_eq!(store.get(r.event_id).unwrap().unwrap().receipt(), r);
                receipts.push(r);
            }
            if policy == SyncPolicy::Always {
                let stats = store.stats().unwrap();
                assert_eq!(stats.durable_sequence, 10, "{policy:?}");
            }
            if let SyncPolicy::Interval(_) = policy {
                std::thread::sleep(std::time::Duration::from_millis(50));
                assert_eq!(
                    store.stats().unwrap().durable_sequence,
                    10,
                    "background sync ran"
                );
            }
            store.sync().unwrap();
            assert_eq!(store.stats().unwrap().durable_sequence, 10);
            // Drop without close: best-effort sync and lock release.
        }
        let store = Store::open(dir.path()).unwrap();
        let got: Vec<_> = store
            .stream("e")
            .unwrap()
            .iter()
            .map(StoredEvent::receipt)
            .collect();
        assert_eq!(got, receipts, "{policy:?}");
    }
}

#[test]
fn a_view_reads_a_store_another_handle_is_writing() {
    let dir = tempfile::tempdir().unwrap();
    let writer = batpak::Store::open(dir.path()).unwrap();
    let c = batpak::Coordinate::new("e", "s").unwrap();
    let kind = batpak::EventKind::custom(1, 1);
    let raw = batpak::RawPayload::opaque(b"x");
    let first = writer
        .append_raw(&c, kind, raw, batpak::AppendOptions::default())
        .unwrap();
    assert!(matches!(
        batpak::Store::open_read_only(dir.path()),
        Err(batpak::Error::Locked { .. })
    ));
    let view = batpak::Store::builder(dir.path()).open_view().unwrap();
    assert_eq!(view.get(first.event_id).unwrap().unwrap().sequence, 1);
    writer
        .append_raw(&c, kind, raw, batpak::AppendOptions::default())
        .unwrap();
    assert_eq!(
        view.stats().unwrap().events,
        1,
        "a view does not follow appends"
    );
    assert!(matches!(
        view.append_raw(&c, kind, raw, batpak::AppendOptions::default()),
        Err(batpak::Error::ReadOnly)
    ));
    drop(view);
    writer.close().unwrap();
}
