//! The operations listener, kept off the public port: `/metrics` (whatever the exporter
//! renders) and the same `/healthz` and `/readyz` as the API port.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use marina_registry::Registry;

use crate::health::Health;

/// Renders the metrics in the Prometheus text format.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    health: Arc<Health>,
    render: Render,
}

/// How long a scrape waits for the upload sessions to be counted (else the last count stands).
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `/metrics`, `/healthz` and `/readyz` (with `health`, the API port's own) on
/// `listener` until `shutdown` completes.
///
/// # Errors
/// When the server fails.
pub async fn serve_ops(
    listener: tokio::net::TcpListener,
    registry: Registry,
    health: Arc<Health>,
    render: Render,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = OpsState {
        registry,
        health,
        render,
    };
    let app = Router::new().fallback(answer).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn answer(State(state): State<OpsState>, request: Request) -> Response {
    let (method, path) = (request.method(), request.uri().path());
    if let Some(answer) = state.health.answer(method, path).await {
        return answer;
    }
    match (method, path) {
        (&Method::GET, "/metrics") => {
            // Counted per scrape: the cadence Prometheus chooses, and nothing when unscraped.
            let counted = state.registry.record_upload_sessions();
            let _ = tokio::time::timeout(COUNT_TIMEOUT, counted).await;
            let render = Arc::clone(&state.render);
            let text = tokio::task::spawn_blocking(move || render())
                .await
                .unwrap_or_default();
            Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(Body::from(text))
                .expect("a static header is valid")
        }
        _ => (
            StatusCode::NOT_FOUND,
            "this port serves /metrics, /healthz and /readyz\n",
        )
            .into_response(),
    }
}
