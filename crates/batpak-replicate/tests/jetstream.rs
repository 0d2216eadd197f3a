//! Replication into a real NATS JetStream (Debian's nats-server, started into a
//! temporary directory): every record lands once on its entity's subject with the
//! headers that order it, a replicator cut off mid-batch resumes without a gap or a
//! duplicate, the server restarted mid-stream is waited out, `verify-replica` names
//! a deleted message and one published again out of order, a redaction erases the payload from
//! the stream, a follower builds a replica from it, and a stream holding another
//! store's history is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use batpak::{AppendOptions, Coordinate, EventKind, ExportLine, RawPayload, Region, Store};
use batpak_replicate::{JetStreamSink, ReplicateError, Replicator, Sink as _};
use support::{append_long_batch, assert_same_history, runtime, store_with_history, Nats};

fn sink(nats: &Nats, name: &str) -> JetStreamSink {
    JetStreamSink::new(&nats.url(), name).unwrap()
}

fn stream(rt: &tokio::runtime::Runtime, nats: &Nats, name: &str) -> jetstream::stream::Stream {
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        jetstream::new(client)
            .get_stream(format!("BATPAK_{name}"))
            .await
            .unwrap()
    })
}

/// Messages on `filter` (the server counts them per subject).
fn count_on(rt: &tokio::runtime::Runtime, nats: &Nats, name: &str, filter: &str) -> u64 {
    use futures_util::StreamExt as _;
    let s = stream(rt, nats, name);
    rt.block_on(async {
        let mut subjects = s.info_with_subjects(filter).await.unwrap();
        let mut total = 0;
        while let Some(entry) = subjects.next().await {
            total += entry.unwrap().1 as u64;
        }
        total
    })
}

/// Event messages of the copy (not its anchors or erased copies).
fn message_count(rt: &tokio::runtime::Runtime, nats: &Nats, name: &str) -> u64 {
    count_on(rt, nats, name, &format!("batpak.{name}.*.*"))
}

/// The stream sequence of the message holding store sequence `sequence`.
fn stream_seq_of(rt: &tokio::runtime::Runtime, nats: &Nats, name: &str, sequence: u64) -> u64 {
    let s = stream(rt, nats, name);
    let last = rt.block_on(s.get_info()).unwrap().state.last_sequence;
    for seq in 1..=last {
        if let Ok(m) = rt.block_on(s.get_raw_message(seq)) {
            if m.headers
                .get("Batpak-Sequence")
                .map(|v| v.as_str().to_string())
                == Some(sequence.to_string())
                && !m.subject.ends_with(".erased")
            {
                return seq;
            }
        }
    }
    panic!("no message holds sequence {sequence}");
}

fn verify(
    rt: &tokio::runtime::Runtime,
    nats: &Nats,
    name: &str,
) -> batpak_replicate::ReplicaReport {
    rt.block_on(batpak_replicate::verify_jetstream(
        &nats.url(),
        name,
        &[],
        &[],
    ))
    .unwrap()
}

fn append(store: &Store, entity: &str, n: u64) {
    for i in 0..n {
        store
            .append_raw(
                &Coordinate::new(entity, "shop").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"n\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
}

#[test]
fn every_record_lands_once_on_its_entitys_subject_and_the_copy_verifies() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 500);
    // A scope and an entity that need escaping, and a redaction.
    store
        .append_raw(
            &Coordinate::new("a.b c*", "x>y").unwrap(),
            EventKind::custom(1, 2),
            RawPayload::json(b"{\"odd\":true}"),
            AppendOptions::default(),
        )
        .unwrap();
    let doomed = store.get_sequence(3).unwrap().unwrap();
    store.redact(doomed.id, "test").unwrap();
    let rt = runtime();
    let mut replicator = Replicator::new(Arc::clone(&store), sink(&nats, "t")).batch(128);
    let position = rt.block_on(replicator.catch_up()).unwrap();
    let visible = store.frontier().visible;
    assert_eq!(position, visible);
    assert_eq!(
        message_count(&rt, &nats, "t"),
        visible,
        "one message per record"
    );

    // Each message: its entity's subject, the event id as Msg-Id, the export line.
    let s = stream(&rt, &nats, "t");
    let all = store
        .query(
            &Region::all().with_store_records().with_hidden(),
            0,
            usize::MAX,
        )
        .unwrap();
    for (i, e) in all.iter().enumerate() {
        let m = rt.block_on(s.get_raw_message(i as u64 + 1)).unwrap();
        let want =
            batpak_replicate::event_subject("t", e.coordinate.scope(), e.coordinate.entity());
        assert_eq!(m.subject.as_str(), want);
        assert_eq!(
            m.headers.get("Nats-Msg-Id").unwrap().as_str(),
            e.id.to_string()
        );
        let line: ExportLine = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(line, ExportLine::from_event(e, store.kind_name(e.kind)));
    }
    let odd = all
        .iter()
        .find(|e| e.coordinate.entity() == "a.b c*")
        .unwrap();
    let m = rt.block_on(s.get_raw_message(odd.sequence)).unwrap();
    assert_eq!(m.subject.as_str(), "batpak.t.x%3Ey.a%2Eb%20c%2A");
    let first_of_order_1 = rt
        .block_on(s.get_first_raw_message_by_subject("batpak.t.shop.order:1", 1))
        .unwrap();
    assert_eq!(
        first_of_order_1
            .headers
            .get("Nats-Expected-Last-Subject-Sequence")
            .unwrap()
            .as_str(),
        "0"
    );

    let anchor = store.anchor().unwrap();
    let report = rt
        .block_on(batpak_replicate::verify_jetstream(
            &nats.url(),
            "t",
            &[anchor],
            &[],
        ))
        .unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    // The anchor given, and the one the replicator kept at the end of its catch-up.
    assert_eq!(
        (report.rows, report.position, report.anchors_held),
        (visible, visible, 2)
    );
    assert_eq!(count_on(&rt, &nats, "t", "batpak.t.anchor"), 1);
    assert_eq!(replicator.control().status().anchored, visible);
}

