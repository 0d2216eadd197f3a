//! Replication into a real PostgreSQL (Debian's, started into a temporary directory):
//! every record lands once with every field, the position commits with the rows, a
//! restarted replicator resumes without a gap or a duplicate, the server restarted
//! mid-stream is waited out, and a sink holding another store's history is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use batpak::{AppendOptions, Coordinate, EventKind, RawPayload, Store};
use batpak_replicate::{PostgresSink, Replicator, Sink as _};
use support::{append_long_batch, assert_same_history, runtime, store_with_history, Postgres};

#[test]
fn every_record_lands_once_with_every_field_and_the_position_with_it() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 2_500);
    let rt = runtime();
    let sink = PostgresSink::new(&pg.url(), "shop").unwrap();
    let mut replicator = Replicator::new(Arc::clone(&store), sink).batch(300);
    let position = rt.block_on(replicator.catch_up()).unwrap();
    let visible = store.frontier().visible;
    assert_eq!(position, visible);
    assert_eq!(
        pg.sql("SELECT sequence FROM shop.position"),
        visible.to_string()
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM shop.events"),
        visible.to_string()
    );
    assert_eq!(
        pg.sql("SELECT count(DISTINCT sequence) = count(*) AND min(sequence) = 1 AND max(sequence) = count(*) FROM shop.events"),
        "t",
        "dense, no duplicate"
    );
    // Every field of a stored event, as the store has it.
    let e = store.get_sequence(20).unwrap().unwrap();
    let row = pg.sql("SELECT id, entity, scope, version, kind, kind_name, encoding, encode(payload, 'hex'), payload_json->>'i', metadata->>'n', event_hash, prev_hash, causation FROM shop.events WHERE sequence = 20");
    let expected = format!(
        "{}|{}|{}|{}|1:1|Placed|json|{}|{}|{}|{}|{}|{}",
        e.id,
        e.coordinate.entity(),
        e.coordinate.scope(),
        e.version,
        e.payload
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        serde_json::from_slice::<serde_json::Value>(&e.payload).unwrap()["i"],
        e.metadata.get("n").unwrap(),
        e.event_hash(),
        e.prev_hash,
        e.causation.map(|c| c.to_string()).unwrap_or_default(),
    );
    assert_eq!(row, expected);
    // Opaque bytes exactly, no JSON view; the store's own records are there too.
    let last = pg.sql(&format!("SELECT encode(payload, 'hex'), payload_json IS NULL, encoding FROM shop.events WHERE sequence = {visible}"));
    assert_eq!(last, "0001ff|t|opaque");
    assert_eq!(
        pg.sql("SELECT count(*) FROM shop.events WHERE entity LIKE 'batpak:%'"),
        "1",
        "the kind name record"
    );
    // Indexes the downstream queries need.
    let indexes = pg.sql("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'shop' AND tablename = 'events'");
    for name in [
        "events_entity",
        "events_scope",
        "events_kind",
        "events_time",
        "events_causation",
        "events_correlation",
    ] {
        assert!(indexes.contains(name), "{name} missing from {indexes}");
    }
    let status = replicator.control().status();
    assert_eq!(
        (status.position, status.lag_events, status.shipped),
        (visible, 0, visible)
    );
}

#[test]
fn a_record_of_every_kind_the_store_writes_lands_and_the_copy_verifies() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = support::store_with_every_record(dir.path(), 300);
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "every").unwrap(),
    );
    rt.block_on(r.catch_up()).unwrap();
    assert_eq!(
        pg.sql("SELECT kind || '|' || count(*) FROM every.events GROUP BY kind ORDER BY kind"),
        support::kind_counts(&store)
    );
    let report = rt
        .block_on(batpak_replicate::verify_postgres(
            &pg.url(),
            "every",
            &[],
            &[],
        ))
        .unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.rows, store.frontier().visible);
}

