//! Open loads the index checkpoint and scans only the tail; a missing, damaged, stale
//! or foreign checkpoint falls back to a rebuild with the reason, and both paths give
//! the same answers.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fs;
use std::path::Path;

use batpak::{
    AppendOptions, Coordinate, EventId, EventKind, IndexSource, RawPayload, Region, Store,
    StoredEvent,
};

const GROUP: u128 = 0x42;

fn append(store: &Store, i: u32, cause: Option<EventId>) -> EventId {
    let c = Coordinate::new(format!("acct:{}", i % 5), format!("t{}", i % 2)).unwrap();
    let mut opts = AppendOptions::default();
    if i.is_multiple_of(4) {
        opts = opts.idempotency_key(format!("key-{i}"));
    }
    if i.is_multiple_of(3) {
        opts = opts.correlation(EventId::from_u128(GROUP));
    }
    if let Some(cause) = cause.filter(|_| i.is_multiple_of(5)) {
        opts = opts.caused_by(cause);
    }
    store
        .append_raw(
            &c,
            EventKind::custom(1 + (i % 3) as u8, 1),
            RawPayload::opaque(&[i as u8; 40]),
            opts,
        )
        .unwrap()
        .event_id
}

fn fill(dir: &Path, range: std::ops::Range<u32>) {
    let store = Store::builder(dir).segment_size(4096).open().unwrap();
    let mut last = store
        .query(&Region::all(), 0, usize::MAX)
        .unwrap()
        .last()
        .map(|e| e.id);
    for i in range {
        last = Some(append(&store, i, last));
    }
    store.close().unwrap();
}

/// Everything the read API answers, for comparing two opens.
fn answers(store: &Store) -> Vec<Vec<StoredEvent>> {
    let all = store.query(&Region::all(), 0, usize::MAX).unwrap();
    let mut out = vec![store.correlated(EventId::from_u128(GROUP)).unwrap()];
    for e in all.iter().step_by(7) {
        out.push(store.effects(e.id).unwrap());
    }
    out.push(all);
    for r in [
        Region::all().entity("acct:3"),
        Region::all().entity_prefix("acct"),
        Region::all().scope("t1").category(2),
        Region::all().kind(EventKind::custom(3, 1)),
    ] {
        out.push(store.query(&r, 0, usize::MAX).unwrap());
    }
    out
}

fn source(dir: &Path) -> IndexSource {
    Store::open_read_only(dir)
        .unwrap()
        .open_report()
        .index
        .clone()
}

fn rebuilt_reason(dir: &Path) -> String {
    match source(dir) {
        IndexSource::Rebuilt { reason } => reason,
        other => panic!("expected a rebuild, got {other:?}"),
    }
}

#[test]
fn clean_reopen_uses_the_checkpoint_and_agrees_with_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 0..200);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.open_report().index,
        IndexSource::Checkpoint { events: 200 }
    );
    assert!(store.open_report().segments > 3);
    let from_checkpoint = answers(&store);
    // Idempotency keys came back from the checkpoint too.
    let stats = store.stats().unwrap();
    append(&store, 8, None);
    assert_eq!(
        store.stats().unwrap().events,
        stats.events,
        "key-8 was a retry"
    );
    drop(store);

    fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        store.open_report().index,
        IndexSource::Rebuilt {
            reason: "no checkpoint".into()
        }
    );
    assert_eq!(answers(&store), from_checkpoint);
}

#[test]
fn a_stale_checkpoint_is_used_and_the_tail_scanned() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 0..100);
    let old = fs::read(dir.path().join("index.ckpt")).unwrap();
    fill(dir.path(), 100..250);
    let expected = answers(&Store::open_read_only(dir.path()).unwrap());
    fs::write(dir.path().join("index.ckpt"), old).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.open_report().index,
        IndexSource::Checkpoint { events: 100 }
    );
    assert_eq!(answers(&store), expected);
    // The writer continues exactly: sequence, chain and idempotency keys of the tail.
    let before = store.stats().unwrap().events;
    append(&store, 248, None); // key-248 was written in the tail
    assert_eq!(store.stats().unwrap().events, before);
    append(&store, 1001, None);
    let last = store.query(&Region::all(), before, 10).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].sequence, 251);
}

