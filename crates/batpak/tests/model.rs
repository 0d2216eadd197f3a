//! Model-based test: a store driven by random operations must agree, after every
//! operation, with a plain `Vec` of the events it acknowledged.
//!
//! The model predicts the outcome of each append or batch (new events, an idempotent
//! replay of earlier receipts, or one specific error), checks the receipts the store
//! returns, and then compares every read API with its own answer. `Crash` tears the
//! frames of the most recent write off the end of the last segment, as if the process
//! died before they reached the disk; the model drops exactly that write's events.
//!
//! Set `MODEL_TRACE=1` (with `--nocapture`) to print every case's trace of operations
//! and outcomes, for instance to see how often each path is exercised.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Display};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use batpak::{
    AppendOptions, AppendReceipt, Batch, Cause, Coordinate, Encoding, Error, EventId, EventKind,
    ExpectedVersion, Hash, RawPayload, Region, Store, StoreBuilder, StoredEvent, SyncPolicy,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Entities appends pick from. `a`, `a:1` and `a:2` share the prefix `a`; `ab` does not.
const ENTITIES: [&str; 5] = ["a", "a:1", "a:2", "ab", "b:1"];
const SCOPES: [&str; 2] = ["s1", "s2"];
const KEYS: [&str; 10] = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];
const ENCODINGS: [Encoding; 3] = [Encoding::Opaque, Encoding::Json, Encoding::MessagePack];
/// Ids no event has. The store accepts them as correlation ids (they are not checked),
/// so `correlated` on them must return exactly the events that carry them.
const FOREIGN: [u128; 3] = [
    0x0bad_0000_0000_7000_8000_0000_0000_0001,
    0x0bad_0000_0000_7000_8000_0000_0000_0002,
    0x0bad_0000_0000_7000_8000_0000_0000_0003,
];
/// Entities queried by exact name: the pool plus names no event has.
const EXACT_NAMES: [&str; 7] = ["a", "a:1", "a:2", "ab", "b:1", "a:", "c"];
/// Prefixes queried: `a` must select `a`, `a:1`, `a:2` but not `ab`.
const PREFIXES: [&str; 7] = ["a", "a:", "a:1", "ab", "b", "b:", "c"];
const QUERY_SCOPES: [&str; 3] = ["s1", "s2", "s3"];

// ---------------------------------------------------------------------------------
// Generated operations
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum ExpGen {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
    /// Whatever the model says the entity is at (within a batch: after earlier items).
    Current,
}

#[derive(Clone, Debug)]
enum CauseGen {
    None,
    /// An event of the model, by position modulo its length (none while it is empty).
    Existing(usize),
    /// An id no event has: the append must fail with `UnknownCausation`.
    Bogus(u128),
    /// An earlier item of the same batch, modulo the item's position.
    Item(usize),
}

#[derive(Clone, Debug)]
enum CorrGen {
    None,
    Existing(usize),
    Foreign(usize),
}

#[derive(Clone, Debug)]
struct ItemGen {
    entity: usize,
    scope: usize,
    category: u8,
    type_id: u16,
    encoding: usize,
    schema: u16,
    payload: Vec<u8>,
    expected: ExpGen,
    cause: CauseGen,
    correlation: CorrGen,
    key: Option<usize>,
}

#[derive(Clone, Debug)]
enum Op {
    Append(ItemGen),
    /// `keyed: Some(k)` gives item `i` the key `KEYS[k + i]` (wrapping), so the whole
    /// batch can be retried idempotently.
    Batch {
        items: Vec<ItemGen>,
        keyed: Option<usize>,
    },
    /// Repeats an earlier accepted request, exactly or with one field of one item changed.
    Retry {
        pick: usize,
        mutate: Option<Mutation>,
    },
    Reopen,
    Crash {
        cut: u16,
    },
}

/// A change to one item of a retried request. Every field but the expected version
/// is part of the content an idempotency key stands for.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    Payload,
    Encoding,
    Schema,
    Scope,
    Kind,
    Causation,
    Correlation,
    /// Not content: a replay must still return the original receipts.
    ExpectedVersion,
}

const MUTATIONS: [Mutation; 8] = [
    Mutation::Payload,
    Mutation::Encoding,
    Mutation::Schema,
    Mutation::Scope,
    Mutation::Kind,
    Mutation::Causation,
    Mutation::Correlation,
    Mutation::ExpectedVersion,
];

#[derive(Clone, Debug)]
enum EntityGen {
    Any,
    Exact(&'static str),
    Prefix(&'static str),
}

#[derive(Clone, Debug)]
enum KindGen {
    Any,
    Kind(EventKind),
    Category(u8),
}

#[derive(Clone, Debug)]
struct RegionGen {
    entity: EntityGen,
    scope: Option<&'static str>,
    kind: KindGen,
    limit: usize,
}

fn item_gen() -> impl Strategy<Value = ItemGen> {
    let expected = prop_oneof![
        10 => Just(ExpGen::Any),
        1 => Just(ExpGen::NoStream),
        1 => Just(ExpGen::StreamExists),
        1 => (0..4u64).prop_map(ExpGen::Exact),
        4 => Just(ExpGen::Current),
    ];
    let cause = prop_oneof![
        8 => Just(CauseGen::None),
        6 => any::<usize>().prop_map(CauseGen::Existing),
        1 => any::<u128>().prop_map(CauseGen::Bogus),
        4 => any::<usize>().prop_map(CauseGen::Item),
    ];
    let correlation = prop_oneof![
        4 => Just(CorrGen::None),
        3 => any::<usize>().prop_map(CorrGen::Existing),
        1 => (0..FOREIGN.len()).prop_map(CorrGen::Foreign),
    ];
    let key = prop_oneof![3 => Just(None), 1 => (0..KEYS.len()).prop_map(Some)];
    let category = prop_oneof![1 => Just(0u8), 40 => 1..=3u8];
    (
        (0..ENTITIES.len(), 0..SCOPES.len()),
        (category, 0..=2u16, 0..ENCODINGS.len(), 1..=2u16),
        prop_oneof![
            8 => prop::collection::vec(any::<u8>(), 0..100),
            // Large enough that a 4 KiB segment rotates every few events.
            1 => prop::collection::vec(any::<u8>(), 300..1200),
        ],
        (expected, cause, correlation, key),
    )
        .prop_map(
            |(
                (entity, scope),
                (category, type_id, encoding, schema),
                payload,
                (expected, cause, correlation, key),
            )| ItemGen {
                entity,
                scope,
                category,
                type_id,
                encoding,
                schema,
                payload,
                expected,
                cause,
                correlation,
                key,
            },
        )
}

fn op_gen() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => item_gen().prop_map(Op::Append),
        4 => (
            prop::collection::vec(item_gen(), 1..6),
            prop_oneof![2 => Just(None), 1 => (0..KEYS.len()).prop_map(Some)],
        )
            .prop_map(|(items, keyed)| Op::Batch { items, keyed }),
        3 => (
            any::<usize>(),
            prop_oneof![
                2 => Just(None),
                1 => prop::sample::select(&MUTATIONS[..]).prop_map(Some),
            ],
        )
            .prop_map(|(pick, mutate)| Op::Retry { pick, mutate }),
        1 => Just(Op::Reopen),
        2 => any::<u16>().prop_map(|cut| Op::Crash { cut }),
    ]
}

