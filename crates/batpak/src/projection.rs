//! Projections: derived state as a fold over an entity's events, cached per
//! (projection type, projection version, entity) and advanced incrementally.

use std::any::{Any, TypeId};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::Serialize;

use crate::cache::{Cached, Key, PersistTo, SharedState, Target};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::hash::hex;
use crate::kind::EventKind;
use crate::query::Region;
use crate::report::{
    CacheStatus, Finding, InputFrontier, ObservedFreshness, OutputHash, ProjectionRun, Report,
    RequestedFreshness, SnapshotRef, SourceRef,
};
use crate::store::Store;
use crate::view::EventView;

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
///     fn apply(&mut self, event: &EventView<'_>) -> batpak::Result<()> {
///         self.cents += event.payload().len() as i64; // decode the payload in real code
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

    /// Keep cached states as snapshot files under `projections/`, so a restarted
    /// process resumes from them instead of refolding history. Needs `to_snapshot`
    /// and `from_snapshot`. Default: false.
    const PERSIST: bool = false;

    /// Folds one event into the state (which starts as `Default::default()`). The
    /// event is borrowed from its segment (`event.decode::<T>()` decodes straight from
    /// the record; `to_stored` copies it out). A payload that fails to decode should be
    /// returned as the error, never skipped.
    fn apply(&mut self, event: &EventView<'_>) -> Result<()>;

    /// The state's bytes for a snapshot (any encoding). `None`: not persisted.
    fn to_snapshot(&self) -> Option<Vec<u8>> {
        None
    }

    /// A state from `to_snapshot`'s bytes; `None` rejects the snapshot.
    fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        let _ = bytes;
        None
    }
}

fn encode_state<P: Projection>(state: &(dyn Any + Send + Sync)) -> Option<Vec<u8>> {
    state.downcast_ref::<P>().and_then(P::to_snapshot)
}

/// Where a projection's snapshot of `entity` lives.
fn snapshot_path<P: Projection>(dir: &Path, entity: &str) -> PathBuf {
    dir.join(SNAPSHOT_DIR)
        .join(format!(
            "{}.v{}",
            hex::encode(P::NAME.as_bytes()),
            P::VERSION
        ))
        .join(format!("{}.snap", hex::encode(entity.as_bytes())))
}

use crate::dir::SNAPSHOT_DIR;

/// How current a projected state must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

/// Whether `freshness` lets `cached` be served without looking for newer events.
fn serves(cached: &Cached, freshness: Freshness) -> bool {
    matches!(freshness, Freshness::MaybeStale { max_age } if cached.computed.elapsed() <= max_age)
}

/// The cached state as `P`.
fn typed<P: Projection>(state: &SharedState) -> Option<P> {
    state.as_ref().and_then(|s| s.downcast_ref::<P>()).cloned()
}

