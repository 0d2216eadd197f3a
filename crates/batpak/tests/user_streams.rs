//! User streams hold user events: the store's own records (denials, bypass audits,
//! redaction records, reactor positions) never move a user entity's version and are
//! not returned unless asked for; a fold over a stream passes a redacted event;
//! reactor bookkeeping stays bounded; metadata travels with every kind of append.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use batpak::gate::{gate, Denial, GateSet, Proposal, RecordedDenial};
use batpak::reactor::{Reactions, ReactorOptions};
use batpak::{
    AppendOptions, Batch, Coordinate, EventKind, EventPayload, ExpectedVersion, Metadata,
    Redaction, Region, Store, StoredEvent,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Deposited {
    cents: u64,
}
impl EventPayload for Deposited {
    const KIND: EventKind = EventKind::custom(1, 1);
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Withdrawn {
    cents: u64,
}
impl EventPayload for Withdrawn {
    const KIND: EventKind = EventKind::custom(1, 2);
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Noted {
    n: u64,
}
impl EventPayload for Noted {
    const KIND: EventKind = EventKind::custom(2, 1);
}

fn account() -> Coordinate {
    Coordinate::new("account:7", "bank").unwrap()
}

fn no_overdraft() -> GateSet<u64> {
    GateSet::new().with(gate("overdraft", |balance: &u64| {
        if *balance >= 300 {
            Ok(())
        } else {
            Err(Denial::new("overdraft", "not enough money"))
        }
    }))
}

/// Deposits 500, has a withdrawal refused (recorded), redacts the deposit.
fn store_with_a_denial_and_a_redaction(dir: &std::path::Path) -> (Store, Vec<StoredEvent>) {
    let store = Store::open(dir).unwrap();
    let deposit = store.append(&account(), &Deposited { cents: 500 }).unwrap();
    store.append(&account(), &Deposited { cents: 100 }).unwrap();
    let refused = store
        .propose(
            Proposal::new(account(), Withdrawn { cents: 900 }).recording_denials(),
            &no_overdraft(),
            &100,
        )
        .unwrap();
    assert!(matches!(refused, batpak::gate::Decision::Denied(_)));
    store.redact(deposit.event_id, "test").unwrap();
    let all = store
        .query(&Region::all().with_store_records(), 0, usize::MAX)
        .unwrap();
    (store, all)
}

#[test]
fn versions_unchanged_by_denials_and_redactions() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = store_with_a_denial_and_a_redaction(dir.path());
    // Two user events, a denial and a redaction record: four in the journal.
    assert_eq!(all.len(), 4);
    let kinds: Vec<EventKind> = all.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            Deposited::KIND,
            Deposited::KIND,
            RecordedDenial::KIND,
            Redaction::KIND
        ]
    );
    assert_eq!(all[2].coordinate.entity(), "batpak:gate");
    assert_eq!(all[3].coordinate.entity(), "batpak:redactions");
    assert_eq!(all[3].coordinate.scope(), "bank", "the target's scope");
    assert_eq!(all[3].causation, Some(all[0].id), "caused by its target");
    let denial: RecordedDenial = all[2].decode().unwrap();
    assert_eq!(denial.entity, "account:7");
    // The account is at version 1: a client holding its last own version appends.
    let next = store
        .append_with(
            &account(),
            &Withdrawn { cents: 50 },
            AppendOptions::expect(ExpectedVersion::Exact(1)),
        )
        .unwrap();
    assert_eq!(next.version, 2);
    // Still tamper-evident: every store record is on a chain that verifies.
    let report = store.verify().unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
    for record in &all[2..] {
        let walk = store.walk_ancestors(record.id, 10).unwrap().unwrap();
        assert!(walk.broken.is_none() && walk.reached_first);
    }
}

