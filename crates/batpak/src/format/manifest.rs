//! The compaction manifest, `compaction.manifest`: what compaction removed and what a
//! verifier needs to hold the kept history to account. Written whole by atomic
//! rename; its blake3 digest is carried by the `Compacted` store record that compaction
//! appends, so the manifest is itself part of the chained, anchored journal.
//!
//! ```text
//! offset  size  field
//! 0       4     crc            CRC32C of bytes [4, end)
//! 4       4     magic          "BPC1"
//! 8       16    store_id       the store's id, as in every segment header
//! 24      8     generation     u64 LE: compactions so far, from 1
//! 32      8     through        u64 LE: every sequence up to it lies in compacted segments
//! 40      8     at_ms          u64 LE: the store clock when the newest compaction chose
//! 48      32    running        the running hash after sequence `through`
//! 80      32    kept_hash      the kept hash over the events kept up to `through`
//! 112     8     kept           u64 LE: events kept up to `through`
//! 120     4     segments       u32 LE: segment entries that follow
//! 124     4     entities       u32 LE: entity entries after them
//! 128     16*s  segment entries: (number u64 LE, length u64 LE), numbers increasing;
//!               every segment up to the newest compacted one, with its exact length
//! ...           entity entries, names strictly increasing bytewise, each:
//!                 name_len u16 LE, name (UTF-8),
//!                 first_kept u64 LE     versions below it were removed
//!                 horizon [32]          event hash of version first_kept - 1
//!                 last_removed [16]     id of that event (big-endian, as stored)
//!                 cause [16]            id of the retention or deletion record that
//!                                       hid the removed prefix; zero: a built-in rule
//! ```
//!
//! Every removal is a prefix of one entity (see `index/horizon.rs`), so the entity
//! entries account for every missing sequence: the kept events up to `through` plus
//! the sum of every `first_kept` is `through`.

use crate::format::record::{read_u32, read_u64};
use crate::hash::Hash;
use crate::id::EventId;

/// The manifest's file name in the store directory.
pub(crate) const MANIFEST_FILE: &str = "compaction.manifest";

const MAGIC: &[u8; 4] = b"BPC1";
const HEADER_LEN: usize = 128;
const SEGMENT_LEN: usize = 16;
/// An entity entry without its name.
const ENTITY_FIXED: usize = 2 + 8 + 32 + 16 + 16;

/// Whether a record of sequence `found`, where `expected` was next, follows a gap a
/// compaction through `through` explains: the missing sequences all lie in its range.
/// The one rule open, the index and verification apply.
pub(crate) fn explains_gap(expected: u64, found: u64, through: u64) -> bool {
    found > expected && found - 1 <= through
}

/// One entity's removed prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Horizon {
    pub entity: String,
    /// The first version kept: versions below it were removed.
    pub first_kept: u64,
    /// The event hash of version `first_kept - 1`, which the first kept event's
    /// `prev_hash` names.
    pub hash: Hash,
    /// The id of version `first_kept - 1`.
    pub last_removed: EventId,
    /// The retention or deletion record whose rule hid the removed prefix (`None`: a
    /// built-in rule).
    pub cause: Option<EventId>,
}

