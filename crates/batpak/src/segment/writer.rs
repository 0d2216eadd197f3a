//! The active segment: appends at its end and rotation to the next file.

use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::format::segment::{SegmentHeader, HEADER_LEN, SEGMENT_FORMAT_VERSION};

use super::io::SegmentFile;
use super::segment_path;
use crate::dir::sync_dir;
use crate::dir::SEGMENTS_DIR;

/// The segment new records go to. Only the writer holds one.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub file: Arc<SegmentFile>,
    pub number: u64,
    /// Bytes in the file; the next record goes here.
    pub len: u64,
    store_id: [u8; 16],
    /// The rotation size; new segments reserve a read map this large.
    capacity: u64,
    /// The segment's format version (`SEGMENT_FORMAT_VERSION` unless resumed from an
    /// older build's segment, which the writer seals before writing to it).
    format_version: u16,
}

impl ActiveSegment {
    /// Resumes appending to an existing file that holds `len` valid bytes.
    pub(crate) fn resume(
        file: Arc<SegmentFile>,
        number: u64,
        len: u64,
        store_id: [u8; 16],
        capacity: u64,
        format_version: u16,
    ) -> Self {
        ActiveSegment {
            file,
            number,
            len,
            store_id,
            capacity,
            format_version,
        }
    }

    /// Creates segment `number` (whose first record will be `first_sequence`) and
    /// makes its directory entry durable.
    pub(crate) fn create(
        dir: &Path,
        number: u64,
        first_sequence: u64,
        store_id: [u8; 16],
        capacity: u64,
    ) -> Result<Self> {
        let header = SegmentHeader {
            format_version: SEGMENT_FORMAT_VERSION,
            number,
            first_sequence,
            store_id,
        }
        .encode();
        let path = segment_path(dir, number);
        let file = Arc::new(SegmentFile::create(&path, &header, capacity)?);
        sync_dir(&dir.join(SEGMENTS_DIR))?;
        Ok(ActiveSegment {
            file,
            number,
            len: HEADER_LEN as u64,
            store_id,
            capacity,
            format_version: SEGMENT_FORMAT_VERSION,
        })
    }

    /// Whether this segment holds records in an older format than this build writes:
    /// such a segment is sealed (rotated away from) before the first append.
    pub(crate) fn is_older_format(&self) -> bool {
        self.format_version < SEGMENT_FORMAT_VERSION && self.len > HEADER_LEN as u64
    }

    /// The id shared by the store's segments.
    pub(crate) fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    /// Writes `frames` at the end. Returns the offset they start at.
    pub(crate) fn append(&mut self, frames: &[u8]) -> Result<u64> {
        let offset = self.len;
        self.file.write_at(frames, offset)?;
        self.len += frames.len() as u64;
        Ok(offset)
    }

    /// Syncs this segment completely and starts the next one, so only the last segment
    /// can ever hold unsynced bytes.
    pub(crate) fn rotate(&mut self, dir: &Path, next_sequence: u64) -> Result<()> {
        self.file.sync()?;
        *self = ActiveSegment::create(
            dir,
            self.number + 1,
            next_sequence,
            self.store_id,
            self.capacity,
        )?;
        Ok(())
    }
}
