//! The notification metrics: events by endpoint and outcome (endpoint names come from the
//! configuration, so the label set is bounded).

use metrics::{counter, describe_counter};

/// Events delivered, failed (one count per failed try) or dropped, by endpoint.
pub const NOTIFICATIONS: &str = "marina_notifications_total";

/// Describes the metric above to the recorder (once, at start).
pub fn describe() {
    describe_counter!(
        NOTIFICATIONS,
        "Notification deliveries by endpoint and outcome: delivered, failed (a try that will be \
         retried), dropped (too old, or the spool was full)."
    );
}

/// How a delivery went.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Delivered,
    Failed,
    Dropped,
}

pub(crate) fn counted(endpoint: &str, outcome: Outcome) {
    let outcome = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Failed => "failed",
        Outcome::Dropped => "dropped",
    };
    counter!(NOTIFICATIONS, "endpoint" => endpoint.to_owned(), "outcome" => outcome).increment(1);
}