/// A state to cache.
fn shared<P: Projection>(state: &Option<P>) -> SharedState {
    state
        .clone()
        .map(|s| Arc::new(s) as Arc<dyn Any + Send + Sync>)
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

    /// Drops every cached state and snapshot file of `entity` (and every cached region
    /// state): after a redaction they may hold erased data. Each removal is made
    /// durable (its folder fsynced) before this returns, or a power cut could bring
    /// the snapshot back (`tests/power_loss.rs` found it).
    pub(crate) fn forget_projections(&self, entity: &str) -> Result<()> {
        self.projections().forget_entity(entity);
        let name = format!("{}.snap", hex::encode(entity.as_bytes()));
        let root = self.dir().join(SNAPSHOT_DIR);
        let dirs = match std::fs::read_dir(&root) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(crate::error::io_err("list snapshots", &root)(e)),
        };
        for dir in dirs.flatten() {
            let path = dir.path().join(&name);
            match crate::dir::fs::remove_file(&path) {
                Ok(()) => crate::dir::sync_dir(&dir.path())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::io_err("remove snapshot", &path)(e)),
            }
        }
        Ok(())
    }

    /// Reads `P`'s snapshot of `entity`: `Ok(None)` when there is none, an error
    /// (the reason to ignore it) when it is damaged, of another version, ahead of the
    /// store, or does not decode. Returns the state, the sequence it reflects, its
    /// frontier and the blake3 of the file.
    #[allow(clippy::type_complexity)]
    fn load_snapshot<P: Projection>(
        &self,
        entity: &str,
    ) -> std::result::Result<Option<(Option<P>, u64, Option<(u64, u64)>, String)>, String> {
        let path = snapshot_path::<P>(self.dir(), entity);
        let bytes = match crate::dir::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let snapshot =
            Snapshot::decode(&bytes).map_err(|e| format!("snapshot {}: {e}", path.display()))?;
        if snapshot.projection_version != P::VERSION {
            return Err(format!(
                "snapshot is of projection version {}, this is version {}",
                snapshot.projection_version,
                P::VERSION
            ));
        }
        let last = self.entity_last_sequence(entity);
        if snapshot.through > last
            || (snapshot.through > 0 && !self.entity_has(entity, snapshot.through))
        {
            return Err(format!(
                "snapshot reflects sequence {}, which the store does not hold for this entity (its newest is {last})",
                snapshot.through
            ));
        }
        let state = match &snapshot.state {
            None => None,
            Some(bytes) => {
                Some(P::from_snapshot(bytes).ok_or("the snapshot state does not decode")?)
            }
        };
        let hash = blake3::hash(&bytes).to_hex().to_string();
        Ok(Some((state, snapshot.through, snapshot.frontier, hash)))
    }

    /// A read model over every event of `region` (many entities: all orders of a
    /// tenant, say), folded in sequence order; `None` when the region holds no event of
    /// a kind `P` consumes. Cached per (P, P::VERSION, region) and advanced by the
    /// events appended since, like [`project`](Self::project).
    pub fn project_region<P: Projection>(
        &self,
        region: &Region,
        freshness: Freshness,
    ) -> Result<Option<P>> {
        let key = Key {
            projection: TypeId::of::<P>(),
            version: P::VERSION,
            target: Target::Region(Box::new(region.clone())),
            from: 0,
        };
        let epoch = self.projections().epoch();
        let cached = self.projections().lookup(&key);
        if let Some(c) = cached.as_ref().filter(|c| serves(c, freshness)) {
            return Ok(typed(&c.state));
        }
        let (mut state, mut through, mut frontier) = match &cached {
            Some(c) => (typed::<P>(&c.state), c.through, c.frontier),
            None => (None, 0, None),
        };
        let start = through;
        const PAGE: usize = 4096;
        loop {
            let mut last = None;
            let seen = self.visit_query(region, through, PAGE, |event| {
                last = Some(event.sequence());
                if P::KINDS.is_empty() || P::KINDS.contains(&event.kind()) {
                    state.get_or_insert_with(P::default).apply(event)?;
                    frontier = Some((event.sequence(), event.timestamp_ns()));
                }
                Ok(())
            })?;
            if let Some(last) = last {
                through = last;
            }
            if seen < PAGE {
                break;
            }
        }
        if through != start {
            self.projections()
                .store(key, shared(&state), through, frontier, None, epoch);
        }
        Ok(state)
    }

    /// The state of `P` over `entity` with a deterministic report of the run: what was
    /// asked, what was observed, the input frontier, the hash of the state's canonical
    /// encoding and how the cache was used. When the projection fails, the error
    /// (`Error::ProjectionFailed`) carries the report of the failed run.
    pub fn project_with_report<P: Projection + Serialize>(
        &self,
        entity: &str,
        freshness: Freshness,
    ) -> Result<(Option<P>, Report<ProjectionRun>)> {
        let mut findings = Vec::new();
        let mut run = ProjectionRun {
            projection: P::NAME.to_string(),
            projection_version: P::VERSION,
            entity: entity.to_string(),
            sources: sources::<P>(entity),
            requested_freshness: match freshness {
                Freshness::Consistent => RequestedFreshness::Consistent,
                Freshness::MaybeStale { max_age } => RequestedFreshness::MaybeStale {
                    max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
                },
            },
            observed_freshness: ObservedFreshness::NotApplicable,
            input_frontier: None,
            output_hash: OutputHash::NotApplicable,
            cache: CacheStatus::Miss,
            snapshot: None,
            findings: Vec::new(),
        };
        let outcome = match self.run::<P>(entity, freshness) {
            Ok(outcome) => outcome,
            Err(RunError { error, cache }) => {
                run.cache = cache;
                run.observed_freshness = ObservedFreshness::Unavailable {
                    reason: "the projection failed".into(),
                };
                run.output_hash = OutputHash::Unavailable {
                    reason: "the projection failed".into(),
                };
                findings.extend([Finding::ProjectionFailed, Finding::InputFrontierUnknown]);
                run.findings = sorted(findings);
                let report = Report::new(run, vec![error.to_string()]);
                return Err(Error::ProjectionFailed {
                    report: Box::new(report),
                    cause: Box::new(error),
                });
            }
        };
        run.cache = outcome.cache;
        let mut diagnostics = Vec::new();
        match &outcome.snapshot {
            SnapshotUse::None => {}
            SnapshotUse::Used { through, hash } => {
                run.snapshot = Some(SnapshotRef {
                    sequence: *through,
                    blake3: hash.clone(),
                });
            }
            SnapshotUse::Ignored(reason) => {
                findings.push(Finding::SnapshotIgnored);
                diagnostics.push(reason.clone());
            }
        }
        run.input_frontier = outcome
            .frontier
            .map(|(sequence, timestamp_ns)| InputFrontier {
                sequence,
                timestamp_ns,
            });
        run.observed_freshness = match (&outcome.state, outcome.stale) {
            (None, _) => ObservedFreshness::NotApplicable,
            (Some(_), true) => {
                findings.push(Finding::StaleStateUsed);
                ObservedFreshness::StaleAllowed
            }
            (Some(_), false) => ObservedFreshness::Fresh,
        };
        run.output_hash = match &outcome.state {
            None => OutputHash::NotApplicable,
            Some(state) => match serde_json::to_vec(state) {
                Ok(bytes) => OutputHash::Hash {
                    blake3: blake3::keyed_hash(&OUTPUT_KEY, &bytes).to_hex().to_string(),
                },
                Err(e) => {
                    findings.push(Finding::OutputHashUnavailable);
                    OutputHash::Unavailable {
                        reason: format!("the state does not encode: {e}"),
                    }
                }
            },
        };
        run.findings = sorted(findings);
        Ok((outcome.state, Report::new(run, diagnostics)))
    }

    /// The projected state and the newest entity sequence it reflects.
    pub(crate) fn project_through<P: Projection>(
        &self,
        entity: &str,
        freshness: Freshness,
    ) -> Result<(Option<P>, u64)> {
        self.run::<P>(entity, freshness)
            .map(|o| (o.state, o.through))
            .map_err(|e| e.error)
    }

    /// One projection run: from the cache when allowed, advanced by newer events.
    fn run<P: Projection>(
        &self,
        entity: &str,
        freshness: Freshness,
    ) -> Result<Outcome<P>, RunError> {
        // A state folded under another horizon (retention or a deletion moved it
        // since) is another key; snapshots are folded from the first event, so they
        // serve only while nothing is hidden.
        let from = self.entity_horizon(entity);
        let key = Key {
            projection: TypeId::of::<P>(),
            version: P::VERSION,
            target: Target::Entity(Arc::from(entity)),
            from,
        };
        let persists = P::PERSIST && from == 0;
        let epoch = self.projections().epoch();
        let cached = self.projections().lookup(&key);
        let cache = match (&cached, self.projections().enabled()) {
            (_, false) => CacheStatus::Bypassed,
            (Some(_), true) => CacheStatus::Hit,
            (None, true) => CacheStatus::Miss,
        };
        if let Some(c) = cached.as_ref().filter(|c| serves(c, freshness)) {
            return Ok(Outcome {
                state: typed(&c.state),
                through: c.through,
                frontier: c.frontier,
                cache,
                stale: true,
                snapshot: SnapshotUse::None,
            });
        }
        let mut snapshot = SnapshotUse::None;
        let (mut state, through, mut frontier) = match &cached {
            Some(c) => (typed::<P>(&c.state), c.through, c.frontier),
            None if persists => match self.load_snapshot::<P>(entity) {
                Ok(Some((state, through, frontier, hash))) => {
                    snapshot = SnapshotUse::Used { through, hash };
                    (state, through, frontier)
                }
                Ok(None) => (None, 0, None),
                Err(reason) => {
                    snapshot = SnapshotUse::Ignored(reason);
                    (None, 0, None)
                }
            },
            None => (None, 0, None),
        };
        let last = self
            .visit_entity_events_after(entity, (through, from), P::KINDS, |event| {
                state.get_or_insert_with(P::default).apply(event)?;
                frontier = Some((event.sequence(), event.timestamp_ns()));
                Ok(())
            })
            .map_err(|error| RunError {
                error,
                cache: cache.clone(),
            })?;
        if last != through || matches!(snapshot, SnapshotUse::Used { .. }) {
            let persist = persists.then(|| PersistTo {
                path: snapshot_path::<P>(self.dir(), entity),
                version: P::VERSION,
                encode: encode_state::<P>,
            });
            self.projections()
                .store(key, shared(&state), last, frontier, persist, epoch);
        }
        Ok(Outcome {
            state,
            through: last,
            frontier,
            cache,
            stale: false,
            snapshot,
        })
    }
}