#[test]
fn a_new_replicator_resumes_after_the_sinks_position_and_a_reshipped_batch_changes_nothing() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 400);
    let rt = runtime();
    let mut first = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "s").unwrap(),
    )
    .batch(100);
    rt.block_on(first.catch_up()).unwrap();
    let before = pg.sql("SELECT count(*) FROM s.events");
    // The same batch shipped again (a crash between the commit and knowing of it).
    let events = store
        .query(&batpak::Region::all().with_store_records(), 0, 50)
        .unwrap();
    let lines: Vec<_> = events
        .iter()
        .map(|e| batpak::ExportLine::from_event(e, store.kind_name(e.kind)))
        .collect();
    rt.block_on(first.sink_mut().ship(&lines, &[], 50)).unwrap();
    assert_eq!(pg.sql("SELECT count(*) FROM s.events"), before);
    assert_eq!(
        pg.sql("SELECT sequence FROM s.position"),
        store.frontier().visible.to_string(),
        "the position never goes back"
    );
    // More events, and a fresh replicator picks up exactly after the sink's position.
    for i in 0..150 {
        store
            .append_raw(
                &Coordinate::new("late", "shop").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"late\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
    let mut second = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "s").unwrap(),
    )
    .batch(64);
    rt.block_on(second.catch_up()).unwrap();
    assert_eq!(second.control().status().shipped, 150, "only the new ones");
    assert_eq!(
        pg.sql("SELECT count(*) FROM s.events"),
        store.frontier().visible.to_string()
    );
}

#[test]
fn a_sink_server_restarted_mid_stream_is_waited_out() {
    let mut pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 100);
    let rt = runtime();
    let mut replicator = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "s").unwrap(),
    )
    .batch(50);
    rt.block_on(replicator.catch_up()).unwrap();
    let control = replicator.control();
    pg.stop();
    for i in 0..500 {
        store
            .append_raw(
                &Coordinate::new("during", "shop").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"d\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
    let goal = store.frontier().visible;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = std::thread::spawn(move || {
        rt.block_on(replicator.run(async move {
            let _ = stop_rx.await;
        }))
    });
    // While the server is down the replicator keeps retrying and says why.
    let mut saw_retry = false;
    for _ in 0..200 {
        let s = control.status();
        if s.retrying > 0 && s.last_error.is_some() {
            saw_retry = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        saw_retry,
        "the failure shows in the status: {:?}",
        control.status()
    );
    pg.restart();
    let mut caught_up = false;
    for _ in 0..500 {
        if control.status().position == goal {
            caught_up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        caught_up,
        "resumed after the restart: {:?}",
        control.status()
    );
    stop_tx.send(()).unwrap();
    running.join().unwrap().unwrap();
    assert_eq!(pg.sql("SELECT count(*) FROM s.events"), goal.to_string());
}

#[test]
fn a_sink_holding_another_stores_history_is_refused_and_left_as_it_is() {
    let pg = Postgres::start();
    let rt = runtime();
    let a_dir = tempfile::tempdir().unwrap();
    let a = store_with_history(a_dir.path(), 30);
    let mut ra = Replicator::new(a, PostgresSink::new(&pg.url(), "mixed").unwrap());
    rt.block_on(ra.catch_up()).unwrap();
    // Another store's events at the same sequences: the sink's position says 31, so
    // force a re-ship of b's first events as a confused operator's replicator would.
    let b_dir = tempfile::tempdir().unwrap();
    let b = store_with_history(b_dir.path(), 30);
    let events = b
        .query(&batpak::Region::all().with_store_records(), 0, 10)
        .unwrap();
    let lines: Vec<_> = events
        .iter()
        .map(|e| batpak::ExportLine::from_event(e, b.kind_name(e.kind)))
        .collect();
    let mut sink = PostgresSink::new(&pg.url(), "mixed").unwrap();
    let refused = rt.block_on(sink.ship(&lines, &[], 10)).unwrap_err();
    assert!(refused.to_string().contains("other events"), "{refused}");
    let before = pg.sql("SELECT string_agg(event_hash, ',' ORDER BY sequence) FROM mixed.events");
    let mut rb = Replicator::new(b, PostgresSink::new(&pg.url(), "mixed").unwrap());
    // b's replicator starts after the sink's position (31); b has 31 events, so
    // nothing to ship; a longer b would be refused at its first differing batch.
    rt.block_on(rb.catch_up()).unwrap();
    assert_eq!(
        pg.sql("SELECT string_agg(event_hash, ',' ORDER BY sequence) FROM mixed.events"),
        before
    );
    assert!(matches!(
        PostgresSink::new(&pg.url(), "Bad-Name"),
        Err(ref e) if e.contains("lower-case")
    ));
    // A reserved word would need quoting everywhere: refused up front, not retried.
    assert!(matches!(
        PostgresSink::new(&pg.url(), "all"),
        Err(ref e) if e.contains("reserved")
    ));
}

#[test]
fn verify_replica_is_clean_on_a_copy_and_names_the_first_row_that_does_not_hold() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 300);
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "v").unwrap(),
    );
    rt.block_on(r.catch_up()).unwrap();
    let verify = || {
        rt.block_on(batpak_replicate::verify_postgres(&pg.url(), "v", &[], &[]))
            .unwrap()
    };
    let clean = verify();
    assert_eq!(clean.problem, None, "{clean:?}");
    assert_eq!(clean.rows, store.frontier().visible);
    let id_at = |seq: u64| store.get_sequence(seq).unwrap().unwrap().id.to_string();

    // A changed payload byte: its hash no longer holds.
    pg.sql("UPDATE v.events SET payload = convert_to('{\"i\":999}', 'UTF8'), payload_json = '{\"i\":999}' WHERE sequence = 40");
    let found = verify().problem.unwrap();
    assert_eq!(
        (found.sequence, found.id.clone()),
        (40, Some(id_at(40))),
        "{found}"
    );
    assert!(found.detail.contains("event_hash"), "{found}");
    // Put it back from the store, then tamper only the JSON view.
    let e = store.get_sequence(40).unwrap().unwrap();
    let hex: String = e.payload.iter().map(|b| format!("{b:02x}")).collect();
    pg.sql(&format!("UPDATE v.events SET payload = decode('{hex}', 'hex'), payload_json = convert_from(decode('{hex}', 'hex'), 'UTF8')::jsonb WHERE sequence = 40"));
    assert_eq!(verify().problem, None);
    pg.sql("UPDATE v.events SET payload_json = '{\"i\":-1}' WHERE sequence = 41");
    let found = verify().problem.unwrap();
    assert_eq!(found.sequence, 41);
    assert!(found.detail.contains("JSON view"), "{found}");
    pg.sql("UPDATE v.events SET payload_json = (SELECT convert_from(payload, 'UTF8')::jsonb) WHERE sequence = 41");
    assert_eq!(verify().problem, None);
    // A missing row.
    pg.sql("DELETE FROM v.events WHERE sequence = 77");
    let found = verify().problem.unwrap();
    assert_eq!(found.sequence, 77, "{found}");
    assert!(found.detail.contains("missing"), "{found}");
}

