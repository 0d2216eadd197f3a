//! Reactors: reactions and position committed together, so every source is reacted
//! to exactly once across stops, errors and kill -9.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batpak::{
    Coordinate, Error, EventId, EventKind, EventPayload, Region, Store, StoredEvent, SyncPolicy,
};

use batpak::reactor::{OnError, Reactions, ReactorOptions, ReactorSkipped, ReactorState};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Paid {
    n: u64,
}
impl EventPayload for Paid {
    const KIND: EventKind = EventKind::custom(2, 1);
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Receipted {
    n: u64,
}
impl EventPayload for Receipted {
    const KIND: EventKind = EventKind::custom(3, 1);
}

const WAIT: Duration = Duration::from_secs(10);

fn pay(store: &Store, n: u64) -> u64 {
    store
        .append(
            &Coordinate::new(format!("payment:{}", n % 3), "shop").unwrap(),
            &Paid { n },
        )
        .unwrap()
        .sequence
}

fn payments() -> Region {
    Region::all().kind(Paid::KIND)
}

/// Emits one receipt per payment.
fn receipt(event: &StoredEvent, out: &mut Reactions) -> batpak::Result<()> {
    let paid: Paid = event.decode()?;
    out.emit(
        &Coordinate::new(format!("receipt:{}", paid.n), "shop").unwrap(),
        &Receipted { n: paid.n },
    )
}

/// Payment id -> the reactions caused by it.
fn reactions_by_source(store: &Store) -> HashMap<EventId, Vec<StoredEvent>> {
    let mut by: HashMap<EventId, Vec<StoredEvent>> = HashMap::new();
    for r in store
        .query(&Region::all().kind(Receipted::KIND), 0, usize::MAX)
        .unwrap()
    {
        by.entry(r.causation.expect("a reaction names its source"))
            .or_default()
            .push(r);
    }
    by
}

fn open(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(
        Store::builder(dir)
            .sync_policy(SyncPolicy::Never)
            .open()
            .unwrap(),
    )
}

#[test]
fn reactions_are_linked_and_a_restart_does_not_repeat_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 0..20 {
        pay(&store, n);
    }
    let handle = store
        .react("receipts", payments(), ReactorOptions::default(), receipt)
        .unwrap();
    let last = store.frontier().visible;
    let status = handle.wait_for(last, WAIT);
    assert_eq!((status.handled, status.reactions), (20, 20), "{status:?}");
    assert!(matches!(
        store.react("receipts", payments(), ReactorOptions::default(), receipt),
        Err(Error::CursorInUse { .. })
    ));
    // Events outside the region do not keep a waiter waiting.
    let outside = store
        .append_raw(
            &Coordinate::new("other", "shop").unwrap(),
            EventKind::custom(5, 1),
            batpak::RawPayload::opaque(b""),
            batpak::AppendOptions::default(),
        )
        .unwrap()
        .sequence;
    assert!(handle.wait_for(outside, WAIT).position >= outside);
    let stopped = handle.stop();
    assert_eq!(stopped.state, ReactorState::Stopped);

    // Live, after a restart of the reactor: only the new payments.
    let handle = store
        .react("receipts", payments(), ReactorOptions::default(), receipt)
        .unwrap();
    let mut last = 0;
    for n in 20..25 {
        last = pay(&store, n);
    }
    let status = handle.wait_for(last, WAIT);
    assert_eq!(status.reactions, 5, "{status:?}");
    drop(handle);

    let by = reactions_by_source(&store);
    let sources = store.query(&payments(), 0, usize::MAX).unwrap();
    assert_eq!(by.len(), 25);
    for source in &sources {
        let reactions = &by[&source.id];
        assert_eq!(reactions.len(), 1, "exactly once");
        assert_eq!(
            reactions[0].correlation,
            Some(source.id),
            "a workflow starts at the source"
        );
        let paid: Paid = source.decode().unwrap();
        assert_eq!(reactions[0].decode::<Receipted>().unwrap().n, paid.n);
    }
}

