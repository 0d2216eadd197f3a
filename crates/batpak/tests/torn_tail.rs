//! A torn tail of the last segment is cut on reopen and reported; a half-written batch
//! disappears whole; nothing before the tear is lost.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fs;
use std::path::{Path, PathBuf};

use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, EventKind, RawPayload, Store, SyncPolicy,
};

fn last_segment(dir: &Path) -> PathBuf {
    let mut files: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

fn seg_len(dir: &Path) -> u64 {
    fs::metadata(last_segment(dir)).unwrap().len()
}

fn append(store: &Store, entity: &str, byte: u8) -> AppendReceipt {
    store
        .append_raw(
            &Coordinate::new(entity, "s").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::opaque(&[byte; 20]),
            AppendOptions::default(),
        )
        .unwrap()
}

/// Builds a store with `prefix` single events, then runs `last` and returns the file
/// range [start, end) its bytes occupy plus the receipts of everything before it.
fn build(dir: &Path, last: impl FnOnce(&Store)) -> (Vec<AppendReceipt>, u64, u64) {
    let store = Store::builder(dir)
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    let kept = vec![
        append(&store, "a", 1),
        append(&store, "b", 2),
        append(&store, "a", 3),
    ];
    store.sync().unwrap();
    let start = seg_len(dir);
    last(&store);
    store.close().unwrap();
    (kept, start, seg_len(dir))
}

fn copy_store(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("segments")).unwrap();
    let seg = last_segment(from);
    fs::copy(&seg, to.join("segments").join(seg.file_name().unwrap())).unwrap();
}

fn check_reopen_after_cut(
    template: &Path,
    cut_at: u64,
    start: u64,
    end: u64,
    kept: &[AppendReceipt],
    frames_dropped: usize,
) {
    let work = tempfile::tempdir().unwrap();
    copy_store(template, work.path());
    let seg = last_segment(work.path());
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut_at)
        .unwrap();

    let store = Store::open(work.path()).unwrap();
    let report = store.open_report().clone();
    let stats = store.stats().unwrap();
    assert_eq!(
        stats.events,
        kept.len() as u64,
        "cut at {cut_at}: only the prefix survives"
    );
    for r in kept {
        assert_eq!(store.get(r.event_id).unwrap().unwrap().receipt(), *r);
    }
    if cut_at == start {
        assert_eq!(
            report.tail_cut, None,
            "a cut on a record boundary leaves nothing to report"
        );
    } else {
        let cut = report
            .tail_cut
            .unwrap_or_else(|| panic!("cut at {cut_at} ({start}..{end}) not reported"));
        assert_eq!(cut.offset, start, "cut at {cut_at}");
        assert_eq!(cut.bytes, cut_at - start, "cut at {cut_at}");
        assert_eq!(
            cut.records, frames_dropped,
            "cut at {cut_at}: {}",
            cut.reason
        );
        assert_eq!(cut.path.file_name(), seg.file_name());
    }
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        start,
        "the tail is gone from disk"
    );
    // The store continues the sequence and the chain exactly where the prefix ended.
    let next = append(&store, "a", 9);
    assert_eq!(next.sequence, kept.len() as u64 + 1);
    assert_eq!(next.version, 2);
    assert_eq!(next.prev_hash, kept[2].event_hash);
    store.close().unwrap();
    let store = Store::open(work.path()).unwrap();
    assert_eq!(store.open_report().tail_cut, None);
    assert_eq!(store.stats().unwrap().events, kept.len() as u64 + 1);
}

#[test]
fn truncation_inside_the_last_record_drops_exactly_that_record() {
    let template = tempfile::tempdir().unwrap();
    let (kept, start, end) = build(template.path(), |s| {
        append(s, "b", 4);
    });
    assert!(end > start);
    for cut_at in start..end {
        check_reopen_after_cut(template.path(), cut_at, start, end, &kept, 0);
    }
}

