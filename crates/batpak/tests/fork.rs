//! Forks: a self-contained store holding the history up to a sequence, sharing
//! sealed segments by hard link, verifying clean, with the source's anchor at that
//! sequence holding on it; neither store's later rewrites reach the other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;

use batpak::proof::AnchorCheck;
use batpak::{AppendOptions, Batch, Coordinate, Error, EventKind, RawPayload, Region, Store};

const KIND: EventKind = EventKind::custom(1, 1);

fn append(store: &Store, i: u32) -> u64 {
    store
        .append_raw(
            &Coordinate::new(format!("e:{}", i % 5), "s").unwrap(),
            KIND,
            RawPayload::opaque(&[i as u8; 100]),
            AppendOptions::default(),
        )
        .unwrap()
        .sequence
}

fn source(dir: &std::path::Path) -> Store {
    Store::builder(dir).segment_size(8 * 1024).open().unwrap()
}

#[test]
fn a_fork_at_each_of_several_sequences_is_that_history_and_verifies_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let store = source(&tmp.path().join("src"));
    let mut anchors = Vec::new();
    for i in 0..400u32 {
        let seq = append(&store, i);
        if [1, 77, 250, 400].contains(&seq) {
            anchors.push((seq, store.anchor().unwrap()));
        }
    }
    for (at, anchor) in &anchors {
        let dest = tmp.path().join(format!("fork-{at}"));
        let fork = store.fork(&dest, *at).unwrap();
        assert_eq!(fork.events, *at);
        if *at >= 250 {
            assert!(fork.linked > 0, "sealed segments are linked: {fork:?}");
        }
        let copy = Store::open(&dest).unwrap();
        assert_eq!(
            copy.open_report().scanned_events,
            0,
            "the fork opens from its checkpoint"
        );
        assert_eq!(copy.frontier().visible, *at);
        assert!(copy.verify().unwrap().body.is_clean());
        assert!(matches!(
            copy.verify_against(anchor).unwrap(),
            AnchorCheck::Holds { .. }
        ));
        let mine = copy.query(&Region::all(), 0, usize::MAX).unwrap();
        let theirs = store.query(&Region::all(), 0, *at as usize).unwrap();
        assert_eq!(mine, theirs, "the same events, byte for byte");
        // The fork goes its own way.
        let next = append(&copy, 9_999);
        assert_eq!(next, at + 1);
        assert!(copy.verify().unwrap().body.is_clean());
    }
    assert!(
        store.verify().unwrap().body.is_clean(),
        "the source is untouched"
    );
    assert_eq!(store.frontier().visible, 400);
}

#[test]
fn a_redaction_in_either_store_does_not_reach_a_segment_the_other_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let store = source(&tmp.path().join("src"));
    for i in 0..200u32 {
        append(&store, i);
    }
    let first = store.get_sequence(1).unwrap().unwrap();
    let first_segment = tmp.path().join("src/segments/0000000000000001.seg");
    let fork_dir = tmp.path().join("fork");
    let fork = store.fork(&fork_dir, 150).unwrap();
    assert!(fork.linked > 0);
    assert_eq!(std::fs::metadata(&first_segment).unwrap().nlink(), 2);
    store.redact(first.id, "erase here only").unwrap();
    assert_eq!(
        std::fs::metadata(&first_segment).unwrap().nlink(),
        1,
        "the source took its own copy before rewriting"
    );
    assert!(store.get(first.id).unwrap().unwrap().is_redacted());
    assert!(store.verify().unwrap().body.is_clean());
    let copy = Store::open(&fork_dir).unwrap();
    let theirs = copy.get(first.id).unwrap().unwrap();
    assert!(!theirs.is_redacted(), "the fork keeps its payload");
    assert_eq!(theirs.payload, first.payload);
    assert!(copy.verify().unwrap().body.is_clean());
    // And the other way: the fork redacts an event of a segment it still shares.
    let second = copy.get_sequence(2).unwrap().unwrap();
    let shared = fork_dir.join("segments/0000000000000001.seg");
    assert_eq!(std::fs::metadata(&shared).unwrap().nlink(), 1);
    let other = store
        .query(&Region::all().sequences(100..=100), 0, 1)
        .unwrap()
        .pop()
        .unwrap();
    copy.redact(other.id, "erase in the fork only").unwrap();
    assert!(!store.get(other.id).unwrap().unwrap().is_redacted());
    assert!(copy.get(other.id).unwrap().unwrap().is_redacted());
    assert!(!copy.get(second.id).unwrap().unwrap().is_redacted());
    assert!(copy.verify().unwrap().body.is_clean());
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn a_fork_inside_a_batch_or_outside_the_history_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = source(&tmp.path().join("src"));
    append(&store, 0);
    let mut batch = Batch::new();
    for i in 0..3 {
        batch.push_raw(
            &Coordinate::new("b", "s").unwrap(),
            KIND,
            RawPayload::opaque(&[i]),
            AppendOptions::default(),
        );
    }
    store.append_batch(&batch).unwrap(); // sequences 2, 3, 4
    let err = store.fork(tmp.path().join("f"), 2).unwrap_err();
    assert!(
        err.to_string().contains("batch that ends at sequence 4"),
        "{err}"
    );
    assert!(!tmp.path().join("f").exists());
    for at in [0, 5] {
        let err = store.fork(tmp.path().join("f"), at).unwrap_err();
        assert!(err.to_string().contains("holds sequences 1 to 4"), "{err}");
    }
    std::fs::create_dir(tmp.path().join("full")).unwrap();
    std::fs::write(tmp.path().join("full/x"), b"x").unwrap();
    assert!(matches!(
        store.fork(tmp.path().join("full"), 4),
        Err(Error::InvalidConfig { .. })
    ));
    store.fork(tmp.path().join("f"), 4).unwrap();
    assert_eq!(
        Store::open(tmp.path().join("f"))
            .unwrap()
            .frontier()
            .visible,
        4
    );
}

#[test]
fn a_repair_cut_in_the_source_leaves_a_segment_the_fork_shares_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = source(&src);
    for i in 0..200u32 {
        append(&store, i);
    }
    let fork_dir = tmp.path().join("fork");
    assert!(store.fork(&fork_dir, 150).unwrap().linked > 0);
    store.close().unwrap();
    let shared = fork_dir.join("segments/0000000000000001.seg");
    let before = std::fs::read(&shared).unwrap();
    let source_seg = src.join("segments/0000000000000001.seg");
    assert_eq!(std::fs::metadata(&source_seg).unwrap().nlink(), 2);
    // The record boundary after event 1: the segment header, then its frame.
    let cut_at = {
        let bytes = std::fs::read(&source_seg).unwrap();
        64 + u64::from(u32::from_le_bytes(bytes[68..72].try_into().unwrap()))
    };
    let report = Store::repair_cut(&src, 1, cut_at, "test cut").unwrap();
    assert!(report.record.records_cut > 0, "{report:?}");
    assert_eq!(std::fs::metadata(&source_seg).unwrap().nlink(), 1);
    assert_ne!(
        std::fs::read(&source_seg).unwrap(),
        before,
        "the source was cut"
    );
    assert_eq!(
        std::fs::read(&shared).unwrap(),
        before,
        "the fork's copy is whole"
    );
    let copy = Store::open(&fork_dir).unwrap();
    assert_eq!(copy.frontier().visible, 150);
    assert!(copy.verify().unwrap().body.is_clean());
}
