//! Redaction against a real `kill -9`.
//!
//! The test binary runs itself as a child (the ignored `child_redacts` test, which
//! returns at once unless `BATPAK_REDACT_DIR` names a store). The child appends
//! events carrying a recognisable secret and redacts every other one, printing
//! `@@REDACTED <id>` after each redaction returned. The parent kills it after a random
//! delay, reopens the store and checks: no pending rewrite is left, `verify()` is
//! clean, every acknowledged redaction holds, every `Redaction` record's target is
//! erased, and no secret of a redacted event is left in any file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use batpak::EventPayload as _;
use batpak::{AppendOptions, Coordinate, EventId, EventKind, RawPayload, Redaction, Region, Store};

const ENV_DIR: &str = "BATPAK_REDACT_DIR";
const ENV_ROUND: &str = "BATPAK_REDACT_ROUND";
const ROUNDS: u32 = 12;
const BUDGET: Duration = Duration::from_secs(8);
/// Overrides rounds and budget (seconds) for long soak runs.
const ENV_ROUNDS: &str = "BATPAK_REDACT_KILL9_ROUNDS";
const ENV_BUDGET: &str = "BATPAK_REDACT_KILL9_BUDGET_SECS";

const KIND: EventKind = EventKind::custom(1, 1);
/// Every secret starts with this and is `SECRET_LEN` bytes long.
const MARK: &[u8] = b"SECRET-";
const SECRET_LEN: usize = 32;

fn secret(round: u32, n: u64) -> String {
    let s = format!("SECRET-{round:04}-{n:08}-xxxxxxxxxxx");
    assert_eq!(s.len(), SECRET_LEN);
    s
}

#[test]
#[ignore = "child process of redaction_survives_kill9"]
fn child_redacts() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let round: u32 = std::env::var(ENV_ROUND).unwrap().parse().unwrap();
    let store = Store::builder(&dir).segment_size(64 * 1024).open().unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "@@OPEN").unwrap();
    for n in 0..u64::MAX {
        let c = Coordinate::new(format!("person:{}", n % 5), "tenant:k").unwrap();
        let r = store
            .append_raw(
                &c,
                KIND,
                RawPayload::opaque(secret(round, n).as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
        if n % 2 == 0 {
            store.redact(r.event_id, "kill9 test").unwrap();
            writeln!(out, "@@REDACTED {}", r.event_id).unwrap();
        }
    }
}

/// Every `SECRET_LEN`-byte secret found in any file under `dir`.
fn secrets_on_disk(dir: &Path) -> HashSet<Vec<u8>> {
    let mut found = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for (i, w) in bytes.windows(MARK.len()).enumerate() {
                if w == MARK && i + SECRET_LEN <= bytes.len() {
                    found.insert(bytes[i..i + SECRET_LEN].to_vec());
                }
            }
        }
    }
    found
}

/// Reopens and checks; returns (redaction records, unredacted events, redactions the
/// open had to finish).
fn check(dir: &Path, acked: &[EventId]) -> (usize, usize, u64) {
    let store = Store::builder(dir).segment_size(64 * 1024).open().unwrap();
    let finished = store.open_report().redactions_finished;
    assert!(!dir.join("redact.pending").exists(), "pending rewrite left");
    let report = store.verify().unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
    for id in acked {
        let e = store.get(*id).unwrap().expect("acknowledged event");
        assert!(e.is_redacted(), "acknowledged redaction of {id} lost");
    }
    let records = store
        .query(&Region::all().kind(Redaction::KIND), 0, usize::MAX)
        .unwrap();
    for r in &records {
        let target = r.decode::<Redaction>().unwrap().target;
        assert!(
            store.get(target).unwrap().unwrap().is_redacted(),
            "{target}"
        );
    }
    let kept: HashSet<Vec<u8>> = store
        .query(&Region::all().kind(KIND), 0, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| !e.is_redacted())
        .map(|e| e.payload)
        .collect();
    store.close().unwrap();
    for s in secrets_on_disk(dir) {
        assert!(
            kept.contains(&s),
            "the secret {:?} of a redacted event is still on disk",
            String::from_utf8_lossy(&s)
        );
    }
    (records.len(), kept.len(), finished)
}

#[test]
fn redaction_survives_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut delays = support::Delays::new();
    let mut total_acked = 0;
    let mut total_finished = 0;
    let mut rounds = 0;
    let budget = Duration::from_secs(support::setting(ENV_BUDGET, BUDGET.as_secs()));
    for round in 0..support::setting(ENV_ROUNDS, u64::from(ROUNDS)) as u32 {
        if start.elapsed() > budget {
            break;
        }
        let delay = delays.next(5, 80);
        let killed = support::run_and_kill(
            "child_redacts",
            &[
                (ENV_DIR, dir.path().display().to_string()),
                (ENV_ROUND, round.to_string()),
            ],
            delay,
        );
        let opened = killed.opened;
        let acked: Vec<EventId> = killed
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("@@REDACTED "))
            .filter_map(|id| id.parse().ok())
            .collect();
        total_acked += acked.len();
        let (_, _, finished) = check(dir.path(), &acked);
        total_finished += finished;
        println!(
            "round {round}: killed after {delay:?}, opened {opened}, {} redactions acknowledged, {finished} finished by the reopen",
            acked.len()
        );
        rounds += 1;
    }
    let (records, kept, _) = check(dir.path(), &[]);
    println!(
        "{rounds} rounds, {total_acked} acknowledged, {total_finished} finished at reopen, {records} records, {kept} kept"
    );
    assert!(rounds >= 3);
    assert!(
        total_acked > 0,
        "no child redacted anything before it was killed"
    );
}
