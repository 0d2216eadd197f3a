//! `Hash`, the 32-byte blake3 digest every proof is made of, and the one lowercase hex
//! text codec for digests, keys and signatures. Pure.

use std::fmt;

/// A 32-byte blake3 digest. Displays as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Hash([u8; 32]);

impl Hash {
    /// All zeros: the `prev_hash` of an entity's first event.
    pub const ZERO: Hash = Hash([0; 32]);

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Hash(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Hash {
    type Err = crate::Error;

    /// 64 hex digits.
    fn from_str(text: &str) -> crate::Result<Self> {
        hex::decode(text)
            .map(Hash)
            .ok_or_else(|| crate::Error::Malformed {
                what: "hash",
                detail: format!("{text:?} is not 64 hex digits"),
            })
    }
}

/// Serialised as its 64 lowercase hex digits, in every format.
impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Accepts 64 hex digits (either case), as `FromStr` does.
impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct HexText;
        impl serde::de::Visitor<'_> for HexText {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hash as 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<Hash, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(HexText)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// Lowercase hex text.
pub(crate) mod hex {
    use std::fmt::Write;
    /// `bytes` as lowercase hex.
    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// Any number of bytes from an even number of hex digits (either case); `None`
    /// otherwise.
    pub(crate) fn decode_vec(text: &str) -> Option<Vec<u8>> {
        let digits = text.as_bytes();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        digits
            .chunks_exact(2)
            .map(|pair| {
                let high = (pair[0] as char).to_digit(16)?;
                let low = (pair[1] as char).to_digit(16)?;
                u8::try_from(high << 4 | low).ok()
            })
            .collect()
    }

    /// Exactly `N` bytes from `2 * N` hex digits (either case); `None` otherwise.
    pub(crate) fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
        let digits = text.as_bytes();
        if digits.len() != 2 * N {
            return None;
        }
        let mut out = [0u8; N];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            *byte = u8::try_from(high << 4 | low).ok()?;
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_and_rejects_bad_text() {
            assert_eq!(encode(&[0x00, 0xab, 0xff]), "00abff");
            assert_eq!(decode::<3>("00ABff"), Some([0x00, 0xab, 0xff]));
            assert_eq!(decode::<3>("00abf"), None);
            assert_eq!(decode::<3>("00abfg"), None);
            assert_eq!(decode::<2>("00abff"), None);
            assert_eq!(decode::<1>("+1"), None);
        }

        #[test]
        fn decode_vec_takes_any_even_number_of_digits() {
            assert_eq!(decode_vec("00ABff"), Some(vec![0x00, 0xab, 0xff]));
            assert_eq!(decode_vec(""), Some(Vec::new()));
            assert_eq!(decode_vec("0"), None);
            assert_eq!(decode_vec("0g"), None);
            assert_eq!(decode_vec("+1"), None);
        }
    }
}
