//! Crash safety against a real `kill -9`.
//!
//! The test binary runs itself as a child process: the `child_*` tests below are
//! ignored by default and return at once unless `BATPAK_KILL9_DIR` names a store. A
//! child appends to the store (`SyncPolicy::Always`) and prints one `@@ACK` line per
//! receipt after the append returned. The parent kills it with SIGKILL after a random
//! delay, reopens the store (read-only first, then writable) and checks:
//!
//! - every acknowledged receipt is there, unchanged, with its payload;
//! - sequences are dense from 1, ids increase, timestamps never go back;
//! - every entity's stream has versions 0..n linked by `prev_hash`;
//! - each worker's events form a gap-free prefix (nothing in the middle vanished);
//! - batches are all-or-nothing and contiguous;
//! - a reported tail cut sits at the end of the last segment, and the read-only open
//!   reported the same cut without changing any file.
//!
//! Rounds reuse one directory, so later rounds reopen stores that earlier kills and
//! cuts left behind. The delays come from a PRNG seeded per round; every round prints
//! its seed, and `BATPAK_KILL9_SEED=<n>` replaces the base seed of every variant.

// Helpers outside `#[test]` functions panic on failure just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, Encoding, EventKind, EventPayload, Hash,
    RawPayload, Region, Store, StoreBuilder, StoredEvent, TailCut,
};
use serde::{Deserialize, Serialize};

/// The store directory; its presence turns a `child_*` test into a child process.
const ENV_DIR: &str = "BATPAK_KILL9_DIR";
/// The round number, written into every payload.
const ENV_ROUND: &str = "BATPAK_KILL9_ROUND";
/// How many threads append concurrently.
const ENV_THREADS: &str = "BATPAK_KILL9_THREADS";
/// The segment size the child opens the store with.
const ENV_SEGMENT: &str = "BATPAK_KILL9_SEGMENT";
/// The largest filler (bytes) the child adds to raw batch items.
const ENV_PAD: &str = "BATPAK_KILL9_PAD";
/// Overrides the base seed of every variant.
const ENV_SEED: &str = "BATPAK_KILL9_SEED";
/// Overrides the number of rounds per variant (for long soak runs).
const ENV_ROUNDS: &str = "BATPAK_KILL9_ROUNDS";
/// Overrides the time budget per variant, in seconds.
const ENV_BUDGET: &str = "BATPAK_KILL9_BUDGET_SECS";

const OPEN_MARK: &str = "@@OPEN";
const ACK_MARK: &str = "@@ACK ";
const FAIL_MARK: &str = "@@FAIL ";

const ENTITIES: [&str; 4] = ["account:0", "account:1", "order:7", "ledger"];
const SCOPE: &str = "tenant:kill9";
/// The kind of raw (opaque) events; typed ones use `Mark::KIND`.
const RAW_KIND: EventKind = EventKind::custom(1, 2);

const ROUNDS: u32 = 8;
/// Wall time one variant may use; it stops starting rounds after this.
const BUDGET: Duration = Duration::from_secs(7);
/// A child stops by itself after this, in case nobody kills it.
const CHILD_MAX_RUN: Duration = Duration::from_secs(20);

/// Keeps child spawns apart from the parent's store handles. The variants run on
/// parallel test threads of one process; a child forked while another thread has a
/// store open inherits that LOCK file description until it execs, and flock locks
/// belong to the description: a close followed at once by a reopen would then fail
/// with `Error::Locked` (see `lock_contention.rs`).
static PROCESS_GUARD: Mutex<()> = Mutex::new(());

fn process_guard() -> MutexGuard<'static, ()> {
    PROCESS_GUARD.lock().unwrap_or_else(|p| p.into_inner())
}

/// What every event carries, so the parent can recognise it after the crash.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    round: u32,
    worker: u32,
    /// The worker's loop counter (single events) or batch number (batches).
    n: u64,
    /// Position within the batch (0 for single events).
    item: u32,
    /// Items in the batch (1 for single events).
    len: u32,
}

