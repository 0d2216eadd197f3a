//! The index checkpoint file, `index.ckpt`: the index columns as of a watermark, so
//! open loads them and scans only the segment bytes after the watermark.
//!
//! ```text
//! offset  size  field
//! 0       8     magic            "BPAKCKPT"
//! 8       2     format_version   CHECKPOINT_FORMAT_VERSION
//! 10      6     reserved         zero
//! 16      16    store_id         the store the segments belong to
//! 32      8     events           n: events covered (sequences 1..=n)
//! 40      8     segment          watermark: the segment holding the end of event n
//! 48      8     offset           watermark: the byte after event n's record
//! 56      8     last_timestamp   timestamp of event n (0 when n = 0)
//! 64      16    last_id          id of event n (zero when n = 0)
//! 80      8     body_len
//! 88      4     body_crc         CRC32C of the body
//! 92      4     header_crc       CRC32C of bytes [0, 92)
//! 96      ...   body, little-endian throughout:
//!               segments:     u32 count, then (number u64, durable length u64) per
//!                             segment: sealed ones whole, the watermark segment up to the
//!                             watermark offset, later ones their header (older files
//!                             stop at the watermark segment)
//!               ids:          n x 16 bytes
//!               locations:    n x u64
//!               entity_of:    n x u32
//!               scope_of:     n x u32
//!               kinds:        n x u16
//!               entity names: u32 count, then (u16 length, bytes) each
//!               scope names:  the same
//!               causation:    u64 count, then (sequence u64, cause [16]) each
//!               correlation:  u64 count, then (sequence u64, correlation [16]) each
//!               idempotency:  u64 count, then (digest [16], sequence u64) each
//!               (version 2 only:)
//!               sequences:    n x u64, the sequence of each column position
//!               bases:        u32 count, then u64 each: each entity's base version
//! ```
//!
//! Version 1: the first format; columns are at `sequence - 1`, every base is 0.
//! Version 2: a history with gaps (compaction removed events): the same, then the
//! sequence of each position and the entities' base versions. A checkpoint of a dense
//! history is still written as version 1, byte for byte.

use std::mem::size_of;

use super::record::{read_u32, read_u64};

pub(crate) const MAGIC: [u8; 8] = *b"BPAKCKPT";
pub(crate) const CHECKPOINT_FORMAT_VERSION: u16 = 2;
/// The version a dense history is written as.
const DENSE_FORMAT_VERSION: u16 = 1;

const VERSION_OFFSET: usize = MAGIC.len();
const STORE_ID_OFFSET: usize = VERSION_OFFSET + size_of::<u16>() + 6;
const EVENTS_OFFSET: usize = STORE_ID_OFFSET + size_of::<[u8; 16]>();
const SEGMENT_OFFSET: usize = EVENTS_OFFSET + size_of::<u64>();
const WATERMARK_OFFSET: usize = SEGMENT_OFFSET + size_of::<u64>();
const LAST_TIMESTAMP_OFFSET: usize = WATERMARK_OFFSET + size_of::<u64>();
const LAST_ID_OFFSET: usize = LAST_TIMESTAMP_OFFSET + size_of::<u64>();
pub(crate) const BODY_LEN_OFFSET: usize = LAST_ID_OFFSET + size_of::<[u8; 16]>();
pub(crate) const BODY_CRC_OFFSET: usize = BODY_LEN_OFFSET + size_of::<u64>();
pub(crate) const HEADER_CRC_OFFSET: usize = BODY_CRC_OFFSET + size_of::<u32>();
/// Length of the fixed header; the body follows.
pub(crate) const HEADER_LEN: usize = HEADER_CRC_OFFSET + size_of::<u32>();

