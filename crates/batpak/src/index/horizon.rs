//! Which events the recorded retention policies and deletions hide: per entity, a
//! horizon (its first visible version), computed from the index alone.
//!
//! Every policy and every deletion hides a prefix of an entity's history, never a
//! middle: `MaxCount` and `BeforeVersion` count from the start, event ids (and so
//! ages) increase along an entity, and a deletion hides through a version. So one
//! number per entity says what is hidden, and compaction later removes exactly that
//! prefix. A scope policy expires an entity's events in that scope; when an entity
//! has events in several scopes, its hidden prefix stops at its first event in
//! another scope (a policy never hides what it does not cover). Several policies on
//! one entity: the furthest horizon wins (each expires what it expires).

use std::collections::HashMap;

use super::Index;
use crate::coordinate::{prefix_matches, STORE_ENTITY_PREFIX};
use crate::retention::{RetentionRule, RetentionSelector, Rules};

/// An entity whose events use more than one scope.
pub(super) const MIXED_SCOPES: u32 = u32::MAX;

/// What the index hides: the policies in force and the deleted entities.
#[derive(Debug, Default)]
pub(crate) struct Horizons {
    policies: Rules,
    /// Deleted entities by index id: hidden through this version (`u64::MAX`: every
    /// version, a hard delete).
    deleted: HashMap<u32, u64>,
}

/// What hides an entity's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HorizonCause {
    /// Its deletion.
    Deleted,
    /// The policy of this selector.
    Policy(RetentionSelector),
}

/// What a read may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sight {
    /// Every event on disk: verification, export of the whole journal.
    All,
    /// What the policies and deletions leave visible at this Unix millisecond.
    At(u64),
}

/// Answers "is this event hidden?" for one read, working out each entity's horizon
/// once.
#[derive(Debug)]
pub(crate) struct Hider<'i> {
    index: &'i Index,
    now_ms: u64,
    /// Entity id to its first visible sequence.
    first_visible: HashMap<u32, u64>,
}

impl Hider<'_> {
    /// Whether the event at `sequence`, of entity `entity`, is hidden.
    pub(crate) fn hides(&mut self, sequence: u64, entity: u32) -> bool {
        let (index, now_ms) = (self.index, self.now_ms);
        let first = *self
            .first_visible
            .entry(entity)
            .or_insert_with(|| index.first_visible_sequence(entity, now_ms));
        sequence < first
    }
}

impl Index {
    /// Replaces what the index hides: `policies` in force, `deleted` entities with
    /// the version they are hidden through (`u64::MAX` for a hard delete). A deleted
    /// entity the index does not hold is left out (it has nothing to hide).
    pub(crate) fn set_horizons(&mut self, policies: Rules, deleted: &[(String, u64)]) {
        let deleted = deleted
            .iter()
            .filter_map(|(name, through)| Some((self.entities.get(name)?, *through)))
            .collect();
        self.horizons = Horizons { policies, deleted };
    }

    /// Whether any policy or deletion is in force (when not, nothing is hidden and
    /// reads take their fast paths).
    pub(crate) fn hides_anything(&self) -> bool {
        !self.horizons.policies.is_empty() || !self.horizons.deleted.is_empty()
    }

