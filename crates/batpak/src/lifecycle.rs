//! Retention policies and deletions: set, clear and list them, delete entities.
//!
//! Each change is a store record on `batpak:lifecycle` (`lifecycle_records.rs`),
//! synced before the call returns whatever the sync policy, then applied at once:
//! the index hides what it expires (`index/horizon.rs`), the writer refuses appends
//! to entities deleted hard. Hidden events stay on disk, verified and exported with
//! the whole journal, until compaction removes them.

use crate::coordinate::{validate_component, Coordinate, STORE_ENTITY_PREFIX};
use crate::error::{CoordinateRule, Error, Result};
use crate::event::Batch;
use crate::lifecycle_records::{
    EntityDeleted, RetentionChanged, LIFECYCLE_ENTITY, LIFECYCLE_SCOPE,
};
use crate::options::{AppendOptions, ExpectedVersion};
use crate::receipt::AppendReceipt;
use crate::retention::{
    DeleteMode, Deletion, Recorded, RetentionPolicy, RetentionRule, RetentionSelector,
};
use crate::store::Store;

impl Store {
    /// Sets the retention policy of `selector` (replacing the one it had): from now
    /// on every read, query, subscription and projection leaves out what `rule`
    /// expires, and compaction removes it. Returns the receipt of the record; setting
    /// the policy already in force records nothing and returns that record's receipt.
    ///
    /// Errors: a selector naming the store's own entities (`batpak:...`) or not a
    /// valid entity prefix, entity or scope (`InvalidCoordinate`); a rule that would
    /// keep nothing (`MaxCount(0)`, a zero age, also as a part of a combined rule:
    /// `Malformed`), or a combined rule with no part; `ReadOnly`.
    pub fn set_retention(
        &self,
        selector: RetentionSelector,
        rule: RetentionRule,
    ) -> Result<AppendReceipt> {
        self.writer()?;
        check_selector(&selector)?;
        check_rule(rule)?;
        let mut recorded = self.lifecycle();
        if let Some(p) = recorded.policy(&selector).filter(|p| p.rule == rule) {
            return self.receipt_of(p.set_by);
        }
        let scope = record_scope(&selector).to_string();
        self.record(
            &mut recorded,
            &scope,
            &RetentionChanged {
                selector,
                rule: Some(rule),
            },
        )
    }

    /// Clears the retention policy of `selector`: what it hid and compaction has not
    /// yet removed is visible again. `None` when the selector had no policy.
    pub fn clear_retention(&self, selector: &RetentionSelector) -> Result<Option<AppendReceipt>> {
        self.writer()?;
        let mut recorded = self.lifecycle();
        if recorded.policy(selector).is_none() {
            return Ok(None);
        }
        let scope = record_scope(selector);
        self.record(
            &mut recorded,
            scope,
            &RetentionChanged {
                selector: selector.clone(),
                rule: None,
            },
        )
        .map(Some)
    }

    /// The retention policies in force, sorted by selector.
    pub fn retention(&self) -> Vec<RetentionPolicy> {
        self.lifecycle().policies()
    }

    /// The recorded deletions, sorted by entity.
    pub fn deletions(&self) -> Vec<Deletion> {
        self.lifecycle().deletions()
    }

    /// The recorded deletion of `entity`, if it has one (a lookup, not a copy of
    /// every deletion).
    pub fn deletion(&self, entity: &str) -> Option<Deletion> {
        self.lifecycle().deletion(entity).cloned()
    }

    /// Deletes `entity`: hides every event it has now from every read, query,
    /// subscription and projection (compaction later removes them). With
    /// [`DeleteMode::Soft`] a later append continues the entity from its last version
    /// (`entity_version` still answers it), chain intact, and is visible; with
    /// [`DeleteMode::Hard`] every later append to it is refused
    /// (`Error::EntityDeleted`). Recorded as a store record caused by nothing, in the
    /// entity's newest scope; returns its receipt. Deleting softly again with nothing
    /// new returns the earlier record's receipt. A hard deletion of an entity that
    /// never had an event reserves its name: the record (in the lifecycle scope)
    /// has no version, and no append to it is ever accepted.
    ///
    /// Errors: `NoSuchEntity` for a soft deletion of an entity without events, or for
    /// one of the store's own; `EntityDeleted` when it was deleted hard already;
    /// `InvalidCoordinate` for a name no event could have; `ReadOnly`.
    pub fn delete_entity(&self, entity: &str, mode: DeleteMode) -> Result<AppendReceipt> {
        self.delete_entity_expecting(entity, mode, ExpectedVersion::Any)
    }

