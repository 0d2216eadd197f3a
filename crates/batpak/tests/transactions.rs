//! Transactions: all events visible at once on commit, nothing on abort, drop or
//! crash; expected versions see the transaction's own appends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, Coordinate, Error, EventKind, ExpectedVersion, RawPayload, Region, Store,
    SyncPolicy,
};

const KIND: EventKind = EventKind::custom(1, 1);

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "s").unwrap()
}

fn raw(bytes: &[u8]) -> RawPayload<'_> {
    RawPayload::opaque(bytes)
}

#[test]
fn a_commit_makes_every_event_visible_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append_raw(
            &coord("acct:1"),
            KIND,
            raw(b"open"),
            AppendOptions::default(),
        )
        .unwrap();
    let mut sub = store.subscribe(Region::all());
    let mut tx = store.transaction();
    // Expected versions see the transaction's own earlier appends.
    let expect = |v| AppendOptions::expect(ExpectedVersion::Exact(v));
    let debit = tx
        .append_raw(&coord("acct:1"), KIND, raw(b"debit"), expect(0))
        .unwrap();
    tx.append_raw(&coord("acct:1"), KIND, raw(b"fee"), expect(1))
        .unwrap();
    tx.append_raw(
        &coord("acct:2"),
        KIND,
        raw(b"credit"),
        AppendOptions::expect(ExpectedVersion::NoStream).caused_by_item(debit),
    )
    .unwrap();
    assert_eq!(tx.version_of("acct:1"), Some(2));
    assert_eq!(tx.version_of("acct:2"), Some(0));
    // A conflicting append is refused at once and leaves the transaction usable.
    assert!(matches!(
        tx.append_raw(&coord("acct:1"), KIND, raw(b"x"), expect(0)),
        Err(Error::VersionConflict {
            actual: Some(2),
            ..
        })
    ));
    assert_eq!(tx.len(), 3);
    // Nothing is visible before the commit.
    assert!(matches!(sub.try_recv(), Err(batpak::RecvError::Empty)));
    assert_eq!(store.stats().unwrap().events, 1);
    let receipts = tx.commit().unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(receipts[2].version, 0);
    let seen: Vec<u64> = (0..3).map(|_| sub.try_recv().unwrap().sequence).collect();
    assert_eq!(seen, vec![2, 3, 4], "all three at once");
    let credit = store.get(receipts[2].event_id).unwrap().unwrap();
    assert_eq!(credit.causation, Some(receipts[0].event_id));
}

#[test]
fn abort_and_drop_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before = store.stats().unwrap();
    let mut tx = store.transaction();
    tx.append_raw(&coord("e"), KIND, raw(b"a"), AppendOptions::default())
        .unwrap();
    tx.abort();
    {
        let mut tx = store.transaction();
        tx.append_raw(&coord("e"), KIND, raw(b"b"), AppendOptions::default())
            .unwrap();
    } // dropped
    assert!(store.transaction().commit().unwrap().is_empty());
    let after = store.stats().unwrap();
    assert_eq!(after, before);
    assert!(store.stream("e").unwrap().is_empty());
}

#[test]
fn a_concurrent_append_makes_the_commit_conflict_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut tx = store.transaction();
    tx.append_raw(
        &coord("e"),
        KIND,
        raw(b"mine"),
        AppendOptions::expect(ExpectedVersion::NoStream),
    )
    .unwrap();
    tx.append_raw(&coord("f"), KIND, raw(b"other"), AppendOptions::default())
        .unwrap();
    store
        .append_raw(&coord("e"), KIND, raw(b"theirs"), AppendOptions::default())
        .unwrap();
    assert!(matches!(
        tx.commit(),
        Err(Error::VersionConflict {
            actual: Some(0),
            ..
        })
    ));
    assert_eq!(store.stats().unwrap().events, 1);
    assert!(store.stream("f").unwrap().is_empty());
    // Reserved kinds and oversized payloads are refused at append time.
    let mut tx = store.transaction();
    let huge = vec![0u8; batpak::RawPayload::MAX_LEN + 1];
    assert!(matches!(
        tx.append_raw(&coord("e"), KIND, raw(&huge), AppendOptions::default()),
        Err(Error::TooLarge {
            what: "payload",
            ..
        })
    ));
    assert!(tx.is_empty());
    assert!(matches!(
        tx.append_raw(
            &coord("e"),
            EventKind::custom(0, 9),
            raw(b"x"),
            AppendOptions::default()
        ),
        Err(Error::ReservedKind { .. })
    ));
}

