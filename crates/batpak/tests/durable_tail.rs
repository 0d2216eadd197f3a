//! A durable record is never a tail. Whatever a checkpoint proved synced (sealed
//! segments, the watermark, segments created after it) that fails a check or is
//! missing is `Error::Corrupt` naming the file, on every open path, and nothing on disk
//! is changed; only bytes that were never durable are cut, and every cut is reported.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

mod support;

use support::{last_segment, segments};

use std::fs;
use std::path::{Path, PathBuf};

use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, Error, EventKind, RawPayload, Store,
};

fn len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn append(store: &Store, entity: &str, byte: u8) -> AppendReceipt {
    store
        .append_raw(
            &Coordinate::new(entity, "s").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::opaque(&[byte; 40]),
            AppendOptions::default(),
        )
        .unwrap()
}

/// A closed store of `n` single events; returns where the last record starts.
fn closed_store(dir: &Path, n: u8) -> u64 {
    let store = Store::open(dir).unwrap();
    for i in 0..n - 1 {
        append(&store, "a", i);
    }
    let start = len(&last_segment(dir));
    append(&store, "a", n);
    store.close().unwrap();
    start
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

/// Both open paths refuse with `Error::Corrupt` naming `path`, and leave every byte of
/// the directory as it was.
fn refused_naming(dir: &Path, path: &Path) -> String {
    let before: Vec<(PathBuf, Vec<u8>)> = segments(dir)
        .into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    let mut details = Vec::new();
    for (what, result) in [
        ("writable", Store::open(dir)),
        ("read-only", Store::open_read_only(dir)),
    ] {
        match result {
            Err(Error::Corrupt {
                path: named,
                detail,
                ..
            }) => {
                assert_eq!(named, path, "{what} open names the file: {detail}");
                details.push(detail);
            }
            Err(other) => panic!("{what} open: expected Corrupt, got {other}"),
            Ok(store) => panic!(
                "{what} open succeeded with {} events, tail cut {:?}",
                store.stats().unwrap().events,
                store.open_report().tail_cut
            ),
        }
    }
    let after: Vec<(PathBuf, Vec<u8>)> = segments(dir)
        .into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    assert!(before == after, "a refused open changed the segments");
    details.swap_remove(0)
}

#[test]
fn the_flipped_last_record_of_a_closed_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path(), 5);
    let seg = last_segment(dir.path());
    let end = len(&seg);
    flip(&seg, end - 3); // in the payload of the last record
    let detail = refused_naming(dir.path(), &seg);
    assert!(detail.contains("durable"), "{detail}");
    assert!(detail.contains("checksum"), "{detail}");
}

#[test]
fn a_final_batch_is_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, "a", 1);
    let mut batch = Batch::new();
    for i in 0..100u8 {
        batch.push_raw(
            &Coordinate::new(format!("b:{i}"), "s").unwrap(),
            EventKind::custom(1, 2),
            RawPayload::opaque(&[i; 16]),
            AppendOptions::default(),
        );
    }
    store.append_batch(&batch).unwrap();
    store.close().unwrap();
    let seg = last_segment(dir.path());
    flip(&seg, len(&seg) - 2);
    refused_naming(dir.path(), &seg);
    // The damage is named; the other 100 events are still on disk for a repair.
    assert!(len(&seg) > 100 * 16);
}

#[test]
fn truncation_on_a_record_boundary_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let last_start = closed_store(dir.path(), 5);
    let seg = last_segment(dir.path());
    cut_to(&seg, last_start);
    let detail = refused_naming(dir.path(), &seg);
    assert!(
        detail.contains(&format!("is {last_start} bytes")),
        "{detail}"
    );
}

#[test]
fn a_segment_cut_back_to_its_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path(), 3);
    let seg = last_segment(dir.path());
    cut_to(&seg, 64);
    refused_naming(dir.path(), &seg);
}

