//! Compaction: what reads return before and after it (and after a reopen), every
//! kept event byte for byte, receipts and anchors, verification of the kept history,
//! disk usage against a store that only ever held the survivors, and appends going
//! on while it runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use batpak::prelude::*;
use batpak::{
    AppendReceipt, DeleteMode, ExportLine, ManualClock, RetentionRule, RetentionSelector,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 4, type_id = 2, name = "compact.Tick")]
struct Tick {
    n: u64,
    pad: String,
}

const T0: u64 = 1_800_000_000_000_000_000;

fn open(dir: &Path, clock: &ManualClock) -> Store {
    Store::builder(dir)
        .clock(clock.clone())
        .segment_size(64 * 1024)
        .open()
        .unwrap()
}

fn tick(n: u64) -> Tick {
    Tick {
        n,
        pad: "x".repeat(100),
    }
}

fn append(store: &Store, entity: &str, n: u64) -> AppendReceipt {
    store
        .append(&Coordinate::new(entity, "shop").unwrap(), &tick(n))
        .unwrap()
}

/// Every visible event, in order, as export lines (every stored field).
fn visible(store: &Store) -> Vec<String> {
    store
        .events(&Region::all(), 0)
        .map(|e| serde_json::to_string(&ExportLine::from_event(&e.unwrap(), None)).unwrap())
        .collect()
}

#[test]
fn compaction_removes_what_is_hidden_and_keeps_everything_else_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let mut receipts = Vec::new();
    for n in 0..600 {
        receipts.push(append(&store, &format!("order:{}", n % 20), n));
        receipts.push(append(&store, &format!("user:{}", n % 7), n));
    }
    let anchor_before = store.anchor().unwrap();
    store
        .set_retention(
            RetentionSelector::EntityPrefix("order".into()),
            RetentionRule::MaxCount(3),
        )
        .unwrap();
    store.delete_entity("user:3", DeleteMode::Soft).unwrap();
    let before = visible(&store);
    let stats_before = store.stats().unwrap();
    let report = store.compact().unwrap();
    assert_eq!(report.generation, 1);
    assert!(report.events_removed > 500, "{report:?}");
    assert!(report.bytes_after < report.bytes_before / 2, "{report:?}");
    assert_eq!(
        visible(&store),
        before,
        "reads show exactly what they showed"
    );
    let stats = store.stats().unwrap();
    assert!(stats.segment_bytes < stats_before.segment_bytes);
    // Every receipt of a kept event still verifies; removed ones are gone.
    let mut kept = 0;
    for r in &receipts {
        if store.get(r.event_id).unwrap().is_some() {
            kept += 1;
            assert!(store.verify_receipt(r).unwrap().is_valid(), "{r:?}");
        }
    }
    assert_eq!(kept, 20 * 3 + 600 - 86, "user:3 held 86 events");
    // Appends continue each entity's chain.
    let next = append(&store, "order:1", 9999);
    assert_eq!(next.version, 30);
    let again = append(&store, "user:3", 9999);
    assert!(again.version > 0);
    drop(store);
    let store = open(dir.path(), &clock);
    // order:1's new event pushes its oldest kept one out of the last three.
    let after = visible(&store);
    assert_eq!(after.len(), before.len() + 1);
    assert!(store.get(next.event_id).unwrap().is_some());
    assert!(store.get(again.event_id).unwrap().is_some());
    assert!(matches!(
        store.verify_against(&anchor_before).unwrap(),
        batpak::proof::AnchorCheck::Compacted { .. }
    ));
    let report = store.verify().unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
}

fn keep_last(store: &Store, prefix: &str, n: u64) {
    store
        .set_retention(
            RetentionSelector::EntityPrefix(prefix.into()),
            RetentionRule::MaxCount(n),
        )
        .unwrap();
}

fn clean(store: &Store) {
    let report = store.verify().unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
}

#[test]
fn anchors_before_the_compacted_range_say_compacted_and_after_it_hold() {
    use batpak::proof::AnchorCheck;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..300 {
        append(&store, &format!("order:{}", n % 10), n);
    }
    let early = store.anchor().unwrap();
    for n in 300..400 {
        append(&store, &format!("order:{}", n % 10), n);
    }
    keep_last(&store, "order", 2);
    let last_before = store.anchor().unwrap();
    store.compact().unwrap();
    assert_eq!(
        store.verify_against(&early).unwrap(),
        AnchorCheck::Compacted {
            anchored: early.sequence,
            compacted_through: last_before.sequence
        }
    );
    assert!(
        store.verify_against(&last_before).unwrap().holds(),
        "the running hash at the end of the range is recorded"
    );
    append(&store, "order:1", 1000);
    let after = store.anchor().unwrap();
    assert!(store.verify_against(&after).unwrap().holds());
    drop(store);
    let store = open(dir.path(), &clock);
    assert!(store.verify_against(&after).unwrap().holds());
    assert!(store.verify_against(&last_before).unwrap().holds());
    clean(&store);
    // The report says where each kept history starts and what removed the rest.
    let report = store.verify().unwrap();
    let policy = store.retention()[0].set_by.to_string();
    assert_eq!(report.body.horizons.len(), 10);
    for h in &report.body.horizons {
        assert_eq!(h.first_version, 38, "{h:?}");
        assert_eq!(h.removed_by.as_deref(), Some(policy.as_str()));
    }
}

