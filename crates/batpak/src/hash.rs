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
    }
}
