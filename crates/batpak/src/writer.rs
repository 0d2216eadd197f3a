//! The append path: checks, sequencing, hashing, encoding, group commit, publishing.
//!
//! The caller's thread does the work ("caller runs"): there is no writer thread and
//! no hand-off per append. Under the state lock an append checks its expected
//! version, idempotency key and causation, assigns sequence, id, timestamp and
//! version, links the hash chain, encodes and writes its frames. It then releases the
//! lock and, under `SyncPolicy::Always`, waits for an fsync that covers its last
//! sequence: the first waiter becomes the leader and syncs for everyone whose record
//! is already written, then publishes those events to the index (leader/follower
//! group commit). Readers never take the state lock, so an fsync in progress never
//! blocks them.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::chain::{self, Random};
use crate::coordinate::{Coordinate, STORE_ENTITY_PREFIX};
use crate::dir::replace_file;
use crate::dir::PENDING_FILE;
use crate::error::{Error, Result};
use crate::format::checkpoint::Checkpoint;
use crate::format::record::{
    self, Encoding, RecordDraft, RecordHeader, FLAG_BATCH_CONTINUES, MAX_PAYLOAD_LEN,
};
use crate::format::redo::PendingRewrite;
use crate::format::segment::HEADER_LEN;
use crate::hash::Hash;
use crate::id::{EventId, IdGenerator};
use crate::index::{Index, IndexEntry, OwnedEntry};
use crate::keys::Keys;
use crate::kind::EventKind;
use crate::maps::{FastMap, FastSet};
use crate::open::{apply_pending, check_pending_fits, remove_pending, Resume};
use crate::options::{idempotency_digest, AppendOptions, Cause, ExpectedVersion, SyncPolicy};
use crate::receipt::AppendReceipt;
use crate::segment::io::SegmentFile;
use crate::segment::writer::ActiveSegment;
use crate::segment::{Location, SegmentSet, MAX_OFFSET, MAX_SEGMENT_NUMBER};
use crate::sync::{lock, Signal};

/// The longest a sync leader waits for more appends to join its sync.
const MAX_LINGER: Duration = Duration::from_micros(500);

mod compact;
pub(crate) mod latency;
pub(crate) use compact::Removable;
mod preserve;

/// One event to append, its payload already encoded.
#[derive(Debug)]
pub(crate) struct Draft<'a> {
    pub coordinate: &'a Coordinate,
    pub kind: EventKind,
    pub encoding: Encoding,
    pub schema_version: u16,
    pub payload: &'a [u8],
    pub options: &'a AppendOptions,
    /// A store-owned record (reserved category 0), written by the store itself.
    pub system: bool,
}

/// The newest event of an entity, including events not yet visible.
#[derive(Clone, Copy, Debug)]
struct Head {
    version: u64,
    hash: Hash,
}

#[derive(Debug)]
struct State {
    active: ActiveSegment,
    next_sequence: u64,
    last_timestamp_ns: u64,
    ids: IdGenerator,
    random: Random,
    heads: FastMap<Box<str>, Head>,
    idempotency: Keys,
    frames: Vec<u8>,
    /// Entities deleted hard: user appends to them are refused.
    tombstones: FastSet<Box<str>>,
}

#[derive(Debug, Default)]
struct Durability {
    durable: u64,
    syncing: bool,
    /// How long the last sync took.
    last_sync: Duration,
    /// The sequences followers wait for while a sync runs (one entry per waiter).
    waiting: Vec<u64>,
}

impl Durability {
    fn stop_waiting(&mut self, sequence: u64) {
        if let Some(at) = self.waiting.iter().position(|&s| s == sequence) {
            self.waiting.swap_remove(at);
        }
    }
}

/// The only code that mutates segment files.
#[derive(Debug)]
pub(crate) struct Writer {
    dir: PathBuf,
    /// The LOCK file held for this writer, checked at rotation and checkpoint.
    pub(crate) lock: Option<crate::dir::LockIdentity>,
    /// Where timestamps come from (`StoreBuilder::clock`).
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
    /// The live mark followers in other processes read (`None` when it could not be
    /// made: then views do not follow).
    pub(crate) live: Option<crate::live::LiveMark>,
    policy: SyncPolicy,
    segment_size: u64,
    state: Mutex<State>,
    durability: Mutex<Durability>,
    durable_changed: Condvar,
    written: AtomicU64,
    durable_seq: AtomicU64,
    /// Set when a segment was rotated: the appender writes a checkpoint once its own
    /// append is done, so open after a crash scans at most about one segment.
    checkpoint_due: std::sync::atomic::AtomicBool,
    /// Events the checkpoint on disk holds.
    checkpointed: AtomicU64,
    /// Events whose durability the directory proves (checkpoint or durable floor).
    evidenced: AtomicU64,
    /// Appenders the last sync released that have not appended again: what the next
    /// sync's leader lingers for.
    returning: AtomicU64,
    /// Written but not yet visible (only under `SyncPolicy::Always`), in sequence order.
    /// Lock order: state, then unpublished, then index.
    unpublished: Mutex<VecDeque<OwnedEntry>>,
    /// The segment being appended to, for sync leaders (who never take the state lock).
    active_file: Mutex<Arc<SegmentFile>>,
    /// The store's one poison flag: set by the first failed segment write or fsync,
    /// in-place rewrite, or checkpoint write, and kept as the source of every refusal.
    poison: OnceLock<Arc<Error>>,
    index: Arc<RwLock<Index>>,
    segments: Arc<SegmentSet>,
    /// Woken after every write, sync and publish.
    signal: Arc<Signal>,
    /// Every group-commit fsync's time.
    pub(crate) sync_latency: latency::LatencyHistogram,
}