fn region_gen() -> impl Strategy<Value = RegionGen> {
    let entity = prop_oneof![
        1 => Just(EntityGen::Any),
        2 => prop::sample::select(&EXACT_NAMES[..]).prop_map(EntityGen::Exact),
        2 => prop::sample::select(&PREFIXES[..]).prop_map(EntityGen::Prefix),
    ];
    let scope = prop_oneof![
        2 => Just(None),
        1 => prop::sample::select(&QUERY_SCOPES[..]).prop_map(Some),
    ];
    let kind = prop_oneof![
        2 => Just(KindGen::Any),
        1 => (0..=3u8, 0..=2u16).prop_map(|(c, t)| KindGen::Kind(EventKind::custom(c, t))),
        1 => (0..=4u8).prop_map(KindGen::Category),
    ];
    (entity, scope, kind, 1..=4usize).prop_map(|(entity, scope, kind, limit)| RegionGen {
        entity,
        scope,
        kind,
        limit,
    })
}

/// Regions checked in every case, besides the generated ones.
fn fixed_regions() -> Vec<RegionGen> {
    vec![
        RegionGen {
            entity: EntityGen::Any,
            scope: None,
            kind: KindGen::Any,
            limit: 3,
        },
        RegionGen {
            entity: EntityGen::Prefix("a"),
            scope: None,
            kind: KindGen::Any,
            limit: 2,
        },
        RegionGen {
            entity: EntityGen::Prefix("a"),
            scope: Some("s2"),
            kind: KindGen::Category(2),
            limit: 1,
        },
    ]
}

impl RegionGen {
    fn build(&self) -> Region {
        let mut region = Region::all();
        region = match self.entity {
            EntityGen::Any => region,
            EntityGen::Exact(e) => region.entity(e),
            EntityGen::Prefix(p) => region.entity_prefix(p),
        };
        if let Some(s) = self.scope {
            region = region.scope(s);
        }
        match self.kind {
            KindGen::Any => region,
            KindGen::Kind(k) => region.kind(k),
            KindGen::Category(c) => region.category(c),
        }
    }

    fn matches(&self, e: &ModelEvent) -> bool {
        let entity = match self.entity {
            EntityGen::Any => true,
            EntityGen::Exact(x) => e.entity == x,
            EntityGen::Prefix(p) => under_prefix(p, e.entity),
        };
        let kind = match self.kind {
            KindGen::Any => true,
            KindGen::Kind(k) => e.kind == k,
            KindGen::Category(c) => e.kind.category() == c,
        };
        entity && kind && self.scope.is_none_or(|s| e.scope == s)
    }
}

/// The entity-prefix rule, written out: the prefix itself, or the prefix followed by a
/// `:` boundary (a prefix that already ends in `:` is its own boundary).
fn under_prefix(prefix: &str, entity: &str) -> bool {
    entity == prefix
        || entity.starts_with(&format!("{prefix}:"))
        || (prefix.ends_with(':') && entity.starts_with(prefix))
}

// ---------------------------------------------------------------------------------
// Requests and the model
// ---------------------------------------------------------------------------------

/// One append as sent to the store, every reference resolved to an id.
#[derive(Clone, Debug)]
struct Req {
    entity: &'static str,
    scope: &'static str,
    kind: EventKind,
    encoding: Encoding,
    schema: u16,
    payload: Vec<u8>,
    expected: ExpectedVersion,
    cause: Option<Cause>,
    correlation: Option<EventId>,
    key: Option<&'static str>,
}

impl Req {
    fn options(&self) -> AppendOptions {
        AppendOptions {
            expected_version: self.expected,
            causation: self.cause,
            correlation: self.correlation,
            idempotency_key: self.key.map(str::to_string),
            ..AppendOptions::default()
        }
    }

    fn raw(&self) -> RawPayload<'_> {
        RawPayload {
            bytes: &self.payload,
            encoding: self.encoding,
            schema_version: self.schema,
        }
    }

    fn coordinate(&self) -> Result<Coordinate, TestCaseError> {
        Coordinate::new(self.entity, self.scope).or_fail("coordinate")
    }
}

/// A single append (`batch == false`, one item) or a batch.
#[derive(Clone, Debug)]
struct Request {
    items: Vec<Req>,
    batch: bool,
}

/// An acknowledged event as the model remembers it. Ids, timestamps and hashes come
/// from the receipt (the model cannot predict them); everything else from the request.
#[derive(Clone, Debug)]
struct ModelEvent {
    receipt: AppendReceipt,
    entity: &'static str,
    scope: &'static str,
    coordinate: Coordinate,
    kind: EventKind,
    encoding: Encoding,
    schema: u16,
    payload: Vec<u8>,
    causation: Option<EventId>,
    correlation: Option<EventId>,
    key: Option<&'static str>,
    /// A batch item followed by more items of the same batch.
    continues: bool,
}

impl ModelEvent {
    fn id(&self) -> EventId {
        self.receipt.event_id
    }

    fn expected(&self) -> Seen {
        Seen {
            id: self.receipt.event_id,
            sequence: self.receipt.sequence,
            version: self.receipt.version,
            timestamp_ns: self.receipt.timestamp_ns,
            kind: self.kind,
            coordinate: self.coordinate.clone(),
            causation: self.causation,
            correlation: self.correlation,
            encoding: self.encoding,
            schema_version: self.schema,
            payload: self.payload.clone(),
            event_hash: self.receipt.event_hash,
            prev_hash: self.receipt.prev_hash,
        }
    }
}

/// Every observable fact of a stored event, the recomputed hash included: what the
/// model predicts and what the store's answers are reduced to for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    id: EventId,
    sequence: u64,
    version: u64,
    timestamp_ns: u64,
    kind: EventKind,
    coordinate: Coordinate,
    causation: Option<EventId>,
    correlation: Option<EventId>,
    encoding: Encoding,
    schema_version: u16,
    payload: Vec<u8>,
    event_hash: Hash,
    prev_hash: Hash,
}

impl From<&StoredEvent> for Seen {
    fn from(e: &StoredEvent) -> Self {
        Seen {
            id: e.id,
            sequence: e.sequence,
            version: e.version,
            timestamp_ns: e.timestamp_ns,
            kind: e.kind,
            coordinate: e.coordinate.clone(),
            causation: e.causation,
            correlation: e.correlation,
            encoding: e.encoding,
            schema_version: e.schema_version,
            payload: e.payload.clone(),
            event_hash: e.event_hash(),
            prev_hash: e.prev_hash,
        }
    }
}

fn seen(events: Vec<StoredEvent>) -> Vec<Seen> {
    events.iter().map(Seen::from).collect()
}

/// A store error reduced to what the model predicts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Failure {
    ReservedKind(EventKind),
    DuplicateKey(String),
    IdempotencyConflict {
        key: String,
        original: EventId,
    },
    VersionConflict {
        entity: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    UnknownCausation(EventId),
    Other(String),
}

fn classify(e: &Error) -> Failure {
    match e {
        Error::ReservedKind { kind } => Failure::ReservedKind(*kind),
        Error::DuplicateIdempotencyKey { key } => Failure::DuplicateKey(key.clone()),
        Error::IdempotencyConflict { key, original } => Failure::IdempotencyConflict {
            key: key.clone(),
            original: *original,
        },
        Error::VersionConflict {
            entity,
            expected,
            actual,
        } => Failure::VersionConflict {
            entity: entity.clone(),
            expected: *expected,
            actual: *actual,
        },
        Error::UnknownCausation { causation } => Failure::UnknownCausation(*causation),
        other => Failure::Other(other.to_string()),
    }
}

/// What the model says a request must do.
#[derive(Debug)]
enum Outcome {
    Fail(Failure),
    Replay(Vec<AppendReceipt>),
    Write,
}

#[derive(Debug, Default)]
struct Model {
    events: Vec<ModelEvent>,
}

fn admits(expected: ExpectedVersion, actual: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual.is_none(),
        ExpectedVersion::StreamExists => actual.is_some(),
        ExpectedVersion::Exact(v) => actual == Some(v),
    }
}

