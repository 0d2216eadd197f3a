//! An async facade over a blocking [`Store`] for tokio hosts: every store call runs on
//! the runtime's blocking pool, and a [`Follow`] is a `Stream` of a region's events
//! (catch-up from the log, then live) woken by one frontier watcher per store.
//!
//! The server uses this facade for everything it does with the store; an application
//! that runs its own tokio services can use it the same way.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, Error, EventId, EventKind, RawPayload, Region,
    Store, StoredEvent, Watermark,
};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream};
use tokio::sync::watch;

/// How long the frontier watcher waits on the store's signal before it looks again
/// (and refreshes a view of a store another process writes).
const WATCH_TICK: Duration = Duration::from_millis(20);

/// Events a [`Follow`] reads from the log at a time.
const FOLLOW_PAGE: usize = 256;

/// A shared, cloneable handle to a store for async code.
#[derive(Clone)]
pub struct AsyncStore {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<Store>,
    /// Appends go to one appender thread, which writes what arrived together and
    /// makes it durable with one fsync.
    appends: std::sync::Mutex<Option<std::sync::mpsc::Sender<Append>>>,
    appender: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The newest visible sequence, as the watcher last saw it.
    visible: watch::Receiver<u64>,
    stop: Arc<AtomicBool>,
    watcher: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for AsyncStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncStore")
            .field("dir", &self.shared.store.dir())
            .field("visible", &*self.shared.visible.borrow())
            .finish()
    }
}

/// A blocking task of the facade failed to finish (it panicked, or the runtime is
/// shutting down).
fn joined<T>(result: std::result::Result<T, tokio::task::JoinError>) -> batpak::Result<T> {
    result.map_err(|e| Error::Malformed {
        what: "server task",
        detail: format!("a blocking store task did not finish: {e}"),
    })
}

impl AsyncStore {
    /// Wraps an open store and starts its frontier watcher (one thread).
    pub fn new(store: Store) -> Self {
        let store = Arc::new(store);
        let (tx, rx) = watch::channel(store.frontier().visible);
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let store = Arc::clone(&store);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("batpak-frontier".into())
                .spawn(move || watch_frontier(&store, &tx, &stop))
                .ok()
        };
        let (appends, queue) = std::sync::mpsc::channel::<Append>();
        let appender = {
            let store = Arc::clone(&store);
            std::thread::Builder::new()
                .name("batpak-appender".into())
                .spawn(move || append_loop(&store, &queue))
                .ok()
        };
        AsyncStore {
            shared: Arc::new(Shared {
                appends: std::sync::Mutex::new(Some(appends)),
                appender: std::sync::Mutex::new(appender),
                store,
                visible: rx,
                stop,
                watcher: std::sync::Mutex::new(watcher),
            }),
        }
    }

    /// The store, for calls that never block (frontier, kind names, stats of the
    /// index). Anything that reads files belongs in [`run`](Self::run).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Runs `f` with the store on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> batpak::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> batpak::Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.shared.store);
        joined(tokio::task::spawn_blocking(move || f(&store)).await)?
    }

    /// Appends one event whose payload is already encoded.
    pub async fn append_raw(
        &self,
        coordinate: Coordinate,
        kind: EventKind,
        encoding: batpak::Encoding,
        bytes: Vec<u8>,
        options: AppendOptions,
    ) -> batpak::Result<AppendReceipt> {
        let mut batch = Batch::new();
        batch.push_raw(&coordinate, kind, raw(encoding, &bytes), options);
        let mut receipts = self.append_batch(batch).await?;
        receipts.pop().ok_or(Error::EmptyBatch)
    }

    /// Appends a batch atomically. Appends that arrive together (from concurrent
    /// tasks) are written by one thread and share one fsync; each keeps its own
    /// checks and atomicity.
    pub async fn append_batch(&self, batch: Batch) -> batpak::Result<Vec<AppendReceipt>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self
            .shared
            .appends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|q| q.send(Append { batch, reply }));
        match sent {
            Some(Ok(())) => answer.await.unwrap_or_else(|_| Err(appender_gone())),
            _ => Err(appender_gone()),
        }
    }

    /// The event with this id.
    pub async fn get(&self, id: EventId) -> batpak::Result<Option<StoredEvent>> {
        self.run(move |s| s.get(id)).await
    }

    /// The event at this sequence.
    pub async fn get_sequence(&self, sequence: u64) -> batpak::Result<Option<StoredEvent>> {
        self.run(move |s| s.get_sequence(sequence)).await
    }

    /// Up to `limit` events of `region` after sequence `after`, oldest first.
    pub async fn query(
        &self,
        region: Region,
        after: u64,
        limit: usize,
    ) -> batpak::Result<Vec<StoredEvent>> {
        self.run(move |s| s.query(&region, after, limit)).await
    }

    /// Up to `limit` events of `region` before sequence `before`, newest first.
    pub async fn query_reverse(
        &self,
        region: Region,
        before: u64,
        limit: usize,
    ) -> batpak::Result<Vec<StoredEvent>> {
        self.run(move |s| s.query_reverse(&region, before, limit))
            .await
    }

    /// Waits until the visible frontier passes `sequence` or `timeout` passes;
    /// returns the visible sequence then.
    pub async fn wait_visible(&self, sequence: u64, timeout: Duration) -> u64 {
        let mut rx = self.shared.visible.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|v| *v >= sequence))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|v| *v);
        reached.unwrap_or_else(|| *self.shared.visible.borrow())
    }

    /// The events of `region` from sequence `from` on (inclusive): those in the log,
    /// then new ones as they become visible, with no gap and no duplicate. Once it
    /// has caught up, a follower more than `lag_limit` sequences behind the visible
    /// frontier ends with [`FollowError::Lagged`].
    pub fn follow(&self, region: Region, from: u64, lag_limit: u64) -> Follow {
        Follow {
            store: self.clone(),
            region,
            scanned: from.saturating_sub(1),
            delivered: from.saturating_sub(1),
            buffer: VecDeque::new(),
            caught_up_at: None,
            lag_limit,
            pending: None,
            ended: false,
        }
    }

    /// Closes the store cleanly (checkpoint written, lock released) once this is the
    /// last handle; hands the handle back when others are still alive.
    pub fn close(self) -> std::result::Result<batpak::Result<()>, AsyncStore> {
        let shared = match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared,
            Err(shared) => return Err(AsyncStore { shared }),
        };
        shared.stop.store(true, Ordering::SeqCst);
        // Ending the queue ends the appender once it has answered what it holds.
        drop(
            shared
                .appends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        if let Some(handle) = shared
            .appender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
        if let Some(handle) = shared
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
        match Arc::try_unwrap(shared.store) {
            Ok(store) => Ok(store.close()),
            // A blocking task still holds the store (it was started but never
            // awaited); dropping it here would skip the checkpoint, so say so.
            Err(store) => Ok(Err(Error::Malformed {
                what: "close",
                detail: format!(
                    "{} blocking tasks still hold the store at {}",
                    Arc::strong_count(&store) - 1,
                    store.dir().display()
                ),
            })),
        }
    }
}

