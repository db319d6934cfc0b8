//! The invariants: nothing partial is visible, names cannot reach outside the store,
//! repositories are isolated, a crash loses only what was not acknowledged (and voids, never
//! commits, an upload it may have cut), faults and panics are contained, and configuration
//! errors are clear.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use marina_store::memory::MemoryStore;
use marina_store::{Appended, ByteStream, InputStream, Key, Part, Store};
use reqwest::{Method, StatusCode};

use crate::common::*;

#[tokio::test]
async fn a_blob_is_invisible_until_all_its_bytes_are_stored_and_verified() {
    let s = Server::start().await;
    let data = b"first half|second half";
    let digest = sha256(data);
    let (release, held) = tokio::sync::oneshot::channel();
    let upload = s
        .request(
            Method::POST,
            &format!("/v2/atomic/blobs/uploads/?digest={digest}"),
        )
        .body(held_body(Bytes::from_static(b"first half|"), held))
        .send();
    let upload = tokio::spawn(upload);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        s.head(&format!("/v2/atomic/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        s.content().await.is_empty(),
        "no content file while the upload is in flight"
    );
    release.send(Bytes::from_static(b"second half")).unwrap();
    assert_eq!(upload.await.unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(
        s.get(&format!("/v2/atomic/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &data[..]
    );
}

#[tokio::test]
async fn names_tags_and_digests_never_reach_outside_the_store() {
    let s = Server::start().await;
    let d = sha256(b"x");
    let long = "a".repeat(256);
    // The exact answer per method (GET, DELETE, PUT, PATCH): the spec's code where it names
    // one, and 404/405 UNSUPPORTED for paths and methods that are not endpoints.
    const NAME: (u16, &str) = (400, "NAME_INVALID");
    const DIGEST: (u16, &str) = (400, "DIGEST_INVALID");
    const NOT_ALLOWED: (u16, &str) = (405, "UNSUPPORTED");
    const NOT_ENDPOINT: (u16, &str) = (404, "UNSUPPORTED");
    const NO_MANIFEST: (u16, &str) = (404, "MANIFEST_UNKNOWN");
    const BAD_MANIFEST: (u16, &str) = (400, "MANIFEST_INVALID");
    const NO_SESSION: (u16, &str) = (404, "BLOB_UPLOAD_UNKNOWN");
    let listing = [NAME, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED];
    let cases = [
        (
            "/v2/../../etc/passwd/manifests/latest".to_owned(),
            [NAME, NAME, NAME, NOT_ALLOWED],
        ),
        (
            "/v2/%2e%2e/%2e%2e/etc/blobs/uploads/".to_owned(),
            [NOT_ALLOWED; 4],
        ),
        ("/v2/a/%2e%2e/b/tags/list".to_owned(), listing),
        ("//v2/etc/passwd/tags/list".to_owned(), [NOT_ENDPOINT; 4]),
        ("/v2//etc/passwd/tags/list".to_owned(), listing),
        ("/v2/a%00b/tags/list".to_owned(), listing),
        (
            "/v2/a/manifests/%00".to_owned(),
            [NO_MANIFEST, NO_MANIFEST, BAD_MANIFEST, NOT_ALLOWED],
        ),
        ("/v2/UPPER/tags/list".to_owned(), listing),
        (format!("/v2/{long}/tags/list"), listing),
        (
            "/v2/a/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd".to_owned(),
            [DIGEST, DIGEST, NOT_ALLOWED, NOT_ALLOWED],
        ),
        (
            format!("/v2/a/blobs/sha256:{}", "../".repeat(21) + "a"),
            [NOT_ENDPOINT; 4],
        ),
        (
            "/v2/a/blobs/sha384:aaaa".to_owned(),
            [DIGEST, DIGEST, NOT_ALLOWED, NOT_ALLOWED],
        ),
        (
            "/v2/a/blobs/uploads/..%2f..%2f..%2fetc".to_owned(),
            [NO_SESSION, NO_SESSION, DIGEST, NO_SESSION],
        ),
        (
            "/v2/a/manifests/..".to_owned(),
            [NO_MANIFEST, NO_MANIFEST, BAD_MANIFEST, NOT_ALLOWED],
        ),
        (format!("/v2/a/referrers/{d}/../../x"), [NOT_ENDPOINT; 4]),
        ("/v2/a/_tags/tags/list".to_owned(), listing),
    ];
    for (path, expected) in &cases {
        let methods = ["GET", "DELETE", "PUT", "PATCH"];
        for (method, (status, code)) in methods.into_iter().zip(expected) {
            let (got, body) = raw_request(s.addr(), method, path).await;
            assert_eq!(got, *status, "{method} {path}: {body}");
            assert!(
                body.contains(&format!("\"code\":\"{code}\"")),
                "{method} {path}: expected {code}: {body}"
            );
        }
    }
    for prefix in ["blobs/", "repos/", "catalog/"] {
        let stored = s.keys(prefix).await;
        assert!(stored.is_empty(), "bad requests stored {stored:?}");
    }
    if !testing_s3() {
        let files: Vec<_> = files_under(s.dir.path())
            .into_iter()
            .filter(|p| !p.ends_with(".lock"))
            .collect();
        assert!(files.is_empty(), "bad requests wrote {files:?}");
    }
}

#[tokio::test]
async fn repositories_are_isolated_and_content_is_stored_once() {
    let s = Server::start().await;
    let digest = s.push_blob("a/x", b"isolated").await;
    assert_error(
        s.get(&format!("/v2/b/y/blobs/{digest}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.head(&format!("/v2/b/y/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let (manifest, _) = s.push_image("a/x", "v1", "iso").await;
    assert_error(
        s.get(&format!("/v2/b/y/manifests/{manifest}")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_error(s.get("/v2/b/y/manifests/v1").await, 404, "MANIFEST_UNKNOWN").await;
    let mount = s
        .request(
            Method::POST,
            &format!("/v2/b/y/blobs/uploads/?mount={digest}&from=a/x"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(mount.status(), StatusCode::CREATED);
    assert_eq!(
        s.get(&format!("/v2/b/y/blobs/{digest}")).await.status(),
        StatusCode::OK
    );
    s.push_blob("c/z", b"isolated").await;
    let copies = s
        .content()
        .await
        .into_iter()
        .filter(|k| k.ends_with(digest.trim_start_matches("sha256:")))
        .count();
    assert_eq!(copies, 1, "content stored once");
}

#[tokio::test]
async fn a_crash_loses_only_what_was_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let acknowledged = b"acknowledged before the crash";
    let digest = sha256(acknowledged);
    let in_flight = sha256(b"half of this never arrives");
    {
        let marina = Process::start(dir.path(), &[]).await;
        let http = reqwest::Client::new();
        let response = http
            .post(format!(
                "{}/v2/crash/blobs/uploads/?digest={digest}",
                marina.base
            ))
            .body(&acknowledged[..])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let (_release, held) = tokio::sync::oneshot::channel();
        let url = format!("{}/v2/crash/blobs/uploads/?digest={in_flight}", marina.base);
        let pending = tokio::spawn(async move {
            http.post(url)
                .body(held_body(Bytes::from_static(b"half of this"), held))
                .send()
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        marina.signal("KILL");
        let _ = pending.await;
    }
    let marina = Process::start(dir.path(), &[]).await;
    let body = reqwest::get(format!("{}/v2/crash/blobs/{digest}", marina.base))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        sha256(&body),
        digest,
        "the acknowledged blob survived whole"
    );
    let lost = reqwest::get(format!("{}/v2/crash/blobs/{in_flight}", marina.base))
        .await
        .unwrap();
    assert_eq!(lost.status(), StatusCode::NOT_FOUND);
    let content: Vec<_> = files_under(&dir.path().join("blobs"));
    assert_eq!(
        content.len(),
        1,
        "only the acknowledged blob is content: {content:?}"
    );
}

/// Starts a session in `repo` and sends `chunk` as its first PATCH; returns the session URL.
async fn session_with_a_chunk(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    chunk: &[u8],
) -> String {
    let started = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let url = format!("{base}{}", header(&started, "Location"));
    let patched = http
        .patch(&url)
        .header("Content-Range", format!("0-{}", chunk.len() - 1))
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    url
}

/// The state file of the only upload session in `repo`.
fn session_state(storage: &std::path::Path, repo: &str) -> std::path::PathBuf {
    let states: Vec<_> = files_under(&storage.join("repos").join(repo))
        .into_iter()
        .filter(|p| p.ends_with("state"))
        .collect();
    assert_eq!(states.len(), 1, "one session in {repo}: {states:?}");
    states[0].clone()
}

#[tokio::test]
async fn chunks_outlive_a_killed_process_and_a_machine_crash_voids_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let blob = noise(300_000, 7);
    let (first, rest) = blob.split_at(100_000);
    let (kept, voided) = {
        let marina = Process::start(dir.path(), &[]).await;
        let kept = session_with_a_chunk(&http, &marina.base, "kept", first).await;
        let voided = session_with_a_chunk(&http, &marina.base, "voided", first).await;
        marina.signal("KILL");
        (kept, voided)
    };
    // A new boot id stands for a machine that went down: unsynced bytes may be gone.
    let state = session_state(dir.path(), "voided");
    let saved = std::fs::read_to_string(&state).unwrap();
    let rebooted = saved.replace("\"epoch\":\"", "\"epoch\":\"an-earlier-boot-");
    assert_ne!(saved, rebooted, "the state records the epoch: {saved}");
    std::fs::write(&state, rebooted).unwrap();

    let marina = Process::start(dir.path(), &[]).await;
    let move_to = |url: &str| url.replacen(url.split("/v2/").next().unwrap(), &marina.base, 1);
    let (kept, voided) = (move_to(&kept), move_to(&voided));
    let status = http.get(&kept).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "Range"), "0-99999");
    let digest = sha256(&blob);
    let finished = http
        .put(format!("{kept}?digest={digest}"))
        .header("Content-Range", format!("100000-{}", blob.len() - 1))
        .body(rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), StatusCode::CREATED);
    let stored = http
        .get(format!("{}/v2/kept/blobs/{digest}", marina.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.bytes().await.unwrap(), blob);

    assert_error(
        http.get(&voided).send().await.unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let resumed = http
        .patch(&voided)
        .header("Content-Range", format!("100000-{}", blob.len() - 1))
        .body(rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resumed, 404, "BLOB_UPLOAD_UNKNOWN").await;
    assert!(
        !state.exists(),
        "the voided session's files are gone: {:?}",
        files_under(&dir.path().join("repos/voided"))
    );
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut marina = Process::start(dir.path(), &[]).await;
    let data = b"finishes after SIGTERM";
    let digest = sha256(data);
    let (release, held) = tokio::sync::oneshot::channel();
    let url = format!("{}/v2/graceful/blobs/uploads/?digest={digest}", marina.base);
    let pending = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .body(held_body(Bytes::from_static(b"finishes "), held))
            .send()
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    marina.signal("TERM");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    release.send(Bytes::from_static(b"after SIGTERM")).unwrap();
    assert_eq!(
        pending.await.unwrap().unwrap().status(),
        StatusCode::CREATED
    );
    let status = tokio::task::spawn_blocking(move || marina.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "marina exited with {status}");
    assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
}

/// A store in memory that panics on keys containing `panic`, fails with an I/O error on keys
/// containing `broken` and with a full disk on keys containing `full`, in every operation; and
/// counts the most reads (`get` and `size`: existence checks) it ever had in flight at once.
#[derive(Debug, Default)]
struct FaultyStore(MemoryStore, InFlight);

/// Calls in flight now, and the most ever.
#[derive(Debug, Default)]
struct InFlight(
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicUsize,
);

impl FaultyStore {
    fn peak_reads(&self) -> usize {
        self.1.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs a read, counted in flight, a millisecond long at least.
    async fn counted<T>(&self, read: impl Future<Output = T>) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.1.0.fetch_add(1, SeqCst) + 1;
        self.1.1.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let result = read.await;
        self.1.0.fetch_sub(1, SeqCst);
        result
    }

    fn check(key: &Key) -> marina_store::Result<()> {
        let key = key.as_str();
        assert!(!key.contains("panic"), "injected panic");
        let fault = if key.contains("broken") {
            std::io::Error::other("disk on fire at /secret/path")
        } else if key.contains("full") {
            std::io::Error::from_raw_os_error(28)
        } else {
            return Ok(());
        };
        Err(marina_store::Error::io(key, fault))
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn get(&self, key: &Key) -> marina_store::Result<Bytes> {
        Self::check(key)?;
        self.counted(self.0.get(key)).await
    }
    async fn size(&self, key: &Key) -> marina_store::Result<u64> {
        Self::check(key)?;
        self.counted(self.0.size(key)).await
    }
    async fn read(&self, key: &Key, range: Range<u64>) -> marina_store::Result<ByteStream> {
        Self::check(key)?;
        self.0.read(key, range).await
    }
    async fn put(&self, key: &Key, value: Bytes) -> marina_store::Result<()> {
        Self::check(key)?;
        self.0.put(key, value).await
    }
    async fn delete(&self, key: &Key) -> marina_store::Result<()> {
        Self::check(key)?;
        self.0.delete(key).await
    }
    async fn delete_prefix(&self, prefix: &Key) -> marina_store::Result<()> {
        Self::check(prefix)?;
        self.0.delete_prefix(prefix).await
    }
    async fn list(
        &self,
        prefix: &Key,
        start_after: Option<&str>,
        limit: usize,
    ) -> marina_store::Result<Vec<String>> {
        self.0.list(prefix, start_after, limit).await
    }
    async fn append(
        &self,
        key: &Key,
        offset: u64,
        input: InputStream,
    ) -> marina_store::Result<Appended> {
        Self::check(key)?;
        self.0.append(key, offset, input).await
    }
    async fn promote(
        &self,
        staged: &Key,
        parts: &[Part],
        length: u64,
        to: &Key,
    ) -> marina_store::Result<()> {
        Self::check(staged)?;
        Self::check(to)?;
        self.0.promote(staged, parts, length, to).await
    }
}

#[tokio::test]
async fn panics_and_storage_faults_are_contained() {
    let s = Server::serve(
        Arc::new(FaultyStore::default()),
        marina_registry::Config::default(),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let panicked = s.get("/v2/panic/manifests/v1").await;
    assert_error(panicked, 500, "UNKNOWN").await;
    let failed = s.get("/v2/broken/manifests/v1").await;
    assert_eq!(header(&failed, "retry-after"), "5");
    let body = assert_error(failed, 503, "UNAVAILABLE").await;
    assert!(
        !body.contains("secret") && !body.contains("repos/"),
        "details leaked: {body}"
    );
    assert_eq!(
        s.get("/v2/").await.status(),
        StatusCode::OK,
        "still serving"
    );
    assert_eq!(s.push_blob("fine", b"ok").await, sha256(b"ok"));
}

/// An index naming hundreds of manifests is checked a bounded number at a time, not with one
/// store request per child all at once.
#[tokio::test]
async fn a_manifest_put_checks_its_references_a_bounded_number_at_a_time() {
    let store = Arc::new(FaultyStore::default());
    let s = Server::serve(
        store.clone(),
        marina_registry::Config::default(),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let config = s.push_blob("wide", b"{}").await;
    let config = format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#);
    let mut children = Vec::new();
    for i in 0..300 {
        let body = image_manifest(&config, &[], &format!(r#","annotations":{{"n":"{i}"}}"#));
        let digest = sha256(body.as_bytes());
        let put = s
            .put_manifest("wide", &digest, OCI_MANIFEST, body.as_bytes())
            .await;
        assert_eq!(put.status(), StatusCode::CREATED);
        children.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{}}}"#,
            body.len()
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        children.join(",")
    );
    let before = store.peak_reads();
    let put = s
        .put_manifest("wide", "all", OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let peak = store.peak_reads();
    assert!(
        peak > before.max(1),
        "the checks ran one at a time (peak {peak})"
    );
    assert!(peak <= 32, "{peak} existence checks at once");
}

/// Every write path meets the fault: a session start, a chunk, a commit, a manifest, a delete.
#[tokio::test]
async fn a_full_disk_answers_507_and_other_faults_503_on_every_write() {
    let s = Server::serve(
        Arc::new(FaultyStore::default()),
        marina_registry::Config::default(),
        tempfile::tempdir().unwrap(),
    )
    .await;
    for (repo, status, message) in [
        ("full", 507, "out of storage space"),
        ("broken", 503, "try again"),
    ] {
        let start = s
            .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        let body = assert_error(start, status, "UNAVAILABLE").await;
        assert!(body.contains(message), "{repo}: {body}");
        let digest = sha256(b"x");
        let single = s
            .request(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .body(b"x".to_vec())
            .send()
            .await
            .unwrap();
        assert_error(single, status, "UNAVAILABLE").await;
        let manifest = image_manifest(&descriptor(EMPTY_JSON, b"{}"), &[], "");
        let put = s
            .put_manifest(repo, "v1", OCI_MANIFEST, manifest.as_bytes())
            .await;
        assert_error(put, status, "UNAVAILABLE").await;
        let delete = s.request(Method::DELETE, &format!("/v2/{repo}/blobs/{digest}"));
        assert_error(delete.send().await.unwrap(), status, "UNAVAILABLE").await;
    }
    let catalog = s.get("/v2/_catalog").await.text().await.unwrap();
    assert!(
        !catalog.contains("full") && !catalog.contains("broken"),
        "{catalog}"
    );
}

fn run_marina(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_marina"));
    command
        .args(args)
        .env_remove("MARINA_CONFIG")
        .env_remove("STORAGE_PATH")
        .env_remove("MARINA_LISTEN");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run marina");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout),
    )
}

#[test]
fn bad_configuration_names_its_source_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run_marina(&["--listen", "nonsense"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("flag --listen") && out.contains("nonsense") && out.contains("HOST:PORT"),
        "{out}"
    );
    let (code, out) = run_marina(&[], &[("MARINA_DELETE_ENABLED", "maybe")]);
    assert_eq!(code, 2);
    assert!(
        out.contains("environment variable MARINA_DELETE_ENABLED")
            && out.contains("maybe")
            && out.contains("true or false"),
        "{out}"
    );
    let (code, out) = run_marina(&[], &[("STORAGE_DRIVER", "floppy")]);
    assert_eq!(code, 2);
    assert!(
        out.contains("STORAGE_DRIVER") && out.contains("floppy"),
        "{out}"
    );
    let file = dir.path().join("marina.toml");
    std::fs::write(&file, "upload_expiry = \"soon\"\n").unwrap();
    let (code, out) = run_marina(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        out.contains("key upload_expiry") && out.contains("soon"),
        "{out}"
    );
    std::fs::write(&file, "[storage]\npth = \"/x\"\n").unwrap();
    let (code, out) = run_marina(&[], &[("MARINA_CONFIG", file.to_str().unwrap())]);
    assert_eq!(code, 2);
    assert!(out.contains("unknown key storage.pth"), "{out}");
    let (code, out) = run_marina(&["--help"], &[]);
    assert_eq!(code, 0);
    for option in [
        "--listen",
        "--storage-driver",
        "--storage-path",
        "--delete-enabled",
        "--max-manifest-size",
        "--upload-expiry",
        "--mount-without-from",
        "--log-level",
        "--log-format",
        "--config",
    ] {
        assert!(out.contains(option), "--help lacks {option}");
    }
}

#[tokio::test]
async fn flags_beat_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("marina.toml");
    std::fs::write(&file, "delete_enabled = false\nmax_manifest_size = \"1KiB\"\n[storage]\npath = \"/nonexistent/never/used\"\n").unwrap();
    let data = dir.path().join("data");
    let env_data = dir.path().join("env-data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--storage-path",
            data.to_str().unwrap(),
        ])
        .env("STORAGE_PATH", env_data.to_str().unwrap())
        .env("MARINA_DELETE_ENABLED", "true")
        .env("MARINA_LOG_LEVEL", "warn")
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if reqwest::get(format!("{base}/v2/")).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ready);
    let http = reqwest::Client::new();
    let digest = sha256(b"x");
    http.post(format!("{base}/v2/p/blobs/uploads/?digest={digest}"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(
        data.join("blobs").exists(),
        "the flag's storage path won over the environment's"
    );
    assert!(!env_data.exists());
    let deleted = http
        .delete(format!("{base}/v2/p/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.status(),
        StatusCode::ACCEPTED,
        "the environment's delete_enabled won over the file's"
    );
    let big = format!(
        r#"{{"schemaVersion":2,"manifests":[],"annotations":{{"a":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let refused = http
        .put(format!("{base}/v2/p/manifests/t"))
        .header("Content-Type", OCI_INDEX)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "the file's limit applies where nothing overrides it"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upload_sessions_expire_and_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let marina = Process::start(dir.path(), &["--upload-expiry", "1s"]).await;
    let http = reqwest::Client::new();
    let start = http
        .post(format!("{}/v2/expiring/blobs/uploads/", marina.base))
        .send()
        .await
        .unwrap();
    let location = header(&start, "Location").to_owned();
    let patched = http
        .patch(format!("{}{location}", marina.base))
        .body("some bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    let uploads = dir.path().join("repos/expiring/_uploads");
    assert_eq!(
        std::fs::read_dir(&uploads).unwrap().count(),
        1,
        "the session is stored"
    );
    // Nobody touches the session: the background purge removes it.
    let mut purged = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let left = match std::fs::read_dir(&uploads) {
            Ok(entries) => entries.count(),
            // The purge may remove the emptied folder too; it was there before (checked above).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("reading {}: {e}", uploads.display()),
        };
        let marker = dir.path().join("uploading/expiring/_repo");
        if left == 0 && !marker.exists() {
            purged = true;
            break;
        }
    }
    assert!(
        purged,
        "the idle session and its repository's marker were purged"
    );
    let late = http
        .get(format!("{}{location}", marina.base))
        .send()
        .await
        .unwrap();
    assert_error(late, 404, "BLOB_UPLOAD_UNKNOWN").await;
}
