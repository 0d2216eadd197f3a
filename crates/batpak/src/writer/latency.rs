//! How long the writer's fsyncs take: a fixed-bucket histogram of every group-commit
//! sync, cheap enough to update on each one (a few relaxed atomic adds).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 50 us to 1 s, then everything above.
const BOUNDS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000, 1_000_000,
];

/// The store's fsync latencies since it was opened. See [`crate::Store::sync_latency`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncLatency {
    /// Syncs measured.
    pub count: u64,
    /// Their total time.
    pub total: Duration,
    /// `(upper bound, syncs that took longer than the previous bound and at most this
    /// one)`, in increasing order of bound; syncs over the last bound are counted only
    /// in `count`.
    pub buckets: Vec<(Duration, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    counts: [AtomicU64; BOUNDS_US.len()],
    count: AtomicU64,
    total_ns: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BOUNDS_US.iter().position(|b| us <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SyncLatency {
        SyncLatency {
            count: self.count.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.total_ns.load(Ordering::Relaxed)),
            buckets: BOUNDS_US
                .iter()
                .zip(&self.counts)
                .map(|(b, c)| (Duration::from_micros(*b), c.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sync_lands_in_the_first_bucket_that_holds_it() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(2));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.total, Duration::from_micros(50 + 51 + 3_000 + 2_000_000));
        let counts: Vec<u64> = s.buckets.iter().map(|(_, c)| *c).collect();
        assert_eq!(counts, [1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(s.buckets[6].0, Duration::from_millis(5));
    }
}
