//! Parsers for setting values: booleans, sizes, durations.

use std::time::Duration;

/// `true`/`false` and their usual spellings.
pub(crate) fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `4194304`, `512KiB`, `4MiB`, `1GiB`, `4MB` (decimal), case-insensitive.
pub(crate) fn size(v: &str) -> Option<usize> {
    let (number, unit) = split_number(v)?;
    let factor: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    usize::try_from(number).ok()?.checked_mul(factor)
}

/// `90`, `90s`, `30m`, `24h`, `7d`; at least one second.
pub(crate) fn duration(v: &str) -> Option<Duration> {
    let (number, unit) = split_number(v)?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86400)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

fn split_number(v: &str) -> Option<(u64, &str)> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_booleans_parse() {
        assert_eq!(size("4MiB"), Some(4 << 20));
        assert_eq!(size("4194304"), Some(4 << 20));
        assert_eq!(size("4 mb"), Some(4_000_000));
        assert_eq!(size("4XB"), None);
        assert_eq!(size("MiB"), None);
        assert_eq!(duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(duration("0s"), None);
        assert_eq!(duration("1w"), None);
        assert_eq!(boolean("TRUE"), Some(true));
        assert_eq!(boolean("maybe"), None);
    }
}
