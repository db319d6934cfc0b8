//! Stamped values: what links and tags hold, a payload (a media type, a digest, nothing) and
//! the wall-clock time of the write that last vouched for it, which garbage collection reads
//! to spare what is younger than its grace period.
//!
//! The format is the payload, a newline, and the time in Unix milliseconds. A value written
//! before stamps existed has no newline: its time is 0, as old as can be.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// A decoded stamped value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamped {
    /// What the value says.
    pub(crate) payload: String,
    /// When it was last written, in Unix milliseconds.
    pub(crate) at_ms: u64,
}

impl Stamped {
    /// Reads a value (bytes that are not UTF-8 are replaced, and then match no digest).
    pub(crate) fn decode(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        match text.rsplit_once('\n') {
            Some((payload, at)) => Self {
                payload: payload.to_owned(),
                at_ms: at.trim().parse().unwrap_or(0),
            },
            None => Self {
                payload: text.into_owned(),
                at_ms: 0,
            },
        }
    }

    /// How long ago it was written, as seen from `now_ms` (zero when it lies in the future,
    /// written by a replica whose clock runs ahead).
    pub(crate) fn age(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.at_ms))
    }
}

/// The value for `payload`, stamped now.
pub(crate) fn encode(payload: &str) -> Bytes {
    Bytes::from(format!("{payload}\n{}", now_ms()))
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_before_stamps_are_as_old_as_can_be() {
        let old = Stamped::decode(b"application/vnd.oci.image.manifest.v1+json");
        assert_eq!(old.payload, "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(old.at_ms, 0);
        let empty = Stamped::decode(b"");
        assert_eq!((empty.payload.as_str(), empty.at_ms), ("", 0));
    }

    #[test]
    fn a_stamp_round_trips() {
        let raw = encode("sha256:abc");
        let read = Stamped::decode(&raw);
        assert_eq!(read.payload, "sha256:abc");
        assert!(read.age(now_ms()) < Duration::from_secs(5));
        let link = encode("");
        assert_eq!(Stamped::decode(&link).payload, "");
        assert_eq!(Stamped::decode(b"x\n1000").age(500), Duration::ZERO);
    }
}