impl Model {
    /// The entity's latest version (`None`: no events).
    fn version(&self, entity: &str) -> Option<u64> {
        let count = self.events.iter().filter(|e| e.entity == entity).count() as u64;
        count.checked_sub(1)
    }

    /// The hash a new event of `entity` links to.
    fn head_hash(&self, entity: &str) -> Hash {
        self.events
            .iter()
            .rev()
            .find(|e| e.entity == entity)
            .map_or(Hash::ZERO, |e| e.receipt.event_hash)
    }

    fn by_id(&self, id: EventId) -> Option<&ModelEvent> {
        self.events.iter().find(|e| e.id() == id)
    }

    fn by_key(&self, key: &str) -> Option<&ModelEvent> {
        self.events.iter().find(|e| e.key == Some(key))
    }

    /// Decides what `request` must do, in the order the documented checks apply:
    /// request validation (reserved kinds, keys repeated within the batch), then
    /// idempotent replay, then the version and causation checks against the store.
    fn predict(&self, request: &Request) -> Outcome {
        let items = &request.items;
        let mut keys = HashSet::new();
        for r in items {
            if r.kind.category() == 0 {
                return Outcome::Fail(Failure::ReservedKind(r.kind));
            }
            if let Some(k) = r.key {
                if !keys.insert(k) {
                    return Outcome::Fail(Failure::DuplicateKey(k.to_string()));
                }
            }
        }

        let seen = |r: &Req| r.key.and_then(|k| self.by_key(k).map(|e| (k, e)));
        if let Some((first_key, first_event)) = items.iter().find_map(seen) {
            // Some key was used before: this must be a retry of the same content, item
            // for item (including the batch shape), or it is a conflict.
            let mut replayed: Vec<&ModelEvent> = Vec::new();
            for (i, r) in items.iter().enumerate() {
                let Some((key, original)) = seen(r) else {
                    return Outcome::Fail(Failure::IdempotencyConflict {
                        key: first_key.to_string(),
                        original: first_event.id(),
                    });
                };
                let cause = match r.cause {
                    Some(Cause::Event(id)) => Some(id),
                    Some(Cause::BatchItem(j)) => replayed.get(j).map(|e| e.id()),
                    None => None,
                };
                let same = original.entity == r.entity
                    && original.scope == r.scope
                    && original.kind == r.kind
                    && original.encoding == r.encoding
                    && original.schema == r.schema
                    && original.payload == r.payload
                    && original.causation == cause
                    && original.correlation == r.correlation
                    && original.continues == (i + 1 < items.len());
                if !same {
                    return Outcome::Fail(Failure::IdempotencyConflict {
                        key: key.to_string(),
                        original: original.id(),
                    });
                }
                replayed.push(original);
            }
            // The originals must have been one whole append: consecutive sequences,
            // the first not continuing an earlier batch.
            let first = replayed[0].receipt.sequence;
            let consecutive = replayed
                .iter()
                .enumerate()
                .all(|(i, e)| e.receipt.sequence == first + i as u64);
            let starts_append = first == 1 || !self.events[(first - 2) as usize].continues;
            if !(consecutive && starts_append) {
                return Outcome::Fail(Failure::IdempotencyConflict {
                    key: first_key.to_string(),
                    original: replayed[0].id(),
                });
            }
            return Outcome::Replay(replayed.iter().map(|e| e.receipt).collect());
        }

        let mut versions: HashMap<&str, Option<u64>> = HashMap::new();
        for r in items {
            let actual = *versions
                .entry(r.entity)
                .or_insert_with(|| self.version(r.entity));
            if !admits(r.expected, actual) {
                return Outcome::Fail(Failure::VersionConflict {
                    entity: r.entity.to_string(),
                    expected: r.expected,
                    actual,
                });
            }
            if let Some(Cause::Event(id)) = r.cause {
                if self.by_id(id).is_none() {
                    return Outcome::Fail(Failure::UnknownCausation(id));
                }
            }
            versions.insert(r.entity, Some(actual.map_or(0, |v| v + 1)));
        }
        Outcome::Write
    }

