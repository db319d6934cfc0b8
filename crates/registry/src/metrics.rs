//! The registry's metrics: the upload sessions the store holds, counted by listing them at
//! each scrape (every replica counts the same sessions: take the maximum, not the sum), and
//! each garbage collection run's duration, scan and yield.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::Registry;
use crate::gc::Report;

/// Garbage collection runs, by outcome (`ok`, `failed`, `dry_run`).
pub const GC_RUNS: &str = "marina_gc_runs_total";
/// How long each run took.
pub const GC_DURATION: &str = "marina_gc_duration_seconds";
/// Keys listed by runs.
pub const GC_SCANNED: &str = "marina_gc_objects_scanned_total";
/// Objects runs deleted.
pub const GC_FREED_OBJECTS: &str = "marina_gc_objects_freed_total";
/// Bytes of content runs deleted.
pub const GC_FREED_BYTES: &str = "marina_gc_bytes_freed_total";
/// When the last run that did not fail finished, in Unix seconds.
pub const GC_LAST_SUCCESS: &str = "marina_gc_last_success_timestamp_seconds";

/// Reads under a proxy's prefix, by proxy and result (`hit`: answered from the cache).
pub const PROXY_REQUESTS: &str = "marina_proxy_requests_total";
/// Bytes received from upstreams, by proxy.
pub const PROXY_UPSTREAM_BYTES: &str = "marina_proxy_upstream_bytes_total";
/// Upstream requests that failed, by proxy.
pub const PROXY_UPSTREAM_ERRORS: &str = "marina_proxy_upstream_errors_total";

/// Upload sessions in the store, as last counted.
pub const UPLOAD_SESSIONS_OPEN: &str = "marina_upload_sessions_open";

/// Describes the metrics above to the recorder (once, at start).
pub fn describe() {
    describe_gauge!(
        UPLOAD_SESSIONS_OPEN,
        "Upload sessions the store holds, as last counted (every replica counts them all)."
    );
    describe_counter!(GC_RUNS, "Garbage collection runs, by outcome.");
    describe_counter!(
        PROXY_REQUESTS,
        "Reads under a proxy's prefix, by proxy and result (hit: from the cache; miss: fetched)."
    );
    describe_counter!(
        PROXY_UPSTREAM_BYTES,
        "Bytes received from upstreams, by proxy."
    );
    describe_counter!(
        PROXY_UPSTREAM_ERRORS,
        "Upstream requests that failed, by proxy."
    );
    describe_histogram!(GC_DURATION, "How long each garbage collection run took.");
    describe_counter!(GC_SCANNED, "Keys listed by garbage collection runs.");
    describe_counter!(GC_FREED_OBJECTS, "Objects garbage collection deleted.");
    describe_counter!(
        GC_FREED_BYTES,
        "Bytes of content garbage collection deleted."
    );
    describe_gauge!(
        GC_LAST_SUCCESS,
        "When the last garbage collection run that did not fail finished."
    );
}

/// Records one run (`None` when it failed).
pub(crate) fn record_gc_run(report: Option<&Report>, took: Duration) {
    let outcome = match report {
        None => "failed",
        Some(r) if r.dry_run => "dry_run",
        Some(_) => "ok",
    };
    counter!(GC_RUNS, "outcome" => outcome).increment(1);
    histogram!(GC_DURATION).record(took.as_secs_f64());
    if let Some(r) = report {
        counter!(GC_SCANNED).increment(r.objects_scanned);
        counter!(GC_FREED_OBJECTS).increment(r.objects_freed);
        counter!(GC_FREED_BYTES).increment(r.bytes_freed);
        gauge!(GC_LAST_SUCCESS).set(crate::stamp::now_ms() as f64 / 1000.0);
    }
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

/// Counts a read under a proxy, answered from the cache (`hit`) or not.
pub(crate) fn proxy_request(proxy: &str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    counter!(PROXY_REQUESTS, "proxy" => proxy.to_owned(), "result" => result).increment(1);
}

/// Counts bytes received from a proxy's upstream.
pub(crate) fn upstream_bytes(proxy: &str, n: usize) {
    counter!(PROXY_UPSTREAM_BYTES, "proxy" => proxy.to_owned()).increment(n as u64);
}

/// Counts a failed upstream request.
pub(crate) fn upstream_error(proxy: &str) {
    counter!(PROXY_UPSTREAM_ERRORS, "proxy" => proxy.to_owned()).increment(1);
}
