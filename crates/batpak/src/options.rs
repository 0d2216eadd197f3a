//! What a caller can say about an append: expected version, causation, correlation,
//! idempotency key.

use std::fmt;

use crate::id::EventId;
use crate::metadata::Metadata;

/// The metadata key naming the store that holds an event's cause, when another store
/// does ([`AppendOptions::caused_by_in`]). An event carrying it is not refused for a
/// cause its own store lacks, on append or on a preserved import.
pub const CAUSE_STORE_KEY: &str = "batpak:cause-store";

/// The version the caller expects the entity to be at before the append.
///
/// Serde: `"any"`, `"no_stream"`, `"stream_exists"` or `{"exact": N}`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The entity must have no events yet.
    NoStream,
    /// The entity must have at least one event, of any version (one compaction removed
    /// whole still counts: its versions continue).
    StreamExists,
    /// The entity's latest event must have exactly this version.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => write!(f, "any version"),
            ExpectedVersion::NoStream => write!(f, "no events"),
            ExpectedVersion::StreamExists => write!(f, "at least one event"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

impl std::str::FromStr for ExpectedVersion {
    type Err = crate::Error;

    /// `any`, `none` (no events yet), `exists` (at least one) or a version number.
    fn from_str(text: &str) -> crate::Result<Self> {
        match text {
            "any" => Ok(ExpectedVersion::Any),
            "none" => Ok(ExpectedVersion::NoStream),
            "exists" => Ok(ExpectedVersion::StreamExists),
            n => n
                .parse()
                .map(ExpectedVersion::Exact)
                .map_err(|_| crate::Error::Malformed {
                    what: "expected version",
                    detail: format!("{n:?} is not a version (a number, `none`, `exists` or `any`)"),
                }),
        }
    }
}

impl ExpectedVersion {
    /// Whether an entity currently at `actual` (`None`: no events) satisfies this.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        }
    }
}

/// The event that caused an append.
///
/// Serde: `{"event": "<event id>"}` or `{"batch_item": N}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// An event already in the store.
    Event(EventId),
    /// An earlier item of the same batch, by its position (0-based).
    BatchItem(usize),
}

/// Options for one append. `AppendOptions::default()` checks nothing and links nothing.
///
/// Serde: an object of the five fields; a missing field takes its default.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AppendOptions {
    /// Optimistic concurrency check on the entity's version. Default: `Any`.
    pub expected_version: ExpectedVersion,
    /// The event that caused this one. It must exist (or be an earlier batch item).
    pub causation: Option<Cause>,
    /// The workflow this event belongs to, usually the id of the workflow's first event.
    pub correlation: Option<EventId>,
    /// A caller-chosen key: repeating an append with the same key and the same content
    /// returns the original receipt and writes nothing; different content is an error.
    pub idempotency_key: Option<String>,
    /// Text keys and values stored with the event (who, from where, which trace),
    /// covered by its hash. Empty by default, and then it costs nothing.
    pub metadata: Metadata,
}

impl AppendOptions {
    /// Options with only an expected version.
    pub fn expect(version: ExpectedVersion) -> Self {
        AppendOptions {
            expected_version: version,
            ..AppendOptions::default()
        }
    }

    /// Sets the expected version.
    #[must_use]
    pub fn expected_version(mut self, version: ExpectedVersion) -> Self {
        self.expected_version = version;
        self
    }

    /// Names the event that caused this one.
    #[must_use]
    pub fn caused_by(mut self, id: EventId) -> Self {
        self.causation = Some(Cause::Event(id));
        self
    }

    /// Names the event that caused this one, held by another store (`store`, a name
    /// the caller's set of stores resolves; see [`crate::StoreSet`]). The store does
    /// not look for the cause itself: the event records the name under the metadata
    /// key [`CAUSE_STORE_KEY`], covered by its hash, where walks and copies find it.
    #[must_use]
    pub fn caused_by_in(mut self, store: impl Into<String>, id: EventId) -> Self {
        self.causation = Some(Cause::Event(id));
        self.metadata.insert(CAUSE_STORE_KEY, store);
        self
    }