/// Found with the cursor fuzzing: a reactor starting after `u64::MAX` overflowed
/// computing where its feed resumes and its thread panicked (debug builds).
#[test]
fn a_reactor_starting_after_the_last_possible_sequence_reacts_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let options = ReactorOptions {
        start: batpak::CursorStart::After(u64::MAX),
        ..ReactorOptions::default()
    };
    let handle = store.react("late", payments(), options, receipt).unwrap();
    pay(&store, 1);
    let status = handle.wait_for(u64::MAX, Duration::from_millis(300));
    assert_eq!(status.state, ReactorState::Running, "{status:?}");
    let stopped = handle.stop();
    assert_eq!(stopped.state, ReactorState::Stopped, "{stopped:?}");
    assert_eq!(stopped.handled, 0);
}

#[test]
fn stop_policy_fails_at_the_source_and_a_fixed_handler_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut seqs = Vec::new();
    for n in 0..10 {
        seqs.push(pay(&store, n));
    }
    let failing = |event: &StoredEvent, out: &mut Reactions| {
        if event.decode::<Paid>()?.n == 5 {
            return Err(Error::InvalidConfig {
                reason: "the printer is out of paper".into(),
            });
        }
        receipt(event, out)
    };
    let handle = store
        .react("receipts", payments(), ReactorOptions::default(), failing)
        .unwrap();
    let status = handle.wait_for(u64::MAX, WAIT);
    match &status.state {
        ReactorState::Failed { sequence, error } => {
            assert_eq!(*sequence, seqs[5]);
            assert!(error.contains("out of paper"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(status.reactions, 5);
    drop(handle);
    let handle = store
        .react("receipts", payments(), ReactorOptions::default(), receipt)
        .unwrap();
    let status = handle.wait_for(seqs[9], WAIT);
    assert_eq!(status.reactions, 5);
    drop(handle);
    assert!(reactions_by_source(&store).values().all(|r| r.len() == 1));
    assert_eq!(reactions_by_source(&store).len(), 10);
}

#[test]
fn retry_and_skip_policies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut seqs = Vec::new();
    for n in 0..6 {
        seqs.push(pay(&store, n));
    }
    // Fails twice on payment 2, then succeeds.
    let mut failures = 0;
    let flaky = move |event: &StoredEvent, out: &mut Reactions| {
        if event.decode::<Paid>()?.n == 2 && failures < 2 {
            failures += 1;
            return Err(Error::InvalidConfig {
                reason: "flaky".into(),
            });
        }
        receipt(event, out)
    };
    let options = ReactorOptions {
        on_error: OnError::Retry {
            attempts: 3,
            backoff: Duration::from_millis(5),
        },
        ..ReactorOptions::default()
    };
    let handle = store.react("retrying", payments(), options, flaky).unwrap();
    let status = handle.wait_for(seqs[5], WAIT);
    assert_eq!((status.reactions, status.retries), (6, 2), "{status:?}");
    drop(handle);

    // Skip: payment 3 always fails (by panicking); it is recorded and passed.
    let panicking = |event: &StoredEvent, out: &mut Reactions| {
        if event.decode::<Paid>()?.n == 3 {
            panic!("bad data in payment 3");
        }
        out.emit(
            &Coordinate::new("audit", "shop").unwrap(),
            &Receipted { n: 100 },
        )
    };
    let options = ReactorOptions {
        on_error: OnError::Skip,
        ..ReactorOptions::default()
    };
    let handle = store
        .react("skipping", payments(), options, panicking)
        .unwrap();
    let status = handle.wait_for(seqs[5], WAIT);
    assert_eq!((status.reactions, status.skipped), (5, 1), "{status:?}");
    drop(handle);
    let skips = store
        .query(&Region::all().kind(ReactorSkipped::KIND), 0, usize::MAX)
        .unwrap();
    assert_eq!(skips.len(), 1);
    let skipped: ReactorSkipped = skips[0].decode().unwrap();
    assert_eq!(skipped.reactor, "skipping");
    assert!(
        skipped.error.contains("bad data in payment 3"),
        "{}",
        skipped.error
    );
    let source = store.query(&payments(), 0, usize::MAX).unwrap()[3].id;
    assert_eq!(skipped.source, source);
    // Restarted, the skipping reactor does not visit payment 3 again.
    let handle = store
        .react("skipping", payments(), ReactorOptions::default(), panicking)
        .unwrap();
    let status = handle.wait_for(seqs[5], Duration::from_millis(200));
    assert_eq!(status.state, ReactorState::Running);
    assert_eq!(status.handled, 0);
}

#[test]
fn a_reactor_over_every_event_does_not_feed_on_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let only_payments =
        |event: &StoredEvent, out: &mut Reactions| match event.decode_if::<Paid>()? {
            Some(_) => receipt(event, out),
            None => Ok(()),
        };
    let handle = store
        .react(
            "all",
            Region::all(),
            ReactorOptions::default(),
            only_payments,
        )
        .unwrap();
    let mut last = 0;
    for n in 0..5 {
        last = pay(&store, n);
    }
    assert_eq!(handle.wait_for(last, WAIT).reactions, 5);
    // Idle for a few polls: the number of events must settle.
    std::thread::sleep(Duration::from_millis(300));
    let settled = store.frontier().visible;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        store.frontier().visible,
        settled,
        "the reactor keeps appending"
    );
    drop(handle);
}

