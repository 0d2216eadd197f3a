//! Scanning a segment on open: every record in order, batches all-or-nothing, and the
//! tail rules. Recovery never guesses:
//!
//! - In the last segment, above the durable length a checkpoint proved: a frame that
//!   runs past the end of the file, a damaged frame that ends exactly at the end of
//!   the file, a zero-filled remainder, the frames of a batch that never got its final
//!   frame, and a damaged frame with a sector-aligned hole of zeros (a write whose
//!   512-byte sectors landed out of order at a power cut, so later bytes may have
//!   landed after the hole) are a torn tail: cut off and reported, and a writable open
//!   first keeps the cut bytes (unless all zeros) under `repairs/`. Nothing after such
//!   a frame was ever synced: an fdatasync of later bytes would have landed its
//!   sectors too. A frame only counts as torn when its stored length agrees with the
//!   length its fixed header implies (or the header bytes were never written): a
//!   damaged length field must not turn the records after it into a "tail"; a flipped
//!   bit with no hole is damage, not a tear.
//! - None of that applies below the segment's durable length (what a checkpoint
//!   proved synced): there a damaged frame or an unfinished batch is damage to
//!   acknowledged data, an error, however tail-shaped it looks.
//! - Anything else that fails to decode (in any segment) is an error naming the file
//!   and offset; so is an unfinished batch at the end of an earlier segment.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::record::{self, FrameError, RecordView, FLAG_BATCH_CONTINUES};

/// What was cut from the end of the last segment.
///
/// Serde: an object of the fields; `path` as a string (serialising a path that is not
/// UTF-8 is an error).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TailCut {
    /// The segment file.
    pub path: std::path::PathBuf,
    /// Where the cut starts (the new file length).
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes: u64,
    /// Complete records dropped because their batch was unfinished.
    pub records: usize,
    /// Why the bytes could not be kept.
    pub reason: String,
    /// Where a writable open kept a copy of the cut bytes before cutting them (under
    /// `repairs/`); `None` when they were all zeros, or nothing was cut (read-only).
    #[serde(default)]
    pub kept: Option<std::path::PathBuf>,
}

/// The end of the valid data and the tail that follows it, if any.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    pub valid_end: u64,
    pub cut: Option<TailCut>,
}

/// Whether the stored frame length at the start of `rest` can be trusted enough to
/// call what follows a torn write: the fixed header is incomplete (nothing to compare),
/// was never written (zeros), or implies the same length.
fn length_is_credible(rest: &[u8]) -> bool {
    let Some(stored) = record::peek_frame_len(rest) else {
        return true;
    };
    let header = &rest[record::PREFIX_LEN..rest.len().min(record::FIXED_LEN)];
    if header.iter().all(|&b| b == 0) {
        return true;
    }
    record::implied_frame_len(rest).is_none_or(|implied| implied == stored)
}

