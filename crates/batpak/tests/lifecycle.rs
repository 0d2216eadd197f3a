//! Retention policies and deletions: what every read shows before and after a
//! policy, against a model over random histories; soft and hard deletes; the records
//! surviving a reopen; a view learning a policy; projections over what is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use batpak::prelude::*;
use batpak::{
    AppendReceipt, DeleteMode, Error, ManualClock, RetentionLimits, RetentionRule,
    RetentionSelector,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 4, type_id = 1, name = "life.Tick")]
struct Tick {
    n: u64,
}

const T0: u64 = 1_800_000_000_000_000_000;

fn prefix(p: &str) -> RetentionSelector {
    RetentionSelector::EntityPrefix(p.into())
}

fn scope(s: &str) -> RetentionSelector {
    RetentionSelector::Scope(s.into())
}

fn open(dir: &std::path::Path, clock: &ManualClock) -> Store {
    Store::builder(dir).clock(clock.clone()).open().unwrap()
}

fn append(store: &Store, entity: &str, scope: &str, n: u64) -> AppendReceipt {
    store
        .append(&Coordinate::new(entity, scope).unwrap(), &Tick { n })
        .unwrap()
}

fn versions(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

/// The store's lifecycle records (policies and deletions), oldest first.
fn lifecycle_records(store: &Store) -> Vec<StoredEvent> {
    store
        .query(
            &Region::all()
                .entity("batpak:lifecycle")
                .with_store_records(),
            0,
            usize::MAX,
        )
        .unwrap()
}

#[test]
fn keep_the_last_n_hides_older_events_from_every_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let mut first = None;
    for n in 0..10 {
        let r = append(&store, "order:1", "shop", n);
        first.get_or_insert(r);
        append(&store, "user:1", "shop", n);
    }
    let first = first.unwrap();
    store
        .set_retention(prefix("order"), RetentionRule::MaxCount(3))
        .unwrap();
    assert_eq!(versions(&store.stream("order:1").unwrap()), [7, 8, 9]);
    assert_eq!(store.stream("user:1").unwrap().len(), 10, "not covered");
    assert!(store.get(first.event_id).unwrap().is_none());
    assert!(store.get_sequence(first.sequence).unwrap().is_none());
    assert_eq!(store.count(&Region::all()).unwrap(), 13);
    assert_eq!(
        store
            .query_reverse(&Region::all().entity("order:1"), u64::MAX, 10)
            .unwrap()
            .len(),
        3
    );
    // Paging over the hidden events still fills each page.
    let page = store.query(&Region::all(), 0, 5).unwrap();
    assert_eq!(page.len(), 5);
    assert_eq!(store.events(&Region::all(), 0).count(), 13);
    // The catalogue counts what is visible; the version is still the newest one.
    let order = &store.entities("order", None, 10)[0];
    assert_eq!((order.version, order.events), (9, 3));
    assert_eq!(
        order.first_sequence,
        store.stream("order:1").unwrap()[0].sequence
    );
    assert_eq!(
        store
            .kinds()
            .iter()
            .find(|k| k.kind == Tick::KIND)
            .unwrap()
            .events,
        13
    );
    assert_eq!(store.scopes()[0].events, 13);
    assert_eq!(store.entity_version("order:1"), Some(9));
    // The policy is listed, by the API and by stats.
    let policies = store.retention();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].rule, RetentionRule::MaxCount(3));
    assert_eq!(store.stats().unwrap().retention, policies);
    // Setting the same policy again records nothing.
    let again = store
        .set_retention(prefix("order"), RetentionRule::MaxCount(3))
        .unwrap();
    assert_eq!(again.event_id, policies[0].set_by);
    // The kept part follows new events.
    append(&store, "order:1", "shop", 10);
    assert_eq!(versions(&store.stream("order:1").unwrap()), [8, 9, 10]);
    // Hidden events are still on disk and verified.
    assert!(store.verify().unwrap().body.is_clean());
    // Clearing the policy shows them again (nothing was compacted).
    assert!(store.clear_retention(&prefix("order")).unwrap().is_some());
    assert!(store.clear_retention(&prefix("order")).unwrap().is_none());
    assert_eq!(store.stream("order:1").unwrap().len(), 11);
    assert!(store.retention().is_empty());
}

