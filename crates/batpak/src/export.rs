//! The lossless export form: one JSON object per event ([`ExportLine`]) carrying every
//! stored field, written by `batpak export` and read back by `batpak import`, either
//! as a replica (`Store::import_preserved`: same ids, sequences, timestamps, hashes) or
//! re-appended as new events.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{HashInputs, PayloadProof, StoredEvent};
use crate::format::Encoding;
use crate::hash::{hex, Hash};
use crate::id::EventId;
use crate::kind::EventKind;
use crate::kinds::{KindNamed, KIND_NAME_KIND};
use crate::metadata::Metadata;
use crate::receipt::AppendReceipt;
use crate::store::Store;

/// One event as an export line.
///
/// Serde (JSON, fields in this order, every one present in an export): `sequence`,
/// `id`, `timestamp_ns`, `timestamp` (RFC 3339 UTC, for people; ignored on import),
/// `entity`, `scope`, `version`, `kind` (`"C:T"`), `kind_name`, `schema_version`,
/// `encoding`, `bytes` (the payload exactly, standard base64 with padding; `null` once
/// redacted), `payload` (the payload decoded to JSON when it is MessagePack or JSON,
/// for people and `jq`), `causation`, `correlation`, `metadata`, `redacted`, `salt`
/// (hex) or `digest` (hex, once redacted), `idempotency` (hex digest of the key),
/// `flags`, `prev_hash`, `event_hash`. Unknown fields are refused.
///
/// A hand-written line needs only `entity`, `scope`, `kind` and `payload` (any JSON):
/// it can be re-appended (stored as JSON bytes, schema version 1), not preserved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExportLine {
    /// Store-wide position in the source store.
    #[serde(default)]
    pub sequence: Option<u64>,
    /// The event id in the source store.
    #[serde(default)]
    pub id: Option<EventId>,
    /// Unix nanoseconds the source store stamped.
    #[serde(default)]
    pub timestamp_ns: Option<u64>,
    /// `timestamp_ns` as RFC 3339 UTC, for people. Not read back.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The entity.
    pub entity: String,
    /// The scope.
    pub scope: String,
    /// Position within the entity, from 0.
    #[serde(default)]
    pub version: Option<u64>,
    /// The kind.
    pub kind: EventKind,
    /// The kind's recorded name, when the source store knew one.
    #[serde(default)]
    pub kind_name: Option<String>,
    /// The payload schema version (1 when absent).
    #[serde(default)]
    pub schema_version: Option<u16>,
    /// How `bytes` are encoded.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// The payload bytes, base64; `None` once redacted or in a hand-written line.
    #[serde(default)]
    pub bytes: Option<String>,
    /// The payload as JSON: a view of `bytes` in an export, the payload itself in a
    /// hand-written line.
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// The cause, by its id in the source store.
    #[serde(default)]
    pub causation: Option<EventId>,
    /// The correlation, by its id in the source store.
    #[serde(default)]
    pub correlation: Option<EventId>,
    /// The event's metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// Whether the payload was redacted.
    #[serde(default)]
    pub redacted: bool,
    /// The payload salt, hex (absent once redacted).
    #[serde(default)]
    pub salt: Option<String>,
    /// The salted payload digest a redaction kept.
    #[serde(default)]
    pub digest: Option<Hash>,
    /// The digest of the append's idempotency key, hex.
    #[serde(default)]
    pub idempotency: Option<String>,
    /// The stored record flags the hash covers.
    #[serde(default)]
    pub flags: Option<u16>,
    /// The entity's previous event hash (zero for its first).
    #[serde(default)]
    pub prev_hash: Option<Hash>,
    /// This event's hash.
    #[serde(default)]
    pub event_hash: Option<Hash>,
}

