//! The server's limits, each with a stated default.

use std::time::Duration;

/// Bounds on what one request or stream may take. Every field has a default
/// ([`Limits::default`]); the documentation of each field gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request body, in bytes. Default 8 MiB.
    pub max_body_bytes: usize,
    /// Most events one page of a read returns. Default 1,000.
    pub max_page: usize,
    /// Events a page returns when the request names no `limit`. Default 100.
    pub default_page: usize,
    /// Most events in one batch append. Default 1,000.
    pub max_batch: usize,
    /// Most live streams (SSE) open at once; one more is a 503. Default 256.
    pub max_streams: usize,
    /// How long a read or proof request may take before it is answered with a 503
    /// `timeout`. Live streams, cursor waits and appends are not cut off (an append's
    /// time is bounded by the store, and it must not be answered with an error after
    /// it may have been written). Default 30 s.
    pub request_timeout: Duration,
    /// How far (in sequences) a live stream may fall behind the store before it is
    /// sent `lagged` and closed. Default 65,536.
    pub stream_lag_limit: u64,
    /// Interval between heartbeats on a quiet live stream. Default 15 s.
    pub heartbeat: Duration,
    /// Longest wait a cursor's `next` may ask for. Default 30 s.
    pub max_cursor_wait: Duration,
    /// Most durable cursors held open at once (each holds a thread); one more is a
    /// 503 until the server restarts. Default 64.
    pub max_cursors: usize,
    /// Verification jobs remembered (the oldest finished one is forgotten first).
    /// Default 16.
    pub max_jobs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            max_page: 1_000,
            default_page: 100,
            max_batch: 1_000,
            max_streams: 256,
            request_timeout: Duration::from_secs(30),
            stream_lag_limit: 65_536,
            heartbeat: Duration::from_secs(15),
            max_cursor_wait: Duration::from_secs(30),
            max_cursors: 64,
            max_jobs: 16,
        }
    }
}
