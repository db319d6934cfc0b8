//! Blob uploads: start (session, single request, or mount), chunks, status, finish, cancel.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::TryStreamExt;
use marina_oci::{Digest, RepoName};
use marina_registry::{Registry, UploadId, UploadStatus};
use marina_store::InputStream;

use super::{empty, value};
use crate::endpoint::UploadStart;
use crate::error::ApiError;

/// The chunk size clients are asked to send at least (the S3 multipart minimum); smaller
/// chunks are accepted too.
pub(crate) const CHUNK_MIN_LENGTH: u64 = 5 * 1024 * 1024;

pub(super) async fn start(
    registry: &Registry,
    door: super::Door<'_>,
    name: &RepoName,
    start: UploadStart,
    body: Body,
) -> Result<Response, ApiError> {
    let algorithm = match start {
        UploadStart::Monolithic(digest) => {
            registry.put_blob(name, &digest, input(body)).await?;
            return Ok(created_blob(name, &digest));
        }
        UploadStart::Mount {
            digest,
            from,
            algorithm,
        } => {
            // With auth on, a mount needs pull on its source, and one without a source would
            // look where the caller may not: both fall back to a session, revealing nothing.
            let source = from.filter(|f| door.may_pull(f.as_str()));
            let may_try = !door.guarded() || source.is_some();
            if may_try && registry.mount_blob(name, &digest, source.as_ref()).await? {
                return Ok(created_blob(name, &digest));
            }
            algorithm
        }
        UploadStart::Session(algorithm) => algorithm,
    };
    let status = registry.start_upload(name, algorithm).await?;
    Ok(session_response(StatusCode::ACCEPTED, name, &status))
}

pub(super) async fn status(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response, ApiError> {
    let status = registry.upload_status(name, id).await?;
    Ok(session_response(StatusCode::NO_CONTENT, name, &status))
}

pub(super) async fn patch(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let start = chunk_start(headers)?;
    let status = registry.append_upload(name, id, start, input(body)).await?;
    Ok(session_response(StatusCode::ACCEPTED, name, &status))
}

pub(super) async fn finish(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
    digest: &Digest,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let start = chunk_start(headers)?;
    let body = has_body(headers).then(|| input(body));
    registry
        .finish_upload(name, id, digest, start, body)
        .await?;
    Ok(created_blob(name, digest))
}

pub(super) async fn cancel(
    registry: &Registry,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response, ApiError> {
    registry.cancel_upload(name, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// The request body as a stream for the store.
fn input(body: Body) -> InputStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

/// Whether the request carries body bytes: a non-zero length, or chunked encoding.
fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// The first byte of a chunk from its `Content-Range`, checked against `Content-Length`.
fn chunk_start(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(raw) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    crate::ranges::chunk_start(raw.to_str().unwrap_or(""), length).map(Some)
}

/// The `Range` value for a session holding `offset` bytes: `0-<last byte>`, and `0-0` when
/// empty (what clients and CNCF Distribution expect).
pub(crate) fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn session_response(status: StatusCode, name: &RepoName, upload: &UploadStatus) -> Response {
    let mut response = empty(status);
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        value(format!("/v2/{name}/blobs/uploads/{}", upload.id)),
    );
    h.insert(header::RANGE, value(range_header(upload.offset)));
    h.insert("Docker-Upload-UUID", value(&upload.id));
    h.insert("OCI-Chunk-Min-Length", value(CHUNK_MIN_LENGTH.to_string()));
    response
}

fn created_blob(name: &RepoName, digest: &Digest) -> Response {
    let mut response = empty(StatusCode::CREATED);
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        value(format!("/v2/{name}/blobs/{digest}")),
    );
    h.insert("Docker-Content-Digest", value(digest.to_string()));
    response
}