    /// Checks the receipts of a write the model predicted, then records its events.
    fn apply(
        &mut self,
        request: &Request,
        receipts: &[AppendReceipt],
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(receipts.len(), request.items.len(), "one receipt per item");
        for (i, (r, receipt)) in request.items.iter().zip(receipts).enumerate() {
            let sequence = self.events.len() as u64 + 1;
            prop_assert_eq!(receipt.sequence, sequence, "item {} sequence", i);
            let version = self.version(r.entity).map_or(0, |v| v + 1);
            prop_assert_eq!(receipt.version, version, "item {} version", i);
            prop_assert_eq!(
                receipt.prev_hash,
                self.head_hash(r.entity),
                "item {} prev_hash must be the entity's previous event hash",
                i
            );
            prop_assert_ne!(receipt.event_hash, Hash::ZERO);
            if let Some(last) = self.events.last() {
                prop_assert!(
                    receipt.event_id > last.id(),
                    "ids increase: {} after {}",
                    receipt.event_id,
                    last.id()
                );
                prop_assert!(receipt.timestamp_ns >= last.receipt.timestamp_ns);
            }
            let causation = match r.cause {
                Some(Cause::Event(id)) => Some(id),
                Some(Cause::BatchItem(j)) => Some(receipts[j].event_id),
                None => None,
            };
            self.events.push(ModelEvent {
                receipt: *receipt,
                entity: r.entity,
                scope: r.scope,
                coordinate: r.coordinate()?,
                kind: r.kind,
                encoding: r.encoding,
                schema: r.schema,
                payload: r.payload.clone(),
                causation,
                correlation: r.correlation,
                key: r.key,
                continues: request.batch && i + 1 < request.items.len(),
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// The harness: a store, the model, and the checks between them
// ---------------------------------------------------------------------------------

trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, TestCaseError>;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, TestCaseError> {
        self.map_err(|e| TestCaseError::fail(format!("{what}: {e}")))
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    policy: SyncPolicy,
    segment_size: u64,
}

/// Where the frames of the newest write lie: `[start, end)` of the last segment.
#[derive(Debug)]
struct LastWrite {
    path: PathBuf,
    start: u64,
    end: u64,
    first_event: usize,
    /// The index checkpoint as it was before the write (a crash during the write
    /// leaves that one, not the one a rotation or close wrote after it).
    checkpoint_before: Option<Vec<u8>>,
}

/// The segment files, sorted by number (their names are fixed-width hex).
fn segment_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>, TestCaseError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir.join("segments")).or_fail("list segments")? {
        let path = entry.or_fail("list segments")?.path();
        let len = fs::metadata(&path).or_fail("segment metadata")?.len();
        files.push((path, len));
    }
    files.sort();
    Ok(files)
}

fn last_segment(dir: &Path) -> Result<(PathBuf, u64), TestCaseError> {
    segment_files(dir)?
        .pop()
        .ok_or_else(|| TestCaseError::fail("no segment file"))
}

/// The `header_len` field of a segment header (bytes 10..12): where records start.
fn header_len(path: &Path) -> Result<u64, TestCaseError> {
    let bytes = fs::read(path).or_fail("read segment")?;
    prop_assert!(bytes.len() >= 12, "segment shorter than its header");
    Ok(u64::from(u16::from_le_bytes([bytes[10], bytes[11]])))
}

struct Harness {
    // Declared before the directory so that it is dropped (and synced) first.
    store: Option<Store>,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: Config,
    model: Model,
    /// Requests the store accepted, for `Retry`.
    history: Vec<Request>,
    last_write: Option<LastWrite>,
    /// Ids of events a crash took away.
    dropped: Vec<EventId>,
    regions: Vec<RegionGen>,
    trace: Vec<String>,
}

impl Harness {
    fn new(config: Config, regions: Vec<RegionGen>) -> Result<Self, TestCaseError> {
        let tmp = tempfile::tempdir().or_fail("tempdir")?;
        let dir = tmp.path().to_path_buf();
        let mut h = Harness {
            store: None,
            _tmp: tmp,
            dir,
            config,
            model: Model::default(),
            history: Vec::new(),
            last_write: None,
            dropped: Vec::new(),
            regions: fixed_regions().into_iter().chain(regions).collect(),
            trace: Vec::new(),
        };
        h.open()?;
        let report = h.store()?.open_report();
        prop_assert!(report.created);
        prop_assert_eq!(report.events, 0);
        h.check_all()?;
        Ok(h)
    }

    fn store(&self) -> Result<&Store, TestCaseError> {
        self.store
            .as_ref()
            .ok_or_else(|| TestCaseError::fail("store is closed"))
    }

    fn open(&mut self) -> Result<(), TestCaseError> {
        let store = Store::builder(&self.dir)
            .sync_policy(self.config.policy)
            .segment_size(self.config.segment_size)
            .open()
            .or_fail("open")?;
        self.store = Some(store);
        Ok(())
    }

    fn close(&mut self) -> Result<(), TestCaseError> {
        match self.store.take() {
            Some(store) => store.close().or_fail("close"),
            None => Ok(()),
        }
    }

    /// Runs `ops`, checking everything after each one. A failure names the step and
    /// carries the trace of what ran before it.
    fn run(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for (i, op) in ops.iter().enumerate() {
            let result = self.step(op).and_then(|()| self.check_all());
            if let Err(e) = result {
                let message = match e {
                    TestCaseError::Fail(m) | TestCaseError::Reject(m) => m.to_string(),
                };
                return Err(TestCaseError::fail(format!(
                    "step {i} failed: {message}\n  op: {op:?}\n  config: {}\n  \
                     model holds {} events\n  trace:\n    {}",
                    self.config,
                    self.model.events.len(),
                    self.trace.join("\n    ")
                )));
            }
        }
        if std::env::var("MODEL_TRACE").is_ok() {
            eprintln!("TRACE {}\n    {}", self.config, self.trace.join("\n    "));
        }
        self.close()
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(g) => {
                let request = self.resolve(std::slice::from_ref(g), false);
                self.execute(request)
            }
            Op::Batch { items, keyed } => {
                let mut request = self.resolve(items, true);
                if let Some(k) = keyed {
                    for (i, r) in request.items.iter_mut().enumerate() {
                        r.key = Some(KEYS[(k + i) % KEYS.len()]);
                    }
                }
                self.execute(request)
            }
            Op::Retry { pick, mutate } => {
                if self.history.is_empty() {
                    self.note("retry: nothing to retry".into());
                    self.last_write = None;
                    return Ok(());
                }
                let mut request = self.history[pick % self.history.len()].clone();
                if let Some(m) = mutate {
                    let n = request.items.len();
                    let item = &mut request.items[(pick / self.history.len()) % n];
                    self.mutate(item, *m);
                }
                self.execute(request)
            }
            Op::Reopen => {
                self.last_write = None;
                self.close()?;
                self.open()?;
                let report = self.store()?.open_report().clone();
                prop_assert_eq!(report.tail_cut, None, "a clean close leaves no tail");
                prop_assert_eq!(report.events, self.model.events.len() as u64);
                prop_assert!(!report.created);
                self.note("reopen".into());
                Ok(())
            }
            Op::Crash { cut } => self.crash(*cut),
        }
    }

    fn mutate(&self, r: &mut Req, m: Mutation) {
        match m {
            Mutation::Payload => r.payload.push(0xA5),
            Mutation::Encoding => {
                r.encoding = match r.encoding {
                    Encoding::Opaque => Encoding::Json,
                    _ => Encoding::Opaque,
                }
            }
            Mutation::Schema => r.schema += 1,
            Mutation::Scope => {
                r.scope = if r.scope == SCOPES[0] {
                    SCOPES[1]
                } else {
                    SCOPES[0]
                }
            }
            Mutation::Kind => {
                r.kind = EventKind::custom(r.kind.category(), (r.kind.type_id() + 1) % 3);
            }
            Mutation::Causation => {
                r.cause = match (r.cause, self.model.events.first()) {
                    (Some(_), _) | (None, None) => None,
                    (None, Some(e)) => Some(Cause::Event(e.id())),
                }
            }
            Mutation::Correlation => {
                r.correlation = match r.correlation {
                    Some(_) => None,
                    None => Some(EventId::from_u128(FOREIGN[0])),
                }
            }
            Mutation::ExpectedVersion => r.expected = ExpectedVersion::Exact(999),
        }
    }

    fn note(&mut self, line: String) {
        self.trace.push(line);
    }

    /// Resolves generated items against the model's current state.
    fn resolve(&self, gens: &[ItemGen], batch: bool) -> Request {
        let events = &self.model.events;
        let mut versions: HashMap<&str, Option<u64>> = HashMap::new();
        let mut items = Vec::with_capacity(gens.len());
        for (pos, g) in gens.iter().enumerate() {
            let entity = ENTITIES[g.entity % ENTITIES.len()];
            let current = *versions
                .entry(entity)
                .or_insert_with(|| self.model.version(entity));
            versions.insert(entity, Some(current.map_or(0, |v| v + 1)));
            let expected = match g.expected {
                ExpGen::Any => ExpectedVersion::Any,
                ExpGen::NoStream => ExpectedVersion::NoStream,
                ExpGen::StreamExists => ExpectedVersion::StreamExists,
                ExpGen::Exact(v) => ExpectedVersion::Exact(v),
                ExpGen::Current => {
                    current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
                }
            };
            let cause = match g.cause {
                CauseGen::None => None,
                CauseGen::Existing(i) => {
                    (!events.is_empty()).then(|| Cause::Event(events[i % events.len()].id()))
                }
                CauseGen::Bogus(x) => Some(Cause::Event(EventId::from_u128(x))),
                CauseGen::Item(j) => (batch && pos > 0).then(|| Cause::BatchItem(j % pos)),
            };
            let correlation = match g.correlation {
                CorrGen::None => None,
                CorrGen::Existing(i) => (!events.is_empty()).then(|| events[i % events.len()].id()),
                CorrGen::Foreign(i) => Some(EventId::from_u128(FOREIGN[i % FOREIGN.len()])),
            };
            items.push(Req {
                entity,
                scope: SCOPES[g.scope % SCOPES.len()],
                kind: EventKind::custom(g.category, g.type_id),
                encoding: ENCODINGS[g.encoding % ENCODINGS.len()],
                schema: g.schema,
                payload: g.payload.clone(),
                expected,
                cause,
                correlation,
                key: g.key.map(|k| KEYS[k % KEYS.len()]),
            });
        }
        Request { items, batch }
    }

    /// Sends `request` to the store and holds the result against the model's prediction.
    fn execute(&mut self, request: Request) -> Result<(), TestCaseError> {
        self.last_write = None;
        let predicted = self.model.predict(&request);
        let (before_path, before_len) = last_segment(&self.dir)?;
        let checkpoint_before = fs::read(self.dir.join("index.ckpt")).ok();
        let store = self.store()?;
        let result = if request.batch {
            let mut batch = Batch::new();
            for r in &request.items {
                batch.push_raw(&r.coordinate()?, r.kind, r.raw(), r.options());
            }
            store.append_batch(&batch)
        } else {
            let r = &request.items[0];
            store
                .append_raw(&r.coordinate()?, r.kind, r.raw(), r.options())
                .map(|receipt| vec![receipt])
        };
        let (after_path, after_len) = last_segment(&self.dir)?;
        let what = if request.batch {
            format!("batch of {}", request.items.len())
        } else {
            "append".to_string()
        };
        let line = match (predicted, result) {
            (Outcome::Fail(expected), Err(e)) => {
                prop_assert_eq!(classify(&e), expected, "error: {}", e);
                prop_assert_eq!(
                    (&after_path, after_len),
                    (&before_path, before_len),
                    "a rejected request writes nothing"
                );
                self.note(format!("{what}: rejected: {e}"));
                return Ok(());
            }
            (Outcome::Replay(expected), Ok(receipts)) => {
                prop_assert_eq!(
                    &receipts,
                    &expected,
                    "a retry returns the original receipts"
                );
                prop_assert_eq!(
                    (&after_path, after_len),
                    (&before_path, before_len),
                    "an idempotent retry writes nothing"
                );
                format!("{what}: replayed sequences {:?}", seqs(&receipts))
            }
            (Outcome::Write, Ok(receipts)) => {
                let first_event = self.model.events.len();
                self.model.apply(&request, &receipts)?;
                let start = if after_path == before_path {
                    before_len
                } else {
                    header_len(&after_path)?
                };
                prop_assert!(after_len > start, "a write grows the last segment");
                self.last_write = Some(LastWrite {
                    path: after_path.clone(),
                    start,
                    end: after_len,
                    first_event,
                    checkpoint_before,
                });
                format!(
                    "{what}: wrote sequences {:?} at {}[{start}..{after_len})",
                    seqs(&receipts),
                    after_path
                        .file_name()
                        .map_or(String::new(), |n| n.to_string_lossy().to_string())
                )
            }
            (expected, Ok(receipts)) => {
                return Err(TestCaseError::fail(format!(
                    "{what}: model expected {expected:?}, store accepted it with {receipts:?}\n  \
                     request: {request:?}"
                )))
            }
            (expected, Err(e)) => {
                return Err(TestCaseError::fail(format!(
                    "{what}: model expected {expected:?}, store failed: {e} ({e:?})\n  \
                     request: {request:?}"
                )))
            }
        };
        self.note(line);
        self.history.push(request);
        Ok(())
    }

    /// Tears the frames of the newest write, then reopens: the torn write must vanish
    /// whole and everything before it stay.
    fn crash(&mut self, cut: u16) -> Result<(), TestCaseError> {
        let Some(w) = self.last_write.take() else {
            self.note("crash: no write to tear, no-op".into());
            return Ok(());
        };
        self.close()?;
        let frames = w.end - w.start;
        let k = match cut % 4 {
            0 => frames,
            1 => 1,
            _ => 1 + u64::from(cut / 4) % frames,
        };
        prop_assert!((1..=frames).contains(&k));
        let file = OpenOptions::new()
            .write(true)
            .open(&w.path)
            .or_fail("open segment to tear")?;
        file.set_len(w.end - k).or_fail("truncate segment")?;
        drop(file);
        let checkpoint = self.dir.join("index.ckpt");
        match &w.checkpoint_before {
            Some(bytes) => fs::write(&checkpoint, bytes).or_fail("restore checkpoint")?,
            None => {
                let _ = fs::remove_file(&checkpoint);
            }
        }
        let dropped: Vec<EventId> = self
            .model
            .events
            .drain(w.first_event..)
            .map(|e| e.id())
            .collect();
        self.note(format!(
            "crash: cut {k} of {frames} frame bytes from {} (len {} -> {}), dropping {} events",
            w.path.display(),
            w.end,
            w.end - k,
            dropped.len()
        ));
        self.dropped.extend(dropped);
        self.open()?;
        let report = self.store()?.open_report().clone();
        prop_assert_eq!(report.events, self.model.events.len() as u64);
        if k == frames {
            prop_assert_eq!(report.tail_cut, None, "cut on a record boundary");
        } else {
            let tail = report
                .tail_cut
                .ok_or_else(|| TestCaseError::fail("a torn write must be reported"))?;
            prop_assert_eq!(&tail.path, &w.path);
            prop_assert_eq!(
                tail.offset,
                w.start,
                "the cut starts where the write started"
            );
            prop_assert_eq!(tail.bytes, frames - k);
        }
        let len = fs::metadata(&w.path).or_fail("segment metadata")?.len();
        prop_assert_eq!(
            len,
            w.start,
            "reopen truncates to the start of the torn write"
        );
        Ok(())
    }

    /// Compares every read API with the model.
    fn check_all(&self) -> Result<(), TestCaseError> {
        let store = self.store()?;
        let events = &self.model.events;
        let n = events.len() as u64;

        let stats = store.stats().or_fail("stats")?;
        prop_assert_eq!(stats.events, n, "stats.events");
        prop_assert_eq!(stats.visible_sequence, n);
        prop_assert_eq!(stats.written_sequence, n);
        prop_assert!(stats.durable_sequence <= stats.written_sequence);
        if self.config.policy == SyncPolicy::Always {
            prop_assert_eq!(stats.durable_sequence, n);
        }
        let entities: HashSet<&str> = events.iter().map(|e| e.entity).collect();
        let scopes: HashSet<&str> = events.iter().map(|e| e.scope).collect();
        prop_assert_eq!(stats.entities, entities.len(), "stats.entities");
        prop_assert_eq!(stats.scopes, scopes.len(), "stats.scopes");
        let files = segment_files(&self.dir)?;
        prop_assert_eq!(stats.segments, files.len());
        prop_assert_eq!(stats.segment_bytes, files.iter().map(|f| f.1).sum::<u64>());

        // The chain as the receipts describe it: versions from 0, prev_hash linking to
        // the entity's previous event hash, ids increasing, hashes distinct.
        let mut heads: HashMap<&str, (u64, Hash)> = HashMap::new();
        let mut hashes = HashSet::new();
        for (i, e) in events.iter().enumerate() {
            let r = &e.receipt;
            prop_assert_eq!(r.sequence, i as u64 + 1);
            let (version, prev) = heads
                .get(e.entity)
                .map_or((0, Hash::ZERO), |&(v, h)| (v + 1, h));
            prop_assert_eq!(r.version, version);
            prop_assert_eq!(r.prev_hash, prev);
            heads.insert(e.entity, (r.version, r.event_hash));
            prop_assert!(hashes.insert(r.event_hash), "event hashes are distinct");
            if i > 0 {
                prop_assert!(r.event_id > events[i - 1].id());
            }
        }

        for e in events {
            let got = store.get(e.id()).or_fail("get")?;
            prop_assert_eq!(
                got.as_ref().map(Seen::from),
                Some(e.expected()),
                "get({})",
                e.id()
            );
        }
        let mut unknown: Vec<EventId> = FOREIGN.iter().map(|&x| EventId::from_u128(x)).collect();
        unknown.push(EventId::from_u128(0));
        unknown.push(EventId::from_u128(u128::MAX));
        // Ids lost with a torn tail are never handed out again (the id generator skips
        // a random gap after reopen), so every one of them must stay unknown.
        for &id in &self.dropped {
            prop_assert!(
                self.model.by_id(id).is_none(),
                "lost id {} was reissued",
                id
            );
        }
        unknown.extend(self.dropped.iter().copied());
        for &id in &unknown {
            prop_assert_eq!(store.get(id).or_fail("get")?, None, "get of unknown {}", id);
        }

        for entity in EXACT_NAMES {
            let want: Vec<Seen> = events
                .iter()
                .filter(|e| e.entity == entity)
                .map(ModelEvent::expected)
                .collect();
            prop_assert_eq!(
                seen(store.stream(entity).or_fail("stream")?),
                want,
                "stream({:?})",
                entity
            );
        }

        for region in &self.regions {
            self.check_region(store, region)?;
        }
        self.check_catalogue(store)?;

        let ids = events.iter().map(ModelEvent::id).chain(unknown);
        for id in ids {
            let effects: Vec<Seen> = events
                .iter()
                .filter(|e| e.causation == Some(id))
                .map(ModelEvent::expected)
                .collect();
            prop_assert_eq!(
                seen(store.effects(id).or_fail("effects")?),
                effects,
                "effects({})",
                id
            );
            let correlated: Vec<Seen> = events
                .iter()
                .filter(|e| e.correlation == Some(id))
                .map(ModelEvent::expected)
                .collect();
            prop_assert_eq!(
                seen(store.correlated(id).or_fail("correlated")?),
                correlated,
                "correlated({})",
                id
            );
        }
        Ok(())
    }

    /// One region: the whole answer, then page by page.
    fn check_region(&self, store: &Store, rg: &RegionGen) -> Result<(), TestCaseError> {
        let region = rg.build();
        let want: Vec<Seen> = self
            .model
            .events
            .iter()
            .filter(|e| rg.matches(e))
            .map(ModelEvent::expected)
            .collect();
        let all = seen(store.query(&region, 0, usize::MAX).or_fail("query")?);
        prop_assert_eq!(&all, &want, "query({:?})", rg);
        prop_assert!(store.query(&region, 0, 0).or_fail("query")?.is_empty());

        let mut after = 0;
        let mut pages: Vec<Seen> = Vec::new();
        loop {
            let page = seen(store.query(&region, after, rg.limit).or_fail("query")?);
            let expected: Vec<&Seen> = want
                .iter()
                .filter(|e| e.sequence > after)
                .take(rg.limit)
                .collect();
            prop_assert_eq!(
                page.iter().collect::<Vec<_>>(),
                expected,
                "page after {} of {:?}",
                after,
                rg
            );
            let Some(last) = page.last() else { break };
            after = last.sequence;
            pages.extend(page);
        }
        prop_assert_eq!(&pages, &want, "pages of {:?} concatenated", rg);

        // Newest first, whole and page by page, and the count.
        let newest: Vec<Seen> = want.iter().rev().cloned().collect();
        let all = seen(
            store
                .query_reverse(&region, u64::MAX, usize::MAX)
                .or_fail("reverse")?,
        );
        prop_assert_eq!(&all, &newest, "query_reverse({:?})", rg);
        let mut before = u64::MAX;
        let mut pages: Vec<Seen> = Vec::new();
        loop {
            let page = seen(
                store
                    .query_reverse(&region, before, rg.limit)
                    .or_fail("reverse")?,
            );
            let Some(last) = page.last() else { break };
            before = last.sequence;
            pages.extend(page);
        }
        prop_assert_eq!(&pages, &newest, "reverse pages of {:?}", rg);
        prop_assert_eq!(store.count(&region).or_fail("count")?, want.len() as u64);

        // A time range: every event stamped at or after the middle event's time and
        // before the last event's.
        if let (Some(mid), Some(last)) = (want.get(want.len() / 2), want.last()) {
            let (from, to) = (mid.timestamp_ns, last.timestamp_ns);
            let timed: Vec<Seen> = want
                .iter()
                .filter(|e| e.timestamp_ns >= from && e.timestamp_ns < to)
                .cloned()
                .collect();
            let got = seen(
                store
                    .query(&region.clone().times(from..to), 0, usize::MAX)
                    .or_fail("times")?,
            );
            prop_assert_eq!(got, timed, "{:?} in [{}, {})", rg, from, to);
        }
        Ok(())
    }

    /// Entity versions, the entity list under each prefix, scopes and kinds with their
    /// counts, and lookup by sequence, against the model.
    fn check_catalogue(&self, store: &Store) -> Result<(), TestCaseError> {
        let events = &self.model.events;
        for entity in EXACT_NAMES {
            prop_assert_eq!(store.entity_version(entity), self.model.version(entity));
        }
        for prefix in PREFIXES.iter().chain(&[""]) {
            let mut want: Vec<(String, u64, u64, u64)> = Vec::new();
            for entity in ENTITIES {
                if !(prefix.is_empty() || under_prefix(prefix, entity)) {
                    continue;
                }
                let mine: Vec<&ModelEvent> = events.iter().filter(|e| e.entity == entity).collect();
                if let (Some(first), Some(last)) = (mine.first(), mine.last()) {
                    want.push((
                        entity.to_string(),
                        mine.len() as u64,
                        first.receipt.sequence,
                        last.receipt.sequence,
                    ));
                }
            }
            want.sort();
            let got: Vec<(String, u64, u64, u64)> = store
                .entities(prefix, None, usize::MAX)
                .into_iter()
                .map(|i| {
                    assert_eq!(i.version + 1, i.events);
                    (i.entity, i.events, i.first_sequence, i.last_sequence)
                })
                .collect();
            prop_assert_eq!(&got, &want, "entities({:?})", prefix);
            // Paged two at a time.
            let mut paged = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store.entities(prefix, after.as_deref(), 2);
                let Some(last) = page.last() else { break };
                after = Some(last.entity.clone());
                paged.extend(page.into_iter().map(|i| i.entity));
            }
            let names: Vec<String> = want.iter().map(|w| w.0.clone()).collect();
            prop_assert_eq!(paged, names, "entities({:?}) paged", prefix);
        }
        let mut scopes: std::collections::BTreeMap<&str, u64> = Default::default();
        let mut kinds: std::collections::BTreeMap<EventKind, u64> = Default::default();
        for e in events {
            *scopes.entry(e.scope).or_default() += 1;
            *kinds.entry(e.kind).or_default() += 1;
        }
        let got: Vec<(String, u64)> = store
            .scopes()
            .into_iter()
            .map(|s| (s.scope, s.events))
            .collect();
        let want: Vec<(String, u64)> = scopes
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect();
        prop_assert_eq!(got, want, "scopes()");
        let got: Vec<(EventKind, u64)> = store
            .kinds()
            .into_iter()
            .map(|k| (k.kind, k.events))
            .collect();
        prop_assert_eq!(got, kinds.into_iter().collect::<Vec<_>>(), "kinds()");
        if let Some(e) = events.get(events.len() / 2) {
            let got = store
                .get_sequence(e.receipt.sequence)
                .or_fail("get_sequence")?;
            prop_assert_eq!(got.map(|g| Seen::from(&g)), Some(e.expected()));
        }
        let past = events.last().map_or(1, |e| e.receipt.sequence + 1);
        prop_assert_eq!(store.get_sequence(past).or_fail("get_sequence")?, None);
        prop_assert_eq!(store.get_sequence(0).or_fail("get_sequence")?, None);
        Ok(())
    }
}

fn seqs(receipts: &[AppendReceipt]) -> Vec<u64> {
    receipts.iter().map(|r| r.sequence).collect()
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}, segment_size {}", self.policy, self.segment_size)
    }
}

