//! The record frame: one event as stored in a segment. One encoder, one decoder.
//!
//! ```text
//! offset  size  field
//! 0       4     crc           CRC32C (Castagnoli) of bytes [4, frame_len)
//! 4       4     frame_len     length of the whole frame, these 8 bytes included
//! 8       8     sequence      store-wide commit position, dense, from 1
//! 16      8     timestamp     Unix nanoseconds, never decreasing within a store
//! 24      16    event_id      UUIDv7, big-endian
//! 40      8     version       per-entity position, from 0
//! 48      2     kind          4-bit category, 12-bit type id
//! 50      2     flags         FLAG_* below
//! 52      1     encoding      payload codec (`Encoding`)
//! 53      1     reserved      zero
//! 54      2     schema        payload schema version
//! 56      2     entity_len
//! 58      2     scope_len
//! 60      4     payload_len
//! 64      32    prev_hash     event hash of the entity's previous event, zero for the first
//! 96      ...   variable part, in this order:
//!               causation id (16)           if FLAG_CAUSATION
//!               correlation id (16)         if FLAG_CORRELATION
//!               idempotency key digest (16) if FLAG_IDEMPOTENCY
//!               metadata block               if FLAG_METADATA (format v2):
//!                 len (2): bytes of the entries that follow, 1..=8192
//!                 entries, keys strictly increasing bytewise, each:
//!                   key_len (1), key (UTF-8), value_len (2), value (UTF-8)
//!               entity (entity_len bytes of UTF-8)
//!               scope (scope_len bytes of UTF-8)
//!               payload area, 16 + max(payload_len, 16) bytes:
//!                 salt (16), payload (payload_len), zeros to the area's end
//!                 or, if FLAG_REDACTED: payload digest (32), zeros to the area's end
//! ```
//!
//! A payload shorter than 16 bytes is padded with zeros so that the digest always fits
//! where salt and payload were: redaction rewrites a frame in place, same length, and
//! `payload_len` keeps the erased payload's length.
//!
//! Format v2 added only `FLAG_METADATA` and its block; a record without metadata is
//! byte for byte a v1 record, and its hash is the v1 hash.
//!
//! A batch is a run of consecutive frames in one segment; every frame but the last
//! carries `FLAG_BATCH_CONTINUES`, so recovery can drop an incomplete batch whole.
//! The event hash is not stored: it is recomputed from the record (`chain`), and the
//! successor's `prev_hash` is what links it.

use std::mem::size_of;

use crate::hash::Hash;
use crate::id::EventId;
use crate::kind::EventKind;

pub(crate) const CRC_OFFSET: usize = 0;
pub(crate) const LEN_OFFSET: usize = CRC_OFFSET + size_of::<u32>();
pub(crate) const SEQUENCE_OFFSET: usize = LEN_OFFSET + size_of::<u32>();
const TIMESTAMP_OFFSET: usize = SEQUENCE_OFFSET + size_of::<u64>();
const ID_OFFSET: usize = TIMESTAMP_OFFSET + size_of::<u64>();
const VERSION_OFFSET: usize = ID_OFFSET + size_of::<u128>();
const KIND_OFFSET: usize = VERSION_OFFSET + size_of::<u64>();
const FLAGS_OFFSET: usize = KIND_OFFSET + size_of::<u16>();
const ENCODING_OFFSET: usize = FLAGS_OFFSET + size_of::<u16>();
const RESERVED_OFFSET: usize = ENCODING_OFFSET + size_of::<u8>();
const SCHEMA_OFFSET: usize = RESERVED_OFFSET + size_of::<u8>();
const ENTITY_LEN_OFFSET: usize = SCHEMA_OFFSET + size_of::<u16>();
const SCOPE_LEN_OFFSET: usize = ENTITY_LEN_OFFSET + size_of::<u16>();
const PAYLOAD_LEN_OFFSET: usize = SCOPE_LEN_OFFSET + size_of::<u16>();
const PREV_HASH_OFFSET: usize = PAYLOAD_LEN_OFFSET + size_of::<u32>();
/// Size of the fixed part of every frame.
pub(crate) const FIXED_LEN: usize = PREV_HASH_OFFSET + size_of::<[u8; 32]>();
/// Bytes of the frame prefix (crc + frame_len) that tell how much to read.
pub(crate) const PREFIX_LEN: usize = SEQUENCE_OFFSET;

const ID_LEN: usize = size_of::<u128>();
/// Length of the per-event payload salt.
pub(crate) const SALT_LEN: usize = 16;
/// Length of the stored digest of an idempotency key.
pub(crate) const IDEMPOTENCY_LEN: usize = 16;
const DIGEST_LEN: usize = size_of::<[u8; 32]>();

/// The event names its cause.
pub(crate) const FLAG_CAUSATION: u16 = 1 << 0;
/// The event carries a correlation id.
pub(crate) const FLAG_CORRELATION: u16 = 1 << 1;
/// The event carries the digest of an idempotency key.
pub(crate) const FLAG_IDEMPOTENCY: u16 = 1 << 2;
/// More frames of the same batch follow this one.
pub(crate) const FLAG_BATCH_CONTINUES: u16 = 1 << 3;
/// The payload and salt were erased; the payload field holds the payload digest.
pub(crate) const FLAG_REDACTED: u16 = 1 << 4;
/// The event carries metadata (format v2).
pub(crate) const FLAG_METADATA: u16 = 1 << 5;
const KNOWN_FLAGS: u16 = FLAG_CAUSATION
    | FLAG_CORRELATION
    | FLAG_IDEMPOTENCY
    | FLAG_BATCH_CONTINUES
    | FLAG_REDACTED
    | FLAG_METADATA;
/// Bytes of the metadata block's length field.
const METADATA_LEN_LEN: usize = size_of::<u16>();

/// Largest payload a single event may carry.
pub(crate) const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// How a payload's bytes are encoded. Stored as one byte in every record.
///
/// Serde: `"opaque"`, `"message_pack"` or `"json"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Encoding {
    /// Bytes the store does not interpret.
    Opaque,
    /// MessagePack with named fields (the typed default).
    MessagePack,
    /// UTF-8 JSON.
    Json,
}

