//! Bad appends are rejected before anything is written, each with its own error.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use batpak::{
    AppendOptions, Batch, Coordinate, CoordinateRule, Error, EventId, EventKind, EventPayload,
    ExpectedVersion, RawPayload, Store,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Note {
    text: String,
}

impl EventPayload for Note {
    const KIND: EventKind = EventKind::custom(1, 2);
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Internal {
    x: u8,
}

impl EventPayload for Internal {
    const KIND: EventKind = EventKind::custom(0, 9);
}

fn note(text: &str) -> Note {
    Note { text: text.into() }
}

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "scope").unwrap()
}

/// Runs `f`, then checks the store (and its files) did not change.
fn unchanged(store: &Store, f: impl FnOnce()) {
    let before = store.stats().unwrap();
    f();
    assert_eq!(store.stats().unwrap(), before);
}

#[test]
fn expected_version_conflicts_name_entity_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = coord("order:1");
    store
        .append_with(
            &c,
            &note("a"),
            AppendOptions::expect(ExpectedVersion::NoStream),
        )
        .unwrap();
    store
        .append_with(
            &c,
            &note("b"),
            AppendOptions::expect(ExpectedVersion::Exact(0)),
        )
        .unwrap();
    unchanged(&store, || {
        match store.append_with(
            &c,
            &note("c"),
            AppendOptions::expect(ExpectedVersion::Exact(0)),
        ) {
            Err(Error::VersionConflict {
                entity,
                expected,
                actual,
            }) => {
                assert_eq!(entity, "order:1");
                assert_eq!(expected, ExpectedVersion::Exact(0));
                assert_eq!(actual, Some(1));
            }
            other => panic!("{other:?}"),
        }
        let err = store
            .append_with(
                &c,
                &note("c"),
                AppendOptions::expect(ExpectedVersion::NoStream),
            )
            .unwrap_err();
        assert!(err.to_string().contains("order:1"), "{err}");
        match store.append_with(
            &coord("order:2"),
            &note("x"),
            AppendOptions::expect(ExpectedVersion::Exact(3)),
        ) {
            Err(Error::VersionConflict { actual: None, .. }) => {}
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn expected_versions_inside_a_batch_see_earlier_items() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = coord("cart:1");
    let mut batch = Batch::new();
    batch
        .push(
            &c,
            &note("1"),
            AppendOptions::expect(ExpectedVersion::NoStream),
        )
        .unwrap();
    batch
        .push(
            &c,
            &note("2"),
            AppendOptions::expect(ExpectedVersion::Exact(0)),
        )
        .unwrap();
    let receipts = store.append_batch(&batch).unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(receipts[1].prev_hash, receipts[0].event_hash);

    // One failing item rejects the whole batch.
    let mut bad = Batch::new();
    bad.push(&coord("cart:2"), &note("ok"), AppendOptions::default())
        .unwrap();
    bad.push(
        &c,
        &note("stale"),
        AppendOptions::expect(ExpectedVersion::Exact(0)),
    )
    .unwrap();
    unchanged(&store, || {
        assert!(matches!(
            store.append_batch(&bad),
            Err(Error::VersionConflict { .. })
        ));
    });
    assert!(store.stream("cart:2").unwrap().is_empty());
}

#[test]
fn idempotent_retry_returns_the_original_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = coord("pay:1");
    let opts = AppendOptions::default().idempotency_key("req-42");
    let first = store
        .append_with(&c, &note("charge"), opts.clone())
        .unwrap();
    unchanged(&store, || {
        assert_eq!(
            store
                .append_with(&c, &note("charge"), opts.clone())
                .unwrap(),
            first
        );
    });
    // Survives reopen.
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    unchanged(&store, || {
        assert_eq!(
            store
                .append_with(&c, &note("charge"), opts.clone())
                .unwrap(),
            first
        );
        match store.append_with(&c, &note("refund"), opts.clone()) {
            Err(Error::IdempotencyConflict { key, original }) => {
                assert_eq!(key, "req-42");
                assert_eq!(original, first.event_id);
            }
            other => panic!("{other:?}"),
        }
        // Same payload on another entity is different content too.
        assert!(matches!(
            store.append_with(&coord("pay:2"), &note("charge"), opts.clone()),
            Err(Error::IdempotencyConflict { .. })
        ));
    });
}

#[test]
fn idempotent_batch_retry_and_partial_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = Batch::new();
    let a = batch
        .push(
            &coord("x"),
            &note("1"),
            AppendOptions::default().idempotency_key("k1"),
        )
        .unwrap();
    batch
        .push(
            &coord("y"),
            &note("2"),
            AppendOptions::default()
                .idempotency_key("k2")
                .caused_by_item(a),
        )
        .unwrap();
    let receipts = store.append_batch(&batch).unwrap();
    unchanged(&store, || {
        assert_eq!(store.append_batch(&batch).unwrap(), receipts);
        // A batch mixing a used key with a new one is neither a retry nor new.
        let mut mixed = Batch::new();
        mixed
            .push(
                &coord("x"),
                &note("1"),
                AppendOptions::default().idempotency_key("k1"),
            )
            .unwrap();
        mixed
            .push(
                &coord("z"),
                &note("3"),
                AppendOptions::default().idempotency_key("k3"),
            )
            .unwrap();
        assert!(matches!(
            store.append_batch(&mixed),
            Err(Error::IdempotencyConflict { .. })
        ));
        let mut dup = Batch::new();
        dup.push(
            &coord("q"),
            &note("1"),
            AppendOptions::default().idempotency_key("k9"),
        )
        .unwrap();
        dup.push(
            &coord("q"),
            &note("2"),
            AppendOptions::default().idempotency_key("k9"),
        )
        .unwrap();
        assert!(matches!(
            store.append_batch(&dup),
            Err(Error::DuplicateIdempotencyKey { .. })
        ));
    });
}

