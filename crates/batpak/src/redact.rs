//! Redaction: erase one event's payload and salt in place, keeping its digest so the
//! chain still verifies; record the redaction as an event; finish interrupted
//! rewrites at open.
//!
//! Order of work, each step durable before the next:
//! 1. append the `Redaction` record (kind 0:3) on the target's coordinate, caused by
//!    the target, and sync;
//! 2. drop the entity's cached projection states and snapshot files;
//! 3. write `redact.pending` (the rewritten frame and where it goes) atomically;
//! 4. write the frame over the original in the segment and fsync the segment;
//! 5. remove `redact.pending`; drop the entity's cached states again (those folded
//!    meanwhile), also when 3 to 5 failed.
//!
//! A crash after 1 is finished by the next read-write open, which erases every target
//! a `Redaction` record names that is not yet erased (dropping its snapshots first);
//! a crash during 4 is finished from the pending file before the segments are
//! scanned, so no torn frame is ever seen mid-file, and that open drops the
//! snapshots of the entity of the event it rewrote.

use serde::{Deserialize, Serialize};

use crate::chain;
use crate::coordinate::{Coordinate, REDACTIONS_ENTITY};
use crate::error::{Error, Result};
use crate::event::Batch;
use crate::event::EventPayload;
use crate::format::record::{self, PayloadField};
use crate::format::redo::PendingRewrite;
use crate::id::EventId;
use crate::kind::EventKind;
use crate::options::AppendOptions;
use crate::query::Region;
use crate::receipt::AppendReceipt;
use crate::segment::{Location, SegmentSet};
use crate::store::Store;

/// The kind of the record a redaction leaves (reserved category 0).
pub(crate) const REDACTION_KIND: EventKind = EventKind::custom(0, 3);

/// The record of a redaction, appended to the redacted event's coordinate and caused
/// by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    /// The event whose payload was erased.
    pub target: EventId,
    /// Why, in the caller's words (who asked is the caller's business).
    pub reason: String,
}

impl EventPayload for Redaction {
    const KIND: EventKind = REDACTION_KIND;
}

impl Store {
    /// Erases the payload and salt of event `id`, keeping its header, coordinate,
    /// links and payload digest, so its hash, its chain and `verify()` still hold.
    /// Records the redaction as a `Redaction` event (kind 0:3) on the same coordinate,
    /// caused by `id`, and returns that record's receipt. On return the erasure is on
    /// stable storage, whatever the sync policy, and cached projection states and
    /// snapshots of the entity are dropped (they may hold the erased data); the next
    /// projection replays and sees the event as redacted.
    ///
    /// A call that failed after recording the redaction (the record is durable, the
    /// payload not yet erased) is finished by the next read-write open, or by calling
    /// `redact` again, which returns the first record's receipt instead of recording
    /// the redaction twice.
    ///
    /// Errors: `NoSuchEvent` for an unknown id; `CannotRedact` for an event already
    /// redacted or a `Redaction` record itself.
    pub fn redact(&self, id: EventId, reason: impl Into<String>) -> Result<AppendReceipt> {
        self.writer()?;
        let _one_at_a_time = self.redaction_turn();
        // Hidden events are still on disk: erasure reaches them too.
        let event = self.get_in_journal(id)?.ok_or(Error::NoSuchEvent { id })?;
        let refuse = |reason: &str| Error::CannotRedact {
            id,
            reason: reason.to_string(),
        };
        if event.kind == REDACTION_KIND {
            return Err(refuse("it is a redaction record"));
        }
        if event.is_redacted() {
            return Err(refuse("it is already redacted"));
        }
        // A redaction recorded before (one that failed before its rewrite, retried)
        // is finished, not recorded twice.
        let recorded = self
            .effects(id)?
            .into_iter()
            .find(|e| e.kind == REDACTION_KIND);
        let receipt = match recorded {
            Some(record) => record.receipt(),
            None => {
                let mut batch = Batch::new();
                batch.push_system(
                    &Coordinate::new(REDACTIONS_ENTITY, event.coordinate.scope())?,
                    &Redaction {
                        target: id,
                        reason: reason.into(),
                    },
                    AppendOptions::default().caused_by(id),
                )?;
                self.append_batch(&batch)?.pop().ok_or(Error::EmptyBatch)?
            }
        };
        self.sync()?;
        let location = self
            .index_entry(event.sequence)
            .map(|(location, _)| location)
            .ok_or(Error::NoSuchEvent { id })?;
        let entity = event.coordinate.entity();
        // Derived copies go (durably) before the payload does: once the rewrite may
        // have begun, a failure or crash (here, or at the next open, which finishes it
        // and whose sweep skips a target already erased) must find no snapshot folded
        // from the payload. Nothing writes snapshots until close, which cannot run
        // meanwhile; the second drop takes states cached from the payload while it was
        // being erased, whether or not the rewrite returned an error.
        self.forget_projections(entity)?;
        let erased = self.erase(location);
        let forgotten = self.forget_projections(entity);
        erased?;
        forgotten?;
        Ok(receipt)
    }

