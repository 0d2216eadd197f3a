//! Receipts: what an accepted append returns, its signed byte layout and wire form,
//! and checking a receipt against the store.
//!
//! The signed message and the wire form share one fixed layout:
//!
//! ```text
//! offset  size  field
//! 0       16    domain            ASCII "batpak receipt 1"
//! 16      16    event_id          UUIDv7, big-endian
//! 32      8     sequence          u64 LE
//! 40      8     version           u64 LE
//! 48      8     timestamp_ns      u64 LE
//! 56      2     kind              u16 LE
//! 58      32    coordinate digest (`Coordinate::digest`)
//! 90      32    event_hash
//! 122     32    prev_hash
//! 154     8     key_id            the signing key's id; zero when unsigned
//! 162     64    signature         Ed25519 over bytes [0, 162); present only when signed
//! ```
//!
//! So the wire form is 162 bytes unsigned or 226 bytes signed, and a client that kept
//! only these fields can have the receipt checked.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::id::EventId;
use crate::kind::EventKind;
use crate::sign::{KeyId, SignatureCheck, Signed, VerifyingKey};

const DOMAIN: &[u8; 16] = b"batpak receipt 1";
const ID_OFFSET: usize = DOMAIN.len();
const SEQUENCE_OFFSET: usize = ID_OFFSET + 16;
const VERSION_OFFSET: usize = SEQUENCE_OFFSET + 8;
const TIMESTAMP_OFFSET: usize = VERSION_OFFSET + 8;
const KIND_OFFSET: usize = TIMESTAMP_OFFSET + 8;
const COORDINATE_OFFSET: usize = KIND_OFFSET + 2;
const HASH_OFFSET: usize = COORDINATE_OFFSET + 32;
const PREV_OFFSET: usize = HASH_OFFSET + 32;
const KEY_ID_OFFSET: usize = PREV_OFFSET + 32;
/// Length of the signed message (and of an unsigned receipt's wire form).
pub(crate) const RECEIPT_MESSAGE_LEN: usize = KEY_ID_OFFSET + 8;
/// Length of a signed receipt's wire form.
pub(crate) const SIGNED_RECEIPT_LEN: usize = RECEIPT_MESSAGE_LEN + 64;

/// What an accepted append returns: the facts of the stored event, optionally signed
/// by the store's key.
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
    /// The event kind.
    pub kind: EventKind,
    /// The digest of the event's coordinate (`Coordinate::digest`).
    pub coordinate_digest: Hash,
    /// The event's hash (its link in the entity's chain).
    pub event_hash: Hash,
    /// The hash of the entity's previous event, zero for the first.
    pub prev_hash: Hash,
    /// The store's signature over the layout above, when it was opened with a key.
    pub signature: Option<Signed>,
}

/// A receipt field that can disagree with the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptField {
    /// `sequence`.
    Sequence,
    /// `version`.
    Version,
    /// `timestamp_ns`.
    Timestamp,
    /// `kind`.
    Kind,
    /// `coordinate_digest`.
    Coordinate,
    /// `event_hash`.
    EventHash,
    /// `prev_hash`.
    PrevHash,
}

/// What checking a receipt found. Only `Signed` and `Unsigned` are valid.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptCheck {
    /// Every field matches the store and the signature is valid under a trusted key.
    Signed {
        /// The key that signed.
        key_id: KeyId,
    },
    /// Every field matches the store; the receipt carries no signature.
    Unsigned,
    /// The signature names a key that is not configured.
    UnknownKey {
        /// The key id the receipt names.
        key_id: KeyId,
    },
    /// The signature does not verify: some signed field was changed after signing.
    BadSignature {
        /// The key id the receipt names.
        key_id: KeyId,
    },
    /// The store has no event with the receipt's id.
    NoSuchEvent {
        /// The receipt's event id.
        event_id: EventId,
    },
    /// A field disagrees with the stored event (the first in layout order).
    Mismatch {
        /// Which field.
        field: ReceiptField,
        /// The receipt's value, as text.
        receipt: String,
        /// The store's value, as text.
        stored: String,
    },
}