    /// [`Store::delete_entity`], when the entity's newest version is `expected`: the
    /// check and the deletion happen in one turn of the writer, so no append lands
    /// between them. `VersionConflict` (naming both versions) otherwise, with
    /// nothing recorded.
    pub fn delete_entity_expecting(
        &self,
        entity: &str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> Result<AppendReceipt> {
        let writer = self.writer()?;
        let refuse = |reason: &str| Error::NoSuchEntity {
            operation: "delete",
            entity: entity.to_string(),
            reason: reason.to_string(),
        };
        if entity.starts_with(STORE_ENTITY_PREFIX) {
            return Err(refuse("it is one of the store's own entities"));
        }
        let mut recorded = self.lifecycle();
        if let Some(d) = recorded.deletion(entity) {
            if d.mode == DeleteMode::Hard {
                return Err(Error::EntityDeleted {
                    entity: entity.to_string(),
                    through_version: d.through_version,
                });
            }
        }
        let hard = mode == DeleteMode::Hard;
        let scope = {
            let index = self.index();
            index
                .entities()
                .get(entity)
                .and_then(|id| index.entity_events(id).last().copied())
                .and_then(|seq| index.read_target(seq))
                .map(|(_, _, scope)| index.scopes().shared(scope).to_string())
        }
        // Compaction removed all it had (the scopes went with the events), or it has
        // none and a hard deletion reserves the name.
        .unwrap_or_else(|| LIFECYCLE_SCOPE.to_string());
        validate_component("entity", entity)?;
        let version = writer.mark_deleted(entity, hard, expected)?;
        if version.is_none() && !hard {
            return Err(refuse("it has no events"));
        }
        if let Some(d) = recorded.deletion(entity) {
            if !hard && d.through_version == version {
                return self.receipt_of(d.recorded_by);
            }
        }
        let record = EntityDeleted {
            entity: entity.to_string(),
            version,
            mode,
        };
        let receipt = self.record(&mut recorded, &scope, &record);
        if receipt.is_err() && hard {
            writer.unmark_deleted(entity);
        }
        receipt
    }

    /// Appends one lifecycle record, syncs it, and applies it (with any record the
    /// caller's guard has not seen).
    fn record<P: crate::event::EventPayload>(
        &self,
        recorded: &mut Recorded,
        scope: &str,
        record: &P,
    ) -> Result<AppendReceipt> {
        let mut batch = Batch::new();
        batch.push_system(
            &Coordinate::new(LIFECYCLE_ENTITY, scope)?,
            record,
            AppendOptions::default(),
        )?;
        let receipt = self.append_batch(&batch)?.pop().ok_or(Error::EmptyBatch)?;
        self.sync()?;
        self.replay_lifecycle(recorded)?;
        Ok(receipt)
    }

    /// The receipt of a lifecycle record already in the store.
    fn receipt_of(&self, id: crate::id::EventId) -> Result<AppendReceipt> {
        let event = self.get(id)?.ok_or(Error::NoSuchEvent { id })?;
        let mut receipt = [event.receipt()];
        self.sign_receipts(&mut receipt);
        let [receipt] = receipt;
        Ok(receipt)
    }
}

/// The scope a retention record is filed under: the policy's scope, or the
/// lifecycle scope for a prefix or an entity.
fn record_scope(selector: &RetentionSelector) -> &str {
    match selector {
        RetentionSelector::Scope(scope) => scope,
        RetentionSelector::EntityPrefix(_) | RetentionSelector::Entity(_) => LIFECYCLE_SCOPE,
    }
}

fn check_selector(selector: &RetentionSelector) -> Result<()> {
    match selector {
        RetentionSelector::EntityPrefix(prefix) if prefix.is_empty() => Ok(()),
        RetentionSelector::EntityPrefix(prefix) | RetentionSelector::Entity(prefix) => {
            validate_component("entity", prefix)?;
            if prefix.starts_with(STORE_ENTITY_PREFIX) || prefix == "batpak" {
                return Err(Error::InvalidCoordinate {
                    component: "entity",
                    rule: CoordinateRule::Reserved,
                });
            }
            Ok(())
        }
        RetentionSelector::Scope(scope) => validate_component("scope", scope),
    }
}

fn check_rule(rule: RetentionRule) -> Result<()> {
    match rule {
        RetentionRule::MaxCount(0) => Err(keeps_nothing("max_count 0")),
        RetentionRule::MaxAge(age) if RetentionRule::age_ms(age) == 0 => {
            Err(keeps_nothing("an age under one millisecond"))
        }
        RetentionRule::Combined(limits) => {
            if limits.rules().next().is_none() {
                return Err(Error::Malformed {
                    what: "retention rule",
                    detail: "a combined rule sets none of max_count, max_age and before_version"
                        .into(),
                });
            }
            limits.rules().try_for_each(check_rule)
        }
        _ => Ok(()),
    }
}

fn keeps_nothing(what: &str) -> Error {
    Error::Malformed {
        what: "retention rule",
        detail: format!("{what} would keep nothing; delete the entities instead"),
    }
}
