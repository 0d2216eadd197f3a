//! The index checkpoint's policy: when one is trusted at open, and how the writer's
//! copy of the index becomes a file. The byte layout is `format::checkpoint`.
//!
//! A checkpoint is trusted only when it agrees with the segment files without
//! scanning them (same store, every covered segment present at its recorded length,
//! the last covered record where it says); otherwise open rebuilds and says why. It is
//! written for events that are visible and durable, after rotations (best effort) and
//! at close.

use std::path::{Path, PathBuf};

use crate::dir::{replace_file, CHECKPOINT_FILE};
use crate::error::Result;
use crate::format::checkpoint::Checkpoint;
use crate::format::record;
use crate::format::segment::{SegmentHeader, HEADER_LEN};
use crate::segment::io::SegmentFile;
use crate::segment::{Location, SegmentSet};

/// Reads the checkpoint and checks it against the segment files without scanning
/// them: the same store, every covered segment present with the recorded length, and
/// the last covered record where the checkpoint says, with its sequence and id. The
/// error is the reason to rebuild instead.
pub(crate) fn read_trusted(
    dir: &Path,
    files: &[(u64, PathBuf)],
) -> std::result::Result<Checkpoint, String> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match crate::dir::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("no checkpoint".into()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let c = Checkpoint::decode(&bytes).map_err(|e| format!("checkpoint unusable: {e}"))?;
    let recorded: Vec<u64> = c.segments.iter().map(|(n, _)| *n).collect();
    let present: Vec<u64> = files.iter().take(recorded.len()).map(|(n, _)| *n).collect();
    if recorded != present || recorded.last() != Some(&c.segment) {
        return Err(format!(
            "checkpoint covers segments {recorded:?}, the directory has {present:?} there"
        ));
    }
    for ((number, len), (_, file)) in c.segments.iter().zip(files) {
        let actual = std::fs::metadata(file)
            .map_err(|e| format!("cannot stat {}: {e}", file.display()))?
            .len();
        let fits = if *number == c.segment {
            actual >= *len
        } else {
            actual == *len
        };
        if !fits {
            return Err(format!(
                "segment {number} is {actual} bytes, the checkpoint recorded {len}: it is stale or the segments changed"
            ));
        }
    }
    let first = files.first().map(|(_, p)| p).ok_or("no segments")?;
    let mut header = [0u8; HEADER_LEN];
    let header = std::fs::File::open(first)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .ok()
        .and_then(|()| SegmentHeader::decode(&header).ok())
        .ok_or_else(|| format!("cannot read the header of {}", first.display()))?;
    if header.store_id != c.store_id {
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
    Ok(c)
}

/// Completes `c`, exported from the index through its last event (whose record
/// `c.segment`/`c.offset` locate), with the end of that record, the writer's resume
/// point and the covered segments' lengths, and replaces the checkpoint file with it.
pub(crate) fn write(dir: &Path, segments: &SegmentSet, mut c: Checkpoint) -> Result<()> {
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
    c.segments = segments.lengths_up_to(c.segment);
    if let Some(last) = c.segments.last_mut() {
        last.1 = end;
    }
    replace_file(dir, CHECKPOINT_FILE, &c.encode())
}
