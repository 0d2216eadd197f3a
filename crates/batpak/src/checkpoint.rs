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
//! Above the floor, a checkpoint is trusted only when it agrees with the segment
//! files without scanning them (same store, sealed segments at their recorded length,
//! the last covered record where it says) and its columns import; otherwise open
//! rebuilds from the records and says why, still holding the scan to the floor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dir::{replace_file, CHECKPOINT_FILE};
use crate::error::{Error, Result};
use crate::format::checkpoint::Checkpoint;
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
fn segments_store_id(files: &[(u64, PathBuf)]) -> Option<[u8; 16]> {
    files.iter().find_map(|(_, path)| {
        let mut header = [0u8; HEADER_LEN];
        std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
            .ok()?;
        SegmentHeader::decode(&header).ok().map(|h| h.store_id)
    })
}

/// What `c` proves durable, checked against the files: every segment it records must
/// be present and at least as long as recorded, or acknowledged data is gone and this
/// is `Error::Corrupt` naming the segment. A checkpoint of another store proves
/// nothing (an empty floor; `trusted` then gives the reason to rebuild).
pub(crate) fn durable_floor(dir: &Path, c: &Checkpoint, files: &[(u64, PathBuf)]) -> Result<Floor> {
    if segments_store_id(files).is_some_and(|id| id != c.store_id) {
        return Ok(Floor::new());
    }
    let floor: Floor = c.segments.iter().copied().collect();
    for (&number, &durable) in &floor {
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
                        "the segment is missing; the index checkpoint recorded {durable} durable bytes in it (acknowledged events are gone)"
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
                    "the segment is {actual} bytes; the index checkpoint recorded {durable} durable bytes in it (acknowledged events are gone)"
                ),
            });
        }
    }
    Ok(floor)
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
        let n = c.ids.len() as u64;
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
        let ok = crate::segment::reader::with_record(&seg, loc.offset(), |view| {
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
    // Durable lengths: sealed segments whole, the watermark segment up to the
    // watermark, segments created after it their synced header.
    c.segments = segments
        .lengths()
        .into_iter()
        .filter(|(number, _)| *number <= last_segment)
        .map(|(number, len)| match number.cmp(&c.segment) {
            std::cmp::Ordering::Less => (number, len),
            std::cmp::Ordering::Equal => (number, end),
            std::cmp::Ordering::Greater => (number, HEADER_LEN as u64),
        })
        .collect();
    replace_file(dir, CHECKPOINT_FILE, &c.encode())
}