    /// Rewrites the record at `location` without its payload and salt. `false` when
    /// it was already erased.
    fn erase(&self, location: Location) -> Result<bool> {
        match erasing_rewrite(self.segments(), location)? {
            Some(pending) => {
                self.writer()?.rewrite_record(&pending)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Erases the targets the `Redaction` records among `imported` (just imported in
    /// preserve mode) name, where this store holds them with their payload: a copy
    /// erases what its source erased, whenever the record reaches it. Returns how
    /// many it erased.
    pub(crate) fn apply_imported_redactions(&self, imported: &[crate::StoredEvent]) -> Result<u64> {
        let records: Vec<Redaction> = imported
            .iter()
            .filter(|e| e.kind == REDACTION_KIND)
            .filter_map(|e| e.decode::<Redaction>().ok())
            .collect();
        if records.is_empty() {
            return Ok(0);
        }
        let _one_at_a_time = self.redaction_turn();
        // The records are durable before any payload goes, as in `redact`.
        self.sync()?;
        let mut erased = 0;
        for redaction in records {
            let Some(target) = self.get_in_journal(redaction.target)? else {
                continue;
            };
            if target.is_redacted() {
                continue;
            }
            if let Some((location, _)) = self.index_entry(target.sequence) {
                let entity = target.coordinate.entity();
                self.forget_projections(entity)?;
                let done = self.erase(location);
                let forgotten = self.forget_projections(entity);
                erased += u64::from(done?);
                forgotten?;
            }
        }
        Ok(erased)
    }

    /// Erases every target a `Redaction` record names that still holds its payload:
    /// the redactions a crash interrupted between recording and erasing.
    /// Returns how many it erased.
    ///
    /// When the open finished a rewrite from `redact.pending`, that target's snapshots
    /// may have been written before it was erased: they are dropped too.
    pub(crate) fn finish_recorded_redactions(&self) -> Result<u64> {
        let rewritten = self.open_report().rewritten;
        let records = self.query(&Region::all().kind(REDACTION_KIND), 0, usize::MAX)?;
        let mut erased = 0;
        for record in records {
            let Ok(redaction) = record.decode::<Redaction>() else {
                continue;
            };
            let Some(target) = self.get_in_journal(redaction.target)? else {
                continue;
            };
            if target.is_redacted() {
                if rewritten == Some(target.id) {
                    self.forget_projections(target.coordinate.entity())?;
                }
                continue;
            }
            if let Some((location, _)) = self.index_entry(target.sequence) {
                // Snapshots first, as in `redact`: an open that fails after the
                // erasure would otherwise skip them next time.
                self.forget_projections(target.coordinate.entity())?;
                erased += u64::from(self.erase(location)?);
            }
        }
        Ok(erased)
    }
}

/// The rewrite that erases the record at `location` (payload and salt replaced by
/// the payload digest), or `None` when it is already erased.
fn erasing_rewrite(segments: &SegmentSet, location: Location) -> Result<Option<PendingRewrite>> {
    let file = segments.file_at(location)?;
    let frame = crate::segment::reader::read_frame(&file, location.offset())?;
    let corrupt = |detail: String| Error::Corrupt {
        path: segments.path_of(location.segment()),
        offset: location.offset(),
        detail,
    };
    let (view, _) = record::decode(&frame).map_err(|e| corrupt(e.to_string()))?;
    let digest = match view.payload {
        PayloadField::Present { salt, bytes } => chain::payload_digest(salt, bytes),
        PayloadField::Redacted { .. } => return Ok(None),
    };
    let frame = record::redacted_copy(&frame, &digest).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(PendingRewrite {
        segment: location.segment(),
        offset: location.offset(),
        frame,
    }))
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use super::*;
    use crate::coordinate::Coordinate;
    use crate::dir::replace_file;
    use crate::dir::PENDING_FILE;
    use crate::event::RawPayload;
    use crate::segment::segment_path;

    const SECRET: &[u8] = b"a secret that must not survive: 0123456789";

    fn on_disk(dir: &Path, needle: &[u8]) -> bool {
        crate::segment::list(dir)
            .unwrap_or_default()
            .iter()
            .any(|(_, p)| {
                std::fs::read(p)
                    .unwrap_or_default()
                    .windows(needle.len())
                    .any(|w| w == needle)
            })
    }

    /// A store with three events, the middle one secret. Returns its id and location.
    fn setup(dir: &Path) -> (Store, EventId, Location) {
        let store = Store::open(dir).unwrap_or_else(|e| panic!("{e}"));
        let c = Coordinate::new("e", "s").unwrap_or_else(|e| panic!("{e}"));
        let kind = EventKind::custom(1, 1);
        let mut ids = Vec::new();
        for payload in [&b"before"[..], SECRET, b"after"] {
            let r = store
                .append_raw(
                    &c,
                    kind,
                    RawPayload::opaque(payload),
                    AppendOptions::default(),
                )
                .unwrap_or_else(|e| panic!("{e}"));
            ids.push(r);
        }
        let (location, _) = store
            .index_entry(ids[1].sequence)
            .unwrap_or_else(|| panic!("indexed"));
        (store, ids[1].event_id, location)
    }

    /// Step 1 of `redact` alone: the `Redaction` record of `id`, appended.
    fn record_redaction(store: &Store, id: EventId, reason: &str) {
        let coordinate = store.get(id).ok().flatten().map(|e| e.coordinate);
        let mut batch = Batch::new();
        batch
            .push_system(
                &coordinate.unwrap_or_else(|| panic!("target")),
                &Redaction {
                    target: id,
                    reason: reason.into(),
                },
                AppendOptions::default().caused_by(id),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        store.append_batch(&batch).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The rewrite that erases the record at `location`, as `redact` writes it.
    fn redacted_rewrite(store: &Store, location: Location) -> PendingRewrite {
        erasing_rewrite(store.segments(), location)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the record still holds its payload"))
    }

    /// Reopens read-write and checks the redaction of `id` was finished by that open.
    fn check_erased(dir: &Path, id: EventId) {
        let store = Store::open(dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.open_report().redactions_finished, 1);
        assert!(
            !dir.join(PENDING_FILE).exists(),
            "the pending file is removed"
        );
        assert!(!on_disk(dir, SECRET), "the payload is gone");
        let event = store.get(id).unwrap_or_else(|e| panic!("{e}"));
        assert!(event.is_some_and(|e| e.is_redacted()));
        let report = store.verify().unwrap_or_else(|e| panic!("{e}"));
        assert!(report.body.is_clean(), "{:?}", report.body.findings);
    }

    /// A crash halfway through writing the frame over the original: the next open
    /// finishes it from the pending file before scanning.
    #[test]
    fn a_torn_rewrite_is_finished_from_the_pending_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (store, id, location) = setup(dir.path());
        record_redaction(&store, id, "torn");
        let pending = redacted_rewrite(&store, location);
        drop(store);
        replace_file(dir.path(), PENDING_FILE, &pending.encode()).unwrap_or_else(|e| panic!("{e}"));
        // Half of the new frame reached the disk.
        let half = &pending.frame[..pending.frame.len() / 2 + 7];
        let path = segment_path(dir.path(), location.segment());
        let seg = OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        seg.write_all_at(half, location.offset())
            .unwrap_or_else(|e| panic!("{e}"));
        drop(seg);
        // A read-only open refuses, naming the file, and changes nothing.
        match Store::open_read_only(dir.path()) {
            Err(Error::Corrupt { path, detail, .. }) => {
                assert!(path.ends_with(PENDING_FILE) && detail.contains("read-write"));
            }
            other => panic!("{other:?}"),
        }
        check_erased(dir.path(), id);
    }

    /// A crafted pending file whose offset would wrap past `u64::MAX` is refused,
    /// naming the file, and nothing is written.
    #[test]
    fn a_pending_rewrite_whose_offset_wraps_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (store, _, location) = setup(dir.path());
        let mut pending = redacted_rewrite(&store, location);
        drop(store);
        pending.offset = u64::MAX - 3;
        replace_file(dir.path(), PENDING_FILE, &pending.encode()).unwrap_or_else(|e| panic!("{e}"));
        match Store::open(dir.path()) {
            Err(Error::Corrupt { path, detail, .. }) => {
                assert!(path.ends_with(PENDING_FILE), "{path:?}");
                assert!(detail.contains("runs past the end"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(on_disk(dir.path(), SECRET), "nothing was written");
    }

    /// A pending rewrite that does not start a record of its own length (a crafted or
    /// damaged file naming the middle of a frame) is refused and writes nothing.
    #[test]
    fn a_pending_rewrite_off_a_record_boundary_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (store, _, location) = setup(dir.path());
        let mut pending = redacted_rewrite(&store, location);
        drop(store);
        pending.offset += 8;
        replace_file(dir.path(), PENDING_FILE, &pending.encode()).unwrap_or_else(|e| panic!("{e}"));
        match Store::open(dir.path()) {
            Err(Error::Corrupt { path, detail, .. }) => {
                assert!(path.ends_with(PENDING_FILE), "{path:?}");
                assert!(detail.contains("does not start a record"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(on_disk(dir.path(), SECRET), "nothing was written");
    }

    /// A crash after the redaction was recorded but before the rewrite began: the next
    /// read-write open erases the target the record names.
    #[test]
    fn a_recorded_redaction_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (store, id, _) = setup(dir.path());
        record_redaction(&store, id, "interrupted");
        drop(store);
        assert!(on_disk(dir.path(), SECRET));
        check_erased(dir.path(), id);
    }

    /// Writes the frozen format-v1 store under `tests/fixtures/v1/` (see
    /// `tests/v1_fixture.rs`, which reads it). Run once, by hand, when the fixture is
    /// made: `BATPAK_WRITE_V1_FIXTURE=1 cargo test -p batpak --lib write_v1_fixture -- --ignored`.
    /// Never rerun it to make a failing fixture test pass: old stores must keep opening.
    #[test]
    #[ignore = "writes the committed v1 fixture; run by hand only"]
    fn write_v1_fixture() {
        use crate::projection::{Freshness, Projection};
        #[derive(serde::Serialize, serde::Deserialize, crate::EventPayload)]
        #[batpak(category = 1, type_id = 1)]
        struct Deposited {
            account: String,
            cents: u64,
            memo: String,
        }
        #[derive(Clone, Default)]
        struct Total(u64);
        impl Projection for Total {
            const NAME: &'static str = "fixture-total";
            const PERSIST: bool = true;
            const KINDS: &'static [EventKind] = &[Deposited::KIND];
            fn apply(&mut self, event: &crate::EventView<'_>) -> Result<()> {
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
        if std::env::var_os("BATPAK_WRITE_V1_FIXTURE").is_none() {
            return;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("store");
        let key = crate::sign::SigningKey::from_bytes(&[7; 32]);
        let store = Store::builder(&dir)
            .segment_size(4096)
            .signing_key(key.clone())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut receipts = Vec::new();
        // 40 typed deposits over 4 accounts: account:{i % 4}, cents 100 * i + 1.
        for i in 0u64..40 {
            let c = Coordinate::new(format!("account:{}", i % 4), "bank:fixture")
                .unwrap_or_else(|e| panic!("{e}"));
            let mut options = AppendOptions::default();
            if i % 10 == 0 {
                options = options.idempotency_key(format!("deposit-{i}"));
            }
            if i > 0 && i % 7 == 0 {
                options = options.caused_by(receipts[(i - 1) as usize]);
            }
            let r: AppendReceipt = store
                .append_with(
                    &c,
                    &Deposited {
                        account: format!("account:{}", i % 4),
                        cents: 100 * i + 1,
                        memo: "x".repeat((i % 5) as usize * 20),
                    },
                    options,
                )
                .unwrap_or_else(|e| panic!("{e}"));
            receipts.push(r.event_id);
        }
        // A batch of three raw payloads, one per encoding, with correlation and an
        // item cause; the JSON one is schema version 2.
        let audit = Coordinate::new("audit:1", "ops").unwrap_or_else(|e| panic!("{e}"));
        let mut batch = Batch::new();
        let first = batch.push_raw(
            &audit,
            EventKind::custom(2, 5),
            RawPayload {
                bytes: br#"{"note":"json, schema 2"}"#,
                encoding: crate::Encoding::Json,
                schema_version: 2,
            },
            AppendOptions::default().correlation(receipts[0]),
        );
        batch.push_raw(
            &audit,
            EventKind::custom(2, 6),
            RawPayload::opaque(&[0, 1, 2, 254, 255]),
            AppendOptions::default().caused_by_item(first),
        );
        batch.push_raw(
            &audit,
            EventKind::custom(2, 7),
            RawPayload::msgpack(&[0x91, 0x2a]),
            AppendOptions::default().correlation(receipts[0]),
        );
        let batch_receipts = store.append_batch(&batch).unwrap_or_else(|e| panic!("{e}"));
        // A completed redaction of deposit 5.
        store
            .redact(receipts[5], "fixture: erased")
            .unwrap_or_else(|e| panic!("{e}"));
        // A durable cursor that committed through sequence 20.
        {
            let mut cursor = store
                .cursor("fixture-cursor", Region::all())
                .unwrap_or_else(|e| panic!("{e}"));
            let seen = cursor
                .next_batch(20, std::time::Duration::from_secs(1))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(seen.len(), 20);
            cursor.commit(20).unwrap_or_else(|e| panic!("{e}"));
        }
        // A projection snapshot of account:1 (written at close).
        let total = store
            .project::<Total>("account:1", Freshness::Consistent)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("projected"));
        assert!(total.0 > 0);
        let receipt = batch_receipts[1];
        let anchor = store.anchor().unwrap_or_else(|e| panic!("{e}"));
        // An interrupted redaction of deposit 11: recorded, its pending rewrite written,
        // the segment not yet rewritten.
        let target = store
            .get(receipts[11])
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("deposit 11"));
        let mut record = Batch::new();
        record
            .push_system(
                &target.coordinate,
                &Redaction {
                    target: target.id,
                    reason: "fixture: interrupted".into(),
                },
                AppendOptions::default().caused_by(target.id),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .append_batch(&record)
            .unwrap_or_else(|e| panic!("{e}"));
        let (location, _) = store
            .index_entry(target.sequence)
            .unwrap_or_else(|| panic!("indexed"));
        let pending = redacted_rewrite(&store, location);
        assert!(store.stats().unwrap_or_else(|e| panic!("{e}")).segments >= 2);
        store.close().unwrap_or_else(|e| panic!("{e}"));
        replace_file(&dir, PENDING_FILE, &pending.encode()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("receipt.bin"), receipt.to_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("anchor.bin"), anchor.to_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            root.join("verifying-key.hex"),
            crate::hash::hex::encode(&key.verifying_key().to_bytes()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // The lock file is made by every open; the fixture is a store at rest.
        std::fs::remove_file(dir.join("LOCK")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The in-place rewrite goes through the writer and its fault seam: a failed
    /// fsync there poisons the store like a failed append, and the next open finishes
    /// the rewrite from the pending file.
    #[test]
    fn a_failed_fsync_of_the_rewrite_poisons_the_store() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let plan = crate::fault::FaultPlan::install(dir.path());
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let c = Coordinate::new("e", "s").unwrap_or_else(|e| panic!("{e}"));
        let append = |payload: &[u8]| {
            store.append_raw(
                &c,
                EventKind::custom(1, 1),
                RawPayload::opaque(payload),
                AppendOptions::default(),
            )
        };
        let secret = append(SECRET).unwrap_or_else(|e| panic!("{e}"));
        // The redaction record's fsync and the pending file's succeed; the segment's fails.
        plan.fail_after(crate::fault::Op::Sync, 2, crate::fault::Fault::Eio);
        match store.redact(secret.event_id, "erase") {
            Err(Error::Poisoned { source }) => {
                assert!(
                    matches!(
                        &*source,
                        Error::Io {
                            op: "fsync segment",
                            ..
                        }
                    ),
                    "{source}"
                );
            }
            other => panic!("expected the injected fsync failure, got {other:?}"),
        }
        assert!(matches!(append(b"later"), Err(Error::Poisoned { .. })));
        assert!(matches!(store.sync(), Err(Error::Poisoned { .. })));
        assert!(dir.path().join(PENDING_FILE).exists());
        drop(store);
        plan.clear();
        check_erased(dir.path(), secret.event_id);
    }

    #[test]
    fn the_record_kind_is_reserved_and_distinct() {
        assert!(REDACTION_KIND.is_reserved());
        assert_ne!(REDACTION_KIND, crate::gate::DENIAL_KIND);
        assert_ne!(REDACTION_KIND, crate::gate::BYPASS_KIND);
    }
}
