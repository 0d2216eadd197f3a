//! Verification past damage: `verify_dir` checks the files of a store that cannot
//! open, and both it and `Store::verify` resume after a damaged record at the next
//! frame whose checksum holds, naming the damaged bytes and counting every byte read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use batpak::proof::verify_dir;
use batpak::report::Check;
use batpak::{AppendOptions, Coordinate, EventKind, RawPayload, Store, SyncPolicy};

/// 300 events over three or more segments, closed cleanly.
fn build(dir: &Path) {
    let store = Store::builder(dir)
        .segment_size(16 * 1024)
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    for i in 0..300u32 {
        store
            .append_raw(
                &Coordinate::new(format!("e:{}", i % 4), "s").unwrap(),
                EventKind::custom(1, 1),
                RawPayload::opaque(&[i as u8; 100]),
                AppendOptions::default(),
            )
            .unwrap();
    }
    store.close().unwrap();
    assert!(support::segments(dir).len() >= 3);
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn total_segment_bytes(dir: &Path) -> u64 {
    support::segments(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn a_clean_store_verifies_the_same_offline() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let offline = verify_dir(dir.path()).unwrap();
    assert!(offline.body.is_clean(), "{:?}", offline.body.findings);
    let online = Store::open_read_only(dir.path()).unwrap().verify().unwrap();
    assert_eq!(offline.body.events, 300);
    assert_eq!(offline.body.running_hash, online.body.running_hash);
    assert_eq!(offline.body.bytes, online.body.bytes);
    assert_eq!(offline.body.bytes, total_segment_bytes(dir.path()));
}

#[test]
fn a_flipped_payload_byte_hides_one_record_from_both_scans() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let second = &support::segments(dir.path())[1];
    flip(second, 2_000);
    // With its checkpoint the store opens (the damage is in a sealed segment), and
    // verify names the record and goes on past it.
    let store = Store::open_read_only(dir.path()).unwrap();
    let online = store.verify().unwrap().body;
    assert_eq!(online.findings.len(), 1, "{:?}", online.findings);
    let finding = &online.findings[0];
    assert_eq!(finding.check, Check::Record);
    assert!(
        finding.detail.contains("the scan resumes there"),
        "{}",
        finding.detail
    );
    assert_eq!(online.events, 299, "every other record was checked");
    assert_eq!(online.bytes, total_segment_bytes(dir.path()));
    drop(store);
    // Without it the open rebuilds, meets the damage and refuses; offline works.
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    assert!(Store::open_read_only(dir.path()).is_err());
    let offline = verify_dir(dir.path()).unwrap().body;
    assert_eq!(offline.findings.len(), 1, "{:?}", offline.findings);
    assert_eq!(offline.findings[0].file, finding.file);
    assert_eq!(offline.findings[0].offset, finding.offset);
    assert!(offline.findings[0].offset <= 2_000);
    assert_eq!(offline.events, 299);
}

#[test]
fn a_torn_middle_and_a_missing_segment_are_each_named_and_the_rest_checked() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let files = support::segments(dir.path());
    // Zero 1,000 bytes in the middle of the first segment.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[3_000..4_000].fill(0);
    std::fs::write(&files[0], bytes).unwrap();
    // Lose the second segment whole.
    std::fs::remove_file(&files[1]).unwrap();
    let report = verify_dir(dir.path()).unwrap().body;
    let checks: Vec<(Check, String)> = report
        .findings
        .iter()
        .map(|f| (f.check, f.file.clone()))
        .collect();
    assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
    assert_eq!(checks[0].1, files[0].file_name().unwrap().to_string_lossy());
    assert!(report.findings[0].detail.contains("cannot be read"));
    assert!(
        report.findings[1].detail.contains("missing"),
        "{:?}",
        report.findings[1]
    );
    // Everything in the third segment on was still checked.
    let third_on: u64 = files[2..]
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(report.bytes > third_on);
    assert!(report.events > 0 && report.events < 300);
    // A flipped header byte is named too, and the records after it still count.
    let before = report.events;
    flip(&files[2], 1);
    let report = verify_dir(dir.path()).unwrap().body;
    assert!(report
        .findings
        .iter()
        .any(|f| f.offset == 0 && f.detail.contains("header")));
    assert_eq!(report.events, before);
    // The library's error for an unopenable store names the file and offset.
    let err = Store::open_read_only(dir.path()).unwrap_err().to_string();
    assert!(err.contains(".seg") || err.contains("segment"), "{err}");
}
