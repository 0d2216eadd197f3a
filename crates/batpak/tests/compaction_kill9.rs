//! Compaction against a real `kill -9`.
//!
//! The test binary runs itself as a child (the ignored `child_compacts` test, which
//! returns at once unless `BATPAK_COMPACT_DIR` names a store). The child keeps the
//! last three events of every `order:` entity, appends to order and user entities
//! and compacts in a loop, printing `@@ACK <id> <entity> <version>` after each
//! append returned. The parent kills it after a random delay, reopens the store and
//! checks: no compaction staging is left, `verify()` is clean, every acknowledged
//! user event reads back, every acknowledged order event reads back unless the policy
//! hides it now, and every order entity shows exactly its newest three.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, Coordinate, EventId, EventKind, RawPayload, RetentionRule, RetentionSelector,
    Store,
};

const ENV_DIR: &str = "BATPAK_COMPACT_DIR";
const ROUNDS: u64 = 12;
const BUDGET: Duration = Duration::from_secs(10);
/// Overrides rounds and budget (seconds) for long soak runs.
const ENV_ROUNDS: &str = "BATPAK_COMPACT_KILL9_ROUNDS";
const ENV_BUDGET: &str = "BATPAK_COMPACT_KILL9_BUDGET_SECS";

const KIND: EventKind = EventKind::custom(1, 1);
const KEEP: u64 = 3;

fn open(dir: &Path) -> Store {
    Store::builder(dir).segment_size(32 * 1024).open().unwrap()
}

#[test]
#[ignore = "child process of compaction_survives_kill9"]
fn child_compacts() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let store = open(Path::new(&dir));
    store
        .set_retention(
            RetentionSelector::EntityPrefix("order".into()),
            RetentionRule::MaxCount(KEEP),
        )
        .unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "@@OPEN").unwrap();
    for round in 0..u64::MAX {
        for n in 0..60u64 {
            let entity = if n % 3 == 0 {
                format!("user:{}", n % 4)
            } else {
                format!("order:{}", n % 10)
            };
            let r = store
                .append_raw(
                    &Coordinate::new(entity.as_str(), "shop").unwrap(),
                    KIND,
                    RawPayload::opaque(&[round as u8; 150]),
                    AppendOptions::default(),
                )
                .unwrap();
            writeln!(out, "@@ACK {} {entity} {}", r.event_id, r.version).unwrap();
        }
        store.compact().unwrap();
        writeln!(out, "@@COMPACTED").unwrap();
    }
}

/// Reopens and checks; returns how many compactions the store records.
fn check(dir: &Path, acked: &[(EventId, String, u64)]) -> u64 {
    let store = open(dir);
    for staging in ["compact.partial", "compact.ready"] {
        assert!(!dir.join(staging).exists(), "{staging} left after open");
    }
    let report = store.verify().unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
    let heads: HashMap<String, u64> = acked
        .iter()
        .map(|(_, entity, _)| (entity.clone(), store.entity_version(entity).unwrap()))
        .collect();
    for (id, entity, version) in acked {
        let found = store.get(*id).unwrap();
        let hidden = entity.starts_with("order:") && version + KEEP <= heads[entity];
        assert!(
            found.is_some() || hidden,
            "acknowledged {entity} version {version} ({id}) is gone, and no policy hides it"
        );
        if let Some(e) = found {
            assert_eq!(
                (e.coordinate.entity(), e.version),
                (entity.as_str(), *version)
            );
        }
    }
    for (entity, head) in &heads {
        let versions: Vec<u64> = store
            .stream(entity)
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect();
        let expected: Vec<u64> = if entity.starts_with("order:") {
            (head.saturating_sub(KEEP - 1)..=*head).collect()
        } else {
            (0..=*head).collect()
        };
        assert_eq!(versions, expected, "{entity}");
    }
    let generation = store.compact().unwrap().generation;
    store.close().unwrap();
    generation
}

#[test]
fn compaction_survives_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut delays = support::Delays::new();
    let mut acked: Vec<(EventId, String, u64)> = Vec::new();
    let mut compactions = 0;
    let mut rounds = 0;
    let budget = Duration::from_secs(support::setting(ENV_BUDGET, BUDGET.as_secs()));
    for round in 0..support::setting(ENV_ROUNDS, ROUNDS) {
        if start.elapsed() > budget {
            break;
        }
        let delay = delays.next(10, 250);
        let killed = support::run_and_kill(
            "child_compacts",
            &[(ENV_DIR, dir.path().display().to_string())],
            delay,
        );
        let before = acked.len();
        for line in &killed.lines {
            if let Some(rest) = line.strip_prefix("@@ACK ") {
                let mut parts = rest.split(' ');
                let id = parts.next().unwrap().parse().unwrap();
                let entity = parts.next().unwrap().to_string();
                let version = parts.next().unwrap().parse().unwrap();
                acked.push((id, entity, version));
            }
        }
        compactions += killed.lines.iter().filter(|l| *l == "@@COMPACTED").count();
        let generation = check(dir.path(), &acked);
        println!(
            "round {round}: killed after {delay:?}, opened {}, {} appends acknowledged, compaction generation {generation}",
            killed.opened,
            acked.len() - before
        );
        rounds += 1;
    }
    println!(
        "{rounds} rounds, {} appends acknowledged, {compactions} compactions acknowledged",
        acked.len()
    );
    assert!(rounds >= 3);
    assert!(compactions > 0, "no child compacted before it was killed");
}
