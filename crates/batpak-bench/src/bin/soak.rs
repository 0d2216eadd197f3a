//! Soak: every part of the store at once, for a bounded time, against one directory.
//!
//! Three writers (single appends and atomic batches, expected versions, idempotency
//! keys and their retries, causation and correlation links), two readers (`get`,
//! `stream`, queries by kind, scope and entity prefix), a live subscriber over
//! everything, a durable cursor that is dropped and reopened, a reactor, and a
//! maintenance thread (redactions, backups, anchors) run together. Every so often they
//! all stop, the store is closed, reopened and verified, and they start again. Every
//! acknowledged receipt goes into a ledger the checks compare against.
//!
//! A broken invariant prints what and where (`VIOLATION [thread] ...` on stderr) and
//! exits with code 1 at once. A run that holds to the end closes, reopens, checks the
//! whole ledger, verifies, prints a summary ending in `SOAK PASSED` and exits with 0.
//! Usage errors exit with 2.
//!
//! `cargo run --release -p batpak-bench --bin soak -- --minutes 2 [--dir D] [--seed S]
//! [--sync always|never|interval]` (`scripts/soak.sh` runs it for 30 minutes).

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use batpak::proof::Anchor;
use batpak::reactor::{Reactions, ReactorHandle, ReactorOptions, ReactorState};
use batpak::{
    AppendOptions, AppendReceipt, Batch, Cause, Coordinate, Error, EventId, EventKind,
    ExpectedVersion, Hash, IndexSource, RawPayload, RecvError, Region, Stats, Store, StoredEvent,
    SyncPolicy,
};

// ---------------------------------------------------------------------------------
// Command line

const USAGE: &str = "usage: soak [--minutes N] [--dir D] [--seed S] [--sync always|never|interval]
  --minutes N   how long to run, fractions allowed (default 1)
  --dir D       an empty or missing directory to work in (default: a temporary one,
                removed after a clean run)
  --seed S      seed of every random choice (default: from the clock; printed)
  --sync P      the store's sync policy: always (default), never, interval (10 ms)";

struct Config {
    minutes: f64,
    dir: Option<PathBuf>,
    seed: u64,
    sync: SyncPolicy,
    sync_name: String,
}

/// `Ok(None)`: `--help` was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut config = Config {
        minutes: 1.0,
        dir: None,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        sync: SyncPolicy::Always,
        sync_name: "always".to_string(),
    };
    fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
        args.next().ok_or_else(|| format!("{flag} needs a value"))
    }
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--minutes" => {
                let text = value(&mut args, "--minutes")?;
                let minutes: f64 = text
                    .parse()
                    .map_err(|_| format!("--minutes {text:?} is not a number"))?;
                if !(minutes.is_finite() && minutes > 0.0) {
                    return Err(format!("--minutes {text:?} must be positive"));
                }
                config.minutes = minutes;
            }
            "--dir" => config.dir = Some(PathBuf::from(value(&mut args, "--dir")?)),
            "--seed" => {
                let text = value(&mut args, "--seed")?;
                config.seed = text
                    .parse()
                    .map_err(|_| format!("--seed {text:?} is not an unsigned integer"))?;
            }
            "--sync" => {
                let text = value(&mut args, "--sync")?;
                config.sync = match text.as_str() {
                    "always" => SyncPolicy::Always,
                    "never" => SyncPolicy::Never,
                    "interval" => SyncPolicy::Interval(Duration::from_millis(10)),
                    _ => return Err(format!("--sync {text:?}: use always, never or interval")),
                };
                config.sync_name = text;
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(config))
}

// ---------------------------------------------------------------------------------
// Violations

/// Reports a broken invariant and exits with code 1 at once.
fn fail(who: &str, what: impl Display) -> ! {
    let _ = std::io::stdout().flush();
    eprintln!("VIOLATION [{who}] {what}");
    std::process::exit(1)
}