#[test]
fn a_record_of_every_kind_the_store_writes_lands_and_the_stream_verifies() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = support::store_with_every_record(dir.path(), 300);
    let rt = runtime();
    let mut r = Replicator::new(Arc::clone(&store), sink(&nats, "all"));
    rt.block_on(r.catch_up()).unwrap();
    // Each message's kind, in stream order, against the store's.
    let s = stream(&rt, &nats, "all");
    let mut counts = std::collections::BTreeMap::new();
    let last = rt.block_on(s.get_info()).unwrap().state.last_sequence;
    for seq in 1..=last {
        let Ok(m) = rt.block_on(s.get_raw_message(seq)) else {
            continue;
        };
        if m.subject.split('.').count() == 4 {
            let line: ExportLine = serde_json::from_slice(&m.payload).unwrap();
            *counts.entry(line.kind.to_string()).or_insert(0u64) += 1;
        }
    }
    let counts: Vec<String> = counts
        .into_iter()
        .map(|(k, n)| format!("{k}|{n}"))
        .collect();
    assert_eq!(counts.join("\n"), support::kind_counts(&store));
    let report = verify(&rt, &nats, "all");
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.rows, store.frontier().visible);
}

#[test]
fn a_replicator_cut_off_mid_batch_resumes_without_a_gap_or_a_duplicate() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 300);
    let rt = runtime();
    let mut first = Replicator::new(Arc::clone(&store), sink(&nats, "k")).batch(100);
    rt.block_on(first.catch_up()).unwrap();
    append(&store, "late", 250);
    // Half of the next batch reaches the server, then the replicator dies.
    let position = store.frontier().visible - 250;
    let events = store
        .query(&Region::all().with_store_records(), position, 60)
        .unwrap();
    let lines: Vec<_> = events
        .iter()
        .map(|e| ExportLine::from_event(e, store.kind_name(e.kind)))
        .collect();
    let mut half = sink(&nats, "k");
    assert_eq!(rt.block_on(half.position()).unwrap(), position);
    rt.block_on(half.ship(&lines[..30], &[], position + 30))
        .unwrap();
    drop(half);
    let mut second = Replicator::new(Arc::clone(&store), sink(&nats, "k")).batch(64);
    rt.block_on(second.catch_up()).unwrap();
    assert_eq!(
        second.control().status().shipped,
        220,
        "only what the stream lacked"
    );
    assert_eq!(message_count(&rt, &nats, "k"), store.frontier().visible);
    let report = verify(&rt, &nats, "k");
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.rows, store.frontier().visible);
}

#[test]
fn a_nats_server_restarted_mid_stream_is_waited_out() {
    let mut nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 100);
    let rt = runtime();
    let mut replicator = Replicator::new(Arc::clone(&store), sink(&nats, "r")).batch(50);
    rt.block_on(replicator.catch_up()).unwrap();
    let control = replicator.control();
    nats.stop();
    append(&store, "during", 500);
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        nats.restart();
        nats
    });
    let position = rt.block_on(replicator.catch_up()).unwrap();
    let nats = restart.join().unwrap();
    assert_eq!(position, store.frontier().visible);
    assert!(control.status().shipped >= 500);
    assert_eq!(message_count(&rt, &nats, "r"), store.frontier().visible);
    let report = verify(&rt, &nats, "r");
    assert_eq!(report.problem, None, "{report:?}");
}

