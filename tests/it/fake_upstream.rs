//! A registry to mirror, inside the test process: it serves manifests and blobs from memory,
//! logs every request, can insist on the Bearer token dance, serve corrupt blob bytes, move a
//! tag, stop and start again on the same port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::common::sha256;

/// The credentials the token mode accepts, and the token it hands out.
pub const USER: &str = "mirror";
pub const PASSWORD: &str = "mirror-pw";
const TOKEN: &str = "fake-upstream-token";

#[derive(Default)]
struct Contents {
    /// `repo` → `reference` (tag or digest) → (media type, bytes).
    manifests: HashMap<String, HashMap<String, (String, Bytes)>>,
    blobs: HashMap<String, Bytes>,
}

#[derive(Default)]
struct State {
    contents: Mutex<Contents>,
    log: Mutex<Vec<String>>,
    corrupt: AtomicBool,
    tokens: bool,
}

/// The fake registry.
pub struct FakeUpstream {
    pub base: String,
    addr: SocketAddr,
    state: Arc<State>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts it; with `tokens`, every `/v2/` request needs a token from its `/token`.
    pub async fn start(tokens: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            tokens,
            ..State::default()
        });
        let mut upstream = Self {
            base: format!("http://{addr}"),
            addr,
            state,
            task: None,
        };
        upstream.serve(listener);
        upstream
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let state = Arc::clone(&self.state);
        let base = self.base.clone();
        let app = axum::Router::new().fallback(move |method, uri, headers| {
            answer(Arc::clone(&state), base.clone(), method, uri, headers)
        });
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }

    /// Stops answering: connections are refused.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Starts again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Adds a blob; returns its digest.
    pub fn add_blob(&self, data: &[u8]) -> String {
        let digest = sha256(data);
        let mut contents = self.state.contents.lock().unwrap();
        contents
            .blobs
            .insert(digest.clone(), Bytes::copy_from_slice(data));
        digest
    }

    /// Adds a manifest under its digest and, if given, a tag; returns its digest.
    pub fn add_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let digest = sha256(body);
        let entry = (media_type.to_owned(), Bytes::copy_from_slice(body));
        let mut contents = self.state.contents.lock().unwrap();
        let refs = contents.manifests.entry(repo.to_owned()).or_default();
        refs.insert(digest.clone(), entry.clone());
        if let Some(tag) = tag {
            refs.insert(tag.to_owned(), entry);
        }
        digest
    }

    /// Serves `body` for `repo:reference`, whatever its digest.
    pub fn add_manifest_under(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        let entry = (media_type.to_owned(), Bytes::copy_from_slice(body));
        let mut contents = self.state.contents.lock().unwrap();
        let refs = contents.manifests.entry(repo.to_owned()).or_default();
        refs.insert(reference.to_owned(), entry);
    }

    /// Serves wrong bytes for every blob from now on (or right ones again).
    pub fn corrupt_blobs(&self, on: bool) {
        self.state.corrupt.store(on, Ordering::SeqCst);
    }

    /// Every request seen so far, as `METHOD /path`.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// The requests seen so far whose line (`GET /v2/...`) contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        let log = self.state.log.lock().unwrap();
        log.iter()
            .filter(|line| line.starts_with(&format!("{method} ")) && line.contains(part))
            .count()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    state: Arc<State>,
    base: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    state
        .log
        .lock()
        .unwrap()
        .push(format!("{method} {}", uri.path()));
    if uri.path() == "/token" {
        return token(&headers);
    }
    let Some(rest) = uri.path().strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some((name, subject)) = rest.split_once("/referrers/") {
        return referrers(&state, name, subject);
    }
    let (name, kind, reference) = match split(rest) {
        Some(parts) => parts,
        None if rest.is_empty() => return StatusCode::OK.into_response(),
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    let bearer = format!("Bearer {TOKEN}");
    if state.tokens
        && headers
            .get(header::AUTHORIZATION)
            .is_none_or(|v| v != bearer.as_str())
    {
        let challenge =
            format!(r#"Bearer realm="{base}/token",service="fake",scope="repository:{name}:pull""#);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response();
    }
    let contents = state.contents.lock().unwrap();
    let found = match kind {
        "manifests" => contents
            .manifests
            .get(name)
            .and_then(|refs| refs.get(reference))
            .cloned(),
        _ => contents
            .blobs
            .get(reference)
            .map(|b| ("application/octet-stream".to_owned(), b.clone())),
    };
    drop(contents);
    let Some((media_type, mut bytes)) = found else {
        return (
            StatusCode::NOT_FOUND,
            r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#,
        )
            .into_response();
    };
    if kind == "blobs" && state.corrupt.load(Ordering::SeqCst) && !bytes.is_empty() {
        let mut wrong = bytes.to_vec();
        wrong[0] ^= 0xff;
        bytes = Bytes::from(wrong);
    }
    let digest = sha256(&bytes);
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .header("Docker-Content-Digest", digest);
    if method == Method::HEAD {
        return builder.body(Body::empty()).unwrap();
    }
    // In chunks, as a network would deliver a large blob.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
        .step_by(64 * 1024)
        .map(|at| Ok(bytes.slice(at..(at + 64 * 1024).min(bytes.len()))))
        .collect();
    builder
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

/// `name/manifests/ref` or `name/blobs/digest`.
fn split(rest: &str) -> Option<(&str, &str, &str)> {
    for kind in ["manifests", "blobs"] {
        if let Some((name, reference)) = rest.split_once(&format!("/{kind}/")) {
            return Some((name, kind, reference));
        }
    }
    None
}

fn token(headers: &HeaderMap) -> Response {
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let basic = format!("Basic {expected}");
    if headers
        .get(header::AUTHORIZATION)
        .is_none_or(|v| v != basic.as_str())
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body = format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An image index of the repository's manifests whose subject is `subject`.
fn referrers(state: &State, name: &str, subject: &str) -> Response {
    let contents = state.contents.lock().unwrap();
    let mut found = Vec::new();
    for (reference, (media_type, body)) in contents.manifests.get(name).into_iter().flatten() {
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
            continue;
        };
        if reference.starts_with("sha256:") && doc["subject"]["digest"] == subject {
            found.push(serde_json::json!({
                "mediaType": media_type,
                "digest": reference,
                "size": body.len(),
                "artifactType": doc["artifactType"],
            }));
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": found,
    });
    (
        [(
            header::CONTENT_TYPE,
            "application/vnd.oci.image.index.v1+json",
        )],
        index.to_string(),
    )
        .into_response()
}
