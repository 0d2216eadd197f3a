//! The lossless export form: every stored field survives `ExportLine`, and a preserved
//! import of every line gives a replica (same ids, sequences, timestamps, hashes) on
//! which the source's receipts and anchors hold, store records and redactions
//! included. A line that does not continue the store is refused, writing nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use batpak::gate::{gate, Denial, GateSet, Proposal};
use batpak::proof::{AnchorCheck, SigningKey};
use batpak::reactor::{Reactions, ReactorOptions};
use batpak::{
    AppendOptions, Batch, Coordinate, Error, EventKind, EventPayload, ExportLine, RawPayload,
    Region, Store, StoredEvent,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 1, type_id = 1, version = 2)]
struct Deposited {
    cents: u64,
    currency: String,
}

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 1, type_id = 2)]
struct Withdrawn {
    cents: u64,
}

fn acct(n: u32) -> Coordinate {
    Coordinate::new(format!("acct:{n}"), "bank").unwrap()
}

fn all(store: &Store) -> Vec<StoredEvent> {
    store
        .query(&Region::all().with_store_records(), 0, usize::MAX)
        .unwrap()
}

fn export(store: &Store) -> Vec<String> {
    all(store)
        .iter()
        .map(|e| serde_json::to_string(&store.export_line(e)).unwrap())
        .collect()
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// A store holding one of everything: typed events under a schema version 2, raw
/// JSON and opaque payloads, metadata, idempotency keys, causation and correlation, a
/// batch, a recorded denial, a bypass audit, a redaction, a reactor's records and the
/// kind-name records; receipts signed.
fn store_with_every_record_kind(
    dir: &std::path::Path,
) -> (std::sync::Arc<Store>, batpak::AppendReceipt) {
    let store = std::sync::Arc::new(Store::builder(dir).signing_key(key()).open().unwrap());
    let first = store
        .append_with(
            &acct(1),
            &Deposited {
                cents: 500,
                currency: "USD".into(),
            },
            AppendOptions::default()
                .idempotency_key("dep-1")
                .meta("user", "ada"),
        )
        .unwrap();
    let mut batch = Batch::new();
    let a = batch
        .push(&acct(2), &Withdrawn { cents: 5 }, AppendOptions::default())
        .unwrap();
    batch
        .push(
            &acct(1),
            &Withdrawn { cents: 7 },
            AppendOptions::default()
                .caused_by_item(a)
                .correlation(first.event_id),
        )
        .unwrap();
    store.append_batch(&batch).unwrap();
    store
        .append_raw(
            &acct(3),
            EventKind::custom(2, 9),
            RawPayload::opaque(&[0, 255, 1, 2]),
            AppendOptions::default().caused_by(first.event_id),
        )
        .unwrap();
    let noted = store
        .append_raw(
            &acct(3),
            EventKind::custom(2, 8),
            RawPayload::json(br#"{"x":2.142432124454614e-153}"#),
            AppendOptions::default(),
        )
        .unwrap();
    let gates: GateSet<u64> = GateSet::new().with(gate("none", |_: &u64| {
        Err(Denial::new("none", "no withdrawals today"))
    }));
    store
        .propose(
            Proposal::new(acct(1), Withdrawn { cents: 9 }).recording_denials(),
            &gates,
            &0,
        )
        .unwrap();
    store
        .bypass(
            Proposal::new(acct(2), Withdrawn { cents: 1 }),
            "court order",
            Some("ops:bo".into()),
        )
        .unwrap();
    store.redact(noted.event_id, "asked to forget").unwrap();
    let handle = store
        .react(
            "echo",
            Region::all().kind(Withdrawn::KIND),
            ReactorOptions::default(),
            |e: &StoredEvent, out: &mut Reactions| {
                if let Some(w) = e.decode_if::<Withdrawn>()? {
                    out.emit(&acct(9), &Withdrawn { cents: w.cents })?;
                }
                Ok(())
            },
        )
        .unwrap();
    let end = store.frontier().written;
    handle.wait_for(end, Duration::from_secs(30));
    handle.stop();
    (store, first)
}

#[test]
fn a_preserved_import_of_every_record_kind_is_a_replica() {
    let src = tempfile::tempdir().unwrap();
    let (store, signed) = store_with_every_record_kind(src.path());
    let events = all(&store);
    let kinds: std::collections::BTreeSet<u8> = events.iter().map(|e| e.kind.category()).collect();
    assert!(kinds.contains(&0) && kinds.contains(&1) && kinds.contains(&2));
    for type_id in [1, 2, 3, 4, 7] {
        assert!(
            events
                .iter()
                .any(|e| e.kind == EventKind::custom(0, type_id)),
            "a 0:{type_id} record"
        );
    }
    let lines = export(&store);
    let receipts: Vec<_> = events.iter().map(StoredEvent::receipt).collect();
    let anchor = store.anchor().unwrap();

    let dst = tempfile::tempdir().unwrap();
    let copy = Store::builder(dst.path())
        .trust_key(key().verifying_key())
        .open()
        .unwrap();
    let parsed: Vec<StoredEvent> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<ExportLine>(l)
                .unwrap()
                .to_preserved()
                .unwrap()
        })
        .collect();
    assert_eq!(parsed, events, "every stored field survives the line");
    // Imported in pieces that end on the source's batch boundaries.
    let mut start = 0;
    for end in 1..=parsed.len() {
        if !parsed[end - 1].continues_batch() && (end - start >= 3 || end == parsed.len()) {
            copy.import_preserved(&parsed[start..end]).unwrap();
            start = end;
        }
    }
    assert_eq!(all(&copy), events);
    assert_eq!(
        export(&copy),
        lines,
        "export | import --preserve | export is identical"
    );
    assert!(copy.verify().unwrap().body.is_clean());
    assert!(matches!(
        copy.verify_against(&anchor).unwrap(),
        AnchorCheck::Holds { .. }
    ));
    for r in &receipts {
        assert!(copy.verify_receipt(r).unwrap().is_valid(), "{r:?}");
    }
    assert!(matches!(
        copy.verify_receipt(&signed).unwrap(),
        batpak::proof::ReceiptCheck::Signed { .. }
    ));
    assert_eq!(
        copy.kind_name(Deposited::KIND).as_deref(),
        Some("Deposited")
    );
    let deposit = copy.stream("acct:1").unwrap().remove(0);
    assert_eq!(deposit.schema_version, 2);
    assert_eq!(deposit.metadata.get("user"), Some("ada"));
    // Idempotency keys came along: a retry on the copy returns the original receipt.
    let retry = copy
        .append_with(
            &acct(1),
            &Deposited {
                cents: 500,
                currency: "USD".into(),
            },
            AppendOptions::default()
                .idempotency_key("dep-1")
                .meta("user", "ada"),
        )
        .unwrap();
    assert_eq!(retry.event_id, deposit.id);
    // New appends continue after the imported ids and timestamps.
    let next = copy.append(&acct(1), &Withdrawn { cents: 1 }).unwrap();
    assert!(next.event_id > events.last().unwrap().id);
    assert_eq!(next.sequence, events.last().unwrap().sequence + 1);
    drop(copy);
    let copy = Store::open(dst.path()).unwrap();
    assert!(copy.verify().unwrap().body.is_clean());
}