#[test]
fn verify_replica_names_a_deleted_message() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 200);
    let rt = runtime();
    let mut r = Replicator::new(Arc::clone(&store), sink(&nats, "v")).batch(64);
    rt.block_on(r.catch_up()).unwrap();
    assert_eq!(verify(&rt, &nats, "v").problem, None);
    let s = stream(&rt, &nats, "v");

    // A forged anchor in the stream (the running hash changed) is named.
    let mut forged = store.anchor().unwrap();
    forged.running_hash = batpak::Hash::ZERO;
    let forged_at = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        jetstream::new(client)
            .publish(
                "batpak.v.anchor",
                serde_json::to_vec(&forged).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence
    });
    let found = verify(&rt, &nats, "v").problem.unwrap();
    assert_eq!(found.sequence, forged.sequence, "{found}");
    assert!(found.detail.contains("anchor"), "{found}");
    rt.block_on(s.delete_message(forged_at)).unwrap();
    assert_eq!(verify(&rt, &nats, "v").problem, None);

    // A deleted message: missing, named with what comes next.
    let at = stream_seq_of(&rt, &nats, "v", 77);
    rt.block_on(s.delete_message(at)).unwrap();
    let found = verify(&rt, &nats, "v").problem.unwrap();
    assert_eq!((found.sequence, found.id.clone()), (77, None), "{found}");
    assert!(found.detail.contains("missing"), "{found}");
    assert!(found.detail.contains("holds sequence 78"), "{found}");
}

#[test]
fn a_message_published_again_under_another_id_is_out_of_order() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 40);
    let rt = runtime();
    let mut r = Replicator::new(Arc::clone(&store), sink(&nats, "o"));
    rt.block_on(r.catch_up()).unwrap();
    let s = stream(&rt, &nats, "o");
    let again = rt.block_on(s.get_raw_message(10)).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Batpak-Sequence", "10");
    headers.insert("Nats-Msg-Id", "replayed");
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client);
        js.publish_with_headers(again.subject.clone(), headers, again.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap()
    });
    let found = verify(&rt, &nats, "o").problem.unwrap();
    assert_eq!(found.sequence, 10, "{found}");
    assert!(found.detail.contains("out of order"), "{found}");
    assert!(found.detail.contains("after sequence"), "{found}");
}

#[test]
fn a_redaction_after_replication_erases_the_payload_from_the_stream() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 60);
    let rt = runtime();
    let mut r = Replicator::new(Arc::clone(&store), sink(&nats, "e"));
    rt.block_on(r.catch_up()).unwrap();
    let target = store.get_sequence(12).unwrap().unwrap();
    let s = stream(&rt, &nats, "e");
    let original = stream_seq_of(&rt, &nats, "e", 12);
    assert!(rt.block_on(s.get_raw_message(original)).is_ok());
    store.redact(target.id, "GDPR request 7").unwrap();
    rt.block_on(r.catch_up()).unwrap();
    assert!(
        rt.block_on(s.get_raw_message(original)).is_err(),
        "the original message is gone"
    );
    let copy = rt
        .block_on(s.get_last_raw_message_by_subject("batpak.e.erased"))
        .unwrap();
    let line: ExportLine = serde_json::from_slice(&copy.payload).unwrap();
    assert_eq!(line.sequence, Some(12));
    assert!(line.redacted && line.bytes.is_none() && line.salt.is_none() && line.digest.is_some());
    assert_eq!(
        line.event_hash,
        Some(target.event_hash()),
        "the hash is the same"
    );
    // The payload bytes are nowhere in the server's files.
    let payload = String::from_utf8(target.payload.to_vec()).unwrap();
    let files = walk(nats.dir.path());
    assert!(
        !files.is_empty(),
        "the server keeps its messages in .blk files"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(payload.len())
                .any(|w| w == payload.as_bytes()),
            "{} still holds {payload}",
            file.display()
        );
    }
    let report = verify(&rt, &nats, "e");
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.rows, store.frontier().visible);
    // A fresh replicator finds its place after the redaction.
    append(&store, "after", 5);
    let mut again = Replicator::new(Arc::clone(&store), sink(&nats, "e"));
    rt.block_on(again.catch_up()).unwrap();
    assert_eq!(again.control().status().shipped, 5);
    assert_eq!(verify(&rt, &nats, "e").problem, None);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "blk") {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_follower_builds_a_replica_from_the_stream_with_the_same_ids_and_hashes() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 700);
    append_long_batch(&store);
    let rt = runtime();
    let mut r = Replicator::new(Arc::clone(&store), sink(&nats, "p")).batch(333);
    rt.block_on(r.catch_up()).unwrap();
    // Erased before the follower reads it: the erased copy stands for it.
    let doomed = store.get_sequence(5).unwrap().unwrap();
    store.redact(doomed.id, "erase").unwrap();
    rt.block_on(r.catch_up()).unwrap();
    let anchor = store.anchor().unwrap();

    let replica_dir = tempfile::tempdir().unwrap();
    let replica = Arc::new(Store::open(replica_dir.path()).unwrap());
    let follow = |replica: &Arc<Store>| {
        rt.block_on(batpak_replicate::follow_jetstream(
            Arc::clone(replica),
            &nats.url(),
            "p",
            true,
            std::future::pending(),
            |_| {},
        ))
    };
    assert_eq!(follow(&replica).unwrap(), store.frontier().visible);
    assert_same_history(&store, &replica);
    assert!(replica.get_sequence(5).unwrap().unwrap().is_redacted());
    assert!(replica.verify_against(&anchor).unwrap().holds());
    assert!(replica.verify().unwrap().body.is_clean());

    // Erased after the follower imported it: the redaction record erases it there.
    let late = store.get_sequence(40).unwrap().unwrap();
    assert!(!replica.get_sequence(40).unwrap().unwrap().is_redacted());
    store.redact(late.id, "late").unwrap();
    // More: the follower picks up where the replica is; promotion then loses nothing.
    append(&store, "more", 89);
    rt.block_on(r.catch_up()).unwrap();
    let behind = rt
        .block_on(batpak_replicate::behind_jetstream(
            &replica,
            &nats.url(),
            "p",
        ))
        .unwrap();
    assert_eq!(behind.missing(), 90);
    assert_eq!(follow(&replica).unwrap(), store.frontier().visible);
    assert!(replica.get_sequence(40).unwrap().unwrap().is_redacted());
    assert_same_history(&store, &replica);
    let behind = rt
        .block_on(batpak_replicate::behind_jetstream(
            &replica,
            &nats.url(),
            "p",
        ))
        .unwrap();
    assert_eq!(behind.missing(), 0);
}

