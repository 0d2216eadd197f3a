//! `Store`: the public facade. Open, append, read, query, sync, close.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::cache::ProjectionCache;
use crate::coordinate::Coordinate;
use crate::dir::DirLock;
use crate::error::{Error, Result};
use crate::event::{Batch, EventPayload, RawPayload, StoredEvent};
use crate::format::Encoding;
use crate::id::EventId;
use crate::index::Index;
use crate::kind::EventKind;
use crate::kinds::{KindNamed, KindNames, KINDS_ENTITY, KINDS_SCOPE};
use crate::open::{Loaded, OpenReport};
use crate::options::{AppendOptions, SyncPolicy};
use crate::query::{select, Region};
use crate::receipt::AppendReceipt;
use crate::registry::KindRename;
use crate::segment::{Location, SegmentSet};
use crate::sign::Keyring;
use crate::sync::{lock, Signal};
use crate::view::EventView;
use crate::writer::{Draft, Flusher, Writer};

/// Counts and watermarks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Visible events.
    pub events: u64,
    /// Distinct entities among them.
    pub entities: usize,
    /// Distinct scopes among them.
    pub scopes: usize,
    /// Segment files.
    pub segments: usize,
    /// Bytes of all segment files.
    pub segment_bytes: u64,
    /// Newest written sequence (0: none).
    pub written_sequence: u64,
    /// Newest sequence known to be on stable storage.
    pub durable_sequence: u64,
    /// Newest visible sequence.
    pub visible_sequence: u64,
    /// The retention policies in force.
    pub retention: Vec<crate::retention::RetentionPolicy>,
    /// Entities deleted (soft or hard).
    pub deleted_entities: usize,
    /// Idempotency keys remembered (bounded by the store's `IdempotencyWindow`; 0
    /// for a read-only store, which keeps none).
    pub idempotency_keys: usize,
}

/// An open event store. `Send + Sync`: share it (for example in an `Arc`) and append
/// and read from many threads at once.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    index: Arc<RwLock<Index>>,
    segments: Arc<SegmentSet>,
    writer: Option<Arc<Writer>>,
    flusher: Option<Flusher>,
    report: OpenReport,
    projections: ProjectionCache,
    /// Serialises `decide` per entity (striped): deciders on one entity take turns, so
    /// each sees the previous one's event and none livelocks on version conflicts.
    decide_locks: Box<[Mutex<()>; DECIDE_STRIPES]>,
    keys: Keyring,
    /// Serialises redactions.
    redacting: Mutex<()>,
    /// Wakes waiters and subscribers when events are written, made durable or visible.
    signal: Arc<Signal>,
    /// Names of the durable cursors and reactors open now.
    cursors: Mutex<HashSet<String>>,
    /// The names recorded for the kinds this store holds.
    kind_names: KindNames,
    /// A view's reader of what another process appends (`None` otherwise).
    follower: Option<crate::follow::Follower>,
    /// Now, for reads: events older than a retention policy's age are hidden by it.
    clock: Arc<dyn crate::clock::Clock>,
    /// The retention policies and deletions in force; its lock serialises changes
    /// to them.
    lifecycle: Mutex<crate::retention::Recorded>,
    /// What compaction removed, when the store was compacted.
    manifest: Mutex<Option<Arc<crate::format::manifest::Manifest>>>,
    /// `None` for a view (`open_view`), which takes no lock.
    _lock: Option<DirLock>,
}

/// Number of `decide` lock stripes.
const DECIDE_STRIPES: usize = 64;

/// Default segment rotation size.
pub(crate) const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// What a writable store's writer is configured with.
#[derive(Clone, Debug)]
pub(crate) struct WriterConfig {
    pub sync: SyncPolicy,
    pub segment_size: u64,
    pub clock: Arc<dyn crate::clock::Clock>,
    pub idempotency_window: crate::options::IdempotencyWindow,
}

impl Store {
    /// Builds the facade over a loaded directory: a writer (and, under
    /// `SyncPolicy::Interval`, its flusher) when `writer` is given and the load left
    /// somewhere to resume.
    pub(crate) fn assemble(
        dir: PathBuf,
        loaded: Loaded,
        writer: Option<WriterConfig>,
        keys: Keyring,
        (projection_cache, clock): (usize, Arc<dyn crate::clock::Clock>),
        dir_lock: Option<DirLock>,
    ) -> Result<Store> {
        let index = Arc::new(RwLock::new(loaded.index));
        let segments = Arc::new(loaded.segments);
        let signal = Arc::new(Signal::default());
        let writer = match (writer, loaded.resume) {
            (Some(config), Some(resume)) => {
                let mut writer = Writer::new(
                    dir.clone(),
                    config.sync,
                    (config.segment_size, config.idempotency_window),
                    resume,
                    Arc::clone(&index),
                    Arc::clone(&segments),
                    Arc::clone(&signal),
                )?;
                writer.lock = dir_lock.as_ref().and_then(DirLock::identity);
                writer.clock = config.clock;
                let visible = crate::sync::read(&index).last_sequence();
                writer.live = match crate::live::LiveMark::create(&dir, &writer.store_id(), visible)
                {
                    Ok(mark) => Some(mark),
                    Err(e) => {
                        log_warn!(
                            "no live mark: views of {} will not follow: {e}",
                            dir.display()
                        );
                        None
                    }
                };
                Some(Arc::new(writer))
            }
            _ => None,
        };
        let flusher = match writer.as_ref().map(|w| (w, w.policy())) {
            Some((w, SyncPolicy::Interval(every))) => Some(Flusher::start(Arc::clone(w), every)?),
            _ => None,
        };
        let follower = (writer.is_none() && dir_lock.is_none())
            .then(|| crate::follow::Follower::new(&dir, &segments, DEFAULT_SEGMENT_SIZE));
        let mut store = Store {
            dir,
            index,
            segments,
            writer,
            flusher,
            report: loaded.report,
            projections: ProjectionCache::new(projection_cache),
            decide_locks: Box::new(std::array::from_fn(|_| Mutex::new(()))),
            keys,
            redacting: Mutex::new(()),
            signal,
            cursors: Mutex::default(),
            kind_names: KindNames::default(),
            follower,
            clock,
            lifecycle: Mutex::default(),
            manifest: Mutex::new(loaded.manifest.map(Arc::new)),
            _lock: dir_lock,
        };
        store.report.kind_renames = store.load_kind_names()?;
        store.replay_lifecycle(&mut lock(&store.lifecycle))?;
        Ok(store)
    }

