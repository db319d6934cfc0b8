//! The HTTP layer's metrics: each request's duration and bytes by method, route template and
//! status, requests in flight, and failed sign-ins by reason. Labels come from bounded sets
//! only (route templates, never repository names).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

/// Request durations, by method, route template and status.
pub const REQUEST_DURATION: &str = "marina_http_request_duration_seconds";
/// Request body bytes received, by method and route template.
pub const REQUEST_BYTES: &str = "marina_http_request_bytes_total";
/// Response body bytes sent, by method and route template.
pub const RESPONSE_BYTES: &str = "marina_http_response_bytes_total";
/// Requests being handled now.
pub const IN_FLIGHT: &str = "marina_http_requests_in_flight";
/// Refused sign-ins and tokens, by reason.
pub const AUTH_FAILURES: &str = "marina_auth_failures_total";
/// 1 while the last readiness probe passed, else 0.
pub const READY: &str = "marina_ready";

/// Whether a recorder was installed: without one, requests skip the bookkeeping.
static ON: AtomicBool = AtomicBool::new(false);

/// Whether metrics are recorded at all.
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Describes the metrics above to the recorder (once, at start), and turns their recording on.
pub fn describe() {
    ON.store(true, Ordering::Relaxed);
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer a request, by method, route template and status."
    );
    describe_counter!(
        REQUEST_BYTES,
        Unit::Bytes,
        "Request body bytes received, by method and route template."
    );
    describe_counter!(
        RESPONSE_BYTES,
        Unit::Bytes,
        "Response body bytes sent (as declared by Content-Length), by method and route template."
    );
    describe_gauge!(IN_FLIGHT, "Requests being handled now.");
    describe_counter!(
        AUTH_FAILURES,
        "Refused credentials: reason is password, token, throttled or denied."
    );
    describe_gauge!(
        READY,
        "1 while the last readiness probe of the store passed, else 0."
    );
}

/// Why a caller was refused, as the `reason` label says it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AuthFailure {
    /// A wrong user name or password.
    Password,
    /// A token that did not verify.
    Token,
    /// A sign-in refused because of earlier failures.
    Throttled,
    /// Signed in, but the rules refuse the action.
    Denied,
}

pub(crate) fn auth_failed(why: AuthFailure) {
    let reason = match why {
        AuthFailure::Password => "password",
        AuthFailure::Token => "token",
        AuthFailure::Throttled => "throttled",
        AuthFailure::Denied => "denied",
    };
    counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

pub(crate) fn ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// Counts a request as in flight until dropped (when metrics are on).
pub(crate) struct InFlight(bool);

impl InFlight {
    pub(crate) fn start() -> Self {
        let on = on();
        if on {
            gauge!(IN_FLIGHT).increment(1.0);
        }
        Self(on)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0 {
            gauge!(IN_FLIGHT).decrement(1.0);
        }
    }
}

/// What one finished request adds.
pub(crate) struct Finished<'a> {
    pub(crate) method: &'a Method,
    pub(crate) route: &'static str,
    pub(crate) status: StatusCode,
    pub(crate) took: Duration,
    pub(crate) received: u64,
    pub(crate) sent: u64,
}

impl Finished<'_> {
    pub(crate) fn record(self) {
        if !on() {
            return;
        }
        let method = method_label(self.method);
        let status = self.status.as_u16().to_string();
        metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => self.route, "status" => status)
            .record(self.took.as_secs_f64());
        if self.received > 0 {
            counter!(REQUEST_BYTES, "method" => method, "route" => self.route)
                .increment(self.received);
        }
        if self.sent > 0 {
            counter!(RESPONSE_BYTES, "method" => method, "route" => self.route)
                .increment(self.sent);
        }
    }
}

/// The method as a label from a fixed set: anything unusual is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