impl Encoding {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Encoding::Opaque => 0,
            Encoding::MessagePack => 1,
            Encoding::Json => 2,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Encoding::Opaque),
            1 => Some(Encoding::MessagePack),
            2 => Some(Encoding::Json),
            _ => None,
        }
    }
}

/// The fixed-size facts of a record, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub sequence: u64,
    pub timestamp_ns: u64,
    pub id: EventId,
    pub version: u64,
    pub kind: EventKind,
    pub flags: u16,
    pub encoding: Encoding,
    pub schema_version: u16,
    pub causation: Option<EventId>,
    pub correlation: Option<EventId>,
    pub idempotency: Option<[u8; IDEMPOTENCY_LEN]>,
    pub prev_hash: Hash,
}

/// The payload part of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PayloadField<'a> {
    /// The payload as the caller's codec produced it, with its salt.
    Present {
        salt: &'a [u8; SALT_LEN],
        bytes: &'a [u8],
    },
    /// The payload was erased; its digest remains so the chain still verifies.
    Redacted {
        /// The salted payload digest.
        digest: Hash,
        /// The erased payload's length.
        len: usize,
    },
}

/// One decoded record, borrowing strings and payload from the frame buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordView<'a> {
    pub header: RecordHeader,
    /// The metadata entries as stored (empty without `FLAG_METADATA`), already checked
    /// to decode.
    pub metadata: &'a [u8],
    pub entity: &'a str,
    pub scope: &'a str,
    pub payload: PayloadField<'a>,
}

/// Why bytes at an offset are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes remain than the frame needs (`needed` counts from the frame start).
    Incomplete { needed: usize, available: usize },
    /// The length field is zero: nothing was ever written here.
    Zero,
    /// The stored checksum does not match the bytes.
    Checksum { stored: u32, computed: u32 },
    /// The checksum matches but a field is impossible.
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Incomplete { needed, available } => write!(
                f,
                "incomplete record: needs {needed} bytes, {available} available"
            ),
            FrameError::Zero => write!(f, "zero frame length"),
            FrameError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            FrameError::Malformed(detail) => write!(f, "malformed record: {detail}"),
        }
    }
}

/// What the encoder writes. The writer fills it; recovery never builds one.
#[derive(Debug)]
pub(crate) struct RecordDraft<'a> {
    pub header: RecordHeader,
    /// Encoded metadata entries (`encode_metadata`), empty for none.
    pub metadata: &'a [u8],
    pub entity: &'a str,
    pub scope: &'a str,
    pub salt: [u8; SALT_LEN],
    pub payload: &'a [u8],
}

/// Bytes of the payload area for a payload of `payload_len` bytes: the salt and the
/// payload, or the digest that replaces both once redacted.
pub(crate) fn payload_area(payload_len: usize) -> usize {
    SALT_LEN + payload_len.max(DIGEST_LEN - SALT_LEN)
}

/// The encoded length of a draft's frame.
pub(crate) fn frame_len(draft: &RecordDraft<'_>) -> usize {
    let h = &draft.header;
    FIXED_LEN
        + optional_len(h.causation.is_some())
        + optional_len(h.correlation.is_some())
        + optional_len(h.idempotency.is_some())
        + metadata_block_len(draft.metadata.len())
        + draft.entity.len()
        + draft.scope.len()
        + payload_area(draft.payload.len())
}

/// Bytes the metadata block takes in a frame for `entries` bytes of entries.
pub(crate) fn metadata_block_len(entries: usize) -> usize {
    if entries == 0 {
        0
    } else {
        METADATA_LEN_LEN + entries
    }
}