    /// Names an earlier item of the same batch as the cause.
    #[must_use]
    pub fn caused_by_item(mut self, item: usize) -> Self {
        self.causation = Some(Cause::BatchItem(item));
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn correlation(mut self, id: EventId) -> Self {
        self.correlation = Some(id);
        self
    }

    /// Sets one metadata entry (limits in [`Metadata::validate`], checked at append).
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// Sets the whole metadata map.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// The digest under which an idempotency key is stored.
pub(crate) fn idempotency_digest(key: &str) -> [u8; 16] {
    let full = blake3::derive_key("batpak 2026 idempotency key v1", key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// When appends reach stable storage.
///
/// Serde: `"always"`, `{"every_n": N}`, `{"interval": {"secs": S, "nanos": N}}` (the
/// `Duration` in serde's own form, exact to the nanosecond) or `"never"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Every append returns only after an fsync covers it; concurrent appenders share
    /// fsyncs (group commit). Events become visible once durable. The default.
    #[default]
    Always,
    /// The appender that brings the unsynced count to `n` syncs; appends return once
    /// written and are visible at once.
    EveryN(u32),
    /// A background thread syncs this often; appends return once written.
    Interval(std::time::Duration),
    /// The operating system decides; `Store::sync` forces it.
    Never,
}

/// How far the store has got: sequences written, on stable storage, and visible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Frontier {
    /// Newest sequence written to the segment (maybe not yet durable or visible).
    pub written: u64,
    /// Newest sequence known to be on stable storage.
    pub durable: u64,
    /// Newest sequence readers can see.
    pub visible: u64,
}

/// One of the three watermarks of a [`Frontier`].
///
/// Serde: its `Display` text, `"written"`, `"durable"` or `"visible"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Watermark {
    /// `Frontier::written`.
    Written,
    /// `Frontier::durable`.
    Durable,
    /// `Frontier::visible`.
    Visible,
}

impl Watermark {
    pub(crate) fn of(self, f: &Frontier) -> u64 {
        match self {
            Watermark::Written => f.written,
            Watermark::Durable => f.durable,
            Watermark::Visible => f.visible,
        }
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Watermark::Written => "written",
            Watermark::Durable => "durable",
            Watermark::Visible => "visible",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_versions_parse_from_their_text_forms() {
        assert_eq!(
            "any".parse::<ExpectedVersion>().unwrap(),
            ExpectedVersion::Any
        );
        assert_eq!(
            "none".parse::<ExpectedVersion>().unwrap(),
            ExpectedVersion::NoStream
        );
        assert_eq!(
            "7".parse::<ExpectedVersion>().unwrap(),
            ExpectedVersion::Exact(7)
        );
        let err = "seven".parse::<ExpectedVersion>().unwrap_err().to_string();
        assert!(err.contains("\"seven\" is not a version"), "{err}");
    }
}

/// How many idempotency keys a store remembers, so memory does not grow with
/// history. A key is forgotten once `keys` newer keys were recorded, or (with an
/// age) once a keyed event at least `age` newer than its event was recorded (by the
/// millisecond in the event ids). A retry with a forgotten key is appended as a new
/// event. The window is a rule over the journal, so a reopen (from a checkpoint or a
/// rebuild) remembers exactly the same keys. Default: the newest 1,000,000 keys, no
/// age limit (about 64 MB at the bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyWindow {
    /// At most this many keys.
    pub keys: usize,
    /// Keys whose event is older than this, counted back from the newest keyed event.
    pub age: Option<std::time::Duration>,
}

impl Default for IdempotencyWindow {
    fn default() -> Self {
        IdempotencyWindow {
            keys: 1_000_000,
            age: None,
        }
    }
}

impl IdempotencyWindow {
    /// Remember at most `keys` keys (at least one), with no age limit.
    pub fn keys(keys: usize) -> Self {
        IdempotencyWindow {
            keys: keys.max(1),
            age: None,
        }
    }

    /// Also forget keys whose event is more than `age` older than the newest keyed
    /// event.
    #[must_use]
    pub fn max_age(mut self, age: std::time::Duration) -> Self {
        self.age = Some(age);
        self
    }
}