    /// For a view (`StoreBuilder::open_view`) of a store another process writes: reads
    /// the events the writer has made visible since, so reads, queries and the
    /// catalogue see them. Returns how many were added (0 for other stores, which see
    /// their own appends at once). Subscriptions on a view call it themselves.
    pub fn refresh(&self) -> Result<u64> {
        let Some(follower) = &self.follower else {
            return Ok(0);
        };
        let names_before = self.entity_version(KINDS_ENTITY);
        let lifecycle_before = self.entity_version(crate::lifecycle_records::LIFECYCLE_ENTITY);
        let added = follower.catch_up(&self.index, &self.segments)?;
        if added > 0 {
            // Re-read the kind names only when the writer recorded a new one.
            if self.entity_version(KINDS_ENTITY) != names_before {
                self.load_kind_names()?;
            }
            if self.entity_version(crate::lifecycle_records::LIFECYCLE_ENTITY) != lifecycle_before {
                self.replay_lifecycle(&mut self.lifecycle())?;
            }
            self.signal.notify();
        }
        Ok(added)
    }

    /// Whether this store is a view that follows another process's appends.
    pub(crate) fn follows(&self) -> bool {
        self.follower.is_some()
    }

    /// Reads the recorded kind names; returns the kinds this program names otherwise.
    fn load_kind_names(&self) -> Result<Vec<KindRename>> {
        let region = Region::all().entity(KINDS_ENTITY).with_store_records();
        for event in self.query(&region, 0, usize::MAX)? {
            let named: KindNamed = event.decode()?;
            self.kind_names.insert(named.kind, named.name);
        }
        let mut renames = Vec::new();
        for (kind, program) in crate::registry::registered_names() {
            match self.kind_names.name(kind) {
                Some(recorded) if recorded != program => renames.push(KindRename {
                    kind,
                    recorded,
                    program: program.to_string(),
                }),
                _ => {}
            }
        }
        Ok(renames)
    }