impl EventPayload for Mark {
    const KIND: EventKind = EventKind::custom(1, 1);
}

impl Mark {
    const RAW_MAGIC: &'static [u8; 4] = b"mark";
    const RAW_LEN: usize = 4 + 4 + 4 + 8 + 4 + 4;

    /// The filler byte at position `i`, derived from the mark so it can be checked.
    fn filler(self, i: usize) -> u8 {
        (i as u64 * 31 + self.n * 7 + u64::from(self.item)) as u8
    }

    /// The opaque encoding used for raw appends: the fields, then `pad` filler bytes
    /// (large raw items make batch writes span several pages, so a kill can tear one).
    fn to_raw(self, pad: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::RAW_LEN + pad);
        out.extend_from_slice(Self::RAW_MAGIC);
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(&self.worker.to_le_bytes());
        out.extend_from_slice(&self.n.to_le_bytes());
        out.extend_from_slice(&self.item.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend((0..pad).map(|i| self.filler(i)));
        out
    }

    fn from_raw(bytes: &[u8]) -> Option<Mark> {
        if bytes.len() < Self::RAW_LEN || &bytes[..4] != Self::RAW_MAGIC {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let mark = Mark {
            round: u32_at(4),
            worker: u32_at(8),
            n: u64::from_le_bytes(bytes[12..20].try_into().unwrap()),
            item: u32_at(20),
            len: u32_at(24),
        };
        let filler = &bytes[Self::RAW_LEN..];
        let intact = filler.iter().enumerate().all(|(i, &b)| b == mark.filler(i));
        intact.then_some(mark)
    }

    /// The mark a stored event carries, whichever way it was appended.
    fn of(event: &StoredEvent) -> Mark {
        if event.kind == Mark::KIND {
            event
                .decode::<Mark>()
                .unwrap_or_else(|e| panic!("seq {}: typed payload: {e}", event.sequence))
        } else if event.kind == RAW_KIND {
            assert_eq!(event.encoding, Encoding::Opaque, "seq {}", event.sequence);
            Mark::from_raw(&event.payload)
                .unwrap_or_else(|| panic!("seq {}: raw payload is not a mark", event.sequence))
        } else {
            panic!("seq {}: unexpected kind {}", event.sequence, event.kind)
        }
    }

    /// Identifies the append (batch) the event came from.
    fn append_key(self) -> AppendKey {
        (self.round, self.worker, self.n)
    }
}

/// Round, worker and counter: which append (or batch) wrote an event.
type AppendKey = (u32, u32, u64);

/// SplitMix64: small, seedable, good enough to pick delays and batch shapes.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------
// The child process.
// ---------------------------------------------------------------------------------

#[derive(Debug)]
struct ChildConfig {
    dir: PathBuf,
    round: u32,
    threads: u32,
    segment_size: u64,
    max_pad: u64,
}

impl ChildConfig {
    /// `None` when this process is not a crash-test child.
    fn from_env() -> Option<ChildConfig> {
        let dir = PathBuf::from(std::env::var_os(ENV_DIR)?);
        let number = |name: &str| -> u64 {
            let text = std::env::var(name).unwrap_or_else(|_| fail(&format!("{name} unset")));
            text.parse()
                .unwrap_or_else(|_| fail(&format!("{name}={text:?} is not a number")))
        };
        Some(ChildConfig {
            dir,
            round: u32::try_from(number(ENV_ROUND)).unwrap(),
            threads: u32::try_from(number(ENV_THREADS)).unwrap(),
            segment_size: number(ENV_SEGMENT),
            max_pad: number(ENV_PAD),
        })
    }
}

#[test]
#[ignore = "child process entry, run by the crash tests"]
fn child_single_events() {
    if let Some(config) = ChildConfig::from_env() {
        run_child(&config, append_single);
    }
}

#[test]
#[ignore = "child process entry, run by the crash tests"]
fn child_batches() {
    if let Some(config) = ChildConfig::from_env() {
        run_child(&config, append_batch);
    }
}

/// Writes `text` to stdout in one locked write and flushes it.
fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Reports a failure to the parent (which otherwise only sees a kill) and exits.
fn fail(message: &str) -> ! {
    eprintln!("crash child failed: {message}");
    let _ = emit(&format!("\n{FAIL_MARK}{message}\n"));
    std::process::exit(3)
}

/// Opens the store and lets `threads` workers call `append` (one append each call,
/// returning the lines to print) until killed.
fn run_child(config: &ChildConfig, append: fn(&Store, &ChildConfig, u32, u64) -> String) {
    let store = Store::builder(&config.dir)
        .segment_size(config.segment_size)
        .open()
        .unwrap_or_else(|e| fail(&format!("open: {e}")));
    // A leading newline keeps the marker off libtest's "test name ... " line.
    if emit(&format!("\n{OPEN_MARK}\n")).is_err() {
        return;
    }
    let deadline = Instant::now() + CHILD_MAX_RUN;
    thread::scope(|s| {
        for worker in 0..config.threads {
            let store = &store;
            s.spawn(move || {
                let mut n = 0;
                while Instant::now() < deadline {
                    let lines = append(store, config, worker, n);
                    if emit(&lines).is_err() {
                        return; // the parent is gone
                    }
                    n += 1;
                }
            });
        }
    });
    store
        .close()
        .unwrap_or_else(|e| fail(&format!("close: {e}")));
}

fn coordinate(entity: &str) -> Coordinate {
    Coordinate::new(entity, SCOPE).unwrap_or_else(|e| fail(&format!("coordinate: {e}")))
}

fn ack_line(mark: &Mark, entity: &str, r: &AppendReceipt) -> String {
    format!(
        "{ACK_MARK}round={} worker={} n={} item={} len={} receipt={} entity={entity}\n",
        mark.round,
        mark.worker,
        mark.n,
        mark.item,
        mark.len,
        r.to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

/// One event, typed or raw, on an entity chosen by the counter.
fn append_single(store: &Store, config: &ChildConfig, worker: u32, n: u64) -> String {
    let round = config.round;
    let entity = ENTITIES[(n as usize * 3 + worker as usize) % ENTITIES.len()];
    let coord = coordinate(entity);
    let mark = Mark {
        round,
        worker,
        n,
        item: 0,
        len: 1,
    };
    let result = if n.is_multiple_of(3) {
        store.append_raw(
            &coord,
            RAW_KIND,
            RawPayload::opaque(&mark.to_raw(0)),
            AppendOptions::default(),
        )
    } else {
        store.append(&coord, &mark)
    };
    let receipt = result.unwrap_or_else(|e| fail(&format!("append {mark:?}: {e}")));
    ack_line(&mark, entity, &receipt)
}

/// One batch of 2..=20 events across entities; items after the first name the first
/// as their cause.
fn append_batch(store: &Store, config: &ChildConfig, worker: u32, n: u64) -> String {
    let round = config.round;
    let mut rng = SplitMix64((u64::from(round) << 40) ^ (u64::from(worker) << 32) ^ n);
    let len = 2 + rng.below(19) as u32;
    let mut batch = Batch::new();
    let mut items = Vec::with_capacity(len as usize);
    for item in 0..len {
        let entity = ENTITIES[rng.below(ENTITIES.len() as u64) as usize];
        let coord = coordinate(entity);
        let mark = Mark {
            round,
            worker,
            n,
            item,
            len,
        };
        let options = if item == 0 {
            AppendOptions::default()
        } else {
            AppendOptions::default().caused_by_item(0)
        };
        if item % 2 == 0 {
            batch
                .push(&coord, &mark, options)
                .unwrap_or_else(|e| fail(&format!("push {mark:?}: {e}")));
        } else {
            let pad = rng.below(config.max_pad + 1) as usize;
            let bytes = mark.to_raw(pad);
            batch.push_raw(&coord, RAW_KIND, RawPayload::opaque(&bytes), options);
        }
        items.push((mark, entity));
    }
    let receipts = store
        .append_batch(&batch)
        .unwrap_or_else(|e| fail(&format!("append batch ({round}, {worker}, {n}): {e}")));
    if receipts.len() != items.len() {
        fail(&format!(
            "batch of {} items returned {} receipts",
            items.len(),
            receipts.len()
        ));
    }
    items
        .iter()
        .zip(&receipts)
        .map(|((mark, entity), receipt)| ack_line(mark, entity, receipt))
        .collect()
}

// ---------------------------------------------------------------------------------
// The parent.
// ---------------------------------------------------------------------------------

/// One variant of the crash test.
#[derive(Debug)]
struct Variant {
    name: &'static str,
    /// The child test to run.
    entry: &'static str,
    batches: bool,
    threads: u32,
    segment_size: u64,
    /// Largest filler of raw batch items.
    max_pad: u64,
    seed: u64,
}

/// An acknowledged append, as the child printed it.
#[derive(Debug, Clone)]
struct Ack {
    mark: Mark,
    entity: String,
    receipt: AppendReceipt,
}

/// A receipt from the hex of its wire form.
fn parse_receipt(hex: &str) -> AppendReceipt {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    AppendReceipt::from_bytes(&bytes).unwrap()
}

/// Parses an `@@ACK` line; `None` for any other line.
fn parse_ack(line: &str) -> Option<Ack> {
    let at = line.find(ACK_MARK)?;
    let fields: HashMap<&str, &str> = line[at + ACK_MARK.len()..]
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .collect();
    let get = |key: &str| -> &str {
        fields
            .get(key)
            .unwrap_or_else(|| panic!("ack line lacks {key}: {line:?}"))
    };
    let num = |key: &str| -> u64 {
        get(key)
            .parse()
            .unwrap_or_else(|_| panic!("ack field {key} is not a number: {line:?}"))
    };
    Some(Ack {
        mark: Mark {
            round: u32::try_from(num("round")).unwrap(),
            worker: u32::try_from(num("worker")).unwrap(),
            n: num("n"),
            item: u32::try_from(num("item")).unwrap(),
            len: u32::try_from(num("len")).unwrap(),
        },
        entity: get("entity").to_string(),
        receipt: parse_receipt(get("receipt")),
    })
}

/// Forwards complete lines; returns the length of an unterminated last line.
fn forward_lines(out: impl Read, tx: mpsc::Sender<String>) -> usize {
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return 0,
            Ok(n) if !buf.ends_with(b"\n") => return n,
            Ok(_) => {
                if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                    return 0;
                }
            }
            Err(e) => panic!("reading the child's stdout: {e}"),
        }
    }
}

