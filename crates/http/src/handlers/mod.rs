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

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::request::Parts;
use marina_auth::Identity;

use crate::Limits;
use crate::auth::{self, Auth, Caller};
use crate::connection::ConnectionInfo;
use crate::drain::DrainOnDrop;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::events;
use crate::health::Health;
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
    pub(crate) auth: Option<Arc<Auth>>,
    pub(crate) health: Arc<Health>,
    /// Whether writes are refused now.
    pub(crate) read_only: Arc<AtomicBool>,
    /// Where events go.
    pub(crate) notifier: Option<Arc<marina_notify::Notifier>>,
    /// Where admin jobs run, if not beside the requests.
    pub(crate) background: Option<tokio::runtime::Handle>,
}

/// Who is asking, and the auth that decides for them (none when auth is off).
#[derive(Clone, Copy)]
pub(crate) struct Door<'a> {
    auth: Option<&'a Auth>,
    caller: &'a Caller,
}

impl Door<'_> {
    /// Whether the caller may pull from `repository`: always, with auth off.
    pub(crate) fn may_pull(&self, repository: &str) -> bool {
        self.auth
            .is_none_or(|auth| auth.may_pull(self.caller, repository))
    }

    /// Whether auth is on.
    pub(crate) fn guarded(&self) -> bool {
        self.auth.is_some()
    }
}

/// The one handler behind `/`: every path is parsed here, so names of any depth work.
pub(crate) async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // A body may not trickle; every answer below may come before the body is read, and the
    // wrapper drains what is left (a body too slow fails the drain too, closing the connection).
    let body = MinRate::wrap(body, &state.limits);
    let (body, leftover) = DrainOnDrop::wrap(body, &parts.headers);
    let from = peer(&parts);
    if let Some(answer) = state.health.answer(&parts.method, parts.uri.path()).await {
        let route = if parts.uri.path() == "/healthz" {
            "/healthz"
        } else {
            "/readyz"
        };
        return labelled(answer, route, None);
    }
    let response = match (&state.auth, parts.uri.path()) {
        (Some(auth), "/auth/token") => {
            let answer = auth::token_endpoint(auth, &parts, body, from);
            labelled(answer.await, "/auth/token", None)
        }
        (_, path) if path.starts_with(crate::admin::PREFIX) => labelled(
            crate::admin::answer(&state, &parts, from).await,
            "/admin",
            None,
        ),
        _ => answer(&state, &parts, body, from).await,
    };
    leftover.drain_before_answer().await;
    response
}

/// Parses, authorizes and dispatches an API request.
async fn answer(state: &AppState, parts: &Parts, body: Body, from: IpAddr) -> Response {
    let path = crate::mirror::with_namespace(&state.registry, parts.uri.path(), parts.uri.query());
    let endpoint = match Endpoint::parse(&parts.method, &path, parts.uri.query()) {
        Ok(endpoint) => endpoint,
        Err(e) => return e.into_response(),
    };
    let template = endpoint.template();
    if let Err(refused) = crate::mirror::refuse_writes(&state.registry, &endpoint) {
        return labelled(refused.into_response(), template, None);
    }
    if state.read_only.load(Ordering::Relaxed) && endpoint.writes() {
        return labelled(
            ApiError::read_only(&parts.method).into_response(),
            template,
            None,
        );
    }
    let caller = match &state.auth {
        None => Caller::anyone(),
        Some(auth) => match admit(auth, parts, from, &endpoint).await {
            Ok(caller) => caller,
            Err(e) => return labelled(e.into_response(), template, None),
        },
    };
    let door = Door {
        auth: state.auth.as_deref(),
        caller: &caller,
    };
    let sendfile = sendfile_queue(parts);
    let notifier = state.notifier.as_deref();
    let pending = notifier.and_then(|n| events::Pending::of(&endpoint, n));
    let response = dispatch(
        &state.registry,
        door,
        endpoint,
        &parts.headers,
        body,
        sendfile,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    if let (Some(pending), Some(notifier)) = (pending, notifier)
        && response.status().is_success()
    {
        let (answer, instance) = (response.headers().clone(), state.registry.instance());
        let emitted = pending.emit(notifier, parts, &answer, &caller.identity, instance);
        emitted.await;
    }
    labelled(response, template, Some(caller.identity))
}

/// Who the caller is, if they may do what the endpoint does.
async fn admit(
    auth: &Auth,
    parts: &Parts,
    from: IpAddr,
    endpoint: &Endpoint,
) -> Result<Caller, ApiError> {
    let caller = auth::authenticate(auth, parts, from, endpoint).await?;
    auth::authorize(auth, &caller, parts, endpoint)?;
    Ok(caller)
}

/// Marks a response with its route template and identity, for the request log.
fn labelled(
    mut response: Response,
    template: &'static str,
    identity: Option<Identity>,
) -> Response {
    response.extensions_mut().insert(RouteTemplate(template));
    if let Some(identity) = identity {
        response.extensions_mut().insert(identity);
    }
    response
}

/// The client's address, for throttling failed logins.
fn peer(parts: &Parts) -> IpAddr {
    let info = parts.extensions.get::<ConnectInfo<ConnectionInfo>>();
    info.map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.peer.ip())
}

/// The connection's sendfile queue, when the request came over HTTP/1 on a plain connection
/// (HTTP/2 copies body bytes into its frames, and TLS encrypts them: neither can send files).
fn sendfile_queue(parts: &axum::http::request::Parts) -> Option<SendQueue> {
    let http1 = matches!(parts.version, Version::HTTP_10 | Version::HTTP_11);
    let info = parts.extensions.get::<ConnectInfo<ConnectionInfo>>();
    info.filter(|info| http1 && !info.0.tls)
        .map(|info| info.0.queue.clone())
}

async fn dispatch(
    registry: &Registry,
    door: Door<'_>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
    sendfile: Option<SendQueue>,
) -> Result<Response, ApiError> {
    use Endpoint as E;
    match endpoint {
        E::Base => Ok(json(StatusCode::OK, &serde_json::json!({}))),
        E::Catalog { n, last } => listings::catalog(registry, door, n, last).await,
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
        E::StartUpload { name, start } => uploads::start(registry, door, &name, start, body).await,
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
