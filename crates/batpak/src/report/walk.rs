//! The body of a chain-walk report: the verified ancestry of one event.

use serde::{Deserialize, Serialize};

use super::ReportBody;

/// The body of a chain-walk report: verified ancestry from an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainWalkReport {
    /// Events whose links were checked.
    pub checked: u64,
    /// The event the walk started from (newest).
    pub first: Option<EventRef>,
    /// The oldest event reached.
    pub last: Option<EventRef>,
    /// blake3 (keyed, "batpak 2026 chain walk v1") of the walked event hashes in walk
    /// order, in hex: two walks over the same chain give the same digest.
    pub digest: String,
    /// Sorted.
    pub findings: Vec<WalkFinding>,
}

/// An event named in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// Its id, in the standard UUID form.
    pub id: String,
    /// Its sequence.
    pub sequence: u64,
    /// Its version within the entity.
    pub version: u64,
}

/// A notable fact about a chain walk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WalkFinding {
    /// A link does not verify: `event`'s stored `prev_hash` is not its predecessor's hash.
    HashMismatch {
        /// The event whose link is broken.
        event: String,
        /// Its predecessor, if it has one.
        predecessor: Option<String>,
    },
    /// The walk stopped at its limit before the entity's first event.
    TruncatedByLimit,
}

impl ReportBody for ChainWalkReport {
    const KIND: &'static str = "chain-walk";
}