const ENV_DIR: &str = "BATPAK_REACTOR_KILL9_DIR";

/// Child: one thread pays, a reactor issues receipts; both until killed.
#[test]
#[ignore = "child process of reactors_react_exactly_once_across_kill9"]
fn child_pays_and_reacts() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let store = Arc::new(Store::open(&dir).unwrap());
    let start = store.query(&payments(), 0, usize::MAX).unwrap().len() as u64;
    let _reactor = store
        .react("receipts", payments(), ReactorOptions::default(), receipt)
        .unwrap();
    writeln!(std::io::stdout(), "@@OPEN").unwrap();
    for n in start.. {
        pay(&store, n);
    }
}

#[test]
fn reactors_react_exactly_once_across_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut delays = support::Delays::new();
    let started = Instant::now();
    let mut rounds = 0;
    let (max_rounds, budget) = (
        support::setting("BATPAK_REACTOR_KILL9_ROUNDS", 10),
        Duration::from_secs(support::setting("BATPAK_REACTOR_KILL9_BUDGET_SECS", 6)),
    );
    while rounds < max_rounds && started.elapsed() < budget {
        let killed = support::run_and_kill(
            "child_pays_and_reacts",
            &[(ENV_DIR, dir.path().display().to_string())],
            delays.next(20, 120),
        );
        let _ = killed.opened;
        let store = Store::open(dir.path()).unwrap();
        for (source, reactions) in reactions_by_source(&store) {
            assert_eq!(reactions.len(), 1, "source {source} reacted to twice");
        }
        store.close().unwrap();
        rounds += 1;
    }
    // Finish the backlog; then every payment has exactly one receipt.
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let sources = store.query(&payments(), 0, usize::MAX).unwrap();
    assert!(sources.len() > 10, "the children paid something");
    let handle = store
        .react("receipts", payments(), ReactorOptions::default(), receipt)
        .unwrap();
    let status = handle.wait_for(sources.last().unwrap().sequence, WAIT);
    assert_eq!(status.state, ReactorState::Running);
    drop(handle);
    let by = reactions_by_source(&store);
    assert_eq!(by.len(), sources.len(), "every payment has a receipt");
    for source in &sources {
        let reactions = &by[&source.id];
        assert_eq!(reactions.len(), 1);
        let n = source.decode::<Paid>().unwrap().n;
        assert_eq!(reactions[0].decode::<Receipted>().unwrap().n, n);
    }
    println!(
        "{rounds} rounds, {} payments, each with one receipt",
        sources.len()
    );
}
