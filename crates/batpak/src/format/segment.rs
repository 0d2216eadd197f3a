//! The segment file header: the first bytes of every `segments/<16 hex>.seg` file.
//!
//! ```text
//! offset  size  field
//! 0       8     magic           "BPAKSEG\0"
//! 8       2     format_version  SEGMENT_FORMAT_VERSION
//! 10      2     header_len      HEADER_LEN (records start here)
//! 12      4     reserved        zero
//! 16      8     segment_number  same as the file name
//! 24      8     first_sequence  the sequence of the first record this segment holds
//! 32      16    store_id        random, shared by every segment of one store
//! 48      12    reserved        zero
//! 60      4     crc             CRC32C of bytes [0, 60)
//! ```

use std::mem::size_of;

use super::record::{read_u32, read_u64};

/// Identifies a segment file.
pub(crate) const MAGIC: [u8; 8] = *b"BPAKSEG\0";
/// The version new segments are written with. Version 1: the first format (record
/// layout in `record.rs`); version 2: records may carry metadata (`FLAG_METADATA`).
/// Both are read. A v1 segment that holds records never gets a v2 record: the writer
/// starts a new segment before its first append to a store created by a v1 build
/// (a v1 segment holding only its header, left by a crash during a v1 rotation, is
/// appended to as it is).
pub(crate) const SEGMENT_FORMAT_VERSION: u16 = 2;
/// The oldest version this build reads.
pub(crate) const OLDEST_SEGMENT_FORMAT_VERSION: u16 = 1;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + size_of::<[u8; 8]>();
const HEADER_LEN_OFFSET: usize = VERSION_OFFSET + size_of::<u16>();
const RESERVED_A_OFFSET: usize = HEADER_LEN_OFFSET + size_of::<u16>();
const NUMBER_OFFSET: usize = RESERVED_A_OFFSET + size_of::<u32>();
const FIRST_SEQUENCE_OFFSET: usize = NUMBER_OFFSET + size_of::<u64>();
const STORE_ID_OFFSET: usize = FIRST_SEQUENCE_OFFSET + size_of::<u64>();
const RESERVED_B_OFFSET: usize = STORE_ID_OFFSET + size_of::<[u8; 16]>();
pub(crate) const CRC_OFFSET: usize = RESERVED_B_OFFSET + 12;
/// Length of the header; the first record starts here.
pub(crate) const HEADER_LEN: usize = CRC_OFFSET + size_of::<u32>();

/// The decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// `SEGMENT_FORMAT_VERSION` for every segment this build creates.
    pub format_version: u16,
    pub number: u64,
    pub first_sequence: u64,
    pub store_id: [u8; 16],
}

/// Why a header does not decode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer than `HEADER_LEN` bytes, or all zero: the header was never completely written.
    Incomplete,
    /// Not a batpak segment.
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion(u16),
    /// The checksum or a fixed field is wrong.
    Corrupt(String),
}

