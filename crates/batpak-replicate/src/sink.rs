//! What a replicator ships into: an engine that keeps the events, in sequence order,
//! with its own position in the same commit as the rows.

use std::future::Future;

use batpak::proof::Anchor;
use batpak::ExportLine;

/// Why a sink could not take a batch.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// The engine failed or cannot be reached; the replicator retries with backoff.
    Unavailable(String),
    /// The sink holds something that contradicts the store (another event at a
    /// sequence it is shipping, a position past the store's frontier): retrying
    /// cannot help, and nothing is overwritten.
    Diverged(String),
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkError::Unavailable(why) => write!(f, "the sink is unavailable: {why}"),
            SinkError::Diverged(why) => write!(f, "the sink diverged from the store: {why}"),
        }
    }
}

impl std::error::Error for SinkError {}

/// An engine events are replicated into. Idempotent: shipping events it already
/// holds (the same ones, after a crash between its commit and the replicator's
/// knowing of it) changes nothing, so at-least-once shipping lands each event once.
pub trait Sink: Send {
    /// A name for logs and the status line (`postgres://host/db schema s`).
    fn describe(&self) -> String;

    /// The last sequence the sink holds, every event up to it included (0: none).
    fn position(&mut self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Stores `events` (in sequence order, all after the position), rewrites the
    /// copies of `erased` (earlier events a redaction in this batch erased: their
    /// payload goes, their hash and chain stay) and records `through` (at least the
    /// last event) as the position, in one commit.
    fn ship(
        &mut self,
        events: &[ExportLine],
        erased: &[ExportLine],
        through: u64,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Keeps `anchor` (taken of the store at a sequence the sink already holds)
    /// beside the events, so that a verifier of the copy checks the copy against it.
    /// Idempotent, like `ship`.
    fn anchor(&mut self, anchor: &Anchor) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Keeps the store's compaction manifest (`manifest`, the bytes of generation
    /// `generation`) beside the events: a copy of a compacted store lacks the removed
    /// events, and its verifier checks the gaps and horizons against it. Idempotent.
    fn compaction(
        &mut self,
        generation: u64,
        manifest: &[u8],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}