#[test]
fn an_age_policy_hides_events_as_the_clock_passes_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..5 {
        append(&store, "log:a", "s", n);
        clock.advance(Duration::from_secs(60));
    }
    store
        .set_retention(
            prefix("log"),
            RetentionRule::MaxAge(Duration::from_secs(150)),
        )
        .unwrap();
    // Now is T0 + 5 min: the events of minutes 3 and 4 are younger than 150 s.
    assert_eq!(versions(&store.stream("log:a").unwrap()), [3, 4]);
    clock.advance(Duration::from_secs(60));
    assert_eq!(versions(&store.stream("log:a").unwrap()), [4]);
    clock.advance(Duration::from_secs(600));
    assert!(store.stream("log:a").unwrap().is_empty());
    assert!(store.entities("", None, 10).is_empty(), "nothing visible");
    // A new event is young.
    append(&store, "log:a", "s", 5);
    assert_eq!(versions(&store.stream("log:a").unwrap()), [5]);
}

#[test]
fn a_scope_policy_covers_the_events_in_its_scope_only() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..4 {
        append(&store, "a", "eu", n);
        append(&store, "b", "us", n);
    }
    // Entity c: two events in eu, one in us, two more in eu.
    for (n, s) in ["eu", "eu", "us", "eu", "eu"].iter().enumerate() {
        append(&store, "c", s, n as u64);
    }
    store
        .set_retention(scope("eu"), RetentionRule::BeforeVersion(3))
        .unwrap();
    assert_eq!(versions(&store.stream("a").unwrap()), [3]);
    assert_eq!(store.stream("b").unwrap().len(), 4);
    // c's hidden prefix stops at its first event in another scope.
    assert_eq!(versions(&store.stream("c").unwrap()), [2, 3, 4]);
}

#[test]
fn the_furthest_of_several_policies_wins() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..10 {
        append(&store, "order:1", "shop", n);
    }
    store
        .set_retention(prefix("order"), RetentionRule::MaxCount(5))
        .unwrap();
    store
        .set_retention(scope("shop"), RetentionRule::BeforeVersion(7))
        .unwrap();
    assert_eq!(versions(&store.stream("order:1").unwrap()), [7, 8, 9]);
    store
        .set_retention(prefix("order"), RetentionRule::MaxCount(2))
        .unwrap();
    assert_eq!(versions(&store.stream("order:1").unwrap()), [8, 9]);
    assert_eq!(store.retention().len(), 2, "one policy per selector");
}

#[test]
fn an_entity_policy_covers_that_entity_only_and_a_combined_rule_keeps_what_every_part_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open(dir.path(), &clock);
        for n in 0..10 {
            append(&store, "order:1", "shop", n);
            append(&store, "order:1:lines", "shop", n);
            append(&store, "order:10", "shop", n);
            clock.advance(Duration::from_secs(10));
        }
        // Events are 10 s apart, the newest 10 s old: an age of 35 s keeps three,
        // a count of 5 keeps five, so together three.
        let rule = RetentionRule::Combined(
            RetentionLimits::new()
                .max_count(5)
                .max_age(Duration::from_secs(35)),
        );
        store
            .set_retention(RetentionSelector::Entity("order:1".into()), rule)
            .unwrap();
        assert_eq!(versions(&store.stream("order:1").unwrap()), [7, 8, 9]);
        assert_eq!(store.stream("order:1:lines").unwrap().len(), 10);
        assert_eq!(store.stream("order:10").unwrap().len(), 10);
        // Time passing makes the age part the furthest; a version part too.
        clock.advance(Duration::from_secs(10));
        assert_eq!(versions(&store.stream("order:1").unwrap()), [8, 9]);
        let listed = store.retention();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].rule, rule);
        assert_eq!(
            listed[0].rule.to_string(),
            "keep the last 5, and keep 35000 ms"
        );
        // Compaction removes exactly what is hidden, and verify explains it by the
        // combined rule's furthest part.
        let report = store.compact().unwrap();
        assert_eq!(report.events_removed, 8);
        assert!(store.verify().unwrap().body.is_clean());
        // Bad combined rules are refused by what is wrong.
        let err = store
            .set_retention(
                RetentionSelector::Entity("order:1".into()),
                RetentionRule::Combined(RetentionLimits::new()),
            )
            .unwrap_err();
        assert!(err.to_string().contains("sets none of"), "{err}");
        let err = store
            .set_retention(
                RetentionSelector::Entity("order:1".into()),
                RetentionRule::Combined(RetentionLimits::new().max_count(0).before_version(3)),
            )
            .unwrap_err();
        assert!(err.to_string().contains("max_count 0"), "{err}");
        let err = store
            .set_retention(
                RetentionSelector::Entity("batpak:kinds".into()),
                RetentionRule::MaxCount(1),
            )
            .unwrap_err();
        assert_eq!(err.code(), "invalid_coordinate");
        store.close().unwrap();
    }
    let store = open(dir.path(), &clock);
    assert_eq!(versions(&store.stream("order:1").unwrap()), [8, 9]);
    assert_eq!(store.stream("order:1:lines").unwrap().len(), 10);
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn a_soft_delete_hides_the_entity_and_a_later_append_continues_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..3 {
        append(&store, "cart:1", "shop", n);
    }
    append(&store, "cart:2", "shop", 0);
    let record = store.delete_entity("cart:1", DeleteMode::Soft).unwrap();
    assert!(store.stream("cart:1").unwrap().is_empty());
    assert_eq!(store.count(&Region::all()).unwrap(), 1);
    assert_eq!(store.entities("cart", None, 10).len(), 1);
    assert_eq!(store.entity_version("cart:1"), Some(2));
    // Deleting again with nothing new returns the first record.
    let again = store.delete_entity("cart:1", DeleteMode::Soft).unwrap();
    assert_eq!(again.event_id, record.event_id);
    let next = store
        .append_with(
            &Coordinate::new("cart:1", "shop").unwrap(),
            &Tick { n: 3 },
            AppendOptions::default().expected_version(ExpectedVersion::Exact(2)),
        )
        .unwrap();
    assert_eq!(next.version, 3);
    let kept = store.stream("cart:1").unwrap();
    assert_eq!(versions(&kept), [3]);
    // The chain runs on from the hidden events.
    let hidden = store.query(&Region::all().entity("cart:1"), 0, 10).unwrap();
    assert_eq!(hidden.len(), 1);
    assert!(store.verify().unwrap().body.is_clean());
    let deletions = store.deletions();
    assert_eq!(deletions.len(), 1);
    assert_eq!(
        (deletions[0].through_version, deletions[0].mode),
        (Some(2), DeleteMode::Soft)
    );
    // One entity's deletion by lookup is the same record; others have none.
    assert_eq!(store.deletion("cart:1").as_ref(), Some(&deletions[0]));
    assert_eq!(store.deletion("cart:2"), None);
    // The record is a store record, on the lifecycle entity, in the entity's scope.
    let records = lifecycle_records(&store);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].coordinate.scope(), "shop");
    assert_eq!(
        store.kind_name(records[0].kind).as_deref(),
        Some("batpak.EntityDeleted")
    );
}

