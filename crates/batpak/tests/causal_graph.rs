//! Walking the causal graph: entity chains (verified link by link), causes across
//! entities, effects, correlation groups and neighbourhoods.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fs;

use batpak::{AppendOptions, AppendReceipt, Coordinate, EventKind, RawPayload, Store};

use batpak::graph::EdgeKind;

fn append(store: &Store, entity: &str, opts: AppendOptions) -> AppendReceipt {
    store
        .append_raw(
            &Coordinate::new(entity, "s").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::opaque(entity.as_bytes()),
            opts,
        )
        .unwrap()
}

#[test]
fn walk_ancestors_follows_and_verifies_the_entity_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut mine = Vec::new();
    for i in 0..50 {
        mine.push(append(&store, "acct:1", AppendOptions::default()));
        if i % 3 == 0 {
            append(&store, "acct:2", AppendOptions::default());
        }
    }
    let head = mine.last().unwrap().event_id;
    let walk = store.walk_ancestors(head, 1000).unwrap().unwrap();
    assert_eq!(walk.broken, None);
    assert!(walk.reached_first);
    let ids: Vec<_> = walk.events.iter().map(|e| e.id).collect();
    let expected: Vec<_> = mine.iter().rev().map(|r| r.event_id).collect();
    assert_eq!(ids, expected);

    let short = store.walk_ancestors(head, 10).unwrap().unwrap();
    assert_eq!(short.events.len(), 10);
    assert!(!short.reached_first);

    // The walk's evidence report.
    let report = walk.report();
    assert!(report.verify());
    assert_eq!(report.body.checked, 50);
    assert_eq!(report.body.first.as_ref().unwrap().id, head.to_string());
    assert_eq!(report.body.last.as_ref().unwrap().version, 0);
    assert!(report.body.findings.is_empty());
    let key = blake3::derive_key("batpak 2026 chain walk v1", &[]);
    let mut h = blake3::Hasher::new_keyed(&key);
    for e in &walk.events {
        h.update(e.event_hash().as_bytes());
    }
    assert_eq!(report.body.digest, h.finalize().to_hex().to_string());
    let again = store.walk_ancestors(head, 1000).unwrap().unwrap().report();
    assert_eq!(
        (again.body, again.body_hash),
        (report.body, report.body_hash)
    );
    assert_eq!(
        short.report().body.findings,
        vec![batpak::report::WalkFinding::TruncatedByLimit]
    );
    assert_eq!(short.events[9].version, 40);
    let middle = store
        .walk_ancestors(mine[5].event_id, 100)
        .unwrap()
        .unwrap();
    assert_eq!(middle.events.len(), 6);
    assert!(store
        .walk_ancestors(batpak::EventId::from_u128(7), 5)
        .unwrap()
        .is_none());
}

#[test]
fn walk_ancestors_reports_a_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let receipts: Vec<_> = (0..6)
        .map(|_| append(&store, "acct:1", AppendOptions::default()))
        .collect();
    store.close().unwrap();

    // Rewrite the payload of version 2 and fix its checksum, as an attacker would:
    // the record still reads, but its hash no longer matches version 3's prev_hash.
    let seg = fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&seg).unwrap();
    let mut at = 64usize;
    for _ in 0..2 {
        at += u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    // The first payload byte: after the 96-byte fixed part, entity, scope and salt.
    let text_len = |o: usize| u16::from_le_bytes(bytes[at + o..at + o + 2].try_into().unwrap());
    let payload_at = at + 96 + usize::from(text_len(56) + text_len(58)) + 16;
    bytes[payload_at] ^= 0x01;
    let crc = crc32c::crc32c(&bytes[at + 4..at + len]);
    bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    fs::write(&seg, &bytes).unwrap();

    let store = Store::open(dir.path()).unwrap();
    let walk = store
        .walk_ancestors(receipts[5].event_id, 100)
        .unwrap()
        .unwrap();
    let broken = walk.broken.unwrap();
    assert_eq!(broken.event, receipts[3].event_id);
    assert_eq!(broken.predecessor, Some(receipts[2].event_id));
    assert_eq!(broken.stored, receipts[2].event_hash);
    assert_ne!(broken.expected, broken.stored);
    assert!(!walk.reached_first);
    // The walk keeps what verified and stops at the break.
    assert_eq!(walk.events.len(), 3);
    assert_eq!(walk.events[2].version, 3);
    assert_eq!(
        walk.report().body.findings,
        vec![batpak::report::WalkFinding::HashMismatch {
            event: receipts[3].event_id.to_string(),
            predecessor: Some(receipts[2].event_id.to_string()),
        }]
    );
}

