//! An OCI pull client for the pull-through cache: manifests and blobs of one remote registry,
//! signing in anonymously, with Basic credentials, or through the Bearer token dance (the
//! challenge parsed, a token fetched for the repository's pull scope and kept until it
//! expires, the request retried once). It stores nothing.

mod challenge;
mod tokens;

use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use futures_util::stream::BoxStream;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use challenge::Challenge;
use tokens::Tokens;

/// The manifest media types marina asks for, in the order it prefers them.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// A user name and password for the upstream.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, (redacted))", self.username)
    }
}

/// Where the upstream is and how to reach it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The registry's base URL, such as `https://registry-1.docker.io`.
    pub remote: String,
    /// Credentials to sign in with; anonymous without.
    pub credentials: Option<Credentials>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the upstream may send nothing, mid-answer, before the fetch fails.
    pub idle_timeout: Duration,
}

impl Settings {
    /// Anonymous access to `remote`, with default timeouts.
    #[must_use]
    pub fn anonymous(remote: &str) -> Self {
        Self {
            remote: remote.to_owned(),
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The upstream says it has no such thing (404).
    #[error("the upstream has no {0}")]
    NotFound(String),
    /// The upstream refused the credentials or the access (401, 403).
    #[error("the upstream refused access: {0}")]
    Refused(String),
    /// The upstream is unreachable, failing (5xx), limiting (429) or stalled.
    #[error("the upstream is unavailable: {0}")]
    Unavailable(String),
    /// The upstream answered something that is not what was asked.
    #[error("the upstream answered something invalid: {0}")]
    Invalid(String),
    /// The settings cannot work (the URL, TLS).
    #[error("{0}")]
    Settings(String),
}

/// A manifest as the upstream sent it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `Docker-Content-Digest`, when sent.
    pub digest: Option<String>,
    /// `Content-Type`, when sent.
    pub media_type: Option<String>,
    /// The bytes.
    pub body: Bytes,
}

/// What a `HEAD` of a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, when sent.
    pub digest: Option<String>,
    /// `Content-Type`, when sent.
    pub media_type: Option<String>,
}

/// A blob on its way: its length when the upstream says it, and its bytes.
pub struct Blob {
    /// `Content-Length`, when sent.
    pub length: Option<u64>,
    /// The bytes, as they arrive.
    pub body: BoxStream<'static, Result<Bytes, Error>>,
}

/// One upstream registry.
#[derive(Debug)]
pub struct Remote {
    base: String,
    http: reqwest::Client,
    tokens: Tokens,
}

impl Remote {
    /// A client of the registry `settings` name.
    ///
    /// # Errors
    /// [`Error::Settings`] when the URL is not `http://` or `https://`, or TLS cannot start.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let base = settings.remote.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Settings(format!(
                "{base} is not an http:// or https:// URL"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("marina/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.idle_timeout)
            .build()
            .map_err(|e| Error::Settings(format!("the HTTP client: {e}")))?;
        let tokens = Tokens::new(http.clone(), settings.credentials);
        Ok(Self { base, http, tokens })
    }

    /// The registry's base URL.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Fetches a manifest by tag or digest, of at most `limit` bytes.
    ///
    /// # Errors
    /// See [`Error`]; [`Error::Invalid`] for a manifest larger than `limit`.
    pub async fn manifest(
        &self,
        name: &str,
        reference: &str,
        limit: usize,
    ) -> Result<Manifest, Error> {
        let what = format!("manifest {name}:{reference}");
        let response = self
            .manifest_request(Method::GET, name, reference, &what)
            .await?;
        let (digest, media_type) = described(response.headers());
        let body = read_at_most(response, limit, &what).await?;
        Ok(Manifest {
            digest,
            media_type,
            body,
        })
    }