fn config_gen(policy: SyncPolicy) -> impl Strategy<Value = Config> {
    prop_oneof![Just(4096u64), Just(StoreBuilder::DEFAULT_SEGMENT_SIZE)].prop_map(
        move |segment_size| Config {
            policy,
            segment_size,
        },
    )
}

proptest! {
    // 64 cases in the test suite; `MODEL_CASES=<n>` for longer soak runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model_sync_always(
        config in config_gen(SyncPolicy::Always),
        regions in prop::collection::vec(region_gen(), 2..5),
        ops in prop::collection::vec(op_gen(), 1..40),
    ) {
        Harness::new(config, regions)?.run(&ops)?;
    }

    #[test]
    fn store_matches_model_sync_never(
        config in config_gen(SyncPolicy::Never),
        regions in prop::collection::vec(region_gen(), 2..5),
        ops in prop::collection::vec(op_gen(), 1..40),
    ) {
        Harness::new(config, regions)?.run(&ops)?;
    }
}

// ---------------------------------------------------------------------------------
// Hand-written sequences
// ---------------------------------------------------------------------------------

const KIND: EventKind = EventKind::custom(1, 1);

// The helpers below serve the tests that follow and may panic like them.

#[allow(clippy::unwrap_used)]
fn at(entity: &str) -> Coordinate {
    Coordinate::new(entity, "s1").unwrap()
}