/// A store whose events span several segments, closed.
fn rotated_store(dir: &Path) -> Vec<AppendReceipt> {
    let store = Store::builder(dir).segment_size(4096).open().unwrap();
    let acked: Vec<_> = (0..120).map(|i| append(&store, "r", i)).collect();
    store.close().unwrap();
    assert!(segments(dir).len() >= 3);
    acked
}

#[test]
fn a_deleted_last_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    rotated_store(dir.path());
    let seg = last_segment(dir.path());
    fs::remove_file(&seg).unwrap();
    let detail = refused_naming(dir.path(), &seg);
    assert!(detail.contains("missing"), "{detail}");
}

#[test]
fn a_zeroed_last_segment_is_an_error_even_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    rotated_store(dir.path());
    fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let seg = last_segment(dir.path());
    fs::write(&seg, vec![0u8; len(&seg) as usize]).unwrap();
    let detail = refused_naming(dir.path(), &seg);
    assert!(detail.contains("zeroed"), "{detail}");
}

#[test]
fn a_segment_created_after_the_watermark_is_known_to_exist() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(4096)
        .open()
        .unwrap();
    let mut n = 0u8;
    // Append until a rotation made a second segment; its first event is the last.
    while segments(dir.path()).len() < 2 {
        append(&store, "r", n);
        n += 1;
    }
    store.close().unwrap();
    let seg = last_segment(dir.path());
    fs::remove_file(&seg).unwrap();
    refused_naming(dir.path(), &seg);
}

/// A closed store of 5,000 events (past the size where every close checkpoints),
/// then one more event appended and closed: that close leaves the durable floor, not
/// a new checkpoint. Returns where the last record starts.
fn large_store_with_a_floor(dir: &Path) -> u64 {
    let store = Store::open(dir).unwrap();
    let mut batch = Batch::new();
    for i in 0..5000u32 {
        batch.push_raw(
            &Coordinate::new(format!("e:{}", i % 50), "s").unwrap(),
            EventKind::custom(1, 2),
            RawPayload::opaque(&i.to_le_bytes()),
            AppendOptions::default(),
        );
    }
    store.append_batch(&batch).unwrap();
    store.close().unwrap();
    let checkpoint = fs::read(dir.join("index.ckpt")).unwrap();
    let store = Store::open(dir).unwrap();
    let start = len(&last_segment(dir));
    append(&store, "a", 7);
    store.close().unwrap();
    assert_eq!(
        fs::read(dir.join("index.ckpt")).unwrap(),
        checkpoint,
        "one event more does not rewrite the checkpoint"
    );
    assert!(dir.join("durable.floor").exists());
    start
}

#[test]
fn a_close_without_a_checkpoint_still_proves_its_events_durable() {
    let dir = tempfile::tempdir().unwrap();
    large_store_with_a_floor(dir.path());
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        store.open_report().index,
        batpak::IndexSource::Checkpoint { events: 5000 }
    );
    assert_eq!(store.open_report().scanned_events, 1);
    drop(store);

    let seg = last_segment(dir.path());
    let end = len(&seg);
    flip(&seg, end - 3);
    let detail = refused_naming(dir.path(), &seg);
    assert!(detail.contains("durable"), "{detail}");

    // The floor is what carries the proof: without it the same damage is a tail.
    fs::remove_file(dir.path().join("durable.floor")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cut = store.open_report().tail_cut.as_ref().unwrap();
    assert!(cut.reason.contains("checksum"), "{}", cut.reason);
    assert_eq!(store.stats().unwrap().events, 5000);
}

#[test]
fn the_floor_names_a_segment_cut_back_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let last_start = large_store_with_a_floor(dir.path());
    let seg = last_segment(dir.path());
    cut_to(&seg, last_start);
    let detail = refused_naming(dir.path(), &seg);
    assert!(
        detail.contains(&format!("is {last_start} bytes; the durable floor")),
        "{detail}"
    );
}

