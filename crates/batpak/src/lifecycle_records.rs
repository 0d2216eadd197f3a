//! The store records of the lifecycle: a retention policy set or cleared (kind 0:8)
//! and an entity deleted (kind 0:9), both on `batpak:lifecycle`, and a compaction
//! done (kind 0:10, on `batpak:compaction`). They are events
//! like any other (chained, exported, replicated, verified); open replays them into
//! the policies and deletions in force (`retention::Recorded`).

use serde::{Deserialize, Serialize};

use crate::event::EventPayload;
use crate::kind::EventKind;
use crate::retention::{DeleteMode, RetentionRule, RetentionSelector};

/// The kind of a retention record (reserved category 0).
pub(crate) const RETENTION_KIND: EventKind = EventKind::custom(0, 8);
/// The kind of a deletion record (reserved category 0).
pub(crate) const DELETION_KIND: EventKind = EventKind::custom(0, 9);
/// The entity every lifecycle record is appended to.
pub(crate) const LIFECYCLE_ENTITY: &str = "batpak:lifecycle";
/// The scope of a lifecycle record that names no scope of its own.
pub(crate) const LIFECYCLE_SCOPE: &str = "batpak:lifecycle";

/// The kind of a compaction record (reserved category 0).
pub(crate) const COMPACTED_KIND: EventKind = EventKind::custom(0, 10);
/// The entity (and scope) of every compaction record.
pub(crate) const COMPACTION_ENTITY: &str = "batpak:compaction";

/// A compaction: which manifest (`format/manifest.rs`) it left, by its blake3 digest,
/// and what it removed. Appended before the compaction commits, so a compaction that
/// failed before its commit leaves a record whose manifest never took effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compacted {
    /// Compactions so far, this one included.
    pub generation: u64,
    /// Every sequence up to it lies in compacted segments.
    pub through: u64,
    /// blake3 of the manifest file.
    pub manifest: crate::hash::Hash,
    /// Events kept and removed up to `through`, over every compaction.
    pub kept: u64,
    pub removed: u64,
}

impl EventPayload for Compacted {
    const KIND: EventKind = COMPACTED_KIND;
    const NAME: &'static str = "batpak.Compacted";
}

/// A retention policy set (`rule` present) or cleared (`rule` absent) for a selector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RetentionChanged {
    /// Which entities it covers.
    pub selector: RetentionSelector,
    /// What it keeps from now on; `None` clears the selector's policy.
    pub rule: Option<RetentionRule>,
}

impl EventPayload for RetentionChanged {
    const KIND: EventKind = RETENTION_KIND;
    const NAME: &'static str = "batpak.Retention";
}

/// An entity deleted: its events through `version` are hidden; a hard deletion also
/// refuses every later append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntityDeleted {
    /// The entity.
    pub entity: String,
    /// Its newest version when it was deleted; absent (not written) for a hard
    /// deletion of an entity that never had an event, which reserves the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Soft or hard.
    pub mode: DeleteMode,
}

