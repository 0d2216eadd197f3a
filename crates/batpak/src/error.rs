//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::id::EventId;
use crate::kind::EventKind;
use crate::options::ExpectedVersion;

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in batpak. Each variant names what failed and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call failed.
    #[error("{op} failed for {}: {source}", .path.display())]
    Io {
        /// What batpak was doing (`"open segment"`, `"fsync"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Another process (or another `Store` in this process) holds the directory.
    #[error("store is locked by another writer (lock file {})", .path.display())]
    Locked {
        /// The lock file that could not be taken.
        path: PathBuf,
    },
    /// A write was attempted on a store opened with `open_read_only`.
    #[error("store was opened read-only; writes are refused")]
    ReadOnly,
    /// An earlier fsync or write failed; the store refuses writes until it is reopened.
    ///
    /// A failed fsync may have dropped dirty pages the kernel will never write again
    /// ("fsyncgate"), so retrying cannot be trusted; reopening rescans what is really
    /// on disk.
    #[error("store refuses writes after an earlier I/O failure ({source}); reopen it")]
    Poisoned {
        /// The failure that poisoned the store.
        source: std::sync::Arc<Error>,
    },
    /// An entity or scope breaks a rule.
    #[error("invalid {component}: {rule}")]
    InvalidCoordinate {
        /// `"entity"` or `"scope"`.
        component: &'static str,
        /// The rule that was broken.
        rule: CoordinateRule,
    },
    /// Event metadata breaks a limit (`Metadata::validate`).
    #[error("invalid metadata{}: {rule}", key_text(.key))]
    InvalidMetadata {
        /// The key concerned (empty when the limit is on the whole map).
        key: String,
        /// The limit that was broken.
        rule: String,
    },
    /// A category or type id out of range.
    #[error("invalid event kind: {reason}")]
    InvalidKind {
        /// What was wrong.
        reason: String,
    },
    /// A user append named a kind of the reserved category 0.
    #[error("event kind {kind} is in category 0, which is reserved for the store's own records")]
    ReservedKind {
        /// The rejected kind.
        kind: EventKind,
    },
    /// The entity's current version is not what the append expected.
    #[error("version conflict on entity {entity:?}: expected {expected}, entity has {}", version_text(.actual))]
    VersionConflict {
        /// The entity appended to.
        entity: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The entity's version at the time (`None`: the entity has no events).
        actual: Option<u64>,
    },
    /// An idempotency key was reused for different content.
    #[error("idempotency key {key:?} was already used for different content (event {original})")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The event the key first produced.
        original: EventId,
    },
    /// A causation id names no event of this store (nor an earlier item of the batch).
    #[error("causation {causation} names no event in this store")]
    UnknownCausation {
        /// The unknown cause.
        causation: EventId,
    },
    /// A batch item names itself, a later item, or an item outside the batch as its cause.
    #[error("batch item {item} names item {cause} as its cause; a cause must be an earlier item")]
    InvalidBatchReference {
        /// The item carrying the reference.
        item: usize,
        /// The item it names.
        cause: usize,
    },
    /// An event imported with its identity kept does not continue the store: its
    /// sequence, timestamp, version, chain link, batch flag or hash is not what the
    /// store holds before it.
    #[error("preserved event at sequence {sequence} (id {id}) refused: {detail}")]
    NotPreserved {
        /// The event's sequence.
        sequence: u64,
        /// The event's id.
        id: EventId,
        /// What did not match, expected against actual.
        detail: String,
    },
    /// The same idempotency key appears twice in one batch.
    #[error("idempotency key {key:?} appears more than once in the batch")]
    DuplicateIdempotencyKey {
        /// The key.
        key: String,
    },
    /// A payload or batch is larger than the format allows.
    #[error("{what} is {size}, over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes (or items).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A batch with no items.
    #[error("a batch needs at least one item")]
    EmptyBatch,
    /// Stored bytes fail a check: checksum, framing, a field out of range.
    #[error("corrupt data in {} at offset {offset}: {detail}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damaged record or header within the file.
        offset: u64,
        /// What check failed, with expected and actual values where they exist.
        detail: String,
    },
    /// A file was written by a format version this build does not read.
    #[error("{} has format version {found}; this build reads versions up to {supported}", .path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// A typed payload could not be encoded.
    #[error("could not encode payload of kind {kind}: {source}")]
    Encode {
        /// The kind being encoded.
        kind: EventKind,
        /// The codec's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored payload could not be decoded as the requested type.
    #[error("could not decode event {id} (kind {kind}): {message}")]
    Decode {
        /// The event.
        id: EventId,
        /// The stored kind.
        kind: EventKind,
        /// What went wrong.
        message: String,
        /// The codec's error, when the codec failed.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// The setting and the rule it broke.
        reason: String,
    },
    /// Two payload types in this program claim the same kind (see
    /// `StoreBuilder::allow_kind_collisions`).
    #[error("event kind {kind} is claimed by more than one payload type: {}", .types.join(", "))]
    KindCollision {
        /// The contested kind.
        kind: EventKind,
        /// The types that claim it.
        types: Vec<&'static str>,
    },
    /// A projection's `apply` failed; the report describes the failed run.
    #[error("projection {} failed on entity {:?}: {cause}", .report.body.projection, .report.body.entity)]
    ProjectionFailed {
        /// The report of the run, with the error text in its diagnostics.
        report: Box<crate::report::Report<crate::report::ProjectionRun>>,
        /// The error `apply` returned.
        #[source]
        cause: Box<Error>,
    },
    /// Text that should be an event id is not one.
    #[error("{text:?} is not an event id (UUID)")]
    InvalidEventId {
        /// The text.
        text: String,
    },
    /// No event has this id.
    #[error("no event has id {id}")]
    NoSuchEvent {
        /// The id asked for.
        id: EventId,
    },
    /// The event cannot be redacted.
    #[error("cannot redact event {id}: {reason}")]
    CannotRedact {
        /// The event.
        id: EventId,
        /// Why not.
        reason: String,
    },
    /// The event's payload was redacted (erased), so it cannot be decoded.
    #[error("event {id} (kind {kind}) was redacted: its payload is erased")]
    Redacted {
        /// The event.
        id: EventId,
        /// Its kind.
        kind: EventKind,
    },
    /// A durable cursor was reopened with a region other than the one it was created
    /// with.
    #[error("cursor {name:?} was created over region {stored}, not {requested}")]
    CursorRegionMismatch {
        /// The cursor.
        name: String,
        /// The region it was created with (`Region::canonical`).
        stored: String,
        /// The region asked for now.
        requested: String,
    },
    /// Another handle of this cursor is open.
    #[error("cursor {name:?} is already open")]
    CursorInUse {
        /// The cursor.
        name: String,
    },
    /// A cursor commit names a sequence it may not.
    #[error("cursor {name:?} cannot commit sequence {sequence}: {reason}")]
    InvalidCommit {
        /// The cursor.
        name: String,
        /// The sequence given.
        sequence: u64,
        /// Why it is refused.
        reason: String,
    },
    /// A wait ended before the watermark reached the sequence.
    #[error("timed out after {waited:?} waiting for the {watermark} watermark to reach sequence {wanted}; it reached {reached}")]
    Timeout {
        /// The watermark waited on.
        watermark: crate::options::Watermark,
        /// The sequence it had to reach.
        wanted: u64,
        /// Where it was when the wait ended.
        reached: u64,
        /// How long the wait took.
        waited: std::time::Duration,
    },
    /// The entity was deleted with `DeleteMode::Hard`: it takes no more events.
    #[error("entity {entity:?} was deleted (hard, {}): it takes no more events", deleted_through(*.through_version))]
    EntityDeleted {
        /// The entity.
        entity: String,
        /// Its newest version when it was deleted; `None` when it had no events (its
        /// name was reserved before its first).
        through_version: Option<u64>,
    },
    /// No entity has this name (it has never had an event), or the operation does
    /// not apply to it.
    #[error("cannot {operation} entity {entity:?}: {reason}")]
    NoSuchEntity {
        /// What was asked (`"delete"`).
        operation: &'static str,
        /// The entity named.
        entity: String,
        /// Why it was refused.
        reason: String,
    },
    /// Bytes or text that should encode a key, signature, receipt or anchor do not.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded (`"receipt"`, `"verifying key"`, ...).
        what: &'static str,
        /// What was wrong, with expected and actual values where they exist.
        detail: String,
    },
}

