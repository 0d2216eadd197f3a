//! The index checkpoint's policy: what a checkpoint proves durable, when one is
//! trusted at open, and how the writer's copy of the index becomes a file. The byte
//! layout is `format::checkpoint`.
//!
//! A checkpoint is only written for events that are visible and durable, so a
//! decodable checkpoint of this store is evidence of durability: every segment it
//! records held at least the recorded number of bytes on stable storage (sealed
//! segments whole, the watermark segment up to the watermark, later segments their
//! header). Open checks that floor first: a recorded segment that is missing or
//! shorter is acknowledged data gone, an error, never a rebuild ([`durable_floor`]).
//!
//! A close writes the whole checkpoint only when it pays ([`pays`]); otherwise it
//! writes the same evidence alone, the durable-floor file (`format::floor`), so a
//! close after a handful of appends to a large store costs two small fsyncs, not a
//! rewrite of the index, and a flipped bit in the last record it made durable is still
//! an error rather than a tail to cut. Open takes the larger length per segment of the
//! two.
//!
//! Above the floor, a checkpoint is trusted only when it agrees with the segment
//! files without scanning them (same store, sealed segments at their recorded length,
//! the last covered record where it says) and its columns import; otherwise open
//! rebuilds from the records and says why, still holding the scan to the floor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dir::{replace_file, CHECKPOINT_FILE, FLOOR_FILE};
use crate::error::{Error, Result};
use crate::format::checkpoint::Checkpoint;
use crate::format::floor::FloorFile;
use crate::format::record;
use crate::format::segment::{SegmentHeader, HEADER_LEN};
use crate::segment::io::SegmentFile;
use crate::segment::{Location, SegmentSet};

/// The bytes of each segment known to be on stable storage: segment number to length.
pub(crate) type Floor = BTreeMap<u64, u64>;

/// Reads and decodes the checkpoint; the error is the reason there is none to use.
pub(crate) fn read(dir: &Path) -> std::result::Result<Checkpoint, String> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match crate::dir::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("no checkpoint".into()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Checkpoint::decode(&bytes).map_err(|e| format!("checkpoint unusable: {e}"))
}

/// The store id in the header of the first segment whose header reads.
pub(crate) fn segments_store_id(files: &[(u64, PathBuf)]) -> Option<[u8; 16]> {
    files.iter().find_map(|(_, path)| {
        let mut header = [0u8; HEADER_LEN];
        std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
            .ok()?;
        SegmentHeader::decode(&header).ok().map(|h| h.store_id)
    })
}

/// What the directory proves durable, checked against the files: the segment lengths
/// of the checkpoint `c` (when it decodes) and of the durable-floor file (when there
/// is one that decodes), the larger of the two per segment. Every segment either
/// records must be present and at least as long as recorded, or acknowledged data is
/// gone and this is `Error::Corrupt` naming the segment. Evidence of another store
/// proves nothing (the checkpoint's `trusted` then gives the reason to rebuild).
///
/// Segments a compaction rewrote (`compacted`: the manifest's exact lengths) are held
/// to those lengths instead: evidence written before the compaction recorded the
/// longer files they replaced.
pub(crate) fn durable_floor(
    dir: &Path,
    c: Option<&Checkpoint>,
    files: &[(u64, PathBuf)],
    compacted: &[(u64, u64)],
) -> Result<Floor> {
    let store_id = segments_store_id(files);
    let ours = |id: [u8; 16]| store_id.is_none_or(|s| s == id);
    let rewritten = |number: u64| compacted.binary_search_by_key(&number, |&(n, _)| n).is_ok();
    let uncompacted = |segments: &[(u64, u64)]| -> Vec<(u64, u64)> {
        segments
            .iter()
            .copied()
            .filter(|&(n, _)| !rewritten(n))
            .collect()
    };
    let mut floor = Floor::new();
    if let Some(c) = c.filter(|c| ours(c.store_id)) {
        let segments = uncompacted(&c.segments);
        check_floor(dir, files, &segments, "the index checkpoint")?;
        floor.extend(segments);
    }
    if let Some(f) = read_floor_file(dir).filter(|f| ours(f.store_id)) {
        let segments = uncompacted(&f.segments);
        check_floor(dir, files, &segments, "the durable floor (durable.floor)")?;
        for (number, len) in segments {
            let at = floor.entry(number).or_insert(len);
            *at = (*at).max(len);
        }
    }
    for &(number, len) in compacted {
        let path = crate::segment::segment_path(dir, number);
        let actual = std::fs::metadata(&path).map(|m| m.len());
        if actual.as_ref().ok() != Some(&len) {
            return Err(Error::Corrupt {
                path,
                offset: 0,
                detail: format!(
                    "the compaction manifest recorded {len} bytes in this segment, the file {}",
                    match actual {
                        Ok(n) => format!("has {n}"),
                        Err(e) => format!("cannot be read ({e})"),
                    }
                ),
            });
        }
        floor.insert(number, len);
    }
    Ok(floor)
}

