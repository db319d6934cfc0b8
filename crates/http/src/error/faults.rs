//! Storage faults as clients and operators see them: which ones mean a full disk, how long a
//! client should wait, and a log that says a burst of faults once, not once per request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What `Retry-After` tells a client after a storage fault that may pass.
pub(super) const RETRY_AFTER_SECS: u64 = 5;

/// Faults within this long of the first one logged count as one burst.
const BURST: Duration = Duration::from_secs(10);

/// Whether an I/O error means the disk (or a quota) is full.
pub(super) fn is_out_of_space(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// When the current burst began, and how many faults it has had since it was logged.
static BURST_STATE: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// Logs a storage fault: the first of a burst in full, the rest counted and summed up with the
/// first fault of the next burst.
pub(super) fn log(message: &str) {
    let mut state = BURST_STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = Instant::now();
    match state.as_mut() {
        Some((began, quiet)) if now.duration_since(*began) < BURST => *quiet += 1,
        previous => {
            let suppressed = previous.map_or(0, |(_, quiet)| *quiet);
            tracing::error!(error = %message, suppressed, "storage fault");
            *state = Some((now, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_from_other_faults() {
        assert!(is_out_of_space(&std::io::Error::from_raw_os_error(28)));
        assert!(is_out_of_space(&std::io::Error::from(
            std::io::ErrorKind::StorageFull
        )));
        assert!(!is_out_of_space(&std::io::Error::from_raw_os_error(5)));
    }

    #[test]
    fn a_burst_is_logged_once() {
        *BURST_STATE.lock().unwrap() = None;
        for _ in 0..5 {
            log("disk on fire");
        }
        let state = BURST_STATE.lock().unwrap();
        assert_eq!(state.map(|(_, quiet)| quiet), Some(4));
    }
}
