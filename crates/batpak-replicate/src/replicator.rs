//! The replicator: ships a store's events into a sink in sequence order, in bounded
//! batches, from the position the sink itself holds. The position commits with the
//! rows, so a replicator killed at any moment resumes exactly after what the sink
//! has: no gap, and no duplicate (a batch committed just before the kill is found in
//! the sink's position, and a retried batch the sink already holds changes nothing).
//!
//! What it ships is the lossless export form of every record the store holds, the
//! store's own records (redactions, retention policies, deletions, kind names) and
//! the events they hide included, so a copy can be verified and erasures propagate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use batpak::proof::Anchor;
use batpak::{EventPayload, ExportLine, Redaction, Region, Store};
use tokio::sync::watch;

use crate::sink::{Sink, SinkError};

/// Events shipped per batch at most.
pub const DEFAULT_BATCH: usize = 1_000;
/// Events between the anchors a replicator ships, by default.
pub const DEFAULT_ANCHOR_EVERY: u64 = 10_000;

/// Where a replicator is.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// The last sequence the sink holds.
    pub position: u64,
    /// The store's newest visible sequence when last looked at.
    pub visible: u64,
    /// Sequences visible in the store and not yet in the sink.
    pub lag_events: u64,
    /// How long ago the oldest event not yet in the sink was appended (0 when none).
    pub lag: Duration,
    /// Events shipped by this replicator.
    pub shipped: u64,
    /// Failed attempts since the last success (the sink is being retried).
    pub retrying: u32,
    /// The last failure, if the sink is failing.
    pub last_error: Option<String>,
    /// Whether it is paused.
    pub paused: bool,
    /// The sequence of the last anchor shipped (0: none yet).
    pub anchored: u64,
}

/// Why replication stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplicateError {
    /// The sink diverged from the store (see [`SinkError::Diverged`]).
    Diverged(String),
    /// Reading the store failed.
    Store(batpak::Error),
}

impl std::fmt::Display for ReplicateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicateError::Diverged(why) => write!(f, "replication stopped: {why}"),
            ReplicateError::Store(e) => write!(f, "reading the store failed: {e}"),
        }
    }
}

impl std::error::Error for ReplicateError {}

/// Pauses and resumes a running replicator, and reads its status.
#[derive(Clone, Debug)]
pub struct Control {
    paused: watch::Sender<bool>,
    status: Arc<Mutex<Status>>,
}

impl Control {
    /// Stops shipping after the batch in flight; the position stays where it is.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Ships again.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// The replicator's status now.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Ships one store into one sink.
pub struct Replicator<S> {
    store: Arc<Store>,
    sink: S,
    batch: usize,
    anchor_every: u64,
    last_anchor: Option<Anchor>,
    /// The newest compaction generation the sink was given in this run.
    compaction_shipped: u64,
    control: Control,
    paused: watch::Receiver<bool>,
}

impl<S> std::fmt::Debug for Replicator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("store", &self.store.dir())
            .field("batch", &self.batch)
            .field("status", &self.control.status())
            .finish()
    }
}

/// One batch read from the store.
struct Page {
    lines: Vec<ExportLine>,
    erased: Vec<ExportLine>,
    visible: u64,
}

/// Up to `limit` events after `position`, cut back to the end of the last batch
/// they complete (a batch larger than `limit` comes whole), so the sink's position
/// always ends a batch: a follower importing from the sink can import everything up
/// to it, atomic batches intact.
fn whole_batches(
    store: &Store,
    position: u64,
    limit: usize,
) -> batpak::Result<Vec<batpak::StoredEvent>> {
    let mut events = store.query(&everything(), position, limit)?;
    loop {
        let Some(last) = events.last() else {
            return Ok(events);
        };
        if !last.continues_batch() {
            return Ok(events);
        }
        // The page ends inside a batch: drop that batch's start, or, when the page is
        // all one batch, read on to its end.
        let end = complete_batches(&events);
        if end > 0 {
            events.truncate(end);
            return Ok(events);
        }
        let more = store.query(&everything(), last.sequence, limit)?;
        if more.is_empty() {
            // A batch is visible whole or not at all, so this is a store whose batch
            // was cut short (salvaged): ship what it holds.
            return Ok(events);
        }
        events.extend(more);
    }
}

/// How many of `events` (consecutive, in sequence order) make up whole batches: up
/// to and including the last one that ends its batch.
pub(crate) fn complete_batches(events: &[batpak::StoredEvent]) -> usize {
    events
        .iter()
        .rposition(|e| !e.continues_batch())
        .map_or(0, |i| i + 1)
}