#[test]
fn fan_out_causes_and_correlation_groups() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let root = append(&store, "order:1", AppendOptions::default());
    let corr = root.event_id;
    // One cause, many effects across entities.
    let effects: Vec<_> = (0..5)
        .map(|i| {
            append(
                &store,
                &format!("ship:{i}"),
                AppendOptions::default()
                    .caused_by(root.event_id)
                    .correlation(corr),
            )
        })
        .collect();
    let got: Vec<_> = store
        .effects(root.event_id)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(got, effects.iter().map(|r| r.event_id).collect::<Vec<_>>());
    // A chain of causes across entities.
    let mut cause = effects[4].event_id;
    let mut chain = vec![root.event_id, effects[4].event_id];
    for i in 0..4 {
        let r = append(
            &store,
            &format!("step:{i}"),
            AppendOptions::default().caused_by(cause).correlation(corr),
        );
        cause = r.event_id;
        chain.push(cause);
    }
    let causes: Vec<_> = store
        .causes(cause, 100)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let expected: Vec<_> = chain.iter().rev().skip(1).copied().collect();
    assert_eq!(causes, expected, "immediate cause first, root last");
    assert_eq!(store.causes(cause, 2).unwrap().len(), 2);
    assert!(store.causes(root.event_id, 10).unwrap().is_empty());
    // The correlation group, in sequence order.
    let group = store.correlated(corr).unwrap();
    assert_eq!(group.len(), 9);
    assert!(group.windows(2).all(|w| w[0].sequence < w[1].sequence));
}

#[test]
fn causal_graph_has_typed_edges_within_the_depth() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a0 = append(&store, "a", AppendOptions::default());
    let a1 = append(&store, "a", AppendOptions::default());
    let b0 = append(&store, "b", AppendOptions::default().caused_by(a1.event_id));
    let c0 = append(&store, "c", AppendOptions::default().caused_by(b0.event_id));
    let a2 = append(&store, "a", AppendOptions::default());

    let g = store.causal_graph(a1.event_id, 1).unwrap().unwrap();
    let ids: Vec<_> = g.nodes.iter().map(|n| n.id).collect();
    assert_eq!(
        ids,
        vec![a0.event_id, a1.event_id, b0.event_id, a2.event_id]
    );
    let edges: Vec<_> = g.edges.iter().map(|e| (e.from, e.to, e.kind)).collect();
    let mut want = vec![
        (a0.event_id, a1.event_id, EdgeKind::Chain),
        (a1.event_id, a2.event_id, EdgeKind::Chain),
        (a1.event_id, b0.event_id, EdgeKind::Causation),
    ];
    want.sort();
    assert_eq!(edges, want);

    let g2 = store.causal_graph(a1.event_id, 2).unwrap().unwrap();
    assert!(g2.nodes.iter().any(|n| n.id == c0.event_id));
    assert!(g2
        .edges
        .iter()
        .any(|e| (e.from, e.to, e.kind) == (b0.event_id, c0.event_id, EdgeKind::Causation)));
    let g0 = store.causal_graph(a1.event_id, 0).unwrap().unwrap();
    assert_eq!((g0.nodes.len(), g0.edges.len()), (1, 0));
}

/// Pins the canonical encoding and hash of a chain-walk report body.
#[test]
fn golden_bytes_of_a_chain_walk_report() {
    let body = batpak::report::ChainWalkReport {
        checked: 2,
        first: Some(batpak::report::EventRef {
            id: "0190a3f2-7c1d-7abc-8def-0123456789ab".into(),
            sequence: 9,
            version: 1,
        }),
        last: Some(batpak::report::EventRef {
            id: "0190a3f2-7c1d-7abc-8def-0123456789aa".into(),
            sequence: 4,
            version: 0,
        }),
        digest: "ef".repeat(32),
        findings: vec![batpak::report::WalkFinding::TruncatedByLimit],
    };
    let report = batpak::report::Report::new(body, Vec::new());
    assert_eq!(
        String::from_utf8(report.canonical_body()).unwrap(),
        concat!(
            r#"{"checked":2,"first":{"id":"0190a3f2-7c1d-7abc-8def-0123456789ab","sequence":9,"version":1},"#,
            r#""last":{"id":"0190a3f2-7c1d-7abc-8def-0123456789aa","sequence":4,"version":0},"#,
            r#""digest":"efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef","#,
            r#""findings":[{"type":"truncated_by_limit"}]}"#,
        )
    );
    // Cross-checked with an independent implementation (Python blake3, keyed mode).
    assert_eq!(
        report.body_hash.to_string(),
        "39c8da3d2f291f02a4ff4834aeb130d9da2888621e42965dc3d330402c87af39"
    );
}