#[test]
fn a_hard_delete_refuses_every_later_append_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open(dir.path(), &clock);
        append(&store, "acct:9", "bank", 0);
        append(&store, "acct:9", "bank", 1);
        store.delete_entity("acct:9", DeleteMode::Hard).unwrap();
        let err = store
            .append(&Coordinate::new("acct:9", "bank").unwrap(), &Tick { n: 2 })
            .unwrap_err();
        assert_eq!(err.code(), "entity_deleted");
        assert!(err.to_string().contains("acct:9"), "{err}");
        let mut batch = Batch::new();
        batch
            .push(
                &Coordinate::new("acct:8", "bank").unwrap(),
                &Tick { n: 0 },
                AppendOptions::default(),
            )
            .unwrap();
        batch
            .push(
                &Coordinate::new("acct:9", "bank").unwrap(),
                &Tick { n: 0 },
                AppendOptions::default(),
            )
            .unwrap();
        assert!(matches!(
            store.append_batch(&batch),
            Err(Error::EntityDeleted { .. })
        ));
        assert_eq!(
            store.entity_version("acct:8"),
            None,
            "the batch is all or nothing"
        );
        assert!(matches!(
            store.delete_entity("acct:9", DeleteMode::Soft),
            Err(Error::EntityDeleted {
                through_version: Some(1),
                ..
            })
        ));
        store
            .set_retention(prefix("acct"), RetentionRule::MaxCount(1))
            .unwrap();
        store.close().unwrap();
    }
    let store = open(dir.path(), &clock);
    assert!(store.stream("acct:9").unwrap().is_empty());
    assert!(matches!(
        store.append(&Coordinate::new("acct:9", "bank").unwrap(), &Tick { n: 2 }),
        Err(Error::EntityDeleted { .. })
    ));
    assert_eq!(store.retention().len(), 1, "the policy is replayed at open");
    let view = Store::builder(dir.path()).open_view().unwrap();
    assert!(view.stream("acct:9").unwrap().is_empty());
    assert_eq!(view.retention().len(), 1);
}