#[test]
fn compacting_again_removes_what_became_hidden_since() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..200 {
        append(&store, &format!("order:{}", n % 4), n);
    }
    keep_last(&store, "order", 10);
    let first = store.compact().unwrap();
    assert_eq!(first.generation, 1);
    for n in 200..400 {
        append(&store, &format!("order:{}", n % 4), n);
    }
    let before = visible(&store);
    let second = store.compact().unwrap();
    assert_eq!(second.generation, 2);
    assert_eq!(second.events_removed, 200, "{second:?}");
    assert_eq!(visible(&store), before);
    clean(&store);
    let nothing = store.compact().unwrap();
    assert_eq!((nothing.generation, nothing.events_removed), (2, 0));
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(visible(&store), before);
    clean(&store);
    assert_eq!(store.stream("order:3").unwrap().len(), 10);
    assert_eq!(store.entity_version("order:3"), Some(99));
}

#[test]
fn deleted_entities_are_removed_whole_and_keep_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..50 {
        append(&store, "gone:soft", n);
        append(&store, "gone:hard", n);
        append(&store, "kept", n);
    }
    store.delete_entity("gone:soft", DeleteMode::Soft).unwrap();
    store.delete_entity("gone:hard", DeleteMode::Hard).unwrap();
    let report = store.compact().unwrap();
    assert_eq!(report.events_removed, 100);
    assert_eq!(store.entity_version("gone:soft"), Some(49));
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.entity_version("gone:soft"), Some(49));
    assert!(store.stream("gone:soft").unwrap().is_empty());
    // A soft-deleted entity continues from its last version, chained to it.
    let next = append(&store, "gone:soft", 50);
    assert_eq!(next.version, 50);
    assert!(matches!(
        store.append(&Coordinate::new("gone:hard", "shop").unwrap(), &tick(0)),
        Err(batpak::Error::EntityDeleted { .. })
    ));
    assert_eq!(store.stream("kept").unwrap().len(), 50);
    clean(&store);
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.stream("gone:soft").unwrap().len(), 1);
    clean(&store);
}

#[test]
fn redacted_payloads_lose_their_bytes_and_keep_their_proof() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let big = Tick {
        n: 0,
        pad: "secret".repeat(1000),
    };
    let target = store
        .append(&Coordinate::new("person:1", "crm").unwrap(), &big)
        .unwrap();
    for n in 0..10 {
        append(&store, "person:1", n);
    }
    store.redact(target.event_id, "erasure request").unwrap();
    let before = store.stats().unwrap().segment_bytes;
    let report = store.compact().unwrap();
    assert_eq!((report.events_removed, report.payloads_dropped), (0, 1));
    assert!(store.stats().unwrap().segment_bytes + 5000 < before);
    let event = store.get(target.event_id).unwrap().unwrap();
    assert!(event.is_redacted());
    assert!(store.verify_receipt(&target).unwrap().is_valid());
    drop(store);
    let store = open(dir.path(), &clock);
    assert!(store.verify_receipt(&target).unwrap().is_valid());
    clean(&store);
}

#[test]
fn a_compacted_store_is_about_as_small_as_one_that_only_held_the_survivors() {
    let clock = ManualClock::new(T0);
    let big = tempfile::tempdir().unwrap();
    let store = open(big.path(), &clock);
    let entities = 1000;
    let mut batch = Batch::new();
    for n in 0..100_000u64 {
        let coordinate = Coordinate::new(format!("user:{}", n % entities), "shop").unwrap();
        batch
            .push(&coordinate, &tick(n), AppendOptions::default())
            .unwrap();
        if batch.len() == 1000 {
            store.append_batch(&batch).unwrap();
            batch = Batch::new();
        }
    }
    keep_last(&store, "user", 10);
    store.compact().unwrap();
    let compacted = store.stats().unwrap().segment_bytes;
    let small = tempfile::tempdir().unwrap();
    let survivors = open(small.path(), &clock);
    let mut batch = Batch::new();
    for n in (100_000 - 10 * entities)..100_000u64 {
        let coordinate = Coordinate::new(format!("user:{}", n % entities), "shop").unwrap();
        batch
            .push(&coordinate, &tick(n), AppendOptions::default())
            .unwrap();
        if batch.len() == 1000 {
            survivors.append_batch(&batch).unwrap();
            batch = Batch::new();
        }
    }
    let only = survivors.stats().unwrap().segment_bytes;
    assert!(
        compacted as f64 <= only as f64 * 1.10,
        "compacted {compacted} bytes, survivors-only {only}"
    );
    clean(&store);
}

