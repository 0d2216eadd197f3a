//! Persisted projection snapshots: `projections/<hex name>.v<version>/<hex entity>.snap`.
//!
//! ```text
//! offset  size  field
//! 0       8     magic               "BPAKSNAP"
//! 8       2     format_version      SNAPSHOT_FORMAT_VERSION
//! 10      2     reserved            zero
//! 12      4     projection_version  Projection::VERSION
//! 16      8     through             the entity's newest sequence the state reflects
//! 24      8     frontier_sequence   the last applied event (0: none)
//! 32      8     frontier_timestamp
//! 40      1     has_state           0 or 1
//! 41      4     state_len
//! 45      ...   state               the projection's own encoding (`to_snapshot`)
//! end-4   4     crc                 CRC32C of every byte before it
//! ```

use std::mem::size_of;

use super::record::{read_u32, read_u64};

const MAGIC: [u8; 8] = *b"BPAKSNAP";
/// Version 1: the first format.
pub(crate) const SNAPSHOT_FORMAT_VERSION: u16 = 1;
const VERSION_OFFSET: usize = MAGIC.len();
const PROJECTION_VERSION_OFFSET: usize = VERSION_OFFSET + 2 * size_of::<u16>();
const THROUGH_OFFSET: usize = PROJECTION_VERSION_OFFSET + size_of::<u32>();
const FRONTIER_SEQ_OFFSET: usize = THROUGH_OFFSET + size_of::<u64>();
const FRONTIER_TS_OFFSET: usize = FRONTIER_SEQ_OFFSET + size_of::<u64>();
const HAS_STATE_OFFSET: usize = FRONTIER_TS_OFFSET + size_of::<u64>();
const STATE_LEN_OFFSET: usize = HAS_STATE_OFFSET + size_of::<u8>();
const STATE_OFFSET: usize = STATE_LEN_OFFSET + size_of::<u32>();

/// A decoded snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub projection_version: u32,
    pub through: u64,
    pub frontier: Option<(u64, u64)>,
    pub state: Option<Vec<u8>>,
}

impl Snapshot {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let state = self.state.as_deref().unwrap_or(&[]);
        let mut out = Vec::with_capacity(STATE_OFFSET + state.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.projection_version.to_le_bytes());
        out.extend_from_slice(&self.through.to_le_bytes());
        let (seq, ts) = self.frontier.unwrap_or((0, 0));
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&ts.to_le_bytes());
        out.push(u8::from(self.state.is_some()));
        out.extend_from_slice(&u32::try_from(state.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(state);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a snapshot file; the error says why it cannot be used.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < STATE_OFFSET + 4 {
            return Err(format!("{} bytes, shorter than a snapshot", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = read_u32(crc, 0);
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(format!(
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        if body[..VERSION_OFFSET] != MAGIC {
            return Err("not a snapshot (bad magic)".into());
        }
        let version = u16::from_le_bytes([body[VERSION_OFFSET], body[VERSION_OFFSET + 1]]);
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(format!(
                "snapshot format version {version}, this build reads {SNAPSHOT_FORMAT_VERSION}"
            ));
        }
        let len = read_u32(body, STATE_LEN_OFFSET) as usize;
        if body.len() != STATE_OFFSET + len {
            return Err(format!("state of {len} bytes does not fit the file"));
        }
        let seq = read_u64(body, FRONTIER_SEQ_OFFSET);
        Ok(Snapshot {
            projection_version: read_u32(body, PROJECTION_VERSION_OFFSET),
            through: read_u64(body, THROUGH_OFFSET),
            frontier: (seq != 0).then(|| (seq, read_u64(body, FRONTIER_TS_OFFSET))),
            state: match body[HAS_STATE_OFFSET] {
                0 => None,
                1 => Some(body[STATE_OFFSET..].to_vec()),
                other => return Err(format!("has_state is {other}")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_round_trip() {
        let s = Snapshot {
            projection_version: 2,
            through: 9,
            frontier: Some((8, 77)),
            state: Some(b"st".to_vec()),
        };
        let bytes = s.encode();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            &hex[..hex.len() - 8],
            concat!(
                "4250414b534e4150",
                "0100",
                "0000",
                "02000000", // magic, version, reserved, projection version
                "0900000000000000",
                "0800000000000000",
                "4d00000000000000", // through, frontier
                "01",
                "02000000",
                "7374", // has_state, len, state
            )
        );
        assert_eq!(Snapshot::decode(&bytes), Ok(s));
        for i in 0..bytes.len() {
            let mut d = bytes.clone();
            d[i] ^= 1;
            assert!(Snapshot::decode(&d).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..cut]).is_err());
        }
    }
}
