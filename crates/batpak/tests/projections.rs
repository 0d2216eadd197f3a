//! Projections: cached and advanced incrementally, always equal to a fold from
//! scratch; freshness, change tokens, kind filters and decode failures.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::time::Duration;

use batpak::{
    AppendOptions, Coordinate, Encoding, Error, EventKind, EventPayload, Freshness, Projection,
    RawPayload, Region, Store,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 1, type_id = 1)]
struct Deposited {
    cents: i64,
}

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 1, type_id = 2)]
struct Withdrawn {
    cents: i64,
}

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 2, type_id = 1)]
struct Noted {
    text: String,
}

#[derive(Clone, Default, Debug, PartialEq)]
struct Balance {
    cents: i64,
    moves: u32,
}

impl Projection for Balance {
    const NAME: &'static str = "balance";
    const KINDS: &'static [EventKind] = &[Deposited::KIND, Withdrawn::KIND];

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        if let Some(d) = event.decode_if::<Deposited>()? {
            self.cents += d.cents;
        } else {
            self.cents -= event.decode::<Withdrawn>()?.cents;
        }
        self.moves += 1;
        Ok(())
    }
}

/// The same fold, from scratch over the entity's stream.
fn fold(store: &Store, entity: &str) -> Option<Balance> {
    let mut state: Option<Balance> = None;
    store
        .visit_stream(entity, |e| {
            if Balance::KINDS.contains(&e.kind()) {
                state.get_or_insert_with(Balance::default).apply(e)?;
            }
            Ok(())
        })
        .unwrap();
    state
}

fn acct(i: usize) -> Coordinate {
    Coordinate::new(format!("acct:{i}"), "bank").unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Deposit(usize, i64),
    Withdraw(usize, i64),
    Note(usize),
    Project(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..3, 1i64..1000).prop_map(|(a, c)| Op::Deposit(a, c)),
        2 => (0usize..3, 1i64..1000).prop_map(|(a, c)| Op::Withdraw(a, c)),
        1 => (0usize..3).prop_map(Op::Note),
        3 => (0usize..3).prop_map(Op::Project),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever the order of appends, projections and reopens, the cached and
    /// incrementally advanced state equals a fold from scratch.
    #[test]
    fn incremental_equals_from_scratch(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::builder(dir.path()).sync_policy(batpak::SyncPolicy::Never).open().unwrap();
        for op in ops {
            match op {
                Op::Deposit(a, c) => { store.append(&acct(a), &Deposited { cents: c }).unwrap(); }
                Op::Withdraw(a, c) => { store.append(&acct(a), &Withdrawn { cents: c }).unwrap(); }
                Op::Note(a) => { store.append(&acct(a), &Noted { text: "n".into() }).unwrap(); }
                Op::Project(a) => {
                    let got = store.project::<Balance>(&format!("acct:{a}"), Freshness::Consistent).unwrap();
                    prop_assert_eq!(got, fold(&store, &format!("acct:{a}")));
                }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(dir.path()).unwrap();
                }
            }
        }
        for a in 0..3 {
            let entity = format!("acct:{a}");
            prop_assert_eq!(store.project::<Balance>(&entity, Freshness::Consistent).unwrap(), fold(&store, &entity));
        }
    }
}

#[test]
fn maybe_stale_may_serve_the_cached_state_and_says_how_old_it_may_be() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(&acct(1), &Deposited { cents: 100 }).unwrap();
    let fresh = Freshness::Consistent;
    assert_eq!(
        store
            .project::<Balance>("acct:1", fresh)
            .unwrap()
            .unwrap()
            .cents,
        100
    );
    store.append(&acct(1), &Deposited { cents: 5 }).unwrap();
    let stale = Freshness::MaybeStale {
        max_age: Duration::from_secs(3600),
    };
    assert_eq!(
        store
            .project::<Balance>("acct:1", stale)
            .unwrap()
            .unwrap()
            .cents,
        100
    );
    assert_eq!(
        store
            .project::<Balance>("acct:1", fresh)
            .unwrap()
            .unwrap()
            .cents,
        105
    );
    store.append(&acct(1), &Deposited { cents: 1 }).unwrap();
    let expired = Freshness::MaybeStale {
        max_age: Duration::ZERO,
    };
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(
        store
            .project::<Balance>("acct:1", expired)
            .unwrap()
            .unwrap()
            .cents,
        106
    );
}

