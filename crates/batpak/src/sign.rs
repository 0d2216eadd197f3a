//! Ed25519 keys and signatures (RFC 8032), and the key ids that name them. Pure: what
//! gets signed is decided by `receipt` and `verify`.
//!
//! ```text
//! key_id = blake3::derive_key("batpak 2026 key id v1", verifying_key [32])[..8]
//! ```

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, SECRET_KEY_LENGTH};

use crate::error::{Error, Result};
use crate::hash::hex;

/// Names a verifying key: the first 8 bytes of a keyed digest of it. Carried in every
/// signature so the verifier knows which configured key to try.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        KeyId(bytes)
    }

    /// The raw bytes.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = Error;

    /// 16 hex digits.
    fn from_str(text: &str) -> Result<Self> {
        hex::decode(text)
            .map(KeyId)
            .ok_or_else(|| malformed("key id", text, 8))
    }
}

/// An Ed25519 signature: 64 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps raw bytes (not checked until verified).
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(bytes)
    }

    /// The raw bytes.
    pub const fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = Error;

    /// 128 hex digits.
    fn from_str(text: &str) -> Result<Self> {
        hex::decode(text)
            .map(Signature)
            .ok_or_else(|| malformed("signature", text, 64))
    }
}

/// An Ed25519 secret key. A store opened with one signs every receipt and anchor.
/// `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// The key with this 32-byte secret (RFC 8032 private key).
    pub fn from_bytes(secret: &[u8; SECRET_KEY_LENGTH]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(secret))
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self> {
        let mut secret = [0u8; SECRET_KEY_LENGTH];
        getrandom::fill(&mut secret).map_err(|e| Error::Io {
            op: "generate signing key",
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(SigningKey::from_bytes(&secret))
    }

    /// The 32-byte secret. Keep it secret.
    pub fn to_bytes(&self) -> [u8; SECRET_KEY_LENGTH] {
        self.0.to_bytes()
    }

    /// The public half, to give to verifiers.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// The id of the public half.
    pub fn key_id(&self) -> KeyId {
        self.verifying_key().key_id()
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey {{ key_id: {} }}", self.key_id())
    }
}

/// An Ed25519 public key: checks signatures made with its secret half.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// The key with these 32 bytes; an error when they are not a valid curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(VerifyingKey)
            .map_err(|_| Error::Malformed {
                what: "verifying key",
                detail: format!("{} is not a valid Ed25519 public key", hex::encode(bytes)),
            })
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        let digest = blake3::derive_key("batpak 2026 key id v1", self.0.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    /// Whether `signature` is this key's signature of `message`. Strict: rejects
    /// non-canonical and small-order encodings, so a signature has one valid form.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({self}, id {})", self.key_id())
    }
}

impl FromStr for SigningKey {
    type Err = Error;

    /// 64 hex digits: the 32-byte secret.
    fn from_str(text: &str) -> Result<Self> {
        let secret = hex::decode(text.trim()).ok_or_else(|| Error::Malformed {
            what: "signing key",
            detail: "expected 64 hex digits (an Ed25519 secret key)".into(),
        })?;
        Ok(SigningKey::from_bytes(&secret))
    }
}

impl FromStr for VerifyingKey {
    type Err = Error;

    /// 64 hex digits.
    fn from_str(text: &str) -> Result<Self> {
        let bytes = hex::decode(text).ok_or_else(|| malformed("verifying key", text, 32))?;
        VerifyingKey::from_bytes(&bytes)
    }
}

fn malformed(what: &'static str, text: &str, bytes: usize) -> Error {
    Error::Malformed {
        what,
        detail: format!("{text:?} is not {} hex digits", 2 * bytes),
    }
}

/// A key id with the signature it made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signed {
    /// The key that signed.
    pub key_id: KeyId,
    /// The signature.
    pub signature: Signature,
}