    /// The referrers of `digest` (an image index, as the upstream sends it), optionally of one
    /// artifact type, of at most `limit` bytes.
    ///
    /// # Errors
    /// See [`Error`]; [`Error::NotFound`] also when the upstream has no referrers API.
    pub async fn referrers(
        &self,
        name: &str,
        digest: &str,
        artifact_type: Option<&str>,
        limit: usize,
    ) -> Result<Bytes, Error> {
        let what = format!("the referrers of {digest} in {name}");
        let mut path = format!("{name}/referrers/{digest}");
        if let Some(t) = artifact_type {
            path = format!("{path}?artifactType={}", encoded(t));
        }
        let accept = Some("application/vnd.oci.image.index.v1+json");
        let response = self.send(Method::GET, name, &path, accept, &what).await?;
        read_at_most(response, limit, &what).await
    }

    /// Asks for a manifest's digest without its bytes (Docker Hub does not count a `HEAD`
    /// against its pull limits).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn manifest_head(&self, name: &str, reference: &str) -> Result<ManifestHead, Error> {
        let what = format!("manifest {name}:{reference}");
        let response = self
            .manifest_request(Method::HEAD, name, reference, &what)
            .await?;
        let (digest, media_type) = described(response.headers());
        Ok(ManifestHead { digest, media_type })
    }

    /// The size of a blob the upstream holds.
    ///
    /// # Errors
    /// See [`Error`]; [`Error::Invalid`] without a `Content-Length`.
    pub async fn blob_size(&self, name: &str, digest: &str) -> Result<u64, Error> {
        let what = format!("blob {digest} in {name}");
        let path = format!("{name}/blobs/{digest}");
        let response = self.send(Method::HEAD, name, &path, None, &what).await?;
        length(response.headers()).ok_or_else(|| Error::Invalid(format!("{what}: no length")))
    }

    /// Starts fetching a blob.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn blob(&self, name: &str, digest: &str) -> Result<Blob, Error> {
        let what = format!("blob {digest} in {name}");
        let path = format!("{name}/blobs/{digest}");
        let response = self.send(Method::GET, name, &path, None, &what).await?;
        let length = length(response.headers());
        let body = response
            .bytes_stream()
            .map_err(move |e| Error::Unavailable(format!("reading {what}: {e}")));
        Ok(Blob {
            length,
            body: Box::pin(body),
        })
    }

    async fn manifest_request(
        &self,
        method: Method,
        name: &str,
        reference: &str,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let path = format!("{name}/manifests/{reference}");
        self.send(method, name, &path, Some(MANIFEST_TYPES), what)
            .await
    }

    /// Sends a request for `/v2/{path}`, signing in and retrying once when challenged.
    async fn send(
        &self,
        method: Method,
        name: &str,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let url = format!("{}/v2/{path}", self.base);
        let scope = format!("repository:{name}:pull");
        let mut challenged = false;
        loop {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(value) = self.tokens.authorization(&scope) {
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| Error::Unavailable(format!("{method} {url}: {e}")))?;
            if response.status() == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse)
                    .ok_or_else(|| {
                        Error::Refused(format!("{what}: 401 without a challenge marina can answer"))
                    })?;
                self.tokens.sign_in(&challenge, &scope).await?;
                continue;
            }
            return classify(response, what).await;
        }
    }
}

/// Passes a success on; turns anything else into the matching [`Error`].
async fn classify(response: reqwest::Response, what: &str) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let said = response.text().await.unwrap_or_default();
    let said: String = said.chars().take(200).collect();
    let detail = format!("{what}: {status} {said}");
    Err(match status {
        StatusCode::NOT_FOUND => Error::NotFound(what.to_owned()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Refused(detail),
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
            Error::Unavailable(detail)
        }
        _ => Error::Invalid(detail),
    })
}

/// `value` percent-encoded for a query string (everything but RFC 3986's unreserved bytes).
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A whole answer's body, refused past `limit` bytes.
async fn read_at_most(
    response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Bytes, Error> {
    let too_large = || Error::Invalid(format!("{what} is larger than {limit} bytes"));
    if length(response.headers()).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
        let chunk = chunk.map_err(|e| Error::Unavailable(format!("reading {what}: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `Docker-Content-Digest` and `Content-Type`.
fn described(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    (text("docker-content-digest"), text(CONTENT_TYPE.as_str()))
}

fn length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
