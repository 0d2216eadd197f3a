//! What an event looks like to callers: the typed payload trait, stored events and
//! append receipts.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::chain;
use crate::coordinate::Coordinate;
use crate::error::{Error, Result};
use crate::format::record::{PayloadField, RecordHeader, RecordView};
use crate::format::Encoding;
use crate::hash::Hash;
use crate::id::EventId;
use crate::kind::EventKind;
use crate::metadata::Metadata;
use crate::options::AppendOptions;
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
    /// The kind's name, which the store records on the first append of the kind so
    /// tools show `1:2 OrderPaid`. The derive sets the type's name (or
    /// `#[batpak(name = "...")]`); empty (the default) records no name.
    const NAME: &'static str = "";

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
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the payload's MessagePack encoding (named fields) to `out`: what
    /// `encode` and [`Batch::push`] use. On an error `out` may hold part of it.
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        rmp_serde::encode::write_named(out, self).map_err(|e| Error::Encode {
            kind: Self::KIND,
            source: Box::new(e),
        })
    }
}

/// The generic form of a payload that upcasters work on.
pub type PayloadValue = serde_json::Value;

/// An event read back from the store.
///
/// Serde: an object of every field in declaration order; ids, kind and hashes as
/// text, `payload` as lowercase hex in human-readable formats (JSON) and as bytes in
/// binary ones, and last `proof`, the stored facts the event hash covers beyond the
/// public fields (`{"flags": N, "idempotency": hex or null, "payload": {"salt": hex}
/// or {"digest": hex}}`), so a deserialised event computes the same
/// [`event_hash`](Self::event_hash) and [`receipt`](Self::receipt). Deserialising
/// proves nothing: compare the hash with one you trust.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    /// Text keys and values stored with the event, covered by its hash (empty when
    /// the append gave none).
    #[serde(default)]
    pub metadata: Metadata,
    /// How `payload` is encoded.
    pub encoding: Encoding,
    /// The payload schema version written with the event.
    pub schema_version: u16,
    /// The payload bytes as the caller's codec produced them (empty once redacted).
    #[serde(with = "payload_bytes")]
    pub payload: Vec<u8>,
    /// The entity's previous event hash, zero for the first.
    pub prev_hash: Hash,
    /// What `event_hash` needs beyond the public fields.
    pub(crate) proof: HashInputs,
}

/// The stored facts the event hash covers that `StoredEvent` does not show: computing
/// the hash costs two blake3 calls, so reads leave it to `event_hash()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct HashInputs {
    pub flags: u16,
    #[serde(with = "hex16::option")]
    pub idempotency: Option<[u8; 16]>,
    pub payload: PayloadProof,
}

/// How the payload enters the hash: salt and bytes, or the digest left by redaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PayloadProof {
    Salt(#[serde(with = "hex16")] [u8; 16]),
    Digest(Hash),
}

/// Serde for the 16-byte proof fields (salt, idempotency digest): 32 lowercase hex
/// digits in every format.
mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::hash::hex;

    pub(super) fn serialize<S: Serializer>(
        bytes: &[u8; 16],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 16], D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text)
    }

    fn parse<E: serde::de::Error>(text: &str) -> Result<[u8; 16], E> {
        hex::decode(text).ok_or_else(|| E::custom(format!("{text:?} is not 32 hex digits")))
    }

    /// The same for an optional field: `null` when absent.
    pub(super) mod option {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            bytes: &Option<[u8; 16]>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(bytes) => serializer.serialize_some(&hex::encode(bytes)),
                None => serializer.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<[u8; 16]>, D::Error> {
            Option::<String>::deserialize(deserializer)?
                .map(|text| parse(&text))
                .transpose()
        }
    }
}

/// Serde for payload bytes: lowercase hex in human-readable formats, bytes otherwise.
mod payload_bytes {
    use std::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::hash::hex;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Bytes)
        } else {
            deserializer.deserialize_byte_buf(Bytes)
        }
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("payload bytes, or an even number of hex digits")
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<Vec<u8>, E> {
            hex::decode_vec(text).ok_or_else(|| {
                E::custom(format!(
                    "payload text of {} characters is not an even number of hex digits",
                    text.len()
                ))
            })
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(byte) = seq.next_element::<u8>()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
}

impl StoredEvent {
    /// Decodes the payload as `P`, checking the kind first. MessagePack and JSON
    /// payloads both decode. A payload stored under an older schema version is
    /// upcast step by step (`EventPayload::upcast`) to `P::SCHEMA_VERSION` first; a
    /// missing step, or a stored version newer than `P`'s, is an error, never a
    /// silent misread.
    pub fn decode<P: EventPayload>(&self) -> Result<P> {
        self.payload_ref().decode()
    }

    /// `decode` for an event of `P`'s kind with its payload; `None` for another kind or
    /// a redacted event (a projection's handler of a kind it may meet erased).
    pub fn decode_if<P: EventPayload>(&self) -> Result<Option<P>> {
        self.payload_ref().decode_if()
    }

