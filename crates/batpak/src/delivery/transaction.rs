//! Transactions: events gathered over several calls and committed as one atomic
//! batch. Nothing is written before `commit`; dropping or aborting writes nothing.

use std::collections::HashMap;

use crate::coordinate::Coordinate;
use crate::error::{Error, Result};
use crate::event::EventPayload;
use crate::event::{Batch, RawPayload};
use crate::kind::EventKind;
use crate::options::AppendOptions;
use crate::receipt::AppendReceipt;
use crate::store::Store;

/// Appends that become visible together, or not at all. See [`Store::transaction`].
#[derive(Debug)]
pub struct Transaction<'s> {
    store: &'s Store,
    batch: Batch,
    /// Each touched entity's version as the transaction sees it (`None`: no events).
    versions: HashMap<String, Option<u64>>,
}

impl Store {
    /// Starts a transaction. Its appends are checked as they are made, against the
    /// store and the transaction's own earlier appends (an expected version sees
    /// them), and written by [`Transaction::commit`] as one atomic batch: after a
    /// crash all of them exist or none. The commit checks everything again, so an
    /// append by someone else in the meantime is a `VersionConflict` then, with nothing
    /// written.
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction {
            store: self,
            batch: Batch::new(),
            versions: HashMap::new(),
        }
    }
}

impl Transaction<'_> {
    /// Adds a typed event with default options. Returns its position in the
    /// transaction (for `AppendOptions::caused_by_item`).
    pub fn append<P: EventPayload>(&mut self, coord: &Coordinate, payload: &P) -> Result<usize> {
        self.append_with(coord, payload, AppendOptions::default())
    }

    /// Adds a typed event.
    pub fn append_with<P: EventPayload>(
        &mut self,
        coord: &Coordinate,
        payload: &P,
        options: AppendOptions,
    ) -> Result<usize> {
        P::KIND.check_user()?;
        self.check(coord, &options)?;
        let item = self.batch.push(coord, payload, options)?;
        self.advance(coord);
        Ok(item)
    }

    /// Adds pre-encoded bytes.
    pub fn append_raw(
        &mut self,
        coord: &Coordinate,
        kind: EventKind,
        payload: RawPayload<'_>,
        options: AppendOptions,
    ) -> Result<usize> {
        kind.check_user()?;
        crate::writer::check_payload_len(payload.bytes.len())?;
        self.check(coord, &options)?;
        let item = self.batch.push_raw(coord, kind, payload, options);
        self.advance(coord);
        Ok(item)
    }

    /// The entity's version as this transaction sees it: the store's, advanced by
    /// the transaction's own appends (`None`: no events).
    pub fn version_of(&self, entity: &str) -> Option<u64> {
        match self.versions.get(entity) {
            Some(v) => *v,
            None => self.store.entity_version(entity),
        }
    }

    /// Events added so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Writes every event atomically and returns their receipts, in order. An empty
    /// transaction commits nothing and returns no receipts.
    pub fn commit(self) -> Result<Vec<AppendReceipt>> {
        if self.batch.is_empty() {
            return Ok(Vec::new());
        }
        self.store.append_batch(&self.batch)
    }

    /// Discards everything (as dropping does).
    pub fn abort(self) {}

    /// Refuses an append whose expected version the transaction's view contradicts.
    fn check(&self, coord: &Coordinate, options: &AppendOptions) -> Result<()> {
        let actual = self.version_of(coord.entity());
        if options.expected_version.admits(actual) {
            Ok(())
        } else {
            Err(Error::VersionConflict {
                entity: coord.entity().to_string(),
                expected: options.expected_version,
                actual,
            })
        }
    }

    fn advance(&mut self, coord: &Coordinate) {
        let next = self.version_of(coord.entity()).map_or(0, |v| v + 1);
        self.versions.insert(coord.entity().to_string(), Some(next));
    }
}
