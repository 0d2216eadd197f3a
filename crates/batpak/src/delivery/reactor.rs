//! Reactors: a named consumer of a region that appends reactions, exactly once.
//!
//! For each source event the handler fills a `Reactions` batch. The reactions (each
//! caused by the source, correlation inherited, chosen metadata keys copied) are
//! appended as one atomic batch, and one of them carries the idempotency key
//! `batpak:reactor:<name>:<source id>` (the marker), so after any crash a source
//! has either all its reactions and its marker, or neither. The position lives in
//! the journal, on the entity `batpak:reactor:<name>`, whose head is where a
//! restarted reactor resumes; it is recorded every `POSITION_EVERY` sources and on
//! stop, not per source, so the bookkeeping of a reactor over every event stays a
//! small fraction of what it reads. A restarted reactor replays the sources after
//! its recorded position: one whose marker the store holds was done (its handler is
//! not run again); one without reactions is handled again and appends nothing.
//! When every reaction of a source carries a key of the caller's, there is no room
//! for the marker, and a position record joins the batch instead.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::coordinate::Coordinate;
use crate::delivery::cursor::CursorStart;
use crate::delivery::{RecvError, Subscription};
use crate::error::{Error, Result};
use crate::event::{Batch, RawPayload};
use crate::event::{EventPayload, StoredEvent};
use crate::id::EventId;
use crate::kind::EventKind;
use crate::options::{AppendOptions, ExpectedVersion};
use crate::query::Region;
use crate::store::Store;

/// The kind of a reactor's position record (reserved category 0).
pub(crate) const REACTOR_POSITION_KIND: EventKind = EventKind::custom(0, 4);
/// The kind of the record of a source event a reactor skipped after an error.
pub(crate) const REACTOR_SKIP_KIND: EventKind = EventKind::custom(0, 5);

/// Sequences a reactor passes between two position records.
const POSITION_EVERY: u64 = 1024;
/// How often a waiting reactor checks whether it was asked to stop.
const POLL: Duration = Duration::from_millis(50);
/// Every reactor's position entity is this prefix and its name.
pub(crate) const REACTOR_ENTITY_PREFIX: &str = "batpak:reactor:";
/// The scope of every reactor's position entity.
const REACTOR_SCOPE: &str = "batpak:reactors";

/// Where a reactor stands: every source up to `sequence` has been handled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactorPosition {
    /// The reactor's name.
    pub reactor: String,
    /// The last source sequence handled.
    pub sequence: u64,
}

impl EventPayload for ReactorPosition {
    const KIND: EventKind = REACTOR_POSITION_KIND;
}

/// A source event a reactor skipped after its handler failed (`OnError::Skip`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactorSkipped {
    /// The reactor's name.
    pub reactor: String,
    /// The source event.
    pub source: EventId,
    /// What the handler said (or its panic message).
    pub error: String,
}

impl EventPayload for ReactorSkipped {
    const KIND: EventKind = REACTOR_SKIP_KIND;
}

/// What a reactor does when its handler returns an error or panics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnError {
    /// Stop with `ReactorState::Failed`; nothing is recorded for the source, which is
    /// handled again when a reactor of this name next runs. The default.
    #[default]
    Stop,
    /// Run the handler again up to `attempts` more times, waiting `backoff`, then
    /// twice that, and so on; then stop as `Stop` does.
    Retry {
        /// Further attempts after the first.
        attempts: u32,
        /// The first wait.
        backoff: Duration,
    },
    /// Record a `ReactorSkipped` event (with the position, atomically) and go on.
    Skip,
}

/// How a reactor runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReactorOptions {
    /// Error policy. Default `Stop`.
    pub on_error: OnError,
    /// Where a reactor that has never run starts. Default: the beginning.
    pub start: CursorStart,
    /// Metadata keys copied from each source to its reactions (a reaction's own
    /// value for a key wins). Default: none.
    pub copy_metadata: Vec<String>,
}

impl ReactorOptions {
    /// Copies these metadata keys from each source event to its reactions.
    #[must_use]
    pub fn copy_metadata<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.copy_metadata = keys.into_iter().map(Into::into).collect();
        self
    }
}

