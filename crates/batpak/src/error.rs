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
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call failed.
    Io {
        /// What batpak was doing (`"open segment"`, `"fsync"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Another process (or another `Store` in this process) holds the directory.
    Locked {
        /// The lock file that could not be taken.
        path: PathBuf,
    },
    /// A write was attempted on a store opened with `open_read_only`.
    ReadOnly,
    /// An earlier fsync or write failed; the store refuses writes until it is reopened.
    Poisoned {
        /// The failure that poisoned the store.
        cause: String,
    },
    /// An entity or scope breaks a rule.
    InvalidCoordinate {
        /// `"entity"` or `"scope"`.
        component: &'static str,
        /// The rule that was broken.
        rule: CoordinateRule,
    },
    /// A category or type id out of range.
    InvalidKind {
        /// What was wrong.
        reason: String,
    },
    /// A user append named a kind of the reserved category 0.
    ReservedKind {
        /// The rejected kind.
        kind: EventKind,
    },
    /// The entity's current version is not what the append expected.
    VersionConflict {
        /// The entity appended to.
        entity: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The entity's version at the time (`None`: the entity has no events).
        actual: Option<u64>,
    },
    /// An idempotency key was reused for different content.
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The event the key first produced.
        original: EventId,
    },
    /// A causation id names no event of this store (nor an earlier item of the batch).
    UnknownCausation {
        /// The unknown cause.
        causation: EventId,
    },
    /// A batch item names itself, a later item, or an item outside the batch as its cause.
    InvalidBatchReference {
        /// The item carrying the reference.
        item: usize,
        /// The item it names.
        cause: usize,
    },
    /// The same idempotency key appears twice in one batch.
    DuplicateIdempotencyKey {
        /// The key.
        key: String,
    },
    /// A payload or batch is larger than the format allows.
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes (or items).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A batch with no items.
    EmptyBatch,
    /// Stored bytes fail a check: checksum, framing, a field out of range.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damaged record or header within the file.
        offset: u64,
        /// What check failed, with expected and actual values where they exist.
        detail: String,
    },
    /// A file was written by a format version this build does not read.
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// A typed payload could not be encoded.
    Encode {
        /// The kind being encoded.
        kind: EventKind,
        /// The codec's message.
        message: String,
    },
    /// A stored payload could not be decoded as the requested type.
    Decode {
        /// The event.
        id: EventId,
        /// The stored kind.
        kind: EventKind,
        /// What went wrong.
        message: String,
    },
    /// A configuration value is out of range.
    InvalidConfig {
        /// The setting and the rule it broke.
        reason: String,
    },
    /// Two payload types in this program claim the same kind (see
    /// `StoreBuilder::allow_kind_collisions`).
    KindCollision {
        /// The contested kind.
        kind: EventKind,
        /// The types that claim it.
        types: Vec<&'static str>,
    },
    /// A projection's `apply` failed; the report describes the failed run.
    ProjectionFailed {
        /// The report of the run, with the error text in its diagnostics.
        report: Box<crate::report::Report<crate::report::ProjectionRun>>,
        /// The error `apply` returned.
        cause: Box<Error>,
    },
    /// Text that should be an event id is not one.
    InvalidEventId {
        /// The text.
        text: String,
    },
    /// No event has this id.
    NoSuchEvent {
        /// The id asked for.
        id: EventId,
    },
    /// The event cannot be redacted.
    CannotRedact {
        /// The event.
        id: EventId,
        /// Why not.
        reason: String,
    },
    /// The event's payload was redacted (erased), so it cannot be decoded.
    Redacted {
        /// The event.
        id: EventId,
        /// Its kind.
        kind: EventKind,
    },
    /// A durable cursor was reopened with a region other than the one it was created
    /// with.
    CursorRegionMismatch {
        /// The cursor.
        name: String,
        /// The region it was created with (`Region::canonical`).
        stored: String,
        /// The region asked for now.
        requested: String,
    },
    /// Another handle of this cursor is open.
    CursorInUse {
        /// The cursor.
        name: String,
    },
    /// A cursor commit names a sequence it may not.
    InvalidCommit {
        /// The cursor.
        name: String,
        /// The sequence given.
        sequence: u64,
        /// Why it is refused.
        reason: String,
    },
    /// A wait ended before the watermark reached the sequence.
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
    /// Bytes or text that should encode a key, signature, receipt or anchor do not.
    Malformed {
        /// What was being decoded (`"receipt"`, `"verifying key"`, ...).
        what: &'static str,
        /// What was wrong, with expected and actual values where they exist.
        detail: String,
    },
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
            CoordinateRule::ControlCharacter { offset } => {
                write!(f, "contains a NUL or control character at byte {offset}")
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "{op} failed for {}: {source}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "store is locked by another writer (lock file {})",
                path.display()
            ),
            Error::ReadOnly => write!(f, "store was opened read-only; writes are refused"),
            Error::Poisoned { cause } => write!(
                f,
                "store refuses writes after an earlier I/O failure ({cause}); reopen it"
            ),
            Error::InvalidCoordinate { component, rule } => {
                write!(f, "invalid {component}: {rule}")
            }
            Error::InvalidKind { reason } => write!(f, "invalid event kind: {reason}"),
            Error::ReservedKind { kind } => write!(
                f,
                "event kind {kind} is in category 0, which is reserved for the store's own records"
            ),
            Error::VersionConflict {
                entity,
                expected,
                actual,
            } => {
                let actual = match actual {
                    Some(v) => format!("version {v}"),
                    None => "no events".to_string(),
                };
                write!(
                    f,
                    "version conflict on entity {entity:?}: expected {expected}, entity has {actual}"
                )
            }
            Error::IdempotencyConflict { key, original } => write!(
                f,
                "idempotency key {key:?} was already used for different content (event {original})"
            ),
            Error::UnknownCausation { causation } => {
                write!(f, "causation {causation} names no event in this store")
            }
            Error::InvalidBatchReference { item, cause } => write!(
                f,
                "batch item {item} names item {cause} as its cause; a cause must be an earlier item"
            ),
            Error::DuplicateIdempotencyKey { key } => {
                write!(
                    f,
                    "idempotency key {key:?} appears more than once in the batch"
                )
            }
            Error::TooLarge { what, size, limit } => {
                write!(f, "{what} is {size}, over the limit of {limit}")
            }
            Error::EmptyBatch => write!(f, "a batch needs at least one item"),
            Error::Corrupt {
                path,
                offset,
                detail,
            } => write!(
                f,
                "corrupt data in {} at offset {offset}: {detail}",
                path.display()
            ),
            Error::UnsupportedFormat {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}; this build reads version {supported}",
                path.display()
            ),
            Error::Encode { kind, message } => {
                write!(f, "could not encode payload of kind {kind}: {message}")
            }
            Error::Decode { id, kind, message } => {
                write!(f, "could not decode event {id} (kind {kind}): {message}")
            }
            Error::InvalidConfig { reason } => write!(f, "invalid configuration: {reason}"),
            Error::KindCollision { kind, types } => write!(
                f,
                "event kind {kind} is claimed by more than one payload type: {}",
                types.join(", ")
            ),
            Error::ProjectionFailed { report, cause } => write!(
                f,
                "projection {} failed on entity {:?}: {cause}",
                report.body.projection, report.body.entity
            ),
            Error::InvalidEventId { text } => write!(f, "{text:?} is not an event id (UUID)"),
            Error::NoSuchEvent { id } => write!(f, "no event has id {id}"),
            Error::CannotRedact { id, reason } => write!(f, "cannot redact event {id}: {reason}"),
            Error::Redacted { id, kind } => write!(
                f,
                "event {id} (kind {kind}) was redacted: its payload is erased"
            ),
            Error::CursorRegionMismatch {
                name,
                stored,
                requested,
            } => write!(
                f,
                "cursor {name:?} was created over region {stored}, not {requested}"
            ),
            Error::CursorInUse { name } => write!(f, "cursor {name:?} is already open"),
            Error::InvalidCommit {
                name,
                sequence,
                reason,
            } => write!(f, "cursor {name:?} cannot commit sequence {sequence}: {reason}"),
            Error::Timeout {
                watermark,
                wanted,
                reached,
                waited,
            } => write!(
                f,
                "timed out after {waited:?} waiting for the {watermark} watermark to reach sequence {wanted}; it reached {reached}"
            ),
            Error::Malformed { what, detail } => write!(f, "malformed {what}: {detail}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::ProjectionFailed { cause, .. } => Some(cause.as_ref()),
            _ => None,
        }
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