fn raw(encoding: batpak::Encoding, bytes: &[u8]) -> RawPayload<'_> {
    match encoding {
        batpak::Encoding::Json => RawPayload::json(bytes),
        batpak::Encoding::MessagePack => RawPayload::msgpack(bytes),
        _ => RawPayload::opaque(bytes),
    }
}

/// One append waiting for the appender thread.
struct Append {
    batch: Batch,
    reply: tokio::sync::oneshot::Sender<batpak::Result<Vec<AppendReceipt>>>,
}

/// Most appends the appender writes under one fsync.
const APPEND_GROUP: usize = 256;

fn appender_gone() -> Error {
    Error::Malformed {
        what: "append",
        detail: "the store's appender has stopped (the server is shutting down)".into(),
    }
}

/// The appender thread: takes every append that is waiting, writes them and syncs
/// once (`Store::append_batches`), answers each, and repeats. While it syncs, the
/// next group gathers.
fn append_loop(store: &Store, queue: &std::sync::mpsc::Receiver<Append>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < APPEND_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<Batch>, Vec<_>) =
            group.into_iter().map(|a| (a.batch, a.reply)).unzip();
        let results = store.append_batches(&batches);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// The frontier watcher: publishes the visible sequence whenever it moves.
fn watch_frontier(store: &Store, tx: &watch::Sender<u64>, stop: &AtomicBool) {
    let mut seen = *tx.borrow();
    while !stop.load(Ordering::SeqCst) {
        match store.wait_for(Watermark::Visible, seen + 1, WATCH_TICK) {
            Ok(frontier) => {
                seen = frontier.visible;
                tx.send_replace(seen);
            }
            Err(_) => {
                // A view learns of another process's appends only by looking.
                if store.refresh().unwrap_or(0) > 0 {
                    seen = store.frontier().visible;
                    tx.send_replace(seen);
                }
            }
        }
    }
}

