//! The HTTP face of marina: the `/v2/` API of the OCI Distribution spec, request logging, and
//! panic containment. It calls the registry and never touches storage keys.

mod endpoint;
mod error;
mod handlers;
mod observe;
mod query;

use axum::Router;
use marina_registry::Registry;

pub use endpoint::{Endpoint, UploadStart};
pub use error::ApiError;

/// The whole API as a router, ready for `axum::serve`.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .fallback(handlers::handle)
        .with_state(registry)
        .layer(axum::middleware::from_fn(observe::observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            observe::panic_response,
        ))
}
