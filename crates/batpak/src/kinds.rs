//! Kind names: the store records the name of each kind it stores (a `KindNamed`
//! record, kind 0:7, on `batpak:kinds`) the first time a typed payload of that kind is
//! appended, so tools show `1:2 OrderPaid` long after the program that wrote it.
//!
//! A recorded name is never replaced: a program whose type gives a recorded kind
//! another name is told so in the open report (`kind_renames`), and the store keeps
//! the first name.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

use crate::event::EventPayload;
use crate::kind::EventKind;
use crate::sync::{lock, read, write};

/// The kind of a kind-name record (reserved category 0).
pub(crate) const KIND_NAME_KIND: EventKind = EventKind::custom(0, 7);
/// The entity every kind-name record is appended to.
pub(crate) const KINDS_ENTITY: &str = "batpak:kinds";
/// The scope of the kind-name records.
pub(crate) const KINDS_SCOPE: &str = "batpak:kinds";

/// The record of the name a kind was first stored under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KindNamed {
    /// The kind.
    pub kind: EventKind,
    /// Its name (`EventPayload::NAME` of the type that first appended it).
    pub name: String,
}

impl EventPayload for KindNamed {
    const KIND: EventKind = KIND_NAME_KIND;
    const NAME: &'static str = "batpak.KindNamed";
}

/// The names of the store's own record kinds (category 0), which need no record.
pub(crate) fn store_record_name(kind: EventKind) -> Option<&'static str> {
    if kind.category() != 0 {
        return None;
    }
    Some(match kind.type_id() {
        1 => "batpak.Denial",
        2 => "batpak.GateBypass",
        3 => "batpak.Redaction",
        4 => "batpak.ReactorPosition",
        5 => "batpak.ReactorSkipped",
        6 => "batpak.Repaired",
        7 => "batpak.KindNamed",
        8 => "batpak.Retention",
        9 => "batpak.EntityDeleted",
        10 => "batpak.Compacted",
        _ => return None,
    })
}

/// Words of the settled bitset: one bit per possible kind (16 bits).
const WORDS: usize = (u16::MAX as usize + 1) / 64;

/// The names this store recorded, and which kinds need no more work on append.
#[derive(Debug)]
pub(crate) struct KindNames {
    /// Bit set: the kind's name is recorded (or the program has none to record), so an
    /// append of it checks one atomic word and goes on.
    settled: Box<[AtomicU64]>,
    recorded: RwLock<HashMap<EventKind, String>>,
    /// Held while one kind's name is recorded, so two appenders record it once.
    recording: Mutex<()>,
}

impl Default for KindNames {
    fn default() -> Self {
        KindNames {
            settled: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
            recorded: RwLock::default(),
            recording: Mutex::default(),
        }
    }
}

impl KindNames {
    fn bit(kind: EventKind) -> (usize, u64) {
        let bits = usize::from(kind.bits());
        (bits / 64, 1u64 << (bits % 64))
    }

    /// Whether appends of `kind` need no name work.
    pub(crate) fn settled(&self, kind: EventKind) -> bool {
        let (word, bit) = Self::bit(kind);
        self.settled[word].load(Ordering::Acquire) & bit != 0
    }

    pub(crate) fn settle(&self, kind: EventKind) {
        let (word, bit) = Self::bit(kind);
        self.settled[word].fetch_or(bit, Ordering::AcqRel);
    }

    /// Takes the recording turn.
    pub(crate) fn turn(&self) -> MutexGuard<'_, ()> {
        lock(&self.recording)
    }

    /// Keeps `name` for `kind` unless one is recorded already; settles the kind.
    pub(crate) fn insert(&self, kind: EventKind, name: String) {
        write(&self.recorded).entry(kind).or_insert(name);
        self.settle(kind);
    }

    /// The name recorded for `kind`, or the built-in name of a store record kind.
    pub(crate) fn name(&self, kind: EventKind) -> Option<String> {
        if let Some(builtin) = store_record_name(kind) {
            return Some(builtin.to_string());
        }
        read(&self.recorded).get(&kind).cloned()
    }

    /// Every recorded name, with the store record kinds' own.
    pub(crate) fn all(&self) -> BTreeMap<EventKind, String> {
        let mut out: BTreeMap<EventKind, String> = read(&self.recorded)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for type_id in 1..=9 {
            let kind = EventKind::custom(0, type_id);
            if let Some(name) = store_record_name(kind) {
                out.insert(kind, name.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_one_kind_settles_no_other() {
        let names = KindNames::default();
        let a = EventKind::custom(1, 2);
        let b = EventKind::custom(1, 3);
        assert!(!names.settled(a));
        names.insert(a, "A".into());
        assert!(names.settled(a));
        assert!(!names.settled(b));
        assert!(!names.settled(EventKind::custom(15, 4095)));
        names.settle(EventKind::custom(15, 4095));
        assert!(names.settled(EventKind::custom(15, 4095)));
    }

    #[test]
    fn the_first_recorded_name_is_kept() {
        let names = KindNames::default();
        let kind = EventKind::custom(2, 9);
        names.insert(kind, "OrderPaid".into());
        names.insert(kind, "PaymentTaken".into());
        assert_eq!(names.name(kind).as_deref(), Some("OrderPaid"));
        assert_eq!(
            names.name(EventKind::custom(0, 3)).as_deref(),
            Some("batpak.Redaction")
        );
        assert_eq!(
            names.all().get(&kind).map(String::as_str),
            Some("OrderPaid")
        );
    }
}
