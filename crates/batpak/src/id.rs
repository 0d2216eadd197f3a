//! `EventId`: a UUIDv7 assigned by the writer, strictly increasing with sequence.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A 128-bit UUIDv7. The writer assigns it; ids compare in commit order.
///
/// Layout (RFC 9562): 48 bits of Unix milliseconds, version `7`, then 74 bits that
/// start at a random value each millisecond and count up for every further event in
/// the same millisecond, with the RFC variant bits in between.
///
/// With the `uuid` feature it converts to and from `uuid::Uuid` (`From` both ways).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(u128);

const VERSION_BITS: u128 = 0x7 << 76;
const VARIANT_BITS: u128 = 0b10 << 62;
const RAND_B_MASK: u128 = (1 << 62) - 1;
const RAND_A_MASK: u128 = 0xFFF;
const COUNTER_BITS: u32 = 74;

impl EventId {
    /// Rebuilds an id from its 128-bit value.
    pub const fn from_u128(value: u128) -> Self {
        EventId(value)
    }

    /// The 128-bit value.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The 16 bytes in big-endian (RFC) order, as stored on disk.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Rebuilds an id from its 16 big-endian bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        EventId(u128::from_be_bytes(bytes))
    }

    /// The Unix millisecond timestamp in the id's first 48 bits.
    pub const fn unix_millis(self) -> u64 {
        (self.0 >> 80) as u64
    }

    fn counter(self) -> u128 {
        (((self.0 >> 64) & RAND_A_MASK) << 62) | (self.0 & RAND_B_MASK)
    }

    fn compose(millis: u64, counter: u128) -> Self {
        let rand_a = (counter >> 62) & RAND_A_MASK;
        let rand_b = counter & RAND_B_MASK;
        EventId((u128::from(millis) << 80) | VERSION_BITS | (rand_a << 64) | VARIANT_BITS | rand_b)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

/// Serialised as its text form (`0190a3f2-...`), in every format.
impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for EventId {
    type Err = Error;

    /// Parses the standard hyphenated form (`0190a3f2-...`) or 32 bare hex digits.
    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidEventId {
            text: text.to_string(),
        };
        let bytes = text.as_bytes();
        let hyphenated = bytes.len() == 36;
        if !(hyphenated || bytes.len() == 32) {
            return Err(invalid());
        }
        let mut value: u128 = 0;
        let mut digits = 0;
        for (i, &c) in bytes.iter().enumerate() {
            if hyphenated && matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(invalid());
                }
                continue;
            }
            let nibble = (c as char).to_digit(16).ok_or_else(invalid)?;
            value = (value << 4) | u128::from(nibble);
            digits += 1;
        }
        debug_assert_eq!(digits, 32);
        Ok(EventId(value))
    }
}

/// The same 128 bits: `Uuid::from(id).to_string() == id.to_string()`.
#[cfg(feature = "uuid")]
impl From<EventId> for uuid::Uuid {
    fn from(id: EventId) -> Self {
        uuid::Uuid::from_u128(id.as_u128())
    }
}

/// The same 128 bits. Any UUID converts; only the writer's ids name stored events.
#[cfg(feature = "uuid")]
impl From<uuid::Uuid> for EventId {
    fn from(uuid: uuid::Uuid) -> Self {
        EventId::from_u128(uuid.as_u128())
    }
}

/// Hands out strictly increasing UUIDv7 ids.
#[derive(Debug, Default)]
pub(crate) struct IdGenerator {
    last: Option<EventId>,
    /// Set after a resume: the first id in the same millisecond skips a random gap, so
    /// an id handed out before a crash and lost with the torn tail is not reissued.
    resumed: bool,
}

impl IdGenerator {
    /// Continues after `last` (the newest stored id), if any.
    pub(crate) fn resume(last: Option<EventId>) -> Self {
        IdGenerator {
            last,
            resumed: true,
        }
    }

    /// The newest id handed out or resumed from.
    pub(crate) fn last(&self) -> Option<EventId> {
        self.last
    }

