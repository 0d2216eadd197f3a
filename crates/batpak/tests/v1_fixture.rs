//! The frozen format-v1 store in `tests/fixtures/v1/` keeps opening: every later
//! format change must leave this test green. The fixture holds three segments, an
//! index checkpoint, a durable cursor, a projection snapshot, a completed redaction,
//! an interrupted one (its `redact.pending` file still there), and beside the store a
//! signed receipt, a signed anchor and the verifying key. It was written once by
//! `write_v1_fixture` in `src/redact.rs`; never regenerate it to make this test pass.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::path::Path;

use batpak::prelude::*;
use batpak::proof::{AnchorCheck, ReceiptCheck, VerifyingKey};
use batpak::{AppendReceipt, Encoding, IndexSource};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq)]
#[batpak(category = 1, type_id = 1)]
struct Deposited {
    account: String,
    cents: u64,
    memo: String,
}

fn deposit(i: u64) -> Deposited {
    Deposited {
        account: format!("account:{}", i % 4),
        cents: 100 * i + 1,
        memo: "x".repeat((i % 5) as usize * 20),
    }
}

#[derive(Clone, Default, Serialize)]
struct Total(u64);

impl Projection for Total {
    const NAME: &'static str = "fixture-total";
    const PERSIST: bool = true;
    const KINDS: &'static [EventKind] = &[Deposited::KIND];
    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        if !event.is_redacted() {
            self.0 += event.decode::<Deposited>()?.cents;
        }
        Ok(())
    }
    fn to_snapshot(&self) -> Option<Vec<u8>> {
        Some(self.0.to_le_bytes().to_vec())
    }
    fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        Some(Total(u64::from_le_bytes(bytes.try_into().ok()?)))
    }
}

const REDACTED: [u64; 2] = [5, 11];

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn verifying_key() -> VerifyingKey {
    let text = std::fs::read_to_string(fixture().join("verifying-key.hex")).unwrap();
    let bytes: Vec<u8> = (0..text.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).unwrap())
        .collect();
    VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap()
}

/// A writable copy of the fixture store (opening it finishes the interrupted
/// redaction, so the committed files are never opened in place).
fn open_copy(dir: &Path) -> Store {
    copy_dir(&fixture().join("store"), dir);
    Store::builder(dir)
        .trust_key(verifying_key())
        .open()
        .unwrap()
}

#[test]
fn the_v1_store_opens_from_its_checkpoint_and_finishes_the_interrupted_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_copy(dir.path());
    let report = store.open_report();
    assert_eq!(report.index, IndexSource::Checkpoint { events: 45 });
    assert_eq!(report.events, 45);
    assert_eq!(report.segments, 3);
    assert_eq!(report.tail_cut, None);
    assert_eq!(report.redactions_finished, 1);
    assert!(!dir.path().join("redact.pending").exists());
}

#[test]
fn every_v1_event_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_copy(dir.path());
    let events = store
        .query(&Region::all().with_store_records(), 0, usize::MAX)
        .unwrap();
    assert_eq!(events.len(), 45);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.sequence, i as u64 + 1);
    }
    // Sequences 1-40: the typed deposits, two of them redacted.
    let mut versions = [0u64; 4];
    for i in 0..40u64 {
        let event = &events[i as usize];
        assert_eq!(event.coordinate.entity(), format!("account:{}", i % 4));
        assert_eq!(event.coordinate.scope(), "bank:fixture");
        assert_eq!(event.kind, Deposited::KIND);
        assert_eq!(event.version, versions[(i % 4) as usize]);
        versions[(i % 4) as usize] += 1;
        let cause = (i > 0 && i % 7 == 0).then(|| events[i as usize - 1].id);
        assert_eq!(event.causation, cause, "deposit {i}");
        if REDACTED.contains(&i) {
            assert!(event.is_redacted(), "deposit {i} is redacted");
        } else {
            assert_eq!(event.decode::<Deposited>().unwrap(), deposit(i));
        }
    }
    // 41-43: one atomic batch of raw payloads, one per encoding.
    let batch = &events[40..43];
    assert!(batch.iter().all(|e| e.coordinate.entity() == "audit:1"));
    assert_eq!(batch[0].kind, EventKind::custom(2, 5));
    assert_eq!(batch[0].encoding, Encoding::Json);
    assert_eq!(batch[0].schema_version, 2);
    assert_eq!(batch[0].payload, br#"{"note":"json, schema 2"}"#);
    assert_eq!(batch[0].correlation, Some(events[0].id));
    assert_eq!(batch[1].encoding, Encoding::Opaque);
    assert_eq!(batch[1].payload, [0, 1, 2, 254, 255]);
    assert_eq!(batch[1].causation, Some(batch[0].id));
    assert_eq!(batch[2].encoding, Encoding::MessagePack);
    assert_eq!(batch[2].payload, [0x91, 0x2a]);
    // 44-45: the store's redaction records, each caused by its target.
    for (record, target) in events[43..].iter().zip(REDACTED) {
        assert!(record.kind.is_reserved());
        assert_eq!(record.causation, Some(events[target as usize].id));
    }
    // The idempotency keys survived: a retry returns the original receipt.
    let retry = store
        .append_with(
            &Coordinate::new("account:2", "bank:fixture").unwrap(),
            &deposit(10),
            AppendOptions::default().idempotency_key("deposit-10"),
        )
        .unwrap();
    assert_eq!(retry, events[10].receipt());
    // Appends continue the sequence and the chains.
    let next = store
        .append(
            &Coordinate::new("account:0", "bank:fixture").unwrap(),
            &deposit(40),
        )
        .unwrap();
    // The v1 store recorded no kind names: the first typed append after the upgrade
    // records its kind's name (sequence 46), then the event itself.
    assert_eq!((next.sequence, next.version), (47, 10));
    assert_eq!(
        store.kind_name(Deposited::KIND).as_deref(),
        Some("Deposited")
    );
}