/// The decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub store_id: [u8; 16],
    pub generation: u64,
    pub through: u64,
    pub at_ms: u64,
    pub running: Hash,
    pub kept_hash: Hash,
    pub kept: u64,
    /// (segment number, exact length) of every segment up to the newest compacted one.
    pub segments: Vec<(u64, u64)>,
    /// Sorted by entity name.
    pub horizons: Vec<Horizon>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let names: usize = self.horizons.iter().map(|h| h.entity.len()).sum();
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + SEGMENT_LEN * self.segments.len()
                + ENTITY_FIXED * self.horizons.len()
                + names,
        );
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.store_id);
        for n in [self.generation, self.through, self.at_ms] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(self.running.as_bytes());
        out.extend_from_slice(self.kept_hash.as_bytes());
        out.extend_from_slice(&self.kept.to_le_bytes());
        for n in [self.segments.len(), self.horizons.len()] {
            out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        }
        for (number, len) in &self.segments {
            out.extend_from_slice(&number.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        for h in &self.horizons {
            let len = u16::try_from(h.entity.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(h.entity.as_bytes());
            out.extend_from_slice(&h.first_kept.to_le_bytes());
            out.extend_from_slice(h.hash.as_bytes());
            out.extend_from_slice(&h.last_removed.to_bytes());
            out.extend_from_slice(&h.cause.map_or([0; 16], EventId::to_bytes));
        }
        crate::format::seal(&mut out);
        out
    }

    /// Decodes the file; the error says what is wrong with it and where.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        crate::format::check_sealed(bytes, HEADER_LEN, MAGIC)?;
        let mut store_id = [0; 16];
        store_id.copy_from_slice(&bytes[8..24]);
        let hash_at = |at: usize| {
            let mut h = [0u8; 32];
            h.copy_from_slice(&bytes[at..at + 32]);
            Hash::from_bytes(h)
        };
        let segment_count = read_u32(bytes, 120) as usize;
        let entity_count = read_u32(bytes, 124) as usize;
        let mut at = HEADER_LEN;
        let mut segments = Vec::with_capacity(segment_count.min(bytes.len() / SEGMENT_LEN));
        for i in 0..segment_count {
            if bytes.len() < at + SEGMENT_LEN {
                return Err(format!(
                    "segment entry {i} of {segment_count} runs past the end at offset {at}"
                ));
            }
            let entry = (read_u64(bytes, at), read_u64(bytes, at + 8));
            if let Some(&(previous, _)) = segments.last() {
                if entry.0 <= previous {
                    return Err(format!(
                        "segment numbers do not increase at offset {at}: {previous} then {}",
                        entry.0
                    ));
                }
            }
            segments.push(entry);
            at += SEGMENT_LEN;
        }
        let mut horizons: Vec<Horizon> =
            Vec::with_capacity(entity_count.min(bytes.len() / ENTITY_FIXED));
        for i in 0..entity_count {
            let short = |what: &str| {
                format!("entity entry {i} of {entity_count} runs past the end in its {what} at offset {at}")
            };
            if bytes.len() < at + 2 {
                return Err(short("name length"));
            }
            let len = usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
            if bytes.len() < at + ENTITY_FIXED + len {
                return Err(short("fields"));
            }
            let name = std::str::from_utf8(&bytes[at + 2..at + 2 + len])
                .map_err(|e| format!("entity name at offset {} is not UTF-8: {e}", at + 2))?;
            if name.is_empty() {
                return Err(format!("entity name at offset {} is empty", at + 2));
            }
            if let Some(previous) = horizons.last() {
                if name.as_bytes() <= previous.entity.as_bytes() {
                    return Err(format!(
                        "entity names do not increase at offset {at}: {:?} then {name:?}",
                        previous.entity
                    ));
                }
            }
            let fields = at + 2 + len;
            let first_kept = read_u64(bytes, fields);
            if first_kept == 0 {
                return Err(format!(
                    "entity {name:?} at offset {at} removed nothing (first kept version 0)"
                ));
            }
            let id_at = |off: usize| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&bytes[off..off + 16]);
                id
            };
            let cause = id_at(fields + 8 + 32 + 16);
            horizons.push(Horizon {
                entity: name.to_string(),
                first_kept,
                hash: hash_at(fields + 8),
                last_removed: EventId::from_bytes(id_at(fields + 8 + 32)),
                cause: (cause != [0; 16]).then(|| EventId::from_bytes(cause)),
            });
            at = fields + 8 + 32 + 16 + 16;
        }
        if at != bytes.len() {
            return Err(format!(
                "{} bytes follow the last entry at offset {at}",
                bytes.len() - at
            ));
        }
        let manifest = Manifest {
            store_id,
            generation: read_u64(bytes, 24),
            through: read_u64(bytes, 32),
            at_ms: read_u64(bytes, 40),
            running: hash_at(48),
            kept_hash: hash_at(80),
            kept: read_u64(bytes, 112),
            segments,
            horizons,
        };
        let removed = manifest
            .horizons
            .iter()
            .try_fold(manifest.kept, |sum, h| sum.checked_add(h.first_kept));
        if removed != Some(manifest.through) {
            return Err(format!(
                "{} kept events and {} removed ones do not add up to the {} compacted sequences",
                manifest.kept,
                manifest.removed(),
                manifest.through
            ));
        }
        Ok(manifest)
    }

    /// Events removed from the compacted range (every first kept version summed).
    pub(crate) fn removed(&self) -> u64 {
        self.horizons
            .iter()
            .fold(0u64, |sum, h| sum.saturating_add(h.first_kept))
    }

    /// The horizon of `entity`, if compaction removed some of it.
    pub(crate) fn horizon(&self, entity: &str) -> Option<&Horizon> {
        self.horizons
            .binary_search_by(|h| h.entity.as_str().cmp(entity))
            .ok()
            .map(|i| &self.horizons[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            store_id: [0xab; 16],
            generation: 1,
            through: 5,
            at_ms: 0x0102,
            running: Hash::from_bytes([0x11; 32]),
            kept_hash: Hash::from_bytes([0x22; 32]),
            kept: 2,
            segments: vec![(1, 0x0400)],
            horizons: vec![Horizon {
                entity: "a".into(),
                first_kept: 3,
                hash: Hash::from_bytes([0x33; 32]),
                last_removed: EventId::from_u128(0x44),
                cause: Some(EventId::from_u128(0x55)),
            }],
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn golden_bytes_and_round_trip() {
        let m = sample();
        let bytes = m.encode();
        let expected = [
            "e5d11d62".to_string(), // crc (cross-checked with a Python CRC32C)
            hex(b"BPC1"),
            "ab".repeat(16),           // store id
            "0100000000000000".into(), // generation
            "0500000000000000".into(), // through
            "0201000000000000".into(), // at_ms
            "11".repeat(32),           // running hash at `through`
            "22".repeat(32),           // kept hash
            "0200000000000000".into(), // kept
            "01000000".into(),         // one segment entry
            "01000000".into(),         // one entity entry
            "0100000000000000".into(), // segment 1
            "0004000000000000".into(), // 1024 bytes
            "0100".into(),             // name length
            hex(b"a"),
            "0300000000000000".into(), // first kept version
            "33".repeat(32),           // horizon hash
            format!("{:032x}", 0x44),  // last removed id
            format!("{:032x}", 0x55),  // cause
        ]
        .concat();
        assert_eq!(hex(&bytes), expected);
        assert_eq!(Manifest::decode(&bytes), Ok(m));
    }

    #[test]
    fn a_built_in_cause_is_zero() {
        let mut m = sample();
        m.horizons[0].cause = None;
        let bytes = m.encode();
        assert_eq!(&bytes[bytes.len() - 16..], &[0; 16]);
        assert_eq!(Manifest::decode(&bytes), Ok(m));
    }

    #[test]
    fn every_damage_is_refused() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(Manifest::decode(&bad).is_err(), "flip {at}");
        }
    }

    #[test]
    fn counts_that_do_not_add_up_are_named() {
        let mut m = sample();
        m.kept = 3;
        let err = Manifest::decode(&m.encode()).unwrap_err();
        assert!(
            err.contains("3 kept events and 3 removed ones do not add up to the 5"),
            "{err}"
        );
    }

    #[test]
    fn names_must_increase() {
        let mut m = sample();
        let mut second = m.horizons[0].clone();
        second.first_kept = 0;
        m.horizons.push(second);
        let err = Manifest::decode(&m.encode()).unwrap_err();
        assert!(err.contains("do not increase"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = Manifest::decode(&bytes);
        }

        #[test]
        fn round_trips(
            store_id: [u8; 16],
            generation: u64,
            at_ms: u64,
            kept in 0u64..1000,
            names in proptest::collection::btree_map("[a-z:]{1,12}", (1u64..1000, proptest::prelude::any::<[u8; 32]>(), proptest::prelude::any::<u128>(), proptest::prelude::any::<u128>()), 0..6),
            segments in proptest::collection::btree_map(proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(), 0..5),
        ) {
            let horizons: Vec<Horizon> = names
                .into_iter()
                .map(|(entity, (first_kept, hash, last, cause))| Horizon {
                    entity,
                    first_kept,
                    hash: Hash::from_bytes(hash),
                    last_removed: EventId::from_u128(last),
                    cause: (cause != 0).then(|| EventId::from_u128(cause)),
                })
                .collect();
            let through = kept + horizons.iter().map(|h| h.first_kept).sum::<u64>();
            let m = Manifest {
                store_id,
                generation,
                through,
                at_ms,
                running: Hash::from_bytes([1; 32]),
                kept_hash: Hash::from_bytes([2; 32]),
                kept,
                segments: segments.into_iter().collect(),
                horizons,
            };
            proptest::prop_assert_eq!(Manifest::decode(&m.encode()), Ok(m));
        }
    }
}
