//! batpak: an embedded, sync-first event store.
//!
//! Open a directory, append typed events durably through a blocking API, read them
//! back. Every event is linked into a per-entity blake3 hash chain and may name the
//! event that caused it and the workflow it belongs to.
//!
//! ```
//! use batpak::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, EventPayload, Debug, PartialEq)]
//! #[batpak(category = 1, type_id = 1)]
//! struct Deposited { cents: u64 }
//!
//! # fn main() -> batpak::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path())?;
//! let account = Coordinate::new("account:7", "bank:demo")?;
//! let receipt = store.append(&account, &Deposited { cents: 500 })?;
//! let event = store.get(receipt.event_id)?.expect("just appended");
//! assert_eq!(event.decode::<Deposited>()?, Deposited { cents: 500 });
//! store.close()?;
//! # Ok(())
//! # }
//! ```

// Lets the derive's `::batpak::...` paths resolve inside this crate's own tests.
extern crate self as batpak;

mod backup;
mod builder;
mod cache;
mod chain;
mod checkpoint;
mod coordinate;
mod decide;
mod delivery;
mod dir;
mod error;
mod event;
mod format;
mod gate;
mod graph;
mod hash;
mod id;
mod index;
mod kind;
mod open;
mod options;
mod projection;
mod query;
mod receipt;
mod redact;
mod registry;
mod report;
mod segment;
mod sign;
mod store;
mod sync;
mod verify;
mod writer;

pub use backup::Backup;
/// `#[derive(EventPayload)]` with `#[batpak(category = C, type_id = T, version = V)]`.
#[cfg(feature = "derive")]
pub use batpak_derive::EventPayload;
/// `#[derive(EventSourced)]`: a `Projection` from `#[batpak(events(Payload => handler))]`.
#[cfg(feature = "derive")]
pub use batpak_derive::EventSourced;
pub use builder::StoreBuilder;
pub use cache::DEFAULT_PROJECTION_CACHE;
pub use coordinate::{Coordinate, MAX_COORDINATE_LEN};
pub use delivery::cursor::{Cursor, CursorStart, MAX_CURSOR_NAME};
pub use delivery::reactor::{
    on_kind, OnError, Reactions, ReactorHandle, ReactorOptions, ReactorPosition, ReactorSkipped,
    ReactorState, ReactorStatus, REACTOR_POSITION_KIND, REACTOR_SKIP_KIND,
};
pub use delivery::transaction::Transaction;
pub use delivery::watch::Watch;
pub use delivery::{RecvError, Subscription, DEFAULT_LAG_LIMIT};
pub use error::{CoordinateRule, Error, Result};
pub use event::{Batch, EventPayload, PayloadValue, RawPayload, StoredEvent};
pub use format::{Encoding, MAX_PAYLOAD_LEN};
pub use gate::{
    gate, Committed, DecideOptions, Decision, Denial, Gate, GateOutcome, GateReceipt, GateSet,
    Proposal, RecordedBypass, RecordedDenial, TraceEntry, BYPASS_KIND, DENIAL_KIND, PANICKED,
};
pub use graph::{CausalGraph, ChainBreak, ChainWalk, EdgeKind, GraphEdge, GraphNode};
pub use hash::Hash;
pub use id::EventId;
pub use kind::EventKind;
pub use open::{IndexSource, OpenReport};
pub use options::{AppendOptions, Cause, ExpectedVersion, Frontier, SyncPolicy, Watermark};
pub use projection::{Freshness, Projection};
pub use query::Region;
pub use receipt::{
    AppendReceipt, ReceiptCheck, ReceiptField, RECEIPT_MESSAGE_LEN, SIGNED_RECEIPT_LEN,
};
pub use redact::{Redaction, REDACTION_KIND};
pub use registry::KindCollision;
pub use report::{
    CacheStatus, ChainWalkReport, Check, EventRef, Finding, InputFrontier, ObservedFreshness,
    OutputHash, ProjectionRun, Report, ReportBody, ReportMetadata, RequestedFreshness, SnapshotRef,
    SourceRef, Verification, VerifyFinding, WalkFinding,
};
pub use segment::recovery::TailCut;
pub use sign::{KeyId, Signature, Signed, SigningKey, VerifyingKey};
pub use store::{Stats, Store, DEFAULT_SEGMENT_SIZE};
pub use verify::{Anchor, AnchorCheck, ANCHOR_MESSAGE_LEN};

/// What the derive's generated code refers to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::KindRegistration;
    pub use inventory;
}

/// The names a first program needs: `use batpak::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "derive")]
    pub use crate::EventSourced;
    pub use crate::{
        gate, AppendOptions, Batch, Coordinate, DecideOptions, Decision, Denial, EventKind,
        EventPayload, ExpectedVersion, Freshness, GateSet, Projection, Proposal, RawPayload,
        Region, SigningKey, Store, StoredEvent, SyncPolicy,
    };
}