impl Error {
    /// A stable, snake_case name of the error's kind (`"version_conflict"`,
    /// `"corrupt"`, ...), for programs that branch on it: the CLI's `--json` errors
    /// and the server's error bodies carry it. A code is never renamed or reused.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Locked { .. } => "locked",
            Error::ReadOnly => "read_only",
            Error::Poisoned { .. } => "poisoned",
            Error::InvalidCoordinate { .. } => "invalid_coordinate",
            Error::InvalidMetadata { .. } => "invalid_metadata",
            Error::InvalidKind { .. } => "invalid_kind",
            Error::ReservedKind { .. } => "reserved_kind",
            Error::VersionConflict { .. } => "version_conflict",
            Error::IdempotencyConflict { .. } => "idempotency_conflict",
            Error::UnknownCausation { .. } => "unknown_causation",
            Error::InvalidBatchReference { .. } => "invalid_batch_reference",
            Error::NotPreserved { .. } => "not_preserved",
            Error::DuplicateIdempotencyKey { .. } => "duplicate_idempotency_key",
            Error::TooLarge { .. } => "too_large",
            Error::EmptyBatch => "empty_batch",
            Error::Corrupt { .. } => "corrupt",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::Encode { .. } => "encode",
            Error::Decode { .. } => "decode",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::KindCollision { .. } => "kind_collision",
            Error::ProjectionFailed { .. } => "projection_failed",
            Error::InvalidEventId { .. } => "invalid_event_id",
            Error::NoSuchEvent { .. } => "no_such_event",
            Error::CannotRedact { .. } => "cannot_redact",
            Error::Redacted { .. } => "redacted",
            Error::CursorRegionMismatch { .. } => "cursor_region_mismatch",
            Error::CursorInUse { .. } => "cursor_in_use",
            Error::InvalidCommit { .. } => "invalid_commit",
            Error::Timeout { .. } => "timeout",
            Error::Malformed { .. } => "malformed",
            Error::EntityDeleted { .. } => "entity_deleted",
            Error::NoSuchEntity { .. } => "no_such_entity",
        }
    }
}

