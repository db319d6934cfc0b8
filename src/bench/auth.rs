//! Signing the load generator in, as a registry client does: from the challenge of `GET /v2/`,
//! either Basic credentials on every request, or a Bearer token per repository fetched from
//! the realm (scope `pull,push`) and renewed before it expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use reqwest::Url;
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};

/// Tokens are fetched again after this long (marina's last 5 minutes by default).
const RENEW_AFTER: Duration = Duration::from_secs(120);

/// A user and password to sign in with (`--auth USER:PASSWORD`).
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    user: String,
    password: String,
}

impl std::str::FromStr for Credentials {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (user, password) = s
            .split_once(':')
            .ok_or_else(|| "expected USER:PASSWORD".to_owned())?;
        Ok(Self {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }
}

impl Credentials {
    fn basic(&self) -> HeaderValue {
        let pair = format!("{}:{}", self.user, self.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header")
    }
}

/// How a registry wants to be signed in to, learned from its challenge.
#[derive(Debug)]
pub(crate) enum SignIn {
    /// Basic credentials on every request.
    Basic(HeaderValue),
    /// Bearer tokens from `realm` for `service`, one per repository.
    Tokens {
        credentials: Credentials,
        realm: Url,
        service: String,
        http: reqwest::Client,
        tokens: Mutex<HashMap<String, (HeaderValue, Instant)>>,
    },
}

impl SignIn {
    /// Asks `base/v2/` how to sign in; `None` when it lets everyone in.
    pub(crate) async fn discover(
        http: &reqwest::Client,
        base: &Url,
        credentials: Credentials,
    ) -> anyhow::Result<Option<Self>> {
        let url = base.join("/v2/")?;
        let answer = http
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if answer.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        let challenge = answer
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .context("GET /v2/ answered 401 without a challenge")?
            .to_owned();
        if challenge.to_ascii_lowercase().starts_with("basic") {
            return Ok(Some(Self::Basic(credentials.basic())));
        }
        let field = |name: &str| parameter(&challenge, name);
        let realm = field("realm").context("the Bearer challenge names no realm")?;
        Ok(Some(Self::Tokens {
            credentials,
            realm: Url::parse(&realm).with_context(|| format!("the realm {realm:?}"))?,
            service: field("service").unwrap_or_default(),
            http: http.clone(),
            tokens: Mutex::default(),
        }))
    }

    /// The Authorization header for a request to `path`.
    pub(crate) async fn header_for(&self, path: &str) -> anyhow::Result<HeaderValue> {
        let (credentials, realm, service, http, tokens) = match self {
            Self::Basic(value) => return Ok(value.clone()),
            Self::Tokens {
                credentials,
                realm,
                service,
                http,
                tokens,
            } => (credentials, realm, service, http, tokens),
        };
        let scope = scope_of(path);
        if let Some((token, at)) = lock(tokens).get(&scope)
            && at.elapsed() < RENEW_AFTER
        {
            return Ok(token.clone());
        }
        let mut url = realm.clone();
        url.query_pairs_mut()
            .append_pair("service", service)
            .append_pair("scope", &scope);
        let answer = http
            .get(url.clone())
            .header(reqwest::header::AUTHORIZATION, credentials.basic())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !answer.status().is_success() {
            bail!("the token service answered {} for {scope}", answer.status());
        }
        let body = answer.bytes().await.context("reading the token")?;
        let body: serde_json::Value =
            serde_json::from_slice(&body).context("the token answer is not JSON")?;
        let token = body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .context("the token answer holds no token")?;
        let value = HeaderValue::from_str(&format!("Bearer {token}"))?;
        lock(tokens).insert(scope, (value.clone(), Instant::now()));
        Ok(value)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The token scope a request to `path` needs: the catalog, or its repository for pull and push.
fn scope_of(path: &str) -> String {
    let rest = path.trim_start_matches("/v2/");
    if rest.starts_with("_catalog") {
        return "registry:catalog:*".to_owned();
    }
    let name = ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|marker| rest.find(marker))
        .min()
        .map_or(rest, |at| &rest[..at]);
    format!("repository:{name}:pull,push")
}

/// A `name="value"` parameter of a challenge.
fn parameter(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let end = challenge[start..].find('"')? + start;
    Some(challenge[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_path() {
        assert_eq!(
            scope_of("/v2/a/b/blobs/uploads/"),
            "repository:a/b:pull,push"
        );
        assert_eq!(
            scope_of("/v2/bench-1/x/manifests/latest"),
            "repository:bench-1/x:pull,push"
        );
        assert_eq!(scope_of("/v2/_catalog?n=5"), "registry:catalog:*");
    }

    #[test]
    fn challenge_parameters_are_read() {
        let challenge = r#"Bearer realm="http://127.0.0.1:5000/auth/token",service="marina""#;
        assert_eq!(
            parameter(challenge, "realm").unwrap(),
            "http://127.0.0.1:5000/auth/token"
        );
        assert_eq!(parameter(challenge, "service").unwrap(), "marina");
        assert!(parameter(challenge, "scope").is_none());
    }
}
