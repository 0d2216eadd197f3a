//! The body of a verification report: what a scan of the segments checked and found.

use serde::{Deserialize, Serialize};

use super::ReportBody;

/// The body of a verification report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Segment files read.
    pub segments: u64,
    /// Records checked.
    pub events: u64,
    /// Bytes of segment data read.
    pub bytes: u64,
    /// The last sequence checked.
    pub last_sequence: u64,
    /// The running hash after it, in hex; `None` for a region, which does not cover
    /// the whole history.
    pub running_hash: Option<String>,
    /// Events checked whose payload was redacted (their digest is what is hashed).
    pub redacted: u64,
    /// What failed, in file order.
    pub findings: Vec<VerifyFinding>,
    /// Entities compaction removed a prefix of: where each kept history starts and
    /// which recorded record removed the rest (empty for a store never compacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub horizons: Vec<KeptHistory>,
}

/// Where an entity's kept history starts after compaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptHistory {
    /// The entity.
    pub entity: String,
    /// Its first kept version: the versions below it were removed.
    pub first_version: u64,
    /// The id of the retention or deletion record whose rule hid them.
    pub removed_by: Option<String>,
}

impl ReportBody for Verification {
    const KIND: &'static str = "verification";
}

impl Verification {
    /// Whether nothing failed.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One failed check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyFinding {
    /// What failed.
    pub check: Check,
    /// The segment file name (no directory).
    pub file: String,
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// The record's sequence, when it could be read.
    pub sequence: Option<u64>,
    /// The record's event id, when it could be read.
    pub event: Option<String>,
    /// Expected vs actual, in words.
    pub detail: String,
}

/// The kind of check that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Check {
    /// The record does not decode (checksum, framing, fields). The rest of its file
    /// cannot be located and is not checked.
    Record,
    /// The sequence is not the next one.
    Sequence,
    /// The record's `prev_hash` is not its entity's previous event hash.
    ChainLink,
    /// The index disagrees with the record: a column (id, location, entity, scope,
    /// kind, version), a posting (scope, kind, causation, correlation), an
    /// idempotency key, or a posting count. The remedy is a rebuild: remove
    /// `index.ckpt` and reopen.
    Index,
    /// A redaction record names an event whose payload is still present, or a
    /// payload is erased with no redaction record naming its event.
    Redaction,
    /// The compacted range disagrees with its manifest: kept events missing, added
    /// or changed, a manifest no compaction record names, or a removed prefix no
    /// recorded policy or deletion explains.
    Compaction,
    /// Bytes after the last complete record of the last segment, never acknowledged
    /// durable, that this read-only open ignored (a read-write open cuts them).
    Tail,
}