#[test]
fn a_replicator_over_a_view_follows_the_writer() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let writer = store_with_history(dir.path(), 20);
    let view = Arc::new(Store::builder(dir.path()).open_view().unwrap());
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&view),
        PostgresSink::new(&pg.url(), "f").unwrap(),
    );
    let control = r.control();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = std::thread::spawn(move || {
        rt.block_on(r.run(async move {
            let _ = stop_rx.await;
        }))
    });
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..30 {
        writer
            .append_raw(
                &Coordinate::new("later", "shop").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"l\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
    let goal = writer.frontier().visible;
    let mut reached = false;
    for _ in 0..300 {
        if control.status().position == goal {
            reached = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop_tx.send(()).unwrap();
    running.join().unwrap().unwrap();
    assert!(reached, "{:?} (goal {goal})", control.status());
}

#[test]
fn a_redaction_after_replication_erases_the_payload_downstream_and_the_copy_still_verifies() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 60);
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "r").unwrap(),
    );
    rt.block_on(r.catch_up()).unwrap();
    let target = store.get_sequence(12).unwrap().unwrap();
    assert_eq!(
        pg.sql("SELECT payload IS NOT NULL FROM r.events WHERE sequence = 12"),
        "t"
    );
    store.redact(target.id, "GDPR request 7").unwrap();
    rt.block_on(r.catch_up()).unwrap();
    let row = pg.sql("SELECT payload IS NULL, payload_json IS NULL, salt IS NULL, redacted, digest IS NOT NULL FROM r.events WHERE sequence = 12");
    assert_eq!(row, "t|t|t|t|t", "erased downstream, the digest kept");
    assert_eq!(
        pg.sql("SELECT event_hash FROM r.events WHERE sequence = 12"),
        target.event_hash().to_string(),
        "the hash is the same"
    );
    let report = rt
        .block_on(batpak_replicate::verify_postgres(&pg.url(), "r", &[], &[]))
        .unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    // The redaction record itself is in the copy.
    assert_eq!(
        pg.sql("SELECT count(*) FROM r.events WHERE kind = '0:3'"),
        "1"
    );
}