fn keyed(key: &str) -> AppendOptions {
    AppendOptions::default().idempotency_key(key)
}

#[allow(clippy::unwrap_used)]
fn append(store: &Store, entity: &str, bytes: &[u8], options: AppendOptions) -> AppendReceipt {
    store
        .append_raw(&at(entity), KIND, RawPayload::opaque(bytes), options)
        .unwrap()
}

#[allow(clippy::unwrap_used)]
fn last_segment_len(dir: &Path) -> u64 {
    last_segment(dir).unwrap().1
}

/// A plain item for harness-driven sequences.
fn plain(entity: usize, payload_len: usize) -> ItemGen {
    ItemGen {
        entity,
        scope: 0,
        category: 1,
        type_id: 0,
        encoding: 0,
        schema: 1,
        payload: vec![0x5A; payload_len],
        expected: ExpGen::Any,
        cause: CauseGen::None,
        correlation: CorrGen::None,
        key: None,
    }
}

#[test]
fn idempotent_batch_retry_returns_the_original_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let order = at("order:1");
    let build = |paid: &[u8]| {
        let mut b = Batch::new();
        b.push_raw(&order, KIND, RawPayload::opaque(b"placed"), keyed("place"));
        b.push_raw(
            &order,
            EventKind::custom(1, 2),
            RawPayload::opaque(paid),
            keyed("pay").caused_by_item(0),
        );
        b
    };
    let store = Store::open(dir.path()).unwrap();
    let first = store.append_batch(&build(b"paid")).unwrap();
    let len = last_segment_len(dir.path());
    assert_eq!(store.append_batch(&build(b"paid")).unwrap(), first);
    assert_eq!(store.stats().unwrap().events, 2);
    assert_eq!(last_segment_len(dir.path()), len, "a retry writes nothing");
    store.close().unwrap();

    // The keys survive a reopen.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.append_batch(&build(b"paid")).unwrap(), first);

    // Same key, different content.
    match store.append_batch(&build(b"refunded")) {
        Err(Error::IdempotencyConflict { key, original }) => {
            assert_eq!(key, "pay");
            assert_eq!(original, first[1].event_id);
        }
        other => panic!("expected IdempotencyConflict, got {other:?}"),
    }
    // Same first item, but not the same batch: the retried batch ended after it.
    let mut head = Batch::new();
    head.push_raw(&order, KIND, RawPayload::opaque(b"placed"), keyed("place"));
    match store.append_batch(&head) {
        Err(Error::IdempotencyConflict { key, original }) => {
            assert_eq!(key, "place");
            assert_eq!(original, first[0].event_id);
        }
        other => panic!("expected IdempotencyConflict, got {other:?}"),
    }
    assert_eq!(store.stats().unwrap().events, 2);
    assert_eq!(last_segment_len(dir.path()), len);
}