#[test]
fn a_hard_delete_of_a_never_written_entity_reserves_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open(dir.path(), &clock);
        append(&store, "other:1", "shop", 0);
        let receipt = store.delete_entity("acct:new", DeleteMode::Hard).unwrap();
        let deletion = store.deletion("acct:new").unwrap();
        assert_eq!(
            (
                deletion.through_version,
                deletion.mode,
                deletion.recorded_by
            ),
            (None, DeleteMode::Hard, receipt.event_id)
        );
        let err = store
            .append(
                &Coordinate::new("acct:new", "bank").unwrap(),
                &Tick { n: 0 },
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::EntityDeleted {
                    through_version: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("before its first event"), "{err}");
        // Deleting it again either way is refused; a soft delete of another
        // never-written entity still has nothing to hide.
        assert!(matches!(
            store.delete_entity("acct:new", DeleteMode::Soft),
            Err(Error::EntityDeleted { .. })
        ));
        assert_eq!(
            store
                .delete_entity("acct:other", DeleteMode::Soft)
                .unwrap_err()
                .code(),
            "no_such_entity"
        );
        // A name no event could have is refused, and nothing is recorded for it.
        let err = store.delete_entity("", DeleteMode::Hard).unwrap_err();
        assert_eq!(err.code(), "invalid_coordinate");
        assert_eq!(store.deletions().len(), 1);
        // The record is in the lifecycle scope; other entities are untouched.
        let records = lifecycle_records(&store);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].coordinate.scope(), "batpak:lifecycle");
        assert_eq!(versions(&store.stream("other:1").unwrap()), [0]);
        assert!(store.verify().unwrap().body.is_clean());
        store.compact().unwrap();
        assert!(store.verify().unwrap().body.is_clean());
        store.close().unwrap();
    }
    let store = open(dir.path(), &clock);
    assert_eq!(store.deletion("acct:new").unwrap().through_version, None);
    assert!(matches!(
        store.append(
            &Coordinate::new("acct:new", "bank").unwrap(),
            &Tick { n: 0 }
        ),
        Err(Error::EntityDeleted { .. })
    ));
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn a_delete_expecting_a_version_checks_it_and_records_nothing_when_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    append(&store, "doc:1", "s", 0);
    append(&store, "doc:1", "s", 1);
    for expected in [
        ExpectedVersion::Exact(0),
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(5),
    ] {
        for mode in [DeleteMode::Soft, DeleteMode::Hard] {
            let err = store
                .delete_entity_expecting("doc:1", mode, expected)
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::VersionConflict {
                        actual: Some(1),
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains("doc:1"), "{err}");
        }
    }
    assert!(store.deletions().is_empty());
    // A refused hard delete left no mark: appends go on.
    append(&store, "doc:1", "s", 2);
    store
        .delete_entity_expecting("doc:1", DeleteMode::Soft, ExpectedVersion::Exact(2))
        .unwrap();
    assert_eq!(store.deletion("doc:1").unwrap().through_version, Some(2));
    assert!(matches!(
        store.delete_entity_expecting("doc:2", DeleteMode::Hard, ExpectedVersion::StreamExists),
        Err(Error::VersionConflict { actual: None, .. })
    ));
    store
        .delete_entity_expecting("doc:2", DeleteMode::Hard, ExpectedVersion::NoStream)
        .unwrap();
    assert_eq!(store.deletion("doc:2").unwrap().through_version, None);
}

