//! Timestamps as text: RFC 3339 and UTC days. Pure.

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
}
