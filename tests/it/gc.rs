//! Garbage collection and retention, one rule at a time: what goes, what stays (children of
//! tagged indexes, referrers of live subjects, what is younger than the grace period), immutable
//! tags, the dry run, `marina gc` against a running server, and `kill -9` in the middle of a
//! sweep.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use marina_oci::RepoPattern;
use marina_registry::gc::{Kind, Options, Progress, Report};
use marina_registry::retention::Retention;
use marina_registry::{Config, Registry};
use reqwest::{Method, StatusCode};

use crate::common::*;

fn policy(pattern: &str, edit: impl FnOnce(&mut Retention)) -> Retention {
    let mut p = Retention {
        pattern_text: pattern.into(),
        pattern: RepoPattern::parse(pattern).unwrap(),
        delete_untagged: false,
        keep_last: None,
        keep_younger_than: None,
        keep_tags: Vec::new(),
        immutable_tags: Vec::new(),
    };
    edit(&mut p);
    p
}

fn config(grace: Duration, retention: Vec<Retention>) -> Config {
    Config {
        gc_grace: grace,
        retention,
        ..Config::default()
    }
}

/// A server, and a registry over the same store to collect with (another replica, in effect).
async fn server(config: Config) -> (Server, Registry) {
    let server = Server::start_with(config.clone()).await;
    let collector = Registry::new(Arc::clone(&server.store), config);
    (server, collector)
}

async fn collect(registry: &Registry) -> Report {
    registry
        .collect_garbage(Options::default(), &Progress::default())
        .await
        .expect("gc run")
}

/// Every key the store holds, but the probes of readiness.
async fn all_keys(server: &Server) -> Vec<String> {
    let mut keys = Vec::new();
    for prefix in ["blobs/", "repos/", "catalog/", "uploading/", "gc/"] {
        keys.extend(
            server
                .keys(prefix)
                .await
                .into_iter()
                .map(|k| format!("{prefix}{k}")),
        );
    }
    keys
}

async fn delete(server: &Server, repo: &str, reference: &str) -> StatusCode {
    let path = format!("/v2/{repo}/manifests/{reference}");
    server
        .request(Method::DELETE, &path)
        .send()
        .await
        .unwrap()
        .status()
}

async fn manifest_status(server: &Server, repo: &str, reference: &str) -> StatusCode {
    server
        .head(&format!("/v2/{repo}/manifests/{reference}"))
        .await
        .status()
}

async fn blob_status(server: &Server, repo: &str, digest: &str) -> StatusCode {
    server
        .head(&format!("/v2/{repo}/blobs/{digest}"))
        .await
        .status()
}

#[tokio::test]
async fn deleted_images_go_shared_layers_stay_and_storage_ends_empty() {
    let (server, gc) = server(config(Duration::from_millis(1), Vec::new())).await;
    let (a, _) = server.push_image("gc/a", "1", "alpha").await;
    let (b, _) = server.push_image("gc/b", "1", "beta").await;
    // One layer shared by both repositories.
    let shared = server.push_blob("gc/a", b"shared layer").await;
    server.push_blob("gc/b", b"shared layer").await;
    let stray = server.push_blob("gc/a", b"never used").await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    assert_eq!(delete(&server, "gc/a", &a).await, StatusCode::ACCEPTED);
    let report = collect(&gc).await;
    assert!(report.objects_freed > 0, "{report:?}");
    assert_eq!(manifest_status(&server, "gc/b", &b).await, StatusCode::OK);
    assert_eq!(
        blob_status(&server, "gc/b", &shared).await,
        StatusCode::NOT_FOUND,
        "a layer no manifest uses goes after the grace period"
    );
    assert_eq!(
        blob_status(&server, "gc/a", &stray).await,
        StatusCode::NOT_FOUND
    );
    let catalog: serde_json::Value = server.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["gc/b"]),
        "gc/a is empty and gone"
    );

    assert_eq!(delete(&server, "gc/b", &b).await, StatusCode::ACCEPTED);
    collect(&gc).await;
    assert_eq!(
        all_keys(&server).await,
        Vec::<String>::new(),
        "storage returns to empty"
    );
}

