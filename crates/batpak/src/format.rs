//! Byte layouts of everything batpak writes. Pure: no I/O, no clocks.

pub(crate) mod checkpoint;
pub(crate) mod cursor;
pub(crate) mod floor;
pub(crate) mod manifest;
pub(crate) mod record;
pub(crate) mod redo;
pub(crate) mod segment;
pub(crate) mod snapshot;

pub use record::Encoding;
pub(crate) use record::MAX_PAYLOAD_LEN;

/// Small files that start with the CRC32C of everything after it, then a 4-byte magic
/// (cursor files, the pending-redaction file): fills in the checksum.
pub(crate) fn seal(out: &mut [u8]) {
    let crc = crc32c::crc32c(&out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a sealed file: at least `header_len` bytes, the checksum, the magic.
pub(crate) fn check_sealed(bytes: &[u8], header_len: usize, magic: &[u8; 4]) -> Result<(), String> {
    if bytes.len() < header_len {
        return Err(format!(
            "{} bytes, shorter than the {header_len}-byte header",
            bytes.len()
        ));
    }
    let stored = record::read_u32(bytes, 0);
    let computed = crc32c::crc32c(&bytes[4..]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    if &bytes[4..8] != magic {
        return Err(format!("magic {:?}, expected {magic:?}", &bytes[4..8]));
    }
    Ok(())
}
