//! A store set: scopes routed by longest prefix to stores of their own, the routing
//! recorded and held to, and causes across stores named, checked where they can be
//! and resolved by id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use batpak::{
    AppendOptions, Coordinate, Error, EventKind, RawPayload, Region, Store, StoreSet,
    CAUSE_STORE_KEY, SET_LAYOUT_FILE,
};

fn set(root: &std::path::Path) -> StoreSet {
    StoreSet::builder(root)
        .route("tenant:eu", "eu")
        .route("tenant:eu:fr", "fr")
        .default_store("rest")
        .open()
        .unwrap()
}

fn put(set: &StoreSet, entity: &str, scope: &str, options: AppendOptions) -> batpak::SetReceipt {
    set.append_raw(
        &Coordinate::new(entity, scope).unwrap(),
        EventKind::custom(1, 1),
        RawPayload::json(b"{}"),
        options,
    )
    .unwrap()
}

fn scopes(store: &Store) -> Vec<String> {
    store
        .query(&Region::all(), 0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.coordinate.scope().to_string())
        .collect()
}

#[test]
fn scopes_go_to_the_store_of_their_longest_matching_prefix() {
    let root = tempfile::tempdir().unwrap();
    let set = set(root.path());
    for scope in [
        "tenant:eu:de",
        "tenant:eu:fr:paris",
        "tenant:us",
        "tenant:eu:fr",
        "x",
    ] {
        put(&set, "order:1", scope, AppendOptions::default());
    }
    assert_eq!(scopes(set.store("eu").unwrap()), ["tenant:eu:de"]);
    assert_eq!(
        scopes(set.store("fr").unwrap()),
        ["tenant:eu:fr:paris", "tenant:eu:fr"]
    );
    assert_eq!(scopes(set.store("rest").unwrap()), ["tenant:us", "x"]);
    assert_eq!(set.store_for("tenant:eu:fr:lyon").0, "fr");
    let names: Vec<&str> = set.stores().map(|(n, _)| n).collect();
    assert_eq!(names, ["eu", "fr", "rest"]);
    // Each store is a directory of its own, a store like any other.
    for name in names {
        assert!(root.path().join(name).is_dir());
    }
    // Golden: the recorded layout, longest prefix first.
    let recorded = std::fs::read_to_string(root.path().join(SET_LAYOUT_FILE)).unwrap();
    assert_eq!(
        recorded,
        r#"{
  "routes": [
    {
      "prefix": "tenant:eu:fr",
      "store": "fr"
    },
    {
      "prefix": "tenant:eu",
      "store": "eu"
    }
  ],
  "default": "rest"
}"#
    );
    set.close().unwrap();
}

#[test]
fn the_recorded_routing_is_held_to_and_the_same_one_reopens() {
    let root = tempfile::tempdir().unwrap();
    let first = set(root.path());
    put(&first, "order:1", "tenant:eu:de", AppendOptions::default());
    first.close().unwrap();
    let changed = StoreSet::builder(root.path())
        .route("tenant:eu", "rest")
        .default_store("rest")
        .open()
        .unwrap_err();
    match &changed {
        Error::InvalidConfig { reason } => {
            assert!(
                reason.contains(r#""tenant:eu" -> eu"#)
                    && reason.contains(r#""tenant:eu" -> rest"#),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The order routes are given in does not matter; the events are still there.
    let again = StoreSet::builder(root.path())
        .route("tenant:eu:fr", "fr")
        .route("tenant:eu", "eu")
        .default_store("rest")
        .open()
        .unwrap();
    assert_eq!(again.store("eu").unwrap().frontier().visible, 1);
    for bad in [
        StoreSet::builder(root.path()).default_store("Rest").open(),
        StoreSet::builder(root.path())
            .route("a", "x.y")
            .default_store("rest")
            .open(),
        StoreSet::builder(root.path())
            .route("a", "x")
            .route("a", "y")
            .default_store("rest")
            .open(),
        StoreSet::builder(root.path()).route("a", "x").open(),
    ] {
        assert!(matches!(bad, Err(Error::InvalidConfig { .. })), "{bad:?}");
    }
}

#[test]
fn a_cause_in_another_store_is_named_and_resolved_by_id() {
    let root = tempfile::tempdir().unwrap();
    let set = set(root.path());
    let cause = put(&set, "order:1", "tenant:eu:de", AppendOptions::default());
    assert_eq!(cause.store, "eu");
    // A plain causation must name an event of the effect's own store.
    let refused = set
        .append_raw(
            &Coordinate::new("invoice:1", "tenant:us").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::json(b"{}"),
            AppendOptions::default().caused_by(cause.receipt.event_id),
        )
        .unwrap_err();
    assert!(
        matches!(refused, Error::UnknownCausation { .. }),
        "{refused:?}"
    );
    let effect = put(&set, "invoice:1", "tenant:us", cause.as_cause());
    assert_eq!(effect.store, "rest");
    let (holder, stored) = set.get(effect.receipt.event_id).unwrap().unwrap();
    assert_eq!(holder, "rest");
    assert_eq!(stored.causation, Some(cause.receipt.event_id));
    assert_eq!(stored.metadata.get(CAUSE_STORE_KEY), Some("eu"));
    let (cause_store, found) = set.cause_of(holder, &stored).unwrap().unwrap();
    assert_eq!((cause_store, found.id), ("eu", cause.receipt.event_id));
    // A cause in the effect's own store stays an ordinary, checked one.
    let local = put(&set, "order:1", "tenant:eu:de", cause.as_cause());
    let stored = set
        .store("eu")
        .unwrap()
        .get(local.receipt.event_id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.metadata.get(CAUSE_STORE_KEY), None);
    assert_eq!(
        set.cause_of("eu", &stored).unwrap().map(|(s, e)| (s, e.id)),
        Some(("eu", cause.receipt.event_id))
    );
    // A copy of the effect's store (preserve mode) takes the foreign cause as named.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = Store::open(copy_dir.path()).unwrap();
    let all = Region::all().with_store_records().with_hidden();
    let events = set
        .store("rest")
        .unwrap()
        .query(&all, 0, usize::MAX)
        .unwrap();
    copy.import_preserved(&events).unwrap();
    assert_eq!(
        copy.get(effect.receipt.event_id)
            .unwrap()
            .unwrap()
            .causation,
        Some(cause.receipt.event_id)
    );
    set.close().unwrap();
}
