//! The projection cache: type-erased projected states keyed by projection, version
//! and target, least recently used evicted, with the snapshots of persisting
//! projections written at close. Knows nothing of the `Projection` trait: the
//! projection layer above puts states in and takes them out.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::dir::replace_file;
use crate::format::snapshot::Snapshot;
use crate::query::Region;

/// Default number of cached projection states.
pub(crate) const DEFAULT_PROJECTION_CACHE: usize = 4096;

/// Encodes a type-erased cached state of `P` for its snapshot.
pub(crate) type EncodeState = fn(&(dyn Any + Send + Sync)) -> Option<Vec<u8>>;

/// Where and how a persisting projection's cached state is written.
#[derive(Clone)]
pub(crate) struct PersistTo {
    pub path: PathBuf,
    pub version: u32,
    pub encode: EncodeState,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub projection: TypeId,
    pub version: u32,
    pub target: Target,
    /// The entity's first visible sequence when the state was folded (0: nothing was
    /// hidden): a state folded before retention or a deletion moved it is not reused.
    pub from: u64,
}

/// What a cached state folds: one entity's events, or a region's in sequence order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Entity(Arc<str>),
    Region(Box<Region>),
}

/// A cached state of some projection type, `None` until a relevant event was applied.
pub(crate) type SharedState = Option<Arc<dyn Any + Send + Sync>>;

struct Entry {
    /// Snapshot file and encoder, for projections that persist.
    persist: Option<PersistTo>,
    /// Changed since it was loaded or last written.
    dirty: bool,
    state: SharedState,
    /// The newest sequence of the entity the state reflects.
    through: u64,
    /// Sequence and timestamp of the last event applied.
    frontier: Option<(u64, u64)>,
    computed: Instant,
    used: u64,
}

/// A cache entry as a caller sees it.
pub(crate) struct Cached {
    pub state: SharedState,
    pub through: u64,
    pub frontier: Option<(u64, u64)>,
    pub computed: Instant,
}

/// Cached projection states, least recently used evicted beyond `capacity`.
pub(crate) struct ProjectionCache {
    entries: Mutex<(HashMap<Key, Entry>, u64)>,
    capacity: usize,
    /// Bumped when states are dropped for a redaction: a run that started before the
    /// bump may hold erased data and must not be stored.
    epoch: std::sync::atomic::AtomicU64,
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
            epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The current epoch; pass it back to `store`.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Drops the states of `entity` and every region state (a region may include the
    /// entity's events), and makes runs already under way not store theirs.
    pub(crate) fn forget_entity(&self, entity: &str) {
        let mut guard = crate::sync::lock(&self.entries);
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        guard.0.retain(|key, _| match &key.target {
            Target::Entity(e) => &**e != entity,
            Target::Region(_) => false,
        });
    }

    /// Drops every state and makes runs already under way not store theirs: a
    /// retention policy or deletion changed what the store shows.
    pub(crate) fn forget_all(&self) {
        let mut guard = crate::sync::lock(&self.entries);
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        guard.0.clear();
    }

    pub(crate) fn lookup(&self, key: &Key) -> Option<Cached> {
        let mut guard = crate::sync::lock(&self.entries);
        let (map, tick) = &mut *guard;
        *tick += 1;
        let entry = map.get_mut(key)?;
        entry.used = *tick;
        Some(Cached {
            state: entry.state.clone(),
            through: entry.through,
            frontier: entry.frontier,
            computed: entry.computed,
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub(crate) fn store(
        &self,
        key: Key,
        state: SharedState,
        through: u64,
        frontier: Option<(u64, u64)>,
        persist: Option<PersistTo>,
        epoch: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = crate::sync::lock(&self.entries);
        if self.epoch() != epoch {
            return; // computed before a redaction dropped this entity's states
        }
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
                dirty: persist.is_some(),
                persist,
                state,
                through,
                frontier,
                computed: Instant::now(),
                used: *tick,
            },
        );
    }

    /// Writes the snapshot of every persisting state that changed. Best effort: a
    /// snapshot is an optimisation, and a missing or damaged one is rebuilt.
    pub(crate) fn write_snapshots(&self) {
        let mut guard = crate::sync::lock(&self.entries);
        for entry in guard.0.values_mut().filter(|e| e.dirty) {
            let Some(to) = &entry.persist else { continue };
            let state = match &entry.state {
                Some(s) => match (to.encode)(s.as_ref()) {
                    Some(bytes) => Some(bytes),
                    None => continue,
                },
                None => None,
            };
            let bytes = Snapshot {
                projection_version: to.version,
                through: entry.through,
                frontier: entry.frontier,
                state,
            }
            .encode();
            let (Some(dir), Some(name)) = (
                to.path.parent(),
                to.path.file_name().and_then(|n| n.to_str()),
            ) else {
                continue;
            };
            let written = crate::dir::fs::create_dir_all(dir)
                .map_err(crate::error::io_err("create directory", dir))
                .and_then(|()| replace_file(dir, name, &bytes));
            match written {
                Ok(()) => entry.dirty = false,
                Err(e) => log_warn!("projection snapshot not written (it is rebuilt): {e}"),
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        crate::sync::lock(&self.entries).0.len()
    }
}