/// The reactions to one source event. Each is caused by the source and carries the
/// source's correlation (or, when it has none, the source's id).
#[derive(Debug)]
pub struct Reactions {
    batch: Batch,
    source: EventId,
    correlation: EventId,
    /// The source's metadata entries the reactor copies.
    copied: Vec<(String, String)>,
}

impl Reactions {
    fn new(source: &StoredEvent, copy: &[String]) -> Self {
        Reactions {
            batch: Batch::new(),
            source: source.id,
            correlation: source.correlation.unwrap_or(source.id),
            copied: copy
                .iter()
                .filter_map(|k| source.metadata.get(k).map(|v| (k.clone(), v.to_string())))
                .collect(),
        }
    }

    fn link(&self, options: AppendOptions) -> AppendOptions {
        let mut options = options.caused_by(self.source);
        options.correlation = Some(self.correlation);
        for (key, value) in &self.copied {
            if options.metadata.get(key).is_none() {
                options.metadata.insert(key.clone(), value.clone());
            }
        }
        options
    }

    /// Adds a typed reaction.
    pub fn emit<P: EventPayload>(&mut self, coord: &Coordinate, payload: &P) -> Result<()> {
        self.emit_with(coord, payload, AppendOptions::default())
    }

    /// Adds a typed reaction with options (an expected version, an idempotency key);
    /// causation and correlation are set by the reactor.
    pub fn emit_with<P: EventPayload>(
        &mut self,
        coord: &Coordinate,
        payload: &P,
        options: AppendOptions,
    ) -> Result<()> {
        self.batch
            .push(coord, payload, self.link(options))
            .map(|_| ())
    }

    /// Adds pre-encoded bytes.
    pub fn emit_raw(
        &mut self,
        coord: &Coordinate,
        kind: EventKind,
        payload: RawPayload<'_>,
        options: AppendOptions,
    ) {
        let options = self.link(options);
        self.batch.push_raw(coord, kind, payload, options);
    }

    /// Reactions added so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether none were added.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

/// A reactor handler that sees only events of `P`'s kind, decoded (with upcasting):
/// `store.react(name, region, options, on_kind::<Paid, _>(|event, paid, out| ...))`.
/// Events of other kinds in the region are passed by; a payload that does not decode
/// is the handler's error (the reactor's error policy applies).
pub fn on_kind<P, F>(mut handler: F) -> impl FnMut(&StoredEvent, &mut Reactions) -> Result<()>
where
    P: EventPayload,
    F: FnMut(&StoredEvent, P, &mut Reactions) -> Result<()>,
{
    move |event, out| match event.decode_if::<P>()? {
        Some(payload) => handler(event, payload, out),
        None => Ok(()),
    }
}

/// Whether a reactor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReactorState {
    /// Handling events or waiting for more.
    Running,
    /// Stopped on request.
    Stopped,
    /// Stopped because handling `sequence` failed, or the store did.
    Failed {
        /// The source sequence that failed (0: none in particular).
        sequence: u64,
        /// What went wrong.
        error: String,
    },
}

/// A reactor's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactorStatus {
    /// The reactor's name.
    pub name: String,
    /// Running, stopped or failed.
    pub state: ReactorState,
    /// Every source up to this sequence has been handled (recorded or not yet); when
    /// idle, every visible event up to it has been looked at.
    pub position: u64,
    /// Sources handled by this run.
    pub handled: u64,
    /// Reactions appended by this run.
    pub reactions: u64,
    /// Sources skipped after errors by this run.
    pub skipped: u64,
    /// Handler attempts that failed and were retried.
    pub retries: u64,
}

#[derive(Debug)]
struct Shared {
    status: Mutex<ReactorStatus>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn status(&self) -> MutexGuard<'_, ReactorStatus> {
        crate::sync::lock(&self.status)
    }

    fn update(&self, f: impl FnOnce(&mut ReactorStatus)) {
        f(&mut self.status());
        self.changed.notify_all();
    }
}

/// A running reactor. Dropping it stops the reactor and waits for its thread.
#[derive(Debug)]
pub struct ReactorHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ReactorHandle {
    /// The reactor's progress now.
    pub fn status(&self) -> ReactorStatus {
        self.shared.status().clone()
    }

