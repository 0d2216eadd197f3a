//! `verify()` checks everything the store derives from the records: every index
//! column and posting, the idempotency keys, and redaction state. A checkpoint forged
//! with valid CRCs (they are not a seal) is caught there, and a rebuild repairs it.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

mod support;

use support::last_segment;

use std::fs;
use std::path::Path;

use batpak::report::{Check, VerifyFinding};
use batpak::{AppendOptions, Coordinate, EventId, EventKind, RawPayload, Region, Store};

const A: EventKind = EventKind::custom(1, 1);
const B: EventKind = EventKind::custom(1, 2);

fn append(store: &Store, entity: &str, kind: EventKind, options: AppendOptions) -> EventId {
    store
        .append_raw(
            &Coordinate::new(entity, "s").unwrap(),
            kind,
            RawPayload::opaque(&[7; 24]),
            options,
        )
        .unwrap()
        .event_id
}

/// Five events: kinds A B A B A; event 3 caused by event 1; event 5 keyed.
fn build(dir: &Path) -> Vec<EventId> {
    let store = Store::open(dir).unwrap();
    let e1 = append(&store, "x", A, AppendOptions::default());
    let e2 = append(&store, "y", B, AppendOptions::default());
    let e3 = append(&store, "x", A, AppendOptions::default().caused_by(e1));
    let e4 = append(&store, "y", B, AppendOptions::default());
    let e5 = append(
        &store,
        "x",
        A,
        AppendOptions::default().idempotency_key("k"),
    );
    store.close().unwrap();
    vec![e1, e2, e3, e4, e5]
}

/// Byte offsets of the checkpoint body's sections for `n` events.
struct Layout {
    kinds: usize,
    causation: usize,
}

fn layout(bytes: &[u8], n: usize) -> Layout {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let segments = u32_at(96);
    let kinds = 96 + 4 + segments * 16 + n * (16 + 8 + 4 + 4);
    let mut at = kinds + n * 2;
    for _ in 0..2 {
        let count = u32_at(at);
        at += 4;
        for _ in 0..count {
            at += 2 + u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
        }
    }
    Layout {
        kinds,
        causation: at,
    }
}

/// Rewrites the checkpoint with `edit` applied and both CRCs recomputed.
fn forge(dir: &Path, edit: impl FnOnce(&mut Vec<u8>, Layout)) {
    let path = dir.join("index.ckpt");
    let mut bytes = fs::read(&path).unwrap();
    let l = layout(&bytes, 5);
    edit(&mut bytes, l);
    let body = crc32c(&bytes[96..]);
    bytes[88..92].copy_from_slice(&body.to_le_bytes());
    let header = crc32c(&bytes[..92]);
    bytes[92..96].copy_from_slice(&header.to_le_bytes());
    fs::write(&path, bytes).unwrap();
}

fn findings(store: &Store) -> Vec<VerifyFinding> {
    store.verify().unwrap().body.findings
}

#[test]
fn verify_catches_a_tampered_kind_column_and_causation_posting() {
    let dir = tempfile::tempdir().unwrap();
    let ids = build(dir.path());
    forge(dir.path(), |bytes, l| {
        // Event 2 becomes kind A; event 3's cause becomes event 2.
        bytes[l.kinds + 2..l.kinds + 4].copy_from_slice(&A.bits().to_le_bytes());
        let first_pair = l.causation + 8;
        assert_eq!(
            u64::from_le_bytes(bytes[first_pair..first_pair + 8].try_into().unwrap()),
            3
        );
        bytes[first_pair + 8..first_pair + 24].copy_from_slice(&ids[1].as_u128().to_be_bytes());
    });
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.open_report().index,
        batpak::IndexSource::Checkpoint { .. }
    ));
    // The forged index answers wrongly...
    assert_eq!(store.query(&Region::all().kind(A), 0, 10).unwrap().len(), 4);
    assert_eq!(store.effects(ids[0]).unwrap().len(), 0);
    // ...and verify names each column and posting, by sequence.
    let found = findings(&store);
    let index: Vec<_> = found.iter().filter(|f| f.check == Check::Index).collect();
    assert!(
        index
            .iter()
            .any(|f| f.sequence == Some(2) && f.detail.starts_with("kind:")),
        "{found:#?}"
    );
    assert!(
        index
            .iter()
            .any(|f| f.sequence == Some(3) && f.detail.starts_with("causation postings")),
        "{found:#?}"
    );
    assert!(
        index.iter().any(|f| f.detail.starts_with("kind postings")
            || f.detail.starts_with("causation postings: the index has")),
        "a wrong posting is counted too: {found:#?}"
    );
    drop(store);
    // The remedy: rebuild from the records.
    fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(findings(&store), Vec::new());
    assert_eq!(store.query(&Region::all().kind(A), 0, 10).unwrap().len(), 3);
    assert_eq!(store.effects(ids[0]).unwrap().len(), 1);
}

