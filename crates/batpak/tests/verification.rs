//! Full verification names every damaged record; anchors catch a rewritten history
//! that verifies on its own.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use batpak::{AppendOptions, Coordinate, EventKind, RawPayload, Region, Store};

use batpak::proof::{Anchor, AnchorCheck, SigningKey};

use batpak::report::Check;

fn append(store: &Store, i: u32, payload: u8) {
    let c = Coordinate::new(format!("e:{}", i % 3), "s").unwrap();
    store
        .append_raw(
            &c,
            EventKind::custom(1, 1),
            RawPayload::opaque(&[payload; 300]),
            AppendOptions::default(),
        )
        .unwrap();
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn frame_offsets(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    let mut at = 64usize;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push(at as u64);
        at += len;
    }
    out
}

/// Changes the last payload byte of the record at `at` and fixes its checksum, as an
/// attacker would: the record still reads, only its hash changes.
fn rewrite_last_payload_byte(seg: &Path, at: usize) {
    let mut bytes = fs::read(seg).unwrap();
    let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    bytes[at + len - 1] ^= 0x01;
    let crc = crc32c::crc32c(&bytes[at + 4..at + len]);
    bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    let f = OpenOptions::new().write(true).open(seg).unwrap();
    f.write_all_at(&bytes[at..at + len], at as u64).unwrap();
}

fn flip(path: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x10;
    f.write_all_at(&b, offset).unwrap();
}

#[test]
fn a_clean_store_verifies_and_progress_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(4096)
        .open()
        .unwrap();
    for i in 0..40 {
        append(&store, i, i as u8);
    }
    let mut calls = Vec::new();
    let report = store
        .verify_with_progress(|done, total| calls.push((done, total)))
        .unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
    assert!(report.verify());
    assert_eq!((report.body.events, report.body.last_sequence), (40, 40));
    assert_eq!(report.body.segments as usize, segments(dir.path()).len());
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    let (done, total) = *calls.last().unwrap();
    assert_eq!(done, total);
    // Deterministic: the same history gives the same body.
    assert_eq!(store.verify().unwrap().body, report.body);
}

#[test]
fn every_damaged_record_is_named_by_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(4096)
        .open()
        .unwrap();
    for i in 0..40 {
        append(&store, i, 7);
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 4);
    // Damage one record in the first and one in the third segment, while open.
    let first = frame_offsets(&segs[0])[2];
    let third = frame_offsets(&segs[2])[1];
    flip(&segs[0], first + 150);
    flip(&segs[2], third + 20);
    let report = store.verify().unwrap();
    let named: Vec<_> = report
        .body
        .findings
        .iter()
        .map(|f| (f.check, f.file.clone(), f.offset))
        .collect();
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        named,
        vec![
            (Check::Record, name(&segs[0]), first),
            (Check::Record, name(&segs[2]), third)
        ]
    );
    assert!(report.body.findings[0].detail.contains("checksum"));
}

#[test]
fn a_rewritten_payload_with_a_fixed_checksum_breaks_the_chain_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..9 {
        append(&store, i, 1);
    }
    let seg = segments(dir.path()).remove(0);
    let offsets = frame_offsets(&seg);
    // Record 3 (entity e:0, its version 1): change a payload byte, recompute its CRC.
    let at = offsets[3] as usize;
    rewrite_last_payload_byte(&seg, at);
    let report = store.verify().unwrap();
    assert_eq!(report.body.findings.len(), 1, "{:?}", report.body.findings);
    let finding = &report.body.findings[0];
    assert_eq!(finding.check, Check::ChainLink);
    assert_eq!(
        finding.sequence,
        Some(7),
        "e:0's next event no longer links"
    );
}

#[test]
fn an_anchor_catches_a_history_rewritten_or_truncated_by_an_attacker() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..20 {
        append(&store, i, 1);
    }
    let anchor = store.anchor().unwrap();
    assert_eq!(anchor.sequence, 20);
    let holds = AnchorCheck::Holds { signed_by: None };
    assert_eq!(store.verify_against(&anchor).unwrap(), holds);
    append(&store, 20, 1);
    assert_eq!(
        store.verify_against(&anchor).unwrap(),
        holds,
        "later events do not matter"
    );
    drop(store);

    // An attacker rewrites history with every hash recomputed: it verifies on its own.
    let forged_dir = tempfile::tempdir().unwrap();
    let forged = Store::open(forged_dir.path()).unwrap();
    for i in 0..20 {
        append(&forged, i, if i == 11 { 2 } else { 1 });
    }
    assert!(forged.verify().unwrap().body.is_clean());
    assert!(matches!(
        forged.verify_against(&anchor).unwrap(),
        AnchorCheck::Rewritten { anchored: 20, .. }
    ));
    // A truncated history fails too.
    let short_dir = tempfile::tempdir().unwrap();
    let short = Store::open(short_dir.path()).unwrap();
    for i in 0..15 {
        append(&short, i, 1);
    }
    assert_eq!(
        short.verify_against(&anchor).unwrap(),
        AnchorCheck::Truncated {
            anchored: 20,
            present: 15
        }
    );
}