#[test]
fn a_stream_holding_another_stores_history_is_refused_and_left_as_it_is() {
    let nats = Nats::start();
    let rt = runtime();
    let a_dir = tempfile::tempdir().unwrap();
    let a = store_with_history(a_dir.path(), 30);
    let mut ra = Replicator::new(a, sink(&nats, "mixed"));
    rt.block_on(ra.catch_up()).unwrap();
    let before = message_count(&rt, &nats, "mixed");
    let b_dir = tempfile::tempdir().unwrap();
    let b = store_with_history(b_dir.path(), 60);
    let mut rb = Replicator::new(b, sink(&nats, "mixed"));
    let refused = rt.block_on(rb.catch_up()).unwrap_err();
    assert!(matches!(refused, ReplicateError::Diverged(_)), "{refused}");
    assert!(
        refused.to_string().contains("batpak.mixed.shop.order:"),
        "{refused}"
    );
    assert_eq!(message_count(&rt, &nats, "mixed"), before);
    assert!(JetStreamSink::new(&nats.url(), "bad.name").is_err());
    assert!(JetStreamSink::new("http://x", "ok").is_err());
}

#[test]
fn a_compacted_store_replicates_with_its_manifest_and_the_stream_verifies() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = support::compacted_store(dir.path(), 400);
    let rt = runtime();
    let mut r = Replicator::new(Arc::clone(&store), sink(&nats, "cs")).batch(50);
    rt.block_on(r.catch_up()).unwrap();
    let kept = store
        .query(
            &Region::all().with_store_records().with_hidden(),
            0,
            usize::MAX,
        )
        .unwrap()
        .len() as u64;
    assert!(kept < store.frontier().visible, "sequences have gaps");
    assert_eq!(message_count(&rt, &nats, "cs"), kept);
    assert_eq!(count_on(&rt, &nats, "cs", "batpak.cs.compaction"), 1);
    let report = verify(&rt, &nats, "cs");
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.rows, kept);
    assert!(report.compacted_through.is_some());
    // A kept message deleted inside the range: the kept hash catches it.
    let through = report.compacted_through.unwrap();
    let blob = store
        .query(&Region::all(), 0, usize::MAX)
        .unwrap()
        .into_iter()
        .find(|e| e.coordinate.entity() == "blob:1" && e.sequence <= through)
        .unwrap();
    let at = stream_seq_of(&rt, &nats, "cs", blob.sequence);
    rt.block_on(stream(&rt, &nats, "cs").delete_message(at))
        .unwrap();
    let found = verify(&rt, &nats, "cs").problem.unwrap();
    assert!(found.detail.contains("kept"), "{found}");
}