impl Writer {
    pub(crate) fn new(
        dir: PathBuf,
        policy: SyncPolicy,
        (segment_size, window): (u64, crate::options::IdempotencyWindow),
        resume: Resume,
        index: Arc<RwLock<Index>>,
        segments: Arc<SegmentSet>,
        signal: Arc<Signal>,
    ) -> Result<Self> {
        let idempotency = {
            let index = crate::sync::read(&index);
            Keys::from_pairs(window, resume.idempotency, |seq| {
                index.id_of(seq).map_or(0, EventId::unix_millis)
            })
        };
        let random = Random::from_os().map_err(crate::error::io_err("seed randomness", &dir))?;
        let last_written = resume.next_sequence - 1;
        let active_file = Mutex::new(Arc::clone(&resume.active.file));
        Ok(Writer {
            dir,
            policy,
            segment_size,
            state: Mutex::new(State {
                active: resume.active,
                next_sequence: resume.next_sequence,
                last_timestamp_ns: resume.last_timestamp_ns,
                ids: IdGenerator::resume(resume.last_id),
                random,
                heads: FastMap::default(),
                idempotency,
                frames: Vec::new(),
                tombstones: FastSet::default(),
            }),
            durability: Mutex::new(Durability {
                durable: last_written,
                ..Durability::default()
            }),
            durable_changed: Condvar::new(),
            written: AtomicU64::new(last_written),
            durable_seq: AtomicU64::new(last_written),
            returning: AtomicU64::new(0),
            checkpoint_due: std::sync::atomic::AtomicBool::new(false),
            checkpointed: AtomicU64::new(resume.checkpointed),
            evidenced: AtomicU64::new(resume.evidenced),
            lock: None,
            clock: Arc::new(crate::clock::SystemClock),
            live: None,
            unpublished: Mutex::new(VecDeque::new()),
            active_file,
            poison: OnceLock::new(),
            index,
            segments,
            signal,
            sync_latency: latency::LatencyHistogram::default(),
        })
    }

    /// The sync policy appends follow.
    /// The store id every segment of this store carries.
    pub(crate) fn store_id(&self) -> [u8; 16] {
        lock(&self.state).active.store_id()
    }

    pub(crate) fn policy(&self) -> SyncPolicy {
        self.policy
    }

