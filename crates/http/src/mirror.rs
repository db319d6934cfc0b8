//! What the API does for pull-through caches: the `ns` query parameter (distribution-spec
//! main: containerd sends `?ns=docker.io` to a mirror named in `hosts.toml`) puts a request
//! under the proxy with that prefix, and writes under a proxy's prefix are refused.

use std::borrow::Cow;

use axum::http::StatusCode;
use marina_oci::ErrorCode;
use marina_registry::Registry;

use crate::endpoint::Endpoint;
use crate::error::ApiError;

/// The path to route: `path` itself, or, when `query` holds `ns=<a proxy's prefix>` and the
/// name is not under that prefix yet, the same path under it.
pub(crate) fn with_namespace<'a>(
    registry: &Registry,
    path: &'a str,
    query: Option<&str>,
) -> Cow<'a, str> {
    let namespace = query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("ns="))
            .and_then(|ns| registry.proxy_prefix(ns))
    });
    let (Some(prefix), Some(rest)) = (namespace, path.strip_prefix("/v2/")) else {
        return Cow::Borrowed(path);
    };
    let under = rest
        .strip_prefix(prefix)
        .is_some_and(|r| r.starts_with('/'));
    if rest.is_empty() || rest.starts_with("_catalog") || under {
        return Cow::Borrowed(path);
    }
    Cow::Owned(format!("/v2/{prefix}/{rest}"))
}

/// Refuses a write into a proxied repository: the mirror is read-only.
pub(crate) fn refuse_writes(registry: &Registry, endpoint: &Endpoint) -> Result<(), ApiError> {
    match endpoint.scope() {
        Some((name, _)) if endpoint.writes() && registry.is_proxied(name) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            format!("{name} mirrors an upstream registry through a proxy, and is read-only"),
        )),
        _ => Ok(()),
    }
}
