//! Serde forms of the public data types: every one round-trips through JSON, the
//! text-like ones have pinned forms, and bad input is refused with a message that says
//! why.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fmt::Debug;
use std::fs;
use std::path::Path;
use std::time::Duration;

use batpak::graph::{CausalGraph, ChainBreak, ChainWalk, EdgeKind, GraphEdge, GraphNode};
use batpak::report::{
    CacheStatus, ChainWalkReport, Check, EventRef, Finding, InputFrontier, ObservedFreshness,
    OutputHash, ProjectionRun, Report, RequestedFreshness, SnapshotRef, SourceRef, Verification,
    VerifyFinding, WalkFinding,
};
use batpak::{
    AppendOptions, Backup, Cause, Coordinate, EventId, EventKind, EventPayload, ExpectedVersion,
    Freshness, Frontier, Hash, IndexSource, OpenReport, Projection, RawPayload, Region, Stats,
    Store, StoredEvent, SyncPolicy, TailCut, Watermark,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Serialises `value` to JSON, checks it deserialises to an equal value, and returns
/// the JSON.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(&back, value, "{json}");
    json
}

/// The error text of deserialising `json` as `T`, which must fail.
fn refusal<T: DeserializeOwned + Debug>(json: &str) -> String {
    match serde_json::from_str::<T>(json) {
        Ok(value) => panic!("{json} was accepted as {value:?}"),
        Err(e) => e.to_string(),
    }
}

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "tenant:1").unwrap()
}

fn append(store: &Store, entity: &str, options: AppendOptions) -> batpak::AppendReceipt {
    store
        .append_raw(
            &coord(entity),
            EventKind::custom(1, 1),
            RawPayload::opaque(entity.as_bytes()),
            options,
        )
        .unwrap()
}

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 2, type_id = 1)]
struct Deposited {
    cents: u64,
}

#[derive(Clone, Default, Debug, PartialEq, Serialize)]
struct Balance {
    cents: u64,
}

impl Projection for Balance {
    const NAME: &'static str = "balance";
    const VERSION: u32 = 1;
    const KINDS: &'static [EventKind] = &[Deposited::KIND];

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        self.cents += event.decode::<Deposited>()?.cents;
        Ok(())
    }
}

// ---- Hash ----

#[test]
fn hash_is_its_lowercase_hex_text() {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap() * 8;
    }
    let hash = Hash::from_bytes(bytes);
    let json = round_trip(&hash);
    assert_eq!(
        json,
        r#""0008101820283038404850586068707880889098a0a8b0b8c0c8d0d8e0e8f0f8""#
    );
    assert_eq!(json, format!("\"{hash}\""));
    assert_eq!(round_trip(&Hash::ZERO), format!("\"{}\"", "0".repeat(64)));
    // Either case is read, as FromStr reads it.
    assert_eq!(
        serde_json::from_str::<Hash>(&json.to_uppercase()).unwrap(),
        hash
    );
}

#[test]
fn hash_refuses_what_is_not_64_hex_digits() {
    for bad in [
        format!("\"{}\"", "0".repeat(63)),
        format!("\"{}\"", "0".repeat(65)),
        format!("\"{}zz\"", "0".repeat(62)),
        "\"\"".to_string(),
    ] {
        let err = refusal::<Hash>(&bad);
        assert!(err.contains("is not 64 hex digits"), "{bad}: {err}");
    }
    let err = refusal::<Hash>("[0, 1]");
    assert!(err.contains("64 hex digits"), "{err}");
}

// ---- Coordinate ----

