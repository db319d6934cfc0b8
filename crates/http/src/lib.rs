//! The HTTP face of marina: the `/v2/` API of the OCI Distribution spec, request logging, and
//! panic containment. It calls the registry and never touches storage keys.

mod admin;
pub mod auth;
mod connection;
mod drain;
mod endpoint;
mod error;
mod events;
mod handlers;
pub mod health;
mod limits;
pub mod metrics;
mod mirror;
mod observe;
mod ops;
mod query;
pub mod ranges;
mod sendfile;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use marina_registry::Registry;

pub use auth::{Auth, AuthSettings, Policy};
pub use endpoint::{Endpoint, UploadStart};
pub use error::ApiError;
pub use limits::Limits;
pub use ops::{Render, serve_ops};

/// How the server treats its clients.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The connection limits.
    pub limits: Limits,
    /// Authentication and authorization; `None` serves everyone everything.
    pub auth: Option<std::sync::Arc<Auth>>,
    /// HTTPS with these certificates; `None` serves plain HTTP.
    pub tls: Option<std::sync::Arc<tls::Certificates>>,
    /// While true, every write (push, mount, manifest PUT, DELETE) gets 405; flip it at will.
    pub read_only: Arc<AtomicBool>,
    /// Where events go (webhooks); `None` sends none.
    pub notifier: Option<Arc<marina_notify::Notifier>>,
    /// The health endpoints, shared with the operations listener so both answer from one
    /// probe; `None` makes them for this server alone.
    pub health: Option<Arc<health::Health>>,
    /// Where admin jobs (`/admin/gc` and the like) run: a runtime at low priority, so that
    /// they never compete with serving as equals; `None` runs them beside the requests.
    pub background: Option<tokio::runtime::Handle>,
}

/// Serves the API on `listener` with `options` until `shutdown` completes, then lets requests
/// in flight finish.
///
/// # Errors
/// When the server fails (accept errors are logged and retried, not returned).
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = options.limits;
    let tls = options.tls.as_ref().map(tls::Certificates::server_config);
    let app = router(registry, options)
        .into_make_service_with_connect_info::<connection::ConnectionInfo>();
    axum::serve(connection::Listener::new(listener, limits, tls), app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The whole API as a router.
fn router(registry: Registry, options: Options) -> Router {
    let Options {
        limits,
        auth,
        read_only,
        notifier,
        health,
        background,
        ..
    } = options;
    let health = health.unwrap_or_else(|| {
        Arc::new(health::Health::new(
            registry.clone(),
            Arc::clone(&read_only),
        ))
    });
    Router::new()
        .fallback(handlers::handle)
        .with_state(handlers::AppState {
            registry,
            limits,
            auth,
            health,
            read_only,
            notifier,
            background,
        })
        .layer(axum::middleware::from_fn(observe::observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            observe::panic_response,
        ))
}