impl EventPayload for EntityDeleted {
    const KIND: EventKind = DELETION_KIND;
    const NAME: &'static str = "batpak.EntityDeleted";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn golden_bytes_of_the_compaction_record() {
        let record = Compacted {
            generation: 1,
            through: 5,
            manifest: crate::hash::Hash::from_bytes([0xab; 32]),
            kept: 2,
            removed: 3,
        };
        let bytes = record.encode().unwrap();
        assert_eq!(
            hex(&bytes),
            [
                "85".to_string(), // map of 5
                "aa".into(),
                hex(b"generation"),
                "01".into(),
                "a7".into(),
                hex(b"through"),
                "05".into(),
                "a8".into(),
                hex(b"manifest"),
                "d940".into(), // str8 of 64: the digest in hex
                hex("ab".repeat(32).as_bytes()),
                "a4".into(),
                hex(b"kept"),
                "02".into(),
                "a7".into(),
                hex(b"removed"),
                "03".into(),
            ]
            .concat()
        );
        let back: Compacted = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, record);
    }

    /// The payload bytes are part of the journal: pinned, so they never drift.
    #[test]
    fn golden_bytes_of_the_lifecycle_records() {
        let set = RetentionChanged {
            selector: RetentionSelector::EntityPrefix("order".into()),
            rule: Some(RetentionRule::MaxAge(Duration::from_secs(600))),
        };
        assert_eq!(
            hex(&set.encode().unwrap()),
            concat!(
                "82",
                "a8",
                "73656c6563746f72", // map of 2, "selector"
                "81",
                "ad",
                "656e746974795f707265666978",
                "a5",
                "6f72646572", // {"entity_prefix": "order"}
                "a4",
                "72756c65", // "rule"
                "81",
                "aa",
                "6d61785f6167655f6d73",
                "ce",
                "000927c0", // {"max_age_ms": 600000}
            )
        );
        let exact = RetentionChanged {
            selector: RetentionSelector::Entity("o:1".into()),
            rule: Some(RetentionRule::Combined(
                crate::retention::RetentionLimits::new()
                    .max_count(3)
                    .max_age(Duration::from_secs(2)),
            )),
        };
        assert_eq!(
            hex(&exact.encode().unwrap()),
            concat!(
                "82",
                "a8",
                "73656c6563746f72", // map of 2, "selector"
                "81",
                "a6",
                "656e74697479",
                "a3",
                "6f3a31", // {"entity": "o:1"}
                "a4",
                "72756c65", // "rule"
                "81",
                "a8",
                "636f6d62696e6564", // {"combined":
                "82",
                "a9",
                "6d61785f636f756e74",
                "03", // {"max_count": 3,
                "aa",
                "6d61785f6167655f6d73",
                "cd",
                "07d0", // "max_age_ms": 2000}}
            )
        );
        let back: RetentionChanged = rmp_serde::from_slice(&exact.encode().unwrap()).unwrap();
        assert_eq!(back, exact);
        let cleared = RetentionChanged {
            selector: RetentionSelector::Scope("s".into()),
            rule: None,
        };
        assert_eq!(
            hex(&cleared.encode().unwrap()),
            "82a873656c6563746f7281a573636f7065a173a472756c65c0"
        );
        let deleted = EntityDeleted {
            entity: "order:1".into(),
            version: Some(3),
            mode: DeleteMode::Hard,
        };
        assert_eq!(
            hex(&deleted.encode().unwrap()),
            concat!(
                "83",
                "a6",
                "656e74697479",
                "a7",
                "6f726465723a31", // "entity": "order:1"
                "a7",
                "76657273696f6e",
                "03", // "version": 3
                "a4",
                "6d6f6465",
                "a4",
                "68617264", // "mode": "hard"
            )
        );
        // A tombstone set before the entity's first event: no version field at all.
        let reserved = EntityDeleted {
            entity: "order:2".into(),
            version: None,
            mode: DeleteMode::Hard,
        };
        assert_eq!(
            hex(&reserved.encode().unwrap()),
            concat!(
                "82",
                "a6",
                "656e74697479",
                "a7",
                "6f726465723a32", // "entity": "order:2"
                "a4",
                "6d6f6465",
                "a4",
                "68617264", // "mode": "hard"
            )
        );
        for record in [deleted, reserved] {
            let back: EntityDeleted = rmp_serde::from_slice(&record.encode().unwrap()).unwrap();
            assert_eq!(back, record);
        }
        for rule in [
            RetentionRule::MaxCount(10),
            RetentionRule::BeforeVersion(4),
            RetentionRule::MaxAge(Duration::from_millis(1)),
        ] {
            let change = RetentionChanged {
                selector: RetentionSelector::Scope("tenant:a".into()),
                rule: Some(rule),
            };
            let back: RetentionChanged = rmp_serde::from_slice(&change.encode().unwrap()).unwrap();
            assert_eq!(back, change);
        }
    }

    fn selector() -> impl proptest::strategy::Strategy<Value = RetentionSelector> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z:]{0,12}".prop_map(RetentionSelector::EntityPrefix),
            "[a-z:]{1,12}".prop_map(RetentionSelector::Scope),
            "[a-z:]{1,12}".prop_map(RetentionSelector::Entity),
        ]
    }

    fn rule() -> impl proptest::strategy::Strategy<Value = Option<RetentionRule>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            any::<u64>().prop_map(|n| Some(RetentionRule::MaxCount(n))),
            any::<u64>().prop_map(|v| Some(RetentionRule::BeforeVersion(v))),
            any::<u64>().prop_map(|ms| Some(RetentionRule::MaxAge(Duration::from_millis(ms)))),
            (
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
            )
                .prop_map(|(count, ms, version)| {
                    let mut limits = crate::retention::RetentionLimits::new();
                    limits.max_count = count;
                    limits.max_age = ms.map(Duration::from_millis);
                    limits.before_version = version;
                    Some(RetentionRule::Combined(limits))
                }),
        ]
    }

    proptest::proptest! {
        /// Every record round-trips through its payload bytes, and any bytes decode to
        /// a record or an error, never a panic.
        #[test]
        fn records_round_trip_and_bytes_never_panic(
            selector in selector(),
            rule in rule(),
            entity in "[a-z:0-9]{1,20}",
            version in proptest::option::of(proptest::prelude::any::<u64>()),
            hard in proptest::prelude::any::<bool>(),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let change = RetentionChanged { selector, rule };
            let back: RetentionChanged = rmp_serde::from_slice(&change.encode().unwrap()).unwrap();
            proptest::prop_assert_eq!(back, change);
            let mode = if hard { DeleteMode::Hard } else { DeleteMode::Soft };
            let deleted = EntityDeleted { entity, version, mode };
            let back: EntityDeleted = rmp_serde::from_slice(&deleted.encode().unwrap()).unwrap();
            proptest::prop_assert_eq!(back, deleted);
            let _ = rmp_serde::from_slice::<RetentionChanged>(&noise);
            let _ = rmp_serde::from_slice::<EntityDeleted>(&noise);
            let _ = rmp_serde::from_slice::<Compacted>(&noise);
        }
    }
}
