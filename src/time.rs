//! Event time: window arithmetic and per-partition watermarks. Pure; no I/O.
//!
//! Timely timestamps in Weir are event times in milliseconds since the Unix epoch. Windows are
//! half-open intervals `[start, end)`; a window is final once the frontier reaches `end`.
//!
//! Lateness is decided per partition from that partition's own history (see
//! [`PartitionClock`]), so it does not depend on how partitions are spread over workers,
//! processes or restarts.

use serde::{Deserialize, Serialize};

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

/// Formats epoch milliseconds as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: u64) -> String {
    // chrono's dedicated RFC 3339 writer: `format()` would parse its format string each call.
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Formats epoch milliseconds as a UTC day, `YYYY-MM-DD`.
pub fn day(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Parses RFC 3339 text to epoch milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    parse_utc_fast(text.as_bytes()).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis())
    })
}

/// The form producers write (`2026-11-21T10:00:01.250Z`: UTC, `T`, `Z`, 0 to 9 fraction digits)
/// without chrono's general parser, which costs a tenth of a record's parse; anything else
/// (offsets, lower case, leap seconds) is `None` and goes to chrono. Same result as chrono.
fn parse_utc_fast(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let two = |i: usize| {
        let (tens, ones) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
        (tens < 10 && ones < 10).then_some(u32::from(tens) * 10 + u32::from(ones))
    };
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let millis = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            let mut scaled = 0u32;
            for (i, c) in fraction.iter().take(3).enumerate() {
                let digit = c.wrapping_sub(b'0');
                if digit >= 10 {
                    return None;
                }
                scaled += u32::from(digit) * [100, 10, 1][i];
            }
            if !fraction[fraction.len().min(3)..]
                .iter()
                .all(u8::is_ascii_digit)
            {
                return None;
            }
            // Truncated to milliseconds, as chrono's timestamp_millis does.
            i64::from(scaled)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let days = i64::from(chrono::Datelike::num_days_from_ce(&date)) - 719_163;
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(seconds * 1000 + millis)
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
    fn formats_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339(1_795_255_201_250), "2026-11-21T10:00:01.250Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn fast_rfc3339_agrees_with_chrono() {
        let chrono_ms = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.timestamp_millis())
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let ms = rng.i64(-62_000_000_000_000..250_000_000_000_000);
            let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
                continue;
            };
            for text in [
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
                t.format("%Y-%m-%dT%H:%M:%S%.6f+02:00").to_string(),
            ] {
                assert_eq!(parse_rfc3339(&text), chrono_ms(&text), "{text}");
            }
        }
        for text in [
            "2026-11-21T10:00:01.250Z",
            "2026-11-21T10:00:01.2Z",
            "2026-02-29T10:00:01Z",
            "2024-02-29T10:00:01Z",
            "2026-13-01T10:00:01Z",
            "2026-11-21T24:00:01Z",
            "2026-11-21T10:00:60Z",
            "2026-11-21t10:00:01z",
            "2026-11-21T10:00:01.Z",
            "2026-11-21T10:00:01.1234567890Z",
            "2026-11-21T10:00:01,250Z",
            "2026-11-21 10:00:01Z",
            "+2026-11-21T10:00:01Z",
            "2026-11-2aT10:00:01Z",
            "2100-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "0000-02-29T00:00:00Z",
            "0000-03-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "2026-04-31T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            assert_eq!(parse_rfc3339(text), chrono_ms(text), "{text}");
        }
    }

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
