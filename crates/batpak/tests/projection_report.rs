//! The projection-run evidence report: deterministic bodies, golden bytes, and a
//! report even when the projection fails.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::time::Duration;

use batpak::{Coordinate, Error, EventKind, EventPayload, Freshness, Projection, Store};

use batpak::report::{
    CacheStatus, Finding, InputFrontier, ObservedFreshness, OutputHash, ProjectionRun, Report,
    RequestedFreshness, SnapshotRef, SourceRef,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 3, type_id = 1)]
struct Added {
    n: i64,
}

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 3, type_id = 2)]
struct Poison {
    reason: String,
}

#[derive(Clone, Default, Debug, PartialEq, Serialize)]
struct Sum {
    total: i64,
}

impl Projection for Sum {
    const NAME: &'static str = "sum";
    const VERSION: u32 = 2;
    const KINDS: &'static [EventKind] = &[Added::KIND, Poison::KIND];

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        if let Some(p) = event.decode_if::<Poison>()? {
            return Err(Error::InvalidConfig { reason: p.reason });
        }
        self.total += event.decode::<Added>()?.n;
        Ok(())
    }
}

fn c(entity: &str) -> Coordinate {
    Coordinate::new(entity, "s").unwrap()
}

/// The body with the cache field (which legitimately differs) normalised.
fn comparable(r: &Report<ProjectionRun>) -> Vec<u8> {
    let mut body = r.body.clone();
    body.cache = CacheStatus::Miss;
    Report::new(body, Vec::new()).canonical_body()
}

#[test]
fn runs_over_the_same_history_give_identical_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in [1, 2, 3] {
        store.append(&c("ledger:1"), &Added { n }).unwrap();
    }
    let (state, first) = store
        .project_with_report::<Sum>("ledger:1", Freshness::Consistent)
        .unwrap();
    assert_eq!(state, Some(Sum { total: 6 }));
    assert!(first.verify());
    let b = &first.body;
    assert_eq!((b.projection.as_str(), b.projection_version), ("sum", 2));
    assert_eq!(b.cache, CacheStatus::Miss);
    assert_eq!(b.observed_freshness, ObservedFreshness::Fresh);
    // Three events, after the record of their kind's name at sequence 1.
    assert_eq!(b.input_frontier.unwrap().sequence, 4);
    assert_eq!(
        b.sources,
        vec![
            SourceRef::Entity {
                name: "ledger:1".into()
            },
            SourceRef::Kind {
                category: 3,
                type_id: 1
            },
            SourceRef::Kind {
                category: 3,
                type_id: 2
            },
        ]
    );
    assert!(b.findings.is_empty());
    let (_, second) = store
        .project_with_report::<Sum>("ledger:1", Freshness::Consistent)
        .unwrap();
    assert_eq!(second.body.cache, CacheStatus::Hit);
    assert_eq!(comparable(&first), comparable(&second));
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, third) = store
        .project_with_report::<Sum>("ledger:1", Freshness::Consistent)
        .unwrap();
    assert_eq!(
        third.body, first.body,
        "after reopen: a miss again, byte-identical"
    );
    assert_eq!(third.body_hash, first.body_hash);
}

#[test]
fn stale_and_empty_runs_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (state, r) = store
        .project_with_report::<Sum>("ledger:9", Freshness::Consistent)
        .unwrap();
    assert_eq!(state, None);
    assert_eq!(r.body.observed_freshness, ObservedFreshness::NotApplicable);
    assert_eq!(r.body.output_hash, OutputHash::NotApplicable);
    assert_eq!(r.body.input_frontier, None);

    store.append(&c("ledger:1"), &Added { n: 5 }).unwrap();
    store
        .project::<Sum>("ledger:1", Freshness::Consistent)
        .unwrap();
    store.append(&c("ledger:1"), &Added { n: 5 }).unwrap();
    let stale = Freshness::MaybeStale {
        max_age: Duration::from_secs(60),
    };
    let (state, r) = store.project_with_report::<Sum>("ledger:1", stale).unwrap();
    assert_eq!(state, Some(Sum { total: 5 }));
    assert_eq!(
        r.body.requested_freshness,
        RequestedFreshness::MaybeStale { max_age_ms: 60_000 }
    );
    assert_eq!(r.body.observed_freshness, ObservedFreshness::StaleAllowed);
    assert_eq!(r.body.findings, vec![Finding::StaleStateUsed]);
}

#[test]
fn a_failed_run_still_carries_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(&c("ledger:1"), &Added { n: 1 }).unwrap();
    store
        .append(
            &c("ledger:1"),
            &Poison {
                reason: "bad day".into(),
            },
        )
        .unwrap();
    match store.project_with_report::<Sum>("ledger:1", Freshness::Consistent) {
        Err(Error::ProjectionFailed { report, cause }) => {
            assert!(report.verify());
            assert!(cause.to_string().contains("bad day"));
            assert_eq!(
                report.body.findings,
                vec![Finding::InputFrontierUnknown, Finding::ProjectionFailed]
            );
            assert!(matches!(
                report.body.observed_freshness,
                ObservedFreshness::Unavailable { .. }
            ));
            assert!(matches!(
                report.body.output_hash,
                OutputHash::Unavailable { .. }
            ));
            assert!(report.metadata.diagnostics[0].contains("bad day"));
        }
        other => panic!("{other:?}"),
    }
}

/// Pins the canonical encoding and hash of a projection-run body.
#[test]
fn golden_bytes_of_a_projection_run_body() {
    let body = ProjectionRun {
        projection: "sum".into(),
        projection_version: 2,
        entity: "ledger:1".into(),
        sources: vec![
            SourceRef::Entity {
                name: "ledger:1".into(),
            },
            SourceRef::Kind {
                category: 3,
                type_id: 1,
            },
        ],
        requested_freshness: RequestedFreshness::MaybeStale { max_age_ms: 250 },
        observed_freshness: ObservedFreshness::StaleAllowed,
        input_frontier: Some(InputFrontier {
            sequence: 3,
            timestamp_ns: 1_700_000_000_000_000_000,
        }),
        output_hash: OutputHash::Hash {
            blake3: "ab".repeat(32),
        },
        cache: CacheStatus::Hit,
        snapshot: Some(SnapshotRef {
            sequence: 2,
            blake3: "cd".repeat(32),
        }),
        findings: vec![Finding::StaleStateUsed],
    };
    let report = Report::new(body, vec!["not hashed".into()]);
    let text = String::from_utf8(report.canonical_body()).unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"projection":"sum","projection_version":2,"entity":"ledger:1","#,
            r#""sources":[{"type":"entity","name":"ledger:1"},{"type":"kind","category":3,"type_id":1}],"#,
            r#""requested_freshness":{"type":"maybe_stale","max_age_ms":250},"#,
            r#""observed_freshness":{"type":"stale_allowed"},"#,
            r#""input_frontier":{"sequence":3,"timestamp_ns":1700000000000000000},"#,
            r#""output_hash":{"type":"hash","blake3":"abababababababababababababababababababababababababababababababab"},"#,
            r#""cache":{"type":"hit"},"#,
            r#""snapshot":{"sequence":2,"blake3":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"},"#,
            r#""findings":["stale_state_used"]}"#,
        )
    );
    // Cross-checked with an independent implementation (Python blake3, keyed mode).
    assert_eq!(
        report.body_hash.to_string(),
        "9ae07c58330482173d822655f96aab735074ed402b57bab82b1e6b7c089b635a"
    );
}