/// The expected version is checked in the same turn as the deletion: with appends
/// racing, a deletion that expected version v hides exactly through v, never an
/// append that landed after the check.
#[test]
fn a_delete_expecting_a_version_has_no_window_for_a_racing_append() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = std::sync::Arc::new(open(dir.path(), &clock));
    append(&store, "race:1", "s", 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bursts of appends with quiet gaps: deletes in a burst race it, deletes
            // in a gap get through.
            let mut n = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..10 {
                    append(&store, "race:1", "s", n);
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // An append in flight (written, not yet durable) already counts for the check,
    // as it does for an append's own expected version, and is not yet visible to
    // `entity_version`: attempts in a burst conflict, attempts in a gap go through.
    let (mut deleted, mut conflicts) = (0u32, 0u32);
    let started = std::time::Instant::now();
    while (deleted < 20 || conflicts < 20) && started.elapsed() < Duration::from_secs(10) {
        let seen = store.entity_version("race:1").unwrap();
        match store.delete_entity_expecting(
            "race:1",
            DeleteMode::Soft,
            ExpectedVersion::Exact(seen),
        ) {
            Ok(_) => {
                deleted += 1;
                assert_eq!(
                    store.deletion("race:1").unwrap().through_version,
                    Some(seen)
                );
            }
            Err(Error::VersionConflict {
                actual: Some(actual),
                ..
            }) => {
                conflicts += 1;
                assert!(actual > seen, "{actual} <= {seen}");
            }
            Err(e) => panic!("{e:?}"),
        }
        std::thread::sleep(Duration::from_micros(300 * u64::from(deleted % 7)));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        deleted > 0,
        "no deletion got through ({conflicts} conflicts)"
    );
}

#[test]
fn bad_selectors_rules_and_entities_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    append(&store, "a", "s", 0);
    let err = store
        .set_retention(prefix("batpak:kinds"), RetentionRule::MaxCount(1))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_coordinate");
    let err = store
        .set_retention(prefix("a"), RetentionRule::MaxCount(0))
        .unwrap_err();
    assert!(err.to_string().contains("max_count 0"), "{err}");
    let err = store
        .set_retention(prefix("a"), RetentionRule::MaxAge(Duration::ZERO))
        .unwrap_err();
    assert!(err.to_string().contains("keep nothing"), "{err}");
    let err = store
        .set_retention(scope(""), RetentionRule::MaxCount(1))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_coordinate");
    let err = store.delete_entity("nobody", DeleteMode::Soft).unwrap_err();
    assert_eq!(err.code(), "no_such_entity");
    assert!(err.to_string().contains("nobody"), "{err}");
    let err = store
        .delete_entity("batpak:kinds", DeleteMode::Hard)
        .unwrap_err();
    assert_eq!(err.code(), "no_such_entity");
    let ro = {
        store.close().unwrap();
        Store::open_read_only(dir.path()).unwrap()
    };
    assert!(matches!(
        ro.set_retention(prefix("a"), RetentionRule::MaxCount(1)),
        Err(Error::ReadOnly)
    ));
}

#[derive(Clone, Default)]
struct Sum(u64, u64);

impl Projection for Sum {
    const NAME: &'static str = "sum";
    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        let tick: Tick = event.decode()?;
        self.0 += tick.n;
        self.1 += 1;
        Ok(())
    }
}

#[test]
fn a_projection_folds_what_is_kept_and_never_reuses_a_state_from_before() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 1..=5 {
        append(&store, "acct:1", "bank", n);
    }
    let before: Sum = store
        .project("acct:1", Freshness::Consistent)
        .unwrap()
        .unwrap();
    assert_eq!((before.0, before.1), (15, 5));
    store
        .set_retention(prefix("acct"), RetentionRule::MaxCount(2))
        .unwrap();
    let after: Sum = store
        .project("acct:1", Freshness::Consistent)
        .unwrap()
        .unwrap();
    assert_eq!((after.0, after.1), (9, 2), "events 4 and 5 only");
    // Incrementally advanced, and moved again as the kept window slides.
    append(&store, "acct:1", "bank", 6);
    let slid: Sum = store
        .project("acct:1", Freshness::Consistent)
        .unwrap()
        .unwrap();
    assert_eq!((slid.0, slid.1), (11, 2));
    store.delete_entity("acct:1", DeleteMode::Soft).unwrap();
    assert!(store
        .project::<Sum>("acct:1", Freshness::Consistent)
        .unwrap()
        .is_none());
}

#[test]
fn subscriptions_catch_up_without_hidden_events_and_deliver_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..6 {
        append(&store, "feed:1", "s", n);
    }
    store
        .set_retention(prefix("feed"), RetentionRule::MaxCount(2))
        .unwrap();
    let mut sub = store.subscribe_from(Region::all(), 1);
    let got: Vec<u64> = (0..2).map(|_| sub.recv().unwrap().version).collect();
    assert_eq!(got, [4, 5]);
    append(&store, "feed:1", "s", 6);
    assert_eq!(sub.recv().unwrap().version, 6);
}

#[test]
fn a_view_learns_a_policy_the_writer_sets() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..4 {
        append(&store, "x", "s", n);
    }
    store.sync().unwrap();
    let view = Store::builder(dir.path())
        .clock(clock.clone())
        .open_view()
        .unwrap();
    assert_eq!(view.stream("x").unwrap().len(), 4);
    store
        .set_retention(prefix("x"), RetentionRule::MaxCount(1))
        .unwrap();
    view.refresh().unwrap();
    assert_eq!(versions(&view.stream("x").unwrap()), [3]);
}

/// One step of a random history.
#[derive(Clone, Debug)]
enum Step {
    Append { entity: usize, scope: usize },
    Advance { secs: u64 },
    Set { selector: usize, rule: usize },
    Clear { selector: usize },
    Delete { entity: usize, hard: bool },
    Compact,
}

const ENTITIES: [&str; 5] = ["order:1", "order:2", "user:1", "other", "order:1:x"];
const SCOPES: [&str; 2] = ["eu", "us"];