#[test]
fn batch_mixing_a_used_key_with_new_items_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let used = append(&store, "x", b"one", keyed("k1"));
    let len = last_segment_len(dir.path());
    let mut b = Batch::new();
    b.push_raw(&at("x"), KIND, RawPayload::opaque(b"new"), keyed("k2"));
    b.push_raw(&at("x"), KIND, RawPayload::opaque(b"one"), keyed("k1"));
    match store.append_batch(&b) {
        Err(Error::IdempotencyConflict { key, original }) => {
            assert_eq!(key, "k1");
            assert_eq!(original, used.event_id);
        }
        other => panic!("expected IdempotencyConflict, got {other:?}"),
    }
    assert_eq!(last_segment_len(dir.path()), len);
    // `k2` was not taken by the rejected batch.
    let fresh = append(&store, "x", b"two", keyed("k2"));
    assert_eq!(fresh.sequence, 2);
}

#[test]
fn expected_version_inside_a_batch_sees_earlier_items() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let expect = AppendOptions::expect;
    let mut b = Batch::new();
    b.push_raw(
        &at("x"),
        KIND,
        RawPayload::opaque(b"0"),
        expect(ExpectedVersion::NoStream),
    );
    b.push_raw(
        &at("x"),
        KIND,
        RawPayload::opaque(b"1"),
        expect(ExpectedVersion::Exact(0)),
    );
    b.push_raw(
        &at("y"),
        KIND,
        RawPayload::opaque(b"0"),
        expect(ExpectedVersion::NoStream),
    );
    b.push_raw(
        &at("x"),
        KIND,
        RawPayload::opaque(b"2"),
        expect(ExpectedVersion::Exact(1)),
    );
    let receipts = store.append_batch(&b).unwrap();
    let versions: Vec<u64> = receipts.iter().map(|r| r.version).collect();
    assert_eq!(versions, vec![0, 1, 0, 2]);
    assert_eq!(receipts[1].prev_hash, receipts[0].event_hash);
    assert_eq!(receipts[3].prev_hash, receipts[1].event_hash);
    assert_eq!(receipts[2].prev_hash, Hash::ZERO);

    // The second item expects the state before the first: rejected, nothing written.
    let mut b = Batch::new();
    b.push_raw(
        &at("z"),
        KIND,
        RawPayload::opaque(b"0"),
        expect(ExpectedVersion::NoStream),
    );
    b.push_raw(
        &at("z"),
        KIND,
        RawPayload::opaque(b"0"),
        expect(ExpectedVersion::NoStream),
    );
    match store.append_batch(&b) {
        Err(Error::VersionConflict {
            entity,
            expected,
            actual,
        }) => {
            assert_eq!(entity, "z");
            assert_eq!(expected, ExpectedVersion::NoStream);
            assert_eq!(actual, Some(0));
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    let mut b = Batch::new();
    b.push_raw(
        &at("x"),
        KIND,
        RawPayload::opaque(b"3"),
        expect(ExpectedVersion::Exact(2)),
    );
    b.push_raw(
        &at("x"),
        KIND,
        RawPayload::opaque(b"4"),
        expect(ExpectedVersion::Exact(2)),
    );
    match store.append_batch(&b) {
        Err(Error::VersionConflict {
            entity,
            expected,
            actual,
        }) => {
            assert_eq!(entity, "x");
            assert_eq!(expected, ExpectedVersion::Exact(2));
            assert_eq!(actual, Some(3));
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    assert_eq!(store.stats().unwrap().events, 4);
    assert!(store.stream("z").unwrap().is_empty());
    assert_eq!(store.stream("x").unwrap().len(), 3);
}

#[test]
fn crash_frees_the_idempotency_key_of_the_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Store::builder(dir.path())
            .sync_policy(SyncPolicy::Never)
            .open()
            .unwrap()
    };
    let store = open();
    let kept = append(&store, "acct", b"one", keyed("k-a"));
    let start = last_segment_len(dir.path());
    let lost = append(&store, "acct", b"two", keyed("k-b"));
    let (path, end) = last_segment(dir.path()).unwrap();
    store.close().unwrap();
    // The process "died" before the last byte of the second append reached the disk,
    // so before close wrote a checkpoint covering it.
    fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(end - 1)
        .unwrap();

    let store = open();
    let cut = store.open_report().tail_cut.clone().expect("a torn tail");
    assert_eq!((cut.offset, cut.bytes), (start, end - 1 - start));
    assert_eq!(store.get(lost.event_id).unwrap(), None);
    assert_eq!(store.stream("acct").unwrap().len(), 1);

    // The lost event's key is free again: new content under it is a new event.
    let again = append(&store, "acct", b"three", keyed("k-b"));
    assert_eq!((again.sequence, again.version), (2, 1));
    assert_eq!(again.prev_hash, kept.event_hash);
    // Both keys now replay what the store holds.
    assert_eq!(append(&store, "acct", b"three", keyed("k-b")), again);
    assert_eq!(append(&store, "acct", b"one", keyed("k-a")), kept);
    let payloads: Vec<Vec<u8>> = store
        .stream("acct")
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(payloads, vec![b"one".to_vec(), b"three".to_vec()]);
}

#[test]
fn batch_torn_on_a_frame_boundary_disappears_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    let kept = append(&store, "x", b"kept", keyed("k0"));
    let start = last_segment_len(dir.path());
    let mut b = Batch::new();
    for (i, key) in ["k1", "k2", "k3"].into_iter().enumerate() {
        b.push_raw(
            &at("x"),
            KIND,
            RawPayload::opaque(&[i as u8; 40]),
            keyed(key),
        );
    }
    store.append_batch(&b).unwrap();
    let (path, _) = last_segment(dir.path()).unwrap();
    store.close().unwrap();
    // The process died before close wrote a checkpoint, with the first two frames of
    // the batch intact: only its final frame is missing.
    fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let bytes = fs::read(&path).unwrap();
    let frame_len = |at: u64| {
        let at = at as usize + 4;
        u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()))
    };
    let second = start + frame_len(start);
    let boundary = second + frame_len(second);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(boundary)
        .unwrap();

    let store = Store::open(dir.path()).unwrap();
    let cut = store
        .open_report()
        .tail_cut
        .clone()
        .expect("an unfinished batch");
    assert_eq!(cut.offset, start);
    assert_eq!(cut.records, 2);
    let receipts: Vec<AppendReceipt> = store
        .stream("x")
        .unwrap()
        .iter()
        .map(StoredEvent::receipt)
        .collect();
    assert_eq!(receipts, vec![kept]);
    // Every key of the lost batch is free again.
    let mut again = Batch::new();
    for key in ["k3", "k2", "k1"] {
        again.push_raw(&at("x"), KIND, RawPayload::opaque(b"new"), keyed(key));
    }
    let receipts = store.append_batch(&again).unwrap();
    assert_eq!(receipts[0].sequence, 2);
}

