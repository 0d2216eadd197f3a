//! A durable cursor's file, `cursors/<hex name>.cursor`: the committed position and
//! the region it is bound to. Replaced atomically on every commit.
//!
//! ```text
//! offset  size  field
//! 0       4     crc           CRC32C of bytes [4, end)
//! 4       4     magic         "BPC1"
//! 8       8     committed     last committed sequence, u64 LE (0: nothing yet)
//! 16      4     region_len    u32 LE
//! 20      2     name_len      u16 LE
//! 22      2     reserved      zero
//! 24      ...   region        `Region::canonical()` text, region_len bytes
//!               name          the cursor name, name_len bytes of UTF-8
//! ```

use crate::format::record::{read_u32, read_u64};

const MAGIC: &[u8; 4] = b"BPC1";
const HEADER_LEN: usize = 24;

/// The persisted state of one cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CursorFile {
    pub committed: u64,
    pub region: String,
    pub name: String,
}

impl CursorFile {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.region.len() + self.name.len());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.committed.to_le_bytes());
        let region_len = u32::try_from(self.region.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&region_len.to_le_bytes());
        let name_len = u16::try_from(self.name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(self.region.as_bytes());
        out.extend_from_slice(self.name.as_bytes());
        crate::format::seal(&mut out);
        out
    }

    /// Decodes the file; the error says what is wrong with it.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        crate::format::check_sealed(bytes, HEADER_LEN, MAGIC)?;
        let region_len = read_u32(bytes, 16) as usize;
        let name_len = usize::from(u16::from_le_bytes([bytes[20], bytes[21]]));
        if bytes[22..24] != [0, 0] {
            return Err("reserved bytes are not zero".into());
        }
        if HEADER_LEN + region_len + name_len != bytes.len() {
            return Err(format!(
                "lengths say {} bytes, the file has {}",
                HEADER_LEN + region_len + name_len,
                bytes.len()
            ));
        }
        let text = |range: std::ops::Range<usize>, what: &str| {
            String::from_utf8(bytes[range].to_vec()).map_err(|_| format!("{what} is not UTF-8"))
        };
        Ok(CursorFile {
            committed: read_u64(bytes, 8),
            region: text(HEADER_LEN..HEADER_LEN + region_len, "region")?,
            name: text(HEADER_LEN + region_len..bytes.len(), "name")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_round_trip() {
        let file = CursorFile {
            committed: 0x0102,
            region: "{}".into(),
            name: "mail".into(),
        };
        let bytes = file.encode();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "2b541af9",         // crc (cross-checked with a Python CRC32C)
                "42504331",         // magic
                "0201000000000000", // committed
                "02000000",         // region_len
                "0400",             // name_len
                "0000",             // reserved
                "7b7d",             // region
                "6d61696c",         // name
            )
        );
        assert_eq!(CursorFile::decode(&bytes), Ok(file));
    }

    #[test]
    fn every_damage_is_refused() {
        let bytes = CursorFile {
            committed: 9,
            region: "{\"entity\":null}".into(),
            name: "c".into(),
        }
        .encode();
        for cut in 0..bytes.len() {
            assert!(CursorFile::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(CursorFile::decode(&bad).is_err(), "flip {at}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let _ = CursorFile::decode(&bytes);
        }

        #[test]
        fn round_trips(committed: u64, region in ".{0,40}", name in "[a-z0-9:_-]{1,20}") {
            let file = CursorFile { committed, region, name };
            proptest::prop_assert_eq!(CursorFile::decode(&file.encode()), Ok(file));
        }
    }
}
