//! Delivery: the store's frontier, waiting for it, and live subscriptions.
//!
//! A subscription reads from the log through the index: it keeps the sequence up to
//! which it has looked and fetches the next page of matching events when its buffer
//! runs dry, then sleeps on the store's signal until more events are visible. Catch-up
//! and live delivery are one code path, so there is no switch at which an event could
//! be skipped or delivered twice. The writer's only cost is a wake-up.

pub(crate) mod cursor;
pub(crate) mod reactor;
pub(crate) mod transaction;
pub(crate) mod watch;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::StoredEvent;
use crate::options::{Frontier, Watermark};
use crate::query::Region;
use crate::store::Store;

/// Default [`Subscription::lag_limit`].
pub(crate) const DEFAULT_LAG_LIMIT: u64 = 65_536;

/// Events fetched from the index at a time.
const PAGE: usize = 256;

impl Store {
    /// The written, durable and visible watermarks now.
    pub fn frontier(&self) -> Frontier {
        let visible = self.visible_sequence();
        match self.writer() {
            Ok(w) => Frontier {
                written: w.written(),
                durable: w.durable(),
                visible,
            },
            Err(_) => Frontier {
                written: visible,
                durable: visible,
                visible,
            },
        }
    }

    /// Blocks until `watermark` reaches `sequence`, returning the frontier then, or
    /// fails after `timeout` with `Error::Timeout` saying how far it got. Waiting never
    /// syncs: under `SyncPolicy::Never` the durable watermark moves only with `sync`.
    pub fn wait_for(
        &self,
        watermark: Watermark,
        sequence: u64,
        timeout: Duration,
    ) -> Result<Frontier> {
        let started = Instant::now();
        let mut now = self.frontier();
        let reached = self.signal().wait_until(Some(started + timeout), || {
            now = self.frontier();
            watermark.of(&now) >= sequence
        });
        if reached {
            Ok(now)
        } else {
            Err(Error::Timeout {
                watermark,
                wanted: sequence,
                reached: watermark.of(&now),
                waited: started.elapsed(),
            })
        }
    }

    /// Delivers the visible events of `region` appended from now on, in sequence order.
    pub fn subscribe(&self, region: Region) -> Subscription<'_> {
        let now = self.visible_sequence();
        Subscription::new(self, region, now)
    }

    /// Delivers the events of `region` from sequence `from` on (inclusive): the ones
    /// already in the log, then new ones as they become visible, with no gap and no
    /// duplicate between the two.
    pub fn subscribe_from(&self, region: Region, from: u64) -> Subscription<'_> {
        Subscription::new(self, region, from.saturating_sub(1))
    }

    pub(crate) fn visible_sequence(&self) -> u64 {
        self.index().last_sequence()
    }
}

/// How often a subscription on a view looks at the writer's live mark: the bound on
/// how late a follower in another process sees an append.
pub(crate) const FOLLOW_POLL: Duration = Duration::from_millis(5);

/// Refreshes a view every `FOLLOW_POLL` until it holds events after `scanned`;
/// `false` when the deadline passed first.
fn follow_until(store: &Store, deadline: Option<Instant>, scanned: u64) -> Result<bool> {
    loop {
        store.refresh()?;
        if store.visible_sequence() > scanned {
            return Ok(true);
        }
        let pause = match deadline {
            None => FOLLOW_POLL,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Ok(false);
                }
                FOLLOW_POLL.min(d - now)
            }
        };
        std::thread::sleep(pause);
    }
}

/// Why `recv` returned no event.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// The subscriber fell more than its lag limit behind the visible frontier. The
    /// subscription has ended; `subscribe_from(region, resume_from)` continues exactly
    /// where it stopped.
    Lagged {
        /// The first sequence not delivered.
        resume_from: u64,
    },
    /// `recv_timeout`: nothing arrived in time.
    Timeout,
    /// `try_recv`: nothing is visible yet.
    Empty,
    /// Reading the log failed.
    Failed(Error),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Lagged { resume_from } => write!(
                f,
                "the subscriber fell too far behind; resume from sequence {resume_from}"
            ),
            RecvError::Timeout => write!(f, "no event arrived in time"),
            RecvError::Empty => write!(f, "no event is visible yet"),
            RecvError::Failed(e) => write!(f, "reading the log failed: {e}"),
        }
    }
}

impl std::error::Error for RecvError {}

/// A live, ordered feed of one region's events. See [`Store::subscribe`].
///
/// Bounded: once it has caught up with the log, a subscriber that leaves more than its
/// lag limit of newly visible events (counted in sequences) untaken receives
/// `RecvError::Lagged` and ends. It never skips an event silently.
pub struct Subscription<'s> {
    store: &'s Store,
    region: Region,
    /// Every event with a sequence up to this one has been looked at.
    scanned: u64,
    /// The last sequence handed out (or the one before the start).
    delivered: u64,
    buffer: VecDeque<StoredEvent>,
    /// The visible frontier when the subscriber last caught up with the log (fetched
    /// everything visible); `None` while it is still catching up.
    caught_up_at: Option<u64>,
    lag_limit: u64,
    lagged: Option<u64>,
    /// The iterator has reported the lag and ends.
    ended: bool,
}

impl fmt::Debug for Subscription<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("region", &self.region)
            .field("delivered", &self.delivered)
            .field("scanned", &self.scanned)
            .field("buffered", &self.buffer.len())
            .field("caught_up_at", &self.caught_up_at)
            .field("lag_limit", &self.lag_limit)
            .finish()
    }
}

