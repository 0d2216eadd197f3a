//! Projection watchers: a projection's new state after each relevant change of one
//! entity, built on a subscription (and so with its lag semantics).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::delivery::{RecvError, Subscription};
use crate::projection::{Freshness, Projection};
use crate::query::Region;
use crate::store::Store;

/// Yields `P`'s state of one entity after each change to it. See [`Store::watch`].
pub struct Watch<'s, P> {
    store: &'s Store,
    entity: String,
    feed: Subscription<'s>,
    /// The entity's newest sequence the last yielded state reflects.
    through: u64,
    ended: bool,
    projection: PhantomData<fn() -> P>,
}

impl<P> fmt::Debug for Watch<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("entity", &self.entity)
            .field("through", &self.through)
            .field("feed", &self.feed)
            .finish()
    }
}

impl Store {
    /// Watches `entity` through projection `P` from now on: each call of `recv`
    /// waits for events of `P::KINDS` on the entity and returns the state after them
    /// (one state per burst of changes). Lags like a subscription: a watcher that
    /// leaves more than its lag limit of new events untaken gets `Lagged` and ends.
    pub fn watch<P: Projection>(&self, entity: &str) -> Watch<'_, P> {
        Watch {
            store: self,
            entity: entity.to_string(),
            feed: self.subscribe(Region::all().entity(entity)),
            through: self.entity_last_sequence(entity),
            ended: false,
            projection: PhantomData,
        }
    }
}

impl<P: Projection> Watch<'_, P> {
    /// Sets the lag limit (see [`Subscription::lag_limit`]).
    #[must_use]
    pub fn lag_limit(mut self, sequences: u64) -> Self {
        self.feed = self.feed.lag_limit(sequences);
        self
    }

    /// Blocks until the entity changes, then returns `P`'s state.
    pub fn recv(&mut self) -> std::result::Result<Option<P>, RecvError> {
        self.next_until(None)
    }

    /// Like `recv`, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> std::result::Result<Option<P>, RecvError> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> std::result::Result<Option<P>, RecvError> {
        loop {
            let event = self.feed.next_until(deadline)?;
            if event.sequence <= self.through || !relevant::<P>(event.kind) {
                continue;
            }
            // Take the rest of the burst, so one state covers it.
            loop {
                match self.feed.try_recv() {
                    Ok(_) => {}
                    Err(RecvError::Empty) => break,
                    Err(e) => return Err(e),
                }
            }
            let (state, through) = self
                .store
                .project_through::<P>(&self.entity, Freshness::Consistent)
                .map_err(RecvError::Failed)?;
            self.through = through;
            return Ok(state);
        }
    }
}

fn relevant<P: Projection>(kind: crate::kind::EventKind) -> bool {
    P::KINDS.is_empty() || P::KINDS.contains(&kind)
}

/// Blocking iteration; ends after a `Lagged` or `Failed` item.
impl<P: Projection> Iterator for Watch<'_, P> {
    type Item = std::result::Result<Option<P>, RecvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let item = self.recv();
        self.ended = item.is_err();
        Some(item)
    }
}
