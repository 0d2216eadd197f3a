//! The body of a projection-run report (DESIGN section 8): what a run read, how
//! fresh its result is, where it came from, and the hash of what it produced.

use serde::{Deserialize, Serialize};

use super::ReportBody;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionRun {
    /// `Projection::NAME`.
    pub projection: String,
    /// `Projection::VERSION`.
    pub projection_version: u32,
    /// The entity projected.
    pub entity: String,
    /// What the run read: the entity, then each consumed kind (sorted).
    pub sources: Vec<SourceRef>,
    /// What the caller asked for.
    pub requested_freshness: RequestedFreshness,
    /// What the result is.
    pub observed_freshness: ObservedFreshness,
    /// The last event the result reflects.
    pub input_frontier: Option<InputFrontier>,
    /// blake3 of the state's canonical encoding.
    pub output_hash: OutputHash,
    /// How the cache was used.
    pub cache: CacheStatus,
    /// The persisted snapshot the run started from, if one was used.
    pub snapshot: Option<SnapshotRef>,
    /// Notable facts, sorted.
    pub findings: Vec<Finding>,
}

/// A persisted snapshot a run started from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The entity sequence the snapshot reflects.
    pub sequence: u64,
    /// blake3 of the snapshot file, in hex.
    pub blake3: String,
}

impl ReportBody for ProjectionRun {
    const KIND: &'static str = "projection-run";
}

/// Something a projection run read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceRef {
    /// The entity's events.
    Entity {
        /// The entity.
        name: String,
    },
    /// Every kind (the projection names none).
    AllKinds,
    /// One consumed kind.
    Kind {
        /// Its category.
        category: u8,
        /// Its type id.
        type_id: u16,
    },
}

/// The freshness a caller asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestedFreshness {
    /// Every visible event.
    Consistent,
    /// A cached state no older than this.
    MaybeStale {
        /// The bound, in milliseconds.
        max_age_ms: u64,
    },
}

/// The freshness a run delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ObservedFreshness {
    /// Reflects every visible event.
    Fresh,
    /// A cached state within the allowed age, not checked for newer events.
    StaleAllowed,
    /// Nothing to project: the entity has no event the projection consumes.
    NotApplicable,
    /// Unknown.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// The last event a result reflects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFrontier {
    /// Its sequence.
    pub sequence: u64,
    /// Its timestamp (Unix nanoseconds, as stored).
    pub timestamp_ns: u64,
}

/// The hash of a run's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutputHash {
    /// blake3 (keyed, "batpak 2026 projection output v1") of the state's JSON, in hex.
    Hash {
        /// The hex digest.
        blake3: String,
    },
    /// There is no state.
    NotApplicable,
    /// The state could not be hashed.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// How a run used the projection cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheStatus {
    /// A cached state was the starting point.
    Hit,
    /// No cached state: folded from the first event.
    Miss,
    /// The cache is disabled.
    Bypassed,
    /// Unknown.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// A notable fact about a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// A cached state was returned without looking for newer events.
    StaleStateUsed,
    /// The input frontier is not known.
    InputFrontierUnknown,
    /// The output hash could not be computed.
    OutputHashUnavailable,
    /// The cache status is not known.
    CacheStatusUnavailable,
    /// The freshness is not known.
    FreshnessUnavailable,
    /// The projection returned an error.
    ProjectionFailed,
    /// A persisted snapshot was found but not used (the reason is in the diagnostics).
    SnapshotIgnored,
}
