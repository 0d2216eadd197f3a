//! The durable-floor file, `durable.floor`: the length of every segment that was on
//! stable storage when the store last closed without writing a checkpoint. It is the
//! same evidence of durability a checkpoint's segment list gives (no tail rule applies
//! below it), at a few dozen bytes instead of the whole index.
//!
//! ```text
//! offset  size  field
//! 0       4     crc        CRC32C of bytes [4, end)
//! 4       4     magic      "BPF1"
//! 8       16    store_id   the store's id, as in every segment header
//! 24      4     count      u32 LE: segment entries that follow
//! 28      4     reserved   zero
//! 32      16*n  entries    (segment number u64 LE, durable length u64 LE),
//!                          numbers strictly increasing
//! ```

use crate::format::record::{read_u32, read_u64};

const MAGIC: &[u8; 4] = b"BPF1";
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 16;

/// What a durable-floor file records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FloorFile {
    pub store_id: [u8; 16],
    /// (segment number, bytes on stable storage), numbers increasing.
    pub segments: Vec<(u64, u64)>,
}

impl FloorFile {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * self.segments.len());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.store_id);
        let count = u32::try_from(self.segments.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for (number, len) in &self.segments {
            out.extend_from_slice(&number.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        crate::format::seal(&mut out);
        out
    }

    /// Decodes the file; the error says what is wrong with it.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        crate::format::check_sealed(bytes, HEADER_LEN, MAGIC)?;
        if bytes[28..32] != [0; 4] {
            return Err("reserved bytes are not zero".into());
        }
        let count = read_u32(bytes, 24) as usize;
        let expected = count
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(HEADER_LEN));
        if expected != Some(bytes.len()) {
            return Err(format!(
                "{count} segment entries need {} bytes, the file has {}",
                expected.map_or_else(|| "more than usize".to_string(), |n| n.to_string()),
                bytes.len()
            ));
        }
        let mut store_id = [0; 16];
        store_id.copy_from_slice(&bytes[8..24]);
        let segments: Vec<(u64, u64)> = (0..count)
            .map(|i| {
                let at = HEADER_LEN + i * ENTRY_LEN;
                (read_u64(bytes, at), read_u64(bytes, at + 8))
            })
            .collect();
        if let Some(w) = segments.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!(
                "segment numbers do not increase: {} then {}",
                w[0].0, w[1].0
            ));
        }
        Ok(FloorFile { store_id, segments })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_round_trip() {
        let file = FloorFile {
            store_id: [0xab; 16],
            segments: vec![(1, 0x0400), (2, 64)],
        };
        let bytes = file.encode();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "18c5492e",                         // crc (cross-checked with a Python CRC32C)
                "42504631",                         // magic "BPF1"
                "abababababababababababababababab", // store id
                "02000000",                         // count
                "00000000",                         // reserved
                "0100000000000000",                 // segment 1
                "0004000000000000",                 // 1024 bytes
                "0200000000000000",                 // segment 2
                "4000000000000000",                 // 64 bytes (its header)
            )
        );
        assert_eq!(FloorFile::decode(&bytes), Ok(file));
    }

    #[test]
    fn every_damage_is_refused() {
        let bytes = FloorFile {
            store_id: [7; 16],
            segments: vec![(3, 100), (4, 64)],
        }
        .encode();
        for cut in 0..bytes.len() {
            assert!(FloorFile::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(FloorFile::decode(&bad).is_err(), "flip {at}");
        }
    }

    #[test]
    fn numbers_must_increase() {
        let bytes = FloorFile {
            store_id: [7; 16],
            segments: vec![(4, 100), (4, 64)],
        }
        .encode();
        let err = FloorFile::decode(&bytes).unwrap_err();
        assert!(err.contains("do not increase: 4 then 4"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let _ = FloorFile::decode(&bytes);
        }

        #[test]
        fn round_trips(store_id: [u8; 16], mut numbers in proptest::collection::btree_set(proptest::prelude::any::<u64>(), 0..8), len: u64) {
            let segments: Vec<(u64, u64)> = std::mem::take(&mut numbers).into_iter().map(|n| (n, len ^ n)).collect();
            let file = FloorFile { store_id, segments };
            proptest::prop_assert_eq!(FloorFile::decode(&file.encode()), Ok(file));
        }
    }
}
