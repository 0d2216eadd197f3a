//! What the timed (non-criterion) bench binaries report per row: operations per
//! second and per-call latency percentiles.

use std::time::Duration;

/// Operations per second and per-call latency percentiles of one run.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Operations completed.
    pub ops: u64,
    /// Over how long.
    pub elapsed: Duration,
    /// Median latency of one call, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency of one call, microseconds.
    pub p99_us: f64,
}

/// The `p` quantile of sorted latencies (NaN for none).
pub fn quantile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64
}

impl Run {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// A run of `ops` operations over `elapsed` with these per-call latencies.
    pub fn from_latencies(ops: u64, elapsed: Duration, mut latencies_us: Vec<u64>) -> Run {
        latencies_us.sort_unstable();
        Run {
            ops,
            elapsed,
            p50_us: quantile(&latencies_us, 0.5),
            p99_us: quantile(&latencies_us, 0.99),
        }
    }

    /// One run of the parts of each thread or task: its operations and latencies.
    pub fn merge(parts: Vec<(u64, Vec<u64>)>, elapsed: Duration) -> Run {
        let ops = parts.iter().map(|(n, _)| n).sum();
        let latencies_us: Vec<u64> = parts.into_iter().flat_map(|(_, l)| l).collect();
        Run::from_latencies(ops, elapsed, latencies_us)
    }
}
