//! `/healthz` (the process serves) and `/readyz` (the store answers a probe write and read in
//! time; a listing, while read-only), on the API port and the metrics port alike, without auth. A probe's outcome is reused
//! for a second and probers arriving meanwhile wait for the one under way, so any number of
//! them cost at most one store round trip a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::response::Response;
use marina_registry::Registry;

/// How long the store may take to answer a probe before the replica is not ready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe's outcome stands.
const REUSE_FOR: Duration = Duration::from_secs(1);

/// The health endpoints of one registry.
#[derive(Debug)]
pub struct Health {
    registry: Registry,
    /// While read-only, the probe only reads: a read replica may have no write access.
    read_only: Arc<AtomicBool>,
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// The health endpoints of `registry`, read-only while `read_only` says so.
    #[must_use]
    pub fn new(registry: Registry, read_only: Arc<AtomicBool>) -> Self {
        Self {
            registry,
            read_only,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The answer to a `GET` or `HEAD` of `/healthz` or `/readyz`; `None` for anything else.
    pub async fn answer(&self, method: &Method, path: &str) -> Option<Response> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        match path {
            "/healthz" => Some(status(StatusCode::OK, "serving", None)),
            "/readyz" => Some(match self.ready().await {
                Ok(()) => status(StatusCode::OK, "ready", None),
                Err(reason) => status(StatusCode::SERVICE_UNAVAILABLE, "unready", Some(&reason)),
            }),
            _ => None,
        }
    }

    /// Whether the store passed a probe within the last second, probing again if not.
    async fn ready(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((when, outcome)) = last.as_ref()
            && when.elapsed() < REUSE_FOR
        {
            return outcome.clone();
        }
        let probe = async {
            if self.read_only.load(Ordering::Relaxed) {
                self.registry.probe_read().await
            } else {
                self.registry.probe().await
            }
        };
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "the store did not answer a probe within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        };
        if let Err(reason) = &outcome {
            tracing::warn!(reason = %reason, "not ready: the store failed its probe");
        }
        crate::metrics::ready(outcome.is_ok());
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

fn status(code: StatusCode, state: &str, reason: Option<&str>) -> Response {
    let mut body = serde_json::json!({ "status": state });
    if let Some(reason) = reason {
        body["reason"] = reason.into();
    }
    crate::handlers::json(code, &body)
}
