//! Where event timestamps come from: the system clock by default, or a clock a test
//! sets and steps (`StoreBuilder::clock`). Whatever the clock says, the writer never
//! stamps an event earlier than the one before it (`max(now, last)`), so timestamps
//! never go backwards within a store.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time, in Unix nanoseconds, for the timestamps a store
/// assigns to events (and, through them, the millisecond part of event ids).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in nanoseconds since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The operating system's wall clock: the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A clock that stands still until told to move: for tests that need known
/// timestamps. Clones share one time.
///
/// ```
/// use batpak::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new(1_700_000_000_000_000_000);
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(clock.now_ns(), 1_700_000_001_000_000_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock showing `unix_ns`.
    pub fn new(unix_ns: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(unix_ns)))
    }

    /// Sets the time (it may go back; the store's timestamps still do not).
    pub fn set(&self, unix_ns: u64) {
        self.0.store(unix_ns, Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
