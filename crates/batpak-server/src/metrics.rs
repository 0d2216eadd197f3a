//! Counters for `/metrics`, rendered in Prometheus' text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use batpak::Store;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Everything `/metrics` reports that the store does not know itself.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub appends: AtomicU64,
    pub append_bytes: AtomicU64,
    pub append_latency: Histogram,
    pub streams_open: AtomicU64,
    pub stream_events: AtomicU64,
    pub lagged: AtomicU64,
    /// The lag of each open stream, by stream number.
    pub stream_lag: Mutex<BTreeMap<u64, u64>>,
    pub next_stream: AtomicU64,
    pub requests: Mutex<BTreeMap<u16, u64>>,
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    pub(crate) fn request(&self, status: u16, code: Option<&'static str>) {
        *locked(&self.requests).entry(status).or_default() += 1;
        if let Some(code) = code {
            *locked(&self.errors).entry(code).or_default() += 1;
        }
    }

    pub(crate) fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        let frontier = store.frontier();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "batpak_appends_total",
            "Events appended through the server.",
            load(&self.appends),
        );
        counter(
            &mut out,
            "batpak_append_bytes_total",
            "Payload bytes appended through the server.",
            load(&self.append_bytes),
        );
        self.append_latency.render(
            &mut out,
            "batpak_append_duration_seconds",
            "Time from an append request's arrival at the store to its receipt (durable per the store's sync policy).",
        );
        let sync = store.sync_latency();
        let _ = writeln!(
            out,
            "# HELP batpak_fsync_duration_seconds Time of each group-commit fsync of the store.\n# TYPE batpak_fsync_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in &sync.buckets {
            cumulative += count;
            let le = bound.as_secs_f64();
            let _ = writeln!(
                out,
                "batpak_fsync_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "batpak_fsync_duration_seconds_bucket{{le=\"+Inf\"}} {}\nbatpak_fsync_duration_seconds_sum {}\nbatpak_fsync_duration_seconds_count {}",
            sync.count,
            sync.total.as_secs_f64(),
            sync.count
        );
        gauge(
            &mut out,
            "batpak_streams_open",
            "Live streams (SSE) open now.",
            load(&self.streams_open),
        );
        counter(
            &mut out,
            "batpak_stream_events_total",
            "Events sent on live streams.",
            load(&self.stream_events),
        );
        counter(
            &mut out,
            "batpak_streams_lagged_total",
            "Live streams closed because they fell behind their bound.",
            load(&self.lagged),
        );
        let max_lag = locked(&self.stream_lag)
            .values()
            .copied()
            .max()
            .unwrap_or(0);
        gauge(
            &mut out,
            "batpak_stream_lag_max",
            "The largest lag (in sequences) of an open live stream.",
            max_lag,
        );
        gauge(
            &mut out,
            "batpak_visible_sequence",
            "The newest visible sequence.",
            frontier.visible,
        );
        gauge(
            &mut out,
            "batpak_durable_sequence",
            "The newest sequence on stable storage.",
            frontier.durable,
        );
        let _ = writeln!(
            out,
            "# HELP batpak_http_requests_total Requests answered, by status.\n# TYPE batpak_http_requests_total counter"
        );
        for (status, n) in locked(&self.requests).iter() {
            let _ = writeln!(out, "batpak_http_requests_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP batpak_http_errors_total Error answers, by code.\n# TYPE batpak_http_errors_total counter"
        );
        for (code, n) in locked(&self.errors).iter() {
            let _ = writeln!(out, "batpak_http_errors_total{{code=\"{code}\"}} {n}");
        }
        out
    }
}