#[test]
fn store_records_are_left_out_of_every_read_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_a_denial_and_a_redaction(dir.path());
    assert_eq!(store.stream("account:7").unwrap().len(), 2);
    assert_eq!(store.query(&Region::all(), 0, 100).unwrap().len(), 2);
    assert_eq!(
        store
            .query(&Region::all().scope("bank"), 0, 100)
            .unwrap()
            .len(),
        2
    );
    assert!(store.stream("batpak:gate").unwrap().is_empty());
    assert_eq!(
        store
            .query(&Region::all().scope("bank").with_store_records(), 0, 100)
            .unwrap()
            .len(),
        4
    );
    // Naming a store kind asks for it.
    assert_eq!(
        store
            .query(&Region::all().kind(Redaction::KIND), 0, 100)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .query(&Region::all().category(0), 0, 100)
            .unwrap()
            .len(),
        2
    );
    // Subscriptions and cursors see user events only.
    let mut live = store.subscribe_from(Region::all(), 1);
    let seen: Vec<u64> = (0..2)
        .map(|_| live.recv_timeout(Duration::from_secs(5)).unwrap().sequence)
        .collect();
    assert_eq!(seen, [1, 2]);
    let mut cursor = store.cursor("c", Region::all()).unwrap();
    let batch = cursor.next_batch(100, Duration::from_millis(50)).unwrap();
    assert_eq!(batch.len(), 2);
    // The canonical text of a region without the option is what it was before it.
    assert_eq!(
        Region::all().canonical(),
        r#"{"entity":null,"scope":null,"kind":null,"versions":null,"sequences":null}"#
    );
    assert!(Region::all()
        .with_store_records()
        .canonical()
        .ends_with(r#","store_records":true}"#));
}

#[test]
fn a_naive_fold_over_a_stream_with_a_redacted_event_and_a_denial() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_a_denial_and_a_redaction(dir.path());
    // The README's loop: decode_if passes the redacted deposit instead of failing.
    let mut balance = 0;
    let mut erased = 0;
    for event in store.stream("account:7").unwrap() {
        if let Some(d) = event.decode_if::<Deposited>().unwrap() {
            balance += d.cents;
        }
        erased += usize::from(event.is_redacted());
    }
    assert_eq!((balance, erased), (100, 1));
    // decode itself still says what happened.
    let first = &store.stream("account:7").unwrap()[0];
    assert!(matches!(
        first.decode::<Deposited>(),
        Err(batpak::Error::Redacted { .. })
    ));
}

#[test]
fn bounded_reactor_bookkeeping_over_10000_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::builder(dir.path())
            .sync_policy(batpak::SyncPolicy::Never)
            .open()
            .unwrap(),
    );
    let mut batch = Batch::new();
    for n in 0..10_000u64 {
        batch
            .push(
                &Coordinate::new(format!("note:{}", n % 50), "s").unwrap(),
                &Noted { n },
                AppendOptions::default(),
            )
            .unwrap();
        if batch.len() == 1000 {
            store.append_batch(&batch).unwrap();
            batch = Batch::new();
        }
    }
    // A reactor over every event, reacting to each with one event.
    let react = |event: &StoredEvent, out: &mut Reactions| {
        if let Some(noted) = event.decode_if::<Noted>()? {
            out.emit(
                &Coordinate::new(format!("echo:{}", noted.n % 50), "s").unwrap(),
                &Deposited { cents: noted.n },
            )?;
        }
        Ok(())
    };
    let handle = store
        .react("echo", Region::all(), ReactorOptions::default(), react)
        .unwrap();
    let status = handle.wait_for(10_000, Duration::from_secs(60));
    assert!(status.position >= 10_000, "{status:?}");
    // Its own reactions are sources too (Region::all()); they react to nothing.
    std::thread::sleep(Duration::from_millis(300));
    let end = handle.stop();
    assert_eq!(end.reactions, 10_000, "{end:?}");
    let bookkeeping = store
        .query(
            &Region::all()
                .entity("batpak:reactor:echo")
                .with_store_records(),
            0,
            usize::MAX,
        )
        .unwrap();
    // The start record, one per 1,024 sequences passed (20,000 here), one at stop.
    assert!(
        bookkeeping.len() <= 2 + 20_000 / 1024,
        "{} position records for 10,000 sources",
        bookkeeping.len()
    );
    assert_eq!(
        store.query(&Region::all(), 0, usize::MAX).unwrap().len(),
        20_000
    );
    // Restarted, it reacts to nothing again (every marker is found).
    let handle = store
        .react("echo", Region::all(), ReactorOptions::default(), react)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let again = handle.stop();
    assert_eq!(again.reactions, 0, "{again:?}");
    assert_eq!(
        store.query(&Region::all(), 0, usize::MAX).unwrap().len(),
        20_000
    );
}