/// The durable-floor file, when there is one that decodes. One that does not proves
/// nothing (it is replaced whole, so damage happened at rest) and is logged.
fn read_floor_file(dir: &Path) -> Option<FloorFile> {
    let path = dir.join(FLOOR_FILE);
    let bytes = match crate::dir::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log_warn!("cannot read {}: {e}; it proves nothing", path.display());
            return None;
        }
    };
    FloorFile::decode(&bytes)
        .inspect_err(|e| log_warn!("{} is unusable ({e}); it proves nothing", path.display()))
        .ok()
}

/// Checks that each segment `what` lists is present and at least as long as listed.
fn check_floor(
    dir: &Path,
    files: &[(u64, PathBuf)],
    segments: &[(u64, u64)],
    what: &str,
) -> Result<()> {
    for &(number, durable) in segments {
        let path = files.iter().find(|(n, _)| *n == number).map_or_else(
            || crate::segment::segment_path(dir, number),
            |(_, p)| p.clone(),
        );
        let actual = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    detail: format!(
                        "the segment is missing; {what} recorded {durable} durable bytes in it (acknowledged events are gone)"
                    ),
                })
            }
            Err(e) => return Err(crate::error::io_err("stat segment", &path)(e)),
        };
        if actual < durable {
            return Err(Error::Corrupt {
                path,
                offset: actual,
                detail: format!(
                    "the segment is {actual} bytes; {what} recorded {durable} durable bytes in it (acknowledged events are gone)"
                ),
            });
        }
    }
    Ok(())
}

/// Checks a checkpoint against the segment files without scanning them: the same
/// store, the recorded segments first in the directory, each sealed one at exactly
/// its recorded length, and the last covered record where the checkpoint says, with
/// its sequence and id. The error is the reason to rebuild instead. The floor was
/// checked first (`durable_floor`).
pub(crate) fn trusted(c: &Checkpoint, files: &[(u64, PathBuf)]) -> std::result::Result<(), String> {
    let recorded: Vec<u64> = c.segments.iter().map(|(n, _)| *n).collect();
    let present: Vec<u64> = files.iter().take(recorded.len()).map(|(n, _)| *n).collect();
    if recorded != present || !recorded.contains(&c.segment) {
        return Err(format!(
            "checkpoint covers segments {recorded:?}, the directory has {present:?} there"
        ));
    }
    for ((number, len), (_, file)) in c.segments.iter().zip(files) {
        let actual = std::fs::metadata(file)
            .map_err(|e| format!("cannot stat {}: {e}", file.display()))?
            .len();
        if *number < c.segment && actual != *len {
            return Err(format!(
                "sealed segment {number} is {actual} bytes, the checkpoint recorded {len}: the segments changed"
            ));
        }
    }
    if segments_store_id(files) != Some(c.store_id) {
        return Err("checkpoint belongs to another store (store id differs)".into());
    }
    if let (Some(&last), Some(&loc)) = (c.ids.last(), c.locations.last()) {
        let loc = Location::from_bits(loc);
        let n = c.last_sequence();
        let (_, file) = files
            .iter()
            .find(|(number, _)| *number == loc.segment())
            .ok_or_else(|| {
                format!(
                    "last covered event is in segment {}, which is missing",
                    loc.segment()
                )
            })?;
        let seg = SegmentFile::open(file, false, 0).map_err(|e| e.to_string())?;
        let ok = crate::segment::reader::with_record(&seg, loc.offset(), None, |view| {
            let end = loc.offset() + crate::format::record::frame_len_of(view) as u64;
            Ok(view.header.sequence == n
                && view.header.id.as_u128() == last
                && last == c.last_id
                && (loc.segment() != c.segment || end == c.offset))
        })
        .unwrap_or_else(|(_, e)| Err(e))
        .map_err(|e| format!("last covered event does not read back: {e}"))?;
        if !ok {
            return Err("the segments disagree with the checkpoint about its last event".into());
        }
    }
    Ok(())
}

