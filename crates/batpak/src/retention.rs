//! Retention policies and deletions as values: which entities a policy covers, what
//! it keeps, and how an entity is deleted. No I/O; the index applies them
//! (`index/horizon.rs`) and the store records them (`lifecycle.rs`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::EventId;

/// Which entities a retention policy covers.
///
/// Serde: `{"entity_prefix": "order"}`, `{"entity": "order:1"}` or
/// `{"scope": "tenant:acme"}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetentionSelector {
    /// Entities under this prefix on a `:` boundary, as `Region::entity_prefix`
    /// matches them (`""` is every user entity).
    EntityPrefix(String),
    /// Events in this scope.
    Scope(String),
    /// This one entity, by its exact name (`order:1`, not `order:1:lines`).
    Entity(String),
}

impl fmt::Display for RetentionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetentionSelector::EntityPrefix(p) => write!(f, "prefix {p:?}"),
            RetentionSelector::Scope(s) => write!(f, "scope {s:?}"),
            RetentionSelector::Entity(e) => write!(f, "entity {e:?}"),
        }
    }
}

/// What a retention policy keeps of each entity it covers. Everything before what
/// it keeps is expired: hidden from every read at once, removed by compaction.
///
/// Serde: `{"max_count": 10}`, `{"max_age_ms": 600000}`, `{"before_version": 5}`, or
/// several at once as `{"combined": {"max_count": 10, "max_age_ms": 600000}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetentionRule {
    /// Keep the newest `n` events of each entity.
    MaxCount(u64),
    /// Keep events younger than this, by the millisecond in their event id (which
    /// follows the stored timestamp to the millisecond).
    #[serde(rename = "max_age_ms", with = "millis")]
    MaxAge(Duration),
    /// Keep versions from this one on.
    BeforeVersion(u64),
    /// Several of the above at once: each expires what it expires, so an event is
    /// kept only while every one that is set keeps it (at least one must be).
    Combined(RetentionLimits),
}

/// The parts of a [`RetentionRule::Combined`]; an absent part limits nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetentionLimits {
    /// Keep the newest `n` events of each entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// Keep events younger than this.
    #[serde(
        rename = "max_age_ms",
        default,
        skip_serializing_if = "Option::is_none",
        with = "millis_opt"
    )]
    pub max_age: Option<Duration>,
    /// Keep versions from this one on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_version: Option<u64>,
}

impl RetentionLimits {
    /// No limit yet: add them with the builder methods.
    pub fn new() -> Self {
        RetentionLimits::default()
    }

    /// Keep the newest `n`.
    pub fn max_count(mut self, n: u64) -> Self {
        self.max_count = Some(n);
        self
    }

    /// Keep events younger than `age`.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Keep versions from `v` on.
    pub fn before_version(mut self, v: u64) -> Self {
        self.before_version = Some(v);
        self
    }

    /// The rule these limits make: `None` when none is set, the one rule when one
    /// is, [`RetentionRule::Combined`] when several are.
    pub fn rule(self) -> Option<RetentionRule> {
        let mut parts = self.rules();
        let first = parts.next()?;
        Some(match parts.next() {
            None => first,
            Some(_) => RetentionRule::Combined(self),
        })
    }

    /// Each part that is set, as a rule of its own.
    pub fn rules(&self) -> impl Iterator<Item = RetentionRule> {
        [
            self.max_count.map(RetentionRule::MaxCount),
            self.max_age.map(RetentionRule::MaxAge),
            self.before_version.map(RetentionRule::BeforeVersion),
        ]
        .into_iter()
        .flatten()
    }
}

impl fmt::Display for RetentionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetentionRule::MaxCount(n) => write!(f, "keep the last {n}"),
            RetentionRule::MaxAge(age) => write!(f, "keep {} ms", age.as_millis()),
            RetentionRule::BeforeVersion(v) => write!(f, "keep from version {v}"),
            RetentionRule::Combined(limits) => {
                for (i, rule) in limits.rules().enumerate() {
                    if i > 0 {
                        f.write_str(", and ")?;
                    }
                    write!(f, "{rule}")?;
                }
                Ok(())
            }
        }
    }
}

impl RetentionRule {
    /// The policy's age in whole milliseconds (saturating).
    pub(crate) fn age_ms(age: Duration) -> u64 {
        u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
    }
}