impl<'s> Subscription<'s> {
    /// Default `lag_limit`.
    pub const DEFAULT_LAG_LIMIT: u64 = DEFAULT_LAG_LIMIT;

    fn new(store: &'s Store, region: Region, after: u64) -> Self {
        Subscription {
            store,
            region,
            scanned: after,
            delivered: after,
            buffer: VecDeque::new(),
            caught_up_at: None,
            lag_limit: DEFAULT_LAG_LIMIT,
            lagged: None,
            ended: false,
        }
    }

    /// How many sequences behind the visible frontier a caught-up subscriber may fall
    /// before it is told it lagged. Default [`DEFAULT_LAG_LIMIT`]; `u64::MAX` never
    /// lags (the events are in the log either way; the limit tells a consumer that it
    /// is no longer keeping up).
    #[must_use]
    pub fn lag_limit(mut self, sequences: u64) -> Self {
        self.lag_limit = sequences;
        self
    }

    /// The last sequence delivered (the one before the start, before any delivery).
    pub fn position(&self) -> u64 {
        self.delivered
    }

    /// Every event up to this sequence has been looked at: those of the region are
    /// delivered or buffered, the rest are not the region's.
    pub(crate) fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Every event up to this sequence is delivered or is not the region's (a store
    /// record the region hides, an event of another entity or kind): a consumer that
    /// has handled each delivered event has handled the region up to here. It moves
    /// past events the region leaves out, so it reaches the visible frontier even
    /// when the newest events are not the region's; [`position`](Self::position) stops
    /// at the last delivered one.
    pub fn passed(&self) -> u64 {
        match self.buffer.front() {
            None => self.scanned.max(self.delivered),
            Some(_) => self.delivered,
        }
    }

    /// Blocks until the next event arrives.
    pub fn recv(&mut self) -> std::result::Result<StoredEvent, RecvError> {
        self.next_until(None)
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<StoredEvent, RecvError> {
        self.next_until(Some(Instant::now() + timeout))
    }

    /// The next event if one is visible now.
    pub fn try_recv(&mut self) -> std::result::Result<StoredEvent, RecvError> {
        self.check_lag()?;
        if self.buffer.is_empty() {
            self.fill().map_err(RecvError::Failed)?;
        }
        self.pop().ok_or(RecvError::Empty)
    }

    pub(crate) fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> std::result::Result<StoredEvent, RecvError> {
        loop {
            self.check_lag()?;
            if let Some(event) = self.pop() {
                return Ok(event);
            }
            if self.fill().map_err(RecvError::Failed)? {
                continue;
            }
            let scanned = self.scanned;
            let store = self.store;
            if store.follows() {
                // A view: nobody in this process appends, so look at the writer's
                // mark every FOLLOW_POLL until it moves past what was scanned.
                if !follow_until(store, deadline, scanned).map_err(RecvError::Failed)? {
                    return Err(RecvError::Timeout);
                }
                continue;
            }
            if !store
                .signal()
                .wait_until(deadline, || store.visible_sequence() > scanned)
            {
                return Err(RecvError::Timeout);
            }
            // Woken by an append: let the appender go on before fetching, so one
            // wake-up tends to collect several events rather than one.
            std::thread::yield_now();
        }
    }

    fn pop(&mut self) -> Option<StoredEvent> {
        let event = self.buffer.pop_front()?;
        self.delivered = event.sequence;
        Some(event)
    }

    /// Lagging: more than `lag_limit` events became visible since the subscriber last
    /// caught up and it has not taken them. Events fetched while catching up do not
    /// count: a reader far behind the log is catching up, not lagging.
    fn check_lag(&mut self) -> std::result::Result<(), RecvError> {
        let behind = |mark: u64| {
            self.store
                .visible_sequence()
                .saturating_sub(self.delivered.max(mark))
        };
        if self.lagged.is_none()
            && self
                .caught_up_at
                .is_some_and(|m| behind(m) > self.lag_limit)
        {
            self.lagged = Some(self.delivered + 1);
            self.buffer.clear();
        }
        match self.lagged {
            Some(resume_from) => Err(RecvError::Lagged { resume_from }),
            None => Ok(()),
        }
    }

    /// Fetches the next page of matching events; `false` when the log has nothing
    /// after `scanned` yet (the subscriber has caught up).
    fn fill(&mut self) -> Result<bool> {
        let mut visible = self.store.visible_sequence();
        if self.scanned >= visible && self.store.follows() {
            self.store.refresh()?;
            visible = self.store.visible_sequence();
        }
        if self.scanned >= visible {
            self.caught_up_at = Some(visible);
            return Ok(false);
        }
        let page = self.store.query(&self.region, self.scanned, PAGE)?;
        // A short page holds every match up to the frontier the query saw, which is at
        // least `visible`.
        self.scanned = match page.last() {
            Some(last) if page.len() == PAGE => last.sequence,
            Some(last) => last.sequence.max(visible),
            None => visible,
        };
        if self.scanned >= visible {
            self.caught_up_at = Some(visible);
        }
        let got = !page.is_empty();
        self.buffer.extend(page);
        Ok(got)
    }
}

/// Blocking iteration; after a `Lagged` or `Failed` item the iterator ends.
impl Iterator for Subscription<'_> {
    type Item = std::result::Result<StoredEvent, RecvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let item = self.recv();
        self.ended = item.is_err();
        Some(item)
    }
}