impl ReceiptCheck {
    /// Whether the receipt is valid (signed or not).
    pub fn is_valid(&self) -> bool {
        matches!(self, ReceiptCheck::Signed { .. } | ReceiptCheck::Unsigned)
    }
}

impl AppendReceipt {
    /// Bytes of the signed message (`signed_message`).
    pub const MESSAGE_LEN: usize = RECEIPT_MESSAGE_LEN;
    /// Bytes of the wire form of a signed receipt (`to_bytes`).
    pub const SIGNED_LEN: usize = SIGNED_RECEIPT_LEN;

    /// The bytes a signature covers, naming `key_id` (zero when unsigned).
    pub fn signed_message(&self, key_id: Option<KeyId>) -> [u8; RECEIPT_MESSAGE_LEN] {
        let mut out = [0u8; RECEIPT_MESSAGE_LEN];
        out[..ID_OFFSET].copy_from_slice(DOMAIN);
        out[ID_OFFSET..SEQUENCE_OFFSET].copy_from_slice(&self.event_id.to_bytes());
        out[SEQUENCE_OFFSET..VERSION_OFFSET].copy_from_slice(&self.sequence.to_le_bytes());
        out[VERSION_OFFSET..TIMESTAMP_OFFSET].copy_from_slice(&self.version.to_le_bytes());
        out[TIMESTAMP_OFFSET..KIND_OFFSET].copy_from_slice(&self.timestamp_ns.to_le_bytes());
        out[KIND_OFFSET..COORDINATE_OFFSET].copy_from_slice(&self.kind.bits().to_le_bytes());
        out[COORDINATE_OFFSET..HASH_OFFSET].copy_from_slice(self.coordinate_digest.as_bytes());
        out[HASH_OFFSET..PREV_OFFSET].copy_from_slice(self.event_hash.as_bytes());
        out[PREV_OFFSET..KEY_ID_OFFSET].copy_from_slice(self.prev_hash.as_bytes());
        if let Some(id) = key_id {
            out[KEY_ID_OFFSET..].copy_from_slice(&id.to_bytes());
        }
        out
    }

