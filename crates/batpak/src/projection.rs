//! Projections: derived state as a fold over an entity's events, cached per
//! (projection type, projection version, entity) and advanced incrementally.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::StoredEvent;
use crate::kind::EventKind;
use crate::store::Store;

/// A fold of an entity's events into a value.
///
/// ```
/// use batpak::prelude::*;
/// use batpak::{Freshness, Projection};
///
/// #[derive(Clone, Default)]
/// struct Balance { cents: i64 }
///
/// impl Projection for Balance {
///     const NAME: &'static str = "balance";
///     fn apply(&mut self, event: &StoredEvent) -> batpak::Result<()> {
///         self.cents += event.payload.len() as i64; // decode the payload in real code
///         Ok(())
///     }
/// }
/// ```
pub trait Projection: Clone + Default + Send + Sync + 'static {
    /// The projection's name, part of every cache key and report.
    const NAME: &'static str;
    /// Bump it when `apply` changes meaning: cached states of other versions are ignored.
    const VERSION: u32 = 1;
    /// The kinds `apply` sees; events of other kinds are skipped. Empty: every kind.
    const KINDS: &'static [EventKind] = &[];

    /// Folds one event into the state (which starts as `Default::default()`). A
    /// payload that fails to decode should be returned as the error, never skipped.
    fn apply(&mut self, event: &StoredEvent) -> Result<()>;
}

/// How current a projected state must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Reflects every visible event of the entity at the time of the call.
    Consistent,
    /// A cached state computed at most `max_age` ago may be returned without looking
    /// for newer events.
    MaybeStale {
        /// The oldest acceptable cached state.
        max_age: Duration,
    },
}

/// Default number of cached projection states.
pub const DEFAULT_PROJECTION_CACHE: usize = 4096;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    projection: TypeId,
    version: u32,
    entity: Arc<str>,
}

/// A cached state of some projection type, `None` until a relevant event was applied.
type SharedState = Option<Arc<dyn Any + Send + Sync>>;

struct Entry {
    state: SharedState,
    /// The newest sequence of the entity the state reflects.
    through: u64,
    computed: Instant,
    used: u64,
}

/// Cached projection states, least recently used evicted beyond `capacity`.
pub(crate) struct ProjectionCache {
    entries: Mutex<(HashMap<Key, Entry>, u64)>,
    capacity: usize,
}

impl std::fmt::Debug for ProjectionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ProjectionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ProjectionCache {
            entries: Mutex::new((HashMap::new(), 0)),
            capacity,
        }
    }

    fn lookup(&self, key: &Key) -> Option<(SharedState, u64, Instant)> {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (map, tick) = &mut *guard;
        *tick += 1;
        let entry = map.get_mut(key)?;
        entry.used = *tick;
        Some((entry.state.clone(), entry.through, entry.computed))
    }

    fn store(&self, key: Key, state: SharedState, through: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (map, tick) = &mut *guard;
        *tick += 1;
        if map.get(&key).is_some_and(|e| e.through > through) {
            return; // a concurrent caller stored a newer state
        }
        if !map.contains_key(&key) && map.len() >= self.capacity {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            key,
            Entry {
                state,
                through,
                computed: Instant::now(),
                used: *tick,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .len()
    }
}

impl Store {
    /// The state of projection `P` over `entity`'s events: `None` when the entity has no
    /// event of a kind `P` consumes. Cached per (P, P::VERSION, entity); a later call
    /// applies only the events appended since.
    pub fn project<P: Projection>(&self, entity: &str, freshness: Freshness) -> Result<Option<P>> {
        Ok(self.project_through::<P>(entity, freshness)?.0)
    }

    /// Like [`project`](Self::project) with [`Freshness::Consistent`], but `None` when the
    /// entity has not changed since `last_seen` (the token a previous call returned).
    /// The token is the entity's newest sequence.
    pub fn project_if_changed<P: Projection>(
        &self,
        entity: &str,
        last_seen: u64,
    ) -> Result<Option<(Option<P>, u64)>> {
        if self.entity_last_sequence(entity) == last_seen {
            return Ok(None);
        }
        let (state, through) = self.project_through::<P>(entity, Freshness::Consistent)?;
        Ok(Some((state, through)))
    }

    /// The projected state and the newest entity sequence it reflects.
    fn project_through<P: Projection>(
        &self,
        entity: &str,
        freshness: Freshness,
    ) -> Result<(Option<P>, u64)> {
        let key = Key {
            projection: TypeId::of::<P>(),
            version: P::VERSION,
            entity: Arc::from(entity),
        };
        let cached = self.projections.lookup(&key);
        let typed = |state: &SharedState| -> Option<P> {
            state.as_ref().and_then(|s| s.downcast_ref::<P>()).cloned()
        };
        if let (Freshness::MaybeStale { max_age }, Some((state, through, computed))) =
            (freshness, &cached)
        {
            if computed.elapsed() <= max_age {
                return Ok((typed(state), *through));
            }
        }
        let (mut state, through) = match &cached {
            Some((state, through, _)) => (typed(state), *through),
            None => (None, 0),
        };
        let last = self.visit_entity_events_after(entity, through, P::KINDS, |event| {
            state.get_or_insert_with(P::default).apply(event)
        })?;
        if last == through {
            return Ok((state, through));
        }
        let shared = state
            .clone()
            .map(|s| Arc::new(s) as Arc<dyn Any + Send + Sync>);
        self.projections.store(key, shared, last);
        Ok((state, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppendOptions, Coordinate, RawPayload};

    #[derive(Clone, Default, Debug, PartialEq)]
    struct Count(u64);

    impl Projection for Count {
        const NAME: &'static str = "count";
        fn apply(&mut self, _: &StoredEvent) -> Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path())
            .projection_cache(2)
            .open()
            .unwrap();
        for e in ["a", "b", "c"] {
            let c = Coordinate::new(e, "s").unwrap();
            store
                .append_raw(
                    &c,
                    EventKind::custom(1, 1),
                    RawPayload::opaque(b"x"),
                    AppendOptions::default(),
                )
                .unwrap();
        }
        for e in ["a", "b", "a", "c", "a"] {
            assert_eq!(
                store.project::<Count>(e, Freshness::Consistent).unwrap(),
                Some(Count(1))
            );
        }
        assert_eq!(store.projections.len(), 2);
    }
}