#[test]
fn signed_anchors_detect_tampering_and_survive_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let store = Store::builder(dir.path())
        .signing_key(key.clone())
        .open()
        .unwrap();
    for i in 0..10 {
        append(&store, i, 1);
    }
    let anchor = store.anchor().unwrap();
    let signed = anchor.signature.expect("a store with a key signs anchors");
    assert_eq!(signed.key_id, key.key_id());
    let holds = AnchorCheck::Holds {
        signed_by: Some(key.key_id()),
    };
    assert_eq!(store.verify_against(&anchor).unwrap(), holds);
    let wire = anchor.to_bytes();
    assert_eq!(wire.len(), batpak::proof::Anchor::MESSAGE_LEN + 64);
    assert_eq!(Anchor::from_bytes(&wire).unwrap(), anchor);
    // Every byte of the wire form matters: it no longer decodes, or it fails.
    for at in 0..wire.len() {
        let mut bad = wire.clone();
        bad[at] ^= 0x10;
        if let Ok(a) = Anchor::from_bytes(&bad) {
            let check = store.verify_against(&a).unwrap();
            assert!(!check.holds(), "byte {at}: {check:?}");
            let key_id_bytes =
                batpak::proof::Anchor::MESSAGE_LEN - 8..batpak::proof::Anchor::MESSAGE_LEN;
            if !key_id_bytes.contains(&at) {
                assert_eq!(
                    check,
                    AnchorCheck::BadSignature {
                        key_id: key.key_id()
                    },
                    "byte {at}"
                );
            }
        }
    }
    // An attacker's own signature over a changed anchor names a key nobody trusts.
    let attacker = SigningKey::from_bytes(&[10; 32]);
    let mut forged = Anchor {
        sequence: 5,
        ..anchor
    };
    forged.signature = Some(batpak::proof::Signed {
        key_id: attacker.key_id(),
        signature: attacker.sign(&forged.signed_message(Some(attacker.key_id()))),
    });
    assert_eq!(
        store.verify_against(&forged).unwrap(),
        AnchorCheck::UnknownKey {
            key_id: attacker.key_id()
        }
    );
    drop(store);

    // Truncate the log on disk, as an attacker would: drop the last three records.
    // The shorter history verifies on its own, but not against the anchor.
    let seg = segments(dir.path()).pop().unwrap();
    let offsets = frame_offsets(&seg);
    let cut = offsets[offsets.len() - 3];
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    fs::remove_file(dir.path().join("index.ckpt")).ok();
    let store = Store::builder(dir.path()).signing_key(key).open().unwrap();
    assert!(store.verify().unwrap().body.is_clean());
    assert_eq!(
        store.verify_against(&anchor).unwrap(),
        AnchorCheck::Truncated {
            anchored: 10,
            present: 7
        }
    );
    // Re-appending three events to reach the anchored length does not help either.
    for i in 0..3 {
        append(&store, i, 1);
    }
    assert!(matches!(
        store.verify_against(&anchor).unwrap(),
        AnchorCheck::Rewritten { anchored: 10, .. }
    ));
}

#[test]
fn large_segments_are_checked_on_both_cores_with_the_same_findings() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..300 {
        append(&store, i, 3);
    }
    let clean = store.verify().unwrap();
    assert!(clean.body.is_clean());
    assert_eq!(clean.body.events, 300);
    let seg = segments(dir.path()).remove(0);
    let offsets = frame_offsets(&seg);
    flip(&seg, offsets[250] + 100);
    let report = store.verify().unwrap();
    assert_eq!(report.body.findings.len(), 1, "{:?}", report.body.findings);
    assert_eq!(
        (
            report.body.findings[0].check,
            report.body.findings[0].offset
        ),
        (Check::Record, offsets[250])
    );
    assert_eq!(
        report.body.events, 299,
        "the scan resumed after the damaged record: every other one was checked"
    );
    assert!(
        report.body.findings[0]
            .detail
            .contains("the scan resumes there"),
        "{}",
        report.body.findings[0].detail
    );
}