#[test]
fn damaged_truncated_and_future_checkpoints_are_rebuilt_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 0..120);
    let ckpt = dir.path().join("index.ckpt");
    let good = fs::read(&ckpt).unwrap();
    let expected = answers(&Store::open_read_only(dir.path()).unwrap());

    let mut flipped = good.clone();
    let at = good.len() / 2;
    flipped[at] ^= 0x04;
    fs::write(&ckpt, &flipped).unwrap();
    assert!(rebuilt_reason(dir.path()).contains("checksum"));
    assert_eq!(
        answers(&Store::open_read_only(dir.path()).unwrap()),
        expected
    );

    fs::write(&ckpt, &good[..good.len() - 7]).unwrap();
    assert!(rebuilt_reason(dir.path()).contains("body"));

    let mut future = good.clone();
    future[8] = 9;
    fs::write(&ckpt, &future).unwrap();
    assert!(rebuilt_reason(dir.path()).contains("version 9"));

    // Segments shorter than the checkpoint says: acknowledged events are gone, and
    // both open paths refuse, naming the segment (see tests/durable_tail.rs).
    fs::write(&ckpt, &good).unwrap();
    let mut segs: Vec<_> = fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 30).unwrap();
    drop(f);
    for result in [Store::open_read_only(dir.path()), Store::open(dir.path())] {
        match result {
            Err(batpak::Error::Corrupt { path, detail, .. }) => {
                assert_eq!(&path, last, "{detail}");
                assert!(detail.contains("durable"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    assert_eq!(
        fs::metadata(last).unwrap().len(),
        len - 30,
        "nothing was cut"
    );
}

#[test]
fn a_checkpoint_of_another_store_is_not_trusted() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    // Identical histories give identical segment lengths; only the store id differs.
    fill(a.path(), 0..60);
    fill(b.path(), 0..60);
    fs::copy(b.path().join("index.ckpt"), a.path().join("index.ckpt")).unwrap();
    let reason = rebuilt_reason(a.path());
    assert!(
        reason.contains("another store") || reason.contains("last event"),
        "{reason}"
    );
    assert_eq!(Store::open(a.path()).unwrap().stats().unwrap().events, 60);
}

mod equivalence {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Open, append this many events, close cleanly (writes a checkpoint).
        Session(u8),
        /// Keep a copy of the current checkpoint to restore later (making it stale).
        Save,
        /// Put the last saved copy back.
        Restore,
        /// Leave this many bytes of a torn write after the last segment's records.
        Tear(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..60).prop_map(Op::Session),
            1 => Just(Op::Save),
            1 => Just(Op::Restore),
            1 => (1u16..300).prop_map(Op::Tear),
        ]
    }

    /// Answers with the checkpoint as it is, and after a full rebuild.
    fn both(dir: &Path) -> (IndexSource, Vec<Vec<StoredEvent>>, Vec<Vec<StoredEvent>>) {
        let store = Store::open_read_only(dir).unwrap();
        let source = store.open_report().index.clone();
        let via = answers(&store);
        drop(store);
        let ckpt = dir.join("index.ckpt");
        let saved = fs::read(&ckpt).ok();
        let _ = fs::remove_file(&ckpt);
        let rebuilt = answers(&Store::open_read_only(dir).unwrap());
        if let Some(bytes) = saved {
            fs::write(&ckpt, bytes).unwrap();
        }
        (source, via, rebuilt)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever history, rotations, stale checkpoints and torn tails: the index
        /// built from the checkpoint and the tail answers exactly as a full rebuild.
        #[test]
        fn checkpoint_plus_tail_equals_rebuild(ops in prop::collection::vec(op(), 1..12)) {
            let dir = tempfile::tempdir().unwrap();
            let mut next = 0u32;
            let mut saved: Option<Vec<u8>> = None;
            for op in ops {
                match op {
                    Op::Session(n) => {
                        fill(dir.path(), next..next + u32::from(n));
                        next += u32::from(n);
                    }
                    Op::Save => saved = fs::read(dir.path().join("index.ckpt")).ok(),
                    Op::Restore => {
                        if let Some(bytes) = &saved {
                            fs::write(dir.path().join("index.ckpt"), bytes).unwrap();
                        }
                    }
                    Op::Tear(k) => {
                        let Ok(entries) = fs::read_dir(dir.path().join("segments")) else { continue };
                        let mut segs: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
                        segs.sort();
                        let last = segs.last().unwrap();
                        // A crash after the size grew but before the data landed:
                        // durable bytes are never torn, only what follows them.
                        let len = fs::metadata(last).unwrap().len();
                        let f = fs::OpenOptions::new().write(true).open(last).unwrap();
                        f.set_len(len + u64::from(k)).unwrap();
                    }
                }
                if dir.path().join("segments").exists() {
                    let (source, via, rebuilt) = both(dir.path());
                    prop_assert_eq!(via, rebuilt, "after {:?} via {:?}", op, source);
                }
            }
        }
    }
}