/// Appends `meta`'s entries (key order) to `out`. The caller checked the limits
/// (`Metadata::validate`), so the lengths fit their fields.
pub(crate) fn encode_metadata(meta: &crate::metadata::Metadata, out: &mut Vec<u8>) {
    for (key, value) in meta.iter() {
        out.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&u16_of(value.len()).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
}

/// Decodes metadata entries as `encode_metadata` writes them: every length inside
/// the block, UTF-8 text, keys non-empty and strictly increasing.
pub(crate) fn decode_metadata(entries: &[u8]) -> Result<crate::metadata::Metadata, FrameError> {
    let mut meta = crate::metadata::Metadata::new();
    let mut previous: Option<&str> = None;
    let mut cursor = Cursor {
        frame: entries,
        at: 0,
    };
    while cursor.at < entries.len() {
        let key_len = usize::from(cursor.take(1, "metadata key length")?[0]);
        if key_len == 0 {
            return Err(FrameError::Malformed(format!(
                "metadata key at byte {} is empty",
                cursor.at - 1
            )));
        }
        let key = cursor.text(key_len, "metadata key")?;
        let value_len = cursor.take(2, "metadata value length")?;
        let value_len = usize::from(u16::from_le_bytes([value_len[0], value_len[1]]));
        let value = cursor.text(value_len, "metadata value")?;
        if let Some(p) = previous.filter(|p| *p >= key) {
            return Err(FrameError::Malformed(format!(
                "metadata key {key:?} does not follow {p:?} in order"
            )));
        }
        previous = Some(key);
        meta.insert(key, value);
    }
    Ok(meta)
}

fn optional_len(present: bool) -> usize {
    if present {
        ID_LEN
    } else {
        0
    }
}

/// Appends one frame to `out`. The flags for optional fields are derived from the
/// header's options; callers set only `FLAG_BATCH_CONTINUES`.
///
/// The caller has already checked the payload and coordinate limits.
pub(crate) fn encode(draft: &RecordDraft<'_>, out: &mut Vec<u8>) {
    let h = &draft.header;
    let start = out.len();
    let len = frame_len(draft);
    let metadata_flag = if draft.metadata.is_empty() {
        0
    } else {
        FLAG_METADATA
    };
    // The hash covers the header's flags: the writer sets the metadata bit there too.
    debug_assert_eq!(h.flags & FLAG_METADATA, metadata_flag);
    let flags = (flags_for(h) & !FLAG_METADATA) | metadata_flag;
    out.reserve(len);
    out.extend_from_slice(&[0u8; 4]); // crc, filled below
    out.extend_from_slice(&u32_of(len).to_le_bytes());
    out.extend_from_slice(&h.sequence.to_le_bytes());
    out.extend_from_slice(&h.timestamp_ns.to_le_bytes());
    out.extend_from_slice(&h.id.to_bytes());
    out.extend_from_slice(&h.version.to_le_bytes());
    out.extend_from_slice(&h.kind.bits().to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.push(h.encoding.to_byte());
    out.push(0);
    out.extend_from_slice(&h.schema_version.to_le_bytes());
    out.extend_from_slice(&u16_of(draft.entity.len()).to_le_bytes());
    out.extend_from_slice(&u16_of(draft.scope.len()).to_le_bytes());
    out.extend_from_slice(&u32_of(draft.payload.len()).to_le_bytes());
    out.extend_from_slice(h.prev_hash.as_bytes());
    if let Some(c) = h.causation {
        out.extend_from_slice(&c.to_bytes());
    }
    if let Some(c) = h.correlation {
        out.extend_from_slice(&c.to_bytes());
    }
    if let Some(k) = h.idempotency {
        out.extend_from_slice(&k);
    }
    if !draft.metadata.is_empty() {
        out.extend_from_slice(&u16_of(draft.metadata.len()).to_le_bytes());
        out.extend_from_slice(draft.metadata);
    }
    out.extend_from_slice(draft.entity.as_bytes());
    out.extend_from_slice(draft.scope.as_bytes());
    out.extend_from_slice(&draft.salt);
    out.extend_from_slice(draft.payload);
    out.resize(start + len, 0); // padding of a short payload
    debug_assert_eq!(out.len() - start, len);
    let crc = crc32c::crc32c(&out[start + LEN_OFFSET..]);
    out[start..start + LEN_OFFSET].copy_from_slice(&crc.to_le_bytes());
}

/// The same frame with its payload and salt erased: `FLAG_REDACTED` set, the payload
/// area holding `digest` then zeros, the checksum recomputed. Same length, so it can be
/// written over the original in place. `frame` must be a valid, unredacted frame.
pub(crate) fn redacted_copy(frame: &[u8], digest: &Hash) -> Result<Vec<u8>, FrameError> {
    let (view, len) = decode(frame)?;
    let PayloadField::Present { bytes, .. } = view.payload else {
        return Err(FrameError::Malformed(
            "the record is already redacted".into(),
        ));
    };
    let area = payload_area(bytes.len());
    let mut out = frame[..len].to_vec();
    let flags = read_u16(&out, FLAGS_OFFSET) | FLAG_REDACTED;
    out[FLAGS_OFFSET..FLAGS_OFFSET + 2].copy_from_slice(&flags.to_le_bytes());
    let area_start = len - area;
    out[area_start..].fill(0);
    out[area_start..area_start + DIGEST_LEN].copy_from_slice(digest.as_bytes());
    let crc = crc32c::crc32c(&out[LEN_OFFSET..]);
    out[CRC_OFFSET..LEN_OFFSET].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// A redacted record as compaction keeps it: the same fields with a payload length
/// of 0, so the payload area is just the digest (32 bytes) however long the erased
/// payload was. The event hash ignores `payload_len`, so it is unchanged. `None` when
/// the record is not redacted or already this short.
pub(crate) fn shrunk_redacted(view: &RecordView<'_>) -> Option<Vec<u8>> {
    let PayloadField::Redacted { digest, len } = view.payload else {
        return None;
    };
    if payload_area(len) == payload_area(0) {
        return None;
    }
    let mut header = view.header.clone();
    header.flags &= !FLAG_REDACTED;
    let mut plain = Vec::new();
    encode(
        &RecordDraft {
            header,
            metadata: view.metadata,
            entity: view.entity,
            scope: view.scope,
            salt: [0; SALT_LEN],
            payload: &[],
        },
        &mut plain,
    );
    redacted_copy(&plain, &digest).ok()
}

/// The flags as stored: the caller's batch, redaction and metadata bits plus one bit
/// per optional id field present. The writer stamps these into the header before hashing so
/// the hash covers exactly the stored flags.
pub(crate) fn flags_for(h: &RecordHeader) -> u16 {
    let mut flags = h.flags & (FLAG_BATCH_CONTINUES | FLAG_REDACTED | FLAG_METADATA);
    if h.causation.is_some() {
        flags |= FLAG_CAUSATION;
    }
    if h.correlation.is_some() {
        flags |= FLAG_CORRELATION;
    }
    if h.idempotency.is_some() {
        flags |= FLAG_IDEMPOTENCY;
    }
    flags
}

// Limits are checked before encoding (payload <= MAX_PAYLOAD_LEN, coordinates <= 1 KiB),
// so these conversions cannot truncate.
fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn u16_of(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// The first offset from `from` at which a whole frame decodes (its checksum holds):
/// where a scan resumes after damage. A length field that does not fit the buffer
/// rules most offsets out before any checksum is computed.
pub(crate) fn next_frame(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| {
        peek_frame_len(&bytes[at..]).is_some_and(|len| {
            len >= PREFIX_LEN && at + len <= bytes.len() && decode(&bytes[at..at + len]).is_ok()
        })
    })
}

/// One step of [`frames`]: a record that decodes, or a range that holds none.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a transient iterator item, consumed at once; boxing would allocate per record"
)]
pub(crate) enum Frame<'a> {
    /// A whole frame at `offset`, `len` bytes long.
    Record {
        offset: usize,
        len: usize,
        view: RecordView<'a>,
    },
    /// No frame decodes from `offset` until `end` (the next offset where one does, or
    /// the end of the bytes); `error` is why the frame at `offset` did not.
    Damaged {
        offset: usize,
        end: usize,
        error: FrameError,
    },
}

