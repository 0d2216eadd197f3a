//! The operator's way out of a store that refuses to open because acknowledged data
//! is damaged or missing (a durable record is never cut silently; see `open.rs`).
//!
//! [`Store::repair_cut`] cuts the history at a record boundary that the operator names
//! (usually the offset an `Error::Corrupt` gave). Nothing is thrown away: the bytes
//! cut from the segment, every later segment and the index checkpoint are moved into
//! `repairs/<unix ms>/` under the store directory first, made durable, and only then
//! is the segment truncated. The store is then opened, and the repair is recorded in
//! the journal as a [`Repaired`] record (kind 0:6, entity `batpak:repair`), so every
//! later reader and verifier sees that history was cut, where and why.
//! [`Store::reindex`] drops the index checkpoint so the next open rebuilds the index
//! from the records (the remedy for `index` findings of `verify()`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coordinate::Coordinate;
use crate::dir::{new_repair_dir, sync_dir, DirLock, CHECKPOINT_FILE, FLOOR_FILE, SEGMENTS_DIR};
use crate::error::{io_err, Error, Result};
use crate::event::{Batch, EventPayload};
use crate::format::record::{self, FLAG_BATCH_CONTINUES};
use crate::format::segment::HEADER_LEN;
use crate::kind::EventKind;
use crate::open::OpenReport;
use crate::options::AppendOptions;
use crate::receipt::AppendReceipt;
use crate::store::Store;

pub(crate) const REPAIR_KIND: EventKind = EventKind::custom(0, 6);
/// The entity every repair record is appended to.
pub const REPAIR_ENTITY: &str = "batpak:repair";
const REPAIR_SCOPE: &str = "batpak:repairs";
/// The directory under the store that keeps what repairs cut.
pub const REPAIRS_DIR: &str = crate::dir::REPAIRS_DIR;

/// The journal's record of a repair that cut history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repaired {
    /// The segment cut.
    pub segment: u64,
    /// Where it was cut (its new length).
    pub offset: u64,
    /// Bytes moved out of the segment (from `offset` to its end).
    pub bytes_cut: u64,
    /// Later segments moved out whole.
    pub segments_removed: Vec<u64>,
    /// Complete records in what was cut (the frames that still decode).
    pub records_cut: u64,
    /// The first sequence among them, when one decodes.
    pub first_sequence_cut: Option<u64>,
    /// Where the cut bytes were kept, relative to the store directory.
    pub kept_in: String,
    /// Why, in the operator's words.
    pub reason: String,
}

impl EventPayload for Repaired {
    const KIND: EventKind = REPAIR_KIND;
}

/// What [`Store::repair_cut`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The record appended to the journal.
    pub record: Repaired,
    /// Its receipt.
    pub receipt: AppendReceipt,
    /// The directory holding what was cut.
    pub kept_in: PathBuf,
}

impl Store {
    /// Cuts the store in `dir` at `offset` of segment `segment`, which must be a
    /// record boundary not inside a batch, with every record before it intact.
    /// Moves what is cut (the rest of that segment, every later segment, the index
    /// checkpoint) into `repairs/<unix ms>/`, truncates, opens the store (which must
    /// then open cleanly), and appends a [`Repaired`] record. The store must not be
    /// open anywhere else (`Error::Locked`). Refusals name the segment and offset and
    /// change nothing.
    pub fn repair_cut(
        dir: impl AsRef<Path>,
        segment: u64,
        offset: u64,
        reason: &str,
    ) -> Result<RepairReport> {
        let dir = dir.as_ref();
        let (mut record, kept_in) = {
            let _lock = DirLock::acquire(dir, false)?;
            cut(dir, segment, offset, reason)?
        };
        let store = Store::open(dir)?;
        record.kept_in = kept_in
            .strip_prefix(dir)
            .unwrap_or(&kept_in)
            .display()
            .to_string();
        let mut batch = Batch::new();
        batch.push_system(
            &Coordinate::new(REPAIR_ENTITY, REPAIR_SCOPE)?,
            &record,
            AppendOptions::default(),
        )?;
        let receipt = store.append_batch(&batch)?.pop().ok_or(Error::EmptyBatch)?;
        store.close()?;
        Ok(RepairReport {
            record,
            receipt,
            kept_in,
        })
    }

    /// Removes the index checkpoint of the store in `dir` (kept in `repairs/`), then
    /// opens and closes the store, so the index is rebuilt from the records and a new
    /// checkpoint written. The open's report says what the rebuild found.
    pub fn reindex(dir: impl AsRef<Path>) -> Result<OpenReport> {
        let dir = dir.as_ref();
        {
            let _lock = DirLock::acquire(dir, false)?;
            let checkpoint = dir.join(CHECKPOINT_FILE);
            if checkpoint.exists() {
                let keep = new_repair_dir(dir)?;
                move_durably(&checkpoint, &keep.join(CHECKPOINT_FILE), dir)?;
            }
        }
        let store = Store::open(dir)?;
        let report = store.open_report().clone();
        store.close()?;
        Ok(report)
    }
}