/// An error where none may happen is a violation.
trait OrFail<T> {
    fn or_fail(self, who: &str, doing: impl Display) -> T;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, who: &str, doing: impl Display) -> T {
        match self {
            Ok(value) => value,
            Err(e) => fail(who, format_args!("{doing}: {e}")),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking thread has already ended the process (see `main`).
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------
// Random choices

/// SplitMix64: small, fast, and good enough to pick entities and sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An independent generator for a thread.
    fn fork(&mut self, stream: u64) -> Rng {
        Rng(self.next() ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
}

// ---------------------------------------------------------------------------------
// What is written where

const WRITERS: usize = 3;
const READERS: usize = 2;
/// Entities per writer that only that writer appends to, so it knows their versions
/// and hashes exactly.
const OWNED: usize = 32;
/// Entities every writer appends to (and the only ones redacted).
const SHARED: usize = 192;
/// Entities the reactor's reactions go to.
const REACTION_ENTITIES: usize = 16;
const ENTITY_COUNT: usize = WRITERS * OWNED + SHARED + REACTION_ENTITIES;
const SCOPES: [&str; 4] = ["tenant:a", "tenant:b", "tenant:c", "tenant:d"];
/// The ledger's entities: the workload's, then the store's redaction log in each scope.
const LAYOUT_LEN: usize = ENTITY_COUNT + SCOPES.len();
const SEGMENT_SIZE: u64 = 256 * 1024;

/// The writers' ordinary kinds: category 2, the durable cursor's region.
const KINDS: [EventKind; 3] = [
    EventKind::custom(2, 1),
    EventKind::custom(2, 2),
    EventKind::custom(2, 3),
];
const CURSOR_CATEGORY: u8 = 2;
/// The reactor's sources (written by the writers).
const KIND_SOURCE: EventKind = EventKind::custom(3, 1);
/// The reactor's reactions: the source's id (16 bytes, big-endian) and sequence (LE).
const KIND_REACTION: EventKind = EventKind::custom(4, 1);
/// The store's own records: a redaction, a reactor position.
const KIND_REDACTION: EventKind = EventKind::custom(0, 3);
const KIND_REACTOR_POSITION: EventKind = EventKind::custom(0, 4);
const REACTOR: &str = "soak";
const CURSOR: &str = "soak";

fn owned_entity(writer: usize, n: usize) -> usize {
    writer * OWNED + n
}

fn shared_entity(n: usize) -> usize {
    WRITERS * OWNED + n
}

fn reaction_entity(n: usize) -> usize {
    WRITERS * OWNED + SHARED + n
}

fn is_shared(entity: usize) -> bool {
    (WRITERS * OWNED..WRITERS * OWNED + SHARED).contains(&entity)
}

/// Every entity's coordinate and coordinate digest, by entity number.
struct Layout {
    coords: Vec<Coordinate>,
    digests: Vec<Hash>,
}

impl Layout {
    fn new() -> Layout {
        let coords: Vec<Coordinate> = (0..ENTITY_COUNT)
            .map(|e| {
                let (entity, scope) = if e < WRITERS * OWNED {
                    (format!("w:{}:{}", e / OWNED, e % OWNED), SCOPES[e % 4])
                } else if is_shared(e) {
                    (format!("s:{}", e - WRITERS * OWNED), SCOPES[e % 4])
                } else {
                    (format!("rx:{}", e - WRITERS * OWNED - SHARED), "reactions")
                };
                Coordinate::new(entity, scope).or_fail("main", "build a coordinate")
            })
            .chain(SCOPES.iter().map(|scope| {
                Coordinate::new("batpak:redactions", scope).or_fail("main", "build a coordinate")
            }))
            .collect();
        let digests = coords.iter().map(Coordinate::digest).collect();
        Layout { coords, digests }
    }

    fn name(&self, entity: usize) -> &str {
        self.coords[entity].entity()
    }

    /// The ledger entity of the redaction records of `entity`'s scope.
    fn redactions_of(&self, entity: usize) -> usize {
        let scope = self.coords[entity].scope();
        ENTITY_COUNT + SCOPES.iter().position(|s| *s == scope).unwrap_or(0)
    }
}

fn region_cursor() -> Region {
    Region::all().category(CURSOR_CATEGORY)
}

fn region_sources() -> Region {
    Region::all().kind(KIND_SOURCE)
}

// ---------------------------------------------------------------------------------
// The ledger of acknowledged receipts

/// An acknowledged event as the ledger keeps it: compact, since a long run keeps
/// millions. The digest covers every receipt field (the unsigned receipt message).
#[derive(Clone, Copy, Debug)]
struct Acked {
    id: EventId,
    digest: [u8; 16],
    entity: u32,
    /// A redaction record (the maintenance thread's), not a writer's event.
    system: bool,
}

fn receipt_digest(receipt: &AppendReceipt) -> [u8; 16] {
    let full = blake3::hash(&receipt.signed_message(None));
    let mut out = [0u8; 16];
    out.copy_from_slice(&full.as_bytes()[..16]);
    out
}

#[derive(Default)]
struct Ledger {
    /// By sequence - 1; `None` for sequences no receipt was returned for (yet).
    slots: Vec<Option<Acked>>,
    filled: u64,
    /// Acknowledged sequences per entity, in acknowledgement order.
    by_entity: Vec<Vec<u64>>,
    /// Sequences whose redaction returned.
    redacted: HashSet<u64>,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            by_entity: vec![Vec::new(); LAYOUT_LEN],
            ..Ledger::default()
        }
    }

    fn record(&mut self, receipt: &AppendReceipt, entity: usize, system: bool, who: &str) {
        let Some(i) = receipt.sequence.checked_sub(1) else {
            fail(who, format_args!("a receipt with sequence 0: {receipt:?}"));
        };
        let i = i as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        if let Some(old) = self.slots[i] {
            fail(
                who,
                format_args!(
                    "sequence {} acknowledged twice: event {} and event {}",
                    receipt.sequence, old.id, receipt.event_id
                ),
            );
        }
        self.slots[i] = Some(Acked {
            id: receipt.event_id,
            digest: receipt_digest(receipt),
            entity: entity as u32,
            system,
        });
        self.filled += 1;
        self.by_entity[entity].push(receipt.sequence);
    }

    fn get(&self, sequence: u64) -> Option<Acked> {
        let i = sequence.checked_sub(1)? as usize;
        self.slots.get(i).copied().flatten()
    }

    /// A random acknowledged event: (sequence, entry).
    fn pick(&self, rng: &mut Rng) -> Option<(u64, Acked)> {
        for _ in 0..8 {
            let i = rng.index(self.slots.len());
            if let Some(Some(acked)) = self.slots.get(i) {
                return Some((i as u64 + 1, *acked));
            }
        }
        None
    }

    fn random_id(&self, rng: &mut Rng) -> Option<EventId> {
        self.pick(rng).map(|(_, a)| a.id)
    }
}

/// Checks an event read back against its ledger entry.
fn check_acked(event: &StoredEvent, acked: &Acked, layout: &Layout, who: &str, doing: &str) {
    if event.id != acked.id {
        fail(
            who,
            format_args!(
                "{doing}: sequence {} holds event {}, the ledger has {} there",
                event.sequence, event.id, acked.id
            ),
        );
    }
    if receipt_digest(&event.receipt()) != acked.digest {
        fail(
            who,
            format_args!(
                "{doing}: event {} (sequence {}) no longer matches its receipt; read back: {:?}",
                event.id,
                event.sequence,
                event.receipt()
            ),
        );
    }
    if event.coordinate != layout.coords[acked.entity as usize] {
        fail(
            who,
            format_args!(
                "{doing}: event {} is on {}, it was appended to {}",
                event.id, event.coordinate, layout.coords[acked.entity as usize]
            ),
        );
    }
}

// ---------------------------------------------------------------------------------
// Shared context and counters

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    batches: AtomicU64,
    batch_items: AtomicU64,
    retries: AtomicU64,
    version_conflicts: AtomicU64,
    key_conflicts: AtomicU64,
    read_backs: AtomicU64,
    gets: AtomicU64,
    streams: AtomicU64,
    queries: AtomicU64,
    redactions: AtomicU64,
    backups: AtomicU64,
    backup_events: AtomicU64,
    anchors: AtomicU64,
    verifies: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

struct Intervals {
    reopen: Duration,
    backup: Duration,
    anchor: Duration,
    redact: Duration,
}

impl Intervals {
    /// Scaled to the run: about four reopens, eight backups and twelve anchors, within
    /// bounds, so short runs exercise everything and long runs stay affordable.
    fn for_run(total: Duration) -> Intervals {
        let part = |n: f64, lo: f64, hi: f64| {
            Duration::from_secs_f64((total.as_secs_f64() / n).clamp(lo, hi))
        };
        Intervals {
            reopen: part(4.0, 2.0, 60.0),
            backup: part(8.0, 1.5, 90.0),
            anchor: part(12.0, 1.0, 30.0),
            redact: Duration::from_millis(100),
        }
    }
}

struct Ctx {
    config: Config,
    store_dir: PathBuf,
    backups_dir: PathBuf,
    layout: Layout,
    ledger: Mutex<Ledger>,
    counters: Counters,
    intervals: Intervals,
}

impl Ctx {
    fn open(&self) -> batpak::Result<Store> {
        Store::builder(&self.store_dir)
            .segment_size(SEGMENT_SIZE)
            .sync_policy(self.config.sync)
            .open()
    }
}

// ---------------------------------------------------------------------------------
// Writers

/// One event of an append, kept so a keyed append can be retried exactly.
#[derive(Clone, Debug)]
struct Item {
    entity: usize,
    kind: EventKind,
    payload: Vec<u8>,
    options: AppendOptions,
}

/// A keyed append and what it returned.
struct Keyed {
    items: Vec<Item>,
    batch: bool,
    receipts: Vec<AppendReceipt>,
}

/// Keyed appends kept for retries; beyond it a random one is replaced.
const KEYED_KEPT: usize = 256;

struct Writer {
    w: usize,
    who: String,
    rng: Rng,
    requests: u64,
    /// Version and hash of each owned entity's newest event.
    heads: Vec<Option<(u64, Hash)>>,
    keyed: Vec<Keyed>,
}

fn submit(
    store: &Store,
    layout: &Layout,
    items: &[Item],
    batch: bool,
) -> batpak::Result<Vec<AppendReceipt>> {
    if batch {
        let mut b = Batch::new();
        for item in items {
            b.push_raw(
                &layout.coords[item.entity],
                item.kind,
                RawPayload::opaque(&item.payload),
                item.options.clone(),
            );
        }
        store.append_batch(&b)
    } else {
        let item = &items[0];
        store
            .append_raw(
                &layout.coords[item.entity],
                item.kind,
                RawPayload::opaque(&item.payload),
                item.options.clone(),
            )
            .map(|r| vec![r])
    }
}

impl Writer {
    fn new(w: usize, rng: Rng) -> Writer {
        Writer {
            w,
            who: format!("writer {w}"),
            rng,
            requests: 0,
            heads: vec![None; OWNED],
            keyed: Vec::new(),
        }
    }

    fn run(mut self, store: &Store, ctx: &Ctx, stop: &AtomicBool) -> Writer {
        while !stop.load(Ordering::Relaxed) {
            match self.rng.below(100) {
                0..=47 => self.append(store, ctx, false),
                48..=83 => self.append(store, ctx, true),
                84..=91 => self.retry(store, ctx),
                92..=96 => self.version_conflict(store, ctx),
                _ => self.key_conflict(store, ctx),
            }
        }
        self
    }

    fn owned_slot(&self, entity: usize) -> Option<usize> {
        let first = owned_entity(self.w, 0);
        (first..first + OWNED)
            .contains(&entity)
            .then(|| entity - first)
    }

    fn payload(&mut self) -> Vec<u8> {
        let len = 8 + self.rng.index(161);
        let mut out = Vec::with_capacity(len + 9);
        out.push(self.w as u8);
        out.extend_from_slice(&self.requests.to_le_bytes());
        while out.len() < len + 9 {
            out.extend_from_slice(&self.rng.next().to_le_bytes());
        }
        out.truncate(len + 9);
        out
    }

    /// Plans item `position` of an append; `versions` follows the owned entities'
    /// versions through the items planned so far.
    fn plan_item(
        &mut self,
        ctx: &Ctx,
        position: usize,
        versions: &mut HashMap<usize, Option<u64>>,
    ) -> Item {
        let entity = if self.rng.chance(40) {
            owned_entity(self.w, self.rng.index(OWNED))
        } else {
            shared_entity(self.rng.index(SHARED))
        };
        let kind = if self.rng.chance(8) {
            KIND_SOURCE
        } else {
            KINDS[self.rng.index(KINDS.len())]
        };
        let mut options = AppendOptions::default();
        if let Some(n) = self.owned_slot(entity) {
            let heads = &self.heads;
            let current = *versions
                .entry(n)
                .or_insert_with(|| heads[n].map(|(v, _)| v));
            if self.rng.chance(60) {
                options.expected_version =
                    current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            }
            versions.insert(n, Some(current.map_or(0, |v| v + 1)));
        }
        if position > 0 && self.rng.chance(30) {
            options = options.caused_by_item(self.rng.index(position));
        } else if self.rng.chance(40) {
            if let Some(id) = lock(&ctx.ledger).random_id(&mut self.rng) {
                options = options.caused_by(id);
            }
        }
        if self.rng.chance(15) {
            if let Some(id) = lock(&ctx.ledger).random_id(&mut self.rng) {
                options = options.correlation(id);
            }
        }
        Item {
            entity,
            kind,
            payload: self.payload(),
            options,
        }
    }

    fn append(&mut self, store: &Store, ctx: &Ctx, batch: bool) {
        self.requests += 1;
        let keyed = self.rng.chance(20);
        let count = if batch {
            self.rng.between(2, 50) as usize
        } else {
            1
        };
        let mut versions = HashMap::new();
        let mut items = Vec::with_capacity(count);
        for i in 0..count {
            let mut item = self.plan_item(ctx, i, &mut versions);
            if keyed {
                item.options.idempotency_key = Some(format!("{}:{}:{i}", self.w, self.requests));
            }
            items.push(item);
        }
        let receipts = submit(store, &ctx.layout, &items, batch).or_fail(
            &self.who,
            format_args!(
                "{} of {} items (first on {}, {:?})",
                if batch { "batch" } else { "append" },
                items.len(),
                ctx.layout.name(items[0].entity),
                items[0].options.expected_version
            ),
        );
        self.accept(store, ctx, items, receipts, batch, keyed);
    }

    /// Checks what an accepted append returned and records it in the ledger.
    fn accept(
        &mut self,
        store: &Store,
        ctx: &Ctx,
        items: Vec<Item>,
        receipts: Vec<AppendReceipt>,
        batch: bool,
        keyed: bool,
    ) {
        let who = self.who.clone();
        if receipts.len() != items.len() {
            fail(
                &who,
                format_args!("{} items returned {} receipts", items.len(), receipts.len()),
            );
        }
        let first = receipts[0].sequence;
        for (i, (item, r)) in items.iter().zip(&receipts).enumerate() {
            if r.sequence != first + i as u64 {
                fail(
                    &who,
                    format_args!(
                        "a batch's receipts are not consecutive: item {i} has sequence {}, item 0 {first}",
                        r.sequence
                    ),
                );
            }
            if r.kind != item.kind || r.coordinate_digest != ctx.layout.digests[item.entity] {
                fail(
                    &who,
                    format_args!(
                        "receipt {r:?} does not name kind {} on {}",
                        item.kind, ctx.layout.coords[item.entity]
                    ),
                );
            }
            match self.owned_slot(item.entity) {
                Some(n) => {
                    let prev = self.heads[n];
                    let version = prev.map_or(0, |(v, _)| v + 1);
                    let prev_hash = prev.map_or(Hash::ZERO, |(_, h)| h);
                    if r.version != version || r.prev_hash != prev_hash {
                        fail(
                            &who,
                            format_args!(
                                "{} was at {prev:?}; the next append got version {} with prev_hash {}",
                                ctx.layout.name(item.entity),
                                r.version,
                                r.prev_hash
                            ),
                        );
                    }
                    self.heads[n] = Some((r.version, r.event_hash));
                }
                None if (r.version == 0) != (r.prev_hash == Hash::ZERO) => fail(
                    &who,
                    format_args!(
                        "{} got version {} with prev_hash {}",
                        ctx.layout.name(item.entity),
                        r.version,
                        r.prev_hash
                    ),
                ),
                None => {}
            }
        }
        {
            let mut ledger = lock(&ctx.ledger);
            for (item, r) in items.iter().zip(&receipts) {
                ledger.record(r, item.entity, false, &who);
            }
        }
        if batch {
            bump(&ctx.counters.batches, 1);
            bump(&ctx.counters.batch_items, items.len() as u64);
        } else {
            bump(&ctx.counters.appends, 1);
        }
        if self.rng.chance(5) {
            read_back(store, ctx, &items, &receipts, &who);
        }
        if keyed {
            let kept = Keyed {
                items,
                batch,
                receipts,
            };
            if self.keyed.len() < KEYED_KEPT {
                self.keyed.push(kept);
            } else {
                let i = self.rng.index(KEYED_KEPT);
                self.keyed[i] = kept;
            }
        }
    }

    /// Repeats a keyed append: it must return the original receipts and write nothing.
    fn retry(&mut self, store: &Store, ctx: &Ctx) {
        if self.keyed.is_empty() {
            return;
        }
        let k = &self.keyed[self.rng.index(self.keyed.len())];
        let got = submit(store, &ctx.layout, &k.items, k.batch).or_fail(
            &self.who,
            format_args!(
                "retry of key {:?}",
                k.items[0].options.idempotency_key.as_deref().unwrap_or("")
            ),
        );
        if got != k.receipts {
            fail(
                &self.who,
                format_args!(
                    "retrying key {:?} returned {got:?}, the original append returned {:?}",
                    k.items[0].options.idempotency_key, k.receipts
                ),
            );
        }
        bump(&ctx.counters.retries, 1);
    }

    /// Reuses a key for different content (another kind): refused, naming the original.
    fn key_conflict(&mut self, store: &Store, ctx: &Ctx) {
        if self.keyed.is_empty() {
            return;
        }
        let k = &self.keyed[self.rng.index(self.keyed.len())];
        let mut items = k.items.clone();
        items[0].kind = if items[0].kind == KINDS[0] {
            KINDS[1]
        } else {
            KINDS[0]
        };
        let key = items[0].options.idempotency_key.clone().unwrap_or_default();
        match submit(store, &ctx.layout, &items, k.batch) {
            Err(Error::IdempotencyConflict {
                key: named,
                original,
            }) if named == key && original == k.receipts[0].event_id => {}
            other => fail(
                &self.who,
                format_args!(
                    "key {key:?} reused with another kind must be refused naming event {}; got {other:?}",
                    k.receipts[0].event_id
                ),
            ),
        }
        bump(&ctx.counters.key_conflicts, 1);
    }

    /// An append expecting a version an owned entity is not at: refused whole, naming
    /// the entity's real version, and nothing of it written.
    fn version_conflict(&mut self, store: &Store, ctx: &Ctx) {
        self.requests += 1;
        let n = self.rng.index(OWNED);
        let current = self.heads[n].map(|(v, _)| v);
        let wrong = match current {
            None => ExpectedVersion::Exact(self.rng.below(3)),
            Some(v) => match self.rng.below(3) {
                0 => ExpectedVersion::NoStream,
                1 if v > 0 => ExpectedVersion::Exact(self.rng.below(v)),
                _ => ExpectedVersion::Exact(v + 1 + self.rng.below(3)),
            },
        };
        let batch = self.rng.chance(50);
        let mut touched = vec![n];
        let mut items = Vec::new();
        if batch {
            let m = (n + 1 + self.rng.index(OWNED - 1)) % OWNED;
            touched.push(m);
            items.push(Item {
                entity: owned_entity(self.w, m),
                kind: KINDS[0],
                payload: self.payload(),
                options: AppendOptions::default(),
            });
        }
        items.push(Item {
            entity: owned_entity(self.w, n),
            kind: KINDS[1],
            payload: self.payload(),
            options: AppendOptions::expect(wrong),
        });
        let name = ctx.layout.name(owned_entity(self.w, n));
        match submit(store, &ctx.layout, &items, batch) {
            Err(Error::VersionConflict {
                entity,
                expected,
                actual,
            }) if entity == name && expected == wrong && actual == current => {}
            other => fail(
                &self.who,
                format_args!(
                    "expecting {wrong:?} on {name} (at {current:?}) must be refused naming its version; got {other:?}"
                ),
            ),
        }
        for m in touched {
            let e = owned_entity(self.w, m);
            let next = self.heads[m].map_or(0, |(v, _)| v + 1);
            let found = store
                .query(
                    &Region::all().entity(ctx.layout.name(e)).versions(next..),
                    0,
                    1,
                )
                .or_fail(&self.who, "query after a refused append");
            if let Some(event) = found.first() {
                fail(
                    &self.who,
                    format_args!(
                        "a refused append left event {} (version {}) on {}",
                        event.id,
                        event.version,
                        ctx.layout.name(e)
                    ),
                );
            }
        }
        bump(&ctx.counters.version_conflicts, 1);
    }
}

/// Reads an accepted append back at once: every field as appended.
fn read_back(store: &Store, ctx: &Ctx, items: &[Item], receipts: &[AppendReceipt], who: &str) {
    for (item, r) in items.iter().zip(receipts) {
        let event = store
            .get(r.event_id)
            .or_fail(who, "read back")
            .unwrap_or_else(|| {
                fail(
                    who,
                    format_args!(
                        "event {} was acknowledged but get finds nothing",
                        r.event_id
                    ),
                )
            });
        let cause = match item.options.causation {
            Some(Cause::Event(id)) => Some(id),
            Some(Cause::BatchItem(j)) => Some(receipts[j].event_id),
            None => None,
        };
        let payload_ok = event.is_redacted() || event.payload == item.payload;
        if event.receipt() != *r
            || event.causation != cause
            || event.correlation != item.options.correlation
            || event.coordinate != ctx.layout.coords[item.entity]
            || !payload_ok
        {
            fail(
                who,
                format_args!(
                    "read back of event {} differs from what was appended ({item:?}, {r:?}): {event:?}",
                    r.event_id
                ),
            );
        }
    }
    bump(&ctx.counters.read_backs, 1);
}

// ---------------------------------------------------------------------------------
// Readers

/// Which events a region selects, by hand.
type EventFilter = Box<dyn Fn(&StoredEvent) -> bool>;

struct Reader {
    who: String,
    rng: Rng,
}

impl Reader {
    fn run(mut self, store: &Store, ctx: &Ctx, stop: &AtomicBool) -> Reader {
        while !stop.load(Ordering::Relaxed) {
            match self.rng.below(100) {
                0..=54 => self.get(store, ctx),
                55..=57 => self.get_unknown(store, ctx),
                58..=77 => {
                    let entity = self.rng.index(ENTITY_COUNT);
                    check_stream(store, ctx, entity, &self.who);
                }
                _ => self.query(store, ctx),
            }
        }
        self
    }

    fn get(&mut self, store: &Store, ctx: &Ctx) {
        let picked = {
            let ledger = lock(&ctx.ledger);
            ledger
                .pick(&mut self.rng)
                .map(|(seq, a)| (seq, a, ledger.redacted.contains(&seq)))
        };
        let Some((sequence, acked, redacted)) = picked else {
            return;
        };
        let event = store
            .get(acked.id)
            .or_fail(&self.who, format_args!("get {}", acked.id))
            .unwrap_or_else(|| {
                fail(
                    &self.who,
                    format_args!(
                        "acknowledged event {} (sequence {sequence}) is not found by get",
                        acked.id
                    ),
                )
            });
        if event.sequence != sequence {
            fail(
                &self.who,
                format_args!(
                    "get {} returned sequence {}, acknowledged at {sequence}",
                    acked.id, event.sequence
                ),
            );
        }
        check_acked(&event, &acked, &ctx.layout, &self.who, "get");
        if redacted && !event.is_redacted() {
            fail(
                &self.who,
                format_args!(
                    "event {} was redacted but get returns its payload",
                    acked.id
                ),
            );
        }
        if event.is_redacted() && !event.payload.is_empty() {
            fail(
                &self.who,
                format_args!(
                    "redacted event {} still has {} payload bytes",
                    acked.id,
                    event.payload.len()
                ),
            );
        }
        bump(&ctx.counters.gets, 1);
    }

    fn get_unknown(&mut self, store: &Store, ctx: &Ctx) {
        let id =
            EventId::from_u128(u128::from(self.rng.next()) << 64 | u128::from(self.rng.next()));
        if let Some(event) = store.get(id).or_fail(&self.who, "get an unknown id") {
            fail(
                &self.who,
                format_args!("get of a random id {id} returned {event:?}"),
            );
        }
        bump(&ctx.counters.gets, 1);
    }

    /// A query by kind and scope, or by entity prefix, checked against a plain range
    /// query over the same sequences filtered by hand.
    fn query(&mut self, store: &Store, ctx: &Ctx) {
        let visible = store.frontier().visible;
        let after = self.rng.below(visible + 1);
        let limit = 1 + self.rng.index(400);
        let (region, want): (Region, EventFilter) = if self.rng.chance(60) {
            let kind = if self.rng.chance(20) {
                KIND_SOURCE
            } else {
                KINDS[self.rng.index(KINDS.len())]
            };
            let scope = SCOPES[self.rng.index(SCOPES.len())];
            (
                Region::all().kind(kind).scope(scope),
                Box::new(move |e: &StoredEvent| e.kind == kind && e.coordinate.scope() == scope),
            )
        } else {
            let prefix = match self.rng.below(WRITERS as u64 + 1) {
                0 => "s".to_string(),
                w => format!("w:{}", w - 1),
            };
            let colon = format!("{prefix}:");
            (
                Region::all().entity_prefix(prefix),
                Box::new(move |e: &StoredEvent| e.coordinate.entity().starts_with(&colon)),
            )
        };
        let got = store
            .query(&region, after, limit)
            .or_fail(&self.who, format_args!("query {}", region.canonical()));
        if got.len() > limit {
            fail(
                &self.who,
                format_args!("query with limit {limit} returned {}", got.len()),
            );
        }
        let mut prev = after;
        for event in &got {
            if event.sequence <= prev || !want(event) {
                fail(
                    &self.who,
                    format_args!(
                        "query {} after {after} returned sequence {} ({} on {}) after {prev}",
                        region.canonical(),
                        event.sequence,
                        event.kind,
                        event.coordinate
                    ),
                );
            }
            prev = event.sequence;
        }
        if let Some(last) = got.last() {
            let all = store
                .query(
                    &Region::all()
                        .with_store_records()
                        .sequences(after + 1..=last.sequence),
                    0,
                    usize::MAX,
                )
                .or_fail(&self.who, "range query");
            if all.len() as u64 != last.sequence - after {
                fail(
                    &self.who,
                    format_args!(
                        "sequences {}..={} are visible but a range query returns {} events",
                        after + 1,
                        last.sequence,
                        all.len()
                    ),
                );
            }
            let expected: Vec<u64> = all.iter().filter(|e| want(e)).map(|e| e.sequence).collect();
            let returned: Vec<u64> = got.iter().map(|e| e.sequence).collect();
            if expected != returned {
                fail(
                    &self.who,
                    format_args!(
                        "query {} after {after} returned {returned:?}; filtering the same range gives {expected:?}",
                        region.canonical()
                    ),
                );
            }
        }
        check_against_ledger(&got, ctx, &self.who, "query");
        bump(&ctx.counters.queries, 1);
    }
}

/// Every event that has a ledger entry matches it.
fn check_against_ledger(events: &[StoredEvent], ctx: &Ctx, who: &str, doing: &str) {
    let entries: Vec<Option<Acked>> = {
        let ledger = lock(&ctx.ledger);
        events.iter().map(|e| ledger.get(e.sequence)).collect()
    };
    for (event, acked) in events.iter().zip(entries) {
        if let Some(acked) = acked {
            check_acked(event, &acked, &ctx.layout, who, doing);
        }
    }
}

/// `stream(entity)`: versions dense from 0, each event linked to the one before, and
/// every event acknowledged before the call present and unchanged.
fn check_stream(store: &Store, ctx: &Ctx, entity: usize, who: &str) {
    let acked: Vec<u64> = lock(&ctx.ledger).by_entity[entity].clone();
    let name = ctx.layout.name(entity);
    let events = if entity < ENTITY_COUNT {
        store.stream(name)
    } else {
        store.query(
            &Region::all().entity(name).with_store_records(),
            0,
            usize::MAX,
        )
    }
    .or_fail(who, format_args!("stream {name}"));
    check_chain(&events, name, who);
    for sequence in acked {
        if events
            .binary_search_by_key(&sequence, |e| e.sequence)
            .is_err()
        {
            fail(
                who,
                format_args!(
                    "stream {name} ({} events) lacks acknowledged sequence {sequence}",
                    events.len()
                ),
            );
        }
    }
    check_against_ledger(&events, ctx, who, "stream");
    bump(&ctx.counters.streams, 1);
}

fn check_chain(events: &[StoredEvent], name: &str, who: &str) {
    let mut prev_hash = Hash::ZERO;
    let mut prev_sequence = 0;
    for (i, event) in events.iter().enumerate() {
        if event.version != i as u64
            || event.sequence <= prev_sequence
            || event.coordinate.entity() != name
        {
            fail(
                who,
                format_args!(
                    "stream {name}: event {i} has version {}, sequence {} after {prev_sequence}, entity {:?}",
                    event.version,
                    event.sequence,
                    event.coordinate.entity()
                ),
            );
        }
        if event.prev_hash != prev_hash {
            fail(
                who,
                format_args!(
                    "stream {name}: version {} (sequence {}) has prev_hash {}, the event before hashes to {prev_hash}",
                    event.version, event.sequence, event.prev_hash
                ),
            );
        }
        prev_hash = event.event_hash();
        prev_sequence = event.sequence;
    }
}

// ---------------------------------------------------------------------------------
// Subscriber

struct Subscriber {
    last: u64,
    last_timestamp: u64,
    last_id: Option<EventId>,
    /// Source id -> the reaction's sequence.
    reacted: HashMap<EventId, u64>,
    events: u64,
    lags: u64,
    /// Times `frontier()` showed a visible sequence past the written one, or under
    /// `Always` past the durable one.
    watermarks_behind: u64,
}

const WHO_SUBSCRIBER: &str = "subscriber";

impl Subscriber {
    fn run(mut self, store: &Store, ctx: &Ctx, stop: &AtomicBool) -> Subscriber {
        let mut feed = store.subscribe_from(Region::all().with_store_records(), self.last + 1);
        while !stop.load(Ordering::Relaxed) {
            match feed.recv_timeout(Duration::from_millis(100)) {
                Ok(event) => self.take(&event, store, ctx),
                Err(RecvError::Timeout) => {}
                Err(RecvError::Lagged { resume_from }) => {
                    if resume_from != self.last + 1 {
                        fail(
                            WHO_SUBSCRIBER,
                            format_args!(
                                "lagged with resume_from {resume_from}, but {} was the last delivered",
                                self.last
                            ),
                        );
                    }
                    self.lags += 1;
                    feed = store.subscribe_from(Region::all().with_store_records(), resume_from);
                }
                Err(other) => fail(WHO_SUBSCRIBER, format_args!("recv: {other}")),
            }
        }
        self
    }

    /// Takes everything visible now; afterwards the last delivered is the newest.
    fn drain(&mut self, store: &Store, ctx: &Ctx) {
        let mut feed = store
            .subscribe_from(Region::all().with_store_records(), self.last + 1)
            .lag_limit(u64::MAX);
        loop {
            match feed.try_recv() {
                Ok(event) => self.take(&event, store, ctx),
                Err(RecvError::Empty) => break,
                Err(other) => fail(WHO_SUBSCRIBER, format_args!("drain: {other}")),
            }
        }
        let visible = store.frontier().visible;
        if self.last != visible {
            fail(
                WHO_SUBSCRIBER,
                format_args!(
                    "drained to sequence {}, but {visible} is visible",
                    self.last
                ),
            );
        }
    }

    fn take(&mut self, event: &StoredEvent, store: &Store, ctx: &Ctx) {
        let frontier = store.frontier();
        if event.sequence != self.last + 1 {
            fail(
                WHO_SUBSCRIBER,
                format_args!(
                    "received sequence {} after {}: {}",
                    event.sequence,
                    self.last,
                    if event.sequence <= self.last {
                        "a duplicate or reordering"
                    } else {
                        "a gap"
                    }
                ),
            );
        }
        if event.sequence > frontier.visible {
            fail(
                WHO_SUBSCRIBER,
                format_args!(
                    "received sequence {} with frontier {frontier:?}",
                    event.sequence
                ),
            );
        }
        // Nothing is visible before it is written, nor under `Always` before it is
        // durable; but the writer raises each watermark after the index publishes, so
        // `frontier()` can briefly say otherwise (tests/frontier_order.rs). Counted, not
        // failed. (`durable > written` is no anomaly: `frontier` reads written first.)
        if frontier.visible > frontier.written
            || (ctx.config.sync == SyncPolicy::Always && frontier.visible > frontier.durable)
        {
            self.watermarks_behind += 1;
        }
        if event.timestamp_ns < self.last_timestamp || self.last_id.is_some_and(|id| event.id <= id)
        {
            fail(
                WHO_SUBSCRIBER,
                format_args!(
                    "sequence {} (id {}, {} ns) does not follow id {:?} at {} ns",
                    event.sequence, event.id, event.timestamp_ns, self.last_id, self.last_timestamp
                ),
            );
        }
        if event.kind == KIND_REACTION {
            let (source, _) = parse_reaction(event, WHO_SUBSCRIBER);
            if let Some(first) = self.reacted.insert(source, event.sequence) {
                fail(
                    WHO_SUBSCRIBER,
                    format_args!(
                        "source {source} got a second reaction at sequence {} (the first at {first})",
                        event.sequence
                    ),
                );
            }
        }
        if let Some(acked) = lock(&ctx.ledger).get(event.sequence) {
            check_acked(event, &acked, &ctx.layout, WHO_SUBSCRIBER, "subscription");
        }
        self.last = event.sequence;
        self.last_timestamp = event.timestamp_ns;
        self.last_id = Some(event.id);
        self.events += 1;
    }
}

/// A reaction's source id and sequence, checked against its causation.
fn parse_reaction(event: &StoredEvent, who: &str) -> (EventId, u64) {
    let parsed = (event.payload.len() == 24).then(|| {
        let mut id = [0u8; 16];
        id.copy_from_slice(&event.payload[..16]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&event.payload[16..]);
        (EventId::from_bytes(id), u64::from_le_bytes(seq))
    });
    match parsed {
        Some((source, seq)) if event.causation == Some(source) && seq < event.sequence => {
            (source, seq)
        }
        _ => fail(
            who,
            format_args!(
                "reaction at sequence {} is malformed or not caused by its source: {event:?}",
                event.sequence
            ),
        ),
    }
}

// ---------------------------------------------------------------------------------
// Durable cursor consumer

struct CursorConsumer {
    rng: Rng,
    /// The last commit that returned.
    committed: u64,
    max_delivered: u64,
    events: u64,
    redelivered: u64,
    commits: u64,
    reopens: u64,
}

const WHO_CURSOR: &str = "cursor";

impl CursorConsumer {
    fn run(mut self, store: &Store, ctx: &Ctx, stop: &AtomicBool) -> CursorConsumer {
        let region = region_cursor();
        while !stop.load(Ordering::Relaxed) {
            let until = Instant::now() + Duration::from_millis(self.rng.between(300, 1500));
            let commit_every = self.rng.between(10, 300);
            let mut cursor = store
                .cursor(CURSOR, region.clone())
                .or_fail(WHO_CURSOR, "open the cursor");
            if cursor.committed() != self.committed || cursor.rewound_from().is_some() {
                fail(
                    WHO_CURSOR,
                    format_args!(
                        "reopened at commit {} (rewound from {:?}); the last commit was {}",
                        cursor.committed(),
                        cursor.rewound_from(),
                        self.committed
                    ),
                );
            }
            if !matches!(
                store.cursor(CURSOR, region.clone()),
                Err(Error::CursorInUse { .. })
            ) {
                fail(
                    WHO_CURSOR,
                    "a second handle on an open cursor was not refused",
                );
            }
            let mut prev = self.committed;
            let mut since_commit = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let max = 1 + self.rng.index(100);
                let batch = cursor
                    .next_batch(max, Duration::from_millis(50))
                    .or_fail(WHO_CURSOR, "next_batch");
                for event in &batch {
                    self.check_next(store, &region, prev, event);
                    if event.sequence <= self.max_delivered {
                        self.redelivered += 1;
                    } else {
                        self.max_delivered = event.sequence;
                    }
                    prev = event.sequence;
                }
                check_against_ledger(&batch, ctx, WHO_CURSOR, "cursor");
                self.events += batch.len() as u64;
                since_commit += batch.len() as u64;
                if since_commit >= commit_every {
                    cursor
                        .commit(prev)
                        .or_fail(WHO_CURSOR, format_args!("commit {prev}"));
                    self.committed = prev;
                    self.commits += 1;
                    since_commit = 0;
                }
            }
            if self.rng.chance(20) {
                // Past what the handle delivered or found not to be its region's.
                let past = cursor.passed() + 1;
                if !matches!(cursor.commit(past), Err(Error::InvalidCommit { .. })) {
                    fail(
                        WHO_CURSOR,
                        format_args!(
                            "a commit past the delivered position ({past}) was not refused"
                        ),
                    );
                }
            }
            drop(cursor);
            self.reopens += 1;
        }
        self
    }

    /// The event after `prev` is the region's next event: nothing skipped.
    fn check_next(&self, store: &Store, region: &Region, prev: u64, event: &StoredEvent) {
        if event.sequence <= prev || event.kind.category() != CURSOR_CATEGORY {
            fail(
                WHO_CURSOR,
                format_args!(
                    "delivered sequence {} (kind {}) after {prev}",
                    event.sequence, event.kind
                ),
            );
        }
        let next = store
            .query(region, prev, 1)
            .or_fail(WHO_CURSOR, "query the region's next event");
        match next.first() {
            Some(n) if n.sequence == event.sequence => {}
            other => fail(
                WHO_CURSOR,
                format_args!(
                    "delivered sequence {} after {prev}, but the region's next event is {:?}",
                    event.sequence,
                    other.map(|n| n.sequence)
                ),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------
// Maintenance: redactions, backups, anchors

struct Maintenance {
    rng: Rng,
    anchors: Vec<Anchor>,
    backup_number: u64,
}

const WHO_MAINTENANCE: &str = "maintenance";

impl Maintenance {
    fn run(mut self, store: &Store, ctx: &Ctx, stop: &AtomicBool) -> Maintenance {
        let now = Instant::now();
        let mut next_redact = now + ctx.intervals.redact;
        let mut next_backup = now + ctx.intervals.backup.mul_f64(0.5);
        let mut next_anchor = now + ctx.intervals.anchor.mul_f64(0.5);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_redact {
                self.redact(store, ctx);
                next_redact = now + ctx.intervals.redact;
            } else if now >= next_anchor {
                self.anchor(store, ctx);
                next_anchor = now + ctx.intervals.anchor;
            } else if now >= next_backup {
                self.backup(store, ctx);
                next_backup = now + ctx.intervals.backup;
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self
    }

    /// Redacts a random acknowledged writer event on a shared entity.
    fn redact(&mut self, store: &Store, ctx: &Ctx) {
        let picked = {
            let ledger = lock(&ctx.ledger);
            (0..16).find_map(|_| {
                ledger.pick(&mut self.rng).filter(|(seq, a)| {
                    !a.system && is_shared(a.entity as usize) && !ledger.redacted.contains(seq)
                })
            })
        };
        let Some((sequence, acked)) = picked else {
            return;
        };
        let entity = acked.entity as usize;
        let log = ctx.layout.redactions_of(entity);
        let n = read(&ctx.counters.redactions);
        let record = store
            .redact(acked.id, format!("soak redaction {n}"))
            .or_fail(WHO_MAINTENANCE, format_args!("redact {}", acked.id));
        if record.kind != KIND_REDACTION
            || record.coordinate_digest != ctx.layout.digests[log]
            || record.sequence <= sequence
        {
            fail(
                WHO_MAINTENANCE,
                format_args!(
                    "redacting {} (sequence {sequence} on {}) returned {record:?}",
                    acked.id,
                    ctx.layout.name(entity)
                ),
            );
        }
        {
            let mut ledger = lock(&ctx.ledger);
            ledger.record(&record, log, true, WHO_MAINTENANCE);
            ledger.redacted.insert(sequence);
        }
        let event = store
            .get(acked.id)
            .or_fail(WHO_MAINTENANCE, "get a redacted event")
            .unwrap_or_else(|| {
                fail(
                    WHO_MAINTENANCE,
                    format_args!("redacted {} is gone", acked.id),
                )
            });
        if !event.is_redacted() || !event.payload.is_empty() {
            fail(
                WHO_MAINTENANCE,
                format_args!("after redact, get {} still returns its payload", acked.id),
            );
        }
        check_acked(
            &event,
            &acked,
            &ctx.layout,
            WHO_MAINTENANCE,
            "get after redact",
        );
        let kept = store
            .get(record.event_id)
            .or_fail(WHO_MAINTENANCE, "get a redaction record")
            .unwrap_or_else(|| fail(WHO_MAINTENANCE, "the redaction record is not found"));
        if kept.receipt() != record || kept.causation != Some(acked.id) {
            fail(
                WHO_MAINTENANCE,
                format_args!("the redaction record reads back as {kept:?}, returned {record:?}"),
            );
        }
        if !matches!(
            store.redact(acked.id, "again"),
            Err(Error::CannotRedact { .. })
        ) {
            fail(
                WHO_MAINTENANCE,
                format_args!("redacting {} twice was not refused", acked.id),
            );
        }
        let report = store
            .verify_region(&Region::all().entity(ctx.layout.name(entity)))
            .or_fail(WHO_MAINTENANCE, "verify_region after redact");
        if !report.body.is_clean() {
            fail(
                WHO_MAINTENANCE,
                format_args!(
                    "after redacting {} verify_region of {} finds {:?}",
                    acked.id,
                    ctx.layout.name(entity),
                    report.body.findings
                ),
            );
        }
        bump(&ctx.counters.redactions, 1);
    }

    fn anchor(&mut self, store: &Store, ctx: &Ctx) {
        let anchor = store.anchor().or_fail(WHO_MAINTENANCE, "anchor");
        if anchor.sequence > store.frontier().visible {
            fail(
                WHO_MAINTENANCE,
                format_args!("anchor at {} is past the visible frontier", anchor.sequence),
            );
        }
        self.anchors.push(anchor);
        if self.anchors.len() > 4 {
            self.anchors.remove(0);
        }
        for a in self.anchors.iter().rev().take(2) {
            check_anchor(store, a, WHO_MAINTENANCE);
        }
        bump(&ctx.counters.anchors, 1);
    }

    /// Backs up into a fresh directory, opens the copy read-only and checks it is
    /// clean and holds exactly a prefix of the history: the ledger's events, with the
    /// same redactions, and an anchor of it holds on the source.
    fn backup(&mut self, store: &Store, ctx: &Ctx) {
        self.backup_number += 1;
        let dest = ctx
            .backups_dir
            .join(format!("backup-{:04}", self.backup_number));
        // This thread is the only redactor, so nothing is redacted meanwhile.
        let redacted = lock(&ctx.ledger).redacted.clone();
        let backup = store.backup(&dest).or_fail(
            WHO_MAINTENANCE,
            format_args!("backup to {}", dest.display()),
        );
        let visible = store.frontier().visible;
        if backup.events > visible {
            fail(
                WHO_MAINTENANCE,
                format_args!(
                    "a backup of {} events, but {visible} are visible",
                    backup.events
                ),
            );
        }
        {
            let copy = Store::open_read_only(&dest).or_fail(
                WHO_MAINTENANCE,
                format_args!("open backup {}", dest.display()),
            );
            if let Some(cut) = &copy.open_report().tail_cut {
                fail(
                    WHO_MAINTENANCE,
                    format_args!("backup {} opens with a torn tail: {cut:?}", dest.display()),
                );
            }
            let report = copy.verify().or_fail(WHO_MAINTENANCE, "verify the backup");
            let body = &report.body;
            if !body.is_clean()
                || body.events != backup.events
                || body.last_sequence != backup.events
            {
                fail(
                    WHO_MAINTENANCE,
                    format_args!(
                        "backup {} of {} events verifies as {} events to {} with findings {:?}",
                        dest.display(),
                        backup.events,
                        body.events,
                        body.last_sequence,
                        body.findings
                    ),
                );
            }
            let mut after = 0;
            loop {
                let page = copy
                    .query(&Region::all().with_store_records(), after, 4096)
                    .or_fail(WHO_MAINTENANCE, "read the backup");
                let Some(last) = page.last() else { break };
                let last = last.sequence;
                for (i, event) in page.iter().enumerate() {
                    if event.sequence != after + 1 + i as u64 {
                        fail(
                            WHO_MAINTENANCE,
                            format_args!(
                                "backup {} holds sequence {} where {} belongs",
                                dest.display(),
                                event.sequence,
                                after + 1 + i as u64
                            ),
                        );
                    }
                    if event.is_redacted() != redacted.contains(&event.sequence) {
                        fail(
                            WHO_MAINTENANCE,
                            format_args!(
                                "backup {}: sequence {} redacted {} in the copy, {} in the source",
                                dest.display(),
                                event.sequence,
                                event.is_redacted(),
                                redacted.contains(&event.sequence)
                            ),
                        );
                    }
                }
                check_against_ledger(&page, ctx, WHO_MAINTENANCE, "backup");
                after = last;
            }
            if after != backup.events {
                fail(
                    WHO_MAINTENANCE,
                    format_args!(
                        "backup {} holds {after} events, it reported {}",
                        dest.display(),
                        backup.events
                    ),
                );
            }
            if backup.events > 0 {
                let anchor = copy.anchor().or_fail(WHO_MAINTENANCE, "anchor the backup");
                if anchor.sequence != backup.events {
                    fail(
                        WHO_MAINTENANCE,
                        format_args!("the backup's anchor is at {}", anchor.sequence),
                    );
                }
                check_anchor(store, &anchor, WHO_MAINTENANCE);
            }
        }
        std::fs::remove_dir_all(&dest)
            .or_fail(WHO_MAINTENANCE, format_args!("remove {}", dest.display()));
        bump(&ctx.counters.backups, 1);
        ctx.counters
            .backup_events
            .store(backup.events, Ordering::Relaxed);
    }
}

fn check_anchor(store: &Store, anchor: &Anchor, who: &str) {
    let check = store.verify_against(anchor).or_fail(
        who,
        format_args!("verify_against the anchor at {}", anchor.sequence),
    );
    if !check.holds() {
        fail(
            who,
            format_args!(
                "the anchor at sequence {} no longer holds: {check:?}",
                anchor.sequence
            ),
        );
    }
}

// ---------------------------------------------------------------------------------
// Reactor

#[derive(Default)]
struct ReactorTally {
    runs: u64,
    reactions: u64,
    /// The position the last run stopped at.
    position: u64,
}

const WHO_REACTOR: &str = "reactor";

fn start_reactor(store: &Arc<Store>, ctx: &Ctx, tally: &ReactorTally) -> ReactorHandle {
    let targets: Vec<Coordinate> = (0..REACTION_ENTITIES)
        .map(|n| ctx.layout.coords[reaction_entity(n)].clone())
        .collect();
    let handler = move |event: &StoredEvent, out: &mut Reactions| {
        let mut payload = [0u8; 24];
        payload[..16].copy_from_slice(&event.id.to_bytes());
        payload[16..].copy_from_slice(&event.sequence.to_le_bytes());
        let target = &targets[(event.sequence % REACTION_ENTITIES as u64) as usize];
        out.emit_raw(
            target,
            KIND_REACTION,
            RawPayload::opaque(&payload),
            AppendOptions::default(),
        );
        Ok(())
    };
    let handle = store
        .react(
            REACTOR,
            region_sources(),
            ReactorOptions::default(),
            handler,
        )
        .or_fail(WHO_REACTOR, "start the reactor");
    let status = handle.status();
    if tally.runs > 0 && status.position > tally.position {
        fail(
            WHO_REACTOR,
            format_args!(
                "restarted at position {}, past where it stopped ({})",
                status.position, tally.position
            ),
        );
    }
    handle
}

/// Lets the reactor catch up with everything visible, then stops it.
fn stop_reactor(handle: ReactorHandle, store: &Store, tally: &mut ReactorTally) {
    let visible = store.frontier().visible;
    let status = handle.wait_for(visible, Duration::from_secs(300));
    if status.state != ReactorState::Running || status.position < visible {
        fail(
            WHO_REACTOR,
            format_args!("did not catch up with sequence {visible}: {status:?}"),
        );
    }
    let status = handle.stop();
    if status.state != ReactorState::Stopped {
        fail(WHO_REACTOR, format_args!("stopped as {status:?}"));
    }
    tally.runs += 1;
    tally.reactions += status.reactions;
    tally.position = status.position;
}

// ---------------------------------------------------------------------------------
// Epochs, reopens and the final check

struct Workers {
    writers: Vec<Writer>,
    readers: Vec<Reader>,
    subscriber: Subscriber,
    cursor: CursorConsumer,
    maintenance: Maintenance,
    reactor: ReactorTally,
}

impl Workers {
    fn new(rng: &mut Rng) -> Workers {
        Workers {
            writers: (0..WRITERS)
                .map(|w| Writer::new(w, rng.fork(w as u64)))
                .collect(),
            readers: (0..READERS)
                .map(|r| Reader {
                    who: format!("reader {r}"),
                    rng: rng.fork(100 + r as u64),
                })
                .collect(),
            subscriber: Subscriber {
                last: 0,
                last_timestamp: 0,
                last_id: None,
                reacted: HashMap::new(),
                events: 0,
                lags: 0,
                watermarks_behind: 0,
            },
            cursor: CursorConsumer {
                rng: rng.fork(200),
                committed: 0,
                max_delivered: 0,
                events: 0,
                redelivered: 0,
                commits: 0,
                reopens: 0,
            },
            maintenance: Maintenance {
                rng: rng.fork(300),
                anchors: Vec::new(),
                backup_number: 0,
            },
            reactor: ReactorTally::default(),
        }
    }
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>, who: &str) -> T {
    handle
        .join()
        .unwrap_or_else(|_| fail(who, "the thread panicked"))
}

/// Runs every worker until `until`, then stops them, lets the reactor catch up and
/// stops it, and drains the subscriber.
fn run_epoch(store: &Arc<Store>, ctx: &Ctx, workers: Workers, until: Instant) -> Workers {
    let Workers {
        writers,
        readers,
        subscriber,
        cursor,
        maintenance,
        mut reactor,
    } = workers;
    let reactor_handle = start_reactor(store, ctx, &reactor);
    let stop = AtomicBool::new(false);
    let (writers, readers, mut subscriber, cursor, maintenance) = std::thread::scope(|s| {
        let stop = &stop;
        let plain: &Store = store;
        let writers: Vec<_> = writers
            .into_iter()
            .map(|w| s.spawn(move || w.run(plain, ctx, stop)))
            .collect();
        let readers: Vec<_> = readers
            .into_iter()
            .map(|r| s.spawn(move || r.run(plain, ctx, stop)))
            .collect();
        let subscriber = s.spawn(move || subscriber.run(plain, ctx, stop));
        let cursor = s.spawn(move || cursor.run(plain, ctx, stop));
        let maintenance = s.spawn(move || maintenance.run(plain, ctx, stop));
        while Instant::now() < until {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
        stop.store(true, Ordering::Relaxed);
        (
            writers.into_iter().map(|h| join(h, "writer")).collect(),
            readers.into_iter().map(|h| join(h, "reader")).collect(),
            join(subscriber, WHO_SUBSCRIBER),
            join(cursor, WHO_CURSOR),
            join(maintenance, WHO_MAINTENANCE),
        )
    });
    stop_reactor(reactor_handle, store, &mut reactor);
    subscriber.drain(store, ctx);
    Workers {
        writers,
        readers,
        subscriber,
        cursor,
        maintenance,
        reactor,
    }
}

/// Opens the store after a clean close and checks what open and verify say.
fn open_checked(ctx: &Ctx, before: Option<&Stats>, anchors: &[Anchor], label: &str) -> Store {
    let started = Instant::now();
    let store = ctx.open().or_fail("main", format_args!("{label}: open"));
    let opened_in = started.elapsed();
    let report = store.open_report().clone();
    let index = match &report.index {
        IndexSource::Checkpoint { events } => format!("checkpoint of {events} events"),
        IndexSource::Rebuilt { reason } => format!("rebuilt ({reason})"),
        other => format!("{other:?}"),
    };
    let started = Instant::now();
    let verified = store
        .verify()
        .or_fail("main", format_args!("{label}: verify"));
    bump(&ctx.counters.verifies, 1);
    let verify_in = started.elapsed();
    let body = &verified.body;
    println!(
        "{label}: opened in {} ms, index {index} + {} scanned, {} events, {} segments, tail cut {}, redactions finished {}; verify {} ({} events, {} redacted) in {} ms",
        opened_in.as_millis(),
        report.scanned_events,
        report.events,
        report.segments,
        report.tail_cut.as_ref().map_or("none".to_string(), |c| format!("{c:?}")),
        report.redactions_finished,
        if body.is_clean() { "clean" } else { "FOUND DAMAGE" },
        body.events,
        body.redacted,
        verify_in.as_millis()
    );
    if !body.is_clean() {
        fail(
            "main",
            format_args!("{label}: verify finds {:?}", body.findings),
        );
    }
    if let Some(before) = before {
        if let Some(cut) = &report.tail_cut {
            fail(
                "main",
                format_args!("{label}: a tail was cut after a clean close: {cut:?}"),
            );
        }
        if report.redactions_finished != 0 {
            fail(
                "main",
                format_args!(
                    "{label}: open finished {} redactions after a clean close",
                    report.redactions_finished
                ),
            );
        }
        match &report.index {
            // A close writes a checkpoint when it pays; otherwise the events since the
            // last one are under a sixteenth of the store (and the floor proves them).
            IndexSource::Checkpoint { events }
                if *events == before.events
                    || (*events < before.events
                        && (before.events - events).saturating_mul(16) < before.events) => {}
            _ => fail(
                "main",
                format_args!(
                    "{label}: after a clean close of {} events the index is {index}",
                    before.events
                ),
            ),
        }
        let stats = store.stats().or_fail("main", "stats after open");
        if report.events != before.events
            || stats.events != before.events
            || body.events != before.events
            || body.last_sequence != before.events
        {
            fail(
                "main",
                format_args!(
                    "{label}: {} events before close; open reports {}, stats {}, verify {} to {}",
                    before.events, report.events, stats.events, body.events, body.last_sequence
                ),
            );
        }
    }
    for anchor in anchors {
        check_anchor(&store, anchor, "main");
    }
    store
}

/// Closes the store (every thread has let go of it) and reopens it.
fn close(store: Arc<Store>, label: &str) -> Stats {
    let store = Arc::try_unwrap(store).unwrap_or_else(|_| {
        fail(
            "main",
            format_args!("{label}: a thread still holds the store"),
        )
    });
    let stats = store.stats().or_fail("main", "stats before close");
    store
        .close()
        .or_fail("main", format_args!("{label}: close"));
    stats
}

/// What the final scan counted.
#[derive(Default)]
struct Tally {
    events: u64,
    written: u64,
    redaction_records: u64,
    reactions: u64,
    positions: u64,
    sources: u64,
    redacted: u64,
}

/// After the final reopen: every event in order, each acknowledged receipt present and
/// identical, nothing unacknowledged but the reactor's own records, the redactions
/// exactly those made, each source reacted to exactly once up to the reactor's
/// position; every entity's chain; the cursor's last commit; keys across the reopen.
fn final_check(store: &Store, ctx: &Ctx, workers: &mut Workers) -> Tally {
    const WHO: &str = "final check";
    let mut tally = Tally::default();
    let mut sources: HashMap<EventId, (u64, EventId)> = HashMap::new();
    let mut reactions: HashMap<EventId, u64> = HashMap::new();
    {
        let ledger = lock(&ctx.ledger);
        let mut matched = 0u64;
        let mut after = 0u64;
        let mut last_id: Option<EventId> = None;
        let mut last_timestamp = 0u64;
        loop {
            let page = store
                .query(&Region::all().with_store_records(), after, 4096)
                .or_fail(WHO, "read the history");
            let Some(last) = page.last() else { break };
            let last = last.sequence;
            for event in &page {
                let sequence = event.sequence;
                if sequence != tally.events + 1 {
                    fail(
                        WHO,
                        format_args!("sequence {sequence} follows {}", tally.events),
                    );
                }
                if event.timestamp_ns < last_timestamp || last_id.is_some_and(|id| event.id <= id) {
                    fail(
                        WHO,
                        format_args!("sequence {sequence} is out of id or time order"),
                    );
                }
                last_id = Some(event.id);
                last_timestamp = event.timestamp_ns;
                tally.events += 1;
                match ledger.get(sequence) {
                    Some(acked) => {
                        check_acked(event, &acked, &ctx.layout, WHO, "final read");
                        matched += 1;
                        match (acked.system, event.kind) {
                            (true, KIND_REDACTION) => tally.redaction_records += 1,
                            (false, kind) if !kind.is_reserved() => tally.written += 1,
                            _ => fail(
                                WHO,
                                format_args!("sequence {sequence} has kind {}", event.kind),
                            ),
                        }
                    }
                    None if event.kind == KIND_REACTION => {}
                    None if event.kind == KIND_REACTOR_POSITION => tally.positions += 1,
                    None => fail(
                        WHO,
                        format_args!(
                            "sequence {sequence} (event {}, kind {} on {}) was never acknowledged",
                            event.id, event.kind, event.coordinate
                        ),
                    ),
                }
                if event.is_redacted() != ledger.redacted.contains(&sequence) {
                    fail(
                        WHO,
                        format_args!(
                            "sequence {sequence} is redacted: {}; redactions made: {}",
                            event.is_redacted(),
                            ledger.redacted.contains(&sequence)
                        ),
                    );
                }
                tally.redacted += u64::from(event.is_redacted());
                if event.kind == KIND_SOURCE {
                    tally.sources += 1;
                    sources.insert(event.id, (sequence, event.correlation.unwrap_or(event.id)));
                }
                if event.kind == KIND_REACTION {
                    tally.reactions += 1;
                    let (source, source_sequence) = parse_reaction(event, WHO);
                    match sources.get(&source) {
                        Some(&(seq, correlation))
                            if seq == source_sequence && event.correlation == Some(correlation) => {}
                        other => fail(
                            WHO,
                            format_args!(
                                "reaction at {sequence} names source {source} at {source_sequence}; the history has {other:?}"
                            ),
                        ),
                    }
                    *reactions.entry(source).or_default() += 1;
                }
            }
            after = last;
        }
        if matched != ledger.filled {
            fail(
                WHO,
                format_args!(
                    "the history holds {matched} of the {} acknowledged events",
                    ledger.filled
                ),
            );
        }
    }
    let stats = store.stats().or_fail(WHO, "stats");
    if stats.events != tally.events {
        fail(
            WHO,
            format_args!(
                "stats count {} events, the history {}",
                stats.events, tally.events
            ),
        );
    }
    let position = workers.reactor.position;
    for (source, &(sequence, _)) in &sources {
        let n = reactions.get(source).copied().unwrap_or(0);
        let want = u64::from(sequence <= position);
        if n != want {
            fail(
                WHO,
                format_args!(
                    "source {source} at {sequence} has {n} reactions; the reactor stopped at {position}"
                ),
            );
        }
    }
    if tally.reactions != workers.reactor.reactions
        || tally.reactions != workers.subscriber.reacted.len() as u64
    {
        fail(
            WHO,
            format_args!(
                "{} reactions in the history, {} reported by the reactor, {} seen live",
                tally.reactions,
                workers.reactor.reactions,
                workers.subscriber.reacted.len()
            ),
        );
    }
    for entity in 0..LAYOUT_LEN {
        check_stream(store, ctx, entity, WHO);
    }
    let positions = store
        .query(
            &Region::all()
                .entity(format!("batpak:reactor:{REACTOR}"))
                .with_store_records(),
            0,
            usize::MAX,
        )
        .or_fail(WHO, "stream the reactor's positions");
    check_chain(&positions, &format!("batpak:reactor:{REACTOR}"), WHO);
    {
        let cursor = store
            .cursor(CURSOR, region_cursor())
            .or_fail(WHO, "open the cursor");
        if cursor.committed() != workers.cursor.committed {
            fail(
                WHO,
                format_args!(
                    "the cursor reopens at {}, its last commit was {}",
                    cursor.committed(),
                    workers.cursor.committed
                ),
            );
        }
    }
    for writer in &mut workers.writers {
        for _ in 0..20 {
            writer.retry(store, ctx);
        }
    }
    if store.stats().or_fail(WHO, "stats").events != tally.events {
        fail(WHO, "retries after the reopen wrote events");
    }
    tally
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn summary(
    ctx: &Ctx,
    workers: &Workers,
    tally: &Tally,
    stats: &Stats,
    elapsed: Duration,
    reopens: u64,
) {
    let c = &ctx.counters;
    let secs = elapsed.as_secs_f64();
    let rate = tally.events as f64 / secs;
    let n = |counter: &AtomicU64| thousands(read(counter));
    let batches = read(&c.batches).max(1);
    println!("== soak summary ==");
    println!(
        "elapsed      {secs:.1} s, sync {}, seed {}, segment size {} KiB",
        ctx.config.sync_name,
        ctx.config.seed,
        SEGMENT_SIZE / 1024
    );
    println!(
        "events       {} ({:.0} events/s): {} written, {} redaction records, {} reactions, {} reactor positions",
        thousands(tally.events),
        rate,
        thousands(tally.written),
        thousands(tally.redaction_records),
        thousands(tally.reactions),
        thousands(tally.positions)
    );
    println!(
        "writes       {} appends, {} batches ({} items, {:.1} per batch), {} idempotent retries, {} version conflicts, {} key conflicts, {} read-backs",
        n(&c.appends),
        n(&c.batches),
        n(&c.batch_items),
        read(&c.batch_items) as f64 / batches as f64,
        n(&c.retries),
        n(&c.version_conflicts),
        n(&c.key_conflicts),
        n(&c.read_backs)
    );
    println!(
        "reads        {} gets, {} streams, {} queries",
        n(&c.gets),
        n(&c.streams),
        n(&c.queries)
    );
    println!(
        "subscriber   {} events, {} lags, {} frontier reads with a watermark behind visible",
        thousands(workers.subscriber.events),
        workers.subscriber.lags,
        thousands(workers.subscriber.watermarks_behind)
    );
    println!(
        "cursor       {} events ({} redelivered), {} commits, {} reopens",
        thousands(workers.cursor.events),
        thousands(workers.cursor.redelivered),
        thousands(workers.cursor.commits),
        thousands(workers.cursor.reopens)
    );
    println!(
        "reactor      {} sources, {} reactions over {} runs, stopped at {}",
        thousands(tally.sources),
        thousands(workers.reactor.reactions),
        workers.reactor.runs,
        thousands(workers.reactor.position)
    );
    println!(
        "maintenance  {} redactions ({} redacted events), {} backups (last of {} events), {} anchors",
        n(&c.redactions),
        thousands(tally.redacted),
        n(&c.backups),
        n(&c.backup_events),
        n(&c.anchors)
    );
    println!(
        "reopens      {reopens} (the final one included), {} verifies, all clean",
        n(&c.verifies)
    );
    println!(
        "segments     {} ({} rotations), {:.1} MiB",
        thousands(stats.segments as u64),
        thousands(stats.segments.saturating_sub(1) as u64),
        stats.segment_bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "SOAK PASSED: {} events in {secs:.1} s ({rate:.0} events/s)",
        tally.events
    );
}

/// The working directory: `--dir` (created, must be empty) or a temporary one.
fn work_dir(config: &Config) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match &config.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
            if entries.next().is_some() {
                return Err(format!("--dir {} is not empty", dir.display()));
            }
            Ok((dir.clone(), None))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("batpak-soak-")
                .tempdir()
                .map_err(|e| format!("create a temporary directory: {e}"))?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

fn main() {
    // A panic anywhere is a violation too: report it and end the process at once.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        fail("panic", info);
    }));
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("soak: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let (root, temp) = match work_dir(&config) {
        Ok(dirs) => dirs,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let total = Duration::from_secs_f64(config.minutes * 60.0);
    let backups_dir = root.join("backups");
    std::fs::create_dir_all(&backups_dir).or_fail("main", "create the backups directory");
    let mut rng = Rng(config.seed);
    let ctx = Ctx {
        intervals: Intervals::for_run(total),
        store_dir: root.join("store"),
        backups_dir,
        layout: Layout::new(),
        ledger: Mutex::new(Ledger::new()),
        counters: Counters::default(),
        config,
    };
    println!(
        "soak: {:.2} min in {} (sync {}, seed {}); reopen every {:.1} s, backup every {:.1} s, anchor every {:.1} s",
        ctx.config.minutes,
        root.display(),
        ctx.config.sync_name,
        ctx.config.seed,
        ctx.intervals.reopen.as_secs_f64(),
        ctx.intervals.backup.as_secs_f64(),
        ctx.intervals.anchor.as_secs_f64()
    );
    let started = Instant::now();
    let deadline = started + total;
    let mut store = Arc::new(open_checked(&ctx, None, &[], "open"));
    let mut workers = Workers::new(&mut rng);
    let mut reopens = 0u64;
    loop {
        let until = (Instant::now() + ctx.intervals.reopen).min(deadline);
        workers = run_epoch(&store, &ctx, workers, until);
        // Too little time left for another epoch to be worth a reopen: finish.
        if deadline.saturating_duration_since(Instant::now()) < Duration::from_secs(1) {
            break;
        }
        reopens += 1;
        let label = format!(
            "reopen {reopens} at {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let before = close(store, &label);
        store = Arc::new(open_checked(
            &ctx,
            Some(&before),
            &workers.maintenance.anchors,
            &label,
        ));
    }
    let elapsed = started.elapsed();
    reopens += 1;
    let before = close(store, "final reopen");
    let store = open_checked(
        &ctx,
        Some(&before),
        &workers.maintenance.anchors,
        "final reopen",
    );
    let tally = final_check(&store, &ctx, &mut workers);
    let stats = store.stats().or_fail("main", "final stats");
    store.close().or_fail("main", "final close");
    summary(&ctx, &workers, &tally, &stats, elapsed, reopens);
    drop(temp);
}
