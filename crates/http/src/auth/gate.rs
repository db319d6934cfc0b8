//! The door: credentials to an identity, and an identity plus an endpoint to allowed,
//! challenged (401), refused (403) or throttled (429).

use std::net::IpAddr;

use axum::extract::ConnectInfo;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use marina_auth::{Action, Granted, Identity};

use super::{Auth, SignIn};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::metrics::{AuthFailure, auth_failed};

/// Who is asking, and what a token grants them (rules decide for Basic and anonymous callers).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) identity: Identity,
    /// The token's grants, when the caller came with a token.
    granted: Option<Vec<Granted>>,
}

impl Caller {
    /// A caller where auth is off: nobody, allowed everything.
    pub(crate) fn anyone() -> Self {
        Self {
            identity: Identity::Anonymous,
            granted: None,
        }
    }
}

/// Reads the credentials: Basic (checked against htpasswd, throttled), a Bearer token
/// (checked, never counted as a failed login), or none: then the connection's verified client
/// certificate names the caller, or nobody does (anonymous).
pub(crate) async fn authenticate(
    auth: &Auth,
    request: &Parts,
    from: IpAddr,
    endpoint: &Endpoint,
) -> Result<Caller, ApiError> {
    let Some(value) = request.headers.get(header::AUTHORIZATION) else {
        return Ok(Caller {
            identity: certified(request),
            granted: None,
        });
    };
    let value = value.to_str().unwrap_or("");
    let challenge = || challenge(auth, request, endpoint, None);
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let (user, password) = basic(credentials.trim()).ok_or_else(challenge)?;
        return match auth.sign_in(&user, &password, from).await {
            SignIn::Valid(identity) => Ok(Caller {
                identity,
                granted: None,
            }),
            SignIn::Invalid => Err(challenge().with_message("the user name or password is wrong")),
            SignIn::Throttled(wait) => Err(ApiError::throttled(wait)),
        };
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        let verifier = auth.verifier().ok_or_else(challenge)?;
        let claims = verifier.verify(credentials.trim()).map_err(|e| {
            auth_failed(AuthFailure::Token);
            challenge().with_message(&format!("the token was refused: {e}"))
        })?;
        if claims.use_.is_some() {
            return Err(challenge().with_message("a refresh token is not an access token"));
        }
        let identity = if claims.sub.is_empty() {
            Identity::Anonymous
        } else {
            Identity::User(claims.sub)
        };
        return Ok(Caller {
            identity,
            granted: Some(claims.access),
        });
    }
    Err(challenge().with_message("unsupported authorization scheme"))
}

/// The user a verified client certificate names, or anonymous.
pub(super) fn certified(request: &Parts) -> Identity {
    let info = request
        .extensions
        .get::<ConnectInfo<crate::connection::ConnectionInfo>>();
    match info.and_then(|info| info.0.client.get()) {
        Some(name) => Identity::User(name.to_owned()),
        None => Identity::Anonymous,
    }
}

/// Whether `caller` may do what `endpoint` does; the refusal carries its challenge.
pub(crate) fn authorize(
    auth: &Auth,
    caller: &Caller,
    request: &Parts,
    endpoint: &Endpoint,
) -> Result<(), ApiError> {
    let Some((repository, action)) = endpoint.scope() else {
        return match (endpoint, &caller.identity) {
            // Clients start at /v2/ and sign in when it asks them to.
            (Endpoint::Base, Identity::Anonymous) if caller.granted.is_none() => {
                Err(challenge(auth, request, endpoint, None))
            }
            (Endpoint::Catalog { .. }, Identity::Anonymous)
                if !auth.policy().acl.may_pull_somewhere(&Identity::Anonymous) =>
            {
                Err(challenge(auth, request, endpoint, None))
            }
            _ => Ok(()),
        };
    };
    if allows(auth, caller, repository.as_str(), action) {
        return Ok(());
    }
    let rules_allow = auth
        .policy()
        .acl
        .may(&caller.identity, repository.as_str(), action);
    match (&caller.identity, &caller.granted) {
        (Identity::Anonymous, _) => Err(challenge(auth, request, endpoint, None)),
        // Another issuer's token decides alone: a missing scope may be its to grant.
        (Identity::User(_), Some(_)) if rules_allow || auth.external.is_some() => Err(challenge(
            auth,
            request,
            endpoint,
            Some("insufficient_scope"),
        )),
        (Identity::User(name), _) => {
            auth_failed(AuthFailure::Denied);
            Err(ApiError::denied(&format!(
                "{name} may not {action} in {repository}"
            )))
        }
    }
}

/// Whether the caller's token, or else the rules, allow `action` in `repository`.
pub(super) fn allows(auth: &Auth, caller: &Caller, repository: &str, action: Action) -> bool {
    match &caller.granted {
        Some(granted) => granted.iter().any(|g| g.allows(repository, action)),
        None => auth.policy().acl.may(&caller.identity, repository, action),
    }
}

/// The 401 that tells a client how to sign in for this endpoint.
fn challenge(auth: &Auth, request: &Parts, endpoint: &Endpoint, error: Option<&str>) -> ApiError {
    let Some(service) = auth.service() else {
        return ApiError::unauthorized("Basic realm=\"marina\"".to_owned());
    };
    let realm = auth
        .settings
        .realm
        .clone()
        .unwrap_or_else(|| default_realm(request));
    let mut value = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if let Some(scope) = scope_of(endpoint) {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{error}\""));
    }
    ApiError::unauthorized(value)
}

/// The scope a client should ask a token for to make this request.
fn scope_of(endpoint: &Endpoint) -> Option<String> {
    if matches!(endpoint, Endpoint::Catalog { .. }) {
        return Some("registry:catalog:*".to_owned());
    }
    let (repository, action) = endpoint.scope()?;
    let actions = match action {
        Action::Push => "pull,push",
        other => other.as_str(),
    };
    let mut scope = format!("repository:{repository}:{actions}");
    // A mount also reads its source: ask for both, as Distribution does, or the token a
    // client fetches cannot mount and every mount falls back to an upload.
    if let Endpoint::StartUpload {
        start: crate::UploadStart::Mount {
            from: Some(source), ..
        },
        ..
    } = endpoint
    {
        scope.push_str(&format!(" repository:{source}:pull"));
    }
    Some(scope)
}

/// `<scheme>://<Host>/auth/token`: https on a TLS connection, or behind a proxy that says
/// `X-Forwarded-Proto: https`.
pub(super) fn default_realm(request: &Parts) -> String {
    let headers = &request.headers;
    let tls = request
        .extensions
        .get::<ConnectInfo<crate::connection::ConnectionInfo>>()
        .is_some_and(|info| info.0.tls);
    // HTTP/2 carries the host in the request's authority, not in a Host header.
    let authority = request.uri.authority().map(|a| a.as_str());
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(authority)
        .filter(|h| !h.is_empty() && !h.contains(['"', '\\', ' ']))
        .unwrap_or("localhost");
    let https = tls
        || headers
            .get("X-Forwarded-Proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    format!(
        "{}://{host}/auth/token",
        if https { "https" } else { "http" }
    )
}

/// The user and password of Basic credentials.
pub(super) fn basic(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}