    /// A hider for one read, or `None` when `sight` sees everything or nothing is
    /// hidden.
    pub(crate) fn hider(&self, sight: Sight) -> Option<Hider<'_>> {
        match sight {
            Sight::At(now_ms) if self.hides_anything() => Some(Hider {
                index: self,
                now_ms,
                first_visible: HashMap::new(),
            }),
            _ => None,
        }
    }

    /// Calls `f` with every hidden sequence at `now_ms` (each entity's hidden
    /// prefix in turn): what the catalogue takes out of its counts.
    pub(crate) fn for_each_hidden(&self, now_ms: u64, mut f: impl FnMut(u64)) {
        if !self.hides_anything() {
            return;
        }
        for entity in 0..self.entity_events.len() as u32 {
            let first = self.first_visible_sequence(entity, now_ms);
            if first == 0 {
                continue;
            }
            for &seq in self.entity_events(entity) {
                if seq >= first {
                    break;
                }
                f(seq);
            }
        }
    }

    /// The entity's first visible sequence under `sight` (0 when nothing is hidden,
    /// or `sight` sees everything).
    pub(crate) fn first_visible(&self, entity: u32, sight: Sight) -> u64 {
        match sight {
            Sight::At(now_ms) if self.hides_anything() => {
                self.first_visible_sequence(entity, now_ms)
            }
            _ => 0,
        }
    }

    /// The entity's first visible sequence at `now_ms`: every event before it is
    /// hidden (0 when none is, `u64::MAX` when all are).
    pub(crate) fn first_visible_sequence(&self, entity: u32, now_ms: u64) -> u64 {
        let version = self.first_visible_version(entity, now_ms);
        let base = self.entity_base(entity);
        if version <= base {
            return 0;
        }
        let postings = self.entity_events(entity);
        usize::try_from(version - base)
            .ok()
            .and_then(|p| postings.get(p).copied())
            .unwrap_or(u64::MAX)
    }

    /// The entity's first visible version at `now_ms` (its horizon): 0 when nothing
    /// is hidden, past its newest version when everything is.
    pub(crate) fn first_visible_version(&self, entity: u32, now_ms: u64) -> u64 {
        let deleted = self
            .horizons
            .deleted
            .get(&entity)
            .map_or(0, |&through| through.saturating_add(1));
        if self.horizons.policies.is_empty() {
            return deleted;
        }
        let name = &*self.entities.names[entity as usize];
        if name.starts_with(STORE_ENTITY_PREFIX) {
            return deleted;
        }
        self.horizons
            .policies
            .iter()
            .map(|(selector, rule)| self.policy_horizon(entity, name, selector, *rule, now_ms))
            .fold(deleted, u64::max)
    }

    /// What hides the entity's prefix at `now_ms`: the deletion or the policy whose
    /// horizon is the furthest (a deletion when they tie). `None` when nothing is hidden.
    pub(crate) fn horizon_cause(&self, entity: u32, now_ms: u64) -> Option<HorizonCause> {
        let deleted = self
            .horizons
            .deleted
            .get(&entity)
            .map_or(0, |&through| through.saturating_add(1));
        let mut best = (deleted > 0).then_some((deleted, HorizonCause::Deleted));
        let name = &*self.entities.names[entity as usize];
        if !name.starts_with(STORE_ENTITY_PREFIX) {
            for (selector, rule) in &self.horizons.policies {
                let h = self.policy_horizon(entity, name, selector, *rule, now_ms);
                if h > 0 && best.as_ref().is_none_or(|(b, _)| h > *b) {
                    best = Some((h, HorizonCause::Policy(selector.clone())));
                }
            }
        }
        best.map(|(_, cause)| cause)
    }

    /// How much of the entity one policy expires: the version its kept part starts at.
    fn policy_horizon(
        &self,
        entity: u32,
        name: &str,
        selector: &RetentionSelector,
        rule: RetentionRule,
        now_ms: u64,
    ) -> u64 {
        let scope = match selector {
            RetentionSelector::EntityPrefix(prefix)
                if prefix.is_empty() || prefix_matches(prefix, name) =>
            {
                None
            }
            RetentionSelector::EntityPrefix(_) => return 0,
            RetentionSelector::Entity(exact) if exact == name => None,
            RetentionSelector::Entity(_) => return 0,
            // An entity compaction emptied has no scope until its next event.
            RetentionSelector::Scope(scope) => {
                match (
                    self.scopes.get(scope),
                    self.entity_scope.get(entity as usize),
                ) {
                    (Some(id), Some(&held)) if held == id => None,
                    (Some(id), Some(&MIXED_SCOPES)) => Some(id),
                    _ => return 0,
                }
            }
        };
        // Positions in the postings; the version is the base plus the position.
        let postings = self.entity_events(entity);
        let base = self.entity_base(entity);
        let expired = self.expired(postings, base, rule, now_ms);
        let covered = match scope {
            None => expired,
            // Several scopes: the prefix stops at the first event in another one.
            Some(scope) => postings[..expired as usize]
                .iter()
                .position(|&seq| self.slot(seq).is_none_or(|i| self.scope_of[i] != scope))
                .map_or(expired, |p| p as u64),
        };
        base + covered
    }

    /// How many of an entity's postings (from version `base`) `rule` expires.
    fn expired(&self, postings: &[u64], base: u64, rule: RetentionRule, now_ms: u64) -> u64 {
        match rule {
            RetentionRule::MaxCount(n) => (postings.len() as u64).saturating_sub(n),
            RetentionRule::BeforeVersion(v) => v.saturating_sub(base).min(postings.len() as u64),
            RetentionRule::MaxAge(age) => {
                let cutoff = now_ms.saturating_sub(RetentionRule::age_ms(age));
                postings.partition_point(|&seq| {
                    self.id_of(seq).is_some_and(|id| id.unix_millis() < cutoff)
                }) as u64
            }
            // Each part expires a prefix; together, the longest.
            RetentionRule::Combined(limits) => limits
                .rules()
                .map(|part| self.expired(postings, base, part, now_ms))
                .max()
                .unwrap_or(0),
        }
    }
}
