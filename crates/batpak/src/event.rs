//! What an event looks like to callers: the typed payload trait, stored events and
//! append receipts.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::chain::Hash;
use crate::coordinate::Coordinate;
use crate::error::{Error, Result};
use crate::format::Encoding;
use crate::id::EventId;
use crate::kind::EventKind;

/// A Rust type stored as an event payload: its kind and schema version, and serde for
/// the bytes (MessagePack with named fields).
///
/// ```
/// use batpak::{EventKind, EventPayload};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderPlaced { sku: String, qty: u32 }
/// impl EventPayload for OrderPlaced {
///     const KIND: EventKind = EventKind::custom(1, 1);
/// }
/// ```
pub trait EventPayload: Serialize + DeserializeOwned {
    /// The kind every event of this type is stored under.
    const KIND: EventKind;
    /// The payload schema version written with each event. Default 1.
    const SCHEMA_VERSION: u16 = 1;

    /// Encodes the payload as MessagePack with named fields.
    fn encode(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(self).map_err(|e| Error::Encode {
            kind: Self::KIND,
            message: e.to_string(),
        })
    }
}

/// What an accepted append returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppendReceipt {
    /// The id the writer assigned.
    pub event_id: EventId,
    /// Store-wide commit position.
    pub sequence: u64,
    /// Position within the entity, from 0.
    pub version: u64,
    /// Unix nanoseconds the writer stamped.
    pub timestamp_ns: u64,
    /// The event's hash (its link in the entity's chain).
    pub event_hash: Hash,
    /// The hash of the entity's previous event, zero for the first.
    pub prev_hash: Hash,
}

/// An event read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event id.
    pub id: EventId,
    /// Store-wide commit position.
    pub sequence: u64,
    /// Position within the entity, from 0.
    pub version: u64,
    /// Unix nanoseconds the writer stamped.
    pub timestamp_ns: u64,
    /// The event kind.
    pub kind: EventKind,
    /// Entity and scope.
    pub coordinate: Coordinate,
    /// The event that caused this one, if any.
    pub causation: Option<EventId>,
    /// The workflow this event belongs to, if any.
    pub correlation: Option<EventId>,
    /// How `payload` is encoded.
    pub encoding: Encoding,
    /// The payload schema version written with the event.
    pub schema_version: u16,
    /// The payload bytes as the caller's codec produced them.
    pub payload: Vec<u8>,
    /// This event's hash.
    pub event_hash: Hash,
    /// The entity's previous event hash, zero for the first.
    pub prev_hash: Hash,
}

impl StoredEvent {
    /// Decodes the payload as `P`, checking the kind first.
    pub fn decode<P: EventPayload>(&self) -> Result<P> {
        if self.kind != P::KIND {
            return Err(self.decode_error(format!(
                "stored kind {} is not the requested type's kind {}",
                self.kind,
                P::KIND
            )));
        }
        match self.encoding {
            Encoding::MessagePack => {
                rmp_serde::from_slice(&self.payload).map_err(|e| self.decode_error(e.to_string()))
            }
            other => {
                Err(self.decode_error(format!("payload encoding {other:?} is not MessagePack")))
            }
        }
    }

    /// The receipt this event's append returned.
    pub fn receipt(&self) -> AppendReceipt {
        AppendReceipt {
            event_id: self.id,
            sequence: self.sequence,
            version: self.version,
            timestamp_ns: self.timestamp_ns,
            event_hash: self.event_hash,
            prev_hash: self.prev_hash,
        }
    }

    fn decode_error(&self, message: String) -> Error {
        Error::Decode {
            id: self.id,
            kind: self.kind,
            message,
        }
    }
}
