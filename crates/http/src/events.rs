//! The events a request causes, for the notifications: noted from the endpoint before it is
//! handled, completed from the answer (digest, media type, size) once it succeeded, and
//! spooled before the answer leaves, so an acknowledged push is never missing its event.

use std::sync::LazyLock;

use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use marina_auth::Identity;
use marina_notify::{Action, Actor, Event, Notifier, RequestInfo, Source, Target};
use marina_oci::Reference;

use crate::endpoint::Endpoint;

/// The machine's host name, for the events' `source.addr`.
static HOST_NAME: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
});

/// The request id the request log names, kept in the request for the events.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub(crate) String);

/// What a request will be an event about, if it succeeds.
#[derive(Debug)]
pub(crate) struct Pending {
    action: Action,
    repository: String,
    /// `manifests` or `blobs`, for the target's URL.
    kind: &'static str,
    /// The tags the event names (one event each), or none.
    tags: Vec<String>,
    /// The digest the request named, if it named one.
    digest: Option<String>,
}

impl Pending {
    /// The event `endpoint` would cause, if an endpoint of `notifier` takes its action.
    pub(crate) fn of(endpoint: &Endpoint, notifier: &Notifier) -> Option<Self> {
        let (action, name, kind, reference) = match endpoint {
            Endpoint::PutManifest {
                name, reference, ..
            } => (Action::Push, name, "manifests", Some(reference)),
            Endpoint::DeleteManifest { name, reference } => {
                (Action::Delete, name, "manifests", Some(reference))
            }
            Endpoint::GetManifest {
                name,
                reference,
                head: false,
            } => (Action::Pull, name, "manifests", Some(reference)),
            Endpoint::DeleteBlob { name, .. } => (Action::Delete, name, "blobs", None),
            Endpoint::GetBlob {
                name, head: false, ..
            } => (Action::Pull, name, "blobs", None),
            _ => return None,
        };
        if !notifier.wants(action) {
            return None;
        }
        let mut tags = Vec::new();
        let mut digest = None;
        match reference {
            Some(Reference::Tag(tag)) => tags.push(tag.to_string()),
            Some(Reference::Digest(d)) => digest = Some(d.to_string()),
            None => {}
        }
        if let Endpoint::PutManifest { tags: extra, .. } = endpoint {
            tags.extend(extra.iter().map(ToString::to_string));
        }
        if let Endpoint::DeleteBlob { digest: d, .. } | Endpoint::GetBlob { digest: d, .. } =
            endpoint
        {
            digest = Some(d.to_string());
        }
        Some(Self {
            action,
            repository: name.to_string(),
            kind,
            tags,
            digest,
        })
    }

    /// Spools the events of a request that succeeded: `answer` is its response's headers.
    pub(crate) async fn emit(
        self,
        notifier: &Notifier,
        request: &Parts,
        answer: &HeaderMap,
        identity: &Identity,
        instance: &str,
    ) {
        // A push describes what was sent; a pull what was served.
        let described = if self.action == Action::Push {
            &request.headers
        } else {
            answer
        };
        let digest = header_text(answer, "Docker-Content-Digest")
            .or(self.digest.clone())
            .unwrap_or_default();
        let size = header_text(described, header::CONTENT_LENGTH.as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let media_type = if self.action == Action::Delete {
            String::new()
        } else {
            header_text(described, header::CONTENT_TYPE.as_str()).unwrap_or_default()
        };
        let host = header_text(&request.headers, header::HOST.as_str())
            .or_else(|| request.uri.authority().map(ToString::to_string))
            .unwrap_or_default();
        let url = if digest.is_empty() {
            String::new()
        } else {
            format!(
                "{}://{host}/v2/{}/{}/{digest}",
                scheme(request),
                self.repository,
                self.kind
            )
        };
        let target = Target {
            media_type,
            size,
            digest,
            length: size,
            repository: self.repository.clone(),
            url,
            tag: None,
        };
        let info = request_info(request, host);
        let actor = Actor {
            name: match identity {
                Identity::User(name) => Some(name.clone()),
                Identity::Anonymous => None,
            },
        };
        let source = Source {
            addr: HOST_NAME.clone(),
            instance_id: instance.to_owned(),
        };
        let tags: Vec<Option<String>> = if self.tags.is_empty() {
            vec![None]
        } else {
            self.tags.into_iter().map(Some).collect()
        };
        for tag in tags {
            let target = Target {
                tag,
                ..target.clone()
            };
            let event = Event::new(
                self.action,
                target,
                info.clone(),
                actor.clone(),
                source.clone(),
            );
            notifier.emit(event).await;
        }
    }
}

fn request_info(request: &Parts, host: String) -> RequestInfo {
    let addr = request
        .extensions
        .get::<axum::extract::ConnectInfo<crate::connection::ConnectionInfo>>()
        .map(|info| info.0.peer.to_string())
        .unwrap_or_default();
    RequestInfo {
        id: request
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        addr,
        host,
        method: request.method.to_string(),
        useragent: header_text(&request.headers, header::USER_AGENT.as_str()).unwrap_or_default(),
    }
}

fn scheme(request: &Parts) -> &'static str {
    let tls = request
        .extensions
        .get::<axum::extract::ConnectInfo<crate::connection::ConnectionInfo>>()
        .is_some_and(|info| info.0.tls);
    if tls { "https" } else { "http" }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