#[test]
fn causation_must_name_an_existing_event_or_an_earlier_item() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let root = store.append(&coord("a"), &note("root")).unwrap();
    let ghost = EventId::from_u128(root.event_id.as_u128() + 12345);
    unchanged(&store, || {
        match store.append_with(
            &coord("b"),
            &note("x"),
            AppendOptions::default().caused_by(ghost),
        ) {
            Err(Error::UnknownCausation { causation }) => assert_eq!(causation, ghost),
            other => panic!("{other:?}"),
        }
        // An item reference outside a batch, to itself, or forward.
        assert!(matches!(
            store.append_with(
                &coord("b"),
                &note("x"),
                AppendOptions::default().caused_by_item(0)
            ),
            Err(Error::InvalidBatchReference { item: 0, cause: 0 })
        ));
        let mut batch = Batch::new();
        batch
            .push(&coord("b"), &note("x"), AppendOptions::default())
            .unwrap();
        batch
            .push(
                &coord("b"),
                &note("y"),
                AppendOptions::default().caused_by_item(1),
            )
            .unwrap();
        assert!(matches!(
            store.append_batch(&batch),
            Err(Error::InvalidBatchReference { item: 1, cause: 1 })
        ));
    });
    let effect = store
        .append_with(
            &coord("b"),
            &note("x"),
            AppendOptions::default().caused_by(root.event_id),
        )
        .unwrap();
    let effects = store.effects(root.event_id).unwrap();
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].id, effect.event_id);
    assert_eq!(effects[0].causation, Some(root.event_id));
}

#[test]
fn invalid_coordinates_name_component_and_rule() {
    for (entity, scope, component, rule) in [
        ("", "s", "entity", CoordinateRule::Empty),
        ("e", "", "scope", CoordinateRule::Empty),
        (
            "e\0",
            "s",
            "entity",
            CoordinateRule::ControlCharacter { offset: 1 },
        ),
        (
            "e",
            "tab\there",
            "scope",
            CoordinateRule::ControlCharacter { offset: 3 },
        ),
    ] {
        match Coordinate::new(entity, scope) {
            Err(Error::InvalidCoordinate {
                component: c,
                rule: r,
            }) => {
                assert_eq!((c, r), (component, rule));
            }
            other => panic!("{other:?}"),
        }
    }
    let long = "x".repeat(1025);
    let err = Coordinate::new("e", &long).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid scope: is 1025 bytes, longer than the limit of 1024 bytes"
    );
}