#[test]
fn truncation_inside_a_batch_drops_the_whole_batch() {
    let template = tempfile::tempdir().unwrap();
    let (kept, start, end) = build(template.path(), |s| {
        let mut batch = Batch::new();
        for (i, entity) in ["a", "c", "b"].iter().enumerate() {
            batch.push_raw(
                &Coordinate::new(*entity, "s").unwrap(),
                EventKind::custom(2, 1),
                RawPayload::opaque(&[i as u8; 30]),
                AppendOptions::default(),
            );
        }
        s.append_batch(&batch).unwrap();
    });
    // All three frames have the same length: entity and payload lengths match.
    let frame = (end - start) / 3;
    assert_eq!((end - start) % 3, 0);
    for cut_at in start..end {
        let complete_frames = ((cut_at - start) / frame) as usize;
        check_reopen_after_cut(template.path(), cut_at, start, end, &kept, complete_frames);
    }
}

#[test]
fn zero_filled_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, _, end) = build(dir.path(), |s| {
        append(s, "c", 5);
    });
    let seg = last_segment(dir.path());
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(end + 4096).unwrap(); // a crash after the size grew but before data landed
    drop(f);
    let store = Store::open(dir.path()).unwrap();
    let cut = store.open_report().tail_cut.clone().unwrap();
    assert_eq!((cut.offset, cut.bytes), (end, 4096));
    assert!(cut.reason.contains("zero"), "{}", cut.reason);
    assert_eq!(store.stats().unwrap().events, kept.len() as u64 + 1);
}

#[test]
fn damaged_final_record_ending_at_end_of_file_is_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, start, end) = build(dir.path(), |s| {
        append(s, "c", 5);
    });
    // The process died before close wrote a checkpoint: nothing says the last record
    // was durable (with a checkpoint it is an error: tests/durable_tail.rs).
    fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes[(end - 3) as usize] ^= 0xFF; // garbage in the payload of the last frame
    fs::write(&seg, &bytes).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cut = store.open_report().tail_cut.clone().unwrap();
    assert_eq!((cut.offset, cut.bytes), (start, end - start));
    assert!(cut.reason.contains("checksum"), "{}", cut.reason);
    assert_eq!(store.stats().unwrap().events, kept.len() as u64);
}

/// The shape a power cut left on ext4 (`scripts/powercut-ext4.sh`): the sector holding
/// the start of the last write never landed (zeros up to its boundary), a later one
/// did. Above the checkpoint's floor that is a torn write, cut and kept; a flipped bit
/// with no such hole is damage.
#[test]
fn a_write_whose_sectors_landed_out_of_order_is_cut_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, start, end) = build(dir.path(), |s| {
        for i in 0..12 {
            append(s, "c", i);
        }
    });
    fs::remove_file(dir.path().join("index.ckpt")).unwrap(); // died before close
    let seg = last_segment(dir.path());
    let original = fs::read(&seg).unwrap();
    assert!(end - start > 1024, "the write spans several sectors");
    let boundary = (start / 512 + 1) * 512;

    let mut bit = original.clone();
    bit[start as usize + 40] ^= 0x10;
    fs::write(&seg, &bit).unwrap();
    match Store::open(dir.path()) {
        Err(batpak::Error::Corrupt { offset, .. }) => assert_eq!(offset, start),
        other => panic!("a flipped bit is damage: {other:?}"),
    }

    let mut torn = original.clone();
    torn[start as usize..boundary as usize].fill(0);
    fs::write(&seg, &torn).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cut = store.open_report().tail_cut.clone().unwrap();
    assert_eq!((cut.offset, cut.bytes), (start, end - start));
    assert!(cut.reason.contains("sector"), "{}", cut.reason);
    let copy = cut.kept.expect("the cut bytes are kept");
    assert!(copy.starts_with(dir.path().join("repairs")));
    assert_eq!(fs::read(copy).unwrap(), &torn[start as usize..]);
    assert_eq!(store.stats().unwrap().events, kept.len() as u64);
}
