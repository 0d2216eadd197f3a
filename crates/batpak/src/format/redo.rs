//! The pending-redaction file `redact.pending`: the rewritten frame and where it goes,
//! made durable before a segment is rewritten in place, so an interrupted rewrite is
//! finished at the next open instead of leaving a torn record mid-file.
//!
//! ```text
//! offset  size  field
//! 0       4     crc           CRC32C of bytes [4, end)
//! 4       4     magic         "BPR1"
//! 8       8     segment       segment number, u64 LE
//! 16      8     offset        byte offset of the frame in the segment, u64 LE
//! 24      4     frame_len     u32 LE, equal to the rest of the file
//! 28      4     reserved      zero
//! 32      ...   frame         the redacted frame, exactly frame_len bytes
//! ```

use crate::format::record::read_u64;

const MAGIC: &[u8; 4] = b"BPR1";
const HEADER_LEN: usize = 32;

/// A frame to write over the one at `offset` of segment `segment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingRewrite {
    pub segment: u64,
    pub offset: u64,
    pub frame: Vec<u8>,
}

impl PendingRewrite {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.frame.len());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.segment.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        let len = u32::try_from(self.frame.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.frame);
        crate::format::seal(&mut out);
        out
    }

    /// Decodes the file; the error says what is wrong with it.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        crate::format::check_sealed(bytes, HEADER_LEN, MAGIC)?;
        let len = crate::format::record::read_u32(bytes, 24) as usize;
        if len != bytes.len() - HEADER_LEN {
            return Err(format!(
                "frame length {len} but {} bytes follow the header",
                bytes.len() - HEADER_LEN
            ));
        }
        if bytes[28..32] != [0; 4] {
            return Err("reserved bytes are not zero".into());
        }
        Ok(PendingRewrite {
            segment: read_u64(bytes, 8),
            offset: read_u64(bytes, 16),
            frame: bytes[HEADER_LEN..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_round_trip() {
        let p = PendingRewrite {
            segment: 3,
            offset: 0x1040,
            frame: vec![0xF0, 0x0D],
        };
        let bytes = p.encode();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            &hex[8..],
            concat!(
                "42505231",         // magic
                "0300000000000000", // segment
                "4010000000000000", // offset
                "02000000",         // frame_len
                "00000000",         // reserved
                "f00d",             // frame
            )
        );
        assert_eq!(&hex[..8], PENDING_CRC_GOLDEN);
        assert_eq!(PendingRewrite::decode(&bytes), Ok(p));
    }

    /// CRC32C of bytes [4, end) above, cross-checked with a Python implementation.
    const PENDING_CRC_GOLDEN: &str = "5ca0e9e0";

    #[test]
    fn every_damage_is_refused() {
        let bytes = PendingRewrite {
            segment: 1,
            offset: 64,
            frame: vec![7; 40],
        }
        .encode();
        for cut in 0..bytes.len() {
            assert!(PendingRewrite::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x08;
            assert!(PendingRewrite::decode(&bad).is_err(), "flip {at}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = PendingRewrite::decode(&bytes);
        }
    }
}
