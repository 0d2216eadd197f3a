//! What a copy of a compacted store needs to be checked without the store: the
//! compaction manifest, as public facts. Compaction removes events (sequences get
//! gaps, entities start past version 0); the manifest says which gaps are removals,
//! where each entity's kept history starts and what hash it links to, the kept hash
//! over the kept events and the running hash at the end of the compacted range. The
//! store's `Compacted` record names the manifest's blake3, so a copy that holds the
//! record and the manifest bytes can check both.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::hash::Hash;
use crate::store::Store;

/// One entity's removed prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactedHorizon {
    /// The entity.
    pub entity: String,
    /// Its first kept version: the versions below it were removed.
    pub first_kept: u64,
    /// The event hash of version `first_kept - 1`, which the first kept event's
    /// `prev_hash` names.
    pub hash: Hash,
}

/// The facts of a compaction manifest (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionProof {
    /// Compactions of the store so far.
    pub generation: u64,
    /// Every sequence up to it lies in the compacted range.
    pub through: u64,
    /// The store's running hash after sequence `through`.
    pub running_hash: Hash,
    /// The kept hash ([`KeptHash`]) over the kept events up to `through`.
    pub kept_hash: Hash,
    /// Events kept up to `through`.
    pub kept: u64,
    /// The entities with a removed prefix, by name.
    pub horizons: Vec<CompactedHorizon>,
    /// blake3 of the manifest's bytes: what the store's `Compacted` record names.
    pub digest: Hash,
}

impl CompactionProof {
    /// Decodes manifest bytes (as [`Store::compaction_manifest`] gives them); the
    /// error names what is wrong with them.
    pub fn from_manifest(bytes: &[u8]) -> Result<CompactionProof> {
        let m = Manifest::decode(bytes).map_err(|detail| Error::Malformed {
            what: "compaction manifest",
            detail,
        })?;
        Ok(CompactionProof {
            generation: m.generation,
            through: m.through,
            running_hash: m.running,
            kept_hash: m.kept_hash,
            kept: m.kept,
            horizons: m
                .horizons
                .into_iter()
                .map(|h| CompactedHorizon {
                    entity: h.entity,
                    first_kept: h.first_kept,
                    hash: h.hash,
                })
                .collect(),
            digest: Hash::from_bytes(*blake3::hash(bytes).as_bytes()),
        })
    }

    /// The horizon of `entity`, when compaction removed a prefix of it.
    pub fn horizon(&self, entity: &str) -> Option<&CompactedHorizon> {
        self.horizons
            .binary_search_by(|h| h.entity.as_str().cmp(entity))
            .ok()
            .map(|i| &self.horizons[i])
    }

    /// Whether a gap before `found`, where `expected` was the next sequence, is one
    /// the compaction explains (every missing sequence lies in its range).
    pub fn explains_gap(&self, expected: u64, found: u64) -> bool {
        crate::format::manifest::explains_gap(expected, found, self.through)
    }
}

/// The kept hash a compaction manifest records, computed outside the store: start at
/// [`KeptHash::default`] and add each kept event up to `through` in sequence order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeptHash {
    value: Hash,
}

impl KeptHash {
    /// Adds the kept event at `sequence` with hash `event_hash`.
    pub fn push(&mut self, sequence: u64, event_hash: &Hash) {
        self.value = crate::chain::next_kept(&self.value, sequence, event_hash);
    }

    /// The kept hash after the events added so far.
    pub fn value(&self) -> Hash {
        self.value
    }
}

impl Store {
    /// The bytes of the store's compaction manifest (`None` when it was never
    /// compacted): what a replica downstream needs, with the `Compacted` record
    /// naming their blake3, to check a copy that lacks the removed events.
    pub fn compaction_manifest(&self) -> Option<Vec<u8>> {
        self.manifest().map(|m| m.encode())
    }

    /// Compactions of the store so far (0: never compacted); cheap, for watching.
    pub fn compaction_generation(&self) -> u64 {
        self.manifest().map_or(0, |m| m.generation)
    }
}