    /// The newest written sequence.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The newest sequence known to be on stable storage. An atomic mirror of
    /// `Durability::durable`, so waiters can read it without the durability lock.
    pub(crate) fn durable(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            Some(cause) => Err(Error::Poisoned {
                source: Arc::clone(cause),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the store (the first cause is kept) and returns the refusal for `err`.
    fn poisoned(&self, err: Error) -> Error {
        log_warn!("store {} poisoned: {err}", self.dir.display());
        let cause = Arc::new(err);
        let _ = self.poison.set(Arc::clone(&cause));
        Error::Poisoned { source: cause }
    }

    /// Appends `drafts` atomically. `batch` allows causation by item reference.
    pub(crate) fn append(&self, drafts: &[Draft<'_>], batch: bool) -> Result<Vec<AppendReceipt>> {
        let keys = validate(drafts, batch)?;
        self.check_poison()?;
        let (receipts, fresh) = {
            let mut state = lock(&self.state);
            self.check_poison()?;
            match self.idempotent_replay(&mut state, drafts, &keys)? {
                Some(originals) => (originals, false),
                None => (self.write_new(&mut state, drafts, &keys)?, true),
            }
        };
        self.finish_append(receipts, fresh)
    }

    /// Appends each group atomically on its own, as `append` would (a group that
    /// is refused leaves the others), then waits for durability once for all of
    /// them as the policy asks: one fsync covers every group. A failure of that
    /// fsync fails every group that was written (none was acknowledged).
    pub(crate) fn append_groups(
        &self,
        groups: &[Vec<Draft<'_>>],
    ) -> Vec<Result<Vec<AppendReceipt>>> {
        let mut written: Vec<Result<(Vec<AppendReceipt>, bool)>> = groups
            .iter()
            .map(|drafts| {
                let keys = validate(drafts, true)?;
                self.check_poison()?;
                let mut state = lock(&self.state);
                self.check_poison()?;
                match self.idempotent_replay(&mut state, drafts, &keys)? {
                    Some(originals) => Ok((originals, false)),
                    None => Ok((self.write_new(&mut state, drafts, &keys)?, true)),
                }
            })
            .collect();
        let fresh = written.iter().any(|w| matches!(w, Ok((_, true))));
        let all: Vec<AppendReceipt> = written
            .iter()
            .filter_map(|w| w.as_ref().ok())
            .flat_map(|(receipts, _)| receipts.iter().copied())
            .collect();
        if all.is_empty() {
            return written.drain(..).map(|w| w.map(|(r, _)| r)).collect();
        }
        // The caller gathered the appends itself: no one else is about to append, so
        // the sync does not linger for more.
        match self.finish_append_with(all, fresh, false) {
            Ok(_) => written.drain(..).map(|w| w.map(|(r, _)| r)).collect(),
            Err(e) => {
                let mut first = Some(e);
                written
                    .drain(..)
                    .map(|w| match w {
                        Ok(_) => Err(first.take().unwrap_or_else(|| {
                            self.check_poison().err().unwrap_or(Error::ReadOnly)
                        })),
                        Err(refused) => Err(refused),
                    })
                    .collect()
            }
        }
    }

    /// After the state lock: wakes subscribers, waits for durability as the policy
    /// asks, and writes a rotation checkpoint when one is due.
    fn finish_append(
        &self,
        receipts: Vec<AppendReceipt>,
        fresh: bool,
    ) -> Result<Vec<AppendReceipt>> {
        self.finish_append_with(receipts, fresh, true)
    }

    /// `finish_append`; `linger`: whether a sync may wait for other appenders.
    fn finish_append_with(
        &self,
        receipts: Vec<AppendReceipt>,
        fresh: bool,
        linger: bool,
    ) -> Result<Vec<AppendReceipt>> {
        if fresh {
            // Outside the state lock: waking subscribers must not hold up appenders.
            self.signal.notify();
        }
        let last = receipts.iter().map(|r| r.sequence).max().unwrap_or(0);
        match self.policy {
            SyncPolicy::Always => self.wait_durable_lingering(last, linger)?,
            SyncPolicy::EveryN(n)
                if fresh && last.saturating_sub(self.durable()) >= u64::from(n) =>
            {
                self.wait_durable_lingering(last, linger)?;
            }
            _ => {}
        }
        if self.checkpoint_due.load(Ordering::Relaxed)
            && self.checkpoint_due.swap(false, Ordering::AcqRel)
            && crate::checkpoint::pays(self.durable(), self.checkpointed.load(Ordering::Acquire))
        {
            // A rotation checkpoints when it pays, as a close does: a large store once a
            // sixteenth of it is new, so checkpoint bytes written stay a bounded
            // multiple of the events appended and an open after a crash scans at most
            // a sixteenth of the store. Best effort: the append has succeeded, and a
            // missing or older checkpoint only makes the next open scan more (its
            // report says why).
            if let Err(e) = self.write_checkpoint() {
                log_warn!("rotation checkpoint not written: {e}");
            }
        }
        Ok(receipts)
    }

    /// When every keyed item repeats an earlier append, returns the original receipts.
    fn idempotent_replay(
        &self,
        state: &mut State,
        drafts: &[Draft<'_>],
        keys: &[Option<[u8; 16]>],
    ) -> Result<Option<Vec<AppendReceipt>>> {
        let seen = keys.iter().flatten().any(|k| state.idempotency.contains(k));
        if !seen {
            return Ok(None);
        }
        let mut receipts = Vec::with_capacity(drafts.len());
        let mut replayed: Vec<EventId> = Vec::with_capacity(drafts.len());
        for (i, (draft, key)) in drafts.iter().zip(keys).enumerate() {
            let text = draft.options.idempotency_key.clone().unwrap_or_default();
            let original = key.and_then(|k| state.idempotency.get(&k));
            let Some(seq) = original else {
                // Part of the batch is new, part repeats: neither a retry nor a new batch.
                let first_seen = drafts.iter().zip(keys).find_map(|(d, k)| {
                    k.and_then(|k| state.idempotency.get(&k))
                        .map(|s| (d.options.idempotency_key.clone().unwrap_or_default(), s))
                });
                let (key, seq) = first_seen.unwrap_or((text, 0));
                let original = self.read_written(seq)?.id;
                return Err(Error::IdempotencyConflict { key, original });
            };
            let stored = self.read_written(seq)?;
            let cause = match draft.options.causation {
                Some(Cause::Event(id)) => Some(id),
                Some(Cause::BatchItem(j)) => replayed.get(j).copied(),
                None => None,
            };
            let same = stored.entity == draft.coordinate.entity()
                && stored.scope == draft.coordinate.scope()
                && stored.header.kind == draft.kind
                && stored.header.encoding == draft.encoding
                && stored.header.schema_version == draft.schema_version
                // A redacted original cannot be compared; the key names it, and writing
                // the payload again would undo the redaction.
                && (stored.redacted || stored.payload == draft.payload)
                && stored.header.causation == cause
                && stored.header.correlation == draft.options.correlation
                && stored.metadata == encoded_metadata(draft)
                && (!batch_item_count_differs(stored.batch_continues, i, drafts.len()));
            if !same {
                return Err(Error::IdempotencyConflict {
                    key: text,
                    original: stored.id,
                });
            }
            replayed.push(stored.id);
            receipts.push(stored.receipt);
        }
        // The originals must be one whole append: consecutive sequences, the first
        // not continuing an earlier batch (the last item's flag was checked above).
        let first = receipts[0].sequence;
        let consecutive = receipts
            .iter()
            .enumerate()
            .all(|(i, r)| r.sequence == first + i as u64);
        let starts_append = first == 1 || !self.read_written(first - 1)?.batch_continues;
        if !(consecutive && starts_append) {
            return Err(Error::IdempotencyConflict {
                key: drafts[0]
                    .options
                    .idempotency_key
                    .clone()
                    .unwrap_or_default(),
                original: receipts[0].event_id,
            });
        }
        Ok(Some(receipts))
    }

    /// Reads an event the writer has written, visible or not.
    fn read_written(&self, sequence: u64) -> Result<WrittenEvent> {
        let location =
            self.find_written(|e| e.sequence == sequence, |index| index.location(sequence));
        match location {
            Some(location) => self.read_at(location),
            None => Err(Error::Corrupt {
                path: self.dir.clone(),
                offset: 0,
                detail: format!("sequence {sequence} is neither visible nor pending"),
            }),
        }
    }

    /// Looks among unpublished entries, then in the index, holding the unpublished lock
    /// throughout so a sync leader cannot move an entry between the two looks.
    fn find_written(
        &self,
        pending: impl Fn(&OwnedEntry) -> bool,
        visible: impl FnOnce(&Index) -> Option<Location>,
    ) -> Option<Location> {
        let unpublished = lock(&self.unpublished);
        if let Some(e) = unpublished.iter().find(|e| pending(e)) {
            return Some(e.location);
        }
        visible(&crate::sync::read(&self.index))
    }

    fn read_at(&self, location: Location) -> Result<WrittenEvent> {
        self.segments.with_record(location, |v| {
            let (payload, redacted) = match v.payload {
                record::PayloadField::Present { bytes, .. } => (bytes.to_vec(), false),
                record::PayloadField::Redacted { .. } => (Vec::new(), true),
            };
            Ok(WrittenEvent {
                id: v.header.id,
                metadata: v.metadata.to_vec(),
                entity: v.entity.to_string(),
                scope: v.scope.to_string(),
                payload,
                redacted,
                batch_continues: v.header.flags & FLAG_BATCH_CONTINUES != 0,
                receipt: AppendReceipt {
                    event_id: v.header.id,
                    sequence: v.header.sequence,
                    version: v.header.version,
                    timestamp_ns: v.header.timestamp_ns,
                    kind: v.header.kind,
                    coordinate_digest: crate::coordinate::digest_of(v.entity, v.scope),
                    event_hash: chain::record_hash(v),
                    prev_hash: v.header.prev_hash,
                    signature: None,
                },
                header: v.header.clone(),
            })
        })
    }

    /// Replaces the set of entities deleted hard.
    pub(crate) fn set_tombstones<'a>(&self, entities: impl Iterator<Item = &'a str>) {
        lock(&self.state).tombstones = entities.map(Box::from).collect();
    }

    /// The entity's newest version (`None`: it has no events), read and checked
    /// against `expected` under the state lock, so no append lands between the check
    /// and the mark: with `hard`, the entity is marked deleted in the same turn and no
    /// later append is accepted.
    pub(crate) fn mark_deleted(
        &self,
        entity: &str,
        hard: bool,
        expected: ExpectedVersion,
    ) -> Result<Option<u64>> {
        let mut state = lock(&self.state);
        self.check_poison()?;
        let version = self.head(&mut state, entity)?.map(|h| h.version);
        if !expected.admits(version) {
            return Err(Error::VersionConflict {
                entity: entity.to_string(),
                expected,
                actual: version,
            });
        }
        if hard {
            state.tombstones.insert(entity.into());
        }
        Ok(version)
    }

    /// Takes back a hard mark whose deletion record could not be written.
    pub(crate) fn unmark_deleted(&self, entity: &str) {
        lock(&self.state).tombstones.remove(entity);
    }

    /// The entity's newest event, from the cache or, on a miss, from the index and
    /// the record itself (the hash is not stored, so it is recomputed once).
    fn head(&self, state: &mut State, entity: &str) -> Result<Option<Head>> {
        if let Some(h) = state.heads.get(entity) {
            return Ok(Some(*h));
        }
        let (found, horizon) = {
            let index = crate::sync::read(&self.index);
            (index.entity_head(entity), index.horizon_of(entity))
        };
        let Some((version, seq)) = found else {
            // Compaction removed every event it held: it continues from the last one.
            let Some((first_kept, hash)) = horizon else {
                return Ok(None);
            };
            let head = Head {
                version: first_kept - 1,
                hash,
            };
            state.heads.insert(entity.into(), head);
            return Ok(Some(head));
        };
        let event = self.read_written(seq)?;
        let head = Head {
            version,
            hash: event.receipt.event_hash,
        };
        state.heads.insert(entity.into(), head);
        Ok(Some(head))
    }

    fn cause_exists(&self, id: EventId) -> bool {
        self.find_written(
            |e| e.id == id,
            |index| index.sequence_of(id).and_then(|seq| index.location(seq)),
        )
        .is_some()
    }

    /// Writes a fresh append: check it against the current state, assign sequences,
    /// ids and hashes and encode the frames, write them, then publish.
    fn write_new(
        &self,
        state: &mut State,
        drafts: &[Draft<'_>],
        keys: &[Option<[u8; 16]>],
    ) -> Result<Vec<AppendReceipt>> {
        self.check_against_state(state, drafts)?;
        let mut frames = std::mem::take(&mut state.frames);
        frames.clear();
        let assigned = self.assign_and_encode(state, drafts, keys, &mut frames);
        let assigned = match assigned {
            Ok(a) => a,
            Err(e) => {
                state.frames = frames;
                return Err(e);
            }
        };
        // A failure here may leave a partial frame: poison, and let recovery cut it.
        let written = self.write_frames(state, &frames);
        state.frames = frames;
        let start = written.map_err(|e| self.poisoned(e))?;
        self.publish(state, drafts, keys, assigned, start)
    }

    /// Checks every item against the current state before anything is assigned:
    /// expected versions (items of one entity in a batch follow each other) and causes.
    fn check_against_state(&self, state: &mut State, drafts: &[Draft<'_>]) -> Result<()> {
        let mut versions: FastMap<&str, Option<u64>> =
            FastMap::with_capacity_and_hasher(drafts.len(), Default::default());
        for draft in drafts {
            let entity = draft.coordinate.entity();
            let actual = match versions.get(entity) {
                Some(v) => *v,
                None => self.head(state, entity)?.map(|h| h.version),
            };
            if !draft.system && state.tombstones.contains(entity) {
                return Err(Error::EntityDeleted {
                    entity: entity.to_string(),
                    through_version: actual,
                });
            }
            if !draft.options.expected_version.admits(actual) {
                return Err(Error::VersionConflict {
                    entity: entity.to_string(),
                    expected: draft.options.expected_version,
                    actual,
                });
            }
            if let Some(Cause::Event(id)) = draft.options.causation {
                let elsewhere = draft
                    .options
                    .metadata
                    .get(crate::options::CAUSE_STORE_KEY)
                    .is_some();
                if !elsewhere && !self.cause_exists(id) {
                    return Err(Error::UnknownCausation { causation: id });
                }
            }
            versions.insert(entity, Some(actual.map_or(0, |v| v + 1)));
        }
        Ok(())
    }

    /// Assigns sequence, id, timestamp, version and hash to every item and encodes
    /// its frame into `frames`. Changes nothing but the id and salt generators.
    fn assign_and_encode<'d>(
        &self,
        state: &mut State,
        drafts: &[Draft<'d>],
        keys: &[Option<[u8; 16]>],
        frames: &mut Vec<u8>,
    ) -> Result<Assigned<'d>> {
        let first_sequence = state.next_sequence;
        let timestamp_ns = self.clock.now_ns().max(state.last_timestamp_ns);
        let mut heads: FastMap<&'d str, Head> =
            FastMap::with_capacity_and_hasher(drafts.len(), Default::default());
        let mut receipts: Vec<AppendReceipt> = Vec::with_capacity(drafts.len());
        let mut frame_offsets = Vec::with_capacity(drafts.len());
        let mut metadata = Vec::new(); // allocates only for an event with metadata
        for (i, (draft, key)) in drafts.iter().zip(keys).enumerate() {
            let entity = draft.coordinate.entity();
            let prior = match heads.get(entity) {
                Some(h) => Some(*h),
                None => self.head(state, entity)?,
            };
            let sequence = first_sequence + i as u64;
            let block = state.random.next_block();
            let mut salt = [0u8; record::SALT_LEN];
            salt.copy_from_slice(&block[..record::SALT_LEN]);
            let id_random = u128::from_le_bytes(block[16..32].try_into().unwrap_or([0; 16]));
            let id = state.ids.next(timestamp_ns / 1_000_000, id_random);
            let mut header = RecordHeader {
                sequence,
                timestamp_ns,
                id,
                version: prior.map_or(0, |h| h.version + 1),
                kind: draft.kind,
                flags: if i + 1 < drafts.len() {
                    FLAG_BATCH_CONTINUES
                } else {
                    0
                },
                encoding: draft.encoding,
                schema_version: draft.schema_version,
                causation: resolve_cause(draft, &receipts),
                correlation: draft.options.correlation,
                idempotency: *key,
                prev_hash: prior.map_or(Hash::ZERO, |h| h.hash),
            };
            metadata.clear();
            if !draft.options.metadata.is_empty() {
                record::encode_metadata(&draft.options.metadata, &mut metadata);
                header.flags |= record::FLAG_METADATA;
            }
            header.flags = record::flags_for(&header);
            let digest = chain::payload_digest(&salt, draft.payload);
            let event_hash = chain::event_hash(
                &header,
                &metadata,
                entity,
                draft.coordinate.scope(),
                &digest,
            );
            frame_offsets.push(frames.len() as u64);
            let rec = RecordDraft {
                header,
                metadata: &metadata,
                entity,
                scope: draft.coordinate.scope(),
                salt,
                payload: draft.payload,
            };
            record::encode(&rec, frames);
            receipts.push(AppendReceipt {
                event_id: id,
                sequence,
                version: rec.header.version,
                timestamp_ns,
                kind: draft.kind,
                coordinate_digest: draft.coordinate.digest(),
                event_hash,
                prev_hash: rec.header.prev_hash,
                signature: None,
            });
            heads.insert(
                entity,
                Head {
                    version: rec.header.version,
                    hash: event_hash,
                },
            );
        }
        Ok(Assigned {
            receipts,
            frame_offsets,
            heads,
            timestamp_ns,
        })
    }

    /// Commits the written append to the writer's state and publishes it: to the
    /// index now, or (under `SyncPolicy::Always`) to the unpublished queue the next
    /// covering sync drains.
    fn publish(
        &self,
        state: &mut State,
        drafts: &[Draft<'_>],
        keys: &[Option<[u8; 16]>],
        assigned: Assigned<'_>,
        start: u64,
    ) -> Result<Vec<AppendReceipt>> {
        let Assigned {
            receipts,
            frame_offsets,
            heads,
            timestamp_ns,
        } = assigned;
        let last = receipts.last().map_or(state.next_sequence, |r| r.sequence);
        state.next_sequence = last + 1;
        state.last_timestamp_ns = timestamp_ns;
        for (entity, head) in heads {
            // Reuse the cached key: no allocation for an entity already seen.
            match state.heads.get_mut(entity) {
                Some(slot) => *slot = head,
                None => {
                    state.heads.insert(entity.into(), head);
                }
            }
        }
        let segment = state.active.number;
        let visible_now = self.policy != SyncPolicy::Always;
        if visible_now {
            // The frames are in the file: `written` covers them before any is visible.
            // (Under `Always` it moves after they are queued, so a sync that reads it
            // finds them there to publish.)
            self.written.store(last, Ordering::Release);
        }
        let mut index = visible_now.then(|| crate::sync::write(&self.index));
        // Under `Always` the entries wait for their sync: queued under one lock turn.
        let mut queue = (!visible_now).then(|| lock(&self.unpublished));
        for (i, ((draft, key), receipt)) in drafts.iter().zip(keys).zip(&receipts).enumerate() {
            if let Some(k) = key {
                state
                    .idempotency
                    .insert(*k, receipt.sequence, receipt.event_id.unix_millis());
            }
            let entry = IndexEntry {
                sequence: receipt.sequence,
                id: receipt.event_id,
                kind: draft.kind,
                version: receipt.version,
                entity: draft.coordinate.entity(),
                scope: draft.coordinate.scope(),
                location: Location::new(segment, start + frame_offsets[i]),
                causation: resolve_cause(draft, &receipts),
                correlation: draft.options.correlation,
            };
            if let Some(index) = index.as_mut() {
                index.insert(&entry).map_err(|detail| {
                    self.poisoned(Error::Corrupt {
                        path: self.dir.clone(),
                        offset: 0,
                        detail,
                    })
                })?;
            } else if let Some(queue) = queue.as_mut() {
                queue.push_back(OwnedEntry::sharing(&entry, draft.coordinate.clone()));
            }
        }
        drop(queue);
        if visible_now {
            self.announce(last);
        }
        drop(index);
        self.written.store(last, Ordering::Release);
        let _ = self
            .returning
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        Ok(receipts)
    }

    /// Rotates if the frames would overflow a non-empty segment, or the segment is of
    /// an older format, then writes them.
    fn write_frames(&self, state: &mut State, frames: &[u8]) -> Result<u64> {
        let active = &mut state.active;
        let full = active.len + frames.len() as u64 > self.segment_size;
        if (active.len > HEADER_LEN as u64 && full) || active.is_older_format() {
            if active.number >= MAX_SEGMENT_NUMBER {
                return Err(Error::TooLarge {
                    what: "segment count",
                    size: active.number + 1,
                    limit: MAX_SEGMENT_NUMBER,
                });
            }
            if let Some(lock) = &self.lock {
                lock.check()?;
            }
            active.rotate(&self.dir, state.next_sequence)?;
            *lock(&self.active_file) = Arc::clone(&active.file);
            self.checkpoint_due.store(true, Ordering::Release);
            self.segments
                .insert(active.number, Arc::clone(&active.file));
        }
        if active.len + frames.len() as u64 > MAX_OFFSET {
            return Err(Error::TooLarge {
                what: "segment size",
                size: active.len + frames.len() as u64,
                limit: MAX_OFFSET,
            });
        }
        active.append(frames)
    }

    /// Blocks until `sequence` is durable (and visible), syncing as the leader when no
    /// sync is in progress.
    pub(crate) fn wait_durable(&self, sequence: u64) -> Result<()> {
        self.wait_durable_lingering(sequence, true)
    }

    /// `wait_durable`; without `linger` a leader syncs at once.
    fn wait_durable_lingering(&self, sequence: u64, linger: bool) -> Result<()> {
        let mut d = lock(&self.durability);
        let mut queued = false;
        loop {
            if let Err(e) = self.check_poison() {
                if queued {
                    d.stop_waiting(sequence);
                }
                return Err(e);
            }
            if d.durable >= sequence {
                if queued {
                    d.stop_waiting(sequence);
                }
                return Ok(());
            }
            if d.syncing {
                if !queued {
                    d.waiting.push(sequence);
                    queued = true;
                }
                d = self
                    .durable_changed
                    .wait(d)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            if queued {
                d.stop_waiting(sequence);
                queued = false;
            }
            d.syncing = true;
            // Linger: the appenders the last sync released are likely to append again
            // at once. Waiting (at most one sync's time) until every one of them has
            // written again lets this sync cover them too, instead of leaving them a
            // whole round to wait. One thread alone never waits (it was the only one
            // released, and has appended), and only `Always` appenders wait on a sync.
            let linger = match self.policy {
                SyncPolicy::Always if linger => d.last_sync.min(MAX_LINGER),
                _ => Duration::ZERO,
            };
            drop(d);
            let started = Instant::now();
            while self.returning.load(Ordering::Acquire) > 0 && started.elapsed() < linger {
                std::thread::yield_now();
            }
            let sync_started = Instant::now();
            let result = self.sync_and_publish();
            let took = sync_started.elapsed();
            d = lock(&self.durability);
            d.syncing = false;
            match result {
                Ok(target) => {
                    d.durable = d.durable.max(target);
                    self.durable_seq.fetch_max(d.durable, Ordering::Release);
                    d.last_sync = took;
                    // The leader and every follower this sync covers return now.
                    let durable = d.durable;
                    let released = 1 + d.waiting.iter().filter(|&&s| s <= durable).count();
                    self.returning.store(released as u64, Ordering::Release);
                }
                Err(e) => {
                    let e = self.poisoned(e);
                    self.durable_changed.notify_all();
                    return Err(e);
                }
            }
            self.durable_changed.notify_all();
            self.signal.notify();
        }
    }

    /// Syncs everything written so far and makes it visible. Returns the sequence covered.
    fn sync_and_publish(&self) -> Result<u64> {
        // `written` first: every record up to it is in the file read next or in an
        // earlier segment, which was synced when it was rotated out.
        let target = self.written();
        let file = Arc::clone(&lock(&self.active_file));
        let started = Instant::now();
        file.sync()?;
        self.sync_latency.observe(started.elapsed());
        // Durable before visible: no reader may see an event the durable watermark
        // does not yet cover.
        self.durable_seq.fetch_max(target, Ordering::Release);
        let mut unpublished = lock(&self.unpublished);
        if unpublished.front().is_some_and(|e| e.sequence <= target) {
            let mut index = crate::sync::write(&self.index);
            while unpublished.front().is_some_and(|e| e.sequence <= target) {
                let Some(entry) = unpublished.pop_front() else {
                    break;
                };
                index.insert_from_records(&entry.as_entry(), &self.dir)?;
            }
            self.announce(index.last_sequence());
        }
        Ok(target)
    }

    /// Tells followers in other processes how far the index goes (the live mark).
    fn announce(&self, visible: u64) {
        if let Some(mark) = &self.live {
            mark.publish(visible);
        }
    }

    /// The sequence the idempotency map holds for `key`.
    pub(crate) fn idempotency_of(&self, key: &[u8; 16]) -> Option<u64> {
        lock(&self.state).idempotency.get(key)
    }

    /// How many idempotency keys the store remembers.
    pub(crate) fn idempotency_count(&self) -> usize {
        lock(&self.state).idempotency.len()
    }

    /// Every remembered key with its sequence, oldest first.
    pub(crate) fn idempotency_snapshot(&self) -> Vec<([u8; 16], u64)> {
        lock(&self.state).idempotency.iter().collect()
    }

    /// The idempotency window the writer keeps.
    pub(crate) fn idempotency_window(&self) -> crate::options::IdempotencyWindow {
        lock(&self.state).idempotency.window()
    }

    /// Writes the index checkpoint for the events that are both visible and durable
    /// (under `Always` that is every visible event). Holds the writer and index locks
    /// while it copies the columns; the file is written after they are released. A
    /// failure is returned, and does not poison the store.
    pub(crate) fn write_checkpoint(&self) -> Result<()> {
        self.check_poison()?;
        if let Some(lock) = &self.lock {
            lock.check().map_err(|e| self.poisoned(e))?;
        }
        let Some(c) = self.checkpoint_upto(self.durable()) else {
            return Ok(()); // nothing durable to record yet
        };
        let n = c.last_sequence();
        // No poison on failure: the journal is untouched, and whichever checkpoint the
        // directory holds afterwards (the old one, the new one, or none) stays true.
        crate::checkpoint::write(&self.dir, &self.segments, c)?;
        self.checkpointed.fetch_max(n, Ordering::AcqRel);
        self.evidenced.fetch_max(n, Ordering::AcqRel);
        Ok(())
    }

    /// What a close leaves after its final sync: the whole checkpoint when it pays
    /// (`checkpoint::pays`), otherwise the durable floor alone when events became
    /// durable that the directory does not prove yet, otherwise nothing.
    pub(crate) fn write_close_evidence(&self) -> Result<()> {
        let durable = self.durable();
        if crate::checkpoint::pays(durable, self.checkpointed.load(Ordering::Acquire)) {
            return self.write_checkpoint();
        }
        if durable <= self.evidenced.load(Ordering::Acquire) {
            return Ok(());
        }
        self.check_poison()?;
        if let Some(lock) = &self.lock {
            lock.check().map_err(|e| self.poisoned(e))?;
        }
        let (n, last) = {
            let index = crate::sync::read(&self.index);
            let n = index.last_sequence().min(durable);
            (n, index.location(n))
        };
        let Some(last) = last else {
            return Ok(());
        };
        // Like a checkpoint, no poison on failure: the old floor (or none) stays true.
        crate::checkpoint::write_floor(&self.dir, &self.segments, self.store_id(), last)?;
        self.evidenced.fetch_max(n, Ordering::AcqRel);
        Ok(())
    }

    /// The checkpoint of the index and idempotency keys through sequence `upto` (or
    /// the index's end, if sooner), located at that event's record; `None` when there
    /// is no event to record.
    pub(crate) fn checkpoint_upto(&self, upto: u64) -> Option<Checkpoint> {
        let state = lock(&self.state);
        let index = crate::sync::read(&self.index);
        checkpoint_of(
            &index,
            upto,
            state.active.store_id(),
            state.idempotency.iter(),
        )
    }

    /// Writes `pending` over the record it names: the only in-place mutation of a
    /// segment. The pending file is made durable first (a crash mid-rewrite is finished
    /// at the next open), then the frame is written and synced through the segment
    /// seam, then the pending file is removed. A failed segment write or fsync poisons
    /// the store, like a failed append.
    pub(crate) fn rewrite_record(&self, pending: &PendingRewrite) -> Result<()> {
        self.check_poison()?;
        let mut file = self
            .segments
            .file_at(Location::new(pending.segment, pending.offset))?;
        // A segment a fork shares gets its own copy first: the rewrite is this
        // store's alone. Readers holding the old file keep the same bytes.
        if crate::dir::unshare(&self.dir, file.path())? {
            let own = Arc::new(SegmentFile::open(file.path(), true, 0)?);
            self.segments.insert(pending.segment, Arc::clone(&own));
            file = own;
        }
        check_pending_fits(&file, pending, &self.dir)?;
        replace_file(&self.dir, PENDING_FILE, &pending.encode())?;
        {
            let _no_readers_mid_frame = self.segments.rewrite_guard();
            apply_pending(&file, pending).map_err(|e| self.poisoned(e))?;
        }
        remove_pending(&self.dir)
    }

    /// Makes everything written so far durable (and visible).
    pub(crate) fn sync(&self) -> Result<()> {
        self.check_poison()?;
        self.wait_durable(self.written())
    }
}

/// What `assign_and_encode` gave an append, for `publish`.
#[derive(Debug)]
struct Assigned<'d> {
    receipts: Vec<AppendReceipt>,
    /// Where each item's frame starts within the append's frames.
    frame_offsets: Vec<u64>,
    /// Each entity's newest event after the append.
    heads: FastMap<&'d str, Head>,
    timestamp_ns: u64,
}

/// The event id an item names as its cause: an event, or an earlier item of the
/// append (whose receipt is already assigned).
fn resolve_cause(draft: &Draft<'_>, receipts: &[AppendReceipt]) -> Option<EventId> {
    match draft.options.causation {
        Some(Cause::Event(id)) => Some(id),
        Some(Cause::BatchItem(j)) => receipts.get(j).map(|r| r.event_id),
        None => None,
    }
}

/// The batch flag must match the retried batch's shape: only the last item ends it.
fn batch_item_count_differs(stored_continues: bool, i: usize, n: usize) -> bool {
    stored_continues != (i + 1 < n)
}

/// An event the writer read back (for idempotent replays and chain heads).
#[derive(Debug)]
struct WrittenEvent {
    id: EventId,
    header: RecordHeader,
    /// The stored metadata entries.
    metadata: Vec<u8>,
    entity: String,
    scope: String,
    payload: Vec<u8>,
    /// The payload was erased (`payload` is empty).
    redacted: bool,
    batch_continues: bool,
    receipt: AppendReceipt,
}

/// Refuses a payload over `MAX_PAYLOAD_LEN`.
pub(crate) fn check_payload_len(len: usize) -> Result<()> {
    if len > MAX_PAYLOAD_LEN {
        return Err(Error::TooLarge {
            what: "payload",
            size: len as u64,
            limit: MAX_PAYLOAD_LEN as u64,
        });
    }
    Ok(())
}

/// Checks that need no store state. Returns each item's idempotency digest.
fn validate(drafts: &[Draft<'_>], batch: bool) -> Result<Vec<Option<[u8; 16]>>> {
    if drafts.is_empty() {
        return Err(Error::EmptyBatch);
    }
    let mut keys = Vec::with_capacity(drafts.len());
    let mut seen = std::collections::HashSet::new(); // allocates only when keys exist
    for (i, d) in drafts.iter().enumerate() {
        if !d.system {
            d.kind.check_user()?;
            if d.coordinate.entity().starts_with(STORE_ENTITY_PREFIX) {
                return Err(Error::InvalidCoordinate {
                    component: "entity",
                    rule: crate::error::CoordinateRule::Reserved,
                });
            }
        }
        check_payload_len(d.payload.len())?;
        if !d.options.metadata.is_empty() {
            d.options.metadata.validate()?;
        }
        if let Some(Cause::BatchItem(j)) = d.options.causation {
            if !batch || j >= i {
                return Err(Error::InvalidBatchReference { item: i, cause: j });
            }
        }
        let key = d.options.idempotency_key.as_deref().map(idempotency_digest);
        if let Some(k) = key {
            if !seen.insert(k) {
                return Err(Error::DuplicateIdempotencyKey {
                    key: d.options.idempotency_key.clone().unwrap_or_default(),
                });
            }
        }
        keys.push(key);
    }
    Ok(keys)
}

/// A draft's metadata as its record stores it (empty for none).
fn encoded_metadata(draft: &Draft<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode_metadata(&draft.options.metadata, &mut out);
    out
}

/// The background thread of `SyncPolicy::Interval`.
#[derive(Debug)]
pub(crate) struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread. A thread that cannot be spawned is an error: without it
    /// `Interval` would silently mean "never".
    pub(crate) fn start(writer: Arc<Writer>, every: Duration) -> Result<Self> {
        let dir = writer.dir.clone();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("batpak-flush".into())
            .spawn(move || {
                let (stop, cv) = &*signal;
                let mut stopped = lock(stop);
                while !*stopped {
                    let (guard, _) = cv
                        .wait_timeout(stopped, every)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    if *stopped {
                        break;
                    }
                    if writer.written() > writer.durable() && writer.sync().is_err() {
                        break; // poisoned: appends report it
                    }
                }
            })
            .map_err(crate::error::io_err("spawn flusher thread", dir))?;
        Ok(Flusher {
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(mut self) {
        let (stop, cv) = &*self.stop;
        *lock(stop) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The checkpoint of `index` through its newest event at or before `upto` (a
/// compacted history may not hold `upto` itself), located at that event's record,
/// with the `keys` up to there; `None` when there is no such event.
fn checkpoint_of(
    index: &Index,
    upto: u64,
    store_id: [u8; 16],
    keys: impl Iterator<Item = ([u8; 16], u64)>,
) -> Option<Checkpoint> {
    let n = index
        .sequences_in(0, index.last_sequence().min(upto).saturating_add(1))
        .next_back()?;
    let location = index.location(n)?;
    let mut c = Checkpoint {
        store_id,
        ..Checkpoint::default()
    };
    index.export(&mut c, n);
    c.idempotency = keys.filter(|&(_, seq)| seq <= n).collect();
    c.segment = location.segment();
    c.offset = location.offset();
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Fault, FaultPlan, Op};
    use crate::store::Store;

    fn coord(entity: &str) -> Coordinate {
        Coordinate::new(entity, "s").unwrap()
    }

    fn draft<'a>(c: &'a Coordinate, payload: &'a [u8], options: &'a AppendOptions) -> Draft<'a> {
        Draft {
            coordinate: c,
            kind: EventKind::custom(1, 1),
            encoding: Encoding::Opaque,
            schema_version: 1,
            payload,
            options,
            system: false,
        }
    }

    #[test]
    fn validation_refuses_bad_appends_before_any_state_is_read() {
        let c = coord("e");
        let plain = AppendOptions::default();
        assert!(matches!(validate(&[], true), Err(Error::EmptyBatch)));
        let forward = AppendOptions::default().caused_by_item(1);
        let items = [draft(&c, b"a", &forward), draft(&c, b"b", &plain)];
        assert!(matches!(
            validate(&items, true),
            Err(Error::InvalidBatchReference { item: 0, cause: 1 })
        ));
        let back = AppendOptions::default().caused_by_item(0);
        assert!(matches!(
            validate(&[draft(&c, b"a", &back)], false),
            Err(Error::InvalidBatchReference { item: 0, cause: 0 })
        ));
        let keyed = AppendOptions::default().idempotency_key("k");
        let twice = [draft(&c, b"a", &keyed), draft(&c, b"b", &keyed)];
        assert!(matches!(
            validate(&twice, true),
            Err(Error::DuplicateIdempotencyKey { key }) if key == "k"
        ));
        let mut reserved = draft(&c, b"a", &plain);
        reserved.kind = EventKind::custom(0, 9);
        assert!(matches!(
            validate(&[reserved], false),
            Err(Error::ReservedKind { .. })
        ));
        let mut system = draft(&c, b"a", &plain);
        system.kind = EventKind::custom(0, 9);
        system.system = true;
        assert!(validate(&[system], false).is_ok());
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert!(matches!(
            validate(&[draft(&c, &big, &plain)], false),
            Err(Error::TooLarge {
                what: "payload",
                ..
            })
        ));
    }

    #[test]
    fn a_batch_links_each_entity_chain_and_resolves_item_causes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let writer = store.writer().unwrap();
        let (a, b) = (coord("a"), coord("b"));
        let plain = AppendOptions::default();
        let caused = AppendOptions::default().caused_by_item(0);
        let items = [
            draft(&a, b"1", &plain),
            draft(&b, b"2", &caused),
            draft(&a, b"3", &plain),
        ];
        let receipts = writer.append(&items, true).unwrap();
        assert_eq!(
            receipts
                .iter()
                .map(|r| (r.sequence, r.version))
                .collect::<Vec<_>>(),
            [(1, 0), (2, 0), (3, 1)]
        );
        assert_eq!(receipts[2].prev_hash, receipts[0].event_hash);
        assert_eq!(receipts[1].prev_hash, Hash::ZERO);
        let effect = store.get(receipts[1].event_id).unwrap().unwrap();
        assert_eq!(effect.causation, Some(receipts[0].event_id));
        // The next append continues the chain from the cached head.
        let next = writer.append(&[draft(&a, b"4", &plain)], false).unwrap();
        assert_eq!(
            (next[0].version, next[0].prev_hash),
            (2, receipts[2].event_hash)
        );
    }

    #[test]
    fn expected_versions_are_checked_item_by_item_within_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let writer = store.writer().unwrap();
        let a = coord("a");
        let first = AppendOptions::default().expected_version(crate::ExpectedVersion::NoStream);
        let second = AppendOptions::default().expected_version(crate::ExpectedVersion::Exact(0));
        let items = [draft(&a, b"1", &first), draft(&a, b"2", &second)];
        writer.append(&items, true).unwrap();
        let stale = AppendOptions::default().expected_version(crate::ExpectedVersion::Exact(0));
        match writer.append(&[draft(&a, b"3", &stale)], false) {
            Err(Error::VersionConflict { actual, .. }) => assert_eq!(actual, Some(1)),
            other => panic!("{other:?}"),
        }
        // Nothing of the refused append was assigned.
        assert_eq!(writer.written(), 2);
    }

    #[test]
    fn relaxed_policies_make_events_visible_before_they_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path())
            .sync_policy(SyncPolicy::Never)
            .open()
            .unwrap();
        let writer = store.writer().unwrap();
        let a = coord("a");
        let plain = AppendOptions::default();
        for n in 0..3u8 {
            writer.append(&[draft(&a, &[n], &plain)], false).unwrap();
        }
        assert_eq!((writer.written(), writer.durable()), (3, 0));
        assert_eq!(store.stream("a").unwrap().len(), 3);
        writer.sync().unwrap();
        assert_eq!(writer.durable(), 3);
    }

    #[test]
    fn the_first_poison_cause_is_kept_and_refuses_every_mutation() {
        let dir = tempfile::tempdir().unwrap();
        let plan = FaultPlan::install(dir.path());
        let store = Store::open(dir.path()).unwrap();
        let writer = store.writer().unwrap();
        let a = coord("a");
        let plain = AppendOptions::default();
        writer.append(&[draft(&a, b"1", &plain)], false).unwrap();
        plan.fail_nth(Op::Write, 1, Fault::Enospc);
        let err = writer
            .append(&[draft(&a, b"2", &plain)], false)
            .unwrap_err();
        let Error::Poisoned { source } = &err else {
            panic!("{err:?}")
        };
        assert!(matches!(
            &**source,
            Error::Io {
                op: "write segment",
                ..
            }
        ));
        plan.clear();
        for refused in [
            writer.append(&[draft(&a, b"3", &plain)], false).map(|_| ()),
            writer.sync(),
            writer.write_checkpoint(),
        ] {
            match refused {
                Err(Error::Poisoned { source: later }) => assert!(Arc::ptr_eq(source, &later)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_rewrite_that_runs_past_the_segment_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let writer = store.writer().unwrap();
        let a = coord("a");
        let plain = AppendOptions::default();
        writer.append(&[draft(&a, b"1", &plain)], false).unwrap();
        let len = store.stats().unwrap().segment_bytes;
        let pending = PendingRewrite {
            segment: 1,
            offset: len - 4,
            frame: vec![0; 8],
        };
        match writer.rewrite_record(&pending) {
            Err(Error::Corrupt { detail, .. }) => assert!(detail.contains("runs past the end")),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join(crate::dir::PENDING_FILE).exists());
        assert_eq!(store.stream("a").unwrap().len(), 1);
    }
}
