//! Manifests: `GET`/`HEAD` serve the stored bytes and media type; `PUT` stores, tags and links
//! referrers; `DELETE` removes a tag or a manifest.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use marina_oci::{Reference, RepoName, Tag};
use marina_registry::{Error as RegistryError, Registry};

use super::value;
use crate::error::ApiError;

pub(super) async fn get(
    registry: &Registry,
    name: &RepoName,
    reference: &Reference,
    head: bool,
) -> Result<Response, ApiError> {
    let manifest = registry.get_manifest(name, reference).await?;
    let length = manifest.body.len() as u64;
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(manifest.body))
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, value(length.to_string()));
    h.insert(header::CONTENT_TYPE, value(&manifest.media_type));
    h.insert("Docker-Content-Digest", value(manifest.digest.to_string()));
    h.insert(header::ETAG, value(format!("\"{}\"", manifest.digest)));
    Ok(response)
}

pub(super) async fn put(
    registry: &Registry,
    name: &RepoName,
    reference: &Reference,
    tags: &[Tag],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = registry.config().max_manifest_bytes;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let bytes = read_limited(headers, body, limit).await?;
    let stored = registry
        .put_manifest(name, reference, tags, content_type, bytes)
        .await?;
    let mut response = super::empty(StatusCode::CREATED);
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        value(format!("/v2/{name}/manifests/{}", stored.digest)),
    );
    h.insert("Docker-Content-Digest", value(stored.digest.to_string()));
    if let Some(subject) = &stored.subject {
        h.insert("OCI-Subject", value(subject.to_string()));
    }
    for tag in &stored.tags {
        h.append("OCI-Tag", value(tag.as_str()));
    }
    Ok(response)
}

pub(super) async fn delete(
    registry: &Registry,
    name: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    registry.delete_manifest(name, reference).await?;
    Ok(super::empty(StatusCode::ACCEPTED))
}

/// Reads a body of at most `limit` bytes; more is refused with 413 before it is buffered.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(RegistryError::ManifestTooLarge { limit }.into());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(RegistryError::ManifestTooLarge { limit }.into())
        }
        Err(e) => Err(ApiError::body_unreadable(e)),
    }
}