    /// The wire form: 162 bytes, plus the 64-byte signature when signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let message = self.signed_message(self.signature.map(|s| s.key_id));
        crate::sign::to_wire(&message, self.signature.as_ref())
    }

    /// Decodes the wire form. The error names what was wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (m, signature) = crate::sign::from_wire(bytes, DOMAIN, RECEIPT_MESSAGE_LEN, "receipt")?;
        let u64_at = |at: usize| u64::from_le_bytes(array(&m[at..at + 8]));
        let hash_at = |at: usize| Hash::from_bytes(array(&m[at..at + 32]));
        Ok(AppendReceipt {
            event_id: EventId::from_bytes(array(&m[ID_OFFSET..SEQUENCE_OFFSET])),
            sequence: u64_at(SEQUENCE_OFFSET),
            version: u64_at(VERSION_OFFSET),
            timestamp_ns: u64_at(TIMESTAMP_OFFSET),
            kind: EventKind::from_bits(u16::from_le_bytes(array(
                &m[KIND_OFFSET..COORDINATE_OFFSET],
            ))),
            coordinate_digest: hash_at(COORDINATE_OFFSET),
            event_hash: hash_at(HASH_OFFSET),
            prev_hash: hash_at(PREV_OFFSET),
            signature,
        })
    }

    /// Checks only the signature, against `keys`: for a client that holds the
    /// store's public keys but not the store. `Signed` or `Unsigned` when it holds;
    /// the receipt's facts are checked by [`Store::verify_receipt`](crate::Store::verify_receipt).
    pub fn check_signature(&self, keys: &[VerifyingKey]) -> ReceiptCheck {
        let ring = crate::sign::Keyring::new(None, keys.to_vec());
        signature_check(&ring, self).unwrap_or(ReceiptCheck::Unsigned)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// The signature's verdict, or `None` when there is none to check.
pub(crate) fn signature_check(
    ring: &crate::sign::Keyring,
    r: &AppendReceipt,
) -> Option<ReceiptCheck> {
    let signed = r.signature?;
    let message = r.signed_message(Some(signed.key_id));
    Some(match ring.check(&message, &signed) {
        SignatureCheck::Valid => ReceiptCheck::Signed {
            key_id: signed.key_id,
        },
        SignatureCheck::UnknownKey => ReceiptCheck::UnknownKey {
            key_id: signed.key_id,
        },
        SignatureCheck::Bad => ReceiptCheck::BadSignature {
            key_id: signed.key_id,
        },
    })
}

/// The JSON form: ids in UUID text, kind as `C:T`, digests, key id and signature in hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptJson {
    event_id: String,
    sequence: u64,
    version: u64,
    timestamp_ns: u64,
    kind: String,
    coordinate_digest: String,
    event_hash: String,
    prev_hash: String,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

impl Serialize for AppendReceipt {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        ReceiptJson {
            event_id: self.event_id.to_string(),
            sequence: self.sequence,
            version: self.version,
            timestamp_ns: self.timestamp_ns,
            kind: self.kind.to_string(),
            coordinate_digest: self.coordinate_digest.to_string(),
            event_hash: self.event_hash.to_string(),
            prev_hash: self.prev_hash.to_string(),
            key_id: self.signature.map(|s| s.key_id.to_string()),
            signature: self.signature.map(|s| s.signature.to_string()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AppendReceipt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let j = ReceiptJson::deserialize(deserializer)?;
        let text = |e: Error| D::Error::custom(e.to_string());
        let signature = Signed::from_text(j.key_id, j.signature).map_err(D::Error::custom)?;
        Ok(AppendReceipt {
            event_id: j.event_id.parse().map_err(text)?,
            sequence: j.sequence,
            version: j.version,
            timestamp_ns: j.timestamp_ns,
            kind: j.kind.parse().map_err(text)?,
            coordinate_digest: j.coordinate_digest.parse().map_err(text)?,
            event_hash: j.event_hash.parse().map_err(text)?,
            prev_hash: j.prev_hash.parse().map_err(text)?,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SigningKey;

    fn sample() -> AppendReceipt {
        AppendReceipt {
            event_id: EventId::from_bytes(
                *b"\x01\x90\xa3\xf2\x00\x00\x70\x00\x80\x00\x00\x00\x00\x00\x00\x07",
            ),
            sequence: 42,
            version: 3,
            timestamp_ns: 1_700_000_000_000_000_000,
            kind: EventKind::custom(1, 2),
            coordinate_digest: Hash::from_bytes([0xC0; 32]),
            event_hash: Hash::from_bytes([0xE5; 32]),
            prev_hash: Hash::from_bytes([0x9E; 32]),
            signature: None,
        }
    }

    #[test]
    fn message_layout_golden_bytes() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let m = sample().signed_message(Some(key.key_id()));
        assert_eq!(&m[..16], b"batpak receipt 1");
        assert_eq!(
            crate::hash::hex::encode(&m[16..58]),
            "0190a3f2000070008000000000000007\
             2a00000000000000\
             0300000000000000\
             00002a36fe9c9717\
             0210"
                .replace(' ', "")
        );
        assert_eq!(m[58..90], [0xC0; 32]);
        assert_eq!(m[90..122], [0xE5; 32]);
        assert_eq!(m[122..154], [0x9E; 32]);
        assert_eq!(m[154..], key.key_id().to_bytes());
        assert_eq!(sample().signed_message(None)[154..], [0; 8]);
        // The whole message signed with the [7; 32] key, cross-checked with Python's
        // `cryptography` (Ed25519 is deterministic).
        assert_eq!(
            key.sign(&m).to_string(),
            "ca3ab65cde10c37d1f165629a9eb24321f37026ff65e69c552dd2b8827160bc7\
             a25f6cb01d5cc7004278aeab3d2026794b2a7d886204ccda03e2fb43ad7a2005"
        );
        assert_eq!(RECEIPT_MESSAGE_LEN, 162);
        assert_eq!(SIGNED_RECEIPT_LEN, 226);
    }

    #[test]
    fn wire_and_json_round_trip() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut r = sample();
        assert_eq!(AppendReceipt::from_bytes(&r.to_bytes()).ok(), Some(r));
        r.signature = Some(Signed {
            key_id: key.key_id(),
            signature: key.sign(&r.signed_message(Some(key.key_id()))),
        });
        let wire = r.to_bytes();
        assert_eq!(wire.len(), SIGNED_RECEIPT_LEN);
        assert_eq!(AppendReceipt::from_bytes(&wire).ok(), Some(r));
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(serde_json::from_str::<AppendReceipt>(&json).ok(), Some(r));
        assert_eq!(
            r.check_signature(&[key.verifying_key()]),
            ReceiptCheck::Signed {
                key_id: key.key_id()
            }
        );
    }

    #[test]
    fn wire_form_rejects_bad_bytes() {
        let r = sample();
        let wire = r.to_bytes();
        for len in [0, 161, 163, 225, 227] {
            let mut bytes = wire.clone();
            bytes.resize(len, 0);
            let err = AppendReceipt::from_bytes(&bytes);
            assert!(
                matches!(
                    err,
                    Err(Error::Malformed {
                        what: "receipt",
                        ..
                    })
                ),
                "{len}"
            );
        }
        let mut bad_domain = wire.clone();
        bad_domain[0] ^= 1;
        assert!(AppendReceipt::from_bytes(&bad_domain).is_err());
        let mut stray_key = wire;
        stray_key[160] = 1;
        assert!(AppendReceipt::from_bytes(&stray_key).is_err());
        let half = r#"{"event_id":"0190a3f2-0000-7000-8000-000000000007","sequence":1,"version":0,
            "timestamp_ns":1,"kind":"1:1","coordinate_digest":"00","event_hash":"00","prev_hash":"00"}"#;
        assert!(serde_json::from_str::<AppendReceipt>(half).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::sign::Signature;

    fn receipt_strategy() -> impl Strategy<Value = AppendReceipt> {
        (
            any::<[u8; 16]>(),
            any::<(u64, u64, u64, u16)>(),
            any::<[[u8; 32]; 3]>(),
            proptest::option::of((any::<[u8; 8]>(), proptest::collection::vec(any::<u8>(), 64))),
        )
            .prop_map(
                |(id, (sequence, version, ts, kind), hashes, sig)| AppendReceipt {
                    event_id: EventId::from_bytes(id),
                    sequence,
                    version,
                    timestamp_ns: ts,
                    kind: EventKind::from_bits(kind),
                    coordinate_digest: Hash::from_bytes(hashes[0]),
                    event_hash: Hash::from_bytes(hashes[1]),
                    prev_hash: Hash::from_bytes(hashes[2]),
                    signature: sig.map(|(key, bytes)| Signed {
                        key_id: KeyId::from_bytes(key),
                        signature: Signature::from_bytes(array(&bytes)),
                    }),
                },
            )
    }

    proptest! {
        #[test]
        fn wire_and_json_round_trip(r in receipt_strategy()) {
            // A signed receipt with an all-zero key id is still signed: the length says so.
            prop_assert_eq!(AppendReceipt::from_bytes(&r.to_bytes()).ok(), Some(r));
            let json = serde_json::to_string(&r).unwrap_or_default();
            prop_assert_eq!(serde_json::from_str::<AppendReceipt>(&json).ok(), Some(r));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop_oneof![
            // After the 16-byte domain: exactly an unsigned or a signed body, or anything.
            proptest::collection::vec(any::<u8>(), RECEIPT_MESSAGE_LEN - 16),
            proptest::collection::vec(any::<u8>(), SIGNED_RECEIPT_LEN - 16),
            proptest::collection::vec(any::<u8>(), 0..300),
        ]) {
            let _ = AppendReceipt::from_bytes(&bytes);
            let mut framed = DOMAIN.to_vec();
            framed.extend_from_slice(&bytes);
            if let Ok(r) = AppendReceipt::from_bytes(&framed) {
                prop_assert_eq!(r.to_bytes(), framed);
            }
        }
    }
}
