//! `/auth/token`: the Docker token endpoint (`GET`, Basic credentials or none) and its OAuth2
//! form (`POST`, `grant_type=password` or `refresh_token`). A token grants each asked scope's
//! actions that the rules allow the identity, and nothing else.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use marina_auth::token::{REFRESH_LIFETIME, rfc3339};
use marina_auth::{Identity, Scope, TokenIssuer};

use super::{Auth, SignIn, gate};
use crate::error::ApiError;
use crate::query::Query;

/// The largest form body read.
const MAX_FORM: usize = 64 * 1024;

/// Answers a request to the token endpoint.
pub(crate) async fn answer(auth: &Auth, request: &Parts, body: Body, from: IpAddr) -> Response {
    let Some(issuer) = &auth.issuer else {
        return ApiError::not_found("/auth/token").into_response();
    };
    let outcome = match request.method {
        Method::GET => docker_form(auth, issuer, request, from).await,
        Method::POST => oauth_form(auth, issuer, body, from).await,
        _ => Err(ApiError::method_not_allowed(&request.method, "/auth/token").into_response()),
    };
    outcome.unwrap_or_else(|refusal| refusal)
}

/// `GET /auth/token?service=&scope=&offline_token=`, signed in with Basic, by a client
/// certificate, or anonymous.
async fn docker_form(
    auth: &Auth,
    issuer: &TokenIssuer,
    request: &Parts,
    from: IpAddr,
) -> Result<Response, Response> {
    let q = Query::parse(request.uri.query().unwrap_or(""));
    check_service(issuer, q.get("service").as_deref()).map_err(IntoResponse::into_response)?;
    let identity = match request
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => gate::certified(request),
        Some(value) => {
            let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
            let credentials = scheme
                .eq_ignore_ascii_case("basic")
                .then(|| gate::basic(encoded.trim()))
                .flatten();
            let (user, password) = credentials.ok_or_else(wrong_password)?;
            signed_in(auth, &user, &password, from, wrong_password).await?
        }
    };
    let scopes: Vec<Scope> = q
        .all("scope")
        .iter()
        .flat_map(|s| Scope::parse_all(s).collect::<Vec<_>>())
        .collect();
    let offline = q.get("offline_token").as_deref() == Some("true");
    issue(auth, issuer, &identity, &scopes, offline).map_err(IntoResponse::into_response)
}

/// The user a password signs in, or the answer refusing it: `refused` for a wrong password,
/// 429 for a throttled user or address.
async fn signed_in(
    auth: &Auth,
    user: &str,
    password: &str,
    from: IpAddr,
    refused: impl FnOnce() -> Response,
) -> Result<Identity, Response> {
    match auth.sign_in(user, password, from).await {
        SignIn::Valid(identity) => Ok(identity),
        SignIn::Invalid => Err(refused()),
        SignIn::Throttled(wait) => Err(ApiError::throttled(wait).into_response()),
    }
}

/// Wrong or unreadable Basic credentials on the token endpoint: 401, asking for Basic.
fn wrong_password() -> Response {
    ApiError::unauthorized("Basic realm=\"marina\"".to_owned())
        .with_message("the user name or password is wrong")
        .into_response()
}

/// `POST /auth/token` with an OAuth2 form: a password or a refresh token.
async fn oauth_form(
    auth: &Auth,
    issuer: &TokenIssuer,
    body: Body,
    from: IpAddr,
) -> Result<Response, Response> {
    let form = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the form is too large or cut off",
        )
    })?;
    let q = Query::parse(&String::from_utf8_lossy(&form));
    check_service(issuer, q.get("service").as_deref()).map_err(IntoResponse::into_response)?;
    let invalid_grant = || {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the credentials were refused",
        )
    };
    let (identity, refresh) = match q.get("grant_type").as_deref() {
        Some("password") => {
            let (user, password) = (
                q.get("username").unwrap_or_default(),
                q.get("password").unwrap_or_default(),
            );
            let identity = signed_in(auth, &user, &password, from, invalid_grant).await?;
            (identity, q.get("access_type").as_deref() == Some("offline"))
        }
        Some("refresh_token") => {
            let token = q.get("refresh_token").unwrap_or_default();
            let claims = issuer
                .verifier()
                .verify(&token)
                .map_err(|_| invalid_grant())?;
            let still_a_user = auth.policy().users.has_user(&claims.sub);
            if claims.use_.as_deref() != Some("refresh") || !still_a_user {
                return Err(invalid_grant());
            }
            (Identity::User(claims.sub), true)
        }
        _ => {
            let message = "grant_type must be password or refresh_token";
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                message,
            ));
        }
    };
    let scopes: Vec<Scope> = q
        .get("scope")
        .map(|s| Scope::parse_all(&s).collect())
        .unwrap_or_default();
    issue(auth, issuer, &identity, &scopes, refresh).map_err(IntoResponse::into_response)
}

/// A token for `identity` granting what the rules allow of `scopes`, and a refresh token when
/// asked for one by a signed-in user.
fn issue(
    auth: &Auth,
    issuer: &TokenIssuer,
    identity: &Identity,
    scopes: &[Scope],
    refresh: bool,
) -> Result<Response, ApiError> {
    let granted = auth.grant(identity, scopes);
    let subject = match identity {
        Identity::User(name) => name.as_str(),
        Identity::Anonymous => "",
    };
    let lifetime = auth.settings.token_lifetime;
    let (token, claims) = issuer
        .issue(subject, granted, lifetime, false)
        .map_err(ApiError::internal)?;
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "issued_at": rfc3339(claims.iat),
    });
    if refresh && matches!(identity, Identity::User(_)) {
        let (refresh_token, _) = issuer
            .issue(subject, Vec::new(), REFRESH_LIFETIME, true)
            .map_err(ApiError::internal)?;
        body["refresh_token"] = refresh_token.into();
    }
    let mut response = crate::handlers::json(StatusCode::OK, &body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, crate::handlers::value("no-store"));
    Ok(response)
}

/// A token asked for another service is refused: it would not be accepted here anyway.
fn check_service(issuer: &TokenIssuer, asked: Option<&str>) -> Result<(), ApiError> {
    match asked {
        Some(service) if !service.is_empty() && service != issuer.service() => {
            Err(ApiError::denied(&format!(
                "this token service issues tokens for {:?}, not {service:?}",
                issuer.service()
            )))
        }
        _ => Ok(()),
    }
}

/// An OAuth2 error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    crate::handlers::json(
        status,
        &serde_json::json!({ "error": error, "error_description": description }),
    )
}
