//! Event time: window arithmetic and per-partition watermarks. Pure; no I/O.
//!
//! Timely timestamps in Weir are event times in milliseconds since the Unix epoch. Windows are
//! half-open intervals `[start, end)`; a window is final once the frontier reaches `end`.
//!
//! Lateness is decided per partition from that partition's own history (see
//! [`PartitionClock`]), so it does not depend on how partitions are spread over workers,
//! processes or restarts.

use serde::{Deserialize, Serialize};

pub use crate::data::timestamp::{day, parse_rfc3339, rfc3339};

/// Tumbling (`slide == size`) or hopping (`slide < size`, `size` a multiple of `slide`) windows,
/// aligned to the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Length of a window, ms.
    pub size: u64,
    /// Distance between window starts, ms.
    pub slide: u64,
}

impl WindowSpec {
    /// Checks the sizes.
    pub fn new(size: u64, slide: u64) -> Result<Self, String> {
        if size == 0 || slide == 0 {
            return Err("size and slide must be at least 1ms".into());
        }
        if slide > size || !size.is_multiple_of(slide) {
            return Err(format!(
                "size ({size} ms) must be a multiple of slide ({slide} ms)"
            ));
        }
        Ok(WindowSpec { size, slide })
    }

    /// Starts of every window containing `t`, earliest first (windows starting before the
    /// epoch do not exist).
    pub fn starts(&self, t: u64) -> impl Iterator<Item = u64> {
        let last = t - t % self.slide;
        let count = (self.size / self.slide).min(last / self.slide + 1);
        let slide = self.slide;
        (0..count).rev().map(move |k| last - k * slide)
    }

    /// End of the last window containing `t`.
    pub fn last_end(&self, t: u64) -> u64 {
        t - t % self.slide + self.size
    }
}

/// A partition's event-time state: the low watermark below which its records are late.
///
/// `watermark` only grows. A record with event time `e` is late iff `e < watermark`; a record
/// that is not late raises the watermark to `e - allowed_lateness`. So the watermark before a
/// record is always "the largest event time seen earlier in the partition, minus the allowed
/// lateness" (or a floor set by the idle timeout, or restored from progress), and replaying the
/// partition from a stored (offset, watermark) pair decides lateness identically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionClock {
    /// No record below this is emitted.
    pub watermark: u64,
    allowed_lateness: u64,
}

impl PartitionClock {
    /// A clock starting at `watermark`.
    pub fn new(watermark: u64, allowed_lateness: u64) -> Self {
        PartitionClock {
            watermark,
            allowed_lateness,
        }
    }

    /// Decides whether a record is late, and advances the watermark if it is not.
    pub fn observe(&mut self, event_time: u64) -> bool {
        if event_time < self.watermark {
            return true;
        }
        self.watermark = self
            .watermark
            .max(event_time.saturating_sub(self.allowed_lateness));
        false
    }

    /// Raises the watermark (idle timeout).
    pub fn advance_to(&mut self, watermark: u64) {
        self.watermark = self.watermark.max(watermark);
    }
}

/// Microseconds since the process's clock started (the first call): monotonic, for latency.
pub fn process_us() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows() {
        let w = WindowSpec::new(60_000, 60_000).unwrap();
        assert_eq!(w.starts(0).collect::<Vec<_>>(), [0]);
        assert_eq!(w.starts(59_999).collect::<Vec<_>>(), [0]);
        assert_eq!(w.starts(60_000).collect::<Vec<_>>(), [60_000]);
        assert_eq!(w.last_end(59_999), 60_000);
    }

    #[test]
    fn hopping_windows() {
        let w = WindowSpec::new(30, 10).unwrap();
        assert_eq!(w.starts(25).collect::<Vec<_>>(), [0, 10, 20]);
        assert_eq!(w.starts(5).collect::<Vec<_>>(), [0]);
        assert_eq!(w.starts(15).collect::<Vec<_>>(), [0, 10]);
        assert_eq!(w.last_end(25), 50);
        assert!(WindowSpec::new(30, 20).is_err());
        // Every window containing t, by brute force.
        for t in 0..200 {
            let expected: Vec<u64> = (0..=t)
                .filter(|s| s % 10 == 0 && *s <= t && t < s + 30)
                .collect();
            assert_eq!(w.starts(t).collect::<Vec<_>>(), expected, "t = {t}");
        }
    }

    #[test]
    fn lateness_is_relative_to_the_partition_history() {
        let mut c = PartitionClock::new(0, 5);
        assert!(!c.observe(100));
        assert_eq!(c.watermark, 95);
        assert!(!c.observe(95));
        assert!(c.observe(94));
        assert!(!c.observe(97));
        assert_eq!(c.watermark, 95);
    }
}
