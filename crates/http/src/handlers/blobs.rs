//! `GET`, `HEAD` and `DELETE` of blobs, with byte ranges.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use marina_oci::{Digest, RepoName, media_type};
use marina_registry::Registry;
use marina_store::Content;

use super::value;
use crate::error::ApiError;
use crate::sendfile::SendQueue;

pub(super) async fn get(
    registry: &Registry,
    name: &RepoName,
    digest: &Digest,
    head: bool,
    headers: &HeaderMap,
    sendfile: Option<SendQueue>,
) -> Result<Response, ApiError> {
    let range = headers.get(header::RANGE);
    let range = range.map(|v| crate::ranges::byte_range(v.to_str().unwrap_or("")));
    let range = range.transpose()?.flatten();
    let blob = registry.read_blob(name, digest, range).await?;
    let length = blob.range.end - blob.range.start;
    let body = match (head, blob.content, sendfile) {
        (true, _, _) => Body::empty(),
        (false, Content::File(slice), Some(queue)) => queue.body(slice),
        (false, content, _) => Body::from_stream(content.into_stream()),
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, value(length.to_string()));
    h.insert(header::CONTENT_TYPE, value(media_type::OCTET_STREAM));
    h.insert("Docker-Content-Digest", value(digest.to_string()));
    h.insert(header::ACCEPT_RANGES, value("bytes"));
    h.insert(header::ETAG, value(format!("\"{digest}\"")));
    if range.is_some() {
        let (start, end) = (blob.range.start, blob.range.end.saturating_sub(1));
        h.insert(
            header::CONTENT_RANGE,
            value(format!("bytes {start}-{end}/{}", blob.size)),
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

pub(super) async fn delete(
    registry: &Registry,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    registry.delete_blob(name, digest).await?;
    Ok(super::empty(StatusCode::ACCEPTED))
}