impl ExportLine {
    /// The export line of `event`, whose kind is named `kind_name`.
    pub fn from_event(event: &StoredEvent, kind_name: Option<String>) -> ExportLine {
        let (salt, digest) = match event.proof.payload {
            PayloadProof::Salt(salt) => (Some(hex::encode(&salt)), None),
            PayloadProof::Digest(digest) => (None, Some(digest)),
        };
        let redacted = event.is_redacted();
        ExportLine {
            sequence: Some(event.sequence),
            id: Some(event.id),
            timestamp_ns: Some(event.timestamp_ns),
            timestamp: Some(rfc3339(event.timestamp_ns)),
            entity: event.coordinate.entity().to_string(),
            scope: event.coordinate.scope().to_string(),
            version: Some(event.version),
            kind: event.kind,
            kind_name,
            schema_version: Some(event.schema_version),
            encoding: Some(event.encoding),
            bytes: (!redacted).then(|| base64::encode(&event.payload)),
            payload: if redacted {
                None
            } else {
                json_view(event.encoding, &event.payload)
            },
            causation: event.causation,
            correlation: event.correlation,
            metadata: event.metadata.clone(),
            redacted,
            salt,
            digest,
            idempotency: event.proof.idempotency.map(|k| hex::encode(&k)),
            flags: Some(event.proof.flags),
            prev_hash: Some(event.prev_hash),
            event_hash: Some(event.event_hash()),
        }
    }

    /// The payload to re-append: `bytes` exactly with their encoding, or a
    /// hand-written `payload` as JSON bytes. Refused for a redacted event (its payload
    /// is erased) and a line with neither.
    pub fn payload_bytes(&self) -> std::result::Result<(Encoding, Vec<u8>), String> {
        if self.redacted {
            return Err("the event was redacted: its payload is erased".into());
        }
        match (&self.bytes, &self.payload) {
            (Some(text), _) => {
                let encoding = self.encoding.ok_or("`bytes` is given without `encoding`")?;
                let bytes = base64::decode(text).map_err(|e| format!("`bytes`: {e}"))?;
                Ok((encoding, bytes))
            }
            (None, Some(value)) => {
                if self.encoding.is_some_and(|e| e != Encoding::Json) {
                    return Err(
                        "a JSON `payload` without `bytes` is stored as JSON: leave `encoding` out or make it \"json\""
                            .into(),
                    );
                }
                serde_json::to_vec(value)
                    .map(|bytes| (Encoding::Json, bytes))
                    .map_err(|e| format!("`payload`: {e}"))
            }
            (None, None) => Err("the line has neither `bytes` nor `payload`".into()),
        }
    }

    /// The stored event this line describes, every field given, its `event_hash`
    /// checked against the fields. For [`Store::import_preserved`].
    pub fn to_preserved(&self) -> std::result::Result<StoredEvent, String> {
        fn need<T: Copy>(field: &'static str, value: Option<T>) -> std::result::Result<T, String> {
            value.ok_or_else(|| {
                format!(
                    "`{field}` is missing (a preserved import needs every field of an export line)"
                )
            })
        }
        let coordinate =
            crate::coordinate::Coordinate::new(self.entity.as_str(), self.scope.as_str())
                .map_err(|e| e.to_string())?;
        let (payload, proof) = if self.redacted {
            if self.bytes.is_some() || self.salt.is_some() {
                return Err("a redacted line carries no `bytes` and no `salt`".into());
            }
            (
                Vec::new(),
                PayloadProof::Digest(need("digest", self.digest)?),
            )
        } else {
            let salt_text = self.salt.as_deref().ok_or("`salt` is missing")?;
            let salt: [u8; 16] = hex::decode(salt_text)
                .ok_or_else(|| format!("`salt` {salt_text:?} is not 32 hex digits"))?;
            if self.digest.is_some() {
                return Err("an unredacted line carries no `digest`".into());
            }
            let text = self.bytes.as_deref().ok_or("`bytes` is missing")?;
            let bytes = base64::decode(text).map_err(|e| format!("`bytes`: {e}"))?;
            (bytes, PayloadProof::Salt(salt))
        };
        let idempotency = match self.idempotency.as_deref() {
            None => None,
            Some(text) => Some(
                hex::decode(text)
                    .ok_or_else(|| format!("`idempotency` {text:?} is not 32 hex digits"))?,
            ),
        };
        let event = StoredEvent {
            id: need("id", self.id)?,
            sequence: need("sequence", self.sequence)?,
            version: need("version", self.version)?,
            timestamp_ns: need("timestamp_ns", self.timestamp_ns)?,
            kind: self.kind,
            coordinate,
            causation: self.causation,
            correlation: self.correlation,
            metadata: self.metadata.clone(),
            encoding: need("encoding", self.encoding)?,
            schema_version: need("schema_version", self.schema_version)?,
            payload,
            prev_hash: need("prev_hash", self.prev_hash)?,
            proof: HashInputs {
                flags: need("flags", self.flags)?,
                idempotency,
                payload: proof,
            },
        };
        let claimed = need("event_hash", self.event_hash)?;
        let actual = event.event_hash();
        if claimed != actual {
            return Err(format!(
                "`event_hash` is {claimed}, but the line's fields hash to {actual}"
            ));
        }
        Ok(event)
    }
}