/// What one child run produced.
#[derive(Debug)]
struct ChildRun {
    lines: Vec<String>,
    /// Bytes of a line the kill cut short (not counted as an acknowledgement).
    partial: usize,
    /// When the kill was sent, relative to what.
    timing: String,
}

/// Starts the child, kills it with SIGKILL after the round's delay, and collects what
/// it printed.
fn run_child_and_kill(variant: &Variant, dir: &Path, round: u32, rng: &mut SplitMix64) -> ChildRun {
    // Usually time the kill from the moment the store is open; sometimes from the
    // spawn, which can land the kill in process start-up or in the open itself.
    let from_open = rng.below(4) != 0;
    let delay = Duration::from_millis(5 + rng.below(146));
    let guard = process_guard();
    let spawned = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            variant.entry,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_ROUND, round.to_string())
        .env(ENV_THREADS, variant.threads.to_string())
        .env(ENV_SEGMENT, variant.segment_size.to_string())
        .env(ENV_PAD, variant.max_pad.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `spawn` returns once the child has exec'd and dropped inherited descriptors.
    drop(guard);
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let out_reader = thread::spawn(move || forward_lines(stdout, tx));
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut lines = Vec::new();
    let anchor = if from_open {
        let give_up = spawned + Duration::from_secs(30);
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let opened = line.contains(OPEN_MARK);
                    lines.push(line);
                    if opened {
                        break Instant::now();
                    }
                }
                // The child ended (or hangs): kill now, the status check reports it.
                Err(_) => break Instant::now(),
            }
        }
    } else {
        spawned
    };
    thread::sleep((anchor + delay).saturating_duration_since(Instant::now()));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let partial = out_reader.join().unwrap();
    lines.extend(rx.try_iter());
    let stderr = err_reader.join().unwrap();
    let failures: Vec<&String> = lines.iter().filter(|l| l.contains(FAIL_MARK)).collect();
    assert!(
        failures.is_empty() && status.signal() == Some(9),
        "round {round}: the child did not die by SIGKILL ({status}); failures: {failures:?}\n\
         child stderr:\n{stderr}"
    );
    let timing = format!(
        "killed {}ms after {}",
        delay.as_millis(),
        if from_open { "open" } else { "spawn" }
    );
    ChildRun {
        lines,
        partial,
        timing,
    }
}