/// A reactor killed after committing reactions but before recording its position
/// replays the sources without reacting twice.
#[test]
fn a_reactor_restarted_behind_its_reactions_reacts_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    for n in 0..5 {
        store.append(&account(), &Deposited { cents: n }).unwrap();
    }
    let react = |event: &StoredEvent, out: &mut Reactions| {
        let d: Deposited = event.decode()?;
        out.emit(
            &Coordinate::new("audit", "bank").unwrap(),
            &Noted { n: d.cents },
        )
    };
    let region = || Region::all().kind(Deposited::KIND);
    let handle = store
        .react("audit", region(), ReactorOptions::default(), react)
        .unwrap();
    handle.wait_for(5, Duration::from_secs(10));
    // Dropping the store without stop() leaves the position where it started (0).
    std::mem::forget(handle);
    let stream = store.stream("audit").unwrap();
    assert_eq!(stream.len(), 5);
    let positions = store
        .query(
            &Region::all()
                .entity("batpak:reactor:audit")
                .with_store_records(),
            0,
            10,
        )
        .unwrap();
    assert_eq!(positions.len(), 1, "only the start record");
    drop(store);
    // The forgotten thread still holds an Arc; a second process-like open is not
    // possible, so reopen through a copy of the directory.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path().join("segments")).unwrap() {
        let entry = entry.unwrap();
        std::fs::create_dir_all(copy.path().join("segments")).unwrap();
        std::fs::copy(
            entry.path(),
            copy.path().join("segments").join(entry.file_name()),
        )
        .unwrap();
    }
    let store = Arc::new(Store::open(copy.path()).unwrap());
    let handle = store
        .react("audit", region(), ReactorOptions::default(), react)
        .unwrap();
    handle.wait_for(5, Duration::from_secs(10));
    let end = handle.stop();
    assert_eq!(end.reactions, 0, "every source's marker was found: {end:?}");
    assert_eq!(store.stream("audit").unwrap().len(), 5);
}