#[test]
fn verify_catches_a_forged_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    forge(dir.path(), |bytes, _| {
        // The last 8 bytes: the sequence of the one idempotency key (5).
        let at = bytes.len() - 8;
        bytes[at..].copy_from_slice(&4u64.to_le_bytes());
    });
    let store = Store::open(dir.path()).unwrap();
    let found = findings(&store);
    assert!(
        found
            .iter()
            .any(|f| f.check == Check::Index && f.detail.starts_with("idempotency key")),
        "{found:#?}"
    );
}

#[test]
fn a_checkpoint_whose_columns_do_not_import_is_rebuilt_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    forge(dir.path(), |bytes, l| {
        // The first entity_of entry names an entity that has no name.
        let entity_of = l.kinds - 5 * 8;
        bytes[entity_of..entity_of + 4].copy_from_slice(&7u32.to_le_bytes());
    });
    let store = Store::open(dir.path()).unwrap();
    match &store.open_report().index {
        batpak::IndexSource::Rebuilt { reason } => {
            assert!(reason.contains("inconsistent"), "{reason}");
        }
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert_eq!(store.stats().unwrap().events, 5);
    assert_eq!(findings(&store), Vec::new());
}

/// A store before and after redacting its first event: (before, after) directories
/// and the byte range of the redacted record.
fn redacted_pair() -> (tempfile::TempDir, tempfile::TempDir, std::ops::Range<usize>) {
    let before = tempfile::tempdir().unwrap();
    let ids = build(before.path());
    let after = tempfile::tempdir().unwrap();
    fs::create_dir_all(after.path().join("segments")).unwrap();
    let seg = last_segment(before.path());
    let name = seg.file_name().unwrap();
    fs::copy(&seg, after.path().join("segments").join(name)).unwrap();
    let store = Store::open(after.path()).unwrap();
    store.redact(ids[0], "test").unwrap();
    store.close().unwrap();
    let (old, new) = (
        fs::read(&seg).unwrap(),
        fs::read(last_segment(after.path())).unwrap(),
    );
    let first = (0..old.len()).find(|&i| old[i] != new[i]).unwrap();
    let last = (0..old.len()).rev().find(|&i| old[i] != new[i]).unwrap();
    (before, after, first..last + 1)
}

#[test]
fn verify_catches_an_erased_payload_no_redaction_record_names() {
    let (before, after, range) = redacted_pair();
    // The erased frame, put into the history that never redacted anything: every hash
    // and chain link still holds (the digest is what is hashed).
    let erased = fs::read(last_segment(after.path())).unwrap()[range.clone()].to_vec();
    let seg = last_segment(before.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes[range.clone()].copy_from_slice(&erased);
    fs::write(&seg, bytes).unwrap();
    let store = Store::open_read_only(before.path()).unwrap();
    let found = findings(&store);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].check, Check::Redaction);
    assert_eq!(found[0].sequence, Some(1));
    // The finding names the frame's start. The first byte the redaction changed lies
    // in the frame's leading CRC32C, but not always its first byte: one CRC byte in
    // 256 comes out the same (the salt and ids are random), so the difference may
    // begin up to three bytes in.
    let start = range.start as u64;
    assert!(
        found[0].offset <= start && start - found[0].offset < 4,
        "frame at {}, first changed byte at {start}",
        found[0].offset
    );
    assert!(
        found[0].detail.contains("no redaction record"),
        "{found:#?}"
    );
}

#[test]
fn verify_catches_a_redaction_record_whose_target_still_holds_its_payload() {
    let (before, after, range) = redacted_pair();
    let original = fs::read(last_segment(before.path())).unwrap()[range.clone()].to_vec();
    let seg = last_segment(after.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes[range].copy_from_slice(&original);
    fs::write(&seg, bytes).unwrap();
    // Read-only: a read-write open would finish the redaction.
    let store = Store::open_read_only(after.path()).unwrap();
    let found = findings(&store);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].check, Check::Redaction);
    assert_eq!(found[0].sequence, Some(6));
    assert!(found[0].detail.contains("still present"), "{found:#?}");
}

#[test]
fn verify_on_a_read_only_open_reports_an_ignored_tail() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let seg = last_segment(dir.path());
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len + 50)
        .unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    let found = findings(&store);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].check, found[0].offset), (Check::Tail, len));
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(findings(&store), Vec::new(), "a read-write open cut it");
}

/// CRC32C (Castagnoli), bitwise: the checkpoint's checksum, so a test can forge one.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