    /// The next id for an event stamped `unix_millis`. `random` seeds the counter when
    /// a new millisecond starts; its top bit is dropped so the counter cannot wrap.
    pub(crate) fn next(&mut self, unix_millis: u64, random: u128) -> EventId {
        let id = match self.last {
            Some(last) if last.unix_millis() >= unix_millis => {
                let gap = if self.resumed {
                    1 + (random & 0xFFFF_FFFF)
                } else {
                    1
                };
                let counter = last.counter() + gap;
                if counter >> COUNTER_BITS == 0 {
                    EventId::compose(last.unix_millis(), counter)
                } else {
                    EventId::compose(last.unix_millis() + 1, 0)
                }
            }
            _ => EventId::compose(unix_millis, random & ((1 << (COUNTER_BITS - 1)) - 1)),
        };
        self.last = Some(id);
        self.resumed = false;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = EventId::from_u128(0x0190_a3f2_7c1d_7abc_8def_0123_4567_89ab);
        let text = id.to_string();
        assert_eq!(text, "0190a3f2-7c1d-7abc-8def-0123456789ab");
        assert_eq!(text.parse::<EventId>().unwrap(), id);
        assert_eq!(
            "0190a3f27c1d7abc8def0123456789ab"
                .parse::<EventId>()
                .unwrap(),
            id
        );
        assert_eq!(
            "0190A3F2-7C1D-7ABC-8DEF-0123456789AB"
                .parse::<EventId>()
                .unwrap(),
            id
        );
    }

    #[test]
    fn parse_rejects_malformed_text() {
        for bad in [
            "",
            "0190a3f2-7c1d-7abc-8def-0123456789a",
            "0190a3f2x7c1d-7abc-8def-0123456789ab",
            "0190a3f2-7c1d-7abc-8def-0123456789ag",
            "+190a3f27c1d7abc8def0123456789ab",
        ] {
            assert!(
                matches!(bad.parse::<EventId>(), Err(Error::InvalidEventId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generated_ids_are_v7_and_strictly_increasing() {
        let mut g = IdGenerator::default();
        let mut prev = g.next(1_700_000_000_000, u128::MAX);
        for i in 0..1000u64 {
            // Same millisecond, a clock step backwards, then forwards again.
            let ms = match i % 3 {
                0 => 1_700_000_000_000,
                1 => 1_699_999_999_000,
                _ => 1_700_000_000_000 + i,
            };
            let id = g.next(ms, u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert!(id > prev, "{id} <= {prev}");
            assert_eq!((id.as_u128() >> 76) & 0xF, 7, "version nibble");
            assert_eq!((id.as_u128() >> 62) & 0b11, 0b10, "variant bits");
            prev = id;
        }
    }

    #[test]
    fn resume_in_the_same_millisecond_skips_a_random_gap() {
        let last = EventId::compose(5, 100);
        let mut g = IdGenerator::resume(Some(last));
        let first = g.next(5, 0xABCD);
        assert_eq!(first.counter(), 100 + 1 + 0xABCD);
        assert_eq!(g.next(5, 0xABCD).counter(), first.counter() + 1);
    }

    #[test]
    fn counter_overflow_moves_to_the_next_millisecond() {
        let last = EventId::compose(5, (1u128 << COUNTER_BITS) - 1);
        let mut g = IdGenerator::resume(Some(last));
        let next = g.next(5, 0);
        assert!(next > last);
        assert_eq!(next.unix_millis(), 6);
    }
}

#[cfg(all(test, feature = "uuid"))]
mod uuid_tests {
    use super::*;

    #[test]
    fn converts_to_and_from_uuid_with_the_same_text() {
        let mut ids = IdGenerator::default();
        let generated = ids.next(1_700_000_000_000, 0x0123_4567_89ab_cdef);
        for id in [
            generated,
            EventId::from_u128(0x0190_a3f2_7c1d_7abc_8def_0123_4567_89ab),
            EventId::from_u128(0),
            EventId::from_u128(u128::MAX),
        ] {
            let uuid = uuid::Uuid::from(id);
            assert_eq!(uuid.to_string(), id.to_string());
            assert_eq!(uuid.as_bytes(), &id.to_bytes());
            assert_eq!(EventId::from(uuid), id);
        }
        assert_eq!(uuid::Uuid::from(generated).get_version_num(), 7);

        let uuid = uuid::Uuid::from_u128(0x0190_a3f2_7c1d_7abc_8def_0123_4567_89ab);
        let id = EventId::from(uuid);
        assert_eq!(id.to_string(), "0190a3f2-7c1d-7abc-8def-0123456789ab");
        assert_eq!(uuid::Uuid::from(id), uuid);
        assert_eq!(id.to_string().parse::<EventId>().unwrap(), id);
    }
}
