//! Webhooks: a local HTTP sink records what it receives while it rejects half the deliveries,
//! goes away for a while, and marina is killed and restarted: every push still arrives, once
//! accepted, in order per repository, and no push waited for the sink. The CloudEvents form
//! carries the spec's required attributes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// What the sink received: its answer's status, the body and its content type.
#[derive(Clone, Debug)]
struct Received {
    status: u16,
    body: serde_json::Value,
    content_type: String,
}

/// A local webhook endpoint on a fixed port, which may reject every other delivery and may be
/// taken down (its port closed) and brought back.
struct Sink {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    flaky: Arc<AtomicBool>,
    tries: Arc<AtomicUsize>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Sink {
    async fn start(flaky: bool) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Arc::new(Self {
            port: listener.local_addr().unwrap().port(),
            received: Arc::default(),
            flaky: Arc::new(AtomicBool::new(flaky)),
            tries: Arc::default(),
            server: Mutex::new(None),
        });
        sink.serve(listener);
        sink
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn serve(self: &Arc<Self>, listener: TcpListener) {
        let sink = Arc::clone(self);
        // The connections live in the server task's set: aborting it closes them too.
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(Arc::clone(&sink).answer(stream));
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// Closes the port: deliveries are refused until [`Sink::up`].
    fn down(&self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }

    async fn up(self: &Arc<Self>) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    /// Answers requests on one connection until it closes.
    async fn answer(self: Arc<Self>, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        loop {
            let Some((head, body)) = read_request(&mut stream, &mut buffer).await else {
                return;
            };
            let try_number = self.tries.fetch_add(1, Ordering::SeqCst);
            let status = if self.flaky.load(Ordering::SeqCst) && try_number.is_multiple_of(2) {
                503
            } else {
                200
            };
            let content_type = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-type")
                        .then(|| value.trim().to_owned())
                })
                .unwrap_or_default();
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            self.received.lock().unwrap().push(Received {
                status,
                body,
                content_type,
            });
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// The deliveries it accepted.
    fn accepted(&self) -> Vec<Received> {
        let all = self.received.lock().unwrap();
        all.iter().filter(|r| r.status == 200).cloned().collect()
    }
}

/// One HTTP/1.1 request with a Content-Length body: its head and body.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            let body = buffer[end + 4..end + 4 + length].to_vec();
            buffer.drain(..end + 4 + length);
            return Some((head, body));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn config(dir: &Path, sink: &Sink, cloud: &Sink) -> String {
    let text = format!(
        r#"
[[notifications.endpoints]]
name = "ci"
url = "{}"
headers = {{ Authorization = "Bearer sink-secret" }}
timeout = "2s"
backoff = "1s"

[[notifications.endpoints]]
name = "audit"
url = "{}"
format = "cloudevents"
events = ["push"]
repositories = ["hooks/r0"]
"#,
        sink.url(),
        cloud.url()
    );
    let path = dir.join("marina.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Pushes the shared config and layer into `repo`, then a manifest tagged `tag` that differs
/// from every other by its annotation; returns its digest and size.
async fn push_tagged(base: &str, repo: &str, tag: &str) -> (String, Duration) {
    let client = reqwest::Client::new();
    let (config, layer) = (b"{}".to_vec(), b"hook layer".to_vec());
    for blob in [&config, &layer] {
        let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={}", sha256(blob));
        let answer = client.post(url).body(blob.clone()).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::CREATED);
    }
    let manifest = image_manifest(
        &descriptor("application/vnd.oci.image.config.v1+json", &config),
        &[descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
        &format!(r#","annotations":{{"tag":"{tag}"}}"#),
    );
    let started = Instant::now();
    let answer = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(answer.status(), StatusCode::CREATED, "{repo}:{tag}");
    (sha256(manifest.as_bytes()), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_push_arrives_in_order_through_a_flaky_sink_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, cloud) = (Sink::start(true).await, Sink::start(false).await);
    let config = config(dir.path(), &sink, &cloud);
    let data = dir.path().join("data");
    let mut marina = Process::start(&data, &["--config", &config]).await;
    let mut pushed: HashMap<String, (String, String)> = HashMap::new();
    let mut slowest_while_down = Duration::ZERO;
    for i in 0..100 {
        if i == 30 {
            sink.down();
        }
        if i == 60 {
            // kill -9 with events still waiting: the spool must bring them back.
            drop(marina);
            marina = Process::start(&data, &["--config", &config]).await;
            sink.up().await;
        }
        let (repo, tag) = (format!("hooks/r{}", i % 4), format!("t{i:03}"));
        let (digest, took) = push_tagged(&marina.base, &repo, &tag).await;
        if (30..60).contains(&i) {
            slowest_while_down = slowest_while_down.max(took);
        }
        pushed.insert(tag, (repo, digest));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while sink.accepted().len() < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let accepted = sink.accepted();
    let events: Vec<&serde_json::Value> = accepted.iter().map(|r| &r.body["events"][0]).collect();
    let mut tags: Vec<&str> = events
        .iter()
        .map(|e| e["target"]["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        events.len(),
        100,
        "every push arrived exactly once: {tags:?}"
    );
    let mut by_repo: HashMap<&str, Vec<&str>> = HashMap::new();
    for event in &events {
        let (repo, tag) = (
            event["target"]["repository"].as_str().unwrap(),
            event["target"]["tag"].as_str().unwrap(),
        );
        by_repo.entry(repo).or_default().push(tag);
        let (want_repo, want_digest) = &pushed[tag];
        assert_eq!(repo, want_repo);
        assert_eq!(event["action"], "push");
        assert_eq!(event["target"]["digest"], want_digest.as_str());
        assert_eq!(event["target"]["mediaType"], OCI_MANIFEST);
        assert!(event["target"]["size"].as_u64().unwrap() > 100);
        assert_eq!(event["request"]["method"], "PUT");
        assert!(
            event["source"]["instanceID"]
                .as_str()
                .is_some_and(|i| !i.is_empty())
        );
        assert!(event["id"].as_str().is_some_and(|i| i.len() == 32));
    }
    for (repo, order) in &by_repo {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, &sorted, "{repo}: events arrive in push order");
    }
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), 100);
    assert!(
        accepted
            .iter()
            .all(|r| r.content_type == "application/vnd.docker.distribution.events.v1+json")
    );
    let rejected = sink.received.lock().unwrap().len() - accepted.len();
    assert!(
        rejected >= 50,
        "the sink rejected {rejected} deliveries: half of them"
    );
    assert!(
        slowest_while_down < Duration::from_secs(2),
        "a push waited {slowest_while_down:?} for the absent sink"
    );

    // The CloudEvents endpoint takes pushes of hooks/r0 only.
    let clouds = cloud.accepted();
    assert_eq!(
        clouds.len(),
        25,
        "the audit endpoint gets hooks/r0's 25 pushes"
    );
    for received in &clouds {
        assert_eq!(received.content_type, "application/cloudevents+json");
        let event = &received.body;
        for attribute in ["id", "source", "specversion", "type"] {
            assert!(
                event[attribute].as_str().is_some_and(|v| !v.is_empty()),
                "{attribute} in {event}"
            );
        }
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "io.marina.registry.push");
        assert_eq!(event["data"]["target"]["repository"], "hooks/r0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_sent_with_the_actor_and_pulls_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(false).await;
    let users = dir.path().join("users");
    std::fs::write(
        &users,
        format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    let config = dir.path().join("marina.toml");
    std::fs::write(
        &config,
        format!(
            "[auth.token]\nenabled = false\n\n[[notifications.endpoints]]\nname = \"all\"\nurl = \"{}\"\nevents = [\"push\", \"pull\", \"delete\"]\n",
            sink.url()
        ),
    )
    .unwrap();
    let (config, users) = (config.display().to_string(), users.display().to_string());
    let marina = Process::start(
        &dir.path().join("data"),
        &["--config", &config, "--auth-htpasswd", &users],
    )
    .await;
    let client = reqwest::Client::new();
    let base = &marina.base;
    let blob = b"a blob to pull and delete".to_vec();
    let digest = sha256(&blob);
    let push = client
        .post(format!("{base}/v2/del/app/blobs/uploads/?digest={digest}"))
        .basic_auth("alice", Some("pw"))
        .body(blob.clone());
    assert_eq!(push.send().await.unwrap().status(), StatusCode::CREATED);
    let pull = client
        .get(format!("{base}/v2/del/app/blobs/{digest}"))
        .basic_auth("alice", Some("pw"));
    assert_eq!(pull.send().await.unwrap().status(), StatusCode::OK);
    let delete = client
        .delete(format!("{base}/v2/del/app/blobs/{digest}"))
        .basic_auth("alice", Some("pw"));
    assert_eq!(delete.send().await.unwrap().status(), StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.accepted().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: Vec<serde_json::Value> = sink
        .accepted()
        .iter()
        .map(|r| r.body["events"][0].clone())
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["pull", "delete"],
        "a blob upload is not an event; pull and delete are"
    );
    for event in &events {
        assert_eq!(event["actor"]["name"], "alice");
        assert_eq!(event["target"]["digest"], digest.as_str());
        assert_eq!(event["target"]["repository"], "del/app");
    }
    assert_eq!(events[0]["target"]["size"], blob.len());
}