/// Checks the cut, keeps what it drops, and makes it; returns the record to append
/// (without `kept_in`) and the directory holding what was cut.
fn cut(dir: &Path, segment: u64, offset: u64, reason: &str) -> Result<(Repaired, PathBuf)> {
    let files = crate::segment::list(dir)?;
    let (_, path) =
        files
            .iter()
            .find(|(n, _)| *n == segment)
            .ok_or_else(|| Error::InvalidConfig {
                reason: format!("cannot cut segment {segment}: the store has no such segment"),
            })?;
    let bytes = crate::dir::fs::read(path).map_err(io_err("read segment", path))?;
    let refuse = |detail: String| Error::InvalidConfig {
        reason: format!("cannot cut {} at offset {offset}: {detail}", path.display()),
    };
    check_boundary(&bytes, offset).map_err(refuse)?;
    let at = offset as usize;
    let (records_cut, first_sequence_cut) = complete_records(&bytes[at..]);
    let later: Vec<&(u64, PathBuf)> = files.iter().filter(|(n, _)| *n > segment).collect();
    let keep = new_repair_dir(dir)?;

    // Keep first, durably; only then change the store.
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    crate::dir::write_durably(&keep.join(format!("{name}.from-{offset}")), &bytes[at..])?;
    for (_, later_path) in &later {
        let to = keep.join(later_path.file_name().unwrap_or_default());
        move_durably(later_path, &to, &dir.join(SEGMENTS_DIR))?;
    }
    // Both record lengths the cut takes back: left in place they would call it loss.
    for name in [CHECKPOINT_FILE, FLOOR_FILE] {
        let evidence = dir.join(name);
        if evidence.exists() {
            move_durably(&evidence, &keep.join(name), dir)?;
        }
    }
    // A fork may share the segment: the cut is this store's alone.
    crate::dir::unshare(dir, path)?;
    let seg = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("open segment", path))?;
    seg.set_len(offset)
        .map_err(io_err("truncate segment", path))?;
    seg.sync_all().map_err(io_err("fsync segment", path))?;
    let record = Repaired {
        segment,
        offset,
        bytes_cut: (bytes.len() - at) as u64,
        segments_removed: later.iter().map(|(n, _)| *n).collect(),
        records_cut,
        first_sequence_cut,
        kept_in: String::new(),
        reason: reason.to_string(),
    };
    Ok((record, keep))
}

/// `offset` must be the start of a record (or the end of the records) of a segment
/// whose records before it all decode, and must not fall inside a batch.
fn check_boundary(bytes: &[u8], offset: u64) -> std::result::Result<(), String> {
    let header = HEADER_LEN as u64;
    if offset < header || offset > bytes.len() as u64 {
        return Err(format!(
            "the segment's records lie between {header} and {}",
            bytes.len()
        ));
    }
    let mut batch_start = None;
    for frame in record::frames(bytes, HEADER_LEN) {
        let (at, len, view) = match frame {
            _ if frame_offset(&frame) >= offset => break,
            record::Frame::Record { offset, len, view } => (offset, len, view),
            record::Frame::Damaged { offset, end, error } => {
                return Err(format!(
                    "the record at {offset}, before the cut, is damaged ({error}; nothing reads until offset {end}); cut at {offset}"
                ))
            }
        };
        if (at + len) as u64 > offset {
            return Err(format!(
                "it is inside the record at {at}..{}; cut at {at} or {}",
                at + len,
                at + len
            ));
        }
        let continues = view.header.flags & FLAG_BATCH_CONTINUES != 0;
        batch_start = match (continues, batch_start) {
            (true, None) => Some(at),
            (true, kept) => kept,
            (false, _) => None,
        };
    }
    match batch_start {
        Some(start) => Err(format!(
            "it splits the batch that starts at {start}; cut at {start}"
        )),
        None => Ok(()),
    }
}

fn frame_offset(frame: &record::Frame<'_>) -> u64 {
    match frame {
        record::Frame::Record { offset, .. } | record::Frame::Damaged { offset, .. } => {
            *offset as u64
        }
    }
}

/// How many frames at the start of `bytes` decode, and the first one's sequence.
fn complete_records(bytes: &[u8]) -> (u64, Option<u64>) {
    let mut count = 0;
    let mut first = None;
    for frame in record::frames(bytes, 0) {
        let record::Frame::Record { view, .. } = frame else {
            break;
        };
        first.get_or_insert(view.header.sequence);
        count += 1;
    }
    (count, first)
}

/// Renames `from` to `to` and syncs both directories.
fn move_durably(from: &Path, to: &Path, from_dir: &Path) -> Result<()> {
    crate::dir::fs::rename(from, to).map_err(io_err("rename", from))?;
    sync_dir(to.parent().unwrap_or(to))?;
    sync_dir(from_dir)
}