#[test]
fn a_preserved_line_that_does_not_continue_the_store_is_refused_and_nothing_written() {
    let src = tempfile::tempdir().unwrap();
    let (store, _) = store_with_every_record_kind(src.path());
    let events = all(&store);
    let dst = tempfile::tempdir().unwrap();
    let copy = Store::open(dst.path()).unwrap();

    // A gap: the second event first.
    let err = copy.import_preserved(&events[1..2]).unwrap_err();
    assert!(
        matches!(err, Error::NotPreserved { sequence: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("next sequence is 1"), "{err}");
    // A batch cut before its end.
    let cut = events
        .iter()
        .position(StoredEvent::continues_batch)
        .unwrap();
    copy.import_preserved(&events[..cut]).unwrap();
    let err = copy.import_preserved(&events[cut..=cut]).unwrap_err();
    assert!(err.to_string().contains("nothing follows it"), "{err}");
    // A broken chain link.
    let mut forged = events[cut..=cut + 1].to_vec();
    forged[0].prev_hash = events[0].event_hash();
    let relinked = copy.import_preserved(&forged).unwrap_err();
    assert!(relinked.to_string().contains("links to"), "{relinked}");
    assert_eq!(
        all(&copy).len(),
        cut,
        "nothing of a refused call was written"
    );
}

#[test]
fn a_tampered_line_is_refused_naming_the_field() {
    let src = tempfile::tempdir().unwrap();
    let (store, _) = store_with_every_record_kind(src.path());
    let line = &export(&store)[2];
    let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
    value["timestamp_ns"] = serde_json::json!(value["timestamp_ns"].as_u64().unwrap() + 1);
    let tampered: ExportLine = serde_json::from_value(value).unwrap();
    let why = tampered.to_preserved().unwrap_err();
    assert!(why.contains("`event_hash`"), "{why}");

    let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
    value.as_object_mut().unwrap().remove("salt");
    let why = serde_json::from_value::<ExportLine>(value)
        .unwrap()
        .to_preserved()
        .unwrap_err();
    assert!(why.contains("`salt` is missing"), "{why}");

    let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
    value["metdata"] = serde_json::json!({});
    let err = serde_json::from_value::<ExportLine>(value).unwrap_err();
    assert!(err.to_string().contains("metdata"), "{err}");
}

#[test]
fn a_hand_written_line_has_a_json_payload_and_no_identity() {
    let line: ExportLine = serde_json::from_str(
        r#"{"entity":"acct:1","scope":"bank","kind":"1:2","payload":{"cents":3}}"#,
    )
    .unwrap();
    let (encoding, bytes) = line.payload_bytes().unwrap();
    assert_eq!(encoding, batpak::Encoding::Json);
    assert_eq!(bytes, br#"{"cents":3}"#);
    let why = line.to_preserved().unwrap_err();
    assert!(why.contains("missing"), "{why}");
}

fn arbitrary_event() -> impl Strategy<Value = (Vec<u8>, u8, Vec<(String, String)>, bool)> {
    (
        proptest::collection::vec(any::<u8>(), 0..64),
        0u8..3,
        proptest::collection::vec(("[a-z.]{1,8}", "[ -~é]{0,12}"), 0..4),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any stored event, with any payload bytes, encoding, metadata and redaction,
    /// survives its export line through JSON, and any mutation of the line either
    /// parses to a line that re-serialises to itself or is refused.
    #[test]
    fn export_lines_round_trip((payload, encoding, meta, redact) in arbitrary_event(), cut in 0usize..400) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let raw = match encoding {
            0 => RawPayload::opaque(&payload),
            1 => RawPayload::json(&payload),
            _ => RawPayload::msgpack(&payload),
        };
        let mut options = AppendOptions::default();
        for (k, v) in &meta {
            options = options.meta(k.clone(), v.clone());
        }
        let r = store.append_raw(&acct(1), EventKind::custom(3, 3), raw, options).unwrap();
        if redact {
            store.redact(r.event_id, "p").unwrap();
        }
        for event in all(&store) {
            let text = serde_json::to_string(&store.export_line(&event)).unwrap();
            let line: ExportLine = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(line.to_preserved().unwrap(), event);
            let mut mutated = text.clone();
            let mut at = cut.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1; // metadata may hold multi-byte characters
            }
            mutated.truncate(at);
            if let Ok(again) = serde_json::from_str::<ExportLine>(&mutated) {
                let back = serde_json::to_string(&again).unwrap();
                prop_assert_eq!(serde_json::from_str::<ExportLine>(&back).unwrap(), again);
            }
        }
    }
}
