//! `EventKind`: a 4-bit category and a 12-bit type id in one `u16`.

use std::fmt;

use crate::error::{Error, Result};

/// The kind of an event: category (high 4 bits) and type id (low 12 bits).
///
/// Category 0 is reserved for records the store writes itself; user appends of a
/// category-0 kind are rejected with [`Error::ReservedKind`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKind(u16);

impl EventKind {
    /// The largest category.
    pub const MAX_CATEGORY: u8 = 0xF;
    /// The largest type id.
    pub const MAX_TYPE_ID: u16 = 0x0FFF;

    /// Builds a kind, checking both parts are in range.
    pub fn new(category: u8, type_id: u16) -> Result<Self> {
        if category > Self::MAX_CATEGORY || type_id > Self::MAX_TYPE_ID {
            return Err(Error::InvalidKind {
                reason: format!(
                    "category {category} (max {}) / type id {type_id} (max {})",
                    Self::MAX_CATEGORY,
                    Self::MAX_TYPE_ID
                ),
            });
        }
        Ok(EventKind((u16::from(category) << 12) | type_id))
    }

    /// Builds a kind for `const` items, failing compilation when a part is out of range.
    pub const fn custom(category: u8, type_id: u16) -> Self {
        assert!(category <= Self::MAX_CATEGORY, "category must be 0..=15");
        assert!(type_id <= Self::MAX_TYPE_ID, "type id must be 0..=4095");
        EventKind(((category as u16) << 12) | type_id)
    }

    /// Reinterprets a stored `u16`. Every `u16` is a valid kind.
    pub const fn from_bits(bits: u16) -> Self {
        EventKind(bits)
    }

    /// The `u16` stored on disk.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The category (0..=15).
    pub const fn category(self) -> u8 {
        (self.0 >> 12) as u8
    }

    /// The type id within the category (0..=4095).
    pub const fn type_id(self) -> u16 {
        self.0 & Self::MAX_TYPE_ID
    }

    /// Whether the kind belongs to the store's reserved category 0.
    pub const fn is_reserved(self) -> bool {
        self.category() == 0
    }

    /// Rejects reserved kinds for user appends.
    pub(crate) fn check_user(self) -> Result<()> {
        if self.is_reserved() {
            Err(Error::ReservedKind { kind: self })
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.category(), self.type_id())
    }
}

impl std::str::FromStr for EventKind {
    type Err = Error;

    /// `C:T`, each part decimal or `0x` hex: `1:1`, `0x2:0x01F`.
    fn from_str(text: &str) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidKind {
            reason: format!("{text:?} is not a kind C:T ({why})"),
        };
        let (category, type_id) = text.split_once(':').ok_or_else(|| invalid("no ':'"))?;
        let number = |part: &str| -> Option<u32> {
            match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                Some(hex) if !hex.is_empty() => u32::from_str_radix(hex, 16).ok(),
                Some(_) => None,
                None if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) => {
                    part.parse().ok()
                }
                None => None,
            }
        };
        let category = number(category).ok_or_else(|| invalid("bad category"))?;
        let type_id = number(type_id).ok_or_else(|| invalid("bad type id"))?;
        // Range-checked before narrowing, so the message names the value given.
        if category > u32::from(Self::MAX_CATEGORY) {
            return Err(invalid(&format!(
                "category {category} is over {}",
                Self::MAX_CATEGORY
            )));
        }
        if type_id > u32::from(Self::MAX_TYPE_ID) {
            return Err(invalid(&format!(
                "type id {type_id} is over {}",
                Self::MAX_TYPE_ID
            )));
        }
        EventKind::new(category as u8, type_id as u16)
    }
}

/// Serialised as its text form `C:T`.
impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Accepts exactly what `Serialize` writes: `C:T` with both parts in decimal, no
/// sign and no leading zeros. A part out of range is an error naming it.
impl<'de> serde::Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct KindText;
        impl serde::de::Visitor<'_> for KindText {
            type Value = EventKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event kind as text C:T (decimal category and type id)")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                text: &str,
            ) -> std::result::Result<EventKind, E> {
                EventKind::from_canonical(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(KindText)
    }
}

impl EventKind {
    /// Parses the text form `Display` writes, and nothing else.
    fn from_canonical(text: &str) -> std::result::Result<Self, String> {
        let malformed =
            || format!("{text:?} is not an event kind C:T (decimal, no sign or leading zeros)");
        let decimal = |part: &str| -> Option<u64> {
            let canonical = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            if canonical {
                part.parse().ok()
            } else {
                None
            }
        };
        let (category, type_id) = text.split_once(':').ok_or_else(malformed)?;
        let (Some(category), Some(type_id)) = (decimal(category), decimal(type_id)) else {
            return Err(malformed());
        };
        if category > u64::from(Self::MAX_CATEGORY) {
            return Err(format!(
                "event kind {text:?}: category {category} is out of range (max {})",
                Self::MAX_CATEGORY
            ));
        }
        if type_id > u64::from(Self::MAX_TYPE_ID) {
            return Err(format!(
                "event kind {text:?}: type id {type_id} is out of range (max {})",
                Self::MAX_TYPE_ID
            ));
        }
        // Both parts are in range, so the packed value fits in 16 bits.
        Ok(EventKind(((category as u16) << 12) | type_id as u16))
    }
}

impl fmt::Debug for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventKind({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_text_form() {
        assert_eq!(
            "1:1".parse::<EventKind>().ok(),
            Some(EventKind::custom(1, 1))
        );
        assert_eq!(
            "0x2:0x01F".parse::<EventKind>().ok(),
            Some(EventKind::custom(2, 0x1F))
        );
        assert_eq!(
            "15:4095".parse::<EventKind>().ok(),
            Some(EventKind::custom(15, 4095))
        );
        for bad in [
            "", "1", "1:", ":1", "16:0", "1:4096", "a:1", "1:-1", "0x:1", "1:1:1", "300:1",
        ] {
            assert!(
                matches!(bad.parse::<EventKind>(), Err(Error::InvalidKind { .. })),
                "{bad:?}"
            );
        }
        let k = EventKind::custom(7, 300);
        assert_eq!(k.to_string().parse::<EventKind>().ok(), Some(k));
        // The value given is named, not what it would saturate to.
        for (bad, named) in [("300:1", "category 300"), ("1:70000", "type id 70000")] {
            let message = bad.parse::<EventKind>().map_err(|e| e.to_string()).err();
            assert!(
                message.as_deref().is_some_and(|m| m.contains(named)),
                "{bad}: {message:?}"
            );
        }
    }

    #[test]
    fn packs_category_and_type_id() {
        let k = EventKind::custom(3, 0xABC);
        assert_eq!(k.bits(), 0x3ABC);
        assert_eq!(k.category(), 3);
        assert_eq!(k.type_id(), 0xABC);
        assert_eq!(k.to_string(), "3:2748");
        assert_eq!(EventKind::from_bits(0x3ABC), k);
    }

    #[test]
    fn rejects_out_of_range_parts() {
        assert!(EventKind::new(16, 1).is_err());
        assert!(EventKind::new(1, 4096).is_err());
        assert!(EventKind::new(15, 4095).is_ok());
    }

    #[test]
    fn category_zero_is_reserved() {
        assert!(EventKind::custom(0, 5).is_reserved());
        assert!(matches!(
            EventKind::custom(0, 5).check_user(),
            Err(Error::ReservedKind { .. })
        ));
        assert!(EventKind::custom(1, 0).check_user().is_ok());
    }
}