/// Segment files and their lengths (empty when there is no segments directory).
fn segment_files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let Ok(entries) = fs::read_dir(dir.join("segments")) else {
        return BTreeMap::new();
    };
    entries
        .map(|entry| {
            let path = entry.unwrap().path();
            let len = fs::metadata(&path).unwrap().len();
            (path, len)
        })
        .collect()
}

/// What the parent found when it reopened the store.
#[derive(Debug)]
struct Reopened {
    events: u64,
    segments: usize,
    cut: Option<TailCut>,
}

/// Checks that a tail cut describes the end of the last segment file as it was before
/// the open, and that the writable open left the file that long.
fn check_cut(cut: &TailCut, before: &BTreeMap<PathBuf, u64>) {
    let (last, len) = before
        .iter()
        .next_back()
        .unwrap_or_else(|| panic!("a cut was reported but there was no segment: {cut:?}"));
    assert_eq!(&cut.path, last, "the cut is not in the last segment");
    assert_eq!(
        cut.offset + cut.bytes,
        *len,
        "the cut does not reach the end of the file: {cut:?}"
    );
    if cut.offset == 0 {
        // A segment whose header was never completed is removed (the first segment is
        // then created anew), so there is no length to compare.
        assert_eq!(cut.records, 0, "{cut:?}");
    } else {
        assert!(cut.bytes > 0 || cut.records > 0, "an empty cut: {cut:?}");
        assert_eq!(
            fs::metadata(last).unwrap().len(),
            cut.offset,
            "the writable open did not cut the file to the reported offset"
        );
    }
}