#[test]
fn coordinate_is_an_entity_and_a_scope() {
    let c = Coordinate::new("order:507", "tenant:acme").unwrap();
    assert_eq!(
        round_trip(&c),
        r#"{"entity":"order:507","scope":"tenant:acme"}"#
    );
    // Escaped text is read too (it cannot be borrowed from the input).
    let escaped: Coordinate =
        serde_json::from_str(r#"{"scope":"t\u00e9","entity":"a\"b"}"#).unwrap();
    assert_eq!(escaped, Coordinate::new("a\"b", "té").unwrap());
    let long = Coordinate::new("e".repeat(Coordinate::MAX_LEN), "s").unwrap();
    round_trip(&long);
}

#[test]
fn coordinate_refuses_a_component_that_breaks_a_rule() {
    let cases = [
        (
            r#"{"entity":"","scope":"s"}"#,
            "invalid entity: must not be empty",
        ),
        (
            r#"{"entity":"e","scope":""}"#,
            "invalid scope: must not be empty",
        ),
        (
            r#"{"entity":"e","scope":"a\u0000b"}"#,
            "invalid scope: contains a NUL or control character at byte 1",
        ),
        (r#"{"entity":"e"}"#, "missing field `scope`"),
        (r#"{"entity":"e","scope":"s","x":1}"#, "unknown field `x`"),
        (r#""e@s""#, "invalid type"),
    ];
    for (json, expected) in cases {
        let err = refusal::<Coordinate>(json);
        assert!(err.contains(expected), "{json}: {err}");
    }
    let too_long = format!(r#"{{"entity":"{}","scope":"s"}}"#, "e".repeat(1025));
    let err = refusal::<Coordinate>(&too_long);
    assert!(
        err.contains("invalid entity: is 1025 bytes, longer than the limit"),
        "{err}"
    );
}

// ---- EventKind ----

#[test]
fn event_kind_is_its_text_form() {
    assert_eq!(round_trip(&EventKind::custom(3, 0xABC)), r#""3:2748""#);
    assert_eq!(round_trip(&EventKind::custom(0, 0)), r#""0:0""#);
    assert_eq!(round_trip(&EventKind::custom(15, 4095)), r#""15:4095""#);
    for bits in [0u16, 1, 0x1000, 0x7fff, u16::MAX] {
        round_trip(&EventKind::from_bits(bits));
    }
}

#[test]
fn event_kind_refuses_out_of_range_and_other_spellings() {
    let cases = [
        (r#""16:0""#, "category 16 is out of range (max 15)"),
        (r#""300:1""#, "category 300 is out of range (max 15)"),
        (r#""1:4096""#, "type id 4096 is out of range (max 4095)"),
        (r#""0x2:0x1F""#, "is not an event kind C:T"),
        (r#""01:1""#, "is not an event kind C:T"),
        (r#""1:+1""#, "is not an event kind C:T"),
        (r#""1""#, "is not an event kind C:T"),
        (r#""1:1:1""#, "is not an event kind C:T"),
        (r#""99999999999999999999999:1""#, "is not an event kind C:T"),
        ("4660", "invalid type"),
    ];
    for (json, expected) in cases {
        let err = refusal::<EventKind>(json);
        assert!(err.contains(expected), "{json}: {err}");
    }
}

// ---- Region ----

#[test]
fn region_reads_its_canonical_form() {
    let golden = concat!(
        r#"{"entity":{"prefix":"order"},"scope":"t:1","kind":{"kind":"2:5"},"#,
        r#""versions":[1,3],"sequences":[10,21]}"#
    );
    let region = Region::all()
        .entity_prefix("order")
        .scope("t:1")
        .kind(EventKind::custom(2, 5))
        .versions(1..3)
        .sequences(10..=20);
    assert_eq!(serde_json::from_str::<Region>(golden).unwrap(), region);
    assert_eq!(round_trip(&region), golden);
    assert_eq!(round_trip(&region), region.canonical());
    for r in [
        Region::all(),
        Region::all().entity("a").category(3),
        Region::all().versions(5..5).sequences(..),
        Region::all().category(200),
    ] {
        assert_eq!(round_trip(&r), r.canonical());
    }
    // A criterion left out is unset.
    assert_eq!(serde_json::from_str::<Region>("{}").unwrap(), Region::all());
}

#[test]
fn region_refuses_backward_ranges_and_unknown_criteria() {
    let cases = [
        (
            r#"{"versions":[3,1]}"#,
            "range [3, 1) ends before it starts",
        ),
        (
            r#"{"sequences":[9,2]}"#,
            "range [9, 2) ends before it starts",
        ),
        (r#"{"timestamps":[0,1]}"#, "unknown field `timestamps`"),
        (r#"{"entity":{"suffix":"x"}}"#, "unknown variant `suffix`"),
        (r#"{"kind":{"kind":"16:1"}}"#, "category 16 is out of range"),
    ];
    for (json, expected) in cases {
        let err = refusal::<Region>(json);
        assert!(err.contains(expected), "{json}: {err}");
    }
}

// ---- Options, watermarks, stats ----

#[test]
fn append_options_and_their_parts_round_trip() {
    assert_eq!(round_trip(&ExpectedVersion::Any), r#""any""#);
    assert_eq!(round_trip(&ExpectedVersion::NoStream), r#""no_stream""#);
    assert_eq!(round_trip(&ExpectedVersion::Exact(7)), r#"{"exact":7}"#);
    let id = EventId::from_u128(0x0190_a3f2_7c1d_7abc_8def_0123_4567_89ab);
    assert_eq!(
        round_trip(&Cause::Event(id)),
        r#"{"event":"0190a3f2-7c1d-7abc-8def-0123456789ab"}"#
    );
    assert_eq!(round_trip(&Cause::BatchItem(2)), r#"{"batch_item":2}"#);

    let full = AppendOptions::expect(ExpectedVersion::Exact(3))
        .caused_by(id)
        .correlation(id)
        .idempotency_key("order-507-once")
        .meta("user", "ada");
    assert!(round_trip(&full).ends_with(r#""metadata":{"user":"ada"}}"#));
    round_trip(&AppendOptions::default().caused_by_item(1));
    assert_eq!(
        round_trip(&AppendOptions::default()),
        r#"{"expected_version":"any","causation":null,"correlation":null,"idempotency_key":null,"metadata":{}}"#
    );
    // Fields left out take their defaults.
    assert_eq!(
        serde_json::from_str::<AppendOptions>("{}").unwrap(),
        AppendOptions::default()
    );
    assert_eq!(
        serde_json::from_str::<AppendOptions>(r#"{"expected_version":"no_stream"}"#).unwrap(),
        AppendOptions::expect(ExpectedVersion::NoStream)
    );
}

#[test]
fn sync_policies_round_trip() {
    assert_eq!(round_trip(&SyncPolicy::Always), r#""always""#);
    assert_eq!(round_trip(&SyncPolicy::EveryN(64)), r#"{"every_n":64}"#);
    assert_eq!(round_trip(&SyncPolicy::Never), r#""never""#);
    assert_eq!(
        round_trip(&SyncPolicy::Interval(Duration::new(1, 500))),
        r#"{"interval":{"secs":1,"nanos":500}}"#
    );
    let err = refusal::<SyncPolicy>(r#""sometimes""#);
    assert!(err.contains("unknown variant `sometimes`"), "{err}");
}

#[test]
fn frontier_watermarks_and_stats_round_trip() {
    assert_eq!(round_trip(&Watermark::Written), r#""written""#);
    assert_eq!(round_trip(&Watermark::Durable), r#""durable""#);
    assert_eq!(round_trip(&Watermark::Visible), r#""visible""#);
    for w in [Watermark::Written, Watermark::Durable, Watermark::Visible] {
        assert_eq!(serde_json::to_string(&w).unwrap(), format!("\"{w}\""));
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        append(&store, &format!("acct:{}", i % 2), AppendOptions::default());
    }
    let frontier: Frontier = store.frontier();
    assert_eq!(
        round_trip(&frontier),
        r#"{"written":5,"durable":5,"visible":5}"#
    );
    let stats: Stats = store.stats().unwrap();
    let json = round_trip(&stats);
    assert!(
        json.starts_with(r#"{"events":5,"entities":2,"scopes":1,"segments":1,"#),
        "{json}"
    );
}

// ---- Open reports, tail cuts, backups ----

fn only_segment(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

#[test]
fn open_reports_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    round_trip::<OpenReport>(store.open_report());
    append(&store, "a", AppendOptions::default());
    store.close().unwrap();

    // Reopened from the checkpoint.
    let store = Store::open(dir.path()).unwrap();
    let report = store.open_report().clone();
    assert!(matches!(report.index, IndexSource::Checkpoint { .. }));
    round_trip(&report);
    store.close().unwrap();

    // A torn tail: cut, reported, and the report still round-trips.
    let segment = only_segment(dir.path());
    let len = fs::metadata(&segment).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(len + 100).unwrap();
    drop(file);
    let store = Store::open(dir.path()).unwrap();
    let cut: TailCut = store.open_report().tail_cut.clone().unwrap();
    let json = round_trip(&cut);
    assert!(
        json.contains(&format!(r#""offset":{len},"bytes":100,"#)),
        "{json}"
    );
    round_trip::<OpenReport>(store.open_report());
    let json = serde_json::to_string(store.open_report()).unwrap();
    assert!(
        json.contains(r#""checkpoint_duration":{"secs":"#),
        "durations are serde's own form: {json}"
    );

    // Both index sources, in their pinned forms.
    assert_eq!(
        round_trip(
            &serde_json::from_str::<IndexSource>(r#"{"type":"checkpoint","events":4}"#).unwrap()
        ),
        r#"{"type":"checkpoint","events":4}"#
    );
    assert_eq!(
        round_trip(
            &serde_json::from_str::<IndexSource>(r#"{"type":"rebuilt","reason":"missing"}"#)
                .unwrap()
        ),
        r#"{"type":"rebuilt","reason":"missing"}"#
    );
}

#[test]
fn backups_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("live")).unwrap();
    append(&store, "a", AppendOptions::default());
    let backup: Backup = store.backup(dir.path().join("copy")).unwrap();
    let json = round_trip(&backup);
    let dir_text = serde_json::to_string(dir.path().join("copy").to_str().unwrap()).unwrap();
    assert!(
        json.starts_with(&format!(r#"{{"dir":{dir_text},"events":1,"#)),
        "{json}"
    );
}

// ---- Stored events ----

/// A deserialised event is equal, hashes the same and gives the same receipt.
fn assert_event_round_trips(event: &StoredEvent) {
    let json = round_trip(event);
    let back: StoredEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back.event_hash(), event.event_hash());
    assert_eq!(back.receipt(), event.receipt());
    assert_eq!(back.is_redacted(), event.is_redacted());

    // Binary formats carry the payload as bytes, maps or arrays alike.
    let packed = rmp_serde::to_vec_named(event).unwrap();
    let back: StoredEvent = rmp_serde::from_slice(&packed).unwrap();
    assert_eq!(&back, event);
    let packed = rmp_serde::to_vec(event).unwrap();
    let back: StoredEvent = rmp_serde::from_slice(&packed).unwrap();
    assert_eq!(back.event_hash(), event.event_hash());
}

#[test]
fn stored_events_round_trip_with_their_proof() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store
        .append(&coord("acct:1"), &Deposited { cents: 5 })
        .unwrap();
    let second = store
        .append_raw(
            &coord("acct:1"),
            EventKind::custom(1, 2),
            RawPayload::json(br#"{"note":"hi"}"#),
            AppendOptions::expect(ExpectedVersion::Exact(0))
                .caused_by(first.event_id)
                .correlation(first.event_id)
                .idempotency_key("once"),
        )
        .unwrap();
    let empty = store
        .append_raw(
            &coord("acct:2"),
            EventKind::custom(1, 3),
            RawPayload::opaque(&[]),
            AppendOptions::default(),
        )
        .unwrap();

    for receipt in [&first, &second, &empty] {
        let event = store.get(receipt.event_id).unwrap().unwrap();
        assert_event_round_trips(&event);
        assert_eq!(event.receipt().event_hash, receipt.event_hash);
    }

    // The form: payload as hex, the proof last.
    let event = store.get(second.event_id).unwrap().unwrap();
    let value = serde_json::to_value(&event).unwrap();
    let hex: String = br#"{"note":"hi"}"#.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(value["payload"], serde_json::json!(hex));
    assert_eq!(value["encoding"], "json");
    assert_eq!(value["kind"], "1:2");
    assert_eq!(value["coordinate"]["entity"], "acct:1");
    assert_eq!(value["causation"], first.event_id.to_string());
    assert_eq!(value["prev_hash"], first.event_hash.to_string());
    assert_eq!(value["proof"]["idempotency"].as_str().unwrap().len(), 32);
    assert_eq!(
        value["proof"]["payload"]["salt"].as_str().unwrap().len(),
        32
    );
    let json = serde_json::to_string(&event).unwrap();
    assert!(
        json.starts_with(&format!(r#"{{"id":"{}","sequence":3,"#, second.event_id)),
        "{json}"
    );
    assert!(
        json.contains(&format!(
            r#","prev_hash":"{}","proof":{{"flags":"#,
            first.event_hash
        )),
        "fields in declaration order, the proof last: {json}"
    );

    // A redacted event keeps its digest, and with it its hash.
    store.redact(first.event_id, "gdpr").unwrap();
    let redacted = store.get(first.event_id).unwrap().unwrap();
    assert!(redacted.is_redacted());
    assert_event_round_trips(&redacted);
    assert_eq!(redacted.event_hash(), first.event_hash);
    let value = serde_json::to_value(&redacted).unwrap();
    assert_eq!(value["payload"], "");
    assert_eq!(
        value["proof"]["payload"]["digest"].as_str().unwrap().len(),
        64
    );
}

#[test]
fn stored_events_refuse_damaged_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let receipt = append(&store, "acct:1", AppendOptions::default());
    let event = store.get(receipt.event_id).unwrap().unwrap();
    let good = serde_json::to_value(&event).unwrap();
    let cases = [
        (
            "payload",
            serde_json::json!("abc"),
            "not an even number of hex digits",
        ),
        (
            "kind",
            serde_json::json!("0x1:1"),
            "is not an event kind C:T",
        ),
        ("prev_hash", serde_json::json!("00"), "is not 64 hex digits"),
        (
            "coordinate",
            serde_json::json!({"entity": "", "scope": "s"}),
            "invalid entity: must not be empty",
        ),
        (
            "proof",
            serde_json::json!({"flags": 0, "idempotency": null, "payload": {"salt": "00"}}),
            "is not 32 hex digits",
        ),
    ];
    for (field, bad, expected) in cases {
        let mut value = good.clone();
        value[field] = bad;
        let err = serde_json::from_value::<StoredEvent>(value)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{field}: {err}");
    }
    // The proof matters: another salt is another hash.
    let mut value = good.clone();
    value["proof"]["payload"]["salt"] = serde_json::json!("0".repeat(32));
    let altered: StoredEvent = serde_json::from_value(value).unwrap();
    assert_ne!(altered.event_hash(), event.event_hash());
}

// ---- The causal graph ----

#[test]
fn chain_walks_and_causal_graphs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let root = append(&store, "order:1", AppendOptions::default());
    let effect = append(
        &store,
        "invoice:1",
        AppendOptions::default().caused_by(root.event_id),
    );
    let head = append(&store, "order:1", AppendOptions::default());

    let walk: ChainWalk = store.walk_ancestors(head.event_id, 10).unwrap().unwrap();
    assert_eq!(walk.events.len(), 2);
    let json = round_trip(&walk);
    let back: ChainWalk = serde_json::from_str(&json).unwrap();
    assert_eq!(back.report().body, walk.report().body);
    round_trip(&store.walk_ancestors(head.event_id, 1).unwrap().unwrap());

    let graph: CausalGraph = store.causal_graph(root.event_id, 2).unwrap().unwrap();
    assert_eq!(graph.nodes.len(), 3);
    assert_eq!(graph.edges.len(), 2);
    round_trip(&graph);
    let node: &GraphNode = &graph.nodes[0];
    assert_eq!(
        round_trip(node),
        format!(
            r#"{{"id":"{}","sequence":1,"coordinate":{{"entity":"order:1","scope":"tenant:1"}},"kind":"1:1","version":0}}"#,
            root.event_id
        )
    );
    let edge: &GraphEdge = graph
        .edges
        .iter()
        .find(|e| e.kind == EdgeKind::Causation)
        .unwrap();
    assert_eq!(
        round_trip(edge),
        format!(
            r#"{{"from":"{}","to":"{}","kind":"causation"}}"#,
            root.event_id, effect.event_id
        )
    );
    assert_eq!(round_trip(&EdgeKind::Chain), r#""chain""#);
}

#[test]
fn chain_breaks_round_trip() {
    // Not constructible outside the crate: read a hand-written one and write it back.
    let a = EventId::from_u128(0x0190_a3f2_7c1d_7abc_8def_0123_4567_89ab);
    let b = EventId::from_u128(0x0190_a3f2_7c1d_7abc_8def_0123_4567_89ac);
    let stored = Hash::from_bytes([1; 32]);
    for predecessor in [format!("\"{a}\""), "null".to_string()] {
        let json = format!(
            r#"{{"event":"{b}","predecessor":{predecessor},"stored":"{stored}","expected":"{}"}}"#,
            Hash::ZERO
        );
        let brk: ChainBreak = serde_json::from_str(&json).unwrap();
        assert_eq!(brk.event, b);
        assert_eq!(brk.stored, stored);
        assert_eq!(round_trip(&brk), json);
    }
}

// ---- Report bodies and reports ----

#[test]
fn projection_run_bodies_round_trip() {
    let full = ProjectionRun {
        projection: "balance".into(),
        projection_version: 3,
        entity: "acct:1".into(),
        sources: vec![
            SourceRef::Entity {
                name: "acct:1".into(),
            },
            SourceRef::AllKinds,
            SourceRef::Kind {
                category: 2,
                type_id: 1,
            },
        ],
        requested_freshness: RequestedFreshness::MaybeStale { max_age_ms: 250 },
        observed_freshness: ObservedFreshness::Unavailable {
            reason: "why".into(),
        },
        input_frontier: Some(InputFrontier {
            sequence: 9,
            timestamp_ns: 1_700_000_000_000_000_000,
        }),
        output_hash: OutputHash::Hash {
            blake3: "ab".repeat(32),
        },
        cache: CacheStatus::Unavailable {
            reason: "off".into(),
        },
        snapshot: Some(SnapshotRef {
            sequence: 8,
            blake3: "cd".repeat(32),
        }),
        findings: vec![
            Finding::StaleStateUsed,
            Finding::InputFrontierUnknown,
            Finding::OutputHashUnavailable,
            Finding::CacheStatusUnavailable,
            Finding::FreshnessUnavailable,
            Finding::ProjectionFailed,
            Finding::SnapshotIgnored,
        ],
    };
    round_trip(&full);
    let mut other = full.clone();
    other.requested_freshness = RequestedFreshness::Consistent;
    other.input_frontier = None;
    other.snapshot = None;
    for observed in [
        ObservedFreshness::Fresh,
        ObservedFreshness::StaleAllowed,
        ObservedFreshness::NotApplicable,
    ] {
        other.observed_freshness = observed;
        round_trip(&other);
    }
    for output in [
        OutputHash::NotApplicable,
        OutputHash::Unavailable { reason: "x".into() },
    ] {
        other.output_hash = output;
        round_trip(&other);
    }
    for cache in [CacheStatus::Hit, CacheStatus::Miss, CacheStatus::Bypassed] {
        other.cache = cache;
        round_trip(&other);
    }

    // A real run's report, body and all.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append(&coord("acct:1"), &Deposited { cents: 5 })
        .unwrap();
    let (_, report) = store
        .project_with_report::<Balance>("acct:1", Freshness::Consistent)
        .unwrap();
    let json = round_trip(&report);
    let back: Report<ProjectionRun> = serde_json::from_str(&json).unwrap();
    assert!(back.verify());
    assert_eq!(back.canonical_body(), report.canonical_body());
}

#[test]
fn verification_bodies_round_trip() {
    let body = Verification {
        segments: 2,
        events: 10,
        bytes: 4096,
        last_sequence: 10,
        running_hash: Some("ef".repeat(32)),
        redacted: 1,
        findings: [
            Check::Record,
            Check::Sequence,
            Check::ChainLink,
            Check::Index,
            Check::Compaction,
        ]
        .into_iter()
        .map(|check| VerifyFinding {
            check,
            file: "00000001.seg".into(),
            offset: 64,
            sequence: Some(3),
            event: None,
            detail: "expected x, found y".into(),
        })
        .collect(),
        horizons: vec![batpak::report::KeptHistory {
            entity: "order:1".into(),
            first_version: 7,
            removed_by: Some("0190a3f2-7c1d-7abc-8def-0123456789ab".into()),
        }],
    };
    let json = round_trip(&body);
    assert!(json.contains(r#""check":"chain_link""#), "{json}");
    assert!(json.contains(r#""check":"compaction""#), "{json}");
    assert!(
        json.contains(r#""horizons":[{"entity":"order:1","first_version":7,"removed_by":"0190a3f2-7c1d-7abc-8def-0123456789ab"}]"#),
        "{json}"
    );
    round_trip(&Verification::default());

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, "a", AppendOptions::default());
    let report: Report<Verification> = store.verify().unwrap();
    let json = round_trip(&report);
    let back: Report<Verification> = serde_json::from_str(&json).unwrap();
    assert!(back.verify());
    assert!(back.body.is_clean());
}

#[test]
fn chain_walk_reports_round_trip_and_still_verify() {
    let body = ChainWalkReport {
        checked: 2,
        first: Some(EventRef {
            id: "0190a3f2-7c1d-7abc-8def-0123456789ab".into(),
            sequence: 2,
            version: 1,
        }),
        last: None,
        digest: "01".repeat(32),
        findings: vec![
            WalkFinding::HashMismatch {
                event: "e".into(),
                predecessor: None,
            },
            WalkFinding::TruncatedByLimit,
        ],
    };
    round_trip(&body);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, "a", AppendOptions::default());
    let head = append(&store, "a", AppendOptions::default());
    let report = store
        .walk_ancestors(head.event_id, 10)
        .unwrap()
        .unwrap()
        .report();
    let json = round_trip(&report);
    assert!(
        json.starts_with(r#"{"body":{"checked":2,"#),
        "the report's form: {json}"
    );
    assert!(
        json.contains(&format!(
            r#""body_hash":"{}","metadata":{{"#,
            report.body_hash
        )),
        "{json}"
    );
    let back: Report<ChainWalkReport> = serde_json::from_str(&json).unwrap();
    assert!(back.verify());

    // Deserialising does not vouch for the body: verify() catches an edited one.
    let mut value = serde_json::to_value(&report).unwrap();
    value["body"]["checked"] = serde_json::json!(1);
    let edited: Report<ChainWalkReport> = serde_json::from_value(value).unwrap();
    assert!(!edited.verify());
}
