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

impl fmt::Debug for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventKind({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