impl Signed {
    /// The key id and signature of a JSON form, both hex or both absent.
    pub(crate) fn from_text(
        key_id: Option<String>,
        signature: Option<String>,
    ) -> std::result::Result<Option<Signed>, String> {
        match (key_id, signature) {
            (Some(k), Some(s)) => Ok(Some(Signed {
                key_id: k.parse().map_err(|e: Error| e.to_string())?,
                signature: s.parse().map_err(|e: Error| e.to_string())?,
            })),
            (None, None) => Ok(None),
            _ => Err("key_id and signature must be both present or both absent".into()),
        }
    }
}

/// Length of the domain every signed message starts with.
pub(crate) const DOMAIN_LEN: usize = 16;

/// The wire form of a signed message (receipts, anchors): the message, which starts
/// with its domain and ends with the key id, then the signature when there is one.
pub(crate) fn to_wire(message: &[u8], signature: Option<&Signed>) -> Vec<u8> {
    let mut out = message.to_vec();
    if let Some(s) = signature {
        out.extend_from_slice(&s.signature.to_bytes());
    }
    out
}

/// Splits a wire form into its message and signature, checking the length (the
/// message alone, or with a signature), the domain, and that an unsigned message names
/// no key. `what` names the form in errors.
pub(crate) fn from_wire<'a>(
    bytes: &'a [u8],
    domain: &[u8; DOMAIN_LEN],
    message_len: usize,
    what: &'static str,
) -> Result<(&'a [u8], Option<Signed>)> {
    let malformed = |detail: String| Error::Malformed { what, detail };
    let signed_len = message_len + 64;
    if bytes.len() != message_len && bytes.len() != signed_len {
        return Err(malformed(format!(
            "{} bytes, expected {message_len} (unsigned) or {signed_len} (signed)",
            bytes.len()
        )));
    }
    if &bytes[..DOMAIN_LEN] != domain {
        return Err(malformed(format!(
            "bytes [0, {DOMAIN_LEN}) are {:?}, expected {:?}",
            String::from_utf8_lossy(&bytes[..DOMAIN_LEN]),
            String::from_utf8_lossy(domain)
        )));
    }
    let (message, rest) = bytes.split_at(message_len);
    let mut id = [0u8; 8];
    id.copy_from_slice(&message[message_len - 8..]);
    let key_id = KeyId(id);
    let signature = if rest.is_empty() {
        if id != [0; 8] {
            return Err(malformed(format!(
                "unsigned {what} names key {key_id}; the key id must be zero without a signature"
            )));
        }
        None
    } else {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(rest);
        Some(Signed {
            key_id,
            signature: Signature(sig),
        })
    };
    Ok((message, signature))
}

/// What checking a signature against the configured keys found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureCheck {
    Valid,
    UnknownKey,
    Bad,
}

/// The store's keys: the one it signs with, if any, and every key it accepts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Keyring {
    signer: Option<SigningKey>,
    trusted: Vec<VerifyingKey>,
}

impl Keyring {
    pub(crate) fn new(signer: Option<SigningKey>, mut trusted: Vec<VerifyingKey>) -> Self {
        if let Some(key) = &signer {
            trusted.push(key.verifying_key());
        }
        trusted.sort_by_key(|k| k.key_id());
        trusted.dedup_by_key(|k| k.key_id());
        Keyring { signer, trusted }
    }

    /// Whether this store signs.
    pub(crate) fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// Signs `message` with the store's key, if it has one.
    pub(crate) fn sign(&self, message: &[u8]) -> Option<Signed> {
        self.signer.as_ref().map(|key| Signed {
            key_id: key.key_id(),
            signature: key.sign(message),
        })
    }

    /// The key id a signature of this store carries (the signer's).
    pub(crate) fn signer_id(&self) -> Option<KeyId> {
        self.signer.as_ref().map(SigningKey::key_id)
    }