/// The region a replica holds: everything the store holds.
fn everything() -> Region {
    Region::all().with_store_records().with_hidden()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Awaits `$call` on the sink until it succeeds, retrying an unavailable sink with
/// exponential backoff (shown in the status); a diverged sink ends the enclosing
/// function with `ReplicateError::Diverged`.
macro_rules! retried {
    ($self:ident, $call:expr) => {{
        let mut backoff = BACKOFF_FIRST;
        loop {
            match $call.await {
                Ok(value) => break value,
                Err(SinkError::Diverged(why)) => return Err(ReplicateError::Diverged(why)),
                Err(SinkError::Unavailable(why)) => {
                    $self.failed(why);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }};
}

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often an idle replicator looks for new events.
const IDLE_POLL: Duration = Duration::from_millis(20);

impl<S: Sink> Replicator<S> {
    /// A replicator of `store` into `sink`.
    pub fn new(store: Arc<Store>, sink: S) -> Replicator<S> {
        let (paused, rx) = watch::channel(false);
        Replicator {
            store,
            sink,
            batch: DEFAULT_BATCH,
            anchor_every: DEFAULT_ANCHOR_EVERY,
            last_anchor: None,
            compaction_shipped: 0,
            control: Control {
                paused,
                status: Arc::default(),
            },
            paused: rx,
        }
    }

    /// Events per batch (default [`DEFAULT_BATCH`]).
    #[must_use]
    pub fn batch(mut self, events: usize) -> Self {
        self.batch = events.max(1);
        self
    }

    /// Ships an anchor of the store (signed when the store signs) each time this
    /// many events were shipped since the last one, and at the end of `catch_up`
    /// (default [`DEFAULT_ANCHOR_EVERY`]; 0: none). The first is a full scan of the
    /// store's history; each later one reads only what came since.
    #[must_use]
    pub fn anchor_every(mut self, events: u64) -> Self {
        self.anchor_every = events;
        self
    }

    /// A handle to pause, resume and watch it.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// The sink (for its own queries).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self
            .control
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The sink's position, retried with backoff until it answers (or `deadline`).
    async fn position(&mut self, deadline: Option<Instant>) -> Result<Option<u64>, ReplicateError> {
        let mut backoff = BACKOFF_FIRST;
        loop {
            match self.sink.position().await {
                Ok(p) => return Ok(Some(p)),
                Err(SinkError::Diverged(why)) => return Err(ReplicateError::Diverged(why)),
                Err(SinkError::Unavailable(why)) => {
                    self.failed(why);
                    if deadline.is_some_and(|d| Instant::now() + backoff > d) {
                        return Ok(None);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn failed(&self, why: String) {
        self.update(|s| {
            s.retrying += 1;
            s.last_error = Some(why);
        });
    }

    /// Ships until the sink holds everything that was visible when it was called;
    /// returns the sink's position then.
    pub async fn catch_up(&mut self) -> Result<u64, ReplicateError> {
        let goal = self.store.frontier().visible;
        let mut position = self.position(None).await?.unwrap_or(0);
        while position < goal {
            position = self.step(position).await?;
        }
        let anchored = self.last_anchor.map_or(0, |a| a.sequence);
        if self.anchor_every > 0 && position > anchored {
            self.ship_anchor(position).await?;
        }
        Ok(position)
    }

    /// Ships until `stop` completes, following new events as they become visible.
    pub async fn run(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<u64, ReplicateError> {
        tokio::pin!(stop);
        let mut position = tokio::select! {
            p = self.position(None) => p?.unwrap_or(0),
            () = &mut stop => return Ok(0),
        };
        loop {
            if *self.paused.borrow() {
                self.update(|s| s.paused = true);
                let mut paused = self.paused.clone();
                tokio::select! {
                    _ = paused.wait_for(|p| !*p) => {}
                    () = &mut stop => return Ok(position),
                }
                self.update(|s| s.paused = false);
            }
            tokio::select! {
                next = self.step(position) => position = next?,
                () = &mut stop => return Ok(position),
            }
        }
    }

    /// Ships the next batch after `position` (or waits a little when there is none);
    /// returns the new position.
    async fn step(&mut self, position: u64) -> Result<u64, ReplicateError> {
        // A compacted store's copy lacks the removed events: its manifest goes first.
        if self.store.compaction_generation() > self.compaction_shipped {
            self.ship_compaction().await?;
        }
        let store = Arc::clone(&self.store);
        let limit = self.batch;
        let page = tokio::task::spawn_blocking(move || -> batpak::Result<Page> {
            // A view of a store another process writes sees new events only by
            // looking.
            store.refresh()?;
            let events = whole_batches(&store, position, limit)?;
            let lines = events
                .iter()
                .map(|e| ExportLine::from_event(e, store.kind_name(e.kind)))
                .collect();
            // The events this batch's redactions erased, as the store has them now.
            let mut erased = Vec::new();
            for e in events
                .iter()
                .filter(|e| e.kind == <Redaction as EventPayload>::KIND)
            {
                let redaction: Redaction = e.decode()?;
                if let Some(target) = store.get(redaction.target)? {
                    erased.push(ExportLine::from_event(
                        &target,
                        store.kind_name(target.kind),
                    ));
                }
            }
            Ok(Page {
                lines,
                erased,
                visible: store.frontier().visible,
            })
        })
        .await
        .map_err(|e| {
            ReplicateError::Store(batpak::Error::Malformed {
                what: "replicator",
                detail: format!("the store read did not finish: {e}"),
            })
        })?
        .map_err(ReplicateError::Store)?;
        let Page {
            lines,
            erased,
            visible,
        } = page;
        let Some(last) = lines.last().and_then(|l| l.sequence) else {
            self.update(|s| {
                s.visible = visible;
                s.lag_events = visible.saturating_sub(position);
                s.lag = Duration::ZERO;
            });
            tokio::time::sleep(IDLE_POLL).await;
            return Ok(position);
        };
        let oldest_ns = lines.first().and_then(|l| l.timestamp_ns).unwrap_or(0);
        self.update(|s| {
            s.visible = visible;
            s.lag_events = visible.saturating_sub(position);
            s.lag = Duration::from_nanos(now_ns().saturating_sub(oldest_ns));
        });
        retried!(self, self.sink.ship(&lines, &erased, last));
        let shipped = lines.len() as u64;
        self.update(|s| {
            s.position = last;
            s.shipped += shipped;
            s.retrying = 0;
            s.last_error = None;
            s.lag_events = visible.saturating_sub(last);
        });
        let anchored = self.last_anchor.map_or(0, |a| a.sequence);
        if self.anchor_every > 0 && last.saturating_sub(anchored) >= self.anchor_every {
            self.ship_anchor(last).await?;
        }
        Ok(last)
    }

    /// Ships the store's compaction manifest, retrying the sink as `ship` does.
    async fn ship_compaction(&mut self) -> Result<(), ReplicateError> {
        let Some(bytes) = self.store.compaction_manifest() else {
            return Ok(());
        };
        let generation = self.store.compaction_generation();
        retried!(self, self.sink.compaction(generation, &bytes));
        self.compaction_shipped = generation;
        Ok(())
    }

    /// Takes an anchor of the store at `position` (which the sink holds) and ships
    /// it, retrying the sink as `ship` does.
    async fn ship_anchor(&mut self, position: u64) -> Result<(), ReplicateError> {
        let store = Arc::clone(&self.store);
        let previous = self.last_anchor;
        let anchor = tokio::task::spawn_blocking(move || match previous {
            Some(p) => store
                .anchor_from(&p, position)
                .or_else(|_| store.anchor_upto(position)),
            None => store.anchor_upto(position),
        })
        .await
        .map_err(|e| {
            ReplicateError::Store(batpak::Error::Malformed {
                what: "replicator",
                detail: format!("the anchor did not finish: {e}"),
            })
        })?
        .map_err(ReplicateError::Store)?;
        retried!(self, self.sink.anchor(&anchor));
        self.last_anchor = Some(anchor);
        self.update(|s| {
            s.anchored = anchor.sequence;
            s.retrying = 0;
            s.last_error = None;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use batpak::{AppendOptions, Batch, Coordinate, EventKind, RawPayload, Store};

    use super::whole_batches;

    /// Batches of three, then one event alone, then batches of three.
    fn store_of_batches(dir: &std::path::Path) -> Store {
        let store = Store::open(dir).unwrap();
        let coord = Coordinate::new("order:1", "shop").unwrap();
        let push = |n: usize| {
            let mut batch = Batch::new();
            for _ in 0..n {
                batch.push_raw(
                    &coord,
                    EventKind::custom(1, 1),
                    RawPayload::json(b"{}"),
                    AppendOptions::default(),
                );
            }
            store.append_batch(&batch).unwrap();
        };
        push(3);
        push(3);
        push(1);
        push(3);
        store
    }

    fn last(events: &[batpak::StoredEvent]) -> u64 {
        events.last().map_or(0, |e| e.sequence)
    }

    #[test]
    fn a_page_ends_where_a_batch_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of_batches(dir.path());
        assert_eq!(store.frontier().visible, 10);
        // Sequences 1-3, 4-6, 7 alone, 8-10.
        for (position, limit, through) in [
            (0, 4, 3),
            (0, 6, 6),
            (0, 7, 7),
            (0, 8, 7),
            (0, 2, 3),
            (3, 1, 6),
            (6, 1, 7),
            (7, 2, 10),
            (7, 100, 10),
            (10, 5, 0),
        ] {
            let events = whole_batches(&store, position, limit).unwrap();
            assert_eq!(
                last(&events),
                through,
                "after {position} with a limit of {limit}"
            );
            assert!(events.last().is_none_or(|e| !e.continues_batch()));
        }
    }
}