/// Everything a checkpoint holds, decoded. Columns are indexed by position: by
/// `sequence - 1` unless `sequences` names each position's sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub store_id: [u8; 16],
    pub segment: u64,
    pub offset: u64,
    pub last_timestamp_ns: u64,
    pub last_id: u128,
    /// (segment number, length covered) for every segment up to the watermark segment.
    pub segments: Vec<(u64, u64)>,
    pub ids: Vec<u128>,
    pub locations: Vec<u64>,
    pub entity_of: Vec<u32>,
    pub scope_of: Vec<u32>,
    pub kinds: Vec<u16>,
    pub entity_names: Vec<String>,
    pub scope_names: Vec<String>,
    pub causation: Vec<(u64, u128)>,
    pub correlation: Vec<(u64, u128)>,
    pub idempotency: Vec<([u8; 16], u64)>,
    /// Each position's sequence; empty for a dense history (version 1).
    pub sequences: Vec<u64>,
    /// Each entity's base version; empty when all are 0.
    pub entity_bases: Vec<u64>,
}

impl Checkpoint {
    /// The sequence of the last event it covers (0 when none): the count, unless the
    /// history has gaps.
    pub(crate) fn last_sequence(&self) -> u64 {
        self.sequences
            .last()
            .copied()
            .unwrap_or(self.ids.len() as u64)
    }