/// The frames of a segment's bytes from `from`, going on past damage: after a frame
/// that does not decode, the scan resumes at the next frame whose checksum holds. The
/// one scan salvage and `repair --cut` share.
pub(crate) fn frames(bytes: &[u8], from: usize) -> impl Iterator<Item = Frame<'_>> {
    let mut at = from;
    std::iter::from_fn(move || {
        if at >= bytes.len() {
            return None;
        }
        let offset = at;
        Some(match decode(&bytes[at..]) {
            Ok((view, len)) => {
                at += len;
                Frame::Record { offset, len, view }
            }
            Err(error) => {
                at = next_frame(bytes, offset + 1).unwrap_or(bytes.len());
                Frame::Damaged {
                    offset,
                    end: at,
                    error,
                }
            }
        })
    })
}

/// The length of the frame a decoded record came from.
pub(crate) fn frame_len_of(view: &RecordView<'_>) -> usize {
    let payload = match view.payload {
        PayloadField::Present { bytes, .. } => payload_area(bytes.len()),
        PayloadField::Redacted { len, .. } => payload_area(len),
    };
    FIXED_LEN
        + optional_len(view.header.causation.is_some())
        + optional_len(view.header.correlation.is_some())
        + optional_len(view.header.idempotency.is_some())
        + metadata_block_len(view.metadata.len())
        + view.entity.len()
        + view.scope.len()
        + payload
}

/// Reads the frame length from the prefix, if enough bytes are present.
pub(crate) fn peek_frame_len(buf: &[u8]) -> Option<usize> {
    let bytes = buf.get(LEN_OFFSET..LEN_OFFSET + 4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
}

/// The frame length implied by the fixed header's flags and length fields, when the
/// whole fixed header (and, with metadata, the metadata length field) is present. Recovery compares it with the stored frame length
/// to tell a torn write (consistent header) from a damaged length field.
pub(crate) fn implied_frame_len(buf: &[u8]) -> Option<usize> {
    let fixed = buf.get(..FIXED_LEN)?;
    let flags = read_u16(fixed, FLAGS_OFFSET);
    let ids = optional_len(flags & FLAG_CAUSATION != 0)
        + optional_len(flags & FLAG_CORRELATION != 0)
        + optional_len(flags & FLAG_IDEMPOTENCY != 0);
    let metadata = if flags & FLAG_METADATA != 0 {
        let at = FIXED_LEN + ids;
        let len = buf.get(at..at + METADATA_LEN_LEN)?;
        METADATA_LEN_LEN + usize::from(u16::from_le_bytes([len[0], len[1]]))
    } else {
        0
    };
    Some(
        FIXED_LEN
            + ids
            + metadata
            + usize::from(read_u16(fixed, ENTITY_LEN_OFFSET))
            + usize::from(read_u16(fixed, SCOPE_LEN_OFFSET))
            + payload_area(read_u32(fixed, PAYLOAD_LEN_OFFSET) as usize),
    )
}

/// Decodes the frame at the start of `buf`. Returns the record and the frame length.
pub(crate) fn decode(buf: &[u8]) -> Result<(RecordView<'_>, usize), FrameError> {
    decode_known(buf, None)
}

/// `decode`, for a record whose entity and scope the caller already holds (the index
/// interned them, valid UTF-8): when the stored bytes equal them, the view borrows the
/// caller's strings and the bytes are not validated as UTF-8 again. Other bytes are
/// validated as usual (and the caller's comparison then reports the mismatch).
pub(crate) fn decode_known<'a>(
    buf: &'a [u8],
    known: Option<(&'a str, &'a str)>,
) -> Result<(RecordView<'a>, usize), FrameError> {
    let len = peek_frame_len(buf).ok_or(FrameError::Incomplete {
        needed: PREFIX_LEN,
        available: buf.len(),
    })?;
    if len == 0 {
        return Err(FrameError::Zero);
    }
    if len > buf.len() {
        return Err(FrameError::Incomplete {
            needed: len,
            available: buf.len(),
        });
    }
    let frame = &buf[..len];
    if len < FIXED_LEN {
        // A short length with a matching checksum is impossible from our encoder; a
        // checksum mismatch is the more useful report for damaged bytes. The checksum
        // covers [4, len): nothing when the length does not even cover the prefix
        // (`buf` holds the whole prefix, `peek_frame_len` read it).
        let computed = crc32c::crc32c(buf.get(LEN_OFFSET..len).unwrap_or_default());
        let stored = read_u32(buf, CRC_OFFSET);
        if stored != computed {
            return Err(FrameError::Checksum { stored, computed });
        }
        return Err(FrameError::Malformed(format!(
            "frame length {len} is shorter than the fixed header ({FIXED_LEN})"
        )));
    }
    let stored = read_u32(frame, CRC_OFFSET);
    let computed = crc32c::crc32c(&frame[LEN_OFFSET..]);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    decode_checked(frame, known).map(|view| (view, len))
}