const ENV_DIR: &str = "BATPAK_TX_KILL9_DIR";

/// Child: commits transactions of 1 to 8 events across entities, printing
/// `@@COMMIT <n> <size>` after each commit returned. Payload: n (u64) and size (u8).
#[test]
#[ignore = "child process of transactions_survive_kill9"]
fn child_commits_transactions() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let store = Store::open(&dir).unwrap();
    let start = store.stats().unwrap().events;
    let mut out = std::io::stdout();
    writeln!(out, "@@OPEN").unwrap();
    for n in start.. {
        let size = 1 + (n % 8) as u8;
        let mut tx = store.transaction();
        for i in 0..size {
            let mut payload = n.to_le_bytes().to_vec();
            payload.push(size);
            payload.extend(std::iter::repeat_n(i, 200)); // frames span pages
            tx.append_raw(
                &coord(&format!("acct:{}", (n + u64::from(i)) % 5)),
                KIND,
                raw(&payload),
                AppendOptions::default(),
            )
            .unwrap();
        }
        tx.commit().unwrap();
        writeln!(out, "@@COMMIT {n} {size}").unwrap();
    }
}

#[test]
fn transactions_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut delays = support::Delays::new();
    let started = Instant::now();
    let mut acked: BTreeMap<u64, u8> = BTreeMap::new();
    let mut rounds = 0;
    let (max_rounds, budget) = (
        support::setting("BATPAK_TX_KILL9_ROUNDS", 10),
        Duration::from_secs(support::setting("BATPAK_TX_KILL9_BUDGET_SECS", 6)),
    );
    while rounds < max_rounds && started.elapsed() < budget {
        let killed = support::run_and_kill(
            "child_commits_transactions",
            &[(ENV_DIR, dir.path().display().to_string())],
            delays.next(10, 70),
        );
        for line in &killed.lines {
            if let Some(rest) = line.strip_prefix("@@COMMIT ") {
                let (n, size) = rest.split_once(' ').unwrap();
                acked.insert(n.parse().unwrap(), size.parse().unwrap());
            }
        }
        // Every transaction in the store is whole and contiguous; every acknowledged
        // one is there.
        let store = Store::builder(dir.path())
            .sync_policy(SyncPolicy::Always)
            .open()
            .unwrap();
        let mut found: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for e in store.query(&Region::all(), 0, usize::MAX).unwrap() {
            let n = u64::from_le_bytes(e.payload[..8].try_into().unwrap());
            assert_eq!(e.payload[8], 1 + (n % 8) as u8);
            found.entry(n).or_default().push(e.sequence);
        }
        for (n, seqs) in &found {
            let size = 1 + (n % 8) as usize;
            assert_eq!(seqs.len(), size, "transaction {n} is partial: {seqs:?}");
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{n}: {seqs:?}");
        }
        for (n, size) in &acked {
            assert_eq!(
                found.get(n).map(Vec::len),
                Some(usize::from(*size)),
                "lost {n}"
            );
        }
        assert!(store.verify().unwrap().body.is_clean());
        store.close().unwrap();
        rounds += 1;
    }
    assert!(
        !acked.is_empty(),
        "no child committed anything before it was killed"
    );
    println!(
        "{rounds} rounds, {} transactions acknowledged, every one whole",
        acked.len()
    );
}
