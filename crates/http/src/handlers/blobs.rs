//! `GET`, `HEAD` and `DELETE` of blobs, with byte ranges.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use marina_oci::{Digest, RepoName, media_type};
use marina_registry::{ByteRange, Registry};
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
    let range = headers
        .get(header::RANGE)
        .map(parse_range)
        .transpose()?
        .flatten();
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

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` (one range; multiple ranges are refused). A range in
/// any other unit is ignored, as RFC 9110 requires: `None`, and the whole blob is sent.
fn parse_range(raw: &axum::http::HeaderValue) -> Result<Option<ByteRange>, ApiError> {
    let text = raw.to_str().unwrap_or("");
    let invalid = || ApiError::range_header_invalid("Range", text);
    let Some((unit, spec)) = text.trim().split_once('=') else {
        return Ok(None);
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(invalid)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| invalid());
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => Ok(Some(ByteRange::FromTo(num(a)?, num(b)?))),
        (false, true) => Ok(Some(ByteRange::From(num(a)?))),
        (true, false) => Ok(Some(ByteRange::Last(num(b)?))),
        (true, true) => Err(invalid()),
    }
}