/// Reopens the store in `dir` and checks it against every acknowledgement so far.
fn verify(dir: &Path, acks: &[Ack], batches: bool) -> Reopened {
    let before = segment_files(dir);

    // Read-only first: it must see the same state and change no file.
    let read_only = if dir.join("segments").is_dir() {
        let ro = Store::open_read_only(dir).unwrap_or_else(|e| panic!("read-only open: {e}"));
        let seen = (
            ro.open_report().tail_cut.clone(),
            ro.stats().unwrap().events,
        );
        ro.close().unwrap();
        assert_eq!(
            segment_files(dir),
            before,
            "the read-only open changed segment files"
        );
        Some(seen)
    } else {
        None
    };

    let store = Store::open(dir).unwrap_or_else(|e| panic!("reopen after kill: {e}"));
    let report = store.open_report().clone();
    if let Some(cut) = &report.tail_cut {
        check_cut(cut, &before);
    }

    // Dense sequences, increasing ids, monotonic timestamps.
    let all = store
        .query(&Region::all().with_store_records(), 0, usize::MAX)
        .unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.events, all.len() as u64);
    assert_eq!(stats.written_sequence, stats.events);
    assert_eq!(stats.durable_sequence, stats.events);
    assert_eq!(report.events, stats.events);
    if let Some((ro_cut, ro_events)) = &read_only {
        // Only a writable open keeps a copy of what it cut.
        let cut = report.tail_cut.clone().map(|mut c| {
            c.kept = None;
            c
        });
        assert_eq!(&cut, ro_cut, "read-only and writable opens disagree");
        assert_eq!(
            *ro_events, stats.events,
            "read-only open saw another event count"
        );
    }
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event.sequence, i as u64 + 1, "sequences are not dense");
        assert_eq!(event.coordinate.scope(), SCOPE);
    }
    for pair in all.windows(2) {
        assert!(pair[0].id < pair[1].id, "ids do not increase: {pair:?}");
        assert!(pair[0].timestamp_ns <= pair[1].timestamp_ns);
    }

    // Every acknowledged receipt, exactly as acknowledged.
    for ack in acks {
        let event = store
            .get(ack.receipt.event_id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged event lost: {ack:?}"));
        assert_eq!(event.receipt(), ack.receipt, "receipt differs for {ack:?}");
        assert!(
            store.verify_receipt(&ack.receipt).unwrap().is_valid(),
            "{ack:?}"
        );
        assert_eq!(event.coordinate.entity(), ack.entity);
        assert_eq!(Mark::of(&event), ack.mark);
    }

    // Chains: versions 0..n, each prev_hash the previous event's hash.
    let mut by_entity: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
    for event in &all {
        by_entity
            .entry(event.coordinate.entity())
            .or_default()
            .push(event);
    }
    for (entity, events) in &by_entity {
        let stream = store.stream(entity).unwrap();
        assert_eq!(stream.len(), events.len(), "stream of {entity}");
        let mut prev = Hash::ZERO;
        for (version, (streamed, listed)) in stream.iter().zip(events).enumerate() {
            assert_eq!(
                streamed, *listed,
                "stream of {entity} differs from the query"
            );
            assert_eq!(streamed.version, version as u64, "versions of {entity}");
            assert_eq!(streamed.prev_hash, prev, "chain of {entity} at {version}");
            prev = streamed.event_hash();
        }
    }

    // Payloads: group events by the append (or batch) that wrote them.
    let mut appends: BTreeMap<AppendKey, Vec<(&StoredEvent, Mark)>> = BTreeMap::new();
    for event in &all {
        let mark = Mark::of(event);
        appends
            .entry(mark.append_key())
            .or_default()
            .push((event, mark));
    }
    let mut per_worker: BTreeMap<(u32, u32), Vec<u64>> = BTreeMap::new();
    for (key, items) in &appends {
        let len = items[0].1.len;
        if !batches {
            assert_eq!(len, 1, "single append {key:?}");
        }
        // All or nothing, in item order, at consecutive sequences.
        assert_eq!(
            items.len(),
            len as usize,
            "append {key:?} is partly visible"
        );
        let first = items[0].0;
        for (i, (event, mark)) in items.iter().enumerate() {
            assert_eq!(mark.item, i as u32, "append {key:?} items out of order");
            assert_eq!(mark.len, len, "append {key:?} disagrees on its size");
            assert_eq!(
                event.sequence,
                first.sequence + i as u64,
                "{key:?} not contiguous"
            );
            let expected_cause = (batches && i > 0).then_some(first.id);
            assert_eq!(event.causation, expected_cause, "causation in {key:?}");
        }
        per_worker.entry((key.0, key.1)).or_default().push(key.2);
    }
    // A worker appends n + 1 only after n returned, and a kill loses no written byte
    // except a torn last write: each worker's appends are a prefix 0..k.
    for (worker, ns) in &per_worker {
        let expected: Vec<u64> = (0..ns.len() as u64).collect();
        assert_eq!(ns, &expected, "worker {worker:?} has a gap");
    }
    // The acknowledged part of each batch agrees with what the store holds.
    let mut acked: BTreeMap<AppendKey, Vec<&Ack>> = BTreeMap::new();
    for ack in acks {
        acked.entry(ack.mark.append_key()).or_default().push(ack);
    }
    for (key, printed) in &acked {
        let stored = appends
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged append {key:?} is gone"));
        for ack in printed {
            let (event, _) = stored[ack.mark.item as usize];
            assert_eq!(
                event.receipt(),
                ack.receipt,
                "batch {key:?} item {}",
                ack.mark.item
            );
        }
    }

    let out = Reopened {
        events: stats.events,
        segments: stats.segments,
        cut: report.tail_cut,
    };
    store.close().unwrap();
    out
}

