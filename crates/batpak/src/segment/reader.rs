//! Point reads: decode the one record at a known offset, checksum verified.

use crate::error::{Error, Result};
use crate::format::record::{self, RecordView, PREFIX_LEN};

use super::io::SegmentFile;

/// Bytes read speculatively when the file is not mapped, so that a small record needs
/// a single positional read.
const FIRST_READ: usize = 512;

/// Decodes the record at `offset` and hands it to `f`. The bytes come straight from the
/// segment's memory map when there is one, else from positional reads. A record that
/// does not decode is `Error::Corrupt` naming the file and offset.
pub(crate) fn with_record<R>(
    file: &SegmentFile,
    offset: u64,
    f: impl FnOnce(&RecordView<'_>) -> Result<R>,
) -> Result<R> {
    let corrupt = |detail: String| Error::Corrupt {
        path: file.path().to_path_buf(),
        offset,
        detail,
    };
    let decode = |bytes: &[u8]| match record::decode(bytes) {
        Ok((view, _)) => f(&view),
        Err(e) => Err(corrupt(e.to_string())),
    };
    if let Some(mapped) = file.mapped_from(offset) {
        return decode(mapped);
    }
    let mut buf = vec![0u8; FIRST_READ];
    let n = file.read_at(&mut buf, offset)?;
    buf.truncate(n);
    let len = record::peek_frame_len(&buf).ok_or_else(|| {
        corrupt(format!(
            "record prefix needs {PREFIX_LEN} bytes, file has {n} at this offset"
        ))
    })?;
    if len > buf.len() && n == FIRST_READ {
        let have = buf.len();
        buf.resize(len, 0);
        let more = file.read_at(&mut buf[have..], offset + have as u64)?;
        buf.truncate(have + more);
    }
    decode(&buf)
}