#[test]
fn reserved_kinds_empty_batches_and_oversized_payloads_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(&coord("a"), &note("fine")).unwrap();
    unchanged(&store, || {
        assert!(matches!(
            store.append(&coord("a"), &Internal { x: 1 }),
            Err(Error::ReservedKind { .. })
        ));
        assert!(matches!(
            store.append_raw(&coord("a"), EventKind::custom(0, 1), RawPayload::opaque(b"x"), AppendOptions::default()),
            Err(Error::ReservedKind { kind }) if kind == EventKind::custom(0, 1)
        ));
        let mut batch = Batch::new();
        batch
            .push(&coord("a"), &note("ok"), AppendOptions::default())
            .unwrap();
        batch
            .push(&coord("a"), &Internal { x: 2 }, AppendOptions::default())
            .unwrap();
        assert!(matches!(
            store.append_batch(&batch),
            Err(Error::ReservedKind { .. })
        ));
        assert!(matches!(
            store.append_batch(&Batch::new()),
            Err(Error::EmptyBatch)
        ));
        let huge = vec![0u8; RawPayload::MAX_LEN + 1];
        assert!(matches!(
            store.append_raw(
                &coord("a"),
                EventKind::custom(1, 1),
                RawPayload::opaque(&huge),
                AppendOptions::default()
            ),
            Err(Error::TooLarge {
                what: "payload",
                ..
            })
        ));
    });
    assert!(EventKind::new(16, 0).is_err());
    assert!(EventKind::new(1, 4096).is_err());
}

#[test]
fn typed_decode_checks_the_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = store.append(&coord("a"), &note("hello")).unwrap();
    let e = store.get(r.event_id).unwrap().unwrap();
    assert_eq!(e.decode::<Note>().unwrap(), note("hello"));
    match e.decode::<Internal>() {
        Err(Error::Decode {
            id, kind, message, ..
        }) => {
            assert_eq!((id, kind), (r.event_id, Note::KIND));
            assert!(message.contains("kind"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_configuration_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Store::builder(dir.path()).segment_size(100).open(),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        Store::builder(dir.path())
            .sync_policy(batpak::SyncPolicy::EveryN(0))
            .open(),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn a_retry_must_repeat_one_whole_earlier_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let keyed = |k: &str| AppendOptions::default().idempotency_key(k);
    let mut a = Batch::new();
    a.push(&coord("x"), &note("a0"), keyed("a0")).unwrap();
    a.push(&coord("x"), &note("a1"), keyed("a1")).unwrap();
    let mut b = Batch::new();
    b.push(&coord("x"), &note("b0"), keyed("b0")).unwrap();
    b.push(&coord("x"), &note("b1"), keyed("b1")).unwrap();
    store.append_batch(&a).unwrap();
    store.append_batch(&b).unwrap();
    unchanged(&store, || {
        // Items of two different batches, each in its original position.
        let mut mixed = Batch::new();
        mixed.push(&coord("x"), &note("a0"), keyed("a0")).unwrap();
        mixed.push(&coord("x"), &note("b1"), keyed("b1")).unwrap();
        assert!(matches!(
            store.append_batch(&mixed),
            Err(Error::IdempotencyConflict { .. })
        ));
        // The tail of a batch retried alone.
        assert!(matches!(
            store.append_with(&coord("x"), &note("a1"), keyed("a1")),
            Err(Error::IdempotencyConflict { .. })
        ));
        assert_eq!(store.append_batch(&b).unwrap().len(), 2);
    });
}

#[test]
fn stream_exists_refuses_an_entity_without_events_and_admits_any_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = coord("cart:9");
    let exists = AppendOptions::expect(ExpectedVersion::StreamExists);
    unchanged(&store, || {
        match store.append_with(&c, &note("first"), exists.clone()) {
            Err(Error::VersionConflict {
                entity,
                expected,
                actual,
            }) => {
                assert_eq!(entity, "cart:9");
                assert_eq!(expected, ExpectedVersion::StreamExists);
                assert_eq!(actual, None);
            }
            other => panic!("expected a version conflict, got {other:?}"),
        }
    });
    store.append(&c, &note("made")).unwrap();
    for i in 1..4u64 {
        let r = store
            .append_with(&c, &note("more"), exists.clone())
            .unwrap();
        assert_eq!(r.version, i, "any version will do");
    }
    // Inside a batch, an earlier item makes the entity exist for the later ones.
    let fresh = coord("cart:10");
    let mut batch = Batch::new();
    batch
        .push(&fresh, &note("a"), AppendOptions::default())
        .unwrap();
    batch.push(&fresh, &note("b"), exists.clone()).unwrap();
    assert_eq!(store.append_batch(&batch).unwrap()[1].version, 1);
    // Its text and wire forms.
    assert_eq!(
        "exists".parse::<ExpectedVersion>().unwrap(),
        ExpectedVersion::StreamExists
    );
    assert_eq!(
        serde_json::to_string(&ExpectedVersion::StreamExists).unwrap(),
        "\"stream_exists\""
    );
    assert_eq!(
        ExpectedVersion::StreamExists.to_string(),
        "at least one event"
    );
}