/// Why a [`Follow`] ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum FollowError {
    /// The follower fell more than its lag limit behind; `follow(region,
    /// resume_from, ..)` continues exactly where it stopped.
    Lagged {
        /// The first sequence not delivered.
        resume_from: u64,
    },
    /// Reading the log failed.
    Failed(Error),
}

impl fmt::Display for FollowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FollowError::Lagged { resume_from } => write!(
                f,
                "the follower fell too far behind; resume from sequence {resume_from}"
            ),
            FollowError::Failed(e) => write!(f, "reading the log failed: {e}"),
        }
    }
}

impl std::error::Error for FollowError {}

/// A `Stream` of one region's events; see [`AsyncStore::follow`]. Catch-up and live
/// delivery are one path: it reads the next page of the log after the last sequence
/// it looked at, and when there is none it waits for the frontier to move. It holds
/// at most one page, whatever the consumer's speed.
pub struct Follow {
    store: AsyncStore,
    region: Region,
    /// Every sequence up to here has been looked at.
    scanned: u64,
    /// The last sequence handed out.
    delivered: u64,
    buffer: VecDeque<StoredEvent>,
    /// The visible frontier when the follower last read everything up to it; `None`
    /// while it is still catching up.
    caught_up_at: Option<u64>,
    lag_limit: u64,
    pending: Option<BoxFuture<'static, Step>>,
    ended: bool,
}

impl fmt::Debug for Follow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follow")
            .field("region", &self.region)
            .field("scanned", &self.scanned)
            .field("delivered", &self.delivered)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

enum Step {
    /// A page read from the log, with the visible sequence before the read.
    Page(batpak::Result<Vec<StoredEvent>>, u64),
    /// The frontier moved (or the wait timed out; look again either way).
    Moved,
}

impl Follow {
    /// The last sequence delivered.
    pub fn position(&self) -> u64 {
        self.delivered
    }

    /// Every sequence up to here is delivered or not the region's.
    pub fn passed(&self) -> u64 {
        if self.buffer.is_empty() {
            self.scanned.max(self.delivered)
        } else {
            self.delivered
        }
    }

    /// How far behind the visible frontier the follower is, in sequences: 0 while
    /// it catches up, then the sequences made visible since it last caught up that
    /// it has not delivered.
    pub fn lag(&self) -> u64 {
        match self.caught_up_at {
            None => 0,
            Some(mark) => {
                (*self.store.shared.visible.borrow()).saturating_sub(self.delivered.max(mark))
            }
        }
    }

    fn next_step(&mut self) -> BoxFuture<'static, Step> {
        let visible = *self.store.shared.visible.borrow();
        if visible > self.scanned {
            let store = self.store.clone();
            let region = self.region.clone();
            let after = self.scanned;
            async move {
                let page = store.query(region, after, FOLLOW_PAGE).await;
                Step::Page(page, visible)
            }
            .boxed()
        } else {
            // Nothing after the scan is visible: caught up.
            self.caught_up_at = Some(visible);
            let mut rx = self.store.shared.visible.clone();
            let after = self.scanned;
            async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), rx.wait_for(|v| *v > after)).await;
                Step::Moved
            }
            .boxed()
        }
    }
}

impl Stream for Follow {
    type Item = std::result::Result<StoredEvent, FollowError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            if this.lag() > this.lag_limit {
                this.ended = true;
                return Poll::Ready(Some(Err(FollowError::Lagged {
                    resume_from: this.delivered + 1,
                })));
            }
            if let Some(event) = this.buffer.pop_front() {
                this.delivered = event.sequence;
                return Poll::Ready(Some(Ok(event)));
            }
            if this.pending.is_none() {
                this.pending = Some(this.next_step());
            }
            let Some(pending) = this.pending.as_mut() else {
                continue;
            };
            let step = match pending.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(step) => step,
            };
            this.pending = None;
            match step {
                Step::Moved => {}
                Step::Page(Err(e), _) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(FollowError::Failed(e))));
                }
                Step::Page(Ok(page), visible) => {
                    let full = page.len() == FOLLOW_PAGE;
                    let last = page.last().map_or(0, |e| e.sequence);
                    // A short page holds every match up to the frontier it started
                    // from (visibility moves in sequence order), so the scan reaches
                    // that frontier; a full page reaches only its last event.
                    this.scanned = if full { last } else { last.max(visible) };
                    if !full {
                        this.caught_up_at = Some(visible);
                    }
                    this.buffer.extend(page);
                }
            }
        }
    }
}