#[tokio::test]
async fn untagged_manifests_go_but_never_children_of_a_tagged_index_or_referrers_of_live_subjects()
{
    let untagged = policy("kept/**", |_| {});
    let pruned = policy("pruned/**", |p| p.delete_untagged = true);
    let (server, gc) = server(config(Duration::from_millis(1), vec![pruned, untagged])).await;
    for repo in ["pruned/x", "kept/x"] {
        let (tagged, _) = server
            .push_image(repo, "tagged", &format!("{repo} tagged"))
            .await;
        let (loose, _) = server
            .push_image(repo, "loose", &format!("{repo} loose"))
            .await;
        // Children of a tagged index, untagged themselves.
        let (c1, m1) = server.push_image(repo, "c1", &format!("{repo} c1")).await;
        let (c2, m2) = server.push_image(repo, "c2", &format!("{repo} c2")).await;
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{}]}}"#,
            descriptor(OCI_MANIFEST, &m1),
            descriptor(OCI_MANIFEST, &m2)
        );
        let put = server
            .put_manifest(repo, "index", OCI_INDEX, index.as_bytes())
            .await;
        assert_eq!(put.status(), StatusCode::CREATED);
        // A signature of the tagged image, and one of the loose image.
        let live_sig = push_referrer(&server, repo, &tagged, "sig of tagged").await;
        let dead_sig = push_referrer(&server, repo, &loose, "sig of loose").await;
        for tag in ["loose", "c1", "c2"] {
            assert_eq!(delete(&server, repo, tag).await, StatusCode::ACCEPTED);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        collect(&gc).await;

        let kept = |d: &str| (d.to_owned(), StatusCode::OK);
        let mut expected = vec![kept(&tagged), kept(&c1), kept(&c2), kept(&live_sig)];
        let gone = if repo.starts_with("pruned") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        expected.push((loose.clone(), gone));
        expected.push((dead_sig.clone(), gone));
        for (digest, status) in expected {
            assert_eq!(
                manifest_status(&server, repo, &digest).await,
                status,
                "{repo} {digest}"
            );
        }
        let referrers: serde_json::Value = server
            .get(&format!("/v2/{repo}/referrers/{loose}"))
            .await
            .json()
            .await
            .unwrap();
        let left = referrers["manifests"].as_array().unwrap().len();
        assert_eq!(
            left,
            usize::from(gone == StatusCode::OK),
            "{repo}: referrers of the loose image"
        );
    }
}

/// Pushes an artifact whose subject is `subject`; returns its digest.
async fn push_referrer(server: &Server, repo: &str, subject: &str, seed: &str) -> String {
    server.push_blob(repo, b"{}").await;
    let layer = server.push_blob(repo, seed.as_bytes()).await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x.sig","config":{},"layers":[{{"mediaType":"application/x.sig","digest":"{layer}","size":{}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":1}}}}"#,
        descriptor(EMPTY_JSON, b"{}"),
        seed.len()
    );
    let digest = sha256(manifest.as_bytes());
    let put = server
        .put_manifest(repo, &digest, OCI_MANIFEST, manifest.as_bytes())
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    digest
}

