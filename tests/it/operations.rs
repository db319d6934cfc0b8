//! Running marina in production: `/metrics` counts the traffic sent (and `promtool` accepts
//! it), `/healthz` and `/readyz` on both ports, readiness following the bucket on S3, and
//! read-only mode refusing every write until SIGHUP turns it off.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::common::*;
use crate::garage;

/// marina on the filesystem with the operations listener on a port of its own.
async fn with_metrics(storage: &Path, extra: &[&str]) -> (Process, String) {
    let ops = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--metrics-listen", ops.as_str()];
    args.extend_from_slice(extra);
    (
        Process::start(storage, &args).await,
        format!("http://{ops}"),
    )
}

/// Every sample of a scrape, by its series (`name{labels}`).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(all: &HashMap<String, f64>, series: &str) -> f64 {
    *all.get(series)
        .unwrap_or_else(|| panic!("{series} is not in the scrape"))
}

async fn send(method: Method, url: &str, body: Vec<u8>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let request = client.request(method, url).body(body);
    request.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_sent_and_promtool_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (marina, ops) = with_metrics(dir.path(), &[]).await;
    let before = samples(
        &reqwest::get(format!("{ops}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let base_before = before
        .get(
            r#"marina_http_request_duration_seconds_count{method="GET",route="/v2/",status="200"}"#,
        )
        .copied()
        .unwrap_or(0.0);
    for _ in 0..7 {
        let answer = send(Method::GET, &format!("{}/v2/", marina.base), Vec::new()).await;
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let blob = noise(100_000, 3);
    let digest = sha256(&blob);
    let push = format!("{}/v2/ops/app/blobs/uploads/?digest={digest}", marina.base);
    assert_eq!(
        send(Method::POST, &push, blob.clone()).await.status(),
        StatusCode::CREATED
    );
    for _ in 0..3 {
        let url = format!("{}/v2/ops/app/blobs/{digest}", marina.base);
        let pulled = send(Method::GET, &url, Vec::new()).await;
        assert_eq!(pulled.bytes().await.unwrap().len(), blob.len());
    }
    for tag in ["a", "b"] {
        let missing = format!("{}/v2/ops/app/manifests/{tag}", marina.base);
        assert_eq!(
            send(Method::HEAD, &missing, Vec::new()).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    let text = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let after = samples(&text);
    let count = |method: &str, route: &str, status: u16| {
        sample(
            &after,
            &format!(
                r#"marina_http_request_duration_seconds_count{{method="{method}",route="{route}",status="{status}"}}"#
            ),
        )
    };
    assert_eq!(count("GET", "/v2/", 200) - base_before, 7.0);
    assert_eq!(count("POST", "/v2/<name>/blobs/uploads/", 201), 1.0);
    assert_eq!(count("GET", "/v2/<name>/blobs/<digest>", 200), 3.0);
    assert_eq!(count("HEAD", "/v2/<name>/manifests/<reference>", 404), 2.0);
    let bytes = |kind: &str, method: &str, route: &str| {
        sample(
            &after,
            &format!(r#"marina_http_{kind}_bytes_total{{method="{method}",route="{route}"}}"#),
        )
    };
    assert_eq!(
        bytes("request", "POST", "/v2/<name>/blobs/uploads/"),
        100_000.0
    );
    assert_eq!(
        bytes("response", "GET", "/v2/<name>/blobs/<digest>"),
        300_000.0
    );
    assert_eq!(sample(&after, "marina_upload_sessions_open"), 0.0);
    let start = format!("{}/v2/ops/app/blobs/uploads/", marina.base);
    for _ in 0..2 {
        assert_eq!(
            send(Method::POST, &start, Vec::new()).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let scrape = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&samples(&scrape), "marina_upload_sessions_open"),
        2.0,
        "two sessions open"
    );
    assert!(sample(&after, "process_resident_memory_bytes") > 1e6);
    assert!(
        after.keys().any(|k| k.starts_with(
            r#"marina_store_operation_duration_seconds_count{backend="filesystem",operation="promote"}"#
        )),
        "store operations are timed by backend and operation"
    );
    assert!(
        !text.contains("ops/app"),
        "a repository name became a label value"
    );
    promtool_accepts(&text);
}

/// `promtool check metrics` (Debian's prometheus package, installed by scripts/setup.sh).
fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs: install Debian's prometheus package (scripts/setup.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_on_both_ports_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, format!("u:{}\n", bcrypt::hash("p", 4).unwrap())).unwrap();
    let users = users.display().to_string();
    let (marina, ops) = with_metrics(&dir.path().join("data"), &["--auth-htpasswd", &users]).await;
    for base in [&marina.base, &ops] {
        let healthy = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(healthy.status(), StatusCode::OK, "{base}/healthz");
        let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK, "{base}/readyz");
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready");
    }
    let api = reqwest::get(format!("{}/v2/", marina.base)).await.unwrap();
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "the API still asks for credentials"
    );
    let elsewhere = reqwest::get(format!("{ops}/v2/")).await.unwrap();
    assert_eq!(
        elsewhere.status(),
        StatusCode::NOT_FOUND,
        "the operations port serves no API"
    );
    let left = std::fs::read_dir(dir.path().join("data").join("health")).map(|d| d.count());
    assert_eq!(left.unwrap_or(0), 0, "probes leave no keys behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let node = garage::Node::new_single(dir.path());
    let env = garage::s3_env(&node.endpoint(), &garage::unique_prefix("ready"));
    let ops = format!("127.0.0.1:{}", free_port());
    let marina = Process::spawn(&["--metrics-listen".into(), ops.clone()], &env).await;
    let ready = |base: String| async move {
        let answer = reqwest::get(format!("{base}/readyz")).await.unwrap();
        let status = answer.status();
        (status, answer.json::<serde_json::Value>().await.unwrap())
    };
    let wait_for = |want: StatusCode| {
        let base = marina.base.clone();
        async move {
            for _ in 0..100 {
                let (status, body) = ready(base.clone()).await;
                if status == want {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("/readyz never answered {want}");
        }
    };
    wait_for(StatusCode::OK).await;
    node.kill();
    let body = wait_for(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["status"], "unready");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a reason is given: {body}"
    );
    let (status, _) = ready(format!("http://{ops}")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the operations port agrees"
    );
    let healthy = reqwest::get(format!("{}/healthz", marina.base))
        .await
        .unwrap();
    assert_eq!(
        healthy.status(),
        StatusCode::OK,
        "alive while the bucket is away"
    );
    node.start(true);
    wait_for(StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_every_write_until_sighup_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("marina.toml");
    std::fs::write(&config, "read_only = false\n").unwrap();
    let config_arg = config.display().to_string();
    let marina = Process::start(&dir.path().join("data"), &["--config", &config_arg]).await;
    let base = marina.base.clone();
    let blob = b"pushed before maintenance".to_vec();
    let digest = sha256(&blob);
    let push = format!("{base}/v2/ro/app/blobs/uploads/?digest={digest}");
    assert_eq!(
        send(Method::POST, &push, blob.clone()).await.status(),
        StatusCode::CREATED
    );
    let config_json = b"{}".to_vec();
    let config_digest = sha256(&config_json);
    let start = format!("{base}/v2/ro/app/blobs/uploads/?digest={config_digest}");
    assert_eq!(
        send(Method::POST, &start, config_json.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    let manifest = image_manifest(
        &descriptor("application/vnd.oci.image.config.v1+json", &config_json),
        &[descriptor("application/vnd.oci.image.layer.v1.tar", &blob)],
        "",
    );
    let put = |tag: &str| {
        reqwest::Client::new()
            .put(format!("{base}/v2/ro/app/manifests/{tag}"))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
    };
    assert_eq!(put("v1").await.unwrap().status(), StatusCode::CREATED);

    std::fs::write(&config, "read_only = true\n").unwrap();
    marina.signal("HUP");
    let other = b"refused while read-only".to_vec();
    let refused = format!("{base}/v2/ro/app/blobs/uploads/?digest={}", sha256(&other));
    let mut status = StatusCode::CREATED;
    for _ in 0..50 {
        status = send(Method::POST, &refused, other.clone()).await.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "SIGHUP turned read-only on"
    );
    let writes = [
        (Method::POST, format!("{base}/v2/ro/app/blobs/uploads/")),
        (
            Method::POST,
            format!("{base}/v2/ro/other/blobs/uploads/?mount={digest}&from=ro/app"),
        ),
        (Method::DELETE, format!("{base}/v2/ro/app/manifests/v1")),
        (Method::DELETE, format!("{base}/v2/ro/app/blobs/{digest}")),
    ];
    for (method, url) in writes {
        let answer = send(method.clone(), &url, Vec::new()).await;
        let message = assert_error(answer, 405, "UNSUPPORTED").await;
        assert!(message.contains("read-only"), "{method} {url}: {message}");
    }
    let moved = put("v2").await.unwrap();
    assert_error(moved, 405, "UNSUPPORTED").await;
    let reads = [
        format!("{base}/v2/ro/app/manifests/v1"),
        format!("{base}/v2/ro/app/blobs/{digest}"),
        format!("{base}/v2/ro/app/tags/list"),
        format!("{base}/v2/_catalog"),
        format!("{base}/v2/ro/app/referrers/{digest}"),
    ];
    for url in reads {
        let answer = send(Method::GET, &url, Vec::new()).await;
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "{url} is served while read-only"
        );
    }

    std::fs::write(&config, "read_only = false\n").unwrap();
    marina.signal("HUP");
    for _ in 0..50 {
        status = send(Method::POST, &refused, other.clone()).await.status();
        if status == StatusCode::CREATED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::CREATED, "SIGHUP turned read-only off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_from_the_flag_refuses_pushes_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let marina = Process::start(dir.path(), &["--read-only"]).await;
    let blob = b"never stored".to_vec();
    let push = format!(
        "{}/v2/x/blobs/uploads/?digest={}",
        marina.base,
        sha256(&blob)
    );
    assert_error(send(Method::POST, &push, blob).await, 405, "UNSUPPORTED").await;
    let catalog = send(
        Method::GET,
        &format!("{}/v2/_catalog", marina.base),
        Vec::new(),
    )
    .await;
    assert_eq!(catalog.status(), StatusCode::OK);
    let ready = send(Method::GET, &format!("{}/readyz", marina.base), Vec::new()).await;
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "a read-only replica is ready"
    );
    // The configuration of a running server can be checked beside it (no storage lock taken).
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
        .args(["config", "check", "--read-only", "--storage-path"])
        .arg(dir.path())
        .env_remove("MARINA_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("read_only") && said.contains("is writable"),
        "{said}"
    );
}

/// The example configuration of docs/ sets every key; each must resolve from the file (the
/// storage folder is moved to a temporary one by a flag, and its TLS and auth files are
/// missing here, which is all `config check` may complain of).
#[test]
fn the_example_configuration_resolves_every_key_from_the_file() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/marina.example.toml");
    let storage = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
        .args(["config", "check", "--config"])
        .arg(&example)
        .arg("--storage-path")
        .arg(storage.path())
        .env_remove("MARINA_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(!said.contains("FAIL configuration"), "{said}");
    let table: toml::Table = std::fs::read_to_string(&example).unwrap().parse().unwrap();
    let mut keys = Vec::new();
    leaves(&table, "", &mut keys);
    assert!(keys.len() > 25, "{keys:?}");
    for key in keys.iter().filter(|k| *k != "storage.path") {
        let line = format!("(key {key} in {})", example.display());
        assert!(
            said.contains(&line),
            "{key} was not read from the file:\n{said}"
        );
    }
    assert!(said.contains("Authorization: (redacted)"), "{said}");
    assert!(
        !said.contains("change-me"),
        "a webhook's secret header was printed:\n{said}"
    );
    let failures: Vec<&str> = said.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failures
            .iter()
            .all(|l| l.starts_with("FAIL tls") || l.starts_with("FAIL auth")),
        "{said}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "the missing files fail the check: {said}"
    );
}

/// The dotted keys of scalar settings (tables of settings recursed; rule and endpoint lists,
/// and the groups table, which are read whole, left out).
fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let dotted = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) if dotted != "auth.groups" => {
                leaves(inner, &format!("{dotted}."), out)
            }
            toml::Value::Table(_) => {}
            toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {}
            _ => out.push(dotted),
        }
    }
}

/// A collection records its metrics; read-only mode refuses `/admin/gc` and skips online runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_is_measured_and_read_only_mode_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (marina, ops) = with_metrics(dir.path(), &["--gc-interval", "0", "--gc-grace", "1s"]).await;
    let data = b"a layer nobody will use".to_vec();
    let digest = sha256(&data);
    let url = format!(
        "{}/v2/gc/metrics/blobs/uploads/?digest={digest}",
        marina.base
    );
    assert_eq!(
        send(Method::POST, &url, data).await.status(),
        StatusCode::CREATED
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = send(
        Method::POST,
        &format!("{}/admin/gc", marina.base),
        Vec::new(),
    )
    .await;
    let lines = run.text().await.unwrap();
    assert!(
        lines.lines().last().unwrap().contains("\"report\""),
        "{lines}"
    );
    let scrape = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let all = samples(&scrape);
    assert_eq!(sample(&all, "marina_gc_runs_total{outcome=\"ok\"}"), 1.0);
    // The blob link, its content and the repository's catalog entry.
    assert_eq!(sample(&all, "marina_gc_objects_freed_total"), 3.0);
    assert_eq!(sample(&all, "marina_gc_bytes_freed_total"), 23.0);
    assert!(sample(&all, "marina_gc_objects_scanned_total") >= 3.0);

    let read_only = Process::start(dir.path().join("ro").as_path(), &["--read-only"]).await;
    let refused = send(
        Method::POST,
        &format!("{}/admin/gc", read_only.base),
        Vec::new(),
    )
    .await;
    assert_error(refused, 405, "UNSUPPORTED").await;
}
