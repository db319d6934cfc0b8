//! The HTTP layer's metrics: each request's duration and bytes by method, route template and
//! status, requests in flight, and failed sign-ins by reason. Labels come from bounded sets
//! only (route templates, never repository names).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

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

/// The in-flight gauge's handle, made at first use (after the recorder is installed).
static IN_FLIGHT_GAUGE: LazyLock<metrics::Gauge> = LazyLock::new(|| gauge!(IN_FLIGHT));

impl InFlight {
    pub(crate) fn start() -> Self {
        let on = on();
        if on {
            IN_FLIGHT_GAUGE.increment(1.0);
        }
        Self(on)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0 {
            IN_FLIGHT_GAUGE.decrement(1.0);
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
        let series = series(method_label(self.method), self.route, self.status.as_u16());
        series.duration.record(self.took.as_secs_f64());
        if self.received > 0 {
            series.received.increment(self.received);
        }
        if self.sent > 0 {
            series.sent.increment(self.sent);
        }
    }
}

/// The handles of one method, route and status: made once, then shared, so a request costs a
/// map lookup and atomic adds rather than building and hashing its labels in the recorder.
struct Series {
    duration: Histogram,
    received: Counter,
    sent: Counter,
}

type SeriesKey = (&'static str, &'static str, u16);

/// Bounded: methods, route templates and statuses are fixed sets.
static SERIES: LazyLock<RwLock<HashMap<SeriesKey, Arc<Series>>>> = LazyLock::new(RwLock::default);

fn series(method: &'static str, route: &'static str, status: u16) -> Arc<Series> {
    let key = (method, route, status);
    let known = SERIES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    if let Some(series) = known {
        return series;
    }
    let mut all = SERIES.write().unwrap_or_else(PoisonError::into_inner);
    let made = all.entry(key).or_insert_with(|| {
        let status = status.to_string();
        Arc::new(Series {
            duration: histogram!(REQUEST_DURATION, "method" => method, "route" => route, "status" => status),
            received: counter!(REQUEST_BYTES, "method" => method, "route" => route),
            sent: counter!(RESPONSE_BYTES, "method" => method, "route" => route),
        })
    });
    Arc::clone(made)
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