struct Outcome<P> {
    state: Option<P>,
    through: u64,
    frontier: Option<(u64, u64)>,
    cache: CacheStatus,
    stale: bool,
    snapshot: SnapshotUse,
}

/// Whether a run started from a persisted snapshot.
enum SnapshotUse {
    None,
    Used { through: u64, hash: String },
    Ignored(String),
}

struct RunError {
    error: Error,
    cache: CacheStatus,
}

static OUTPUT_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("batpak 2026 projection output v1", &[]));

fn sources<P: Projection>(entity: &str) -> Vec<SourceRef> {
    let mut out = vec![SourceRef::Entity {
        name: entity.to_string(),
    }];
    let mut kinds: Vec<EventKind> = P::KINDS.to_vec();
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.is_empty() {
        out.push(SourceRef::AllKinds);
    }
    out.extend(kinds.into_iter().map(|k| SourceRef::Kind {
        category: k.category(),
        type_id: k.type_id(),
    }));
    out
}

fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_unstable();
    findings.dedup();
    findings
}

/// The body of a projection-run report. Deterministic: two runs over the same
/// history give byte-identical bodies unless a field says what differed (the cache
/// status, the observed freshness).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppendOptions, Coordinate, RawPayload};

    #[derive(Clone, Default, Debug, PartialEq)]
    struct Count(u64);

    impl Projection for Count {
        const NAME: &'static str = "count";
        fn apply(&mut self, _: &crate::EventView<'_>) -> Result<()> {
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
        assert_eq!(store.projections().len(), 2);
    }
}