fn selectors() -> Vec<RetentionSelector> {
    vec![
        prefix("order"),
        prefix(""),
        scope("eu"),
        RetentionSelector::Entity("order:1".into()),
    ]
}

fn rules() -> Vec<RetentionRule> {
    vec![
        RetentionRule::MaxCount(2),
        RetentionRule::MaxCount(5),
        RetentionRule::BeforeVersion(3),
        RetentionRule::MaxAge(Duration::from_secs(90)),
        RetentionRule::Combined(
            RetentionLimits::new()
                .max_count(4)
                .max_age(Duration::from_secs(120)),
        ),
        RetentionRule::Combined(RetentionLimits::new().max_count(6).before_version(2)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..ENTITIES.len(), 0..SCOPES.len()).prop_map(|(entity, scope)| Step::Append { entity, scope }),
        2 => (1..60u64).prop_map(|secs| Step::Advance { secs }),
        1 => (0..4usize, 0..6usize).prop_map(|(selector, rule)| Step::Set { selector, rule }),
        1 => (0..4usize).prop_map(|selector| Step::Clear { selector }),
        1 => (0..ENTITIES.len(), any::<bool>()).prop_map(|(entity, hard)| Step::Delete { entity, hard }),
        1 => Just(Step::Compact),
    ]
}

/// The model: every event (entity, scope, version, time in ms), the policies, the
/// deletions, what compaction removed; what is visible computed the plain way.
#[derive(Default)]
struct Model {
    events: Vec<(usize, usize, u64, u64)>,
    policies: HashMap<usize, RetentionRule>,
    deleted: HashMap<usize, (u64, bool)>,
    /// (entity, version) of every event a compaction removed: gone for good, and not
    /// counted by the rules any more (they see what the store holds).
    removed: std::collections::HashSet<(usize, u64)>,
}

