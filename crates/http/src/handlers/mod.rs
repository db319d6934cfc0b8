//! Request handling: parse the [`Endpoint`], call the registry, shape the response.

mod blobs;
mod listings;
mod manifests;
pub(crate) mod uploads;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use marina_registry::Registry;

use crate::Limits;
use crate::connection::ConnectionInfo;
use crate::drain::DrainOnDrop;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::limits::MinRate;
use crate::sendfile::SendQueue;

/// The route template a response answered, for the request log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteTemplate(pub(crate) &'static str);

/// What every request is handled with.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) registry: Registry,
    pub(crate) limits: Limits,
}

/// The one handler behind `/`: every path is parsed here, so names of any depth work.
pub(crate) async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let registry = &state.registry;
    let (parts, body) = request.into_parts();
    // A body may not trickle; every answer below may come before the body is read, and the
    // wrapper drains what is left (a body too slow fails the drain too, closing the connection).
    let body = MinRate::wrap(body, &state.limits);
    let (body, leftover) = DrainOnDrop::wrap(body, &parts.headers);
    let response = match Endpoint::parse(&parts.method, parts.uri.path(), parts.uri.query()) {
        Ok(endpoint) => {
            let template = endpoint.template();
            let sendfile = sendfile_queue(&parts);
            let mut response = dispatch(registry, endpoint, &parts.headers, body, sendfile)
                .await
                .unwrap_or_else(IntoResponse::into_response);
            response.extensions_mut().insert(RouteTemplate(template));
            response
        }
        Err(e) => {
            drop(body);
            e.into_response()
        }
    };
    leftover.drain_before_answer().await;
    response
}

/// The connection's sendfile queue, when the request came over HTTP/1 on a connection that
/// has one (HTTP/2 copies body bytes into its frames, so it cannot use stand-ins).
fn sendfile_queue(parts: &axum::http::request::Parts) -> Option<SendQueue> {
    let http1 = matches!(parts.version, Version::HTTP_10 | Version::HTTP_11);
    let info = parts.extensions.get::<ConnectInfo<ConnectionInfo>>();
    info.filter(|_| http1).map(|info| info.0.queue.clone())
}

async fn dispatch(
    registry: &Registry,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
    sendfile: Option<SendQueue>,
) -> Result<Response, ApiError> {
    use Endpoint as E;
    match endpoint {
        E::Base => Ok(json(StatusCode::OK, &serde_json::json!({}))),
        E::Catalog { n, last } => listings::catalog(registry, n, last).await,
        E::ListTags { name, n, last } => listings::tags(registry, &name, n, last).await,
        E::Referrers {
            name,
            subject,
            artifact_type,
            n,
            last,
        } => {
            let page = listings::ReferrersPage {
                artifact_type,
                n,
                last,
            };
            listings::referrers(registry, &name, &subject, page).await
        }
        E::GetManifest {
            name,
            reference,
            head,
        } => manifests::get(registry, &name, &reference, head).await,
        E::PutManifest {
            name,
            reference,
            tags,
        } => manifests::put(registry, &name, &reference, &tags, headers, body).await,
        E::DeleteManifest { name, reference } => {
            manifests::delete(registry, &name, &reference).await
        }
        E::GetBlob { name, digest, head } => {
            blobs::get(registry, &name, &digest, head, headers, sendfile).await
        }
        E::DeleteBlob { name, digest } => blobs::delete(registry, &name, &digest).await,
        E::StartUpload { name, start } => uploads::start(registry, &name, start, body).await,
        E::GetUpload { name, id } => uploads::status(registry, &name, &id).await,
        E::PatchUpload { name, id } => uploads::patch(registry, &name, &id, headers, body).await,
        E::FinishUpload { name, id, digest } => {
            uploads::finish(registry, &name, &id, &digest, headers, body).await
        }
        E::CancelUpload { name, id } => uploads::cancel(registry, &name, &id).await,
    }
}

/// A header value from text we built (digests, numbers, validated names).
pub(crate) fn value(s: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(s.as_ref()).expect("header values are built from validated parts")
}

/// A response with no body: `Content-Length: 0`, except on 204, which must carry none.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    if status != StatusCode::NO_CONTENT {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, value("0"));
    }
    response
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("JSON values serialize");
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, value("application/json"));
    response
}