#[test]
fn appends_and_reads_go_on_during_a_compaction() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = Arc::new(open(dir.path(), &clock));
    for n in 0..3000 {
        append(&store, &format!("order:{}", n % 30), n);
    }
    keep_last(&store, "order", 5);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut receipts = Vec::new();
            while !stop.load(Ordering::Acquire) || receipts.len() < 200 {
                receipts.push(append(&store, "live", receipts.len() as u64));
            }
            receipts
        })
    };
    let reader = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) {
                // Each read sees a consistent history: five per order entity.
                for e in 0..30 {
                    let events = store.stream(&format!("order:{e}")).unwrap();
                    assert_eq!(events.len(), 5);
                    assert!(events.windows(2).all(|w| w[1].version == w[0].version + 1));
                }
                reads += 1;
            }
            reads
        })
    };
    let report = store.compact().unwrap();
    stop.store(true, Ordering::Release);
    let receipts = writer.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    assert!(report.events_removed > 2500);
    let live = store.stream("live").unwrap();
    assert_eq!(live.len(), receipts.len());
    for (event, receipt) in live.iter().zip(&receipts) {
        assert_eq!(event.id, receipt.event_id);
    }
    clean(&store);
}

#[test]
fn backups_and_forks_of_a_compacted_store_carry_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..300 {
        append(&store, &format!("order:{}", n % 3), n);
    }
    keep_last(&store, "order", 4);
    let report = store.compact().unwrap();
    let tail = append(&store, "order:1", 1000);
    let out = tempfile::tempdir().unwrap();
    store.backup(out.path().join("backup")).unwrap();
    let err = store
        .fork(out.path().join("early"), report.through - 1)
        .unwrap_err();
    assert!(err.to_string().contains("were compacted"), "{err}");
    store.fork(out.path().join("fork"), tail.sequence).unwrap();
    for copy in ["backup", "fork"] {
        let copy = open(&out.path().join(copy), &clock);
        assert_eq!(visible(&copy), visible(&store), "{copy:?}");
        assert!(copy.verify_receipt(&tail).unwrap().is_valid());
        clean(&copy);
    }
}

/// Found by the lifecycle model: an entity compaction emptied has no scope until its
/// next event (a scope policy read past the scope column), and it can still be
/// deleted (the deletion looked for an event to take the scope from).
#[test]
fn an_entity_compaction_emptied_takes_scope_policies_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..3 {
        append(&store, "order:1", n);
    }
    store
        .set_retention(
            RetentionSelector::EntityPrefix("order".into()),
            RetentionRule::BeforeVersion(10),
        )
        .unwrap();
    store.compact().unwrap();
    store
        .set_retention(
            RetentionSelector::Scope("shop".into()),
            RetentionRule::MaxCount(1),
        )
        .unwrap();
    assert!(store.stream("order:1").unwrap().is_empty());
    store.delete_entity("order:1", DeleteMode::Hard).unwrap();
    assert!(matches!(
        store.append(&Coordinate::new("order:1", "shop").unwrap(), &tick(9)),
        Err(batpak::Error::EntityDeleted { .. })
    ));
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.entity_version("order:1"), Some(2));
    clean(&store);
}

#[test]
fn a_reactors_superseded_positions_are_dropped_and_it_resumes_where_it_was() {
    use batpak::reactor::ReactorOptions;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = Arc::new(open(dir.path(), &clock));
    let ticks = || Region::all().kind(Tick::KIND);
    let ignore = |_: &StoredEvent, _: &mut batpak::reactor::Reactions| Ok(());
    let handle = store
        .react("watcher", ticks(), ReactorOptions::default(), ignore)
        .unwrap();
    for n in 0..5000 {
        append(&store, &format!("order:{}", n % 7), n);
    }
    let last = store.frontier().visible;
    assert!(
        handle
            .wait_for(last, std::time::Duration::from_secs(30))
            .position
            >= last
    );
    drop(handle.stop());
    let positions = || {
        store
            .query(
                &Region::all()
                    .with_store_records()
                    .entity("batpak:reactor:watcher"),
                0,
                usize::MAX,
            )
            .unwrap()
    };
    let before = positions();
    assert!(before.len() > 3, "{} position records", before.len());
    let report = store.compact().unwrap();
    assert_eq!(report.events_removed, before.len() as u64 - 1);
    let after = positions();
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].id,
        before.last().unwrap().id,
        "the newest survives"
    );
    clean(&store);
    // It resumes after its position: nothing again, then the new events.
    let handle = store
        .react("watcher", ticks(), ReactorOptions::default(), ignore)
        .unwrap();
    let mut newest = 0;
    for n in 0..10 {
        newest = append(&store, "order:1", n).sequence;
    }
    let status = handle.wait_for(newest, std::time::Duration::from_secs(30));
    assert!(
        status.handled >= 10 && status.handled < 10 + 1024,
        "{status:?}"
    );
    drop(handle.stop());
    clean(&store);
}