    fn payload_ref(&self) -> PayloadRef<'_> {
        PayloadRef {
            id: self.id,
            kind: self.kind,
            encoding: self.encoding,
            schema_version: self.schema_version,
            redacted: self.is_redacted(),
            bytes: &self.payload,
        }
    }

    /// Whether the event was appended in a batch with more items after it (a batch's
    /// last item, and an event appended alone, say `false`).
    pub fn continues_batch(&self) -> bool {
        self.proof.flags & crate::format::record::FLAG_BATCH_CONTINUES != 0
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
        let mut metadata = Vec::new();
        crate::format::record::encode_metadata(&self.metadata, &mut metadata);
        chain::event_hash(
            &header,
            &metadata,
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
}

/// A payload with what decoding it needs: the one decoder behind `StoredEvent::decode`
/// and `EventView::decode`.
pub(crate) struct PayloadRef<'a> {
    pub id: EventId,
    pub kind: EventKind,
    pub encoding: Encoding,
    pub schema_version: u16,
    pub redacted: bool,
    pub bytes: &'a [u8],
}

impl PayloadRef<'_> {
    pub(crate) fn decode<P: EventPayload>(&self) -> Result<P> {
        if self.redacted && self.kind == P::KIND {
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

    pub(crate) fn decode_if<P: EventPayload>(&self) -> Result<Option<P>> {
        if self.kind == P::KIND && !self.redacted {
            self.decode().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The payload bytes decoded by their stored encoding.
    fn decode_bytes<T: DeserializeOwned>(&self) -> Result<T> {
        match self.encoding {
            Encoding::MessagePack => {
                rmp_serde::from_slice(self.bytes).map_err(|e| self.codec_error(Box::new(e)))
            }
            Encoding::Json => {
                serde_json::from_slice(self.bytes).map_err(|e| self.codec_error(Box::new(e)))
            }
            Encoding::Opaque => Err(self
                .decode_error("the payload is opaque bytes, not MessagePack or JSON".to_string())),
        }
    }

    fn decode_error(&self, message: String) -> Error {
        Error::Decode {
            id: self.id,
            kind: self.kind,
            message,
            source: None,
        }
    }

    /// A decode error whose message is the codec's, kept as the source too.
    fn codec_error(&self, source: Box<dyn std::error::Error + Send + Sync>) -> Error {
        Error::Decode {
            id: self.id,
            kind: self.kind,
            message: source.to_string(),
            source: Some(source),
        }
    }
}

impl StoredEvent {
    /// Builds a `StoredEvent` from its decoded record, checking it is the event the index
    /// said lives there (the error describes the mismatch).
    pub(crate) fn from_record(
        view: &RecordView<'_>,
        sequence: u64,
        coordinate: &Coordinate,
    ) -> std::result::Result<StoredEvent, String> {
        check_target(view, sequence, coordinate)?;
        StoredEvent::from_view(view, coordinate)
    }

    /// Builds a `StoredEvent` from a record already checked against the index.
    pub(crate) fn from_view(
        view: &RecordView<'_>,
        coordinate: &Coordinate,
    ) -> std::result::Result<StoredEvent, String> {
        let h = &view.header;
        let (payload, proof) = match view.payload {
            PayloadField::Present { salt, bytes } => (bytes.to_vec(), PayloadProof::Salt(*salt)),
            PayloadField::Redacted { digest, .. } => (Vec::new(), PayloadProof::Digest(digest)),
        };
        Ok(StoredEvent {
            id: h.id,
            sequence: h.sequence,
            version: h.version,
            timestamp_ns: h.timestamp_ns,
            kind: h.kind,
            coordinate: coordinate.clone(),
            causation: h.causation,
            correlation: h.correlation,
            metadata: stored_metadata(view)?,
            encoding: h.encoding,
            schema_version: h.schema_version,
            payload,
            prev_hash: h.prev_hash,
            proof: HashInputs {
                flags: h.flags,
                idempotency: h.idempotency,
                payload: proof,
            },
        })
    }
}

/// Checks the record is the event the index said lives there.
pub(crate) fn check_target(
    view: &RecordView<'_>,
    sequence: u64,
    c: &Coordinate,
) -> std::result::Result<(), String> {
    let h = &view.header;
    // A record decoded with the index's strings holds those very strings: no compare.
    let same = |stored: &str, expected: &str| std::ptr::eq(stored, expected) || stored == expected;
    if h.sequence != sequence || !same(view.entity, c.entity()) || !same(view.scope, c.scope()) {
        return Err(format!(
            "record holds sequence {} of {:?} in {:?}, the index expects sequence {} of {:?} in {:?}",
            h.sequence,
            view.entity,
            view.scope,
            sequence,
            c.entity(),
            c.scope()
        ));
    }
    Ok(())
}

/// The record's metadata, decoded (the frame decoder has checked it decodes).
fn stored_metadata(view: &RecordView<'_>) -> std::result::Result<Metadata, String> {
    if view.metadata.is_empty() {
        return Ok(Metadata::new());
    }
    crate::format::record::decode_metadata(view.metadata).map_err(|e| e.to_string())
}

/// Payload bytes the caller encoded, with how they are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawPayload<'a> {
    /// The bytes.
    pub bytes: &'a [u8],
    /// Their encoding.
    pub encoding: Encoding,
    /// The payload schema version. Default 1.
    pub schema_version: u16,
}

impl<'a> RawPayload<'a> {
    /// The largest payload a record holds, in bytes (16 MiB).
    pub const MAX_LEN: usize = crate::format::MAX_PAYLOAD_LEN;

    /// MessagePack bytes, schema version 1.
    pub fn msgpack(bytes: &'a [u8]) -> Self {
        RawPayload {
            bytes,
            encoding: Encoding::MessagePack,
            schema_version: 1,
        }
    }

    /// JSON bytes, schema version 1.
    pub fn json(bytes: &'a [u8]) -> Self {
        RawPayload {
            bytes,
            encoding: Encoding::Json,
            schema_version: 1,
        }
    }

    /// Bytes the store does not interpret, schema version 1.
    pub fn opaque(bytes: &'a [u8]) -> Self {
        RawPayload {
            bytes,
            encoding: Encoding::Opaque,
            schema_version: 1,
        }
    }
}

/// Events to append atomically with [`Store::append_batch`]. Items may name earlier
/// items as their cause with [`AppendOptions::caused_by_item`].
#[derive(Clone, Debug, Default)]
pub struct Batch {
    items: Vec<BatchItem>,
    /// Every item's payload, back to back (an item holds its range): pushing encodes
    /// into this one buffer, so a batch reused with `clear` allocates nothing per item.
    bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(crate) struct BatchItem {
    pub coordinate: Coordinate,
    pub kind: EventKind,
    pub encoding: Encoding,
    pub schema_version: u16,
    /// The payload's range in the batch's bytes.
    pub payload: std::ops::Range<usize>,
    pub options: AppendOptions,
    pub system: bool,
    /// `EventPayload::NAME` of a typed item; empty for raw bytes.
    pub kind_name: &'static str,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// An empty batch with room for `items` events of about 64 payload bytes each.
    pub fn with_capacity(items: usize) -> Self {
        Batch {
            items: Vec::with_capacity(items),
            bytes: Vec::with_capacity(items.saturating_mul(64)),
        }
    }

    /// Removes every item, keeping the buffers: refilling a cleared batch allocates
    /// nothing per item once it has held as many.
    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes.clear();
    }

    /// Adds a typed event. Returns its position, for `caused_by_item`.
    pub fn push<P: EventPayload>(
        &mut self,
        coord: &Coordinate,
        payload: &P,
        options: AppendOptions,
    ) -> Result<usize> {
        self.push_typed(coord, payload, options, false)
    }

    /// Adds a store-owned record (reserved category), for the store's own evidence.
    pub(crate) fn push_system<P: EventPayload>(
        &mut self,
        coord: &Coordinate,
        payload: &P,
        options: AppendOptions,
    ) -> Result<usize> {
        self.push_typed(coord, payload, options, true)
    }

    fn push_typed<P: EventPayload>(
        &mut self,
        coord: &Coordinate,
        payload: &P,
        options: AppendOptions,
        system: bool,
    ) -> Result<usize> {
        let start = self.bytes.len();
        if let Err(e) = payload.encode_into(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        Ok(self.push_item(BatchItem {
            coordinate: coord.clone(),
            kind: P::KIND,
            encoding: Encoding::MessagePack,
            schema_version: P::SCHEMA_VERSION,
            payload: start..self.bytes.len(),
            options,
            system,
            kind_name: P::NAME,
        }))
    }

    /// Adds pre-encoded bytes. Returns its position.
    pub fn push_raw(
        &mut self,
        coord: &Coordinate,
        kind: EventKind,
        payload: RawPayload<'_>,
        options: AppendOptions,
    ) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(payload.bytes);
        self.push_item(BatchItem {
            coordinate: coord.clone(),
            kind,
            encoding: payload.encoding,
            schema_version: payload.schema_version,
            payload: start..self.bytes.len(),
            options,
            system: false,
            kind_name: "",
        })
    }

    fn push_item(&mut self, item: BatchItem) -> usize {
        self.items.push(item);
        self.items.len() - 1
    }

    /// Gives the first item without an idempotency key this one; `false` when every
    /// item has a key already.
    pub(crate) fn key_first_unkeyed(&mut self, key: String) -> bool {
        match self
            .items
            .iter_mut()
            .find(|item| item.options.idempotency_key.is_none())
        {
            Some(item) => {
                item.options.idempotency_key = Some(key);
                true
            }
            None => false,
        }
    }

    pub(crate) fn items(&self) -> &[BatchItem] {
        &self.items
    }

    /// An item's payload bytes.
    pub(crate) fn payload_of(&self, item: &BatchItem) -> &[u8] {
        &self.bytes[item.payload.clone()]
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