    /// The file's bytes (a copy; the store writes with `into_bytes`).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.clone().into_bytes()
    }

    /// The body's length in bytes, exactly (so the output is allocated once).
    fn body_len(&self) -> usize {
        let n = self.ids.len();
        let names = |names: &[String]| {
            4 + names
                .iter()
                .map(|name| 2 + name.len().min(usize::from(u16::MAX)))
                .sum::<usize>()
        };
        let gaps = !self.sequences.is_empty() || !self.entity_bases.is_empty();
        4 + 16 * self.segments.len()
            + n * (16 + 8 + 4 + 4 + 2)
            + names(&self.entity_names)
            + names(&self.scope_names)
            + 8
            + 24 * self.causation.len()
            + 8
            + 24 * self.correlation.len()
            + 8
            + 24 * self.idempotency.len()
            + if gaps {
                8 * n + 4 + 8 * self.entity_bases.len()
            } else {
                0
            }
    }

    /// The file's bytes, giving up each column once it is written, into an output
    /// allocated once at its exact size: encoding holds the exported columns and the
    /// output (twice the file), where a body encoded apart, copied into the file and
    /// grown past its estimate held four times it.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        let n = self.ids.len();
        let expected = HEADER_LEN + self.body_len();
        let mut out = Vec::with_capacity(expected);
        out.resize(HEADER_LEN, 0); // filled once the body is known
        put_u32(&mut out, self.segments.len());
        for &(number, len) in &self.segments {
            out.extend_from_slice(&number.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        for id in std::mem::take(&mut self.ids) {
            out.extend_from_slice(&id.to_be_bytes());
        }
        for loc in std::mem::take(&mut self.locations) {
            out.extend_from_slice(&loc.to_le_bytes());
        }
        for e in std::mem::take(&mut self.entity_of) {
            out.extend_from_slice(&e.to_le_bytes());
        }
        for s in std::mem::take(&mut self.scope_of) {
            out.extend_from_slice(&s.to_le_bytes());
        }
        for k in std::mem::take(&mut self.kinds) {
            out.extend_from_slice(&k.to_le_bytes());
        }
        for names in [
            std::mem::take(&mut self.entity_names),
            std::mem::take(&mut self.scope_names),
        ] {
            put_u32(&mut out, names.len());
            for name in names {
                let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
            }
        }
        for pairs in [
            std::mem::take(&mut self.causation),
            std::mem::take(&mut self.correlation),
        ] {
            out.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
            for (seq, id) in pairs {
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.idempotency.len() as u64).to_le_bytes());
        for (digest, seq) in std::mem::take(&mut self.idempotency) {
            out.extend_from_slice(&digest);
            out.extend_from_slice(&seq.to_le_bytes());
        }
        let gaps = !self.sequences.is_empty() || !self.entity_bases.is_empty();
        if gaps {
            // Positions without a named sequence (never written so) read as dense.
            for i in 0..n {
                let seq = self.sequences.get(i).copied().unwrap_or(i as u64 + 1);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            put_u32(&mut out, self.entity_bases.len());
            for base in &self.entity_bases {
                out.extend_from_slice(&base.to_le_bytes());
            }
        }
        let version = if gaps {
            CHECKPOINT_FORMAT_VERSION
        } else {
            DENSE_FORMAT_VERSION
        };
        debug_assert_eq!(out.len(), expected, "body_len disagrees with the encoder");
        let body_len = (out.len() - HEADER_LEN) as u64;
        let body_crc = crc32c::crc32c(&out[HEADER_LEN..]);
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&version.to_le_bytes());
        header.extend_from_slice(&[0; 6]);
        header.extend_from_slice(&self.store_id);
        header.extend_from_slice(&(n as u64).to_le_bytes());
        header.extend_from_slice(&self.segment.to_le_bytes());
        header.extend_from_slice(&self.offset.to_le_bytes());
        header.extend_from_slice(&self.last_timestamp_ns.to_le_bytes());
        header.extend_from_slice(&self.last_id.to_be_bytes());
        header.extend_from_slice(&body_len.to_le_bytes());
        header.extend_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&header[..HEADER_CRC_OFFSET]);
        header.extend_from_slice(&header_crc.to_le_bytes());
        debug_assert_eq!(header.len(), HEADER_LEN);
        out[..HEADER_LEN].copy_from_slice(&header);
        out
    }

    /// Decodes a checkpoint file. The error says why it cannot be used.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| format!("{} bytes, shorter than the header", bytes.len()))?;
        if header[..VERSION_OFFSET] != MAGIC {
            return Err("not a checkpoint (bad magic)".into());
        }
        let version = u16::from_le_bytes([header[VERSION_OFFSET], header[VERSION_OFFSET + 1]]);
        if !(DENSE_FORMAT_VERSION..=CHECKPOINT_FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "format version {version}, this build reads {DENSE_FORMAT_VERSION} to {CHECKPOINT_FORMAT_VERSION}"
            ));
        }
        let stored = read_u32(header, HEADER_CRC_OFFSET);
        let computed = crc32c::crc32c(&header[..HEADER_CRC_OFFSET]);
        if stored != computed {
            return Err(format!(
                "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        let body_len = usize::try_from(read_u64(header, BODY_LEN_OFFSET)).unwrap_or(usize::MAX);
        let body = &bytes[HEADER_LEN..];
        if body.len() != body_len {
            return Err(format!(
                "body is {} bytes, header says {body_len}",
                body.len()
            ));
        }
        let stored = read_u32(header, BODY_CRC_OFFSET);
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(format!(
                "body checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        let n = usize::try_from(read_u64(header, EVENTS_OFFSET)).unwrap_or(usize::MAX);
        let mut r = Reader { body, at: 0 };
        let mut c = Checkpoint {
            store_id: header[STORE_ID_OFFSET..EVENTS_OFFSET]
                .try_into()
                .map_err(|_| "store id".to_string())?,
            segment: read_u64(header, SEGMENT_OFFSET),
            offset: read_u64(header, WATERMARK_OFFSET),
            last_timestamp_ns: read_u64(header, LAST_TIMESTAMP_OFFSET),
            last_id: u128::from_be_bytes(r_array(header, LAST_ID_OFFSET)),
            ..Checkpoint::default()
        };
        let segments = r.u32()? as usize;
        for _ in 0..segments {
            c.segments.push((r.u64()?, r.u64()?));
        }
        // Check the column sizes up front so a bad count cannot make us allocate wildly.
        n.checked_mul(16 + 8 + 4 + 4 + 2)
            .filter(|&len| len <= body.len() - r.at)
            .ok_or_else(|| format!("{n} events do not fit in the body"))?;
        c.ids = column(r.take(n * 16)?, u128::from_be_bytes);
        c.locations = column(r.take(n * 8)?, u64::from_le_bytes);
        c.entity_of = column(r.take(n * 4)?, u32::from_le_bytes);
        c.scope_of = column(r.take(n * 4)?, u32::from_le_bytes);
        c.kinds = column(r.take(n * 2)?, u16::from_le_bytes);
        c.entity_names = r.names()?;
        c.scope_names = r.names()?;
        c.causation = r.id_pairs()?;
        c.correlation = r.id_pairs()?;
        let keys = r.count(24)?;
        for _ in 0..keys {
            c.idempotency.push((r.array::<16>()?, r.u64()?));
        }
        if version == CHECKPOINT_FORMAT_VERSION {
            c.sequences = column(
                r.take(n.checked_mul(8).ok_or("sequence column")?)?,
                u64::from_le_bytes,
            );
            let bases = r.u32()? as usize;
            let len = bases.checked_mul(8).ok_or("entity bases")?;
            c.entity_bases = column(r.take(len)?, u64::from_le_bytes);
        }
        if r.at != body.len() {
            return Err(format!(
                "{} bytes left after the last field",
                body.len() - r.at
            ));
        }
        Ok(c)
    }
}

/// Decodes a column of fixed-size values.
fn column<T, const N: usize>(bytes: &[u8], decode: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut a = [0u8; N];
            a.copy_from_slice(chunk);
            decode(a)
        })
        .collect()
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn r_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.body.len())
            .ok_or_else(|| format!("body ends before byte {} + {n}", self.at))?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.array::<2>().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array::<4>().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array::<8>().map(u64::from_le_bytes)
    }

    /// A u64 count of items of `item_len` bytes each, checked against what is left.
    fn count(&mut self, item_len: usize) -> Result<usize, String> {
        let n = usize::try_from(self.u64()?).unwrap_or(usize::MAX);
        n.checked_mul(item_len)
            .filter(|&len| len <= self.body.len() - self.at)
            .map(|_| n)
            .ok_or_else(|| format!("{n} items do not fit in the body"))
    }

    fn names(&mut self) -> Result<Vec<String>, String> {
        let n = self.u32()? as usize;
        let mut out = Vec::with_capacity(n.min(self.body.len() - self.at));
        for _ in 0..n {
            let len = usize::from(self.u16()?);
            let bytes = self.take(len)?;
            let name = std::str::from_utf8(bytes).map_err(|e| format!("name: {e}"))?;
            out.push(name.to_string());
        }
        Ok(out)
    }

    fn id_pairs(&mut self) -> Result<Vec<(u64, u128)>, String> {
        let n = self.count(24)?;
        (0..n)
            .map(|_| Ok((self.u64()?, u128::from_be_bytes(self.array::<16>()?))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            store_id: [7; 16],
            segment: 2,
            offset: 300,
            last_timestamp_ns: 99,
            last_id: 0x22,
            segments: vec![(1, 4096), (2, 300)],
            ids: vec![0x11, 0x22],
            locations: vec![(1 << 40) | 64, (2 << 40) | 64],
            entity_of: vec![0, 1],
            scope_of: vec![0, 0],
            kinds: vec![0x1001, 0x2002],
            entity_names: vec!["a".into(), "b:1".into()],
            scope_names: vec!["s".into()],
            causation: vec![(2, 0x11)],
            correlation: vec![(2, 0x11)],
            idempotency: vec![([3; 16], 1)],
            sequences: Vec::new(),
            entity_bases: Vec::new(),
        }
    }

    #[test]
    fn layout_offsets_are_as_documented() {
        assert_eq!(STORE_ID_OFFSET, 16);
        assert_eq!(BODY_LEN_OFFSET, 80);
        assert_eq!(HEADER_LEN, 96);
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(Checkpoint::decode(&c.encode()), Ok(c));
        let empty = Checkpoint::default();
        assert_eq!(Checkpoint::decode(&empty.encode()), Ok(empty));
    }

    /// Pins the header bytes and the body layout of a small checkpoint.
    #[test]
    fn golden_bytes() {
        let bytes = sample().encode();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let header = &hex[..HEADER_LEN * 2];
        assert_eq!(
            &header[..HEADER_LEN * 2 - 16],
            concat!(
                "4250414b434b5054",
                "0100",
                "000000000000",                     // magic, version, reserved
                "07070707070707070707070707070707", // store id
                "0200000000000000",                 // events
                "0200000000000000",
                "2c01000000000000",                 // watermark segment, offset
                "6300000000000000",                 // last timestamp
                "00000000000000000000000000000022", // last id
                "db00000000000000",                 // body length 219
            )
        );
        let body = &hex[HEADER_LEN * 2..];
        assert_eq!(
            body,
            concat!(
                "02000000",
                "0100000000000000",
                "0010000000000000",
                "0200000000000000",
                "2c01000000000000", // segments
                "00000000000000000000000000000011",
                "00000000000000000000000000000022",
                "4000000000010000",
                "4000000000020000", // locations
                "00000000",
                "01000000",
                "00000000",
                "00000000", // entity_of, scope_of
                "0110",
                "0220", // kinds
                "02000000",
                "0100",
                "61",
                "0300",
                "623a31", // entity names
                "01000000",
                "0100",
                "73", // scope names
                "0100000000000000",
                "0200000000000000",
                "00000000000000000000000000000011",
                "0100000000000000",
                "0200000000000000",
                "00000000000000000000000000000011",
                "0100000000000000",
                "03030303030303030303030303030303",
                "0100000000000000",
            )
        );
    }

    #[test]
    fn every_damage_is_named() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert!(Checkpoint::decode(&damaged).is_err(), "flip at {i}");
        }
        let mut future = bytes.clone();
        future[VERSION_OFFSET] = 3;
        assert!(Checkpoint::decode(&future)
            .unwrap_err()
            .contains("version 3"));
    }

    /// A history with gaps is version 2: the version 1 body, then each position's
    /// sequence and the entities' base versions. Pinned byte for byte after the
    /// version 1 part.
    #[test]
    fn golden_bytes_of_a_history_with_gaps() {
        let dense = sample().encode();
        let gapped = Checkpoint {
            sequences: vec![3, 9],
            entity_bases: vec![2, 0],
            ..sample()
        };
        let bytes = gapped.encode();
        assert_eq!(&bytes[VERSION_OFFSET..VERSION_OFFSET + 2], &[2, 0]);
        let hex: String = bytes[dense.len()..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            concat!(
                "0300000000000000",
                "0900000000000000", // sequences of positions 0 and 1
                "02000000",         // two bases
                "0200000000000000",
                "0000000000000000",
            )
        );
        assert_eq!(&bytes[HEADER_LEN..dense.len()], &dense[HEADER_LEN..]);
        assert_eq!(Checkpoint::decode(&bytes), Ok(gapped));
        // A truncated version 2 tail is named, not misread.
        let mut short = bytes.clone();
        short.truncate(bytes.len() - 4);
        let body_len = (short.len() - HEADER_LEN) as u64;
        short[BODY_LEN_OFFSET..BODY_LEN_OFFSET + 8].copy_from_slice(&body_len.to_le_bytes());
        let crc = crc32c::crc32c(&short[HEADER_LEN..]);
        short[BODY_CRC_OFFSET..BODY_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        let hcrc = crc32c::crc32c(&short[..HEADER_CRC_OFFSET]);
        short[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].copy_from_slice(&hcrc.to_le_bytes());
        assert!(Checkpoint::decode(&short)
            .unwrap_err()
            .contains("body ends"));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = Checkpoint::decode(&bytes);
        }
    }
}
