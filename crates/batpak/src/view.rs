//! Borrowed events: what a visit over the store hands its callback, read in place from
//! the mapped segment. Header fields by value, the payload as a slice of the record,
//! nothing allocated; [`EventView::to_stored`] makes the owned [`StoredEvent`] when one
//! has to outlive the call.

use crate::chain;
use crate::coordinate::Coordinate;
use crate::error::{Error, Result};
use crate::event::{check_target, EventPayload, PayloadRef, StoredEvent};
use crate::format::record::{self, PayloadField, RecordView};
use crate::format::Encoding;
use crate::hash::Hash;
use crate::id::EventId;
use crate::kind::EventKind;
use crate::metadata::Metadata;

/// One stored event, borrowed from the segment it lives in for the length of a visit
/// ([`Store::visit_stream`](crate::Store::visit_stream),
/// [`Store::visit_query`](crate::Store::visit_query), a [`Projection`](crate::Projection)'s
/// `apply`). The accessors mirror [`StoredEvent`]'s fields.
#[derive(Clone, Copy)]
pub struct EventView<'a> {
    record: &'a RecordView<'a>,
    coordinate: &'a Coordinate,
}

impl<'a> EventView<'a> {
    /// The record at `sequence` of `coordinate`, checked to be the event the index said
    /// lives there (the error describes the mismatch).
    pub(crate) fn new(
        record: &'a RecordView<'a>,
        sequence: u64,
        coordinate: &'a Coordinate,
    ) -> std::result::Result<Self, String> {
        check_target(record, sequence, coordinate)?;
        Ok(EventView { record, coordinate })
    }

    /// The event id.
    pub fn id(&self) -> EventId {
        self.record.header.id
    }

    /// Store-wide commit position.
    pub fn sequence(&self) -> u64 {
        self.record.header.sequence
    }

    /// Position within the entity, from 0.
    pub fn version(&self) -> u64 {
        self.record.header.version
    }

    /// Unix nanoseconds the writer stamped.
    pub fn timestamp_ns(&self) -> u64 {
        self.record.header.timestamp_ns
    }

    /// The event kind.
    pub fn kind(&self) -> EventKind {
        self.record.header.kind
    }

    /// Entity and scope.
    pub fn coordinate(&self) -> &'a Coordinate {
        self.coordinate
    }

    /// The event that caused this one, if any.
    pub fn causation(&self) -> Option<EventId> {
        self.record.header.causation
    }

    /// The workflow this event belongs to, if any.
    pub fn correlation(&self) -> Option<EventId> {
        self.record.header.correlation
    }

    /// How the payload is encoded.
    pub fn encoding(&self) -> Encoding {
        self.record.header.encoding
    }

    /// The payload schema version written with the event.
    pub fn schema_version(&self) -> u16 {
        self.record.header.schema_version
    }

    /// The entity's previous event hash, zero for the first.
    pub fn prev_hash(&self) -> Hash {
        self.record.header.prev_hash
    }

    /// The payload bytes as the caller's codec produced them (empty once redacted).
    pub fn payload(&self) -> &'a [u8] {
        match self.record.payload {
            PayloadField::Present { bytes, .. } => bytes,
            PayloadField::Redacted { .. } => &[],
        }
    }

    /// Whether the payload was redacted: `payload` is then empty and `decode` fails
    /// with `Error::Redacted`.
    pub fn is_redacted(&self) -> bool {
        matches!(self.record.payload, PayloadField::Redacted { .. })
    }

    /// Whether the event was appended in a batch with more items after it.
    pub fn continues_batch(&self) -> bool {
        self.record.header.flags & record::FLAG_BATCH_CONTINUES != 0
    }

    /// Whether the event carries metadata (then [`metadata`](Self::metadata) decodes it).
    pub fn has_metadata(&self) -> bool {
        !self.record.metadata.is_empty()
    }

    /// The text keys and values stored with the event, decoded (empty, and free, when
    /// there are none).
    pub fn metadata(&self) -> Result<Metadata> {
        if self.record.metadata.is_empty() {
            return Ok(Metadata::new());
        }
        record::decode_metadata(self.record.metadata).map_err(|e| Error::Decode {
            id: self.id(),
            kind: self.kind(),
            message: format!("stored metadata: {e}"),
            source: None,
        })
    }

    /// Decodes the payload as `P` straight from the record, exactly as
    /// [`StoredEvent::decode`] does (kind checked first, older schema versions upcast).
    pub fn decode<P: EventPayload>(&self) -> Result<P> {
        self.payload_ref().decode()
    }

    /// `decode` for an event of `P`'s kind with its payload; `None` for another kind or
    /// a redacted event.
    pub fn decode_if<P: EventPayload>(&self) -> Result<Option<P>> {
        self.payload_ref().decode_if()
    }

    /// This event's hash, computed from the record: its link in the entity's chain.
    pub fn event_hash(&self) -> Hash {
        let digest = match self.record.payload {
            PayloadField::Present { salt, bytes } => chain::payload_digest(salt, bytes),
            PayloadField::Redacted { digest, .. } => digest,
        };
        chain::event_hash(
            &self.record.header,
            self.record.metadata,
            self.record.entity,
            self.record.scope,
            &digest,
        )
    }

    /// The owned event, for keeping beyond the visit.
    pub fn to_stored(&self) -> Result<StoredEvent> {
        StoredEvent::from_view(self.record, self.coordinate).map_err(|message| Error::Decode {
            id: self.id(),
            kind: self.kind(),
            message,
            source: None,
        })
    }

    fn payload_ref(&self) -> PayloadRef<'a> {
        PayloadRef {
            id: self.id(),
            kind: self.kind(),
            encoding: self.encoding(),
            schema_version: self.schema_version(),
            redacted: self.is_redacted(),
            bytes: self.payload(),
        }
    }
}

impl std::fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventView")
            .field("id", &self.id())
            .field("sequence", &self.sequence())
            .field("version", &self.version())
            .field("kind", &self.kind())
            .field("coordinate", self.coordinate)
            .field("payload_len", &self.payload().len())
            .finish_non_exhaustive()
    }
}
