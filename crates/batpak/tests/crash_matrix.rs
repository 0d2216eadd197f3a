//! The crash matrix: every file-system call an operation makes, failed in turn.
//!
//! For each operation (an append, an atomic batch, a segment rotation with its
//! checkpoint, the checkpoint at close, a redaction, a cursor commit, a projection
//! snapshot written and read, a backup, a reactor step) a fault-free run first counts
//! the calls it makes per `Op`, so the matrix is derived, not hand-listed. Then, for
//! every op it used, every call number N and every fault, a fresh store gets the same
//! acknowledged events, the N-th call fails, and the test checks: the error names the
//! operation and a path; a failed segment write or fsync poisons the store; after a
//! reopen every acknowledged event reads back with its receipt, nothing of a failed
//! batch is half there, `verify()` is clean and the next append follows on. Each
//! operation adds its own checks (the cursor is at the old or the new position, a
//! backup is absent or complete, a projection equals a fresh fold, ...).
//!
//! `cargo test -p batpak --features fault-injection --test crash_matrix -- --nocapture`
//! prints the table: one row per (operation, op, N), one column per fault.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test setup runs fault-free and aborts on failure"
)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batpak::__fault::{Fault, FaultPlan, Op};
use batpak::reactor::{ReactorOptions, ReactorPosition, ReactorState};
use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, Error, EventKind, EventPayload, Freshness,
    IndexSource, Projection, RawPayload, Redaction, Region, Store, StoreBuilder, StoredEvent,
};
use serde::Serialize;

const OPS: [Op; 9] = [
    Op::Create,
    Op::Write,
    Op::Sync,
    Op::Truncate,
    Op::Rename,
    Op::SyncDir,
    Op::Remove,
    Op::Read,
    Op::Lock,
];
const FAULTS: [Fault; 3] = [Fault::Eio, Fault::Enospc, Fault::ShortWrite];

/// The kind of every user event here.
const USER: EventKind = EventKind::custom(1, 1);
/// The kind of a reactor's reactions.
const REACTION: EventKind = EventKind::custom(1, 2);
/// Payload bytes: the operation's own events, the poison probe, the append after reopen.
const OP_BYTE: u8 = 0xA0;
const PROBE_BYTE: u8 = 0xEE;
const AFTER_BYTE: u8 = 0xAF;

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "crash").unwrap()
}

fn append_sized(
    store: &Store,
    entity: &str,
    byte: u8,
    len: usize,
) -> batpak::Result<AppendReceipt> {
    store.append_raw(
        &coord(entity),
        USER,
        RawPayload::opaque(&vec![byte; len]),
        AppendOptions::default(),
    )
}

fn append(store: &Store, entity: &str, byte: u8) -> batpak::Result<AppendReceipt> {
    append_sized(store, entity, byte, 32)
}

/// The acknowledged events every case starts from.
fn seed(store: &Store) -> Vec<AppendReceipt> {
    vec![
        append(store, "acct:1", 1).unwrap(),
        append(store, "acct:1", 2).unwrap(),
        append(store, "acct:2", 3).unwrap(),
    ]
}

/// Whether `event` carries the payload `[byte; len]`.
fn carries(event: &StoredEvent, byte: u8, len: usize) -> bool {
    event.kind == USER && event.payload.len() == len && event.payload.iter().all(|&b| b == byte)
}

/// A persisting projection whose result shows whether a payload was erased.
#[derive(Clone, Default, Debug, PartialEq, Serialize)]
struct Total {
    events: u64,
    payload_bytes: u64,
    redacted: u64,
}

impl Projection for Total {
    const NAME: &'static str = "crash-matrix-total";
    const KINDS: &'static [EventKind] = &[USER];
    const PERSIST: bool = true;

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        self.events += 1;
        if event.is_redacted() {
            self.redacted += 1;
        } else {
            self.payload_bytes += event.payload().len() as u64;
        }
        Ok(())
    }

    fn to_snapshot(&self) -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(24);
        for n in [self.events, self.payload_bytes, self.redacted] {
            bytes.extend_from_slice(&n.to_le_bytes());
        }
        Some(bytes)
    }

    fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 24 {
            return None;
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        Some(Total {
            events: word(0),
            payload_bytes: word(1),
            redacted: word(2),
        })
    }
}

/// `Total` computed directly from the entity's events, without cache or snapshot.
fn fold(store: &Store, entity: &str) -> batpak::Result<Option<Total>> {
    let mut total: Option<Total> = None;
    store.visit_stream(entity, |event| {
        if event.kind() == USER {
            total.get_or_insert_with(Total::default).apply(event)?;
        }
        Ok(())
    })?;
    Ok(total)
}

#[derive(Clone, Copy, Debug)]
struct Injection {
    op: Op,
    n: u64,
    fault: Fault,
}

/// One run of an operation: fault-free (counting its calls) or with one injection.
struct Case {
    inject: Option<Injection>,
    segment_size: u64,
    root: tempfile::TempDir,
    plan: Arc<FaultPlan>,
    before: [u64; OPS.len()],
    used: [u64; OPS.len()],
    fired: bool,
    notes: Vec<String>,
    violations: Vec<String>,
}