fn describe_cut(cut: &Option<TailCut>) -> String {
    match cut {
        None => "no tail cut".into(),
        Some(c) => format!(
            "cut {} bytes ({} records) at offset {} of {}: {}",
            c.bytes,
            c.records,
            c.offset,
            c.path.file_name().unwrap().to_string_lossy(),
            c.reason
        ),
    }
}

/// A number from the environment (decimal or `0x` hex), or `default`.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        }
        .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

fn run_variant(variant: &Variant) {
    let dir = tempfile::tempdir().unwrap();
    let base = env_number(ENV_SEED, variant.seed);
    let rounds_wanted = env_number(ENV_ROUNDS, u64::from(ROUNDS));
    let budget = Duration::from_secs(env_number(ENV_BUDGET, BUDGET.as_secs()));
    println!(
        "[{}] base seed {base:#x} (set {ENV_SEED} to change it), dir {}",
        variant.name,
        dir.path().display()
    );
    let started = Instant::now();
    let mut acks: Vec<Ack> = Vec::new();
    let mut rounds = 0;
    let mut acked_rounds = 0;
    let mut cuts = 0;
    // Round seeds come from one generator per variant, so they differ between variants
    // and rounds, and a base seed reproduces the whole sequence.
    let mut seeds = SplitMix64(base);
    for round in 0..u32::try_from(rounds_wanted).unwrap() {
        let seed = seeds.next();
        if started.elapsed() >= budget {
            println!(
                "[{}] time budget used; stopping after {round} rounds",
                variant.name
            );
            break;
        }
        let mut rng = SplitMix64(seed);
        let run = run_child_and_kill(variant, dir.path(), round, &mut rng);
        let new: Vec<Ack> = run.lines.iter().filter_map(|l| parse_ack(l)).collect();
        for ack in &new {
            assert_eq!(ack.mark.round, round, "an ack from another round");
        }
        let new_count = new.len();
        acks.extend(new);
        let found = {
            let _guard = process_guard();
            verify(dir.path(), &acks, variant.batches)
        };
        rounds += 1;
        acked_rounds += usize::from(new_count > 0);
        cuts += usize::from(found.cut.is_some());
        println!(
            "[{}] round {round} seed {seed:#018x}: {}; {new_count} acks ({} total), \
             {} partial bytes; store has {} events in {} segments; {}",
            variant.name,
            run.timing,
            acks.len(),
            run.partial,
            found.events,
            found.segments,
            describe_cut(&found.cut)
        );
    }
    println!(
        "[{}] {rounds} rounds in {:.1?}: {} acknowledged appends survived, {cuts} tail cuts",
        variant.name,
        started.elapsed(),
        acks.len()
    );
    assert!(rounds > 0, "no round ran");
    assert!(
        acked_rounds > 0,
        "no child acknowledged anything before it was killed"
    );
}

#[test]
fn kill9_single_events() {
    run_variant(&Variant {
        name: "single",
        entry: "child_single_events",
        batches: false,
        threads: 1,
        segment_size: StoreBuilder::DEFAULT_SEGMENT_SIZE,
        max_pad: 0,
        seed: 0x5EED_0001,
    });
}

/// Two threads append at once, so fsyncs are shared (group commit); small segments
/// make kills land in rotations too.
#[test]
fn kill9_single_events_group_commit() {
    run_variant(&Variant {
        name: "group-commit",
        entry: "child_single_events",
        batches: false,
        threads: 2,
        segment_size: 16 * 1024,
        max_pad: 0,
        seed: 0x5EED_0002,
    });
}

#[test]
fn kill9_batches() {
    run_variant(&Variant {
        name: "batches",
        entry: "child_batches",
        batches: true,
        threads: 2,
        segment_size: 256 * 1024,
        max_pad: 3000,
        seed: 0x5EED_0003,
    });
}