/// Completes `c`, exported from the index through its last event (whose record
/// `c.segment`/`c.offset` locate), with the end of that record, the writer's resume
/// point and the covered segments' lengths, and replaces the checkpoint file with it.
pub(crate) fn write(dir: &Path, segments: &SegmentSet, c: Checkpoint) -> Result<()> {
    write_covering(dir, segments, c, u64::MAX)
}

/// `write`, listing only the segments up to `last_segment`: for a copy of the store
/// (a backup) that holds no later segment.
pub(crate) fn write_covering(
    dir: &Path,
    segments: &SegmentSet,
    mut c: Checkpoint,
    last_segment: u64,
) -> Result<()> {
    // The watermark is the end of event n's record; its timestamp and id resume the writer.
    let (end, timestamp, id) = segments.with_record(Location::new(c.segment, c.offset), |v| {
        Ok((
            c.offset + record::frame_len_of(v) as u64,
            v.header.timestamp_ns,
            v.header.id,
        ))
    })?;
    c.offset = end;
    c.last_timestamp_ns = timestamp;
    c.last_id = id.as_u128();
    c.segments = durable_lengths(segments, c.segment, end, last_segment);
    replace_file(dir, CHECKPOINT_FILE, &c.into_bytes())
}

/// Durable lengths with the last durable record ending at `end` in segment
/// `watermark`: sealed segments whole, the watermark segment up to `end`, segments
/// created after it their synced header; none past `last_segment`.
fn durable_lengths(
    segments: &SegmentSet,
    watermark: u64,
    end: u64,
    last_segment: u64,
) -> Vec<(u64, u64)> {
    segments
        .lengths()
        .into_iter()
        .filter(|(number, _)| *number <= last_segment)
        .map(|(number, len)| match number.cmp(&watermark) {
            std::cmp::Ordering::Less => (number, len),
            std::cmp::Ordering::Equal => (number, end),
            std::cmp::Ordering::Greater => (number, HEADER_LEN as u64),
        })
        .collect()
}

/// Replaces the durable-floor file with the lengths that hold once the record at
/// `last` (the newest durable event) is on stable storage: a close's evidence of
/// durability when a checkpoint does not pay.
pub(crate) fn write_floor(
    dir: &Path,
    segments: &SegmentSet,
    store_id: [u8; 16],
    last: Location,
) -> Result<()> {
    let end = segments.with_record(last, |v| Ok(last.offset() + record::frame_len_of(v) as u64))?;
    let file = FloorFile {
        store_id,
        segments: durable_lengths(segments, last.segment(), end, u64::MAX),
    };
    replace_file(dir, FLOOR_FILE, &file.encode())
}

/// Whether a close should write the whole checkpoint (`true`) or only the durable
/// floor: `durable` events are on stable storage, the checkpoint on disk covers
/// `checkpointed` of them. A small store always gets one (it costs little); a large
/// one when the events open would scan past the checkpoint reach a sixteenth of the
/// store, so a reopen never scans more than about a sixteenth of a rebuild and a
/// close never writes the whole index for a handful of events.
pub(crate) fn pays(durable: u64, checkpointed: u64) -> bool {
    let new = durable.saturating_sub(checkpointed);
    new > 0 && (checkpointed == 0 || durable <= SMALL_STORE || new.saturating_mul(16) >= durable)
}

/// Stores up to this many events get a checkpoint at every close that added any.
pub(crate) const SMALL_STORE: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::{pays, SMALL_STORE};

    #[test]
    fn a_close_checkpoints_when_it_pays() {
        assert!(!pays(0, 0), "nothing durable");
        assert!(!pays(10, 10), "nothing new");
        assert!(pays(1, 0), "no checkpoint yet");
        assert!(pays(SMALL_STORE, SMALL_STORE - 1), "a small store");
        assert!(!pays(1_000_000, 999_000), "a thousand new of a million");
        assert!(pays(1_600_000, 1_500_000), "a sixteenth new");
        assert!(!pays(1_600_000, 1_500_001));
    }
}