mod millis_opt {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::RetentionRule::age_ms(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let ms: Option<u64> = serde::Deserialize::deserialize(d)?;
        Ok(ms.map(Duration::from_millis))
    }
}

mod millis {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::RetentionRule::age_ms(*d))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

/// A retention policy in force: what it covers, what it keeps, and the store record
/// that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Which entities it covers.
    pub selector: RetentionSelector,
    /// What it keeps.
    pub rule: RetentionRule,
    /// The id of the store record that set it.
    pub set_by: EventId,
}

/// How `Store::delete_entity` deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Hide every event up to now; a later append continues the entity from its last
    /// version, chain intact, and is visible.
    Soft,
    /// A tombstone: hide every event, and refuse every later append to the entity.
    Hard,
}

/// A recorded deletion: the entity, through which version it hides, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Deletion {
    /// The deleted entity.
    pub entity: String,
    /// Its newest version when it was deleted: that event and every earlier one are
    /// hidden. `None` for a hard deletion of an entity that had no events: the name is
    /// reserved, nothing is hidden.
    pub through_version: Option<u64>,
    /// Soft or hard.
    pub mode: DeleteMode,
    /// The id of the store record of the deletion.
    pub recorded_by: EventId,
}

/// The rules in force, each with the selector it covers.
pub(crate) type Rules = Vec<(RetentionSelector, RetentionRule)>;

/// The policies and deletions the lifecycle records put in force, replayed in
/// sequence order: a later record for a selector replaces the earlier one, and a
/// later deletion of an entity replaces an earlier soft one.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    policies: std::collections::BTreeMap<RetentionSelector, RetentionPolicy>,
    deletions: std::collections::BTreeMap<String, Deletion>,
    /// The sequence of the newest lifecycle record applied.
    pub(crate) through: u64,
}

impl Recorded {
    /// Applies a retention record: `rule` sets the selector's policy, `None` clears it.
    pub(crate) fn set(
        &mut self,
        selector: RetentionSelector,
        rule: Option<RetentionRule>,
        by: EventId,
    ) {
        match rule {
            Some(rule) => {
                self.policies.insert(
                    selector.clone(),
                    RetentionPolicy {
                        selector,
                        rule,
                        set_by: by,
                    },
                );
            }
            None => {
                self.policies.remove(&selector);
            }
        }
    }

    /// Applies a deletion record.
    pub(crate) fn delete(
        &mut self,
        entity: String,
        through_version: Option<u64>,
        mode: DeleteMode,
        by: EventId,
    ) {
        self.deletions.insert(
            entity.clone(),
            Deletion {
                entity,
                through_version,
                mode,
                recorded_by: by,
            },
        );
    }

    /// The policy in force for `selector`.
    pub(crate) fn policy(&self, selector: &RetentionSelector) -> Option<&RetentionPolicy> {
        self.policies.get(selector)
    }

    /// Every policy in force, by selector.
    pub(crate) fn policies(&self) -> Vec<RetentionPolicy> {
        self.policies.values().cloned().collect()
    }

    /// The deletion of `entity`, if any.
    pub(crate) fn deletion(&self, entity: &str) -> Option<&Deletion> {
        self.deletions.get(entity)
    }

    /// Every deletion, by entity.
    pub(crate) fn deletions(&self) -> Vec<Deletion> {
        self.deletions.values().cloned().collect()
    }

    /// The entities deleted hard: they take no more events.
    pub(crate) fn tombstones(&self) -> impl Iterator<Item = &str> {
        self.deletions
            .values()
            .filter(|d| d.mode == DeleteMode::Hard)
            .map(|d| d.entity.as_str())
    }

    /// What the index hides: the rules in force, and each deleted entity with the
    /// version it is hidden through (`u64::MAX`: all of it). A soft deletion of no
    /// version (which the store never writes) hides nothing.
    pub(crate) fn horizons(&self) -> (Rules, Vec<(String, u64)>) {
        let policies = self
            .policies
            .values()
            .map(|p| (p.selector.clone(), p.rule))
            .collect();
        let deleted = self
            .deletions
            .values()
            .filter_map(|d| {
                let through = match d.mode {
                    DeleteMode::Soft => d.through_version?,
                    DeleteMode::Hard => u64::MAX,
                };
                Some((d.entity.clone(), through))
            })
            .collect();
        (policies, deleted)
    }
}