#[tokio::test]
async fn keep_last_and_keep_tags_prune_tags_by_push_time() {
    let rule = policy("team/**", |p| {
        p.delete_untagged = true;
        p.keep_last = Some(2);
        p.keep_tags = vec!["release-*".into()];
    });
    let (server, gc) = server(config(Duration::from_millis(1), vec![rule])).await;
    let mut digests = Vec::new();
    for tag in ["release-1", "t1", "t2", "t3", "t4"] {
        digests.push(server.push_image("team/app", tag, tag).await.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dry = gc
        .collect_garbage(Options { dry_run: true }, &Progress::default())
        .await
        .unwrap();
    let doomed_tags: Vec<&str> = dry
        .doomed
        .iter()
        .filter(|d| d.kind == Kind::Tag)
        .map(|d| d.what.as_str())
        .collect();
    assert_eq!(doomed_tags, ["t1", "t2"], "{dry:?}");
    assert!(
        dry.doomed
            .iter()
            .all(|d| d.kind != Kind::Tag || d.reason.contains("keep_last = 2"))
    );
    assert_eq!(
        manifest_status(&server, "team/app", "t1").await,
        StatusCode::OK,
        "a dry run deletes nothing"
    );

    collect(&gc).await;
    let tags: serde_json::Value = server
        .get("/v2/team/app/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["release-1", "t3", "t4"]));
    assert_eq!(
        manifest_status(&server, "team/app", &digests[1]).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        manifest_status(&server, "team/app", &digests[0]).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn immutable_tags_are_neither_moved_nor_deleted() {
    let rule = policy("prod/**", |p| p.immutable_tags = vec!["v*".into()]);
    let (server, _) = server(config(Duration::from_secs(3600), vec![rule])).await;
    let (first, bytes) = server.push_image("prod/api", "v1", "one").await;
    let again = server
        .put_manifest("prod/api", "v1", OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(
        again.status(),
        StatusCode::CREATED,
        "pushing the same digest again is no move"
    );
    let (_, other) = server.push_image("prod/api", "scratch", "two").await;
    let moved = server
        .put_manifest("prod/api", "v1", OCI_MANIFEST, &other)
        .await;
    let message = assert_error(moved, 409, "DENIED").await;
    assert!(
        message.contains("v1") && message.contains("prod/**"),
        "{message}"
    );
    let by_tag = server
        .request(Method::DELETE, "/v2/prod/api/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_error(by_tag, 409, "DENIED").await;
    let by_digest = server
        .request(Method::DELETE, &format!("/v2/prod/api/manifests/{first}"))
        .send()
        .await
        .unwrap();
    assert_error(by_digest, 409, "DENIED").await;
    assert_eq!(
        manifest_status(&server, "prod/api", "v1").await,
        StatusCode::OK
    );
    let latest = server
        .put_manifest("prod/api", "scratch", OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(
        latest.status(),
        StatusCode::CREATED,
        "other tags move freely"
    );
}

#[tokio::test]
async fn a_blob_headed_within_the_grace_period_outlives_it_until_its_manifest_comes() {
    let grace = Duration::from_secs(2);
    let (server, gc) = server(config(grace, Vec::new())).await;
    let layer = server.push_blob("late/app", b"layer pushed early").await;
    let other = server
        .push_blob("late/app", b"layer nobody asks about")
        .await;
    let config_blob = server.push_blob("late/app", br#"{"os":"linux"}"#).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // What docker does: HEAD, see 200, skip the upload.
    for digest in [&layer, &config_blob] {
        assert_eq!(
            blob_status(&server, "late/app", digest).await,
            StatusCode::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    collect(&gc).await;
    assert_eq!(
        blob_status(&server, "late/app", &other).await,
        StatusCode::NOT_FOUND
    );
    let manifest = image_manifest(
        &descriptor(
            "application/vnd.oci.image.config.v1+json",
            br#"{"os":"linux"}"#,
        ),
        &[descriptor(
            "application/vnd.oci.image.layer.v1.tar",
            b"layer pushed early",
        )],
        "",
    );
    let put = server
        .put_manifest("late/app", "v1", OCI_MANIFEST, manifest.as_bytes())
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    tokio::time::sleep(grace).await;
    collect(&gc).await;
    assert_eq!(
        blob_status(&server, "late/app", &layer).await,
        StatusCode::OK
    );
}

/// Pushes `count` images into `bulk/app` and deletes three in four; returns the kept images and
/// every key they leave (sorted, as the store lists them relative to its root).
async fn load_bulk(
    client: &reqwest::Client,
    base: &str,
    count: usize,
) -> (Vec<Pushed>, Vec<String>) {
    let mut kept = Vec::new();
    let mut expected = vec!["catalog/bulk/app/_repo".to_owned()];
    let pushes = (0..count).map(|i| {
        let (client, base) = (client.clone(), base.to_owned());
        async move {
            (
                i,
                push_image(&client, &base, "bulk/app", &format!("t{i}"), i).await,
            )
        }
    });
    let images: Vec<(usize, Pushed)> = futures_util::stream::iter(pushes)
        .buffered(16)
        .collect()
        .await;
    for (i, image) in images {
        let tag = format!("t{i}");
        if i % 4 != 0 {
            let url = format!("{base}/v2/bulk/app/manifests/{}", image.digest);
            assert_eq!(
                client.delete(url).send().await.unwrap().status(),
                StatusCode::ACCEPTED
            );
            continue;
        }
        expected.push(format!("repos/bulk/app/_tags/{tag}"));
        expected.push(format!(
            "repos/bulk/app/_manifests/{}",
            image.digest.replace(':', "/")
        ));
        expected.push(content_key(&image.digest));
        for blob in &image.blobs {
            expected.push(format!("repos/bulk/app/_blobs/{}", blob.replace(':', "/")));
            expected.push(content_key(blob));
        }
        kept.push(image);
    }
    expected.sort();
    (kept, expected)
}

/// Starts a run through the admin endpoint and waits for its progress to reach `phase`.
async fn run_until(client: &reqwest::Client, base: &str, phase: &str) -> reqwest::Response {
    let mut run = client
        .post(format!("{base}/admin/gc"))
        .send()
        .await
        .unwrap();
    loop {
        let chunk = run
            .chunk()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("progress lines until {phase}"));
        if String::from_utf8_lossy(&chunk).contains(&format!("\"{phase}\"")) {
            return run;
        }
    }
}

/// `marina gc` asks the server that holds the folder; `--dry-run` changes nothing; a run cut by
/// `kill -9` in its sweep leaves a store the next run finishes.
#[tokio::test]
async fn marina_gc_asks_the_server_and_survives_kill_9_in_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--gc-interval", "0", "--gc-grace", "1s"];
    let server = Process::start(dir.path(), &args).await;
    let client = reqwest::Client::new();
    // Enough garbage (3,000 objects) that the sweep lasts long past the kill.
    let (kept, expected) = load_bulk(&client, &server.base, 1000).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = files(dir.path());
    let dry = marina_gc(dir.path(), &server.base, true);
    assert!(dry["dry_run"].as_bool().unwrap());
    assert_eq!(dry["doomed"].as_array().unwrap().len(), 750 * 5, "{dry}");
    assert_eq!(files(dir.path()), before, "a dry run deletes nothing");

    // Start a run through the admin endpoint and kill the server once it sweeps.
    let run = run_until(&client, &server.base, "sweeping").await;
    server.signal("KILL");
    drop(run);
    drop(server);
    let cut_short = files(dir.path()).len();
    assert!(
        cut_short > expected.len(),
        "the kill came after the sweep ended"
    );
    let server = Process::start(dir.path(), &args).await;
    let report = marina_gc(dir.path(), &server.base, false);
    assert!(report["dry_run"] == false, "{report}");
    for image in &kept {
        let url = format!("{}/v2/bulk/app/manifests/{}", server.base, image.digest);
        let got = client.get(url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], &image.bytes[..]);
    }
    // The killed run's sweep stays published until it is surely dead (docs/gc.md).
    let left: Vec<String> = files(dir.path())
        .into_iter()
        .filter(|f| !f.starts_with("gc/sweeps/"))
        .collect();
    assert_eq!(left, expected, "exactly the kept images remain");
}

/// On S3, `marina gc` runs in its own process beside the servers. A run killed (`kill -9`) once
/// it published its sweep leaves a bucket that the next run finishes.
#[tokio::test]
async fn on_garage_a_run_killed_after_publishing_its_sweep_is_finished_by_the_next() {
    let node = crate::garage::shared();
    let prefix = crate::garage::unique_prefix("gc-kill");
    let env = crate::garage::s3_env(&node.endpoint(), &prefix);
    let args: Vec<String> = ["--gc-interval", "0", "--gc-grace", "1s"]
        .map(str::to_owned)
        .to_vec();
    let server = Process::spawn(&args, &env).await;
    let client = reqwest::Client::new();
    let (kept, expected) = load_bulk(&client, &server.base, 120).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = run_until(&client, &server.base, "settling").await;
    server.signal("KILL");
    drop((run, server));

    let server = Process::spawn(&args, &env).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
        .args(["gc", "--gc-grace", "1s"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("MARINA_CONFIG")
        .output()
        .expect("marina gc");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(report["objects_freed"], 90 * 5, "{report}");
    for image in &kept {
        let url = format!("{}/v2/bulk/app/manifests/{}", server.base, image.digest);
        let got = client.get(url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], &image.bytes[..]);
    }
    let store = crate::garage::store(&node.endpoint(), &prefix).await;
    let mut left: Vec<String> = crate::gc_storm::s3_keys(&store)
        .await
        .into_iter()
        .filter(|k| !k.starts_with("gc/sweeps/"))
        .collect();
    left.sort();
    assert_eq!(left, expected, "exactly the kept images remain");
}

fn content_key(digest: &str) -> String {
    let hex = &digest["sha256:".len()..];
    format!("blobs/sha256/{}/{hex}", &hex[..2])
}

/// Every file under the storage folder, relative, but the lock and temp files.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut found: Vec<String> = files_under(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .filter(|p| p != ".lock" && !p.starts_with(".tmp"))
        .collect();
    found.sort();
    found
}

/// Runs `marina gc` on the folder (which the server at `base` holds); returns its JSON line.
fn marina_gc(dir: &std::path::Path, base: &str, dry_run: bool) -> serde_json::Value {
    let listen = base.trim_start_matches("http://");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_marina"));
    command.args([
        "gc",
        "--storage-path",
        &dir.display().to_string(),
        "--listen",
        listen,
    ]);
    if dry_run {
        command.arg("--dry-run");
    }
    let out = command.output().expect("marina gc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "marina gc failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not one JSON line: {stdout}"))
}

/// An image pushed over plain HTTP.
pub struct Pushed {
    pub digest: String,
    pub bytes: Vec<u8>,
    /// Config and layer digests.
    pub blobs: Vec<String>,
}

/// Pushes a small image through plain HTTP.
pub async fn push_image(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    seed: usize,
) -> Pushed {
    let config = format!(r#"{{"os":"linux","seed":{seed}}}"#);
    let layer = format!("layer {seed}");
    for data in [config.as_bytes(), layer.as_bytes()] {
        push_blob_to(client, base, repo, data).await;
    }
    let manifest = image_manifest(
        &descriptor(
            "application/vnd.oci.image.config.v1+json",
            config.as_bytes(),
        ),
        &[descriptor(
            "application/vnd.oci.image.layer.v1.tar",
            layer.as_bytes(),
        )],
        "",
    );
    let url = format!("{base}/v2/{repo}/manifests/{tag}");
    let put = client
        .put(url)
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    Pushed {
        digest: sha256(manifest.as_bytes()),
        blobs: vec![sha256(config.as_bytes()), sha256(layer.as_bytes())],
        bytes: manifest.into_bytes(),
    }
}