#[test]
fn reserved_kind_anywhere_in_a_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, "x", b"first", AppendOptions::default());
    let len = last_segment_len(dir.path());
    let reserved = EventKind::custom(0, 7);
    let mut b = Batch::new();
    b.push_raw(&at("x"), KIND, RawPayload::opaque(b"a"), keyed("k"));
    b.push_raw(
        &at("y"),
        KIND,
        RawPayload::opaque(b"b"),
        AppendOptions::default(),
    );
    b.push_raw(
        &at("x"),
        reserved,
        RawPayload::opaque(b"c"),
        AppendOptions::default(),
    );
    match store.append_batch(&b) {
        Err(Error::ReservedKind { kind }) => assert_eq!(kind, reserved),
        other => panic!("expected ReservedKind, got {other:?}"),
    }
    assert_eq!(last_segment_len(dir.path()), len);
    assert_eq!(store.stats().unwrap().events, 1);
    // Nothing of the rejected batch was reserved either: its key and versions are free.
    let next = append(&store, "x", b"a", keyed("k"));
    assert_eq!((next.sequence, next.version), (2, 1));
}

#[test]
fn entity_prefix_matches_on_colon_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for entity in ENTITIES {
        append(&store, entity, entity.as_bytes(), AppendOptions::default());
    }
    let entities = |region: Region| -> Vec<String> {
        store
            .query(&region, 0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.coordinate.entity().to_string())
            .collect()
    };
    assert_eq!(
        entities(Region::all().entity_prefix("a")),
        ["a", "a:1", "a:2"]
    );
    assert_eq!(entities(Region::all().entity_prefix("a:")), ["a:1", "a:2"]);
    assert_eq!(entities(Region::all().entity_prefix("ab")), ["ab"]);
    assert_eq!(entities(Region::all().entity_prefix("b")), ["b:1"]);
    assert!(entities(Region::all().entity_prefix("c")).is_empty());
}

/// A write that rotates to a fresh segment, then torn: the new segment keeps its
/// header, loses every frame, and the store carries on in it.
#[test]
fn model_crash_right_after_rotation() {
    for policy in [SyncPolicy::Always, SyncPolicy::Never] {
        // cut % 4: 0 tears every frame, 1 one byte, otherwise 1 + (cut / 4) % frames.
        for cut in [0u16, 1, 2, 4 * 700 + 3] {
            for batch in [false, true] {
                let big = |entity| plain(entity, 1200);
                let mut ops: Vec<Op> = (0..3).map(|e| Op::Append(big(e))).collect();
                ops.push(if batch {
                    Op::Batch {
                        items: vec![big(0), plain(1, 10), big(3)],
                        keyed: Some(0),
                    }
                } else {
                    Op::Append(big(4))
                });
                ops.push(Op::Crash { cut });
                ops.push(Op::Batch {
                    items: vec![plain(0, 5), plain(4, 5)],
                    keyed: Some(0),
                });
                ops.push(Op::Reopen);
                ops.push(Op::Retry {
                    pick: 4,
                    mutate: None,
                });
                let config = Config {
                    policy,
                    segment_size: 4096,
                };
                let mut h = Harness::new(config, Vec::new()).unwrap();
                h.run(&ops).unwrap();
                assert!(
                    h.trace[3].contains("0000000000000002.seg[64.."),
                    "the fourth write must rotate: {:#?}",
                    h.trace
                );
            }
        }
    }
}

/// A crash frees the key of the torn write; new content takes it, and a retry of the
/// lost request then conflicts with the new owner instead of resurrecting the old one.
#[test]
fn model_crash_then_reuse_of_a_freed_key() {
    let with_key = |entity, len, key| ItemGen {
        key: Some(key),
        ..plain(entity, len)
    };
    let ops = vec![
        Op::Append(with_key(0, 3, 0)),
        Op::Append(with_key(1, 4, 1)),
        Op::Crash { cut: 2 },
        Op::Append(with_key(2, 9, 1)),
        Op::Retry {
            pick: 1,
            mutate: None,
        },
        Op::Retry {
            pick: 0,
            mutate: None,
        },
    ];
    for policy in [SyncPolicy::Always, SyncPolicy::Never] {
        let config = Config {
            policy,
            segment_size: StoreBuilder::DEFAULT_SEGMENT_SIZE,
        };
        let mut h = Harness::new(config, Vec::new()).unwrap();
        h.run(&ops).unwrap();
        let t = &h.trace;
        assert!(t[2].starts_with("crash: cut") && t[2].ends_with("dropping 1 events"));
        assert!(t[3].contains("wrote sequences [2]"), "{t:#?}");
        assert!(
            t[4].contains("rejected") && t[4].contains("\"k1\""),
            "{t:#?}"
        );
        assert!(t[5].contains("replayed sequences [1]"), "{t:#?}");
    }
}