impl SegmentHeader {
    /// The header's bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&MAGIC);
        out[VERSION_OFFSET..HEADER_LEN_OFFSET].copy_from_slice(&self.format_version.to_le_bytes());
        let header_len = u16::try_from(HEADER_LEN).unwrap_or(u16::MAX);
        out[HEADER_LEN_OFFSET..RESERVED_A_OFFSET].copy_from_slice(&header_len.to_le_bytes());
        out[NUMBER_OFFSET..FIRST_SEQUENCE_OFFSET].copy_from_slice(&self.number.to_le_bytes());
        out[FIRST_SEQUENCE_OFFSET..STORE_ID_OFFSET]
            .copy_from_slice(&self.first_sequence.to_le_bytes());
        out[STORE_ID_OFFSET..RESERVED_B_OFFSET].copy_from_slice(&self.store_id);
        let crc = crc32c::crc32c(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the header at the start of `buf`.
    pub(crate) fn decode(buf: &[u8]) -> Result<Self, HeaderError> {
        let Some(bytes) = buf.get(..HEADER_LEN) else {
            return Err(HeaderError::Incomplete);
        };
        if bytes.iter().all(|&b| b == 0) {
            return Err(HeaderError::Incomplete);
        }
        if bytes[..VERSION_OFFSET] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[VERSION_OFFSET], bytes[VERSION_OFFSET + 1]]);
        if !(OLDEST_SEGMENT_FORMAT_VERSION..=SEGMENT_FORMAT_VERSION).contains(&version) {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let stored = read_u32(bytes, CRC_OFFSET);
        let computed = crc32c::crc32c(&bytes[..CRC_OFFSET]);
        if stored != computed {
            return Err(HeaderError::Corrupt(format!(
                "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
        let header_len =
            u16::from_le_bytes([bytes[HEADER_LEN_OFFSET], bytes[HEADER_LEN_OFFSET + 1]]);
        if usize::from(header_len) != HEADER_LEN {
            return Err(HeaderError::Corrupt(format!(
                "header length {header_len}, expected {HEADER_LEN}"
            )));
        }
        let mut store_id = [0u8; 16];
        store_id.copy_from_slice(&bytes[STORE_ID_OFFSET..RESERVED_B_OFFSET]);
        Ok(SegmentHeader {
            format_version: version,
            number: read_u64(bytes, NUMBER_OFFSET),
            first_sequence: read_u64(bytes, FIRST_SEQUENCE_OFFSET),
            store_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader {
            format_version: SEGMENT_FORMAT_VERSION,
            number: 3,
            first_sequence: 1001,
            store_id: [0xC4; 16],
        }
    }

    /// A header written by a v1 build (its golden bytes then) still decodes, as v1.
    #[test]
    fn a_version_1_header_still_decodes() {
        let v1 = concat!(
            "4250414b53454700010040000000000003000000000000",
            "00e903000000000000c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4",
            "000000000000000000000000434eab99"
        );
        let bytes: Vec<u8> = (0..v1.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&v1[i..i + 2], 16).unwrap())
            .collect();
        let header = SegmentHeader::decode(&bytes).unwrap();
        assert_eq!(header.format_version, 1);
        assert_eq!(
            header,
            SegmentHeader {
                format_version: 1,
                ..sample()
            }
        );
        assert_eq!(
            header.encode().to_vec(),
            bytes,
            "a v1 header re-encodes as v1"
        );
    }

    #[test]
    fn golden_bytes() {
        let bytes = sample().encode();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "4250414b53454700", // magic
                "0200",
                "4000",
                "00000000",                         // version 2, header_len 64, reserved
                "0300000000000000",                 // segment number 3
                "e903000000000000",                 // first sequence 1001
                "c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4", // store id
                "000000000000000000000000",         // reserved
                "4c25f470", // crc32c, checked with an independent implementation
            )
        );
    }

    #[test]
    fn round_trip_and_errors() {
        let bytes = sample().encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(sample()));
        assert_eq!(
            SegmentHeader::decode(&bytes[..HEADER_LEN - 1]),
            Err(HeaderError::Incomplete)
        );
        assert_eq!(
            SegmentHeader::decode(&[0u8; HEADER_LEN]),
            Err(HeaderError::Incomplete)
        );
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadMagic));
        let mut future = bytes;
        future[VERSION_OFFSET] = 9;
        assert_eq!(
            SegmentHeader::decode(&future),
            Err(HeaderError::UnsupportedVersion(9))
        );
        for i in NUMBER_OFFSET..HEADER_LEN {
            let mut flipped = bytes;
            flipped[i] ^= 1;
            assert!(
                matches!(
                    SegmentHeader::decode(&flipped),
                    Err(HeaderError::Corrupt(_))
                ),
                "flip at {i}"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = SegmentHeader::decode(&bytes);
        }

        #[test]
        fn round_trip(number in any::<u64>(), first in any::<u64>(), id in any::<[u8; 16]>()) {
            let h = SegmentHeader { format_version: SEGMENT_FORMAT_VERSION, number, first_sequence: first, store_id: id };
            prop_assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        }
    }
}