    /// Blocks until the reactor's position reaches `sequence` or it stops running;
    /// returns the status then, or the status at the deadline.
    pub fn wait_for(&self, sequence: u64, timeout: Duration) -> ReactorStatus {
        let deadline = Instant::now() + timeout;
        let mut status = self.shared.status();
        while status.position < sequence && status.state == ReactorState::Running {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            status = self
                .shared
                .changed
                .wait_timeout(status, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        status.clone()
    }

    /// Asks the reactor to stop, waits for it (it records its position first) and
    /// returns its final status.
    pub fn stop(mut self) -> ReactorStatus {
        self.halt();
        self.status()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ReactorHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Store {
    /// Starts the reactor `name` over `region` on a new thread: `handler` sees each
    /// source event in order and fills the reactions to append; reactions and the
    /// reactor's position are committed atomically, so across crashes every source is
    /// reacted to exactly once. A reactor that ran before resumes after its recorded
    /// position. The reactor never sees its own position and skip records. One reactor
    /// per name at a time (`Error::CursorInUse`). Needs a writable store.
    pub fn react<F>(
        self: &Arc<Self>,
        name: &str,
        region: Region,
        options: ReactorOptions,
        handler: F,
    ) -> Result<ReactorHandle>
    where
        F: FnMut(&StoredEvent, &mut Reactions) -> Result<()> + Send + 'static,
    {
        // Sources up to what is written now may have been reacted to by an earlier run.
        let replay_until = self.writer()?.written();
        crate::delivery::cursor::check_name(name)?;
        let entity = format!("{REACTOR_ENTITY_PREFIX}{name}");
        let coordinate = Coordinate::new(&entity, REACTOR_SCOPE)?;
        let registry_name = format!("\0reactor:{name}");
        if !self.claim_cursor_name(&registry_name) {
            return Err(Error::CursorInUse {
                name: name.to_string(),
            });
        }
        let started = self.reactor_position(&coordinate, name, options.start);
        let (position, version) = match started {
            Ok(p) => p,
            Err(e) => {
                self.release_cursor_name(&registry_name);
                return Err(e);
            }
        };
        let shared = Arc::new(Shared {
            status: Mutex::new(ReactorStatus {
                name: name.to_string(),
                state: ReactorState::Running,
                position,
                handled: 0,
                reactions: 0,
                skipped: 0,
                retries: 0,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut run = Run {
            store: Arc::clone(self),
            name: name.to_string(),
            coordinate,
            region,
            options,
            shared: Arc::clone(&shared),
            position,
            recorded: position,
            version,
            replay_until,
            registry_name,
        };
        let registered = run.registry_name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("batpak-reactor-{name}"))
            .spawn(move || run.run(handler))
            .map_err(|e| {
                self.release_cursor_name(&registered);
                Error::Io {
                    op: "spawn reactor thread",
                    path: self.dir().to_path_buf(),
                    source: e,
                }
            })?;
        Ok(ReactorHandle {
            shared,
            thread: Some(thread),
        })
    }

    /// The reactor's recorded position and the version of its position entity,
    /// recording the start position first for a reactor that never ran.
    fn reactor_position(
        &self,
        coordinate: &Coordinate,
        name: &str,
        start: CursorStart,
    ) -> Result<(u64, u64)> {
        // The head only: the position entity grows by one record per reacted source.
        if let Some(version) = self.entity_version(coordinate.entity()) {
            let region = Region::all()
                .with_store_records()
                .entity(coordinate.entity())
                .versions(version..=version);
            if let Some(head) = self.query(&region, 0, 1)?.pop() {
                let position = head.decode::<ReactorPosition>()?;
                return Ok((position.sequence, head.version));
            }
        }
        let sequence = match start {
            CursorStart::Beginning => 0,
            CursorStart::After(s) => s,
            CursorStart::Now => self.visible_sequence(),
        };
        let mut batch = Batch::new();
        batch.push_system(
            coordinate,
            &ReactorPosition {
                reactor: name.to_string(),
                sequence,
            },
            AppendOptions::expect(ExpectedVersion::NoStream),
        )?;
        let receipt = self.append_batch(&batch)?;
        Ok((sequence, receipt.first().map_or(0, |r| r.version)))
    }
}

/// The reactor thread's state.
struct Run {
    store: Arc<Store>,
    name: String,
    coordinate: Coordinate,
    region: Region,
    options: ReactorOptions,
    shared: Arc<Shared>,
    /// Every source up to here is handled.
    position: u64,
    /// The position the journal holds.
    recorded: u64,
    /// The version of the position entity's head.
    version: u64,
    /// Sources up to here may have been handled by an earlier run (after the
    /// recorded position): their markers are looked up before handling.
    replay_until: u64,
    registry_name: String,
}

/// How handling one source ended.
enum Outcome {
    Done,
    Stop,
}

impl Run {
    fn run<F>(&mut self, mut handler: F)
    where
        F: FnMut(&StoredEvent, &mut Reactions) -> Result<()>,
    {
        let end = self.main_loop(&mut handler);
        let flushed = self.record_position();
        let state = match (end, flushed) {
            (Err(failed), _) => failed,
            (Ok(()), Err(e)) => ReactorState::Failed {
                sequence: 0,
                error: e.to_string(),
            },
            (Ok(()), Ok(())) => ReactorState::Stopped,
        };
        self.shared.update(|s| s.state = state);
        self.store.release_cursor_name(&self.registry_name);
    }

    fn main_loop<F>(&mut self, handler: &mut F) -> std::result::Result<(), ReactorState>
    where
        F: FnMut(&StoredEvent, &mut Reactions) -> Result<()>,
    {
        let store = Arc::clone(&self.store);
        // Positioned at the position itself: `subscribe_from(position + 1)` would
        // overflow for a position of u64::MAX.
        let mut feed =
            Subscription::new(&store, self.region.clone(), self.position).lag_limit(u64::MAX);
        while !self.shared.stop.load(Ordering::SeqCst) {
            let event = match feed.recv_timeout(POLL) {
                Ok(e) => e,
                Err(RecvError::Timeout) => {
                    // Idle: every visible event up to `scanned` is handled or outside
                    // the region, so waiters for a later sequence need not wait on.
                    let scanned = feed.scanned();
                    self.shared.update(|s| s.position = s.position.max(scanned));
                    continue;
                }
                Err(RecvError::Failed(e)) => return Err(failed(0, &e)),
                Err(other) => return Err(failed(0, &other)),
            };
            if event.kind == REACTOR_POSITION_KIND || event.kind == REACTOR_SKIP_KIND {
                // Reactor bookkeeping is never a source; pass it by. When the journal
                // already held the position before it, it still does (nothing to
                // react to lies between), so passing it records nothing: otherwise a
                // reactor over every event would record its own records forever.
                if self.position == self.recorded {
                    self.recorded = event.sequence;
                }
                self.position = event.sequence;
                self.shared.update(|s| s.position = event.sequence);
                continue;
            }
            match self.handle(&event, handler) {
                Ok(Outcome::Done) => {}
                Ok(Outcome::Stop) => return Ok(()),
                Err(state) => return Err(state),
            }
        }
        Ok(())
    }

    /// Runs the handler on one source and commits, following the error policy.
    fn handle<F>(
        &mut self,
        event: &StoredEvent,
        handler: &mut F,
    ) -> std::result::Result<Outcome, ReactorState>
    where
        F: FnMut(&StoredEvent, &mut Reactions) -> Result<()>,
    {
        if event.sequence <= self.replay_until && self.store.idempotency_seen(&self.marker(event)) {
            // Reacted to by an earlier run after its last recorded position.
            self.advance(event.sequence, 0, false);
            self.record_position_if_due()
                .map_err(|e| failed(event.sequence, &e))?;
            return Ok(Outcome::Done);
        }
        let mut attempt = 0u32;
        loop {
            let mut reactions = Reactions::new(event, &self.options.copy_metadata);
            let result = match catch_unwind(AssertUnwindSafe(|| handler(event, &mut reactions))) {
                Ok(Ok(())) => self.commit(event, reactions).map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(panic) => Err(panic_message(panic.as_ref())),
            };
            let error = match result {
                Ok(()) => return Ok(Outcome::Done),
                Err(error) => error,
            };
            match self.options.on_error {
                OnError::Retry { attempts, backoff } if attempt < attempts => {
                    self.shared.update(|s| s.retries += 1);
                    let wait = backoff.saturating_mul(1 << attempt.min(16));
                    attempt += 1;
                    if self.sleep(wait) {
                        return Ok(Outcome::Stop);
                    }
                }
                OnError::Skip => {
                    self.skip(event, error)
                        .map_err(|e| failed(event.sequence, &e))?;
                    return Ok(Outcome::Done);
                }
                _ => {
                    return Err(ReactorState::Failed {
                        sequence: event.sequence,
                        error,
                    })
                }
            }
        }
    }

    /// The idempotency key marking `source` as reacted to by this reactor.
    fn marker(&self, source: &StoredEvent) -> String {
        format!("batpak:reactor:{}:{}", self.name, source.id)
    }

    /// Appends the reactions atomically, one of them keyed by the source's marker
    /// (or, when the caller keyed them all, with a position record), or, with no
    /// reactions, advances in memory.
    fn commit(&mut self, event: &StoredEvent, reactions: Reactions) -> Result<()> {
        if reactions.is_empty() {
            self.advance(event.sequence, 0, false);
            return self.record_position_if_due();
        }
        let count = reactions.len() as u64;
        let mut batch = reactions.batch;
        let marked = batch.key_first_unkeyed(self.marker(event));
        if !marked {
            self.push_position(&mut batch, event.sequence, self.version)?;
        }
        let receipts = self.store.append_batch(&batch)?;
        if !marked {
            self.version = receipts.last().map_or(self.version, |r| r.version);
            self.recorded = event.sequence;
        }
        self.advance(event.sequence, count, false);
        self.record_position_if_due()
    }

    /// Records the position once it is `POSITION_EVERY` sequences past the journal's.
    fn record_position_if_due(&mut self) -> Result<()> {
        if self.position - self.recorded >= POSITION_EVERY {
            self.record_position()?;
        }
        Ok(())
    }

    fn skip(&mut self, event: &StoredEvent, error: String) -> Result<()> {
        let mut batch = Batch::new();
        batch.push_system(
            &self.coordinate,
            &ReactorSkipped {
                reactor: self.name.clone(),
                source: event.id,
                error,
            },
            AppendOptions::expect(ExpectedVersion::Exact(self.version)).caused_by(event.id),
        )?;
        self.push_position(&mut batch, event.sequence, self.version + 1)?;
        let receipts = self.store.append_batch(&batch)?;
        self.version = receipts.last().map_or(self.version, |r| r.version);
        self.recorded = event.sequence;
        self.advance(event.sequence, 0, true);
        Ok(())
    }

    /// Adds the position record naming `sequence`, expecting the position entity at
    /// `version` (so two writers of one reactor cannot both commit).
    fn push_position(&self, batch: &mut Batch, sequence: u64, version: u64) -> Result<()> {
        batch
            .push_system(
                &self.coordinate,
                &ReactorPosition {
                    reactor: self.name.clone(),
                    sequence,
                },
                AppendOptions::expect(ExpectedVersion::Exact(version)),
            )
            .map(|_| ())
    }

    /// Records the in-memory position when it is ahead of the journal's.
    fn record_position(&mut self) -> Result<()> {
        if self.position == self.recorded {
            return Ok(());
        }
        let mut batch = Batch::new();
        self.push_position(&mut batch, self.position, self.version)?;
        let receipts = self.store.append_batch(&batch)?;
        self.version = receipts.last().map_or(self.version, |r| r.version);
        self.recorded = self.position;
        Ok(())
    }

    fn advance(&mut self, sequence: u64, reactions: u64, skipped: bool) {
        self.position = sequence;
        self.shared.update(|s| {
            s.position = sequence;
            s.handled += 1;
            s.reactions += reactions;
            s.skipped += u64::from(skipped);
        });
    }

    /// Sleeps `wait` in short steps; `true` when asked to stop meanwhile.
    fn sleep(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::sleep((until - now).min(POLL));
        }
    }
}

fn failed(sequence: u64, error: &dyn std::fmt::Display) -> ReactorState {
    ReactorState::Failed {
        sequence,
        error: error.to_string(),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_string());
    format!("the handler panicked: {text}")
}
