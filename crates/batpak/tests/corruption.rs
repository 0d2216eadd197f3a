//! Damage anywhere but the tail of the last segment is an error that names the file
//! and the offset; nothing is skipped and nothing is rewritten.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fs;
use std::path::{Path, PathBuf};

use batpak::{
    AppendOptions, AppendReceipt, Coordinate, Error, EventId, EventKind, IndexSource, RawPayload,
    Store,
};

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn append(store: &Store, i: u8) -> AppendReceipt {
    store
        .append_raw(
            &Coordinate::new(format!("e:{}", i % 3), "s").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::opaque(&[i; 600]),
            AppendOptions::default(),
        )
        .unwrap()
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

fn expect_corrupt(err: Error, path: &Path, offset: u64) {
    match err {
        Error::Corrupt {
            path: p,
            offset: o,
            detail,
        } => {
            assert_eq!(p, path, "{detail}");
            assert_eq!(o, offset, "{detail}");
        }
        other => panic!(
            "expected Corrupt at {}:{offset}, got {other}",
            path.display()
        ),
    }
}

/// Frame offsets of a single-segment store: the header is 64 bytes, frames follow.
fn frame_offsets(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    let mut at = 64usize;
    let mut out = Vec::new();
    while at < bytes.len() {
        out.push(at as u64);
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += len;
    }
    out
}

/// Damage to a record the checkpoint covers is found when the event is read (open
/// trusts the checkpoint for those bytes); without the checkpoint, open finds it.
/// Either way the error names the file and the record's offset.
fn expect_damage_found(dir: &Path, seg: &Path, offset: u64, damaged: EventId) {
    let store = Store::open_read_only(dir).unwrap();
    assert!(matches!(
        store.open_report().index,
        IndexSource::Checkpoint { .. }
    ));
    expect_corrupt(store.get(damaged).unwrap_err(), seg, offset);
    drop(store);
    let ckpt = dir.join("index.ckpt");
    let saved = fs::read(&ckpt).unwrap();
    fs::remove_file(&ckpt).unwrap();
    expect_corrupt(Store::open(dir).unwrap_err(), seg, offset);
    fs::write(&ckpt, saved).unwrap();
}

#[test]
fn flipped_byte_in_an_earlier_record_is_named_by_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let receipts: Vec<_> = (0..5).map(|i| append(&store, i)).collect();
    store.close().unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let offsets = frame_offsets(&seg);
    let original = fs::read(&seg).unwrap();
    // Every byte of the second record, header and payload alike.
    for at in offsets[1]..offsets[2] {
        fs::write(&seg, &original).unwrap();
        flip(&seg, at);
        expect_damage_found(dir.path(), &seg, offsets[1], receipts[1].event_id);
        assert_eq!(
            fs::read(&seg).unwrap().len(),
            original.len(),
            "nothing was cut"
        );
    }
    fs::write(&seg, &original).unwrap();
    assert_eq!(Store::open(dir.path()).unwrap().stats().unwrap().events, 5);
}

#[test]
fn flipped_byte_in_an_earlier_segment_is_named_by_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(4096)
        .open()
        .unwrap();
    let receipts: Vec<_> = (0..20).map(|i| append(&store, i)).collect();
    store.close().unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "rotation happened: {segs:?}");
    let first = &segs[0];
    let offsets = frame_offsets(first);
    // Damage to the last record of a non-final segment is corruption, not a torn tail.
    let last = *offsets.last().unwrap();
    flip(first, last + 100);
    let damaged = receipts[offsets.len() - 1].event_id;
    expect_damage_found(dir.path(), first, last, damaged);
}

#[test]
fn damaged_segment_header_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(4096)
        .open()
        .unwrap();
    for i in 0..10 {
        append(&store, i);
    }
    store.close().unwrap();
    let segs = segments(dir.path());
    flip(&segs[0], 20); // inside the segment number
    match Store::open(dir.path()).unwrap_err() {
        Error::Corrupt {
            path,
            offset: 0,
            detail,
        } => {
            assert_eq!(path, segs[0]);
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn unknown_format_version_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[8] = 0x63; // format version 99
    fs::write(&seg, &bytes).unwrap();
    match Store::open(dir.path()).unwrap_err() {
        Error::UnsupportedFormat {
            path,
            found,
            supported,
        } => {
            assert_eq!((path, found, supported), (seg, 99, 2));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_stray_file_in_the_segments_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    let stray = dir.path().join("segments").join("notes.txt");
    fs::write(&stray, b"hello").unwrap();
    match Store::open(dir.path()).unwrap_err() {
        Error::Corrupt { path, .. } => assert_eq!(path, stray),
        other => panic!("{other}"),
    }
}

#[test]
fn a_segment_from_another_store_is_rejected() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [a.path(), b.path()] {
        let store = Store::builder(dir).segment_size(4096).open().unwrap();
        for i in 0..10 {
            append(&store, i);
        }
        store.close().unwrap();
    }
    let from_b = segments(b.path())[1].clone();
    let into_a = segments(a.path())[1].clone();
    fs::copy(&from_b, &into_a).unwrap();
    match Store::open(a.path()).unwrap_err() {
        Error::Corrupt { path, detail, .. } => {
            assert_eq!(path, into_a);
            assert!(detail.contains("another store"), "{detail}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn damage_after_open_is_caught_by_the_read_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let receipts: Vec<_> = (0..3).map(|i| append(&store, i)).collect();
    let seg = segments(dir.path()).pop().unwrap();
    let offsets = frame_offsets(&seg);
    flip(&seg, offsets[1] + 200);
    expect_corrupt(
        store.get(receipts[1].event_id).unwrap_err(),
        &seg,
        offsets[1],
    );
    // Other records still read.
    assert!(store.get(receipts[0].event_id).unwrap().is_some());
    assert!(
        store.stream("e:1").is_err(),
        "a stream through the damaged record fails"
    );
}

#[test]
fn damaged_length_of_the_final_record_is_corruption_not_a_tear() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..3 {
        append(&store, i);
    }
    store.close().unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let last = *frame_offsets(&seg).last().unwrap();
    let original = fs::read(&seg).unwrap();
    for bit in [0x01u8, 0x20, 0x80] {
        for byte in 4..8 {
            let mut bytes = original.clone();
            bytes[(last + byte) as usize] ^= bit;
            fs::write(&seg, &bytes).unwrap();
            expect_corrupt(Store::open(dir.path()).unwrap_err(), &seg, last);
        }
    }
}