/// Calls `on_record(view, offset)` for every record of every complete batch in
/// `bytes[start..]`, in order. Nothing before `durable_end` may be cut as a tail.
/// `all_zero_from(offset)` says whether the rest of the file is zeros (the caller
/// reads it without the map, so a huge zero tail costs bounded memory).
pub(crate) fn scan<'a>(
    path: &Path,
    bytes: &'a [u8],
    start: usize,
    is_last: bool,
    durable_end: u64,
    all_zero_from: impl Fn(usize) -> Result<bool>,
    mut on_record: impl FnMut(&RecordView<'a>, u64) -> Result<()>,
) -> Result<ScanOutcome> {
    let corrupt = |offset: usize, detail: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        detail,
    };
    let mut at = start;
    let mut batch: Vec<(RecordView<'a>, u64)> = Vec::new();
    let mut batch_start = start;
    let torn = loop {
        if at == bytes.len() {
            break None;
        }
        match record::decode(&bytes[at..]) {
            Ok((view, len)) => {
                if batch.is_empty() {
                    batch_start = at;
                }
                let continues = view.header.flags & FLAG_BATCH_CONTINUES != 0;
                batch.push((view, at as u64));
                if !continues {
                    for (view, offset) in batch.drain(..) {
                        on_record(&view, offset)?;
                    }
                }
                at += len;
            }
            Err(e) => {
                let rest = &bytes[at..];
                let tail_shaped = match &e {
                    FrameError::Incomplete { .. } => length_is_credible(rest),
                    FrameError::Zero => all_zero_from(at)?,
                    FrameError::Checksum { .. } => {
                        record::peek_frame_len(rest) == Some(rest.len()) && length_is_credible(rest)
                    }
                    FrameError::Malformed(_) => false,
                };
                if is_last && tail_shaped && at as u64 >= durable_end {
                    break Some(e.to_string());
                }
                if is_last && at as u64 >= durable_end {
                    if let Some(hole) = unlanded_sector(bytes, at) {
                        break Some(format!(
                            "{e}; the zeros at {hole} end on a 512-byte sector boundary: a write whose sectors landed out of order, never synced (an fsync of it or of anything after it would have landed them)"
                        ));
                    }
                }
                if is_last && tail_shaped {
                    return Err(corrupt(at, below_floor(&e.to_string(), durable_end)));
                }
                return Err(corrupt(at, e.to_string()));
            }
        }
    };
    let unfinished = !batch.is_empty();
    if unfinished && (batch_start as u64) < durable_end {
        let what = format!("batch of {} records has no final record", batch.len());
        return Err(corrupt(batch_start, below_floor(&what, durable_end)));
    }
    if unfinished && !is_last {
        return Err(corrupt(
            batch_start,
            format!(
                "batch of {} records has no final record before the end of a non-final segment",
                batch.len()
            ),
        ));
    }
    let (valid_end, reason) = match (unfinished, torn) {
        (false, None) => {
            return Ok(ScanOutcome {
                valid_end: at as u64,
                cut: None,
            })
        }
        (true, Some(reason)) => (batch_start, format!("unfinished batch; then {reason}")),
        (true, None) => (batch_start, "batch has no final record".to_string()),
        (false, Some(reason)) => (at, reason),
    };
    Ok(ScanOutcome {
        valid_end: valid_end as u64,
        cut: Some(TailCut {
            path: path.to_path_buf(),
            offset: valid_end as u64,
            bytes: (bytes.len() - valid_end) as u64,
            records: batch.len(),
            reason,
            kept: None,
        }),
    })
}

/// The detail of a tail-shaped failure inside the bytes a checkpoint proved durable.
fn below_floor(what: &str, durable_end: u64) -> String {
    format!(
        "{what}; the index checkpoint recorded {durable_end} durable bytes in this segment, so this is damage to acknowledged data, not a torn write"
    )
}

/// Sector size of the tear model: a device lands a write's sectors independently.
const SECTOR: usize = 512;
/// How far past a damaged frame's start to look for a hole when its length is unknown.
const HOLE_SEARCH: usize = 1 << 20;

/// Where the frame at `at`, which failed to decode, shows a sector that never landed.
/// Sectors land whole or not at all, and segments only grow, so an unlanded sector
/// reads as zeros past the file's old end: either the frame's own start is zero up
/// to the next sector boundary (a frame starts with its checksum and length, never
/// zero), or a later sector the frame reaches is zero in full (as far as the file
/// goes), including the bytes of frames after it that share the sector.
fn unlanded_sector(bytes: &[u8], at: usize) -> Option<usize> {
    let rest = &bytes[at..];
    let span = record::peek_frame_len(rest)
        .filter(|&len| len >= record::PREFIX_LEN && length_is_credible(rest))
        .unwrap_or(HOLE_SEARCH)
        .min(rest.len());
    let end = at + span;
    let first_end = ((at / SECTOR + 1) * SECTOR).min(bytes.len());
    if bytes[at..first_end].iter().all(|&b| b == 0) {
        return Some(at);
    }
    let mut sector = first_end;
    while sector < end {
        let whole = &bytes[sector..(sector + SECTOR).min(bytes.len())];
        if whole.iter().all(|&b| b == 0) {
            return Some(sector);
        }
        sector += SECTOR;
    }
    None
}
