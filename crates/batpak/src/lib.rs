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

#[cfg(not(unix))]
compile_error!("batpak supports Unix only (it uses positional file I/O and flock)");

/// `log::warn!` with the `log` feature; otherwise the arguments are only type-checked.
macro_rules! log_warn {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        log::warn!($($arg)*);
        #[cfg(not(feature = "log"))]
        let _ = format_args!($($arg)*);
    }};
}

/// `log::info!` with the `log` feature; otherwise the arguments are only type-checked.
macro_rules! log_info {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        log::info!($($arg)*);
        #[cfg(not(feature = "log"))]
        let _ = format_args!($($arg)*);
    }};
}

// Lets the derive's `::batpak::...` paths resolve inside this crate's own tests.
extern crate self as batpak;

/// The README's Rust examples, compiled and run as doc tests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub mod readme {}

mod backup;
mod builder;
mod cache;
mod catalogue;
mod chain;
mod checkpoint;
mod clock;
mod compact;
mod coordinate;
mod copy_proof;
mod decide;
mod delivery;
mod dir;
mod error;
mod event;
mod events;
mod export;
mod fault;
mod follow;
mod format;
#[cfg(feature = "fuzzing")]
mod fuzz_api;
pub mod gate;
pub mod graph;
mod hash;
mod id;
mod index;
mod keys;
mod kind;
mod kinds;
mod lifecycle;
mod lifecycle_records;
mod live;
mod maps;
mod metadata;
mod open;
mod options;
mod projection;
mod query;
mod receipt;
mod redact;
mod registry;
pub mod repair;
pub mod report;
mod retention;
mod salvage;
mod segment;
mod set;
mod sign;
mod store;
mod sync;
mod verify;
mod view;
mod writer;

pub use backup::Backup;
/// `#[derive(EventPayload)]` with `#[batpak(category = C, type_id = T, version = V)]`.
#[cfg(feature = "derive")]
pub use batpak_derive::EventPayload;
/// `#[derive(EventSourced)]`: a `Projection` from `#[batpak(events(Payload => handler))]`.
#[cfg(feature = "derive")]
pub use batpak_derive::EventSourced;
pub use builder::StoreBuilder;
pub use catalogue::{EntityInfo, KindInfo, ScopeInfo};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compact::Compaction;
pub use coordinate::Coordinate;
pub use delivery::cursor::{Cursor, CursorStart};
pub use delivery::transaction::Transaction;
pub use delivery::watch::Watch;
pub use delivery::{RecvError, Subscription};
pub use error::{CoordinateRule, Error, Result};
pub use event::{Batch, EventPayload, PayloadValue, RawPayload, StoredEvent};
pub use events::Events;
pub use export::ExportLine;
pub use format::Encoding;
pub use hash::Hash;
pub use id::EventId;
pub use kind::EventKind;
pub use lifecycle_records::Compacted;
pub use metadata::Metadata;
pub use open::{IndexSource, OpenReport};
pub use options::{
    AppendOptions, Cause, ExpectedVersion, Frontier, IdempotencyWindow, SyncPolicy, Watermark,
    CAUSE_STORE_KEY,
};
pub use projection::{Freshness, Projection};
pub use query::Region;
pub use receipt::AppendReceipt;
pub use redact::Redaction;
pub use registry::{KindCollision, KindRename};
pub use retention::{
    DeleteMode, Deletion, RetentionLimits, RetentionPolicy, RetentionRule, RetentionSelector,
};
pub use salvage::{SalvageLoss, SalvageReport, SALVAGED_FROM_KEY, SALVAGE_REPORT_FILE};
pub use segment::recovery::TailCut;
pub use set::{Route, SetLayout, SetReceipt, StoreSet, StoreSetBuilder, SET_LAYOUT_FILE};
pub use store::{Stats, Store};
pub use view::EventView;
pub use writer::latency::SyncLatency;

/// Reactors: handlers that turn events of a region into new events exactly once
/// ([`Store::react`]).
pub mod reactor {
    pub use crate::delivery::reactor::{
        on_kind, OnError, Reactions, ReactorHandle, ReactorOptions, ReactorPosition,
        ReactorSkipped, ReactorState, ReactorStatus,
    };
}

/// Proof: signing keys, signatures, receipt checks and anchors (signed checkpoints of
/// the whole history).
pub mod proof {
    pub use crate::copy_proof::{CompactedHorizon, CompactionProof, KeptHash};
    pub use crate::receipt::{ReceiptCheck, ReceiptField};
    pub use crate::sign::{KeyId, Signature, Signed, SigningKey, VerifyingKey};
    pub use crate::verify::{verify_dir, Anchor, AnchorCheck, RunningHash};
}

/// Fault injection at the storage seam, for the crate's own crash and fault tests
/// (feature `fault-injection`, never on by default). Not part of the public API.
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod __fault {
    pub use crate::fault::{Cut, Fault, FaultPlan, Image, Op, PowerLog, PowerOp};
}

/// Decoder entry points for the fuzz targets in `fuzz/` and the decoder property test
/// (feature `fuzzing`, never on by default). Not part of the public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::fuzz_api::*;
}

/// What the derive's generated code refers to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::KindRegistration;
    pub use inventory;
}

/// The names a first program needs: `use batpak::prelude::*;`.
pub mod prelude {
    pub use crate::gate::{gate, DecideOptions, Decision, Denial, GateSet, Proposal};
    pub use crate::proof::SigningKey;
    #[cfg(feature = "derive")]
    pub use crate::EventSourced;
    pub use crate::{
        AppendOptions, Batch, Coordinate, EventKind, EventPayload, EventView, ExpectedVersion,
        Freshness, Projection, RawPayload, Region, Store, StoredEvent, SyncPolicy,
    };
}

// `Store` and `Error` cross threads: share a store in an `Arc`, send errors anywhere.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
    send_sync::<Error>();
};
