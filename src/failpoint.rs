//! Failpoints for crash tests: `WEIR_FAILPOINTS="sink.after_data_write=5,source.parse=900"`
//! kills the process with SIGKILL at the 5th pass through `sink.after_data_write` (or the
//! 900th through `source.parse`), the worst moments for exactly-once output. Without the
//! variable, a failpoint is one relaxed atomic load.
//!
//! Points: `source.parse` (while parsing a message), `sink.mid_batch` (some rows of a write
//! durable, others not), `sink.after_data_write` (a write durable, its progress not yet
//! written), `progress.before_write`, `progress.after_write` (progress durable, not yet
//! committed to Kafka), `progress.before_commit` (the Kafka consumer-group commit about to be
//! sent), `join.emit` (inside the as-of or interval join, some results of a time emitted). Before it kills, a failpoint says so on stderr (`failpoint NAME: killing the
//! process`), so that tests can tell its kill from their own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

struct Point {
    name: String,
    at: u64,
    hits: AtomicU64,
}

static ARMED: AtomicBool = AtomicBool::new(true);
static POINTS: OnceLock<Vec<Point>> = OnceLock::new();

fn points() -> &'static [Point] {
    POINTS.get_or_init(|| {
        let spec = std::env::var("WEIR_FAILPOINTS").unwrap_or_default();
        let points: Vec<Point> = spec
            .split(',')
            .filter_map(|item| {
                let (name, at) = item.trim().split_once('=')?;
                Some(Point {
                    name: name.to_string(),
                    at: at.parse().ok()?,
                    hits: AtomicU64::new(0),
                })
            })
            .collect();
        if points.is_empty() {
            ARMED.store(false, Ordering::Relaxed);
        }
        points
    })
}

/// Passes the failpoint `name`; kills the process if it is armed for this pass.
#[inline]
pub fn hit(name: &str) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    for point in points() {
        if point.name == name && point.hits.fetch_add(1, Ordering::Relaxed) + 1 == point.at {
            eprintln!("failpoint {name}: killing the process");
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