impl Model {
    fn visible(&self, now_ms: u64) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        for entity in 0..ENTITIES.len() {
            let mine: Vec<_> = self
                .events
                .iter()
                .filter(|e| e.0 == entity && !self.removed.contains(&(e.0, e.2)))
                .collect();
            let mut horizon = match self.deleted.get(&entity) {
                Some((_, true)) => u64::MAX,
                Some((through, false)) => through + 1,
                None => 0,
            };
            for (&selector, rule) in &self.policies {
                let sel = &selectors()[selector];
                let covered = |e: &(usize, usize, u64, u64)| match sel {
                    RetentionSelector::EntityPrefix(p) => {
                        p.is_empty() || ENTITIES[e.0].starts_with(&format!("{p}:"))
                    }
                    RetentionSelector::Scope(s) => SCOPES[e.1] == s,
                    RetentionSelector::Entity(name) => ENTITIES[e.0] == name,
                    _ => unreachable!(),
                };
                let simple =
                    |rule: &RetentionRule, i: usize, e: &(usize, usize, u64, u64)| match rule {
                        RetentionRule::MaxCount(n) => (i as u64) + n < mine.len() as u64,
                        RetentionRule::BeforeVersion(v) => e.2 < *v,
                        RetentionRule::MaxAge(age) => {
                            e.3 < now_ms.saturating_sub(age.as_millis() as u64)
                        }
                        _ => unreachable!(),
                    };
                // A combined rule expires what any of its parts expires.
                let expired = |i: usize, e: &(usize, usize, u64, u64)| match rule {
                    RetentionRule::Combined(limits) => limits.rules().any(|r| simple(&r, i, e)),
                    rule => simple(rule, i, e),
                };
                let prefix = mine
                    .iter()
                    .enumerate()
                    .take_while(|(i, e)| covered(e) && expired(*i, e))
                    .count();
                // As a version: past the last expired event (compaction may have
                // removed the versions before the first one held).
                if let Some(last) = prefix.checked_sub(1) {
                    horizon = horizon.max(mine[last].2 + 1);
                }
            }
            out.extend(
                mine.iter()
                    .filter(|e| e.2 >= horizon)
                    .map(|e| (entity, e.2)),
            );
        }
        out.sort_unstable();
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every read (entity streams, a region query, the count, the catalogue) shows
    /// what the model says is visible, after every step (compactions among them,
    /// which remove exactly what is hidden), and again after a reopen.
    #[test]
    fn reads_show_what_the_model_keeps(steps in proptest::collection::vec(step(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let mut store = open(dir.path(), &clock);
        let mut model = Model::default();
        let mut now_ns = T0;
        let check = |store: &Store, model: &Model, now_ns: u64| {
            let want = model.visible(now_ns / 1_000_000);
            let mut got: Vec<(usize, u64)> = store
                .query(&Region::all(), 0, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| (ENTITIES.iter().position(|n| *n == e.coordinate.entity()).unwrap(), e.version))
                .collect();
            got.sort_unstable();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(store.count(&Region::all()).unwrap(), want.len() as u64);
            for (i, name) in ENTITIES.iter().enumerate() {
                let stream: Vec<u64> = versions(&store.stream(name).unwrap());
                let model_stream: Vec<u64> = want.iter().filter(|w| w.0 == i).map(|w| w.1).collect();
                prop_assert_eq!(&stream, &model_stream);
                let listed = store.entities(name, None, 10).into_iter().find(|e| e.entity == *name);
                prop_assert_eq!(listed.map(|e| e.events).unwrap_or(0), model_stream.len() as u64);
            }
            let kinds: u64 = store.kinds().iter().filter(|k| k.kind == Tick::KIND).map(|k| k.events).sum();
            prop_assert_eq!(kinds, want.len() as u64);
            Ok(())
        };
        for step in steps {
            match step {
                Step::Append { entity, scope } => {
                    let version = model.events.iter().filter(|e| e.0 == entity).count() as u64;
                    let res = store.append(&Coordinate::new(ENTITIES[entity], SCOPES[scope]).unwrap(), &Tick { n: version });
                    if model.deleted.get(&entity).is_some_and(|d| d.1) {
                        prop_assert!(matches!(res, Err(Error::EntityDeleted { .. })), "{:?}", res);
                    } else {
                        let r = res.unwrap();
                        prop_assert_eq!(r.version, version);
                        model.events.push((entity, scope, version, r.timestamp_ns / 1_000_000));
                    }
                }
                Step::Advance { secs } => {
                    clock.advance(Duration::from_secs(secs));
                    now_ns += secs * 1_000_000_000;
                }
                Step::Set { selector, rule } => {
                    store.set_retention(selectors()[selector].clone(), rules()[rule]).unwrap();
                    model.policies.insert(selector, rules()[rule]);
                }
                Step::Clear { selector } => {
                    store.clear_retention(&selectors()[selector]).unwrap();
                    model.policies.remove(&selector);
                }
                Step::Delete { entity, hard } => {
                    let version = model.events.iter().filter(|e| e.0 == entity).count() as u64;
                    let res = store.delete_entity(ENTITIES[entity], if hard { DeleteMode::Hard } else { DeleteMode::Soft });
                    match model.deleted.get(&entity) {
                        Some((_, true)) => prop_assert!(matches!(res, Err(Error::EntityDeleted { .. })), "{:?}", res),
                        _ if version == 0 && !hard => prop_assert!(matches!(res, Err(Error::NoSuchEntity { .. })), "{:?}", res),
                        _ => {
                            res.unwrap();
                            // A hard deletion hides all, so its "through" is unused.
                            model.deleted.insert(entity, (version.saturating_sub(1), hard));
                        }
                    }
                }
                Step::Compact => {
                    let visible: std::collections::HashSet<(usize, u64)> =
                        model.visible(now_ns / 1_000_000).into_iter().collect();
                    let hidden: Vec<(usize, u64)> = model
                        .events
                        .iter()
                        .map(|e| (e.0, e.2))
                        .filter(|e| !visible.contains(e) && !model.removed.contains(e))
                        .collect();
                    let report = store.compact().unwrap();
                    prop_assert_eq!(report.events_removed, hidden.len() as u64);
                    model.removed.extend(hidden);
                    prop_assert!(store.verify().unwrap().body.is_clean());
                }
            }
            check(&store, &model, now_ns)?;
        }
        store.close().unwrap();
        store = open(dir.path(), &clock);
        check(&store, &model, now_ns)?;
        prop_assert!(store.verify().unwrap().body.is_clean());
    }
}

#[test]
fn hidden_events_are_read_when_asked_for_and_a_preserved_copy_hides_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..5 {
        append(&store, "doc:1", "s", n);
    }
    store
        .set_retention(prefix("doc"), RetentionRule::MaxCount(2))
        .unwrap();
    store.delete_entity("doc:1", DeleteMode::Soft).unwrap();
    let all = Region::all().with_hidden();
    assert_eq!(store.count(&all).unwrap(), 5);
    assert_eq!(store.count(&Region::all()).unwrap(), 0);
    assert_eq!(
        Region::all().canonical(),
        Region::all()
            .with_hidden()
            .canonical()
            .replace(",\"hidden\":true", ""),
        "the option stays out of the canonical text when unset"
    );
    // The whole journal, store records and hidden events, copied with its identity.
    let journal = store
        .query(
            &Region::all().with_store_records().with_hidden(),
            0,
            usize::MAX,
        )
        .unwrap();
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = open(copy_dir.path(), &clock);
    copy.import_preserved(&journal).unwrap();
    assert!(copy.stream("doc:1").unwrap().is_empty());
    assert_eq!(copy.deletions(), store.deletions());
    assert_eq!(copy.retention(), store.retention());
    assert_eq!(copy.count(&all).unwrap(), 5);
}

fn keyed(store: &Store, entity: &str, key: &str) -> AppendReceipt {
    store
        .append_with(
            &Coordinate::new(entity, "s").unwrap(),
            &Tick { n: 0 },
            AppendOptions::default().idempotency_key(key),
        )
        .unwrap()
}

#[test]
fn the_idempotency_window_forgets_old_keys_the_same_way_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let builder = || {
        Store::builder(dir.path())
            .clock(clock.clone())
            .idempotency_window(batpak::IdempotencyWindow::keys(3))
    };
    let store = builder().open().unwrap();
    let first: Vec<AppendReceipt> = (1..=5)
        .map(|n| keyed(&store, "k", &format!("key-{n}")))
        .collect();
    assert_eq!(store.stats().unwrap().idempotency_keys, 3, "bounded");
    // A key inside the window is a retry; one outside it is a new event.
    assert_eq!(keyed(&store, "k", "key-5").event_id, first[4].event_id);
    let again = keyed(&store, "k", "key-1");
    assert_ne!(again.event_id, first[0].event_id);
    assert_eq!(again.version, 5);
    // key-1 is remembered again, for its new event; key-3 fell out.
    assert!(store.verify().unwrap().body.is_clean());
    store.close().unwrap();
    for rebuild in [false, true] {
        if rebuild {
            std::fs::remove_file(dir.path().join("index.ckpt")).ok();
        }
        let store = builder().open().unwrap();
        assert_eq!(store.stats().unwrap().idempotency_keys, 3);
        assert_eq!(
            keyed(&store, "k", "key-1").event_id,
            again.event_id,
            "rebuild {rebuild}"
        );
        assert_eq!(keyed(&store, "k", "key-4").event_id, first[3].event_id);
        assert!(store.verify().unwrap().body.is_clean(), "rebuild {rebuild}");
        store.close().unwrap();
    }
    // A larger window on reopen: the checkpoint kept three keys, and a key once
    // forgotten stays forgotten; a rebuild from the records remembers up to the window.
    let larger = || {
        Store::builder(dir.path())
            .clock(clock.clone())
            .open()
            .unwrap()
    };
    let store = larger();
    assert_eq!(store.stats().unwrap().idempotency_keys, 3);
    assert!(store.verify().unwrap().body.is_clean());
    store.close().unwrap();
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let store = larger();
    assert_eq!(store.stats().unwrap().idempotency_keys, 5);
    assert_eq!(keyed(&store, "k", "key-2").event_id, first[1].event_id);
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn an_age_bound_forgets_keys_older_than_the_newest_keyed_event_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = Store::builder(dir.path())
        .clock(clock.clone())
        .idempotency_window(batpak::IdempotencyWindow::keys(100).max_age(Duration::from_secs(60)))
        .open()
        .unwrap();
    let old = keyed(&store, "k", "old");
    clock.advance(Duration::from_secs(30));
    let mid = keyed(&store, "k", "mid");
    clock.advance(Duration::from_secs(40));
    // Seventy seconds on, but nothing keyed since: "old" is still remembered.
    assert_eq!(keyed(&store, "k", "old").event_id, old.event_id);
    keyed(&store, "k", "new");
    assert_ne!(
        keyed(&store, "k", "old").event_id,
        old.event_id,
        "forgotten"
    );
    assert_eq!(keyed(&store, "k", "mid").event_id, mid.event_id);
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn a_hidden_event_can_still_be_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let first = append(&store, "person:1", "s", 0);
    append(&store, "person:1", "s", 1);
    store.delete_entity("person:1", DeleteMode::Soft).unwrap();
    store.redact(first.event_id, "erasure request").unwrap();
    let stored = store
        .query(&Region::all().entity("person:1").with_hidden(), 0, 10)
        .unwrap();
    assert!(stored[0].is_redacted(), "the payload is gone from disk");
    assert!(
        store.get(first.event_id).unwrap().is_none(),
        "and still hidden"
    );
    assert!(store.verify().unwrap().body.is_clean());
}
