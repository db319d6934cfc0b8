//! The registry client the workloads drive: one pooled keep-alive HTTP/1.1 client per registry
//! and the Distribution API calls they need. Any answer outside 2xx is an error naming the
//! request and the status, so a workload never reports figures for failed requests.

use std::ops::Range;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue,
};
use reqwest::{Body, Method, Response, Url};

use super::auth::{Credentials, SignIn};

/// The media types `docker pull` accepts for a manifest.
const DOCKER_MANIFEST_ACCEPT: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

const OCTET_STREAM: &str = "application/octet-stream";

/// One registry under test.
#[derive(Debug, Clone)]
pub(crate) struct RegistryClient {
    /// `A` or `B`, as in the report.
    pub(crate) label: &'static str,
    base: Url,
    http: reqwest::Client,
    /// How to sign in, when the registry asks (`--auth`).
    sign_in: Option<std::sync::Arc<SignIn>>,
}

impl RegistryClient {
    /// A client for the registry at `base` (`http://host:port`), signing in with `credentials`
    /// when it asks for them.
    pub(crate) async fn new(
        label: &'static str,
        base: &str,
        credentials: Option<Credentials>,
    ) -> anyhow::Result<Self> {
        let base = Url::parse(base).with_context(|| format!("invalid registry URL {base:?}"))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(300))
            .user_agent(concat!("marina-bench/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let sign_in = match credentials {
            Some(credentials) => SignIn::discover(&http, &base, credentials).await?,
            None => None,
        };
        Ok(Self {
            label,
            base,
            http,
            sign_in: sign_in.map(std::sync::Arc::new),
        })
    }

    /// The registry's base URL, as given.
    pub(crate) fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `path` (starting with `/v2/`) resolved against the base URL.
    pub(crate) fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("invalid path {path:?}"))
    }

    /// Sends a request and insists on a 2xx answer.
    async fn send(
        &self,
        method: Method,
        url: Url,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<Response> {
        let mut request = build(self.http.request(method.clone(), url.clone()));
        if let Some(sign_in) = &self.sign_in {
            let value = sign_in.header_for(url.path()).await?;
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url} failed"))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        bail!("{method} {url} answered {status}: {body}")
    }

    /// `GET /v2/`: the registry answers at all.
    pub(crate) async fn ping(&self) -> anyhow::Result<()> {
        self.send(Method::GET, self.url("/v2/")?, |r| r).await?;
        Ok(())
    }

    /// GET `url`, reading the whole body; returns its length.
    pub(crate) async fn get_len(&self, url: &Url, headers: &HeaderMap) -> anyhow::Result<usize> {
        let response = self
            .send(Method::GET, url.clone(), |r| r.headers(headers.clone()))
            .await?;
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading GET {url}"))?;
        Ok(body.len())
    }

    /// GET `url` as a streamed response, for large bodies.
    pub(crate) async fn get_stream(&self, url: &Url) -> anyhow::Result<Response> {
        self.send(Method::GET, url.clone(), |r| r).await
    }

    /// `POST /v2/<repo>/blobs/uploads/`: opens an upload session; returns its location.
    pub(crate) async fn start_upload(&self, repo: &str) -> anyhow::Result<Url> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let response = self
            .send(Method::POST, url, |r| r.header(CONTENT_LENGTH, 0))
            .await?;
        self.location(&response)
    }

    /// `PATCH <location>` with the bytes of `range`; returns the next location.
    pub(crate) async fn patch_chunk(
        &self,
        location: Url,
        range: Range<u64>,
        body: Body,
    ) -> anyhow::Result<Url> {
        let content_range = format!("{}-{}", range.start, range.end - 1);
        let response = self
            .send(Method::PATCH, location, |r| {
                r.header(CONTENT_TYPE, OCTET_STREAM)
                    .header(CONTENT_LENGTH, range.end - range.start)
                    .header(CONTENT_RANGE, content_range)
                    .body(body)
            })
            .await?;
        self.location(&response)
    }

    /// `PUT <location>?digest=` with the last `length` bytes (maybe none): closes the upload.
    pub(crate) async fn finish_upload(
        &self,
        mut location: Url,
        digest: &str,
        length: u64,
        body: Body,
    ) -> anyhow::Result<()> {
        location.query_pairs_mut().append_pair("digest", digest);
        self.send(Method::PUT, location, |r| {
            r.header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_LENGTH, length)
                .body(body)
        })
        .await?;
        Ok(())
    }

    /// A blob in two requests: POST opens the session, one PUT sends all `length` bytes.
    pub(crate) async fn push_blob(
        &self,
        repo: &str,
        digest: &str,
        length: u64,
        body: Body,
    ) -> anyhow::Result<()> {
        let location = self.start_upload(repo).await?;
        self.finish_upload(location, digest, length, body).await
    }

    /// A small blob, POST then PUT; returns its digest.
    pub(crate) async fn push_small_blob(&self, repo: &str, data: Bytes) -> anyhow::Result<String> {
        let digest = super::data::sha256(&data);
        let length = data.len() as u64;
        self.push_blob(repo, &digest, length, Body::from(data))
            .await?;
        Ok(digest)
    }

    /// `PUT /v2/<repo>/manifests/<reference>`.
    pub(crate) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &'static str,
        body: Bytes,
    ) -> anyhow::Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        self.send(Method::PUT, url, |r| {
            r.header(CONTENT_TYPE, media_type).body(body)
        })
        .await?;
        Ok(())
    }

    /// The absolute URL in a response's `Location` header.
    fn location(&self, response: &Response) -> anyhow::Result<Url> {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("{} answered without a Location header", response.url()))?;
        self.base.join(location).with_context(|| {
            format!(
                "{} answered an invalid Location {location:?}",
                response.url()
            )
        })
    }
}

/// The `Accept` headers `docker pull` sends for a manifest.
pub(crate) fn docker_manifest_accept() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for media_type in DOCKER_MANIFEST_ACCEPT {
        headers.append(ACCEPT, HeaderValue::from_static(media_type));
    }
    headers
}
