//! Flow control: the one mechanism by which a source learns that it should pause.
//!
//! Timely's channels between workers are unbounded and the store acknowledges writes at its
//! own pace, so a source that read as fast as it can would queue observations for slower
//! workers' windows, and rows for the store, without bound: memory would grow with the input
//! rather than with the open windows. A [`FlowControl`] answers, before each batch, whether
//! the source may read; it looks at two things and holds no other state:
//!
//! - **the windows' input frontier**, through a timely probe on the first window stage's
//!   output: the time up to which every worker's windows have taken in their observations.
//!   A source pauses while its own capability is more than `max_ahead_ms` (event time) beyond
//!   it;
//! - **rows in flight**: a process-wide count of rows submitted to the store and not yet
//!   acknowledged, raised by the sink when it submits and lowered when the store acknowledges.
//!   A source pauses while it exceeds `max_in_flight`.
//!
//! Pausing never drops a capability or a message: it only delays the next read, so it cannot
//! change what is computed, only when.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use timely::dataflow::ProbeHandle;

/// How far (event time) a worker's source may run ahead of the observations the windows of
/// every worker have taken in, by default. A 10 s bound cost 10% throughput; 60 s nothing
/// measurable, with peak memory flat from 2M to 10M users.
pub const MAX_AHEAD_MS: u64 = 60_000;

/// The lead of a joined dataflow's sources. Its windows' frontier is behind the join, which
/// holds every event until the table's frontier passes it, so what a source reads ahead waits
/// in the join: 10 s instead of 60 s lowered the user_activity benchmark's peak RSS by 60 to
/// 90 MB (about 20%) at the same events/s (2026-12-04, README "Joins").
pub const JOIN_MAX_AHEAD_MS: u64 = 10_000;

/// Whether a source may read now. One per worker; the counter is shared by the process.
#[derive(Clone)]
pub struct FlowControl {
    /// Probe on the first window stage's output (its frontier is that stage's input frontier).
    pub windows: ProbeHandle<u64>,
    /// Rows submitted to the store and not yet durable, in this process.
    pub rows_in_flight: Arc<AtomicU64>,
    /// Pause above this many rows in flight.
    pub max_in_flight: u64,
    /// Pause this far ahead of the windows.
    pub max_ahead_ms: u64,
}

impl FlowControl {
    /// Flow control with `rows_in_flight` shared, and a lead over the windows
    /// ([`MAX_AHEAD_MS`], or [`JOIN_MAX_AHEAD_MS`] for a joined dataflow).
    pub fn new(rows_in_flight: Arc<AtomicU64>, max_in_flight: u64, max_ahead_ms: u64) -> Self {
        FlowControl {
            windows: ProbeHandle::new(),
            rows_in_flight,
            max_in_flight,
            max_ahead_ms,
        }
    }

    /// Whether a source whose capability is at `time` should wait before reading.
    pub fn pause(&self, time: u64) -> bool {
        if self.rows_in_flight.load(Ordering::Relaxed) > self.max_in_flight {
            return true;
        }
        // An empty frontier (no windows, or all done) sets no limit.
        let windows = self
            .windows
            .with_frontier(|f| f.first().copied())
            .unwrap_or(u64::MAX);
        time.saturating_sub(windows) > self.max_ahead_ms
    }
}