impl Store {
    /// The export line of `event`, with this store's name for its kind.
    pub fn export_line(&self, event: &StoredEvent) -> ExportLine {
        ExportLine::from_event(event, self.kind_name(event.kind))
    }

    /// Appends `events` (from [`ExportLine::to_preserved`]) atomically as one batch,
    /// each with the identity it had in its source store: the result is a replica, with
    /// the same ids, sequences, timestamps and hashes, so the source's receipts and
    /// anchors hold on it. Every event must continue this store exactly (the next
    /// sequence, the entity's next version and its head's hash as `prev_hash`, a cause
    /// already present, the last event ending a batch of the source), or the whole call is
    /// refused with `Error::NotPreserved` naming the event. Store records (category
    /// 0) are accepted. Receipts are signed when the store signs.
    pub fn import_preserved(&self, events: &[StoredEvent]) -> Result<Vec<AppendReceipt>> {
        if events.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let mut receipts = self.writer()?.append_preserved(events)?;
        self.sign_receipts(&mut receipts);
        for event in events.iter().filter(|e| e.kind == KIND_NAME_KIND) {
            if let Ok(named) = event.decode::<KindNamed>() {
                self.note_kind_name(named.kind, named.name);
            }
        }
        // The copy erases what the source erased, whenever the record arrives.
        self.apply_imported_redactions(events)?;
        // The copy hides what the source hid, at once.
        if events
            .iter()
            .any(|e| e.coordinate.entity() == crate::lifecycle_records::LIFECYCLE_ENTITY)
        {
            self.replay_lifecycle(&mut self.lifecycle())?;
        }
        Ok(receipts)
    }
}

/// The payload as JSON when its encoding is one the store can decode.
fn json_view(encoding: Encoding, bytes: &[u8]) -> Option<serde_json::Value> {
    match encoding {
        Encoding::MessagePack => rmp_serde::from_slice(bytes).ok(),
        Encoding::Json => serde_json::from_slice(bytes).ok(),
        Encoding::Opaque => None,
    }
}

/// Unix nanoseconds as RFC 3339 UTC with nanoseconds: `2026-12-02T20:19:45.123456789Z`.
pub(crate) fn rfc3339(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let nanos = unix_ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Standard base64 (RFC 4648, `+/`, padded): the export form of payload bytes.
pub(crate) mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }

    /// Decodes padded base64; names the offset of the first character that is not.
    pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
        let raw = text.as_bytes();
        if !raw.len().is_multiple_of(4) {
            return Err(format!(
                "{} characters of base64 is not a multiple of 4",
                raw.len()
            ));
        }
        let mut out = Vec::with_capacity(raw.len() / 4 * 3);
        for (q, quad) in raw.chunks(4).enumerate() {
            let last = (q + 1) * 4 == raw.len();
            let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && !last) {
                return Err(format!("misplaced padding at offset {}", q * 4 + 4 - pad));
            }
            let mut n = 0u32;
            for (i, &c) in quad[..4 - pad].iter().enumerate() {
                let v = value(c).ok_or_else(|| {
                    format!("{:?} at offset {} is not base64", char::from(c), q * 4 + i)
                })?;
                n |= v << (18 - 6 * i);
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let keep = 3 - pad;
            // Bits below the last kept byte must be zero (one canonical text per bytes).
            if bytes[keep..].iter().any(|&b| b != 0) {
                return Err(format!("non-canonical padding bits at offset {}", q * 4));
            }
            out.extend_from_slice(&bytes[..keep]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(base64::encode(plain.as_bytes()), coded);
            assert_eq!(base64::decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64::encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn bad_base64_is_refused_with_its_offset() {
        assert!(base64::decode("Zm9").unwrap_err().contains("multiple of 4"));
        assert!(base64::decode("Zm!v").unwrap_err().contains("offset 2"));
        assert!(base64::decode("Zg==Zm9v").unwrap_err().contains("padding"));
        assert!(base64::decode("Zh==")
            .unwrap_err()
            .contains("non-canonical"));
        assert!(base64::decode("Z===").is_err());
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339(1_796_243_060_165_417_534),
            "2026-12-02T20:24:20.165417534Z"
        );
    }
}