#[test]
fn metadata_round_trip_through_append_batch_transaction_reactor_read_and_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let meta = Metadata::new()
        .with("user", "ada")
        .with("trace", "4bf92f3577b34da6");
    // A single append.
    let one = store
        .append_with(
            &account(),
            &Deposited { cents: 1 },
            AppendOptions::default().metadata(meta.clone()),
        )
        .unwrap();
    // A batch.
    let mut batch = Batch::new();
    batch
        .push(
            &account(),
            &Deposited { cents: 2 },
            AppendOptions::default().meta("source", "batch"),
        )
        .unwrap();
    batch
        .push(
            &account(),
            &Deposited { cents: 3 },
            AppendOptions::default(),
        )
        .unwrap();
    let two = store.append_batch(&batch).unwrap();
    // A transaction.
    let mut tx = store.transaction();
    tx.append_with(
        &account(),
        &Deposited { cents: 4 },
        AppendOptions::default().meta("source", "tx"),
    )
    .unwrap();
    let three = tx.commit().unwrap();
    // A reactor copying one chosen key.
    let handle = store
        .react(
            "copier",
            Region::all().kind(Deposited::KIND),
            ReactorOptions::default().copy_metadata(["user"]),
            |event: &StoredEvent, out: &mut Reactions| {
                out.emit_with(
                    &Coordinate::new("copied", "bank").unwrap(),
                    &Noted { n: event.sequence },
                    AppendOptions::default().meta("reactor", "copier"),
                )
            },
        )
        .unwrap();
    handle.wait_for(three[0].sequence, Duration::from_secs(10));
    handle.stop();

    let read = |id| store.get(id).unwrap().unwrap();
    let first = read(one.event_id);
    assert_eq!(first.metadata, meta);
    assert_eq!(first.receipt(), one, "the receipt covers the metadata");
    assert_eq!(read(two[0].event_id).metadata.get("source"), Some("batch"));
    assert!(read(two[1].event_id).metadata.is_empty());
    assert_eq!(read(three[0].event_id).metadata.get("source"), Some("tx"));
    let copied = store.stream("copied").unwrap();
    assert_eq!(copied.len(), 4);
    assert_eq!(copied[0].metadata.get("user"), Some("ada"));
    assert_eq!(copied[0].metadata.get("reactor"), Some("copier"));
    assert_eq!(copied[0].metadata.get("trace"), None, "only the chosen key");
    assert_eq!(copied[1].metadata.get("user"), None);
    // The hash covers it: the same event with other metadata has another hash.
    let mut forged = first.clone();
    forged.metadata.insert("user", "eve");
    assert_ne!(forged.event_hash(), first.event_hash());
    // An idempotent retry must repeat the metadata too.
    let keyed = AppendOptions::default()
        .idempotency_key("k")
        .meta("user", "ada");
    let original = store
        .append_with(&account(), &Deposited { cents: 9 }, keyed.clone())
        .unwrap();
    assert_eq!(
        store
            .append_with(&account(), &Deposited { cents: 9 }, keyed)
            .unwrap(),
        original
    );
    let err = store
        .append_with(
            &account(),
            &Deposited { cents: 9 },
            AppendOptions::default()
                .idempotency_key("k")
                .meta("user", "eve"),
        )
        .unwrap_err();
    assert!(
        matches!(err, batpak::Error::IdempotencyConflict { .. }),
        "{err}"
    );
    // Reopened (from the checkpoint, and rebuilt), it reads back the same.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(one.event_id).unwrap().unwrap().metadata, meta);
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn metadata_over_a_limit_is_refused_naming_the_key_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = store
        .append_with(
            &account(),
            &Deposited { cents: 1 },
            AppendOptions::default().meta("note", "x".repeat(Metadata::MAX_VALUE_LEN + 1)),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"note\"") && text.contains("2049 bytes"),
        "{text}"
    );
    assert_eq!(store.stats().unwrap().events, 0);
}

/// When the caller keys every reaction there is no room for the marker: a position
/// record joins each batch instead, and a restart still reacts to nothing twice.
#[test]
fn a_reactor_whose_reactions_are_all_keyed_records_its_position_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    for n in 0..3 {
        store.append(&account(), &Deposited { cents: n }).unwrap();
    }
    let react = |event: &StoredEvent, out: &mut Reactions| {
        let d: Deposited = event.decode()?;
        out.emit_with(
            &Coordinate::new("keyed", "bank").unwrap(),
            &Noted { n: d.cents },
            AppendOptions::default().idempotency_key(format!("mine-{}", event.id)),
        )
    };
    let region = || Region::all().kind(Deposited::KIND);
    let positions = |store: &Store| {
        store
            .query(
                &Region::all()
                    .entity("batpak:reactor:keyed")
                    .kind(batpak::reactor::ReactorPosition::KIND),
                0,
                100,
            )
            .unwrap()
    };
    let handle = store
        .react("keyed", region(), ReactorOptions::default(), react)
        .unwrap();
    handle.wait_for(3, Duration::from_secs(10));
    // The start record and one per source, before any stop.
    assert_eq!(positions(&store).len(), 4);
    let reacted = store.stream("keyed").unwrap();
    assert!(reacted.iter().all(|e| e.causation.is_some()));
    assert_eq!(handle.stop().reactions, 3);
    let handle = store
        .react("keyed", region(), ReactorOptions::default(), react)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(handle.stop().reactions, 0);
    assert_eq!(store.stream("keyed").unwrap().len(), 3);
}
