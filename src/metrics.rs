//! Counters shared by the workers of a process, for the banner, the final summary and tests.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages read.
    pub messages: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Bad records.
    pub dead_letters: AtomicU64,
    /// Late records.
    pub late: AtomicU64,
    /// Rows acknowledged by the sink (records, rejects and window results).
    pub rows_written: AtomicU64,
    /// Window results acknowledged by the sink.
    pub windows_written: AtomicU64,
    /// Progress records acknowledged by the sink.
    pub progress_written: AtomicU64,
    /// Retried sink writes.
    pub retries: AtomicU64,
    /// Rows submitted to the sink and not yet acknowledged (the source pauses when too many).
    pub in_flight_rows: AtomicU64,
}

impl Stats {
    /// A message of `bytes` was read.
    pub fn add_read(&self, bytes: usize) {
        self.messages.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }
    /// A message was a dead letter.
    pub fn add_dead_letter(&self) {
        self.dead_letters.fetch_add(1, Relaxed);
    }
    /// A message was late.
    pub fn add_late(&self) {
        self.late.fetch_add(1, Relaxed);
    }
    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} messages ({} bytes) read, {} dead letters, {} late, {} rows and {} window results written, {} progress records",
            self.messages.load(Relaxed),
            self.bytes.load(Relaxed),
            self.dead_letters.load(Relaxed),
            self.late.load(Relaxed),
            self.rows_written.load(Relaxed),
            self.windows_written.load(Relaxed),
            self.progress_written.load(Relaxed),
        )
    }
}
