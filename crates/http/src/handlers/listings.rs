//! Listings: tags and catalog (paged, with `Link`), and referrers (an image index).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use marina_oci::{Digest, RepoName, media_type};
use marina_registry::Registry;

use super::value;
use crate::error::ApiError;

/// The most entries one page returns, and the page size when `n` is absent.
pub(crate) const MAX_PAGE: usize = 10_000;

pub(super) async fn tags(
    registry: &Registry,
    name: &RepoName,
    n: Option<usize>,
    last: Option<String>,
) -> Result<Response, ApiError> {
    let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let page = registry.list_tags(name, last.as_deref(), n).await?;
    let body = serde_json::json!({ "name": name.as_str(), "tags": &page.items });
    Ok(paged(
        body,
        page.next(),
        &format!("/v2/{name}/tags/list"),
        n,
    ))
}

/// A page of the catalog, holding only the repositories the caller may pull (so a page may
/// be shorter than `n` while more follow).
pub(super) async fn catalog(
    registry: &Registry,
    door: super::Door<'_>,
    n: Option<usize>,
    last: Option<String>,
) -> Result<Response, ApiError> {
    let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let page = registry.catalog(last.as_deref(), n).await?;
    let visible: Vec<&String> = page
        .items
        .iter()
        .filter(|name| door.may_pull(name))
        .collect();
    let body = serde_json::json!({ "repositories": visible });
    Ok(paged(body, page.next(), "/v2/_catalog", n))
}

/// The default number of referrers a page reads, and its most.
pub(crate) const REFERRERS_PAGE: usize = 1_000;

/// A referrers response's budget for descriptors, leaving room for the index around them: every
/// page stays under 4 MiB, the manifest limit clients expect of an index.
const REFERRERS_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// What a referrers request asks for.
pub(super) struct ReferrersPage {
    pub(super) artifact_type: Option<String>,
    pub(super) n: Option<usize>,
    pub(super) last: Option<String>,
}

pub(super) async fn referrers(
    registry: &Registry,
    name: &RepoName,
    subject: &Digest,
    query: ReferrersPage,
) -> Result<Response, ApiError> {
    let n = query.n.unwrap_or(REFERRERS_PAGE).clamp(1, REFERRERS_PAGE);
    let artifact_type = query.artifact_type.as_deref();
    let window = (query.last.as_deref(), n, REFERRERS_BYTES);
    let page = registry
        .referrers(name, subject, artifact_type, window)
        .await?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": page.descriptors,
    });
    let mut response = (
        StatusCode::OK,
        serde_json::to_vec(&index).expect("index serializes"),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, value(media_type::OCI_INDEX));
    if artifact_type.is_some() {
        h.insert("OCI-Filters-Applied", value("artifactType"));
    }
    if let Some(last) = &page.next {
        let filter = artifact_type.map_or_else(String::new, |t| {
            format!("&artifactType={}", crate::query::percent_encode(t))
        });
        let next = format!("/v2/{name}/referrers/{subject}?n={n}&last={last}{filter}");
        h.insert(header::LINK, value(format!("<{next}>; rel=\"next\"")));
    }
    Ok(response)
}

/// A JSON page, with `Link: <...>; rel="next"` from `cursor` while more entries remain.
fn paged(body: serde_json::Value, cursor: Option<&str>, path: &str, n: usize) -> Response {
    let mut response = super::json(StatusCode::OK, &body);
    if let Some(last) = cursor {
        let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
        response.headers_mut().insert(header::LINK, value(link));
    }
    response
}