#[test]
fn project_if_changed_returns_nothing_for_an_unchanged_entity() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store
        .project_if_changed::<Balance>("acct:1", 0)
        .unwrap()
        .is_none());
    store.append(&acct(1), &Deposited { cents: 7 }).unwrap();
    let (state, token) = store
        .project_if_changed::<Balance>("acct:1", 0)
        .unwrap()
        .unwrap();
    assert_eq!(state.unwrap().cents, 7);
    assert!(store
        .project_if_changed::<Balance>("acct:1", token)
        .unwrap()
        .is_none());
    store.append(&acct(2), &Deposited { cents: 1 }).unwrap();
    assert!(
        store
            .project_if_changed::<Balance>("acct:1", token)
            .unwrap()
            .is_none(),
        "another entity"
    );
    store.append(&acct(1), &Noted { text: "x".into() }).unwrap();
    let (state, newer) = store
        .project_if_changed::<Balance>("acct:1", token)
        .unwrap()
        .unwrap();
    assert!(newer > token);
    assert_eq!(
        state.unwrap().cents,
        7,
        "a note changes the entity, not the balance"
    );
}

#[test]
fn other_kinds_are_skipped_and_no_relevant_event_means_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append(
            &acct(1),
            &Noted {
                text: "hello".into(),
            },
        )
        .unwrap();
    assert_eq!(
        store
            .project::<Balance>("acct:1", Freshness::Consistent)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .project::<Balance>("acct:9", Freshness::Consistent)
            .unwrap(),
        None
    );
    store.append(&acct(1), &Withdrawn { cents: 3 }).unwrap();
    let b = store
        .project::<Balance>("acct:1", Freshness::Consistent)
        .unwrap()
        .unwrap();
    assert_eq!((b.cents, b.moves), (-3, 1));
}

#[test]
fn a_payload_that_fails_to_decode_is_an_error_naming_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(&acct(1), &Deposited { cents: 1 }).unwrap();
    let bad = store
        .append_raw(
            &acct(1),
            Deposited::KIND,
            RawPayload {
                bytes: b"\xc1",
                encoding: Encoding::MessagePack,
                schema_version: 1,
            },
            AppendOptions::default(),
        )
        .unwrap();
    match store.project::<Balance>("acct:1", Freshness::Consistent) {
        Err(Error::Decode { id, kind, .. }) => {
            assert_eq!((id, kind), (bad.event_id, Deposited::KIND))
        }
        other => panic!("{other:?}"),
    }
}

/// The same fold over a region, from scratch.
fn fold_region(store: &Store, region: &Region) -> Option<Balance> {
    let mut state: Option<Balance> = None;
    store
        .visit_query(region, 0, usize::MAX, |e| {
            if Balance::KINDS.contains(&e.kind()) {
                state.get_or_insert_with(Balance::default).apply(e)?;
            }
            Ok(())
        })
        .unwrap();
    state
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A region read model, cached and advanced, equals a fold of the region's events.
    #[test]
    fn region_read_models_equal_a_fold_of_the_region(
        ops in prop::collection::vec((0usize..6, 0usize..2, 0u8..4, 1i64..500), 1..80),
        checks in prop::collection::vec(0usize..3, 1..10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).sync_policy(batpak::SyncPolicy::Never).open().unwrap();
        let regions = [
            Region::all().entity_prefix("order").scope("t1"),
            Region::all().entity_prefix("order"),
            Region::all().scope("t0").kind(Deposited::KIND),
        ];
        for (step, (entity, scope, what, cents)) in ops.into_iter().enumerate() {
            let name = if entity < 4 { format!("order:{entity}") } else { format!("refund:{entity}") };
            let c = Coordinate::new(name, format!("t{scope}")).unwrap();
            match what {
                0 | 1 => { store.append(&c, &Deposited { cents }).unwrap(); }
                2 => { store.append(&c, &Withdrawn { cents }).unwrap(); }
                _ => { store.append(&c, &Noted { text: "n".into() }).unwrap(); }
            }
            let r = &regions[checks[step % checks.len()]];
            prop_assert_eq!(store.project_region::<Balance>(r, Freshness::Consistent).unwrap(), fold_region(&store, r));
        }
        for r in &regions {
            prop_assert_eq!(store.project_region::<Balance>(r, Freshness::Consistent).unwrap(), fold_region(&store, r));
        }
    }
}

