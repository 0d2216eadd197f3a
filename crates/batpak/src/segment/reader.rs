//! Point reads: one frame at a known offset.

use crate::error::{Error, Result};
use crate::format::record::{self, FrameError, PREFIX_LEN};

use super::io::SegmentFile;

/// Bytes read speculatively so that a small record needs a single positional read.
const FIRST_READ: usize = 512;

/// Reads the frame that starts at `offset` and checks it decodes (checksum included).
pub(crate) fn read_frame(file: &SegmentFile, offset: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; FIRST_READ];
    let n = file.read_at(&mut buf, offset)?;
    buf.truncate(n);
    let corrupt = |detail: String| Error::Corrupt {
        path: file.path().to_path_buf(),
        offset,
        detail,
    };
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
    match record::decode(&buf) {
        Ok(_) => {
            buf.truncate(len);
            Ok(buf)
        }
        Err(e) => Err(corrupt(e.to_string())),
    }
}

/// Decodes a frame returned by `read_frame`; it was checked there.
pub(crate) fn view(frame: &[u8]) -> Result<record::RecordView<'_>, FrameError> {
    record::decode(frame).map(|(v, _)| v)
}