#[test]
fn walks_and_region_checks_start_where_the_kept_history_does() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let mut last = None;
    for n in 0..40 {
        last = Some(append(&store, "order:1", n));
        append(&store, "user:1", n);
    }
    keep_last(&store, "order", 5);
    store.compact().unwrap();
    let last = last.unwrap();
    let walk = store.walk_ancestors(last.event_id, 100).unwrap().unwrap();
    assert_eq!(walk.events.len(), 5);
    assert!(walk.broken.is_none(), "{:?}", walk.broken);
    assert!(walk.reached_first, "the kept history starts at version 35");
    assert!(walk.report().body.findings.is_empty());
    let region = store
        .verify_region(&Region::all().entity("order:1"))
        .unwrap();
    assert!(region.body.is_clean(), "{:?}", region.body.findings);
    assert_eq!(region.body.events, 5);
}

#[test]
fn an_anchor_continued_across_a_compacted_range_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for n in 0..10 {
        append(&store, "order:1", n);
    }
    let early = store.anchor().unwrap();
    for n in 0..400 {
        append(&store, &format!("order:{}", n % 20), n);
    }
    store
        .set_retention(
            RetentionSelector::EntityPrefix("order".into()),
            RetentionRule::MaxCount(2),
        )
        .unwrap();
    store.compact().unwrap();
    let visible = store.frontier().visible;
    let continued = store.anchor_from(&early, visible).unwrap();
    let full = store.anchor_upto(visible).unwrap();
    assert_eq!(continued.running_hash, full.running_hash);
    assert!(store.verify_against(&continued).unwrap().holds());
}

#[test]
fn the_compaction_proof_states_what_a_copy_without_the_removed_events_checks() {
    use batpak::proof::{CompactionProof, KeptHash};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    assert!(store.compaction_manifest().is_none());
    for n in 0..300 {
        append(&store, &format!("order:{}", n % 10), n);
    }
    store
        .set_retention(
            RetentionSelector::EntityPrefix("order".into()),
            RetentionRule::MaxCount(4),
        )
        .unwrap();
    let report = store.compact().unwrap();
    let bytes = store.compaction_manifest().unwrap();
    let proof = CompactionProof::from_manifest(&bytes).unwrap();
    assert_eq!((proof.generation, proof.through), (1, report.through));
    // The Compacted record names these bytes.
    let all = Region::all().with_store_records().with_hidden();
    let events = store.query(&all, 0, usize::MAX).unwrap();
    let record: batpak::Compacted = events
        .iter()
        .find(|e| e.coordinate.entity() == "batpak:compaction")
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!((record.generation, record.manifest), (1, proof.digest));
    // The kept events up to `through` give its kept hash and count; the running hash
    // at `through` is the one an anchor taken then had.
    let mut kept = KeptHash::default();
    let mut count = 0;
    for e in events.iter().take_while(|e| e.sequence <= proof.through) {
        kept.push(e.sequence, &e.event_hash());
        count += 1;
    }
    assert_eq!((kept.value(), count), (proof.kept_hash, proof.kept));
    // The running hash at `through` is the store's there: an anchor of it holds.
    let at_through = batpak::proof::Anchor {
        sequence: proof.through,
        running_hash: proof.running_hash,
        unix_ms: 0,
        signature: None,
    };
    assert!(store.verify_against(&at_through).unwrap().holds());
    // Each compacted entity starts at its horizon, linked to its hash.
    let h = proof.horizon("order:3").unwrap();
    let first = events
        .iter()
        .find(|e| e.coordinate.entity() == "order:3")
        .unwrap();
    assert_eq!((first.version, first.prev_hash), (h.first_kept, h.hash));
    assert!(proof.horizon("batpak:compaction").is_none());
    // Gaps inside the range are explained; one after it is not.
    assert!(proof.explains_gap(1, proof.through));
    assert!(!proof.explains_gap(proof.through + 1, proof.through + 3));
    // Bad bytes are named as such.
    let mut damaged = bytes.clone();
    damaged[10] ^= 1;
    assert!(matches!(
        CompactionProof::from_manifest(&damaged),
        Err(batpak::Error::Malformed { .. })
    ));
}