    /// Checks a signature with the trusted key it names.
    pub(crate) fn check(&self, message: &[u8], signed: &Signed) -> SignatureCheck {
        match self.trusted.iter().find(|k| k.key_id() == signed.key_id) {
            None => SignatureCheck::UnknownKey,
            Some(key) if key.verify(message, &signed.signature) => SignatureCheck::Valid,
            Some(_) => SignatureCheck::Bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<const N: usize>(text: &str) -> [u8; N] {
        hex::decode(text).unwrap_or_else(|| panic!("bad test hex {text}"))
    }

    fn message(text: &str) -> Vec<u8> {
        (0..text.len() / 2)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// RFC 8032 section 7.1, tests 1, 2, 3 and SHA(abc): the derived public key, the
    /// signature, verification, and rejection after flipping any single bit.
    #[test]
    fn rfc_8032_test_vectors() {
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
            (
                "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
                "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
            ),
        ];
        for (secret, public, msg, sig) in vectors {
            let key = SigningKey::from_bytes(&bytes(secret));
            let verifying = key.verifying_key();
            assert_eq!(verifying.to_string(), public);
            let msg = message(msg);
            let signature = key.sign(&msg);
            assert_eq!(signature.to_string(), sig);
            assert!(verifying.verify(&msg, &signature));
            let from_text: VerifyingKey = public.parse().unwrap_or_else(|e| panic!("{e}"));
            assert!(from_text.verify(&msg, &sig.parse().unwrap_or_else(|e| panic!("{e}"))));
            for bit in 0..512 {
                let mut tampered = signature.to_bytes();
                tampered[bit / 8] ^= 1 << (bit % 8);
                assert!(!verifying.verify(&msg, &Signature::from_bytes(tampered)));
            }
            let mut longer = msg.clone();
            longer.push(0);
            assert!(!verifying.verify(&longer, &signature));
        }
    }

    #[test]
    fn key_ids_name_keys_and_keyring_checks_by_id() {
        let old = SigningKey::from_bytes(&[1; 32]);
        let new = SigningKey::from_bytes(&[2; 32]);
        assert_ne!(old.key_id(), new.key_id());
        // Golden: the id rule above, cross-checked with Python's blake3.
        assert_eq!(old.key_id().to_string(), KEY_ID_OF_ONES);
        let ring = Keyring::new(Some(new.clone()), vec![old.verifying_key()]);
        let by_old = Signed {
            key_id: old.key_id(),
            signature: old.sign(b"m"),
        };
        assert_eq!(ring.check(b"m", &by_old), SignatureCheck::Valid);
        assert_eq!(ring.check(b"n", &by_old), SignatureCheck::Bad);
        let stranger = SigningKey::from_bytes(&[3; 32]);
        let by_stranger = Signed {
            key_id: stranger.key_id(),
            signature: stranger.sign(b"m"),
        };
        assert_eq!(ring.check(b"m", &by_stranger), SignatureCheck::UnknownKey);
        // A stranger's signature under a trusted id is just a bad signature.
        let forged = Signed {
            key_id: old.key_id(),
            ..by_stranger
        };
        assert_eq!(ring.check(b"m", &forged), SignatureCheck::Bad);
        assert_eq!(ring.sign(b"m").map(|s| s.key_id), Some(new.key_id()));
        assert!(Keyring::new(None, vec![]).sign(b"m").is_none());
        assert!(format!("{new:?}").contains(&new.key_id().to_string()));
        assert!(!format!("{new:?}").contains(&hex::encode(&[2; 32])));
    }

    const KEY_ID_OF_ONES: &str = "6a8bfe7d23b2e469";

    #[test]
    fn text_forms_reject_bad_input() {
        assert!("zz".parse::<KeyId>().is_err());
        assert!("00".repeat(63).parse::<Signature>().is_err());
        // y = 2 is not on the curve.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let err = VerifyingKey::from_bytes(&not_a_point);
        assert!(matches!(
            err,
            Err(Error::Malformed {
                what: "verifying key",
                ..
            })
        ));
        assert!(matches!(
            "00".repeat(31).parse::<SigningKey>(),
            Err(Error::Malformed {
                what: "signing key",
                ..
            })
        ));
        let key = SigningKey::from_bytes(&[9; 32]);
        let parsed: SigningKey = hex::encode(&key.to_bytes()).parse().unwrap();
        assert_eq!(parsed.key_id(), key.key_id());
    }
}