#[test]
fn the_v1_receipt_and_anchor_verify_and_the_store_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_copy(dir.path());
    let key = verifying_key();
    let receipt =
        AppendReceipt::from_bytes(&std::fs::read(fixture().join("receipt.bin")).unwrap()).unwrap();
    assert_eq!(receipt.sequence, 42);
    assert!(receipt.signature.is_some(), "the fixture receipt is signed");
    let check = store.verify_receipt(&receipt).unwrap();
    assert_eq!(
        check,
        ReceiptCheck::Signed {
            key_id: key.key_id()
        }
    );
    let anchor =
        batpak::proof::Anchor::from_bytes(&std::fs::read(fixture().join("anchor.bin")).unwrap())
            .unwrap();
    assert_eq!(anchor.sequence, 44);
    assert_eq!(
        store.verify_against(&anchor).unwrap(),
        AnchorCheck::Holds {
            signed_by: Some(key.key_id())
        }
    );
    let report = store.verify().unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
}

#[test]
fn the_v1_cursor_and_projection_snapshot_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_copy(dir.path());
    let cursor = store.cursor("fixture-cursor", Region::all()).unwrap();
    assert_eq!(cursor.committed(), 20);
    drop(cursor);
    let (state, report) = store
        .project_with_report::<Total>("account:1", Freshness::Consistent)
        .unwrap();
    let expected: u64 = (0..40u64)
        .filter(|i| i % 4 == 1 && !REDACTED.contains(i))
        .map(|i| 100 * i + 1)
        .sum();
    assert_eq!(state.map(|t| t.0), Some(expected));
    // The snapshot was taken after the redaction record (sequence 44) joined the entity.
    let snapshot = report.body.snapshot.expect("the v1 snapshot was used");
    assert_eq!(snapshot.sequence, 44);
}

/// A v2 build appends to a v1 store in a new v2 segment: the v1 segments keep their
/// bytes, events with metadata read back, and the store verifies clean and still
/// holds the v1 anchor.
#[test]
fn appending_to_the_v1_store_starts_a_v2_segment_and_leaves_v1_bytes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_copy(dir.path());
    let seg_dir = dir.path().join("segments");
    let before: Vec<(String, Vec<u8>)> = {
        let mut files: Vec<_> = std::fs::read_dir(&seg_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(p).unwrap())
            })
            .collect()
    };
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|(_, b)| b[8..10] == [1, 0]), "v1 headers");
    let account = Coordinate::new("account:1", "bank").unwrap();
    let receipt = store
        .append_with(
            &account,
            &deposit(99),
            AppendOptions::default().meta("user", "ada"),
        )
        .unwrap();
    store.close().unwrap();

    let mut after: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    after.sort();
    assert_eq!(after.len(), 4, "a new segment for the v2 record");
    for (name, bytes) in &before {
        let now = std::fs::read(seg_dir.join(name)).unwrap();
        assert_eq!(&now, bytes, "{name} changed");
    }
    assert_eq!(
        std::fs::read(&after[3]).unwrap()[8..10],
        [2, 0],
        "v2 header"
    );

    let store = Store::builder(dir.path())
        .trust_key(verifying_key())
        .open()
        .unwrap();
    let event = store.get(receipt.event_id).unwrap().unwrap();
    assert_eq!(event.metadata.get("user"), Some("ada"));
    assert_eq!(event.receipt(), receipt);
    let report = store.verify().unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
    let anchor =
        batpak::proof::Anchor::from_bytes(&std::fs::read(fixture().join("anchor.bin")).unwrap())
            .unwrap();
    assert!(store.verify_against(&anchor).unwrap().holds());
}
