//! The registry's metrics: upload sessions begun and ended. Every replica counts the sessions
//! it begins (+1) and the ones it finishes, cancels or purges (-1), so the sum over replicas is
//! the number open, whichever replica begins or ends each one.

use metrics::{describe_gauge, gauge};

/// Upload sessions open: begun here minus ended here (sum it over replicas).
pub const UPLOAD_SESSIONS_OPEN: &str = "marina_upload_sessions_open";

/// Describes the metrics above to the recorder (once, at start).
pub fn describe() {
    describe_gauge!(
        UPLOAD_SESSIONS_OPEN,
        "Upload sessions begun on this replica minus those it finished, cancelled or purged; \
         the sum over replicas is the number open."
    );
}

pub(crate) fn sessions_begun(n: usize) {
    gauge!(UPLOAD_SESSIONS_OPEN).increment(n as f64);
}

pub(crate) fn sessions_ended(n: usize) {
    gauge!(UPLOAD_SESSIONS_OPEN).decrement(n as f64);
}
