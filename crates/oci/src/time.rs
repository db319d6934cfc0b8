//! Timestamps as RFC 3339 in UTC, the form tokens (`issued_at`) and events (`timestamp`) carry.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds as RFC 3339 (UTC), e.g. `2026-12-07T10:22:03Z`.
#[must_use]
pub fn rfc3339(unix: u64) -> String {
    let (year, month, day) = civil_date(unix / 86_400);
    let secs = unix % 86_400;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// A time as RFC 3339 (UTC) with milliseconds, e.g. `2026-12-07T10:22:03.042Z`.
#[must_use]
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = rfc3339(since.as_secs());
    let whole = seconds.trim_end_matches('Z');
    format!("{whole}.{:03}Z", since.subsec_millis())
}

/// The civil date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: u64) -> (i64, i64, i64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn known_instants_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_515_199), "2026-12-05T23:59:59Z");
        assert_eq!(rfc3339(1_796_637_431), "2026-12-07T09:57:11Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_637_431_042);
        assert_eq!(rfc3339_millis(t), "2026-12-07T09:57:11.042Z");
    }
}
