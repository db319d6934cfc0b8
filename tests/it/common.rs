//! Test helpers: start a marina (in this process, or as the real binary), push content, and
//! check OCI error bodies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use bytes::Bytes;
use marina_registry::{Config, Registry};
use marina_store::Store;
use marina_store::filesystem::FileStore;
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

/// A marina serving from inside the test process: on a temporary folder, or, with
/// `MARINA_TEST_STORAGE=s3`, under a fresh prefix of the shared Garage bucket.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
}

/// Whether this run tests the S3 backend.
pub fn testing_s3() -> bool {
    match std::env::var("MARINA_TEST_STORAGE").as_deref() {
        Ok("s3") => true,
        Ok("filesystem") | Err(_) => false,
        Ok(other) => panic!("MARINA_TEST_STORAGE={other:?}: expected filesystem or s3"),
    }
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = if testing_s3() {
            let node = crate::garage::shared();
            Arc::new(
                crate::garage::store(&node.endpoint(), &crate::garage::unique_prefix("it")).await,
            )
        } else {
            Arc::new(FileStore::open(dir.path()).expect("open store"))
        };
        Self::serve(store, config, dir).await
    }

    /// Serves any store (tests use this to inject faults).
    pub async fn serve(store: Arc<dyn Store>, config: Config, dir: tempfile::TempDir) -> Self {
        Self::serve_limited(store, config, dir, marina_http::Limits::default()).await
    }

    /// Serves any store under the given connection limits.
    pub async fn serve_limited(
        store: Arc<dyn Store>,
        config: Config,
        dir: tempfile::TempDir,
        limits: marina_http::Limits,
    ) -> Self {
        let options = marina_http::Options {
            limits,
            ..Default::default()
        };
        Self::serve_with(store, config, dir, options).await
    }

    /// Serves any store with the given options (limits, auth).
    pub async fn serve_with(
        store: Arc<dyn Store>,
        config: Config,
        dir: tempfile::TempDir,
        options: marina_http::Options,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let registry = Registry::new(Arc::clone(&store), config);
        let shutdown = std::future::pending();
        tokio::spawn(async move {
            marina_http::serve(listener, registry, options, shutdown)
                .await
                .expect("serve");
        });
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            dir,
            store,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("addr")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET")
    }

    /// `GET path` with a `Range` header.
    pub async fn get_range(&self, path: &str, range: &str) -> Response {
        let request = self.request(Method::GET, path).header("Range", range);
        request.send().await.expect("GET with Range")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.expect("HEAD")
    }

    /// Pushes a blob in one request; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        push_blob_to(&self.http, &self.base, repo, data).await
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest")
    }

    /// Pushes an image (config + two layers) and tags it; returns the manifest's digest and bytes.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (String, Vec<u8>) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layers = [format!("layer one {seed}"), format!("layer two {seed}")];
        let manifest = image_manifest(
            &descriptor(
                "application/vnd.oci.image.config.v1+json",
                config.as_bytes(),
            ),
            &layers
                .iter()
                .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l.as_bytes()))
                .collect::<Vec<_>>(),
            "",
        );
        self.push_blob(repo, config.as_bytes()).await;
        for layer in &layers {
            self.push_blob(repo, layer.as_bytes()).await;
        }
        let response = self
            .put_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes())
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "pushing manifest {repo}:{tag}"
        );
        (sha256(manifest.as_bytes()), manifest.into_bytes())
    }

    /// Keys stored under `prefix` (`blobs/` is content), on whichever backend serves.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = marina_store::Key::new(prefix).expect("prefix");
        self.store
            .list(&prefix, None, usize::MAX)
            .await
            .expect("list")
    }

    /// Content keys: to check deduplication, and that nothing partial is visible.
    pub async fn content(&self) -> Vec<String> {
        self.keys("blobs/").await
    }
}

/// Pushes a blob in one request to the marina at `base` (a process); returns its digest.
pub async fn push_blob_to(client: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}");
    let response = client
        .post(url)
        .body(data.to_vec())
        .send()
        .await
        .expect("POST blob");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "pushing a blob to {repo}"
    );
    digest
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A descriptor for `data` as JSON text.
pub fn descriptor(media_type: &str, data: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        sha256(data),
        data.len()
    )
}

/// An OCI image manifest; `extra` is appended inside the object (start it with a comma).
pub fn image_manifest(config: &str, layers: &[String], extra: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[{}]{extra}}}"#,
        layers.join(",")
    )
}

/// Asserts an OCI error response: status, and the first error's code; returns the message.
pub async fn assert_error(response: Response, status: u16, code: &str) -> String {
    let got = response.status().as_u16();
    let body = response.text().await.expect("error body");
    assert_eq!(got, status, "status (body: {body})");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("error body is not JSON: {body}"));
    let error = &json["errors"][0];
    assert_eq!(error["code"], code, "error code (body: {body})");
    let message = error["message"].as_str().expect("message").to_owned();
    assert!(!message.is_empty(), "error message is empty");
    message
}

pub fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

/// Sends a raw request line (paths reqwest would normalise) and returns status and body.
pub async fn raw_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    send_raw(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nContent-Length: 0\r\n"),
    )
    .await
}

/// Like [`raw_request`], with no `Content-Length` header at all (a request without a body).
pub async fn raw_request_without_length(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> (u16, String) {
    send_raw(addr, &format!("{method} {path} HTTP/1.1\r\n")).await
}

async fn send_raw(addr: SocketAddr, head: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{head}Host: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// A body that yields `parts` and then waits for `release` before ending.
pub fn held_body(first: Bytes, release: tokio::sync::oneshot::Receiver<Bytes>) -> reqwest::Body {
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
        futures_util::stream::once(async move { Ok(release.await.unwrap_or_default()) }),
    );
    reqwest::Body::wrap_stream(stream)
}

use futures_util::StreamExt as _;

/// The marina binary, started as a child process on a free port.
pub struct Process {
    pub child: std::process::Child,
    pub base: String,
}

impl Process {
    /// The binary on the filesystem backend.
    pub async fn start(storage: &Path, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec!["--storage-path".into(), storage.display().to_string()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Self::spawn(&args, &[]).await
    }

    /// The binary with the given arguments and environment (for example S3 settings).
    pub async fn spawn(args: &[String], env: &[(String, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
            .args(["--listen", &addr.to_string()])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("MARINA_LOG_LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start marina");
        let process = Self {
            child,
            base: format!("http://{addr}"),
        };
        process.wait_ready().await;
        process
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            // Any answer will do: with auth on, /v2/ answers 401.
            if reqwest::get(format!("{}/v2/", self.base)).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("marina did not start on {}", self.base);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/<pid>/status`, in KiB (VmHWM, VmRSS).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("status field")
    }

    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now, on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("addr").port()
}

/// `len` bytes that never repeat at any power-of-two stride, so a byte sent from the wrong
/// offset (or a zeroed one) is caught.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// One HTTP/1 response read off a raw connection: status, headers (lower-case names) and the
/// body its `Content-Length` announced (none for a HEAD).
pub async fn read_response(
    stream: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    head: bool,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut status_line = String::new();
    stream
        .read_line(&mut status_line)
        .await
        .expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header has a colon");
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("numeric Content-Length"));
    let mut body = vec![0; if head { 0 } else { length }];
    stream.read_exact(&mut body).await.expect("whole body");
    (status, headers, body)
}
