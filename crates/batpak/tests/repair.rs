//! The operator's way out: `Store::repair_cut` cuts at a named record boundary,
//! keeps every byte it cuts, and records the repair in the journal;
//! `Store::reindex` rebuilds the index from the records.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

mod support;

use support::segments;

use std::fs;
use std::path::{Path, PathBuf};

use batpak::repair::{Repaired, REPAIR_ENTITY};
use batpak::{AppendOptions, Batch, Coordinate, Error, EventKind, RawPayload, Store};

fn number(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    u64::from_str_radix(name.strip_suffix(".seg").unwrap(), 16).unwrap()
}

fn append(store: &Store, i: u8) {
    store
        .append_raw(
            &Coordinate::new("a", "s").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::opaque(&[i; 40]),
            AppendOptions::default(),
        )
        .unwrap();
}

/// The `Error::Corrupt` an open gives, as (path, offset).
fn refusal(dir: &Path) -> (PathBuf, u64) {
    match Store::open(dir) {
        Err(Error::Corrupt { path, offset, .. }) => (path, offset),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_damaged_last_record_is_cut_where_open_named_it_and_the_cut_is_kept_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        append(&store, i);
    }
    store.close().unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let before = fs::read(&seg).unwrap();
    let mut damaged = before.clone();
    let at = damaged.len() - 3;
    damaged[at] ^= 1;
    fs::write(&seg, &damaged).unwrap();

    let (path, offset) = refusal(dir.path());
    assert_eq!(path, seg);
    let report = Store::repair_cut(dir.path(), number(&path), offset, "bit rot").unwrap();
    let r = &report.record;
    assert_eq!((r.segment, r.offset), (1, offset));
    assert_eq!(r.bytes_cut, damaged.len() as u64 - offset);
    assert_eq!(
        (r.records_cut, r.first_sequence_cut),
        (0, None),
        "it did not decode"
    );
    assert_eq!(r.reason, "bit rot");
    // What was cut is kept byte for byte, with the old checkpoint.
    let kept = report.kept_in.join(format!(
        "{}.from-{offset}",
        seg.file_name().unwrap().to_str().unwrap()
    ));
    assert_eq!(fs::read(kept).unwrap(), &damaged[offset as usize..]);
    assert!(report.kept_in.join("index.ckpt").exists());
    assert!(report.kept_in.starts_with(dir.path().join("repairs")));

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stream("a").unwrap().len(), 4);
    let record = store
        .query(
            &batpak::Region::all()
                .entity(REPAIR_ENTITY)
                .with_store_records(),
            0,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(record.len(), 1);
    let decoded: Repaired = record[0].decode().unwrap();
    assert_eq!(&decoded, r);
    assert_eq!(record[0].receipt(), report.receipt);
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn a_lost_last_segment_is_cut_at_the_end_of_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(4096)
        .open()
        .unwrap();
    for i in 0..100 {
        append(&store, i);
    }
    store.close().unwrap();
    let mut files = segments(dir.path());
    let lost = files.pop().unwrap();
    fs::remove_file(&lost).unwrap();
    assert_eq!(refusal(dir.path()).0, lost);
    let previous = files.pop().unwrap();
    let len = fs::metadata(&previous).unwrap().len();
    let report = Store::repair_cut(dir.path(), number(&previous), len, "disk swap").unwrap();
    assert_eq!(report.record.bytes_cut, 0);
    let store = Store::open(dir.path()).unwrap();
    assert!(store.verify().unwrap().body.is_clean());
    assert_eq!(
        store
            .query(
                &batpak::Region::all()
                    .entity(REPAIR_ENTITY)
                    .with_store_records(),
                0,
                usize::MAX,
            )
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_cut_inside_a_record_or_a_batch_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, 1);
    let seg = segments(dir.path()).pop().unwrap();
    let batch_start = fs::metadata(&seg).unwrap().len();
    let mut batch = Batch::new();
    for i in 0..3u8 {
        batch.push_raw(
            &Coordinate::new("b", "s").unwrap(),
            EventKind::custom(1, 2),
            RawPayload::opaque(&[i; 10]),
            AppendOptions::default(),
        );
    }
    store.append_batch(&batch).unwrap();
    store.close().unwrap();
    let before = fs::read(&seg).unwrap();
    let cases = [
        (batch_start + 1, "inside the record"),
        (
            batch_start + (before.len() as u64 - batch_start) / 3,
            "splits the batch",
        ),
        (10, "between 64"),
        (before.len() as u64 + 1, "between 64"),
    ];
    for (offset, needle) in cases {
        match Store::repair_cut(dir.path(), 1, offset, "x") {
            Err(Error::InvalidConfig { reason }) => {
                assert!(reason.contains(needle), "{offset}: {reason}");
                assert!(reason.contains(&format!("offset {offset}")), "{reason}");
            }
            other => panic!("{offset}: {other:?}"),
        }
        assert_eq!(fs::read(&seg).unwrap(), before);
        assert!(
            !dir.path().join("repairs").exists(),
            "nothing kept for a refusal"
        );
    }
    assert!(matches!(
        Store::repair_cut(dir.path(), 9, 64, "x"),
        Err(Error::InvalidConfig { .. })
    ));
    let open = Store::open(dir.path()).unwrap();
    assert!(matches!(
        Store::repair_cut(dir.path(), 1, batch_start, "x"),
        Err(Error::Locked { .. })
    ));
    drop(open);
}

#[test]
fn reindex_rebuilds_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        append(&store, i);
    }
    store.close().unwrap();
    let report = Store::reindex(dir.path()).unwrap();
    assert!(matches!(report.index, batpak::IndexSource::Rebuilt { .. }));
    assert_eq!(report.events, 5);
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.open_report().index,
        batpak::IndexSource::Checkpoint { events: 5 }
    ));
}

#[test]
fn a_cut_below_the_durable_floor_takes_the_floor_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = Batch::new();
    for i in 0..5000u32 {
        batch.push_raw(
            &Coordinate::new("b", "s").unwrap(),
            EventKind::custom(1, 2),
            RawPayload::opaque(&i.to_le_bytes()),
            AppendOptions::default(),
        );
    }
    store.append_batch(&batch).unwrap();
    store.close().unwrap();
    // One more event: too few for a checkpoint, so the close leaves the durable floor.
    let store = Store::open(dir.path()).unwrap();
    append(&store, 1);
    store.close().unwrap();
    let floor = dir.path().join("durable.floor");
    assert!(floor.exists());
    let seg = segments(dir.path()).pop().unwrap();
    let mut damaged = fs::read(&seg).unwrap();
    let at = damaged.len() - 3;
    damaged[at] ^= 1;
    fs::write(&seg, &damaged).unwrap();

    let (path, offset) = refusal(dir.path());
    let report = Store::repair_cut(dir.path(), number(&path), offset, "bit rot").unwrap();
    assert!(report.kept_in.join("durable.floor").exists());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stream("b").unwrap().len(), 5000);
    assert!(store.stream("a").unwrap().is_empty());
}
