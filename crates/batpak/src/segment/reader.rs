//! Point reads: decode the one record at a known offset, checksum verified.

use crate::error::{Error, Result};
use crate::format::record::{self, RecordView, PREFIX_LEN};

use super::io::SegmentFile;

/// Bytes read speculatively when the file is not mapped, so that a small record needs
/// a single positional read.
const FIRST_READ: usize = 512;

/// Why a record could not be handed over: `f` back (it was not called) and the error,
/// `Error::Corrupt` naming the file and offset, or the read's I/O error.
pub(crate) type NotRead<F> = (F, Error);

/// Decodes the record at `offset` and hands it to `f`, returning what `f` returned.
/// The bytes come straight from the segment's memory map when there is one, else from
/// positional reads. When the record cannot be read, `f` comes back uncalled.
pub(crate) fn with_record<R, F>(
    file: &SegmentFile,
    offset: u64,
    known: Option<(&str, &str)>,
    f: F,
) -> std::result::Result<Result<R>, NotRead<F>>
where
    F: FnOnce(&RecordView<'_>) -> Result<R>,
{
    let corrupt = |detail: String| Error::Corrupt {
        path: file.path().to_path_buf(),
        offset,
        detail,
    };
    let decode = |bytes: &[u8], f: F| match record::decode_known(bytes, known) {
        Ok((view, _)) => Ok(f(&view)),
        Err(e) => Err((f, corrupt(e.to_string()))),
    };
    if let Some(mapped) = file.mapped_from(offset) {
        return decode(mapped, f);
    }
    let mut buf = vec![0u8; FIRST_READ];
    let n = match file.read_at(&mut buf, offset) {
        Ok(n) => n,
        Err(e) => return Err((f, e)),
    };
    buf.truncate(n);
    let Some(len) = record::peek_frame_len(&buf) else {
        let detail = format!("record prefix needs {PREFIX_LEN} bytes, file has {n} at this offset");
        return Err((f, corrupt(detail)));
    };
    if len > buf.len() && n == FIRST_READ {
        let have = buf.len();
        buf.resize(len, 0);
        let more = match file.read_at(&mut buf[have..], offset + have as u64) {
            Ok(more) => more,
            Err(e) => return Err((f, e)),
        };
        buf.truncate(have + more);
    }
    decode(&buf, f)
}

/// The whole frame at `offset`, raw (not decoded): what an in-place rewrite starts from
/// and what a backup measures.
pub(crate) fn read_frame(file: &SegmentFile, offset: u64) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::Corrupt {
        path: file.path().to_path_buf(),
        offset,
        detail,
    };
    let mut prefix = [0u8; PREFIX_LEN];
    if file.read_at(&mut prefix, offset)? < prefix.len() {
        return Err(corrupt(
            "the record prefix runs past the end of the file".into(),
        ));
    }
    let len = record::peek_frame_len(&prefix).unwrap_or(0);
    if len < PREFIX_LEN {
        return Err(corrupt(format!(
            "frame length {len} is shorter than its prefix"
        )));
    }
    let mut frame = vec![0u8; len];
    if file.read_at(&mut frame, offset)? < len {
        return Err(corrupt(format!(
            "the {len}-byte record runs past the end of the file"
        )));
    }
    Ok(frame)
}