fn decode_checked<'a>(
    frame: &'a [u8],
    known: Option<(&'a str, &'a str)>,
) -> Result<RecordView<'a>, FrameError> {
    let flags = read_u16(frame, FLAGS_OFFSET);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(FrameError::Malformed(format!("unknown flags {flags:#06x}")));
    }
    let encoding_byte = frame[ENCODING_OFFSET];
    let encoding = Encoding::from_byte(encoding_byte).ok_or_else(|| {
        FrameError::Malformed(format!("unknown payload encoding {encoding_byte}"))
    })?;
    if frame[RESERVED_OFFSET] != 0 {
        return Err(FrameError::Malformed("reserved byte is not zero".into()));
    }
    let entity_len = usize::from(read_u16(frame, ENTITY_LEN_OFFSET));
    let scope_len = usize::from(read_u16(frame, SCOPE_LEN_OFFSET));
    let payload_len = read_u32(frame, PAYLOAD_LEN_OFFSET) as usize;
    let redacted = flags & FLAG_REDACTED != 0;
    let mut cursor = Cursor {
        frame,
        at: FIXED_LEN,
    };
    let causation = cursor.optional_id(flags & FLAG_CAUSATION != 0)?;
    let correlation = cursor.optional_id(flags & FLAG_CORRELATION != 0)?;
    let idempotency = if flags & FLAG_IDEMPOTENCY != 0 {
        Some(cursor.array::<IDEMPOTENCY_LEN>("idempotency key")?)
    } else {
        None
    };
    let metadata = if flags & FLAG_METADATA != 0 {
        let len = cursor.take(METADATA_LEN_LEN, "metadata length")?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        if len == 0 {
            return Err(FrameError::Malformed(
                "the metadata flag is set but the block is empty".into(),
            ));
        }
        let entries = cursor.take(len, "metadata")?;
        decode_metadata(entries)?;
        entries
    } else {
        &[]
    };
    let entity = cursor.text_known(entity_len, "entity", known.map(|(e, _)| e))?;
    let scope = cursor.text_known(scope_len, "scope", known.map(|(_, s)| s))?;
    let area = cursor.take(payload_area(payload_len), "payload area")?;
    let (payload, padding) = if redacted {
        let (digest, rest) = area.split_at(DIGEST_LEN);
        let digest = Hash::from_bytes(read_array(digest, 0));
        let payload = PayloadField::Redacted {
            digest,
            len: payload_len,
        };
        (payload, rest)
    } else {
        let (salt, rest) = area.split_at(SALT_LEN);
        let salt: &[u8; SALT_LEN] = salt
            .try_into()
            .map_err(|_| FrameError::Malformed("salt".into()))?;
        let (bytes, rest) = rest.split_at(payload_len);
        (PayloadField::Present { salt, bytes }, rest)
    };
    if let Some(at) = padding.iter().position(|&b| b != 0) {
        return Err(FrameError::Malformed(format!(
            "padding byte {at} after the {} is {:#04x}, not zero",
            if redacted { "digest" } else { "payload" },
            padding[at]
        )));
    }
    if cursor.at != frame.len() {
        return Err(FrameError::Malformed(format!(
            "frame length {} but fields end at {}",
            frame.len(),
            cursor.at
        )));
    }
    let header = RecordHeader {
        sequence: read_u64(frame, SEQUENCE_OFFSET),
        timestamp_ns: read_u64(frame, TIMESTAMP_OFFSET),
        id: EventId::from_bytes(read_array(frame, ID_OFFSET)),
        version: read_u64(frame, VERSION_OFFSET),
        kind: EventKind::from_bits(read_u16(frame, KIND_OFFSET)),
        flags,
        encoding,
        schema_version: read_u16(frame, SCHEMA_OFFSET),
        causation,
        correlation,
        idempotency,
        prev_hash: Hash::from_bytes(read_array(frame, PREV_HASH_OFFSET)),
    };
    Ok(RecordView {
        header,
        metadata,
        entity,
        scope,
        payload,
    })
}

struct Cursor<'a> {
    frame: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FrameError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.frame.len());
        match end {
            Some(end) => {
                let bytes = &self.frame[self.at..end];
                self.at = end;
                Ok(bytes)
            }
            None => Err(FrameError::Malformed(format!(
                "{what} ({n} bytes at {}) runs past the frame end ({})",
                self.at,
                self.frame.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FrameError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn optional_id(&mut self, present: bool) -> Result<Option<EventId>, FrameError> {
        if present {
            Ok(Some(EventId::from_bytes(self.array::<ID_LEN>("id")?)))
        } else {
            Ok(None)
        }
    }

    fn text(&mut self, n: usize, what: &str) -> Result<&'a str, FrameError> {
        self.text_known(n, what, None)
    }

    /// `text`, answered by `known` when the bytes are exactly its bytes.
    fn text_known(
        &mut self,
        n: usize,
        what: &str,
        known: Option<&'a str>,
    ) -> Result<&'a str, FrameError> {
        let bytes = self.take(n, what)?;
        match known {
            Some(text) if text.as_bytes() == bytes => Ok(text),
            _ => std::str::from_utf8(bytes)
                .map_err(|e| FrameError::Malformed(format!("{what} is not UTF-8: {e}"))),
        }
    }
}

fn read_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(read_array(buf, at))
}

pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(read_array(buf, at))
}

pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(read_array(buf, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> RecordHeader {
        RecordHeader {
            sequence: 7,
            timestamp_ns: 1_750_000_000_123_456_789,
            id: EventId::from_u128(0x0197_6e1a_0b2c_7d3e_8f40_1234_5678_9abc),
            version: 2,
            kind: EventKind::custom(1, 7),
            flags: 0,
            encoding: Encoding::MessagePack,
            schema_version: 1,
            causation: None,
            correlation: None,
            idempotency: None,
            prev_hash: Hash::from_bytes([0xAB; 32]),
        }
    }

    fn encode_one(draft: &RecordDraft<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(draft, &mut out);
        out
    }

    #[test]
    fn layout_offsets_are_as_documented() {
        assert_eq!(SEQUENCE_OFFSET, 8);
        assert_eq!(ID_OFFSET, 24);
        assert_eq!(KIND_OFFSET, 48);
        assert_eq!(SCHEMA_OFFSET, 54);
        assert_eq!(PAYLOAD_LEN_OFFSET, 60);
        assert_eq!(FIXED_LEN, 96);
    }

    /// Pins every byte of a minimal record. If this changes, the format version must too.
    /// The record of the minimal golden bytes: no optional field, a 4-byte payload.
    fn minimal_draft() -> RecordDraft<'static> {
        RecordDraft {
            header: sample_header(),
            metadata: &[],
            entity: "e:1",
            scope: "s",
            salt: [0x11; SALT_LEN],
            payload: b"\x81\xa1a\x01",
        }
    }

    #[test]
    fn known_strings_stand_in_for_equal_bytes_only() {
        let bytes = encode_one(&minimal_draft());
        let (entity, scope) = (String::from("e:1"), String::from("s"));
        let (view, _) = decode_known(&bytes, Some((&entity, &scope))).unwrap();
        // The caller's strings, not the frame's bytes: nothing was validated again.
        assert!(std::ptr::eq(view.entity, entity.as_str()));
        assert!(std::ptr::eq(view.scope, scope.as_str()));
        assert_eq!(view, decode(&bytes).unwrap().0);
        // Other strings: the frame's own, as `decode` reads them.
        let (view, _) = decode_known(&bytes, Some(("e:2", "t"))).unwrap();
        assert_eq!((view.entity, view.scope), ("e:1", "s"));
        assert!(!std::ptr::eq(view.entity, entity.as_str()));
    }

    #[test]
    fn golden_bytes_minimal_record() {
        let draft = minimal_draft();
        let bytes = encode_one(&draft);
        let expected_hex = concat!(
            "66fc9bff",
            "84000000",                         // crc, frame_len = 132
            "0700000000000000",                 // sequence
            "15cd4a6cba3f4918",                 // timestamp
            "01976e1a0b2c7d3e8f40123456789abc", // id
            "0200000000000000",                 // version
            "0710",
            "0000",
            "01",
            "00",
            "0100", // kind, flags, encoding, reserved, schema
            "0300",
            "0100",
            "04000000", // entity_len, scope_len, payload_len
            "abababababababababababababababababababababababababababababababab",
            "653a31",
            "73",                               // entity, scope
            "11111111111111111111111111111111", // salt
            "81a16101",                         // payload
            "000000000000000000000000",         // padding to the 16-byte minimum
        );
        assert_eq!(hex(&bytes), expected_hex);
        let (view, len) = decode(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(view.header, draft.header);
        assert_eq!(view.entity, "e:1");
        assert_eq!(view.scope, "s");
        assert_eq!(
            view.payload,
            PayloadField::Present {
                salt: &[0x11; SALT_LEN],
                bytes: b"\x81\xa1a\x01"
            }
        );
    }

    #[test]
    fn golden_bytes_with_every_optional_field() {
        let mut header = sample_header();
        header.causation = Some(EventId::from_u128(1));
        header.correlation = Some(EventId::from_u128(2));
        header.idempotency = Some([0x33; IDEMPOTENCY_LEN]);
        header.flags = FLAG_BATCH_CONTINUES;
        let draft = RecordDraft {
            header: header.clone(),
            metadata: &[],
            entity: "e",
            scope: "s",
            salt: [0; SALT_LEN],
            payload: b"",
        };
        let bytes = encode_one(&draft);
        assert_eq!(bytes.len(), FIXED_LEN + 3 * 16 + 2 + SALT_LEN + 16);
        assert_eq!(hex(&bytes[50..52]), "0f00", "flags derived from options");
        assert_eq!(
            hex(&bytes[96..144]),
            concat!(
                "00000000000000000000000000000001",
                "00000000000000000000000000000002",
                "33333333333333333333333333333333"
            )
        );
        let (view, _) = decode(&bytes).unwrap();
        header.flags = 0x0f;
        assert_eq!(view.header, header);
    }

    /// Pins the v2 metadata block: its place (after the optional ids, before the
    /// entity), its length field, and entries in key order.
    #[test]
    fn golden_bytes_with_metadata() {
        let meta = crate::metadata::Metadata::new()
            .with("user", "ada")
            .with("ip", "10.0.0.7");
        let mut entries = Vec::new();
        encode_metadata(&meta, &mut entries);
        assert_eq!(meta.encoded_len(), entries.len());
        assert_eq!(
            hex(&entries),
            concat!(
                "02",
                "6970",
                "0800",
                "31302e302e302e37", // "ip" = "10.0.0.7"
                "04",
                "75736572",
                "0300",
                "616461", // "user" = "ada"
            )
        );
        let mut header = sample_header();
        header.correlation = Some(EventId::from_u128(2));
        header.flags = FLAG_METADATA;
        let draft = RecordDraft {
            header: header.clone(),
            metadata: &entries,
            entity: "e",
            scope: "s",
            salt: [0; SALT_LEN],
            payload: b"",
        };
        let bytes = encode_one(&draft);
        assert_eq!(
            bytes.len(),
            FIXED_LEN + 16 + 2 + entries.len() + 2 + SALT_LEN + 16
        );
        assert_eq!(
            hex(&bytes[50..52]),
            "2200",
            "correlation and metadata flags"
        );
        assert_eq!(hex(&bytes[112..114]), "1700", "block length 23");
        assert_eq!(&bytes[114..137], &entries[..]);
        assert_eq!(&bytes[137..139], b"es");
        assert_eq!(implied_frame_len(&bytes), Some(bytes.len()));
        assert_eq!(
            implied_frame_len(&bytes[..113]),
            None,
            "length field cut off"
        );
        let (view, len) = decode(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        header.flags = FLAG_CORRELATION | FLAG_METADATA;
        assert_eq!(view.header, header);
        assert_eq!(view.metadata, &entries[..]);
        assert_eq!(decode_metadata(view.metadata).unwrap(), meta);
        assert_eq!(frame_len_of(&view), bytes.len());
    }

    #[test]
    fn malformed_metadata_blocks_are_refused_by_what_is_wrong() {
        let entry = |key: &[u8], value: &[u8]| {
            let mut out = vec![u8::try_from(key.len()).unwrap()];
            out.extend_from_slice(key);
            out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_le_bytes());
            out.extend_from_slice(value);
            out
        };
        let detail = |entries: &[u8]| match decode_metadata(entries) {
            Err(FrameError::Malformed(d)) => d,
            other => panic!("expected malformed metadata, got {other:?}"),
        };
        let unordered = [entry(b"b", b"1"), entry(b"a", b"2")].concat();
        assert!(detail(&unordered).contains("does not follow"));
        let repeated = [entry(b"a", b"1"), entry(b"a", b"2")].concat();
        assert!(detail(&repeated).contains("does not follow"));
        assert!(detail(&entry(b"", b"1")).contains("empty"));
        assert!(detail(&entry(b"k", b"\xff")).contains("not UTF-8"));
        let short = entry(b"key", b"value");
        assert!(detail(&short[..short.len() - 1]).contains("runs past"));
        // The flag with an empty block is not a canonical frame.
        let mut header = sample_header();
        header.flags = FLAG_METADATA;
        let one = entry(b"k", b"v");
        let mut bytes = encode_one(&RecordDraft {
            header,
            metadata: &one,
            entity: "e",
            scope: "s",
            salt: [0; SALT_LEN],
            payload: b"",
        });
        assert!(decode(&bytes).is_ok());
        bytes[96..98].copy_from_slice(&0u16.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[4..]);
        bytes[..4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(FrameError::Malformed(d)) if d.contains("empty")));
    }

    #[test]
    fn redacted_record_keeps_the_digest_in_place() {
        let digest = Hash::from_bytes([0x5A; 32]);
        for payload in [&b""[..], b"abc", &[0x77; 16], &[0x77; 40]] {
            let original = encode_one(&RecordDraft {
                metadata: &[],
                header: sample_header(),
                entity: "e",
                scope: "s",
                salt: [0x99; SALT_LEN],
                payload,
            });
            let redacted = redacted_copy(&original, &digest).unwrap();
            assert_eq!(redacted.len(), original.len(), "rewritten in place");
            let (view, len) = decode(&redacted).unwrap();
            assert_eq!(len, original.len());
            assert_eq!(
                view.payload,
                PayloadField::Redacted {
                    digest,
                    len: payload.len()
                }
            );
            assert_eq!(view.header.flags, FLAG_REDACTED);
            assert_eq!(frame_len_of(&view), len);
            assert_eq!(implied_frame_len(&redacted), Some(len));
            // Only flags, checksum and the payload area changed; salt and payload
            // bytes are gone.
            assert_eq!(
                redacted[SEQUENCE_OFFSET..FLAGS_OFFSET],
                original[SEQUENCE_OFFSET..FLAGS_OFFSET]
            );
            assert_eq!(
                redacted[FLAGS_OFFSET + 2..FIXED_LEN + 2],
                original[FLAGS_OFFSET + 2..FIXED_LEN + 2]
            );
            let area = &redacted[FIXED_LEN + 2..];
            assert_eq!(&area[..32], digest.as_bytes());
            assert!(area[32..].iter().all(|&b| b == 0));
            assert!(
                !redacted.windows(2).any(|w| w == [0x99, 0x99]),
                "salt erased"
            );
            assert!(matches!(
                redacted_copy(&redacted, &digest),
                Err(FrameError::Malformed(m)) if m.contains("already redacted")
            ));
        }
    }

    #[test]
    fn a_shrunk_redacted_record_keeps_every_field_but_the_erased_length() {
        let digest = Hash::from_bytes([0x5A; 32]);
        let mut header = sample_header();
        header.causation = Some(EventId::from_u128(7));
        header.flags = FLAG_CAUSATION | FLAG_BATCH_CONTINUES;
        let original = encode_one(&RecordDraft {
            metadata: &[],
            header,
            entity: "entity",
            scope: "scope",
            salt: [0x99; SALT_LEN],
            payload: &[0x77; 400],
        });
        let redacted = redacted_copy(&original, &digest).unwrap();
        let (view, _) = decode(&redacted).unwrap();
        let shrunk = shrunk_redacted(&view).unwrap();
        assert_eq!(
            shrunk.len(),
            original.len() - 400 + 16,
            "the area is the digest"
        );
        let (small, len) = decode(&shrunk).unwrap();
        assert_eq!(len, shrunk.len());
        assert_eq!(small.header, view.header);
        assert_eq!((small.entity, small.scope), ("entity", "scope"));
        assert_eq!(small.payload, PayloadField::Redacted { digest, len: 0 });
        assert_eq!(
            crate::chain::record_hash(&small),
            crate::chain::record_hash(&view),
            "the event hash ignores the erased length"
        );
        assert_eq!(shrunk_redacted(&small), None, "already as short as it gets");
        let (plain, _) = decode(&original).unwrap();
        assert_eq!(shrunk_redacted(&plain), None, "not redacted");
    }

    #[test]
    fn padding_and_redaction_remainder_must_be_zero() {
        let digest = Hash::from_bytes([0x5A; 32]);
        let frame_of = |payload: &[u8]| {
            encode_one(&RecordDraft {
                metadata: &[],
                header: sample_header(),
                entity: "e",
                scope: "s",
                salt: [0; SALT_LEN],
                payload,
            })
        };
        // A padded short payload, and a redacted long one (digest then zeros).
        let padded = frame_of(b"abc");
        let redacted = redacted_copy(&frame_of(&[7; 40]), &digest).unwrap();
        for frame in [padded, redacted] {
            let mut bad = frame.clone();
            let last = bad.len() - 1;
            bad[last] = 1;
            let crc = crc32c::crc32c(&bad[LEN_OFFSET..]);
            bad[..4].copy_from_slice(&crc.to_le_bytes());
            assert!(
                matches!(decode(&bad), Err(FrameError::Malformed(m)) if m.contains("not zero")),
                "a non-zero byte after the payload or digest is refused: {:?}",
                decode(&bad)
            );
        }
    }

    #[test]
    fn each_corruption_shape_is_named() {
        let bytes = encode_one(&RecordDraft {
            metadata: &[],
            header: sample_header(),
            entity: "e",
            scope: "s",
            salt: [1; SALT_LEN],
            payload: b"abc",
        });
        // Truncated anywhere: incomplete.
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut]) {
                Err(FrameError::Incomplete { .. }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // Any flipped bit after the crc: checksum mismatch (or incomplete when the
        // length grew past the buffer).
        for i in 4..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            match decode(&damaged) {
                Err(FrameError::Checksum { .. }) | Err(FrameError::Incomplete { .. }) => {}
                other => panic!("flip at {i}: {other:?}"),
            }
        }
        // Zero length: nothing written.
        assert_eq!(decode(&[0u8; 64]), Err(FrameError::Zero));
        // A valid checksum over an impossible field.
        let mut bad = bytes.clone();
        bad[ENCODING_OFFSET] = 9;
        let crc = crc32c::crc32c(&bad[LEN_OFFSET..]);
        bad[..4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&bad), Err(FrameError::Malformed(m)) if m.contains("encoding")));
    }

    /// Found by the fuzzer: a length field of 1 to 3 made the checksum range [4, len)
    /// run backwards and decoding panicked. Every length below the fixed header is an
    /// error, whatever bytes follow.
    #[test]
    fn a_length_shorter_than_its_own_prefix_is_an_error() {
        for len in 1..FIXED_LEN as u32 {
            for fill in [0x00, 0xFF] {
                let mut bytes = vec![fill; 2 * FIXED_LEN];
                bytes[LEN_OFFSET..SEQUENCE_OFFSET].copy_from_slice(&len.to_le_bytes());
                match decode(&bytes) {
                    Err(FrameError::Checksum { .. }) | Err(FrameError::Malformed(_)) => {}
                    other => panic!("length {len}: {other:?}"),
                }
            }
        }
    }

    /// Three records with the middle one's body flipped: the scan yields the first,
    /// names the damage with where reading resumes, and goes on to the third.
    #[test]
    fn frames_go_on_past_damage_to_the_next_whole_record() {
        let mut bytes = vec![0xEEu8; 8]; // stands in for a segment header
        let mut starts = Vec::new();
        for seq in 1..=3u64 {
            let header = RecordHeader {
                sequence: seq,
                ..sample_header()
            };
            starts.push(bytes.len());
            encode(
                &RecordDraft {
                    header,
                    metadata: &[],
                    entity: "e:1",
                    scope: "s",
                    salt: [0x11; SALT_LEN],
                    payload: b"\x81\xa1a\x01",
                },
                &mut bytes,
            );
        }
        bytes[starts[1] + 30] ^= 0x01;
        let seen: Vec<_> = frames(&bytes, 8).collect();
        assert_eq!(seen.len(), 3, "{seen:?}");
        match &seen[0] {
            Frame::Record { offset, len, view } => {
                assert_eq!((*offset, *len), (starts[0], starts[1] - starts[0]));
                assert_eq!(view.header.sequence, 1);
            }
            other => panic!("expected a record, got {other:?}"),
        }
        match &seen[1] {
            Frame::Damaged { offset, end, .. } => {
                assert_eq!((*offset, *end), (starts[1], starts[2]))
            }
            other => panic!("expected damage, got {other:?}"),
        }
        match &seen[2] {
            Frame::Record { offset, view, .. } => {
                assert_eq!(*offset, starts[2]);
                assert_eq!(view.header.sequence, 3);
            }
            other => panic!("expected a record, got {other:?}"),
        }
        // Damage that runs to the end is one range ending at the end of the bytes.
        let cut = starts[2] + 10;
        let tail: Vec<_> = frames(&bytes[..cut], starts[2]).collect();
        assert!(
            matches!(tail[..], [Frame::Damaged { offset, end, .. }] if offset == starts[2] && end == cut),
            "{tail:?}"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn header_strategy() -> impl Strategy<Value = RecordHeader> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u128>(),
            any::<u64>(),
            any::<u16>(),
            any::<bool>(),
            0u8..3,
            any::<u16>(),
            proptest::option::of(any::<u128>()),
            proptest::option::of(any::<u128>()),
            proptest::option::of(any::<[u8; 16]>()),
            any::<[u8; 32]>(),
        )
            .prop_map(
                |(seq, ts, id, version, kind, batch, enc, schema, cause, corr, key, prev)| {
                    let mut h = RecordHeader {
                        sequence: seq,
                        timestamp_ns: ts,
                        id: EventId::from_u128(id),
                        version,
                        kind: EventKind::from_bits(kind),
                        flags: if batch { FLAG_BATCH_CONTINUES } else { 0 },
                        encoding: Encoding::from_byte(enc).unwrap_or(Encoding::Opaque),
                        schema_version: schema,
                        causation: cause.map(EventId::from_u128),
                        correlation: corr.map(EventId::from_u128),
                        idempotency: key,
                        prev_hash: Hash::from_bytes(prev),
                    };
                    h.flags = flags_for(&h);
                    h
                },
            )
    }

    proptest! {
        /// Whatever the bytes, decoding returns a value or an error; it never panics
        /// and never claims more bytes than it was given.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok((_, len)) = decode(&bytes) {
                prop_assert!(len <= bytes.len());
            }
            let _ = implied_frame_len(&bytes);
        }

        /// Valid length prefixes followed by random bytes: still no panic.
        #[test]
        fn decode_random_body_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..400),
            fix_crc in any::<bool>(),
        ) {
            let mut bytes = vec![0u8; 8];
            bytes.extend_from_slice(&body);
            let len = bytes.len() as u32;
            bytes[4..8].copy_from_slice(&len.to_le_bytes());
            if fix_crc {
                let crc = crc32c::crc32c(&bytes[4..]);
                bytes[..4].copy_from_slice(&crc.to_le_bytes());
            }
            let _ = decode(&bytes);
        }

        /// Encode then decode returns every field; the implied length is the frame length.
        #[test]
        fn round_trip(
            header in header_strategy(),
            entity in "[a-z:0-9]{1,40}",
            scope in "[a-z:]{1,20}",
            salt in any::<[u8; SALT_LEN]>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            meta in proptest::collection::btree_map("[a-z.]{1,12}", "[ -~]{0,40}", 0..4),
        ) {
            let mut header = header;
            let meta: crate::metadata::Metadata = meta.into_iter().collect();
            let mut metadata = Vec::new();
            encode_metadata(&meta, &mut metadata);
            if !metadata.is_empty() {
                header.flags |= FLAG_METADATA;
            }
            let draft = RecordDraft { header: header.clone(), metadata: &metadata, entity: &entity, scope: &scope, salt, payload: &payload };
            let mut out = vec![0xEE; 3]; // encoding appends after existing bytes
            encode(&draft, &mut out);
            let frame = &out[3..];
            prop_assert_eq!(frame.len(), frame_len(&draft));
            prop_assert_eq!(implied_frame_len(frame), Some(frame.len()));
            let (view, len) = decode(frame).unwrap();
            prop_assert_eq!(len, frame.len());
            prop_assert_eq!(view.header, header);
            prop_assert_eq!(view.entity, entity.as_str());
            prop_assert_eq!(view.scope, scope.as_str());
            prop_assert_eq!(view.payload, PayloadField::Present { salt: &salt, bytes: &payload });
            prop_assert_eq!(decode_metadata(view.metadata).unwrap(), meta);
        }
    }
}