    /// Records the name of each kind among `kinds` that has none recorded yet, each
    /// in its own append before the caller's (a crash between leaves a name without
    /// events, which is harmless). Store record kinds and empty names are skipped.
    fn name_kinds<'n>(&self, kinds: impl Iterator<Item = (EventKind, &'n str)>) -> Result<()> {
        for (kind, name) in kinds {
            if self.kind_names.settled(kind) || kind.is_reserved() {
                continue;
            }
            if name.is_empty() {
                self.kind_names.settle(kind);
                continue;
            }
            let _turn = self.kind_names.turn();
            if self.kind_names.settled(kind) {
                continue;
            }
            let mut batch = Batch::new();
            batch.push_system(
                &Coordinate::new(KINDS_ENTITY, KINDS_SCOPE)?,
                &KindNamed {
                    kind,
                    name: name.to_string(),
                },
                AppendOptions::default(),
            )?;
            self.append_batch(&batch)?;
            self.kind_names.insert(kind, name.to_string());
        }
        Ok(())
    }

    /// Records `name` for `kind` unless the store has one already (for tools that
    /// append raw bytes of a kind they know the name of, such as an import). A user
    /// kind only; an empty name records nothing.
    pub fn name_kind(&self, kind: EventKind, name: &str) -> Result<()> {
        kind.check_user()?;
        self.name_kinds(std::iter::once((kind, name)))
    }

    /// The name of `kind`: the one recorded when it was first appended as a typed
    /// payload, or the built-in name of a store record kind (`batpak.Redaction`, ...).
    pub fn kind_name(&self, kind: EventKind) -> Option<String> {
        self.kind_names.name(kind)
    }

    /// Every kind name this store knows, sorted by kind.
    pub fn kind_names(&self) -> BTreeMap<EventKind, String> {
        self.kind_names.all()
    }

    /// Counts redactions the open finished after the load (see `OpenReport`).
    pub(crate) fn add_redactions_finished(&mut self, n: u64) {
        self.report.redactions_finished += n;
    }

    /// The projection cache.
    pub(crate) fn projections(&self) -> &ProjectionCache {
        &self.projections
    }

    /// Deciders on one entity take turns (striped by entity): held for one `decide`.
    pub(crate) fn decide_turn(&self, entity: &str) -> MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        entity.hash(&mut h);
        lock(&self.decide_locks[(h.finish() % DECIDE_STRIPES as u64) as usize])
    }

    /// Redactions take turns: held for one `redact`.
    pub(crate) fn redaction_turn(&self) -> MutexGuard<'_, ()> {
        lock(&self.redacting)
    }

    /// Wakes waiters when events are written, made durable or visible.
    pub(crate) fn signal(&self) -> &Signal {
        &self.signal
    }

    /// Claims `name` among the open cursors and reactors; `false` when it is taken.
    pub(crate) fn claim_cursor_name(&self, name: &str) -> bool {
        lock(&self.cursors).insert(name.to_string())
    }

    /// Releases a name `claim_cursor_name` took.
    pub(crate) fn release_cursor_name(&self, name: &str) {
        lock(&self.cursors).remove(name);
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What open found and did.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The keys this store signs and verifies with.
    pub(crate) fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// Writes `drafts` and signs the receipts when the store has a key. Signing runs
    /// after the commit, on the caller's thread, holding no lock.
    fn commit(&self, drafts: &[Draft<'_>], batch: bool) -> Result<Vec<AppendReceipt>> {
        let mut receipts = self.writer()?.append(drafts, batch)?;
        self.sign_receipts(&mut receipts);
        Ok(receipts)
    }

    /// Signs `receipts` when the store has a key.
    pub(crate) fn sign_receipts(&self, receipts: &mut [AppendReceipt]) {
        if self.keys.signs() {
            let key_id = self.keys.signer_id();
            for r in receipts {
                r.signature = self.keys.sign(&r.signed_message(key_id));
            }
        }
    }

    /// Keeps a kind name recorded by other means than `name_kinds` (an import).
    pub(crate) fn note_kind_name(&self, kind: EventKind, name: String) {
        self.kind_names.insert(kind, name);
    }

    /// Whether an append with idempotency key `key` was written.
    pub(crate) fn idempotency_seen(&self, key: &str) -> bool {
        let digest = crate::options::idempotency_digest(key);
        self.writer()
            .is_ok_and(|w| w.idempotency_of(&digest).is_some())
    }

    pub(crate) fn writer(&self) -> Result<&Writer> {
        self.writer.as_deref().ok_or(Error::ReadOnly)
    }

    /// What reads see now: what the retention policies and deletions leave visible
    /// at the store clock's current millisecond.
    pub(crate) fn sight(&self) -> crate::index::Sight {
        crate::index::Sight::At(self.clock.now_ns() / 1_000_000)
    }

    /// What a read of `region` sees: everything when it asks for hidden events.
    pub(crate) fn sight_of(&self, region: &Region) -> crate::index::Sight {
        if region.includes_hidden() {
            crate::index::Sight::All
        } else {
            self.sight()
        }
    }

    /// The retention policies and deletions in force, locked: holding the guard
    /// serialises changes to them.
    /// The compaction manifest in force, when the store was compacted.
    pub(crate) fn manifest(&self) -> Option<Arc<crate::format::manifest::Manifest>> {
        lock(&self.manifest).clone()
    }

    pub(crate) fn set_manifest(&self, manifest: crate::format::manifest::Manifest) {
        *lock(&self.manifest) = Some(Arc::new(manifest));
    }

    /// The store clock's current Unix millisecond.
    pub(crate) fn clock_ms(&self) -> u64 {
        self.clock.now_ns() / 1_000_000
    }

    pub(crate) fn lifecycle(&self) -> MutexGuard<'_, crate::retention::Recorded> {
        lock(&self.lifecycle)
    }

    /// Replays the lifecycle records after the last one `recorded` applied, and
    /// hands what is in force to the index (what reads hide) and the writer (which
    /// entities take no more events). Cached projection states are dropped when
    /// anything changed, since they may hold events now hidden.
    pub(crate) fn replay_lifecycle(&self, recorded: &mut crate::retention::Recorded) -> Result<()> {
        use crate::lifecycle_records::{
            EntityDeleted, RetentionChanged, DELETION_KIND, RETENTION_KIND,
        };
        let region = Region::all()
            .entity(crate::lifecycle_records::LIFECYCLE_ENTITY)
            .with_store_records();
        let events = self.query(&region, recorded.through, usize::MAX)?;
        if events.is_empty() {
            return Ok(());
        }
        for event in events {
            if event.kind == RETENTION_KIND {
                let change: RetentionChanged = event.decode()?;
                recorded.set(change.selector, change.rule, event.id);
            } else if event.kind == DELETION_KIND {
                let deleted: EntityDeleted = event.decode()?;
                recorded.delete(deleted.entity, deleted.version, deleted.mode, event.id);
            }
            recorded.through = event.sequence;
        }
        let (policies, deleted) = recorded.horizons();
        crate::sync::write(&self.index).set_horizons(policies, &deleted);
        if let Some(writer) = &self.writer {
            writer.set_tombstones(recorded.tombstones());
        }
        self.projections.forget_all();
        Ok(())
    }

    pub(crate) fn index(&self) -> RwLockReadGuard<'_, Index> {
        crate::sync::read(&self.index)
    }

    /// Appends a typed payload with default options.
    pub fn append<P: EventPayload>(
        &self,
        coord: &Coordinate,
        payload: &P,
    ) -> Result<AppendReceipt> {
        self.append_with(coord, payload, AppendOptions::default())
    }

    /// Appends a typed payload with options.
    pub fn append_with<P: EventPayload>(
        &self,
        coord: &Coordinate,
        payload: &P,
        options: AppendOptions,
    ) -> Result<AppendReceipt> {
        let bytes = payload.encode()?;
        self.name_kinds(std::iter::once((P::KIND, P::NAME)))?;
        self.append_one(Draft {
            coordinate: coord,
            kind: P::KIND,
            encoding: Encoding::MessagePack,
            schema_version: P::SCHEMA_VERSION,
            payload: &bytes,
            options: &options,
            system: false,
        })
    }

    /// Appends bytes the caller already encoded.
    pub fn append_raw(
        &self,
        coord: &Coordinate,
        kind: EventKind,
        payload: RawPayload<'_>,
        options: AppendOptions,
    ) -> Result<AppendReceipt> {
        self.append_one(Draft {
            coordinate: coord,
            kind,
            encoding: payload.encoding,
            schema_version: payload.schema_version,
            payload: payload.bytes,
            options: &options,
            system: false,
        })
    }

    fn append_one(&self, draft: Draft<'_>) -> Result<AppendReceipt> {
        let mut receipts = self.commit(std::slice::from_ref(&draft), false)?;
        receipts.pop().ok_or(Error::EmptyBatch)
    }

    /// Appends every item of `batch` atomically: after a crash either all exist or none.
    /// Returns one receipt per item, in order.
    pub fn append_batch(&self, batch: &Batch) -> Result<Vec<AppendReceipt>> {
        self.name_kinds(batch.items().iter().map(|i| (i.kind, i.kind_name)))?;
        self.commit(&drafts_of(batch), true)
    }

    /// Appends several batches, each atomically on its own (one refused by its
    /// checks leaves the others), sharing one fsync: returns when every batch that was
    /// accepted is as durable as the sync policy asks, with each batch's receipts or
    /// its error, in order. What a server does with the requests that arrive
    /// together; an embedding application has `append_batch`. A failed fsync fails
    /// every batch that was written.
    pub fn append_batches(&self, batches: &[Batch]) -> Vec<Result<Vec<AppendReceipt>>> {
        let writer = match self.writer() {
            Ok(w) => w,
            Err(_) => return batches.iter().map(|_| Err(Error::ReadOnly)).collect(),
        };
        let named: Vec<Result<()>> = batches
            .iter()
            .map(|b| self.name_kinds(b.items().iter().map(|i| (i.kind, i.kind_name))))
            .collect();
        // A batch whose kind names could not be recorded is not written (an empty
        // group is refused before anything is).
        let groups: Vec<Vec<Draft<'_>>> = batches
            .iter()
            .zip(&named)
            .map(|(batch, named)| {
                if named.is_err() {
                    return Vec::new();
                }
                drafts_of(batch)
            })
            .collect();
        let mut results = writer.append_groups(&groups);
        for (result, named) in results.iter_mut().zip(named) {
            // The naming error, not the empty group's.
            if let Err(e) = named {
                *result = Err(e);
            } else if let Ok(receipts) = result {
                self.sign_receipts(receipts);
            }
        }
        results
    }

    /// The receipt the store issues for the event with this id (a client that lost
    /// the one its append returned asks again): signed when the store signs, with
    /// the hash recomputed from the stored bytes. `None` for an unknown id.
    pub fn receipt(&self, id: EventId) -> Result<Option<AppendReceipt>> {
        Ok(self.get(id)?.map(|event| {
            let mut receipts = [event.receipt()];
            self.sign_receipts(&mut receipts);
            let [receipt] = receipts;
            receipt
        }))
    }

    /// The event with this id, read from disk with its checksum verified.
    pub fn get(&self, id: EventId) -> Result<Option<StoredEvent>> {
        self.get_in(self.sight(), id)
    }

    /// The event with this id whether or not retention or a deletion hides it: for
    /// the store's own work on the journal (a redaction must reach a hidden event).
    pub(crate) fn get_in_journal(&self, id: EventId) -> Result<Option<StoredEvent>> {
        self.get_in(crate::index::Sight::All, id)
    }

    /// One event by id, as `sight` sees it, with no list of sequences or results (a
    /// get is the hottest read path).
    fn get_in(&self, sight: crate::index::Sight, id: EventId) -> Result<Option<StoredEvent>> {
        let located = self.locate_in(sight, |index| index.sequence_of(id));
        self.read_one(&located)
    }

    /// The one event `located` names, if it names one (no list of results).
    fn read_one(&self, located: &Located) -> Result<Option<StoredEvent>> {
        let mut found = None;
        self.visit_located(located, |event| {
            found = Some(event.to_stored()?);
            Ok(())
        })?;
        Ok(found)
    }

    /// Every visible event of `entity`, in version order (its user events; the
    /// store's own records are read with [`Region::with_store_records`]).
    pub fn stream(&self, entity: &str) -> Result<Vec<StoredEvent>> {
        self.query(&Region::all().entity(entity), 0, usize::MAX)
    }

    /// Calls `f` with each of the entity's events in version order, read in place:
    /// the [`EventView`] borrows the record from the mapped segment, so nothing is
    /// copied or allocated per event. What [`stream`](Self::stream) returns, without
    /// the copies. Returns how many events `f` saw; an error from `f` stops the visit
    /// and is returned.
    pub fn visit_stream(
        &self,
        entity: &str,
        f: impl FnMut(&EventView<'_>) -> Result<()>,
    ) -> Result<usize> {
        self.visit_query(&Region::all().entity(entity), 0, usize::MAX, f)
    }

    /// [`query`](Self::query) as a visit: up to `limit` events of `region` with
    /// sequence greater than `after`, in sequence order, each handed to `f` borrowed
    /// from its segment. Returns how many events `f` saw.
    pub fn visit_query(
        &self,
        region: &Region,
        after: u64,
        limit: usize,
        f: impl FnMut(&EventView<'_>) -> Result<()>,
    ) -> Result<usize> {
        let region = self.resolve_times(region)?;
        let sight = self.sight_of(&region);
        let located = self.locate_in(sight, |index| select(index, &region, sight, after, limit));
        self.visit_located(&located, f)?;
        Ok(located.targets.len())
    }

    /// Up to `limit` events of `region` with sequence greater than `after`, in
    /// sequence order. Page by passing the last returned sequence as `after`.
    pub fn query(&self, region: &Region, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let region = self.resolve_times(region)?;
        let sight = self.sight_of(&region);
        let targets = self.locate_in(sight, |index| select(index, &region, sight, after, limit));
        self.read_events(&targets)
    }

    /// Up to `limit` events of `region` with sequence less than `before`, newest first.
    /// `before = u64::MAX` starts at the newest; page by passing the last returned
    /// sequence. `query_reverse(&Region::all().entity(e), u64::MAX, 10)` is the
    /// entity's last ten events.
    pub fn query_reverse(
        &self,
        region: &Region,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let region = self.resolve_times(region)?;
        let sight = self.sight_of(&region);
        let targets = self.locate_in(sight, |index| {
            crate::query::select_reverse(index, &region, sight, before, limit)
        });
        self.read_events(&targets)
    }

    /// The event at `sequence`, if one is visible there.
    pub fn get_sequence(&self, sequence: u64) -> Result<Option<StoredEvent>> {
        let located = self.locate(|index| {
            (sequence >= 1 && sequence <= index.last_sequence()).then_some(sequence)
        });
        self.read_one(&located)
    }

    /// How many events `region` selects, counted on the index (no record is read,
    /// except a few headers for a time range).
    pub fn count(&self, region: &Region) -> Result<u64> {
        let region = self.resolve_times(region)?;
        Ok(crate::query::count(
            &self.index(),
            &region,
            self.sight_of(&region),
        ))
    }

    /// `region` with its time range turned into the sequence range it covers:
    /// timestamps never decrease along the sequence, so each bound is a binary search
    /// over record headers (about 2 log2(n) reads).
    pub(crate) fn resolve_times<'r>(
        &self,
        region: &'r Region,
    ) -> Result<std::borrow::Cow<'r, Region>> {
        let Some((since, until)) = region.time_range() else {
            return Ok(std::borrow::Cow::Borrowed(region));
        };
        let start = self.first_at_or_after(since)?;
        let end = self.first_at_or_after(until)?;
        Ok(std::borrow::Cow::Owned(
            region.with_time_as_sequences((start, end)),
        ))
    }

    /// The first sequence whose timestamp is at least `ns` (one past the newest when
    /// none is): a binary search over the index's positions, so gaps a compaction
    /// left are never read.
    fn first_at_or_after(&self, ns: u64) -> Result<u64> {
        let (count, last) = {
            let index = self.index();
            (index.event_count() as usize, index.last_sequence())
        };
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let seq = self.index().sequence_at(mid).unwrap_or(u64::MAX);
            if self.timestamp_at(seq)? < ns {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(self
            .index()
            .sequence_at(lo)
            .unwrap_or(last.saturating_add(1)))
    }

    /// The stored timestamp of the event at `sequence`, read from its record header.
    fn timestamp_at(&self, sequence: u64) -> Result<u64> {
        let (location, files) = {
            let index = self.index();
            (index.location(sequence), self.segments.pin())
        };
        let location = location.ok_or_else(|| Error::Corrupt {
            path: self.dir.clone(),
            offset: 0,
            detail: format!("the index has no record at sequence {sequence}"),
        })?;
        self.segments
            .with_pinned_record(&files, location, |view| Ok(view.header.timestamp_ns))
    }

    /// Reads the records of `targets`, in order.
    pub(crate) fn read_events(&self, located: &Located) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(located.targets.len());
        self.visit_located(located, |event| {
            out.push(event.to_stored()?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with each target's record, checked to be the event the index named
    /// (a mismatch is `Error::Corrupt` at the record's place).
    fn visit_located(
        &self,
        located: &Located,
        mut f: impl FnMut(&EventView<'_>) -> Result<()>,
    ) -> Result<()> {
        for t in &located.targets {
            let corrupt = |detail: String| Error::Corrupt {
                path: self.segments.path_of(t.location.segment()),
                offset: t.location.offset(),
                detail,
            };
            let coordinate = located.coordinates.get(t.coordinate).ok_or_else(|| {
                corrupt(format!(
                    "no coordinate at place {} of the read",
                    t.coordinate
                ))
            })?;
            let known = Some((coordinate.entity(), coordinate.scope()));
            self.segments
                .with_pinned_record_of(&located.files, t.location, known, |record| {
                    f(&EventView::new(record, t.sequence, coordinate).map_err(corrupt)?)
                })?;
        }
        Ok(())
    }

    /// Events whose causation is `id` (its direct effects), in sequence order.
    pub fn effects(&self, id: EventId) -> Result<Vec<StoredEvent>> {
        let targets = self.locate(|index| index.effects_of(id).to_vec());
        self.read_events(&targets)
    }

    /// Events that carry `correlation` as their correlation id, in sequence order.
    pub fn correlated(&self, correlation: EventId) -> Result<Vec<StoredEvent>> {
        let targets = self.locate(|index| index.correlated_with(correlation).to_vec());
        self.read_events(&targets)
    }

    /// Resolves the sequences `pick` chooses to what reading them needs, under one
    /// index lock, leaving out the events retention or a deletion hides.
    pub(crate) fn locate<I: IntoIterator<Item = u64>>(
        &self,
        pick: impl FnOnce(&Index) -> I,
    ) -> Located {
        self.locate_in(self.sight(), pick)
    }

    /// `locate`, leaving out what `sight` does not see.
    pub(crate) fn locate_in<I: IntoIterator<Item = u64>>(
        &self,
        sight: crate::index::Sight,
        pick: impl FnOnce(&Index) -> I,
    ) -> Located {
        let index = self.index();
        let files = self.segments.pin();
        let mut hider = index.hider(sight);
        let mut coordinates = Coordinates::new(&index);
        let targets = pick(&index)
            .into_iter()
            .filter_map(|sequence| {
                let (location, entity, scope) = index.read_target(sequence)?;
                if hider.as_mut().is_some_and(|h| h.hides(sequence, entity)) {
                    return None;
                }
                Some(Target {
                    sequence,
                    location,
                    coordinate: coordinates.of(entity, scope),
                })
            })
            .collect();
        Located {
            targets,
            coordinates: coordinates.list,
            files,
        }
    }

    /// The version of the visible event at `sequence` (`None` for sequence 0 or none).
    pub(crate) fn version_at(&self, sequence: u64) -> Option<u64> {
        self.index().version_of(sequence)
    }

    /// The segment files, for verification.
    pub(crate) fn segments(&self) -> &SegmentSet {
        &self.segments
    }

    /// Location and id the index holds for a visible sequence.
    pub(crate) fn index_entry(&self, sequence: u64) -> Option<(Location, EventId)> {
        let index = self.index();
        Some((index.location(sequence)?, index.id_of(sequence)?))
    }

    /// Whether `sequence` is a visible event of `entity`.
    pub(crate) fn entity_has(&self, entity: &str, sequence: u64) -> bool {
        let index = self.index();
        index
            .entities()
            .get(entity)
            .is_some_and(|id| index.entity_events(id).binary_search(&sequence).is_ok())
    }

    /// The entity's newest visible version, `None` when it has no events: what an
    /// append with `ExpectedVersion::Exact` expects. Answered from the index.
    pub fn entity_version(&self, entity: &str) -> Option<u64> {
        let index = self.index();
        // An entity compaction removed whole continues from its last removed version.
        index
            .entity_head(entity)
            .map(|(version, _)| version)
            .or_else(|| {
                index
                    .horizon_of(entity)
                    .map(|(first_kept, _)| first_kept - 1)
            })
    }

    /// The entity's newest visible sequence, 0 when it has none.
    pub(crate) fn entity_last_sequence(&self, entity: &str) -> u64 {
        self.index().entity_head(entity).map_or(0, |(_, seq)| seq)
    }

    /// The entity's first visible sequence now: events before it are hidden by
    /// retention or a deletion (0 when none is, `u64::MAX` when all are).
    pub(crate) fn entity_horizon(&self, entity: &str) -> u64 {
        let index = self.index();
        index
            .entities()
            .get(entity)
            .map_or(0, |id| index.first_visible(id, self.sight()))
    }

    /// Calls `f` with each of the entity's events after sequence `after` and from
    /// sequence `from` on (its horizon, from [`entity_horizon`](Self::entity_horizon))
    /// whose kind is in `kinds` (every user kind when empty: store records only when
    /// named), in order, reading one record at a time. Returns the entity's newest
    /// sequence considered (`after` when none).
    pub(crate) fn visit_entity_events_after(
        &self,
        entity: &str,
        (after, from): (u64, u64),
        kinds: &[EventKind],
        f: impl FnMut(&EventView<'_>) -> Result<()>,
    ) -> Result<u64> {
        let (located, last) = {
            let index = self.index();
            let files = self.segments.pin();
            let Some(id) = index.entities().get(entity) else {
                return Ok(after);
            };
            let postings = index.entity_events(id);
            let start = after.max(from.saturating_sub(1));
            let newer = &postings[postings.partition_point(|&s| s <= start)..];
            let hide_store = kinds.is_empty() && index.holds_store_records(id);
            let Some(&last) = newer.last() else {
                return Ok(after);
            };
            let mut coordinates = Coordinates::new(&index);
            let mut targets = Vec::with_capacity(newer.len());
            for &sequence in newer {
                let Some((location, entity, scope)) = index.read_target(sequence) else {
                    continue;
                };
                if (!kinds.is_empty() || hide_store)
                    && !index.filter_columns(sequence).is_some_and(|(_, _, kind)| {
                        if kinds.is_empty() {
                            kind.category() != 0
                        } else {
                            kinds.contains(&kind)
                        }
                    })
                {
                    continue;
                }
                targets.push(Target {
                    sequence,
                    location,
                    coordinate: coordinates.of(entity, scope),
                });
            }
            let located = Located {
                targets,
                coordinates: coordinates.list,
                files,
            };
            (located, last)
        };
        self.visit_located(&located, f)?;
        Ok(last)
    }

    /// Counts and watermarks.
    pub fn stats(&self) -> Result<Stats> {
        let (events, entities, scopes, visible) = {
            let index = self.index();
            (
                index.event_count(),
                index.entity_count(),
                index.scope_count(),
                index.last_sequence(),
            )
        };
        let (written, durable) = match &self.writer {
            Some(w) => (w.written(), w.durable()),
            None => (visible, visible),
        };
        let (retention, deleted_entities) = {
            let recorded = self.lifecycle();
            (recorded.policies(), recorded.deletions().len())
        };
        Ok(Stats {
            events,
            entities,
            scopes,
            segments: self.segments.count(),
            segment_bytes: self.segments.total_len(),
            written_sequence: written,
            durable_sequence: durable,
            visible_sequence: visible,
            retention,
            deleted_entities,
            idempotency_keys: self.writer.as_ref().map_or(0, |w| w.idempotency_count()),
        })
    }

    /// `Error::Poisoned` with the failure that poisoned the store, when a write or
    /// fsync failed: it refuses writes until it is reopened. `None` for a healthy
    /// store and for a read-only one.
    pub fn poisoned(&self) -> Option<Error> {
        self.writer.as_ref().and_then(|w| w.check_poison().err())
    }

    /// How long the store's fsyncs have taken since it was opened (each group-commit
    /// sync of the active segment). Empty for a read-only store.
    pub fn sync_latency(&self) -> crate::SyncLatency {
        self.writer
            .as_ref()
            .map_or_else(Default::default, |w| w.sync_latency.snapshot())
    }

    /// Makes every written event durable (and visible).
    pub fn sync(&self) -> Result<()> {
        self.writer()?.sync()
    }

    /// Syncs and releases the directory lock. Dropping the store does the same, but
    /// cannot report a failure.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
        match self.writer.take() {
            Some(w) => {
                w.sync()?;
                self.projections.write_snapshots();
                w.write_close_evidence()
            }
            None => Ok(()),
        }
    }
}

impl Store {
    /// Stops without the close-time sync and checkpoint, as a crash would (the lock is
    /// still released). Under `SyncPolicy::Always` every acknowledged event is on disk.
    #[cfg(test)]
    fn abandon(mut self) {
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
        self.writer = None;
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log_warn!("closing store {} on drop failed: {e}", self.dir.display());
        }
    }
}

/// What reading one visible event needs, taken from the index.
#[derive(Debug)]
pub(crate) struct Target {
    pub sequence: u64,
    pub location: Location,
    /// The event's place in `Located::coordinates`.
    coordinate: u32,
}

/// The coordinates of a set of targets, one per distinct (entity, scope) pair, so a
/// read of many events of few entities shares a handful (no reference count touched
/// per event).
struct Coordinates<'i> {
    index: &'i Index,
    /// Each coordinate with the (entity, scope) ids it was built from, searched in
    /// order while there are few.
    list: CoordinateList,
    /// The places by ids, built once `list` outgrows a linear search.
    places: crate::maps::FastMap<(u32, u32), u32>,
    last: Option<((u32, u32), u32)>,
}

/// The coordinates of a read, each with the (entity, scope) ids it was built from;
/// the first held inline, so a read of one entity (a get, a stream) allocates no
/// list.
#[derive(Default)]
struct CoordinateList {
    first: Option<((u32, u32), Coordinate)>,
    rest: Vec<((u32, u32), Coordinate)>,
}

impl CoordinateList {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn entry(&self, place: u32) -> Option<&((u32, u32), Coordinate)> {
        match place {
            0 => self.first.as_ref(),
            p => self.rest.get(p as usize - 1),
        }
    }

    /// The coordinate at `place` (a place `push` returned).
    fn get(&self, place: u32) -> Option<&Coordinate> {
        self.entry(place).map(|(_, c)| c)
    }

    fn position(&self, key: (u32, u32)) -> Option<u32> {
        if self.first.as_ref().is_some_and(|(k, _)| *k == key) {
            return Some(0);
        }
        self.rest
            .iter()
            .position(|(k, _)| *k == key)
            .map(|p| p as u32 + 1)
    }

    /// Adds a coordinate; returns its place.
    fn push(&mut self, key: (u32, u32), coordinate: Coordinate) -> u32 {
        if self.first.is_none() {
            self.first = Some((key, coordinate));
        } else {
            self.rest.push((key, coordinate));
        }
        (self.len() - 1) as u32
    }
}

/// Coordinates searched linearly before a map is worth building.
const LINEAR_COORDINATES: usize = 16;

impl<'i> Coordinates<'i> {
    fn new(index: &'i Index) -> Self {
        Coordinates {
            index,
            list: CoordinateList::default(),
            places: Default::default(),
            last: None,
        }
    }

    /// The place of the coordinate of interned `entity` and `scope`.
    fn of(&mut self, entity: u32, scope: u32) -> u32 {
        let key = (entity, scope);
        if let Some((k, place)) = self.last {
            if k == key {
                return place;
            }
        }
        let found = if self.list.len() <= LINEAR_COORDINATES {
            self.list.position(key)
        } else {
            self.places.get(&key).copied()
        };
        let place = found.unwrap_or_else(|| {
            let coordinate = Coordinate::from_interned(
                self.index.entities().shared(entity),
                self.index.scopes().shared(scope),
            );
            let place = self.list.push(key, coordinate);
            if self.list.len() == LINEAR_COORDINATES + 1 {
                self.places = (0..self.list.len() as u32)
                    .filter_map(|p| Some((self.list.entry(p)?.0, p)))
                    .collect();
            } else if self.list.len() > LINEAR_COORDINATES + 1 {
                self.places.insert(key, place);
            }
            place
        });
        self.last = Some((key, place));
        place
    }
}

/// Events resolved under one index lock, with the segment files pinned in the same
/// turn, so the locations stay valid whatever a compaction swaps meanwhile.
pub(crate) struct Located {
    targets: Vec<Target>,
    /// What `Target::coordinate` indexes.
    coordinates: CoordinateList,
    files: crate::segment::Pinned,
}

impl std::ops::Deref for Located {
    type Target = [Target];

    fn deref(&self) -> &[Target] {
        &self.targets
    }
}

/// The writer's view of a batch's items.
fn drafts_of(batch: &Batch) -> Vec<Draft<'_>> {
    batch
        .items()
        .iter()
        .map(|item| Draft {
            coordinate: &item.coordinate,
            kind: item.kind,
            encoding: item.encoding,
            schema_version: item.schema_version,
            payload: batch.payload_of(item),
            options: &item.options,
            system: item.system,
        })
        .collect()
}

#[cfg(test)]
mod fault_tests {
    use super::*;

    /// The store was poisoned by a failed `op`: the refusal keeps it as its source.
    fn is_poisoned_by(err: &Error, op: &str) -> bool {
        matches!(err, Error::Poisoned { source } if matches!(&**source, Error::Io { op: o, .. } if *o == op))
    }
    use crate::fault::{Fault, FaultPlan, Op};

    fn coord() -> Coordinate {
        Coordinate::new("acct:1", "s").unwrap()
    }

    fn raw(store: &Store, n: u8) -> Result<AppendReceipt> {
        store.append_raw(
            &coord(),
            EventKind::custom(1, 1),
            RawPayload::opaque(&[n; 8]),
            AppendOptions::default(),
        )
    }

    #[test]
    fn failed_fsync_poisons_writes_until_reopen() {
        let dir = tempfile::tempdir().unwrap();
        // Creating the first segment syncs once; allow one more for the first append.
        let plan = FaultPlan::install(dir.path());
        plan.fail_after(Op::Sync, 2, Fault::Eio);
        let store = Store::open(dir.path()).unwrap();
        let first = raw(&store, 1).unwrap();
        let err = raw(&store, 2).unwrap_err();
        assert!(is_poisoned_by(&err, "fsync segment"), "{err}");
        // Sticky: every later write gets the same refusal, naming the cause.
        for n in 3..5 {
            match raw(&store, n) {
                Err(Error::Poisoned { source }) => {
                    assert!(source.to_string().contains("injected fsync"), "{source}");
                }
                other => panic!("expected Poisoned, got {other:?}"),
            }
        }
        assert!(matches!(store.sync(), Err(Error::Poisoned { .. })));
        // The unacknowledged event is not visible; the acknowledged one is.
        assert_eq!(store.stream("acct:1").unwrap().len(), 1);
        drop(store);
        plan.clear();

        let store = Store::open(dir.path()).unwrap();
        let events = store.stream("acct:1").unwrap();
        assert_eq!(events[0].receipt(), first);
        // The written-but-unacknowledged event may survive; nothing else may appear.
        assert!(events.len() <= 2);
        raw(&store, 9).unwrap();
    }

    #[test]
    fn failed_write_poisons_and_reopen_cuts_nothing_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        // The segment header is the first write.
        let plan = FaultPlan::install(dir.path());
        plan.fail_after(Op::Write, 3, Fault::Eio);
        let store = Store::open(dir.path()).unwrap();
        let a = raw(&store, 1).unwrap();
        let b = raw(&store, 2).unwrap();
        let err = raw(&store, 3).unwrap_err();
        assert!(is_poisoned_by(&err, "write segment"), "{err}");
        assert!(matches!(raw(&store, 4), Err(Error::Poisoned { .. })));
        drop(store);
        plan.clear();
        let store = Store::open(dir.path()).unwrap();
        let receipts: Vec<_> = store
            .stream("acct:1")
            .unwrap()
            .iter()
            .map(StoredEvent::receipt)
            .collect();
        assert_eq!(receipts, vec![a, b]);
    }

    #[test]
    fn failed_fsync_during_rotation_poisons() {
        let dir = tempfile::tempdir().unwrap();
        let plan = FaultPlan::install(dir.path());
        plan.fail_after(Op::Sync, 1, Fault::Eio);
        let store = Store::builder(dir.path())
            .segment_size(4096)
            .sync_policy(SyncPolicy::Never)
            .open()
            .unwrap();
        let big = [7u8; 1500];
        let append = |store: &Store| {
            store.append_raw(
                &coord(),
                EventKind::custom(1, 1),
                RawPayload::opaque(&big),
                AppendOptions::default(),
            )
        };
        append(&store).unwrap();
        append(&store).unwrap();
        // The third append must rotate; rotation syncs the full segment and fails.
        let err = append(&store).unwrap_err();
        assert!(is_poisoned_by(&err, "fsync segment"), "{err}");
        assert!(matches!(append(&store), Err(Error::Poisoned { .. })));
    }

    #[test]
    fn readers_do_not_wait_for_an_fsync_and_see_only_durable_events() {
        let dir = tempfile::tempdir().unwrap();
        let plan = FaultPlan::install(dir.path());
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let first = raw(&store, 1).unwrap();
        plan.hold_syncs();
        let appender = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || raw(&store, 2))
        };
        // Wait until the second event is written; its fsync is now held.
        while store.stats().unwrap().written_sequence < 2 {
            std::thread::yield_now();
        }
        // Reads complete while the fsync is in progress, and do not see the event
        // that a crash could still take back.
        let stats = store.stats().unwrap();
        assert_eq!((stats.durable_sequence, stats.visible_sequence), (1, 1));
        assert_eq!(store.get(first.event_id).unwrap().unwrap().receipt(), first);
        assert_eq!(store.stream("acct:1").unwrap().len(), 1);
        assert!(!appender.is_finished(), "the append waits for its fsync");
        plan.release_syncs();
        let second = appender.join().unwrap().unwrap();
        assert_eq!(
            store.get(second.event_id).unwrap().unwrap().receipt(),
            second
        );
        assert_eq!(store.stats().unwrap().durable_sequence, 2);
    }

    #[test]
    fn open_after_an_unclean_stop_uses_the_last_rotation_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path())
            .segment_size(4096)
            .open()
            .unwrap();
        let receipts: Vec<_> = (0..120).map(|i| raw(&store, i).unwrap()).collect();
        assert!(store.stats().unwrap().segments > 2);
        store.abandon();
        let store = Store::open(dir.path()).unwrap();
        match store.open_report().index {
            crate::open::IndexSource::Checkpoint { events } => {
                assert!(events > 0 && events < 120, "checkpoint at {events}");
            }
            ref other => panic!("expected the rotation checkpoint, got {other:?}"),
        }
        for r in &receipts {
            assert_eq!(store.get(r.event_id).unwrap().unwrap().receipt(), *r);
        }
        assert_eq!(store.stats().unwrap().events, 120);
        assert_eq!(raw(&store, 121).unwrap().sequence, 121);
    }
}