impl Case {
    fn new(inject: Option<Injection>, segment_size: u64) -> Self {
        let root = tempfile::tempdir().unwrap();
        let plan = FaultPlan::install(root.path());
        Case {
            inject,
            segment_size,
            root,
            plan,
            before: [0; OPS.len()],
            used: [0; OPS.len()],
            fired: false,
            notes: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// The store's directory (the plan covers its parent, so a backup beside it too).
    fn dir(&self) -> PathBuf {
        self.root.path().join("store")
    }

    fn builder(&self) -> StoreBuilder {
        Store::builder(self.dir()).segment_size(self.segment_size)
    }

    /// Opens the store during setup, which never fails on purpose.
    fn open(&self) -> Store {
        self.builder().open().unwrap()
    }

    /// Starts the operation: counts from here, and arms the injection.
    fn arm(&mut self) {
        self.before = OPS.map(|op| self.plan.calls(op));
        if let Some(i) = self.inject {
            self.plan.fail_nth(i.op, i.n, i.fault);
        }
    }

    /// Ends the operation: records the calls it made and disarms the injection.
    fn disarm(&mut self) {
        for (i, op) in OPS.iter().enumerate() {
            self.used[i] = self.plan.calls(*op) - self.before[i];
        }
        if let Some(i) = self.inject {
            let slot = OPS.iter().position(|op| *op == i.op).unwrap();
            self.fired = self.used[slot] >= i.n;
        }
        self.plan.clear();
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    fn violation(&mut self, what: impl Into<String>) {
        self.violations.push(what.into());
    }

    /// What the operation returned: notes it and checks a failure is a clear one.
    /// `absorbs`: the operation has best-effort steps whose failure it may swallow.
    /// Returns the name of the failed I/O step, when there is one.
    fn outcome<T>(&mut self, result: &batpak::Result<T>, absorbs: bool) -> Option<&'static str> {
        match result {
            Ok(_) => {
                self.note("ok");
                if self.inject.is_some() && self.fired && !absorbs {
                    self.violation(
                        "the injected failure fired, yet the operation reported success",
                    );
                }
                None
            }
            Err(err) => self.failed(err),
        }
    }

    /// Checks `err` is `Error::Io` (or `Error::Poisoned` around one) naming the step,
    /// a path of this store and the injected failure.
    fn failed(&mut self, err: &Error) -> Option<&'static str> {
        let inner = match err {
            Error::Poisoned { source } => &**source,
            other => other,
        };
        let Error::Io { op, path, source } = inner else {
            self.note("err(?)");
            self.violation(format!(
                "unclear error (expected Error::Io naming the step and path): {err:?}"
            ));
            return None;
        };
        self.note(format!("err({op})"));
        if !path.starts_with(self.root.path()) {
            self.violation(format!(
                "the error names {}, outside the store: {err}",
                path.display()
            ));
        }
        if !source.to_string().contains("injected") {
            self.violation(format!("the error is not the injected failure: {err}"));
        }
        Some(op)
    }

    /// Appends once more: `true` when the store refuses as poisoned. An accepted probe
    /// is acknowledged like any other event.
    fn probe(&mut self, store: &Store, acked: &mut Vec<AppendReceipt>) -> bool {
        match append(store, "probe:1", PROBE_BYTE) {
            Ok(r) => {
                acked.push(r);
                false
            }
            Err(Error::Poisoned { .. }) => {
                self.note("P");
                true
            }
            Err(e) => {
                self.violation(format!("the append after the operation failed: {e:?}"));
                false
            }
        }
    }

    /// A failed segment write or fsync must poison; a failure outside the log must not,
    /// unless the operation `may_poison`.
    fn poison_rule(&mut self, step: Option<&str>, poisoned: bool, may_poison: bool) {
        if matches!(step, Some("write segment" | "fsync segment")) && !poisoned {
            self.violation("a failed segment write or fsync did not poison the store");
        }
        if poisoned && !may_poison {
            self.violation("a failure outside the log poisoned the store");
        }
    }

    /// Reopens writable and checks what every operation promises: each acknowledged
    /// event reads back with its receipt, the unacknowledged ones pass `unacked_ok`,
    /// `verify()` is clean, and a new append follows the last event.
    fn reopen(
        &mut self,
        acked: &[AppendReceipt],
        unacked_ok: impl Fn(&[StoredEvent]) -> Result<(), String>,
    ) -> Option<Store> {
        self.plan.clear();
        let store = match self.builder().open() {
            Ok(s) => s,
            Err(e) => {
                self.note("reopen failed");
                self.violation(format!("reopen failed: {e:?}"));
                return None;
            }
        };
        // The whole journal: events a deletion hides are still acknowledged events.
        let journal = Region::all().with_store_records().with_hidden();
        let events = match store.query(&journal, 0, usize::MAX) {
            Ok(events) => events,
            Err(e) => {
                self.violation(format!("reading every event after reopen failed: {e:?}"));
                return Some(store);
            }
        };
        if let Some((i, e)) = events
            .iter()
            .enumerate()
            .find(|(i, e)| e.sequence != *i as u64 + 1)
        {
            self.violation(format!("event {i} has sequence {}", e.sequence));
        }
        for r in acked {
            let found = usize::try_from(r.sequence - 1)
                .ok()
                .and_then(|i| events.get(i));
            match found {
                Some(e) if e.receipt() == *r => {}
                Some(e) => self.violation(format!(
                    "acknowledged sequence {} reads back with another receipt: acknowledged {r:?}, stored {:?}",
                    r.sequence,
                    e.receipt()
                )),
                None => self.violation(format!(
                    "acknowledged event {} (sequence {}) is lost",
                    r.event_id, r.sequence
                )),
            }
        }
        let acked_seqs: HashSet<u64> = acked.iter().map(|r| r.sequence).collect();
        let unacked: Vec<StoredEvent> = events
            .iter()
            .filter(|e| !acked_seqs.contains(&e.sequence))
            .cloned()
            .collect();
        if !unacked.is_empty() {
            self.note(format!("+{}", unacked.len()));
        }
        if let Err(why) = unacked_ok(&unacked) {
            self.violation(format!("unacknowledged events after reopen: {why}"));
        }
        match store.verify() {
            Ok(report) if report.body.is_clean() => {}
            Ok(report) => {
                self.violation(format!("verify() after reopen: {:?}", report.body.findings))
            }
            Err(e) => self.violation(format!("verify() after reopen failed: {e:?}")),
        }
        let last = events.last().map_or(0, |e| e.sequence);
        match append(&store, "after:1", AFTER_BYTE) {
            Ok(r) if r.sequence == last + 1 => {}
            Ok(r) => self.violation(format!(
                "the append after reopen got sequence {}, expected {}",
                r.sequence,
                last + 1
            )),
            Err(e) => self.violation(format!("the append after reopen failed: {e:?}")),
        }
        Some(store)
    }

    /// Checks a projection over `entity` equals a fresh fold of its events.
    fn projection_matches_fold(&mut self, store: &Store, entity: &str, when: &str) {
        let projected = store.project_with_report::<Total>(entity, Freshness::Consistent);
        match (projected, fold(store, entity)) {
            (Ok((state, report)), Ok(folded)) => {
                if report.body.snapshot.is_some() {
                    self.note(format!("snap({when})"));
                }
                if state != folded {
                    self.violation(format!(
                        "{when}: the projection gives {state:?}, a fresh fold {folded:?}"
                    ));
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                self.violation(format!("{when}: projecting {entity} failed: {e:?}"));
            }
        }
    }
}

/// At most the events `[OP_BYTE + i; len]` for i in `0..items`, all of them or none,
/// in order.
fn all_or_none(unacked: &[StoredEvent], items: usize, len: usize) -> Result<(), String> {
    let shown = || {
        unacked
            .iter()
            .map(|e| {
                (
                    e.sequence,
                    e.coordinate.entity().to_string(),
                    e.payload.first().copied(),
                )
            })
            .collect::<Vec<_>>()
    };
    if !(unacked.is_empty() || unacked.len() == items) {
        return Err(format!("{} of {items} items: {:?}", unacked.len(), shown()));
    }
    let expected = (0..items).map(|i| OP_BYTE + i as u8);
    if !unacked
        .iter()
        .zip(expected)
        .all(|(e, byte)| carries(e, byte, len))
    {
        return Err(format!("not the operation's own events: {:?}", shown()));
    }
    Ok(())
}

fn none(unacked: &[StoredEvent]) -> Result<(), String> {
    match unacked.first() {
        None => Ok(()),
        Some(_) => Err(format!(
            "{:?}",
            unacked.iter().map(|e| e.sequence).collect::<Vec<_>>()
        )),
    }
}

// ---- the operations ------------------------------------------------------------------

fn single_append(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    c.arm();
    let result = append(&store, "acct:1", OP_BYTE);
    c.disarm();
    let step = c.outcome(&result, false);
    acked.extend(result.ok());
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(step, poisoned, true);
    drop(store);
    c.reopen(&acked, |u| all_or_none(u, 1, 32));
}

fn atomic_batch(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    let mut batch = Batch::new();
    for (i, entity) in ["acct:1", "acct:3", "acct:1"].into_iter().enumerate() {
        let options = match i {
            1 => AppendOptions::default().caused_by_item(0),
            _ => AppendOptions::default(),
        };
        batch.push_raw(
            &coord(entity),
            USER,
            RawPayload::opaque(&[OP_BYTE + i as u8; 32]),
            options,
        );
    }
    c.arm();
    let result = store.append_batch(&batch);
    c.disarm();
    let step = c.outcome(&result, false);
    if let Ok(receipts) = result {
        acked.extend(receipts);
    }
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(step, poisoned, true);
    drop(store);
    c.reopen(&acked, |u| all_or_none(u, 3, 32));
}

/// With 4 KiB segments, three 1,000-byte events fill the first; the fourth rotates.
const ROTATION_SEGMENT: u64 = 4096;
const BIG: usize = 1000;

fn segment_rotation(c: &mut Case) {
    let store = c.open();
    let mut acked: Vec<AppendReceipt> = (1..=3)
        .map(|n| append_sized(&store, "acct:1", n, BIG).unwrap())
        .collect();
    assert_eq!(
        store.stats().unwrap().segments,
        1,
        "the setup must not rotate"
    );
    c.arm();
    let result = append_sized(&store, "acct:1", OP_BYTE, BIG);
    c.disarm();
    if c.inject.is_none() {
        assert_eq!(
            store.stats().unwrap().segments,
            2,
            "the operation must rotate"
        );
    }
    // The checkpoint after a rotation is best effort: the append has succeeded, and a
    // failed checkpoint write leaves the journal whole, so it must not poison.
    let step = c.outcome(&result, true);
    let failed = result.is_err();
    acked.extend(result.ok());
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(step, poisoned, failed);
    drop(store);
    if let Some(store) = c.reopen(&acked, |u| all_or_none(u, 1, BIG)) {
        if let IndexSource::Checkpoint { events } = store.open_report().index {
            c.note(format!("ckpt={events}"));
        }
    }
}

fn checkpoint_at_close(c: &mut Case) {
    let store = c.open();
    let acked = seed(&store);
    c.arm();
    let result = store.close();
    c.disarm();
    c.outcome(&result, false);
    if let Some(store) = c.reopen(&acked, none) {
        match (&store.open_report().index, result.is_ok()) {
            (IndexSource::Checkpoint { events }, _) => {
                c.note(format!("ckpt={events}"));
                if *events != acked.len() as u64 {
                    c.violation(format!(
                        "the checkpoint holds {events} events, not {}",
                        acked.len()
                    ));
                }
            }
            (IndexSource::Rebuilt { reason }, true) => c.violation(format!(
                "close succeeded, yet the next open rebuilt the index: {reason}"
            )),
            (IndexSource::Rebuilt { .. }, false) => c.note("rebuilt"),
            (other, _) => c.violation(format!("unknown index source {other:?}")),
        }
    }
}

fn redaction(c: &mut Case) {
    // A snapshot of the target's entity exists before the redaction: it holds data
    // derived from the payload about to be erased.
    let store = c.open();
    let mut acked = seed(&store);
    store
        .project::<Total>("acct:1", Freshness::Consistent)
        .unwrap();
    store.close().unwrap();
    let store = c.open();
    store
        .project::<Total>("acct:1", Freshness::Consistent)
        .unwrap();
    let target = acked[1];
    c.arm();
    let result = store.redact(target.event_id, "crash matrix");
    c.disarm();
    let step = c.outcome(&result, false);
    let ok = result.is_ok();
    acked.extend(result.ok());
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(step, poisoned, true);
    if ok {
        let redacted = store
            .get(target.event_id)
            .unwrap()
            .is_some_and(|e| e.is_redacted());
        if !redacted {
            c.violation("redact succeeded, yet the event still holds its payload");
        }
    }
    if !poisoned {
        c.projection_matches_fold(&store, "acct:1", "before reopen");
    }
    drop(store);
    let Some((store, redacted)) = reopen_after_redaction(c, &acked, target.event_id) else {
        return;
    };
    if ok && !redacted {
        c.violation("redact succeeded, yet the target holds its payload after reopen");
    }
    if c.dir().join("redact.pending").exists() {
        c.violation("redact.pending is still there after reopen");
    }
    c.projection_matches_fold(&store, "acct:1", "after reopen");
}

/// Reopens after a redaction of `target` (at most its record unacknowledged) and
/// checks the target is erased exactly when its redaction record exists; returns the
/// store and whether it is erased.
fn reopen_after_redaction(
    c: &mut Case,
    acked: &[AppendReceipt],
    target: batpak::EventId,
) -> Option<(Store, bool)> {
    let is_record = |e: &StoredEvent| {
        e.kind == Redaction::KIND && e.decode::<Redaction>().is_ok_and(|r| r.target == target)
    };
    let store = c.reopen(acked, |u| match u {
        [] => Ok(()),
        [record] if is_record(record) => Ok(()),
        other => Err(format!(
            "{:?}",
            other
                .iter()
                .map(|e| (e.sequence, e.kind))
                .collect::<Vec<_>>()
        )),
    })?;
    let events = store
        .query(&Region::all().with_store_records(), 0, usize::MAX)
        .unwrap();
    let recorded = events.iter().any(is_record);
    let redacted = events
        .iter()
        .find(|e| e.id == target)
        .is_some_and(StoredEvent::is_redacted);
    c.note(if redacted { "erased" } else { "intact" });
    if redacted != recorded {
        c.violation(format!(
            "after reopen the target is {} but a redaction record {}",
            if redacted { "erased" } else { "intact" },
            if recorded { "exists" } else { "does not exist" }
        ));
    }
    Some((store, redacted))
}

fn cursor_commit(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    let committed = {
        let mut cursor = store.cursor("c", Region::all()).unwrap();
        let delivered = cursor.next_batch(10, Duration::from_secs(5)).unwrap();
        assert_eq!(delivered.len(), 3);
        cursor.commit(1).unwrap();
        c.arm();
        let result = cursor.commit(3);
        c.disarm();
        c.outcome(&result, false);
        let expected = if result.is_ok() { 3 } else { 1 };
        if cursor.committed() != expected {
            c.violation(format!(
                "the handle says {} after the commit returned {result:?}",
                cursor.committed()
            ));
        }
        result.is_ok()
    };
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(None, poisoned, false);
    drop(store);
    let Some(store) = c.reopen(&acked, none) else {
        return;
    };
    let reopened = store
        .cursor("c", Region::all())
        .map(|cursor| cursor.committed());
    match reopened {
        Ok(at) => {
            c.note(format!("cur={at}"));
            if !(at == 3 || (at == 1 && !committed)) {
                c.violation(format!("the cursor reopens at {at}"));
            }
        }
        Err(e) => c.violation(format!("the cursor does not reopen: {e:?}")),
    }
}

fn snapshot_write(c: &mut Case) {
    let store = c.open();
    let acked = seed(&store);
    store
        .project::<Total>("acct:1", Freshness::Consistent)
        .unwrap();
    c.arm();
    // Close writes the changed snapshots (best effort), then the checkpoint.
    let result = store.close();
    c.disarm();
    c.outcome(&result, true);
    if let Some(store) = c.reopen(&acked, none) {
        c.projection_matches_fold(&store, "acct:1", "after reopen");
    }
}

fn snapshot_read(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    store
        .project::<Total>("acct:1", Freshness::Consistent)
        .unwrap();
    store.close().unwrap();
    let store = c.open();
    let folded = fold(&store, "acct:1").unwrap();
    c.arm();
    let result = store.project_with_report::<Total>("acct:1", Freshness::Consistent);
    c.disarm();
    // A snapshot that cannot be read is ignored: the projection replays.
    c.outcome(&result, true);
    if let Ok((state, report)) = &result {
        if report.body.snapshot.is_some() {
            c.note("snap");
        }
        if *state != folded {
            c.violation(format!(
                "the projection gives {state:?}, a fresh fold {folded:?}"
            ));
        }
    }
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(None, poisoned, false);
    drop(store);
    if let Some(store) = c.reopen(&acked, none) {
        c.projection_matches_fold(&store, "acct:1", "after reopen");
    }
}

/// A copy (backup or fork) that failed leaves no staging directory beside the store.
fn no_staging_left(c: &mut Case, what: &str) {
    let leftovers: Vec<String> = std::fs::read_dir(c.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".partial-"))
        .collect();
    if !leftovers.is_empty() {
        c.violation(format!("the failed {what} left {leftovers:?} behind"));
    }
}

/// Opens a backup and checks it holds exactly `acked` and the cursor at 2.
fn check_backup(c: &mut Case, dest: &Path, acked: &[AppendReceipt]) {
    let copy = match Store::open(dest) {
        Ok(s) => s,
        Err(e) => {
            c.violation(format!("the backup does not open: {e:?}"));
            return;
        }
    };
    let receipts: Vec<AppendReceipt> = copy
        .query(&Region::all().with_store_records(), 0, usize::MAX)
        .unwrap()
        .iter()
        .map(StoredEvent::receipt)
        .collect();
    if receipts != acked {
        c.violation(format!("the backup holds {receipts:?}, not {acked:?}"));
    }
    match copy.verify() {
        Ok(r) if r.body.is_clean() => {}
        other => c.violation(format!("the backup does not verify: {other:?}")),
    }
    let cursor = copy
        .cursor("c", Region::all())
        .map(|cursor| cursor.committed());
    match cursor {
        Ok(2) => {}
        Ok(at) => c.violation(format!("the backup's cursor is at {at}")),
        Err(e) => c.violation(format!("the backup's cursor does not open: {e:?}")),
    }
}

/// A fork at the newest acknowledged event, over several small segments (so some are
/// linked): the destination is absent or a complete store of exactly those events,
/// nothing staged is left, and the source is untouched.
fn fork(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    for n in 0..3u8 {
        // 1.5 KiB each: three more segments of 4 KiB, two of them sealed whole.
        acked.push(append_sized(&store, "acct:3", n, 1500).unwrap());
    }
    let dest = c.root.path().join("fork");
    let at = acked.last().map_or(0, |r| r.sequence);
    c.arm();
    let result = store.fork(&dest, at);
    c.disarm();
    c.outcome(&result, false);
    let seeded = acked.clone();
    if dest.exists() {
        if result.is_err() {
            c.note("dest complete");
        }
        match Store::open(&dest) {
            Ok(copy) => {
                let receipts: Vec<AppendReceipt> = copy
                    .query(&Region::all().with_store_records(), 0, usize::MAX)
                    .unwrap()
                    .iter()
                    .map(StoredEvent::receipt)
                    .collect();
                if receipts != seeded {
                    c.violation(format!("the fork holds {receipts:?}, not {seeded:?}"));
                }
                match copy.verify() {
                    Ok(r) if r.body.is_clean() => {}
                    other => c.violation(format!("the fork does not verify: {other:?}")),
                }
            }
            Err(e) => c.violation(format!("the fork does not open: {e:?}")),
        }
    } else if result.is_ok() {
        c.violation("fork succeeded, yet the destination does not exist");
    } else {
        c.note("dest absent");
    }
    no_staging_left(c, "fork");
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(None, poisoned, false);
    drop(store);
    c.reopen(&acked, none);
}

/// A redaction of an event in a sealed segment a fork links: whatever call fails,
/// the fork still holds the payload and verifies clean (the source takes its own copy
/// of the segment before it writes), and the source reopens to the target erased or
/// intact, as its record says.
fn shared_redaction(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    for n in 0..3u8 {
        acked.push(append_sized(&store, "acct:3", n, 1500).unwrap());
    }
    let fork_dir = c.root.path().join("fork");
    store
        .fork(&fork_dir, acked.last().unwrap().sequence)
        .unwrap();
    let target = acked[1];
    c.arm();
    let result = store.redact(target.event_id, "crash matrix");
    c.disarm();
    let step = c.outcome(&result, false);
    acked.extend(result.ok());
    let fork_intact = |c: &mut Case, when: &str| match Store::open_read_only(&fork_dir) {
        Ok(fork) => {
            let kept = fork.get(target.event_id).unwrap();
            if !kept.is_some_and(|e| carries(&e, 2, 32)) {
                c.violation(format!(
                    "{when}, the fork lost the payload the source redacted"
                ));
            }
            match fork.verify() {
                Ok(r) if r.body.is_clean() => {}
                other => c.violation(format!("{when}, the fork does not verify: {other:?}")),
            }
        }
        Err(e) => c.violation(format!("{when}, the fork does not open: {e:?}")),
    };
    fork_intact(c, "after the redaction");
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(step, poisoned, true);
    drop(store);
    let Some((store, _)) = reopen_after_redaction(c, &acked, target.event_id) else {
        return;
    };
    drop(store);
    fork_intact(c, "after the source reopened");
}

/// Whether acct:1 reads as deleted hard: nothing of it visible, appends refused.
fn deleted_hard(store: &Store) -> bool {
    store.stream("acct:1").unwrap().is_empty()
        && matches!(
            append(store, "acct:1", 9),
            Err(batpak::Error::EntityDeleted { .. })
        )
}

/// A hard delete (a lifecycle record, synced, then applied): whatever call fails, the
/// store reopens with the entity deleted exactly when the record is there, and a
/// delete that reported success is in force at once and after the reopen.
fn hard_delete(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    c.arm();
    let result = store.delete_entity("acct:1", batpak::DeleteMode::Hard);
    c.disarm();
    let step = c.outcome(&result, false);
    let ok = result.is_ok();
    acked.extend(result.ok());
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(step, poisoned, true);
    if ok && !deleted_hard(&store) {
        c.violation("delete succeeded, yet acct:1 still shows or takes events");
    }
    drop(store);
    let is_record = |e: &StoredEvent| e.coordinate.entity() == "batpak:lifecycle";
    let Some(store) = c.reopen(&acked, |u| match u {
        [] => Ok(()),
        [record] if is_record(record) => Ok(()),
        other => Err(format!("{} unacknowledged events", other.len())),
    }) else {
        return;
    };
    let recorded = store
        .query(&Region::all().with_store_records(), 0, usize::MAX)
        .unwrap()
        .iter()
        .any(is_record);
    let deleted = deleted_hard(&store);
    c.note(if deleted { "deleted" } else { "kept" });
    if deleted != recorded {
        c.violation(format!(
            "after reopen acct:1 is {} but its deletion record {}",
            if deleted { "deleted" } else { "kept" },
            if recorded { "exists" } else { "does not exist" }
        ));
    }
    if ok && !deleted {
        c.violation("delete succeeded, yet acct:1 is back after reopen");
    }
}

/// A compaction removing a soft-deleted entity from sealed segments: whatever call
/// fails, the store reopens to the state before it (old:1 on disk, hidden) or after
/// it (old:1 gone), never a mix, every other acknowledged event reads back with its
/// receipt, and `verify()` is clean.
fn compaction(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    let mut old = Vec::new();
    for i in 0..24 {
        old.push(append_sized(&store, "old:1", 40 + i, 200).unwrap());
    }
    acked.push(
        store
            .delete_entity("old:1", batpak::DeleteMode::Soft)
            .unwrap(),
    );
    acked.push(append(&store, "acct:2", 4).unwrap());
    c.arm();
    let result = store.compact();
    c.disarm();
    // The checkpoint after the swap is best effort.
    let step = c.outcome(&result, true);
    let ok = result.is_ok();
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(step, poisoned, true);
    let on_disk = |store: &Store| {
        store
            .query(&Region::all().entity("old:1").with_hidden(), 0, usize::MAX)
            .map(|e| e.len())
    };
    if ok && on_disk(&store).ok() != Some(0) {
        c.violation("compaction succeeded, yet old:1 is still on disk");
    }
    drop(store);
    c.plan.clear();
    let store = match c.builder().open() {
        Ok(s) => s,
        Err(e) => {
            c.violation(format!("reopen failed: {e:?}"));
            return;
        }
    };
    match on_disk(&store) {
        Ok(0) => c.note("compacted"),
        Ok(24) => c.note("as before"),
        Ok(n) => c.violation(format!("old:1 has {n} of its 24 events on disk: a mix")),
        Err(e) => c.violation(format!("reading old:1 failed: {e:?}")),
    }
    if ok && on_disk(&store).ok() != Some(0) {
        c.violation("compaction succeeded, yet old:1 is back after reopen");
    }
    for r in &acked {
        match store.get(r.event_id) {
            Ok(Some(e)) if e.receipt() == *r => {}
            Ok(other) => c.violation(format!(
                "acknowledged event {} reads back as {other:?}",
                r.sequence
            )),
            Err(e) => c.violation(format!("reading {} failed: {e:?}", r.sequence)),
        }
        if !matches!(store.verify_receipt(r), Ok(check) if check.is_valid()) {
            c.violation(format!("the receipt of {} no longer verifies", r.sequence));
        }
    }
    match store.verify() {
        Ok(report) if report.body.is_clean() => {}
        Ok(report) => c.violation(format!("verify() after reopen: {:?}", report.body.findings)),
        Err(e) => c.violation(format!("verify() after reopen failed: {e:?}")),
    }
    let last = store.stats().map_or(0, |s| s.visible_sequence);
    match append(&store, "after:1", AFTER_BYTE) {
        Ok(r) if r.sequence == last + 1 => {}
        Ok(r) => c.violation(format!(
            "the append after reopen got sequence {}",
            r.sequence
        )),
        Err(e) => c.violation(format!("the append after reopen failed: {e:?}")),
    }
    for staging in ["compact.partial", "compact.ready"] {
        if c.dir().join(staging).exists() {
            c.violation(format!("{staging} is still there after a writable open"));
        }
    }
}

fn backup(c: &mut Case) {
    let store = c.open();
    let mut acked = seed(&store);
    {
        let mut cursor = store.cursor("c", Region::all()).unwrap();
        cursor.next_batch(10, Duration::from_secs(5)).unwrap();
        cursor.commit(2).unwrap();
    }
    let dest = c.root.path().join("backup");
    c.arm();
    let result = store.backup(&dest);
    c.disarm();
    c.outcome(&result, false);
    let seeded = acked.clone();
    if let Ok(b) = &result {
        if b.events != seeded.len() as u64 {
            c.violation(format!("the backup reports {} events", b.events));
        }
    }
    if dest.exists() {
        if result.is_err() {
            c.note("dest complete");
        }
        check_backup(c, &dest, &seeded);
    } else if result.is_ok() {
        c.violation("backup succeeded, yet the destination does not exist");
    } else {
        c.note("dest absent");
    }
    no_staging_left(c, "backup");
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(None, poisoned, false);
    drop(store);
    if let Some(store) = c.reopen(&acked, none) {
        match store.cursor("c", Region::all()) {
            Ok(cursor) if cursor.committed() == 2 => {}
            other => c.violation(format!("the source's cursor after reopen: {other:?}")),
        }
    }
}

/// Reacts to each event of `acct:1` with one event on `audit:1`.
fn react_once(event: &StoredEvent, out: &mut batpak::reactor::Reactions) -> batpak::Result<()> {
    out.emit_raw(
        &coord("audit:1"),
        REACTION,
        RawPayload::opaque(&[event.payload[0]; 32]),
        AppendOptions::default(),
    );
    Ok(())
}

const REACTOR_WAIT: Duration = Duration::from_secs(10);

/// The reactor's recorded position and, per source, how many reactions name it.
fn reactor_state(store: &Store, sources: &[AppendReceipt]) -> (u64, Vec<usize>) {
    let position = store
        .query(
            &Region::all()
                .entity("batpak:reactor:r")
                .kind(ReactorPosition::KIND),
            0,
            usize::MAX,
        )
        .unwrap()
        .last()
        .map_or(0, |e| e.decode::<ReactorPosition>().unwrap().sequence);
    let reactions = store.stream("audit:1").unwrap();
    let counts = sources
        .iter()
        .map(|s| {
            reactions
                .iter()
                .filter(|r| r.causation == Some(s.event_id))
                .count()
        })
        .collect();
    (position, counts)
}

fn reactor_step(c: &mut Case) {
    let store = Arc::new(c.open());
    let mut acked = seed(&store);
    let sources: Vec<AppendReceipt> = acked[..2].to_vec();
    let region = || Region::all().entity("acct:1");
    c.arm();
    let stopped = store
        .react("r", region(), ReactorOptions::default(), react_once)
        .map(|handle| {
            handle.wait_for(sources[1].sequence, REACTOR_WAIT);
            handle.stop()
        });
    c.disarm();
    let mut step = None;
    match &stopped {
        Err(e) => step = c.failed(e),
        Ok(end) => match &end.state {
            ReactorState::Stopped if end.reactions == 2 => {
                c.note("ok");
                if c.inject.is_some() && c.fired {
                    c.violation("the injected failure fired, yet the reactor reports success");
                }
            }
            ReactorState::Failed { error, .. } => {
                step = ["write segment", "fsync segment"]
                    .into_iter()
                    .find(|s| error.contains(s));
                c.note(format!("failed({})", step.unwrap_or("?")));
                if !(error.contains("failed for") && error.contains("injected")) {
                    c.violation(format!("unclear reactor failure: {error}"));
                }
            }
            other => c.violation(format!("the reactor ended {other:?} after {end:?}")),
        },
    }
    let poisoned = c.probe(&store, &mut acked);
    c.poison_rule(step, poisoned, true);
    let store = Arc::try_unwrap(store).expect("the reactor thread has ended");
    drop(store);
    let Some(store) = c.reopen(&acked, |u| {
        let foreign: Vec<_> = u
            .iter()
            .filter(|e| {
                let entity = e.coordinate.entity();
                !(entity == "audit:1" || entity == "batpak:reactor:r")
            })
            .map(|e| e.sequence)
            .collect();
        match foreign.first() {
            None => Ok(()),
            Some(_) => Err(format!("not the reactor's events: {foreign:?}")),
        }
    }) else {
        return;
    };
    // At most once so far: a source has at most its one reaction, and every source
    // the recorded position passed has it (the position is recorded every so many
    // sources and on stop, not with each reaction, so it may lag behind them).
    let (position, counts) = reactor_state(&store, &sources);
    c.note(format!("pos={position}"));
    for (s, n) in sources.iter().zip(&counts) {
        if *n > 1 || (s.sequence <= position && *n != 1) {
            c.violation(format!(
                "after reopen source {} has {n} reactions with the position at {position}",
                s.sequence
            ));
        }
    }
    // A restarted reactor finishes the job, still exactly once.
    let store = Arc::new(store);
    let handle = store
        .react("r", region(), ReactorOptions::default(), react_once)
        .unwrap();
    handle.wait_for(sources[1].sequence, REACTOR_WAIT);
    let end = handle.stop();
    let (_, counts) = reactor_state(&store, &sources);
    if end.state != ReactorState::Stopped || counts != [1, 1] {
        c.violation(format!(
            "the restarted reactor ended {:?} with reactions {counts:?}",
            end.state
        ));
    }
}

// ---- the matrix ----------------------------------------------------------------------

/// Runs `operation` fault-free to count its calls, then once per (op, N, fault), and
/// prints the table. Fails naming every violation found.
fn matrix(name: &str, segment_size: u64, operation: fn(&mut Case)) {
    let started = Instant::now();
    let mut counting = Case::new(None, segment_size);
    operation(&mut counting);
    assert!(
        counting.violations.is_empty(),
        "{name} without faults: {:#?}",
        counting.violations
    );
    let mut table = String::new();
    let mut violations = Vec::new();
    let mut cases = 0;
    for (slot, op) in OPS.iter().enumerate() {
        for n in 1..=counting.used[slot] {
            let mut row = format!("  {name:<17} {:<8} #{n:<2}", format!("{op:?}"));
            for fault in FAULTS {
                let inject = Injection { op: *op, n, fault };
                let mut case = Case::new(Some(inject), segment_size);
                operation(&mut case);
                cases += 1;
                if !case.fired {
                    case.violation("the injected failure never fired: the call count changed");
                }
                let _ = write!(row, " | {:?}: {}", fault, case.notes.join(" "));
                violations.extend(
                    case.violations
                        .iter()
                        .map(|v| format!("{name} x {op:?} #{n} x {fault:?}: {v}")),
                );
            }
            table.push_str(&row);
            table.push('\n');
        }
    }
    let used: Vec<String> = OPS
        .iter()
        .zip(counting.used)
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{op:?} {n}"))
        .collect();
    println!(
        "crash matrix: {name}: calls [{}], {cases} cases, {:.1} s\n{table}",
        used.join(", "),
        started.elapsed().as_secs_f64()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

const DEFAULT_SEGMENT: u64 = StoreBuilder::DEFAULT_SEGMENT_SIZE;

#[test]
fn every_failing_call_of_a_single_append() {
    matrix("single append", DEFAULT_SEGMENT, single_append);
}

#[test]
fn every_failing_call_of_an_atomic_batch() {
    matrix("atomic batch", DEFAULT_SEGMENT, atomic_batch);
}

#[test]
fn every_failing_call_of_a_segment_rotation_and_its_checkpoint() {
    matrix("segment rotation", ROTATION_SEGMENT, segment_rotation);
}

#[test]
fn every_failing_call_of_the_checkpoint_at_close() {
    matrix("checkpoint (close)", DEFAULT_SEGMENT, checkpoint_at_close);
}

#[test]
fn every_failing_call_of_a_redaction() {
    matrix("redaction", DEFAULT_SEGMENT, redaction);
}

#[test]
fn every_failing_call_of_a_cursor_commit() {
    matrix("cursor commit", DEFAULT_SEGMENT, cursor_commit);
}

#[test]
fn every_failing_call_of_a_snapshot_write() {
    matrix("snapshot write", DEFAULT_SEGMENT, snapshot_write);
}

#[test]
fn every_failing_call_of_a_snapshot_read() {
    matrix("snapshot read", DEFAULT_SEGMENT, snapshot_read);
}

#[test]
fn every_failing_call_of_a_backup() {
    matrix("backup", DEFAULT_SEGMENT, backup);
}

#[test]
fn every_failing_call_of_a_fork() {
    matrix("fork", 4096, fork);
}

#[test]
fn every_failing_call_of_a_redaction_in_a_segment_a_fork_shares() {
    matrix("shared redaction", 4096, shared_redaction);
}

#[test]
fn every_failing_call_of_a_hard_delete() {
    matrix("hard delete", DEFAULT_SEGMENT, hard_delete);
}

#[test]
fn every_failing_call_of_a_compaction() {
    matrix("compaction", 4096, compaction);
}

#[test]
fn every_failing_call_of_a_reactor_step() {
    matrix("reactor step", DEFAULT_SEGMENT, reactor_step);
}

// ---- cases the matrix found, kept on their own ---------------------------------------

/// `Total` over acct:1 of `seed` once its second event is erased.
const ERASED: Total = Total {
    events: 2,
    payload_bytes: 32,
    redacted: 1,
};

/// A store in `root/store` holding `seed` and a snapshot of `Total` over acct:1, open
/// with that snapshot loaded into the cache.
fn store_with_snapshot(root: &Path) -> (Store, Vec<AppendReceipt>) {
    let dir = root.join("store");
    let store = Store::open(&dir).unwrap();
    let acked = seed(&store);
    store
        .project::<Total>("acct:1", Freshness::Consistent)
        .unwrap();
    store.close().unwrap();
    let store = Store::open(&dir).unwrap();
    store
        .project::<Total>("acct:1", Freshness::Consistent)
        .unwrap();
    (store, acked)
}

/// redaction x Remove #1 (before the fix; #2 now): the rewrite is durable, removing
/// `redact.pending` fails. The cached state and the snapshot were folded from the
/// erased payload; neither may outlive the erasure, in this process or the next.
#[test]
fn a_redaction_failing_after_its_rewrite_keeps_no_state_of_the_erased_payload() {
    let root = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(root.path());
    let (store, acked) = store_with_snapshot(root.path());
    // Remove 1 is the snapshot file (dropped before the rewrite), 2 the pending file.
    plan.fail_nth(Op::Remove, 2, Fault::Eio);
    let err = store.redact(acked[1].event_id, "test").unwrap_err();
    assert!(
        matches!(&err, Error::Io { op: "remove", path, .. } if path.ends_with("redact.pending")),
        "{err:?}"
    );
    let projected = store.project::<Total>("acct:1", Freshness::Consistent);
    assert_eq!(projected.unwrap(), Some(ERASED));
    drop(store);
    plan.clear();
    let store = Store::open(root.path().join("store")).unwrap();
    let projected = store.project::<Total>("acct:1", Freshness::Consistent);
    assert_eq!(projected.unwrap(), Some(ERASED));
}

/// redaction x Write #3: the segment rewrite fails and poisons the store; the next
/// open finishes it from `redact.pending`. The snapshot folded before the redaction
/// must not be used after it.
#[test]
fn a_rewrite_finished_at_open_leaves_no_snapshot_of_the_erased_payload() {
    let root = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(root.path());
    let (store, acked) = store_with_snapshot(root.path());
    // Write 1 is the redaction record, 2 the pending file, 3 the rewrite.
    plan.fail_nth(Op::Write, 3, Fault::ShortWrite);
    let err = store.redact(acked[1].event_id, "test").unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
    drop(store);
    plan.clear();
    let store = Store::open(root.path().join("store")).unwrap();
    assert_eq!(store.open_report().redactions_finished, 1);
    let projected = store.project::<Total>("acct:1", Freshness::Consistent);
    assert_eq!(projected.unwrap(), Some(ERASED));
}

/// backup x Rename #1 and #2: the copy's index checkpoint cannot be put in place, or
/// the complete copy cannot be renamed into place. Either way the destination stays
/// absent and the staging directory is removed.
#[test]
fn a_backup_that_cannot_be_renamed_into_place_leaves_nothing_behind() {
    for (nth, op) in [(1, "rename"), (2, "rename backup into place")] {
        let root = tempfile::tempdir().unwrap();
        let plan = FaultPlan::install(root.path());
        let store = Store::open(root.path().join("store")).unwrap();
        seed(&store);
        plan.fail_nth(Op::Rename, nth, Fault::Eio);
        let err = store.backup(root.path().join("backup")).unwrap_err();
        assert!(
            matches!(&err, Error::Io { op: failed, .. } if *failed == op),
            "rename #{nth}: {err:?}"
        );
        let mut entries: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        assert_eq!(entries, ["store"], "rename #{nth}");
    }
}