#[test]
fn a_region_verifies_alone_and_links_to_events_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..12 {
        append(&store, i, 1); // e:0 holds sequences 1, 4, 7, 10
    }
    let e0 = store.verify_region(&Region::all().entity("e:0")).unwrap();
    assert!(e0.body.is_clean(), "{:?}", e0.body.findings);
    assert_eq!((e0.body.events, e0.body.last_sequence), (4, 10));
    assert_eq!(e0.body.running_hash, None, "a region has no running hash");
    let range = store
        .verify_region(&Region::all().sequences(5..=9))
        .unwrap();
    assert!(range.body.is_clean());
    assert_eq!(range.body.events, 5);

    // An attacker rewrites e:0's version 1 (sequence 4) and fixes its checksum.
    let seg = segments(dir.path()).remove(0);
    let at = frame_offsets(&seg)[3] as usize;
    rewrite_last_payload_byte(&seg, at);

    // A range holding only the successor still catches it: the predecessor is read
    // from disk and hashed.
    let range = store
        .verify_region(&Region::all().sequences(7..=7))
        .unwrap();
    let findings: Vec<_> = range
        .body
        .findings
        .iter()
        .map(|f| (f.check, f.sequence))
        .collect();
    assert_eq!(findings, vec![(Check::ChainLink, Some(7))]);
    assert!(store
        .verify_region(&Region::all().entity("e:1"))
        .unwrap()
        .body
        .is_clean());

    // A flipped byte is named by file and offset.
    flip(&seg, at as u64 + 20);
    let e0 = store.verify_region(&Region::all().entity("e:0")).unwrap();
    let first = &e0.body.findings[0];
    assert_eq!(
        (first.check, first.offset, first.sequence),
        (Check::Record, at as u64, Some(4))
    );
    assert!(first.detail.contains("checksum"), "{}", first.detail);
}

#[test]
fn verification_counts_redacted_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..6 {
        append(&store, i, 1);
    }
    let target = store.query(&Region::all().entity("e:1"), 0, 1).unwrap()[0].id;
    store.redact(target, "test").unwrap();
    let full = store.verify().unwrap();
    assert!(full.body.is_clean(), "{:?}", full.body.findings);
    assert_eq!((full.body.events, full.body.redacted), (7, 1));
    let e1 = store.verify_region(&Region::all().entity("e:1")).unwrap();
    assert!(e1.body.is_clean());
    // The event, its successor; the redaction record is on the redaction log.
    assert_eq!((e1.body.events, e1.body.redacted), (2, 1));
}

/// Every byte of three records (first, middle, last of a segment), flipped one at a
/// time: each time `verify()` names exactly that record, by file and offset.
#[test]
fn every_byte_of_a_record_is_covered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..9 {
        append(&store, i, 3);
    }
    let seg = segments(dir.path()).remove(0);
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    let offsets = frame_offsets(&seg);
    let file_len = fs::metadata(&seg).unwrap().len();
    for pick in [0, 4, offsets.len() - 1] {
        let start = offsets[pick];
        let end = offsets.get(pick + 1).copied().unwrap_or(file_len);
        for at in start..end {
            flip(&seg, at);
            let report = store.verify().unwrap();
            flip(&seg, at);
            let first = report
                .body
                .findings
                .first()
                .unwrap_or_else(|| panic!("flip at {at} (record {pick}) went unnoticed"));
            assert_eq!(
                (first.file.as_str(), first.offset),
                (name.as_str(), start),
                "flip at {at} (record {pick}): {:?}",
                report.body.findings
            );
        }
    }
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn an_anchor_continued_from_an_earlier_one_equals_a_full_scan_and_holds() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let store = Store::builder(dir.path())
        .signing_key(key.clone())
        .open()
        .unwrap();
    for i in 0..50 {
        append(&store, i, 1);
    }
    let first = store.anchor_upto(20).unwrap();
    assert_eq!(first.sequence, 20);
    assert!(store.verify_against(&first).unwrap().holds());
    // Step by step to the end, each step reading only what came since.
    let mut last = first;
    for upto in [21, 35, 35, 50, 999] {
        let next = store.anchor_from(&last, upto).unwrap();
        let full = store.anchor_upto(upto).unwrap();
        assert_eq!(
            (next.sequence, next.running_hash),
            (full.sequence, full.running_hash),
            "up to {upto}"
        );
        assert!(store.verify_against(&next).unwrap().holds());
        last = next;
    }
    assert_eq!(last.sequence, 50);
    // Only an anchor this store signed can be continued, and not backwards.
    let mut forged = first;
    forged.running_hash = batpak::Hash::ZERO;
    assert!(
        store.anchor_from(&forged, 30).is_err(),
        "its signature no longer holds"
    );
    let mut unsigned = first;
    unsigned.signature = None;
    assert!(store.anchor_from(&unsigned, 30).is_err());
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::builder(other_dir.path())
        .signing_key(SigningKey::from_bytes(&[10; 32]))
        .open()
        .unwrap();
    for i in 0..30 {
        append(&other, i, 1);
    }
    let theirs = other.anchor_upto(10).unwrap();
    assert!(
        store.anchor_from(&theirs, 30).is_err(),
        "another store's key"
    );
    assert!(
        store.anchor_from(&last, 20).is_err(),
        "past the sequence asked for"
    );
    // An unsigned store continues unsigned anchors.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = Store::open(plain_dir.path()).unwrap();
    for i in 0..10 {
        append(&plain, i, 1);
    }
    let a = plain.anchor_upto(4).unwrap();
    let b = plain.anchor_from(&a, 10).unwrap();
    assert_eq!(b.running_hash, plain.anchor().unwrap().running_hash);
    assert!(b.signature.is_none());
}