#[test]
fn a_follower_builds_a_replica_with_the_same_ids_and_hashes_that_the_sources_anchor_holds_on() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 700);
    append_long_batch(&store);
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "p").unwrap(),
    )
    .batch(333);
    rt.block_on(r.catch_up()).unwrap();
    let anchor = store.anchor().unwrap();

    let replica_dir = tempfile::tempdir().unwrap();
    let replica = Arc::new(Store::open(replica_dir.path()).unwrap());
    let follow = |replica: &Arc<Store>| {
        rt.block_on(batpak_replicate::follow_postgres(
            Arc::clone(replica),
            &pg.url(),
            "p",
            true,
            std::future::pending(),
            |_| {},
        ))
    };
    let position = follow(&replica).unwrap();
    assert_eq!(position, store.frontier().visible);
    assert_same_history(&store, &replica);
    assert!(
        replica.verify_against(&anchor).unwrap().holds(),
        "the source's anchor holds on the replica"
    );
    assert!(replica.verify().unwrap().body.is_clean());

    // More in the source: the follower picks up from where the replica is.
    for i in 0..90 {
        store
            .append_raw(
                &Coordinate::new("more", "shop").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"m\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
    // Erased after the follower imported it: the redaction record erases it there.
    let late = store.get_sequence(40).unwrap().unwrap();
    store.redact(late.id, "late").unwrap();
    rt.block_on(r.catch_up()).unwrap();
    assert_eq!(follow(&replica).unwrap(), store.frontier().visible);
    assert!(replica.get_sequence(40).unwrap().unwrap().is_redacted());
    assert_same_history(&store, &replica);

    // A tampered row stops it, named, with nothing of it imported.
    store
        .append_raw(
            &Coordinate::new("last", "shop").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::json(b"{\"x\":1}"),
            AppendOptions::default(),
        )
        .unwrap();
    rt.block_on(r.catch_up()).unwrap();
    let last = store.frontier().visible;
    pg.sql(&format!(
        "UPDATE p.events SET payload = convert_to('{{\"x\":2}}', 'UTF8') WHERE sequence = {last}"
    ));
    let refused = follow(&replica).unwrap_err();
    assert!(refused.contains(&format!("sequence {last}")), "{refused}");
    assert_eq!(replica.frontier().visible, last - 1);
}

#[test]
fn anchors_of_the_store_check_against_the_copy_and_catch_a_consistent_truncation() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let signer = batpak::proof::SigningKey::from_bytes(&[7; 32]);
    let store = Arc::new(
        Store::builder(dir.path())
            .signing_key(signer.clone())
            .open()
            .unwrap(),
    );
    for i in 0..80 {
        store
            .append_raw(
                &Coordinate::new(format!("a:{}", i % 4), "s").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"i\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
    let early = store.anchor().unwrap();
    for i in 0..20 {
        store
            .append_raw(
                &Coordinate::new("b", "s").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"j\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
    let late = store.anchor().unwrap();
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "an").unwrap(),
    );
    rt.block_on(r.catch_up()).unwrap();
    let keys = [signer.verifying_key()];
    let check = |anchors: &[batpak::proof::Anchor], keys: &[batpak::proof::VerifyingKey]| {
        rt.block_on(batpak_replicate::verify_postgres(
            &pg.url(),
            "an",
            anchors,
            keys,
        ))
        .unwrap()
    };
    // The two given, and the one the replicator kept in the copy at its end.
    let report = check(&[early, late], &keys);
    assert_eq!(
        (report.problem.clone(), report.anchors_held),
        (None, 3),
        "{report:?}"
    );
    assert_eq!(report.running_hash, late.running_hash);
    assert_eq!(
        pg.sql("SELECT sequence, signed_by IS NOT NULL FROM an.anchors"),
        "100|t"
    );
    // Without the key, a signed anchor does not hold.
    let report = check(&[early], &[]);
    assert!(report.problem.unwrap().detail.contains("signature"));
    // A truncation made consistent (rows and position cut back together) passes every
    // row check; the anchor the copy keeps catches it.
    pg.sql("DELETE FROM an.events WHERE sequence > 90");
    pg.sql("UPDATE an.position SET sequence = 90");
    let found = check(&[], &keys).problem.unwrap();
    assert!(found.detail.contains("ends at sequence 90"), "{found}");
    // Its anchors deleted as well, only an anchor kept elsewhere catches it.
    pg.sql("DELETE FROM an.anchors");
    assert_eq!(check(&[early], &keys).problem, None);
    let found = check(&[early, late], &keys).problem.unwrap();
    assert_eq!(found.sequence, 100);
    assert!(found.detail.contains("ends at sequence 90"), "{found}");
    // A forged anchor row (its running hash changed) is named.
    let mut forged = late;
    forged.running_hash = batpak::Hash::ZERO;
    let json = serde_json::to_string(&forged).unwrap();
    pg.sql(&format!(
        "INSERT INTO an.anchors VALUES (50, '{}', NULL, '{json}')",
        forged.running_hash
    ));
    let found = check(&[], &keys).problem.unwrap();
    assert!(found.detail.contains("signature"), "{found}");
}

#[test]
fn anchors_are_shipped_at_intervals_each_continuing_the_last_and_each_holds() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 1_000);
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "iv").unwrap(),
    )
    .batch(64)
    .anchor_every(200);
    rt.block_on(r.catch_up()).unwrap();
    let visible = store.frontier().visible;
    let sequences: Vec<u64> = pg
        .sql("SELECT string_agg(sequence::text, ',' ORDER BY sequence) FROM iv.anchors")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    // One each time 200 more were shipped (at a batch's end), and one at the end.
    assert!(sequences.len() >= 4, "{sequences:?}");
    assert_eq!(*sequences.last().unwrap(), visible);
    for pair in sequences.windows(2) {
        assert!(
            pair[1] - pair[0] >= 200 || pair[1] == visible,
            "{sequences:?}"
        );
    }
    assert_eq!(r.control().status().anchored, visible);
    for text in pg
        .sql("SELECT anchor::text FROM iv.anchors ORDER BY sequence")
        .lines()
    {
        let anchor: batpak::proof::Anchor = serde_json::from_str(text).unwrap();
        assert!(store.verify_against(&anchor).unwrap().holds(), "{anchor:?}");
    }
    let report = rt
        .block_on(batpak_replicate::verify_postgres(&pg.url(), "iv", &[], &[]))
        .unwrap();
    assert_eq!(
        (report.problem.clone(), report.anchors_held),
        (None, sequences.len()),
        "{report:?}"
    );
}

