//! What an event looks like to callers: the typed payload trait, stored events and
//! append receipts.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::chain;
use crate::coordinate::Coordinate;
use crate::error::{Error, Result};
use crate::format::record::RecordHeader;
use crate::format::Encoding;
use crate::hash::Hash;
use crate::id::EventId;
use crate::kind::EventKind;
use crate::receipt::AppendReceipt;

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

    /// Turns a payload stored under schema version `from` into version `from + 1`.
    /// Called once per step when a stored version is older than `SCHEMA_VERSION`. The
    /// default has no steps, so reading an older version is an error naming it. With
    /// the derive: `#[batpak(..., version = 3, upcast = my_fn)]`.
    fn upcast(from: u16, value: PayloadValue) -> std::result::Result<PayloadValue, String> {
        let _ = value;
        Err(format!("no upcaster from schema version {from}"))
    }

    /// Encodes the payload as MessagePack with named fields.
    fn encode(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(self).map_err(|e| Error::Encode {
            kind: Self::KIND,
            message: e.to_string(),
        })
    }
}

/// The generic form of a payload that upcasters work on.
pub type PayloadValue = serde_json::Value;

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
    /// The payload bytes as the caller's codec produced them (empty once redacted).
    pub payload: Vec<u8>,
    /// The entity's previous event hash, zero for the first.
    pub prev_hash: Hash,
    /// What `event_hash` needs beyond the public fields.
    pub(crate) proof: HashInputs,
}

/// The stored facts the event hash covers that `StoredEvent` does not show: computing
/// the hash costs two blake3 calls, so reads leave it to `event_hash()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HashInputs {
    pub flags: u16,
    pub idempotency: Option<[u8; 16]>,
    pub payload: PayloadProof,
}

/// How the payload enters the hash: salt and bytes, or the digest left by redaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PayloadProof {
    Salt([u8; 16]),
    Digest(Hash),
}

impl StoredEvent {
    /// Decodes the payload as `P`, checking the kind first. MessagePack and JSON
    /// payloads both decode. A payload stored under an older schema version is
    /// upcast step by step (`EventPayload::upcast`) to `P::SCHEMA_VERSION` first; a
    /// missing step, or a stored version newer than `P`'s, is an error, never a
    /// silent misread.
    pub fn decode<P: EventPayload>(&self) -> Result<P> {
        if self.is_redacted() && self.kind == P::KIND {
            return Err(Error::Redacted {
                id: self.id,
                kind: self.kind,
            });
        }
        if self.kind != P::KIND {
            return Err(self.decode_error(format!(
                "stored kind {} is not the requested type's kind {}",
                self.kind,
                P::KIND
            )));
        }
        let stored = self.schema_version;
        if stored > P::SCHEMA_VERSION {
            return Err(self.decode_error(format!(
                "stored schema version {stored} is newer than this build's version {} of {}",
                P::SCHEMA_VERSION,
                std::any::type_name::<P>()
            )));
        }
        if stored == P::SCHEMA_VERSION {
            return self.decode_bytes();
        }
        let mut value: PayloadValue = self.decode_bytes()?;
        for from in stored..P::SCHEMA_VERSION {
            value = P::upcast(from, value).map_err(|e| {
                self.decode_error(format!(
                    "upcasting from schema version {from} to {}: {e}",
                    from + 1
                ))
            })?;
        }
        serde_json::from_value(value).map_err(|e| {
            self.decode_error(format!(
                "after upcasting from version {stored} to {}: {e}",
                P::SCHEMA_VERSION
            ))
        })
    }

    /// Like [`decode`](Self::decode), but `Ok(None)` when the event is of another kind:
    /// for folds over streams that mix kinds.
    pub fn decode_if<P: EventPayload>(&self) -> Result<Option<P>> {
        if self.kind == P::KIND {
            self.decode().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The payload bytes decoded by their stored encoding.
    fn decode_bytes<T: DeserializeOwned>(&self) -> Result<T> {
        match self.encoding {
            Encoding::MessagePack => {
                rmp_serde::from_slice(&self.payload).map_err(|e| self.decode_error(e.to_string()))
            }
            Encoding::Json => {
                serde_json::from_slice(&self.payload).map_err(|e| self.decode_error(e.to_string()))
            }
            Encoding::Opaque => Err(self
                .decode_error("the payload is opaque bytes, not MessagePack or JSON".to_string())),
        }
    }

    /// Whether the payload was redacted: erased with its salt, only its digest kept.
    /// `payload` is then empty and `decode` fails with `Error::Redacted`.
    pub fn is_redacted(&self) -> bool {
        matches!(self.proof.payload, PayloadProof::Digest(_))
    }

    /// This event's hash, recomputed from the stored record: its link in the entity's
    /// chain (the next event's `prev_hash`).
    pub fn event_hash(&self) -> Hash {
        let header = RecordHeader {
            sequence: self.sequence,
            timestamp_ns: self.timestamp_ns,
            id: self.id,
            version: self.version,
            kind: self.kind,
            flags: self.proof.flags,
            encoding: self.encoding,
            schema_version: self.schema_version,
            causation: self.causation,
            correlation: self.correlation,
            idempotency: self.proof.idempotency,
            prev_hash: self.prev_hash,
        };
        let digest = match self.proof.payload {
            PayloadProof::Salt(salt) => chain::payload_digest(&salt, &self.payload),
            PayloadProof::Digest(digest) => digest,
        };
        chain::event_hash(
            &header,
            self.coordinate.entity(),
            self.coordinate.scope(),
            &digest,
        )
    }

    /// The receipt this event's append returned, unsigned (the hash is recomputed).
    pub fn receipt(&self) -> AppendReceipt {
        AppendReceipt {
            event_id: self.id,
            sequence: self.sequence,
            version: self.version,
            timestamp_ns: self.timestamp_ns,
            kind: self.kind,
            coordinate_digest: self.coordinate.digest(),
            event_hash: self.event_hash(),
            prev_hash: self.prev_hash,
            signature: None,
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