#[test]
fn a_floor_of_another_store_or_damaged_proves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    large_store_with_a_floor(dir.path());
    let floor = dir.path().join("durable.floor");
    let seg = last_segment(dir.path());
    flip(&seg, len(&seg) - 3);
    for damage in [8usize, 40] {
        // Byte 8 is in the store id, byte 40 in a length; resealed or not, it is not ours.
        let mut bytes = fs::read(&floor).unwrap();
        let kept = bytes.clone();
        bytes[damage] ^= 0x55;
        fs::write(&floor, &bytes).unwrap();
        let store = Store::open_read_only(dir.path()).unwrap();
        assert!(store.open_report().tail_cut.is_some(), "damage at {damage}");
        drop(store);
        fs::write(&floor, kept).unwrap();
    }
}

#[test]
fn a_close_that_added_nothing_rewrites_nothing() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    large_store_with_a_floor(dir.path());
    let inode = |name: &str| fs::metadata(dir.path().join(name)).unwrap().ino();
    let (checkpoint, floor) = (inode("index.ckpt"), inode("durable.floor"));
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stats().unwrap().events, 5001);
    store.close().unwrap();
    assert_eq!(inode("index.ckpt"), checkpoint, "checkpoint replaced");
    assert_eq!(inode("durable.floor"), floor, "floor replaced");
}

#[test]
fn a_close_checkpoints_once_a_sixteenth_of_the_store_is_new() {
    let dir = tempfile::tempdir().unwrap();
    large_store_with_a_floor(dir.path());
    let store = Store::open(dir.path()).unwrap();
    for i in 0..300u32 {
        append(&store, "b", i as u8);
    }
    store.close().unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        store.open_report().index,
        batpak::IndexSource::Checkpoint { events: 5000 },
        "301 new of 5,301 is under a sixteenth: the floor moves, the checkpoint stays"
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    for i in 0..40u32 {
        append(&store, "b", i as u8);
    }
    store.close().unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        store.open_report().index,
        batpak::IndexSource::Checkpoint { events: 5341 },
        "341 new of 5,341 is a sixteenth"
    );
}

/// Cuts a file back to `len` bytes, as a lost write would leave it.
fn cut_to(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Events the checkpoint file covers (its header's `events` field), 0 when none.
fn checkpointed(dir: &Path) -> u64 {
    fs::read(dir.join("index.ckpt"))
        .ok()
        .and_then(|b| {
            b.get(32..40)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        })
        .unwrap_or(0)
}

#[test]
fn rotation_checkpoints_come_once_a_sixteenth_of_the_store_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(64 * 1024)
        .open()
        .unwrap();
    let c = batpak::Coordinate::new("e", "s").unwrap();
    let mut seen = vec![0u64];
    for round in 0..150u32 {
        let mut batch = batpak::Batch::new();
        for i in 0..200u32 {
            batch.push_raw(
                &c,
                batpak::EventKind::custom(1, 1),
                batpak::RawPayload::opaque(&[(round + i) as u8; 60]),
                batpak::AppendOptions::default(),
            );
        }
        store.append_batch(&batch).unwrap();
        let now = checkpointed(dir.path());
        if now != *seen.last().unwrap() {
            seen.push(now);
        }
    }
    assert!(
        store.stats().unwrap().segments > 50,
        "the store rotated often"
    );
    // Beyond a small store, each rotation checkpoint waits for a sixteenth of the
    // store to be new: their number grows with the log of the store's size, not with
    // its segments.
    for pair in seen.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        if before > 4096 {
            assert!(
                (after - before) * 16 >= after,
                "a rotation checkpoint at {after} events followed one at {before}: {seen:?}"
            );
        }
    }
    eprintln!("checkpoints at {seen:?}");
    assert!(seen.len() < 80, "{} checkpoints: {seen:?}", seen.len());
    drop(store);
}