mod derived {
    use super::*;
    use batpak::EventSourced;

    /// The same balance as a struct plus handler methods.
    #[derive(Clone, Default, Debug, PartialEq, EventSourced)]
    #[batpak(name = "balance-derived", version = 3, events(Deposited => on_deposit, Withdrawn => on_withdraw))]
    struct DerivedBalance {
        cents: i64,
        moves: u32,
    }

    impl DerivedBalance {
        fn on_deposit(&mut self, e: &Deposited) {
            self.cents += e.cents;
            self.moves += 1;
        }

        fn on_withdraw(&mut self, e: &Withdrawn) {
            self.cents -= e.cents;
            self.moves += 1;
        }
    }

    #[test]
    fn a_derived_projection_folds_like_the_hand_written_one() {
        assert_eq!(DerivedBalance::NAME, "balance-derived");
        assert_eq!(DerivedBalance::VERSION, 3);
        assert_eq!(DerivedBalance::KINDS, &[Deposited::KIND, Withdrawn::KIND]);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append(&acct(1), &Deposited { cents: 50 }).unwrap();
        store
            .append(
                &acct(1),
                &Noted {
                    text: "skip".into(),
                },
            )
            .unwrap();
        store.append(&acct(1), &Withdrawn { cents: 8 }).unwrap();
        let derived = store
            .project::<DerivedBalance>("acct:1", Freshness::Consistent)
            .unwrap()
            .unwrap();
        let manual = store
            .project::<Balance>("acct:1", Freshness::Consistent)
            .unwrap()
            .unwrap();
        assert_eq!((derived.cents, derived.moves), (manual.cents, manual.moves));
        assert_eq!((derived.cents, derived.moves), (42, 2));
    }

    /// Counts what it could not read.
    #[derive(Clone, Default, Debug, PartialEq, EventSourced)]
    #[batpak(events(Deposited => on_deposit), redacted = on_redacted)]
    struct Audited {
        cents: i64,
        redacted: Vec<batpak::EventId>,
    }

    impl Audited {
        fn on_deposit(&mut self, e: &Deposited) {
            self.cents += e.cents;
        }

        fn on_redacted(&mut self, e: &batpak::EventView<'_>) {
            self.redacted.push(e.id());
        }
    }

    #[test]
    fn derived_projections_skip_redacted_events_or_hand_them_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append(&acct(1), &Deposited { cents: 50 }).unwrap();
        let gone = store.append(&acct(1), &Deposited { cents: 7 }).unwrap();
        store.append(&acct(1), &Withdrawn { cents: 8 }).unwrap();
        store.redact(gone.event_id, "entered by mistake").unwrap();
        let balance = store
            .project::<DerivedBalance>("acct:1", Freshness::Consistent)
            .unwrap()
            .unwrap();
        assert_eq!((balance.cents, balance.moves), (42, 2), "skipped");
        let audited = store
            .project::<Audited>("acct:1", Freshness::Consistent)
            .unwrap()
            .unwrap();
        assert_eq!(audited.cents, 50);
        assert_eq!(audited.redacted, vec![gone.event_id]);
    }
}

/// An entity's events may carry different scopes; folding them reads each with its own.
#[test]
fn an_entity_whose_events_span_scopes_projects() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (scope, cents) in [("tenant:a", 5), ("tenant:b", 7), ("tenant:a", 11)] {
        store
            .append(
                &Coordinate::new("acct:x", scope).unwrap(),
                &Deposited { cents },
            )
            .unwrap();
    }
    let balance = store
        .project::<Balance>("acct:x", Freshness::Consistent)
        .unwrap()
        .unwrap();
    assert_eq!(balance.cents, 23);
    let scopes: Vec<String> = store
        .stream("acct:x")
        .unwrap()
        .iter()
        .map(|e| e.coordinate.scope().to_string())
        .collect();
    assert_eq!(scopes, ["tenant:a", "tenant:b", "tenant:a"]);
}