#[test]
fn a_compacted_store_replicates_with_its_manifest_and_the_copy_verifies_without_the_removed_events()
{
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = support::compacted_store(dir.path(), 400);
    let through =
        batpak::proof::CompactionProof::from_manifest(&store.compaction_manifest().unwrap())
            .unwrap()
            .through;
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "cs").unwrap(),
    )
    .batch(50);
    rt.block_on(r.catch_up()).unwrap();
    let kept = store
        .query(
            &batpak::Region::all().with_store_records().with_hidden(),
            0,
            usize::MAX,
        )
        .unwrap()
        .len() as u64;
    assert!(kept < store.frontier().visible, "sequences have gaps");
    assert_eq!(pg.sql("SELECT count(*) FROM cs.events"), kept.to_string());
    assert_eq!(pg.sql("SELECT generation FROM cs.compaction"), "1");
    let verify = || {
        rt.block_on(batpak_replicate::verify_postgres(&pg.url(), "cs", &[], &[]))
            .unwrap()
    };
    let report = verify();
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(
        (report.rows, report.compacted_through),
        (kept, Some(through))
    );
    // A kept event removed by hand inside the range is caught: the gap alone would
    // pass as a compacted one, the kept hash does not.
    let victim = pg.sql(&format!(
        "SELECT max(sequence) FROM cs.events WHERE sequence <= {through} AND entity = 'blob:1'"
    ));
    pg.sql(&format!("DELETE FROM cs.events WHERE sequence = {victim}"));
    let found = verify().problem.unwrap();
    assert!(found.detail.contains("kept"), "{found}");
    // A follower cannot rebuild a compacted history (the preserved import needs dense
    // sequences) and says where.
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = Arc::new(Store::open(replica_dir.path()).unwrap());
    let refused = rt
        .block_on(batpak_replicate::follow_postgres(
            replica,
            &pg.url(),
            "cs",
            true,
            std::future::pending(),
            |_| {},
        ))
        .unwrap_err();
    assert!(refused.contains("refused"), "{refused}");
}

#[test]
fn a_copy_made_before_its_store_was_compacted_keeps_every_event_and_still_verifies() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_history(dir.path(), 400);
    let rt = runtime();
    let mut r = Replicator::new(
        Arc::clone(&store),
        PostgresSink::new(&pg.url(), "pre").unwrap(),
    );
    rt.block_on(r.catch_up()).unwrap();
    let before = store.frontier().visible;
    store
        .set_retention(
            batpak::RetentionSelector::EntityPrefix("order".into()),
            batpak::RetentionRule::MaxCount(5),
        )
        .unwrap();
    store.compact().unwrap();
    rt.block_on(r.catch_up()).unwrap();
    // Every event shipped before stays in the copy; the manifest and records follow.
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) FROM pre.events WHERE sequence <= {before}"
        )),
        before.to_string()
    );
    assert_eq!(pg.sql("SELECT generation FROM pre.compaction"), "1");
    let report = rt
        .block_on(batpak_replicate::verify_postgres(
            &pg.url(),
            "pre",
            &[],
            &[],
        ))
        .unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert!(report.compacted_through.is_some());
}
