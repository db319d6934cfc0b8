//! The registry's metrics: the upload sessions the store holds, counted by listing them at
//! each scrape (every replica counts the same sessions: take the maximum, not the sum).

use metrics::{describe_gauge, gauge};

use crate::Registry;

/// Upload sessions in the store, as last counted.
pub const UPLOAD_SESSIONS_OPEN: &str = "marina_upload_sessions_open";

/// Describes the metrics above to the recorder (once, at start).
pub fn describe() {
    describe_gauge!(
        UPLOAD_SESSIONS_OPEN,
        "Upload sessions the store holds, as last counted (every replica counts them all)."
    );
}

impl Registry {
    /// Counts the upload sessions and records the count; a failed count is logged and the
    /// last one stays.
    pub async fn record_upload_sessions(&self) {
        match self.count_upload_sessions().await {
            Ok(n) => gauge!(UPLOAD_SESSIONS_OPEN).set(n as f64),
            Err(e) => tracing::warn!(error = %e, "counting the upload sessions failed"),
        }
    }
}