/// The rule a coordinate component broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoordinateRule {
    /// The component is empty.
    Empty,
    /// The component is longer than [`crate::MAX_COORDINATE_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The component contains NUL or another control character.
    ControlCharacter {
        /// Byte offset of the character.
        offset: usize,
    },
    /// An entity under `batpak:`, which holds the store's own records; appends
    /// there are the store's.
    Reserved,
}

impl fmt::Display for CoordinateRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordinateRule::Empty => write!(f, "must not be empty"),
            CoordinateRule::TooLong { len } => write!(
                f,
                "is {len} bytes, longer than the limit of {} bytes",
                crate::coordinate::MAX_COORDINATE_LEN
            ),
            CoordinateRule::Reserved => write!(
                f,
                "starts with {:?}, which is reserved for the store's own records",
                crate::coordinate::STORE_ENTITY_PREFIX
            ),
            CoordinateRule::ControlCharacter { offset } => {
                write!(f, "contains a NUL or control character at byte {offset}")
            }
        }
    }
}

fn key_text(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" (key {key:?})")
    }
}

fn version_text(actual: &Option<u64>) -> String {
    match actual {
        Some(v) => format!("version {v}"),
        None => "no events".to_string(),
    }
}

/// Builds a closure that wraps an `io::Error` with the operation and path.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

/// How an `EntityDeleted` error names what the deletion covered.
fn deleted_through(version: Option<u64>) -> String {
    match version {
        Some(v) => format!("through version {v}"),
        None => "before its first event".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Golden: programs branch on these codes, so they must not drift.
    #[test]
    fn error_codes_are_stable() {
        let cases: [(Error, &str); 5] = [
            (Error::ReadOnly, "read_only"),
            (Error::EmptyBatch, "empty_batch"),
            (
                Error::VersionConflict {
                    entity: "a".into(),
                    expected: ExpectedVersion::NoStream,
                    actual: Some(0),
                },
                "version_conflict",
            ),
            (
                Error::NoSuchEvent {
                    id: EventId::from_u128(1),
                },
                "no_such_event",
            ),
            (
                Error::Malformed {
                    what: "receipt",
                    detail: String::new(),
                },
                "malformed",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e}");
        }
    }

    #[test]
    fn a_poisoned_store_names_and_keeps_its_cause() {
        let io = Error::Io {
            op: "fsync segment",
            path: PathBuf::from("segments/0000000000000001.seg"),
            source: io::Error::other("disk gone"),
        };
        let poisoned = Error::Poisoned {
            source: std::sync::Arc::new(io),
        };
        assert_eq!(
            poisoned.to_string(),
            "store refuses writes after an earlier I/O failure (fsync segment failed for \
             segments/0000000000000001.seg: disk gone); reopen it"
        );
        let cause = poisoned.source().map(ToString::to_string);
        assert_eq!(
            cause.as_deref(),
            Some("fsync segment failed for segments/0000000000000001.seg: disk gone")
        );
        let root = poisoned
            .source()
            .and_then(|s| s.source())
            .map(ToString::to_string);
        assert_eq!(root.as_deref(), Some("disk gone"));
    }

    #[test]
    fn messages_name_what_failed() {
        let conflict = Error::VersionConflict {
            entity: "order:1".into(),
            expected: ExpectedVersion::NoStream,
            actual: Some(3),
        };
        assert_eq!(
            conflict.to_string(),
            "version conflict on entity \"order:1\": expected no events, entity has version 3"
        );
        let collision = Error::KindCollision {
            kind: EventKind::custom(1, 2),
            types: vec!["a::A", "b::B"],
        };
        assert!(collision.to_string().ends_with("payload type: a::A, b::B"));
    }
}
