//! The HTTP face of marina: the `/v2/` API of the OCI Distribution spec, request logging, and
//! panic containment. It calls the registry and never touches storage keys.

mod connection;
mod drain;
mod endpoint;
mod error;
mod handlers;
mod limits;
mod observe;
mod query;
pub mod ranges;
mod sendfile;

use axum::Router;
use marina_registry::Registry;

pub use endpoint::{Endpoint, UploadStart};
pub use error::ApiError;
pub use limits::Limits;

/// Serves the API on `listener` under `limits` until `shutdown` completes, then lets requests in
/// flight finish.
///
/// # Errors
/// When the server fails (accept errors are logged and retried, not returned).
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(registry, limits)
        .into_make_service_with_connect_info::<connection::ConnectionInfo>();
    axum::serve(connection::Listener::new(listener, limits), app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The whole API as a router.
fn router(registry: Registry, limits: Limits) -> Router {
    Router::new()
        .fallback(handlers::handle)
        .with_state(handlers::AppState { registry, limits })
        .layer(axum::middleware::from_fn(observe::observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            observe::panic_response,
        ))
}
