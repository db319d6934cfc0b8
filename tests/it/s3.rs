//! S3 against a real distributed engine, Garage: the storage conformance suite, replicas
//! sharing one bucket (an upload crossing replicas, reads through another replica, concurrent
//! pushes), a node killed mid-push in a 3-node cluster, outages, start-up checks, and memory.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;

use crate::common::*;
use crate::garage::{self, Cluster};

async fn replicas(endpoint: &str, prefix: &str, count: usize) -> Vec<Process> {
    let env = garage::s3_env(endpoint, prefix);
    let mut started = Vec::new();
    for _ in 0..count {
        started.push(Process::spawn(&[], &env).await);
    }
    started
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Asserts that `base` serves every blob of `digests` in `repo`, bytes matching the digest.
async fn assert_serves(base: &str, repo: &str, digests: &[String], label: &str) {
    for digest in digests {
        let response = http()
            .get(format!("{base}/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        let body = response.bytes().await.unwrap();
        assert_eq!(&sha256(&body), digest, "{label}: {base} serves {digest}");
    }
}

async fn push_blob_via(base: &str, repo: &str, data: &[u8]) -> reqwest::Response {
    let digest = sha256(data);
    http()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_conformance_suite_passes_on_garage() {
    let node = garage::shared();
    let store = garage::store(&node.endpoint(), &garage::unique_prefix("conformance")).await;
    marina_store::testsuite::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_crosses_replicas_and_finishes_on_a_third() {
    let node = garage::shared();
    let r = replicas(&node.endpoint(), &garage::unique_prefix("cross"), 3).await;
    // Chunks well under S3's 5 MiB part minimum, and one above it.
    let chunks: Vec<Vec<u8>> = vec![
        vec![1u8; 1000],
        vec![2u8; 6 * 1024 * 1024 + 7],
        vec![3u8; 10],
    ];
    let whole: Vec<u8> = chunks.concat();
    let digest = sha256(&whole);
    let start = http()
        .post(format!("{}/v2/cross/blobs/uploads/", r[0].base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let location = header(&start, "Location").to_owned();
    let mut offset = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let via = &r[i % 2].base;
        let range = format!("{offset}-{}", offset + chunk.len() - 1);
        let response = http()
            .patch(format!("{via}{location}"))
            .header("Content-Range", range)
            .body(chunk.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "chunk {i} via replica {}",
            i % 2
        );
        offset += chunk.len();
        assert_eq!(header(&response, "Range"), format!("0-{}", offset - 1));
    }
    let status = http()
        .get(format!("{}{location}", r[2].base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&status, "Range"),
        format!("0-{}", whole.len() - 1),
        "the third replica sees the progress"
    );
    let finish = http()
        .put(format!("{}{location}?digest={digest}", r[2].base))
        .send()
        .await
        .unwrap();
    assert_eq!(finish.status(), StatusCode::CREATED);
    for replica in &r {
        assert_serves(
            &replica.base,
            "cross",
            std::slice::from_ref(&digest),
            "after crossing replicas",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_replica_stores_another_serves_and_deletes() {
    let node = garage::shared();
    let r = replicas(&node.endpoint(), &garage::unique_prefix("share"), 2).await;
    let (a, b) = (&r[0].base, &r[1].base);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"a layer pushed through replica a";
    for data in [&config[..], &layer[..]] {
        assert_eq!(
            push_blob_via(a, "share/app", data).await.status(),
            StatusCode::CREATED
        );
    }
    let manifest = image_manifest(
        &descriptor("application/vnd.oci.image.config.v1+json", config),
        &[descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        "",
    );
    let put = http()
        .put(format!("{a}/v2/share/app/manifests/v1"))
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let subject = sha256(manifest.as_bytes());
    let empty = push_blob_via(a, "share/app", b"{}").await;
    assert_eq!(empty.status(), StatusCode::CREATED);
    let artifact = image_manifest(
        &descriptor(EMPTY_JSON, b"{}"),
        &[],
        &format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{}}}"#,
            manifest.len()
        ),
    );
    let art_digest = sha256(artifact.as_bytes());
    http()
        .put(format!("{a}/v2/share/app/manifests/{art_digest}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(artifact)
        .send()
        .await
        .unwrap();

    let got = http()
        .get(format!("{b}/v2/share/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&got, "Docker-Content-Digest"), subject);
    assert_eq!(got.text().await.unwrap(), manifest);
    let tags: serde_json::Value = http()
        .get(format!("{b}/v2/share/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let referrers: serde_json::Value = http()
        .get(format!("{b}/v2/share/app/referrers/{subject}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(referrers["manifests"][0]["digest"], art_digest);
    let deleted = http()
        .delete(format!("{b}/v2/share/app/manifests/{subject}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    assert_eq!(
        http()
            .get(format!("{a}/v2/share/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_through_every_replica_end_consistent() {
    let node = garage::shared();
    let r = replicas(&node.endpoint(), &garage::unique_prefix("concurrent"), 3).await;
    let bases: Vec<String> = r.iter().map(|p| p.base.clone()).collect();
    let same = b"the same blob from every replica at once".to_vec();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let base = bases[i % bases.len()].clone();
        let data = if i % 3 == 0 {
            same.clone()
        } else {
            format!("distinct blob {i}").into_bytes()
        };
        tasks.push(tokio::spawn(async move {
            (
                push_blob_via(&base, "busy/repo", &data).await.status(),
                sha256(&data),
            )
        }));
    }
    let mut digests = Vec::new();
    for task in tasks {
        let (status, digest) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED);
        digests.push(digest);
    }
    let mut tag_tasks = Vec::new();
    for (i, base) in bases.iter().cycle().take(9).enumerate() {
        let base = base.clone();
        let body = image_manifest(
            &descriptor(EMPTY_JSON, &[]),
            &[],
            &format!(r#","annotations":{{"i":"{i}"}}"#),
        );
        tag_tasks.push(tokio::spawn(async move {
            http()
                .post(format!(
                    "{base}/v2/busy/repo/blobs/uploads/?digest={}",
                    sha256(b"")
                ))
                .send()
                .await
                .unwrap();
            http()
                .put(format!("{base}/v2/busy/repo/manifests/t{i}"))
                .header("Content-Type", OCI_MANIFEST)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tag_tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
    for base in &bases {
        assert_serves(base, "busy/repo", &digests, "after concurrent pushes").await;
        let tags: serde_json::Value = http()
            .get(format!("{base}/v2/busy/repo/tags/list"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(tags["tags"].as_array().unwrap().len(), 9, "{base}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_garage_node_mid_push_loses_no_acknowledged_blob() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let env = garage::s3_env(&cluster.nodes[0].endpoint(), "faults");
    let marina = Process::spawn(&[], &env).await;
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let data = format!("before the fault {i}").into_bytes();
        assert_eq!(
            push_blob_via(&marina.base, "faults", &data).await.status(),
            StatusCode::CREATED
        );
        acknowledged.push(sha256(&data));
    }
    let big: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let big_digest = sha256(&big);
    let url = format!(
        "{}/v2/faults/blobs/uploads/?digest={big_digest}",
        marina.base
    );
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .chunks(1024 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let slow = futures_util::StreamExt::then(futures_util::stream::iter(chunks), |c| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        c
    });
    let push = tokio::spawn(
        http()
            .post(url.clone())
            .body(reqwest::Body::wrap_stream(slow))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.nodes[2].kill();
    let outcome = push
        .await
        .unwrap()
        .expect("marina answers the push, whatever happened");
    // With one of three nodes gone, Garage still has a quorum: most runs complete. A push that
    // does not must say why honestly, 503 UNAVAILABLE, and leave no blob behind.
    let completed = outcome.status() == StatusCode::CREATED;
    if !completed {
        assert_error(outcome, 503, "UNAVAILABLE").await;
        let head = http().head(format!("{}/v2/faults/blobs/{big_digest}", marina.base));
        assert_eq!(head.send().await.unwrap().status(), StatusCode::NOT_FOUND);
        let retry = http().post(url).body(big.clone()).send().await.unwrap();
        assert_eq!(
            retry.status(),
            StatusCode::CREATED,
            "a retry completes the push"
        );
    }
    acknowledged.push(big_digest);
    assert_serves(&marina.base, "faults", &acknowledged, "with a node down").await;
    cluster.nodes[2].start(false);
    let other = cluster.nodes[2].admin(&["node", "id", "-q"]);
    cluster.nodes[0].admin(&["node", "connect", other.trim()]);
    assert_serves(
        &marina.base,
        "faults",
        &acknowledged,
        "after the node is back",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_503_and_recovery_needs_no_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = garage::Node::new_single(dir.path());
    let marina = Process::spawn(&[], &garage::s3_env(&node.endpoint(), "outage")).await;
    assert_eq!(
        push_blob_via(&marina.base, "o", b"stored").await.status(),
        StatusCode::CREATED
    );
    node.kill();
    let during = http()
        .get(format!("{}/v2/o/blobs/{}", marina.base, sha256(b"stored")))
        .send()
        .await
        .unwrap();
    assert_error(during, 503, "UNAVAILABLE").await;
    let refused = push_blob_via(&marina.base, "o", b"refused").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    node.start(true);
    let after = http()
        .get(format!("{}/v2/o/blobs/{}", marina.base, sha256(b"stored")))
        .send()
        .await
        .unwrap();
    assert_eq!(after.bytes().await.unwrap(), &b"stored"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_checks_the_bucket_and_the_settings() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = |env: Vec<(String, String)>| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("STORAGE_PATH")
            .envs(env)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, err) = run(garage::s3_env(&format!("http://127.0.0.1:{closed}"), "x"));
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach s3://marina"), "{err}");
    let no_bucket: Vec<_> = garage::s3_env("http://127.0.0.1:1", "x")
        .into_iter()
        .filter(|(k, _)| k != "S3_BUCKET")
        .collect();
    let (code, err) = run(no_bucket);
    assert_eq!(code, Some(2));
    assert!(err.contains("needs a bucket"), "{err}");
    let (code, err) = run(vec![("S3_BUCKET".into(), "forgotten-driver".into())]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("environment variable S3_BUCKET is set")
            && err.contains("storage driver is filesystem"),
        "{err}"
    );
    let (code, err) = run(vec![
        ("STORAGE_DRIVER".into(), "filesystem".into()),
        ("STORAGE_TYPE".into(), "s3".into()),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("deprecated STORAGE_TYPE"), "{err}");
    let mut bad_endpoint = garage::s3_env("ftp://x", "x");
    bad_endpoint.retain(|(k, _)| k != "S3_ENDPOINT");
    bad_endpoint.push(("S3_ENDPOINT".into(), "ftp://x".into()));
    let (code, err) = run(bad_endpoint);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("S3_ENDPOINT") && err.contains("http://"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deprecated_storage_type_still_selects_s3() {
    let node = garage::shared();
    let env: Vec<(String, String)> =
        garage::s3_env(&node.endpoint(), &garage::unique_prefix("alias"))
            .into_iter()
            .map(|(k, v)| {
                if k == "STORAGE_DRIVER" {
                    ("STORAGE_TYPE".to_owned(), v)
                } else {
                    (k, v)
                }
            })
            .collect();
    let marina = Process::spawn(&[], &env).await;
    assert_eq!(
        push_blob_via(&marina.base, "alias", b"via alias")
            .await
            .status(),
        StatusCode::CREATED
    );
    let listed = garage::store(
        &node.endpoint(),
        &env.iter().find(|(k, _)| k == "S3_PREFIX").unwrap().1,
    )
    .await;
    let keys = marina_store::Store::list(
        &listed,
        &marina_store::Key::new("blobs/").unwrap(),
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(keys.len(), 1, "the blob went to the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_push_to_s3_keeps_memory_bounded() {
    let node = garage::shared();
    let marina = Process::spawn(
        &[],
        &garage::s3_env(&node.endpoint(), &garage::unique_prefix("memory")),
    )
    .await;
    let peak = crate::memory::round_trip(&marina, 1024).await;
    eprintln!("marina peak RSS on S3: {peak} MiB after a 1 GiB push and pull");
    assert!(peak < 96, "peak RSS {peak} MiB");
}

/// Pushes the seeded blob, retrying after a 429 as its `Retry-After` says; returns how many
/// times it was told to wait.
async fn push_until_stored(base: &str, seed: u64, mib: usize) -> usize {
    let digest = crate::memory::seeded_digest(mib, seed).await;
    let url = format!("{base}/v2/crowd/blobs/uploads/?digest={digest}");
    for refused in 0..20 {
        let body = reqwest::Body::wrap_stream(crate::memory::seeded_chunks(mib, seed));
        let response = http().post(&url).body(body).send().await.unwrap();
        match response.status() {
            StatusCode::CREATED => return refused,
            StatusCode::TOO_MANY_REQUESTS => {
                let wait: u64 = header(&response, "Retry-After").parse().unwrap();
                assert_error(response, 429, "TOOMANYREQUESTS").await;
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            other => panic!("push {seed}: {other}: {}", response.text().await.unwrap()),
        }
    }
    panic!("push {seed} was refused 20 times");
}

/// Each S3 write buffers up to three 8 MiB parts; without a shared budget, 64 concurrent
/// pushes held 1.5 GiB. With a budget, writes wait (or get 429) instead, and peak RSS stays
/// within what the README documents: 64 MiB plus 1.75 times the budget (the part buffers, and
/// the chunks on their way through the hasher of each write the budget admits).
async fn crowd_within_budget(budget_mib: u64) {
    let node = garage::shared();
    let mut env = garage::s3_env(&node.endpoint(), &garage::unique_prefix("crowd"));
    env.push(("S3_UPLOAD_MEMORY".into(), format!("{budget_mib}MiB")));
    let marina = Process::spawn(&[], &env).await;
    let pushes = (0..64).map(|seed| push_until_stored(&marina.base, seed, 32));
    let refusals: usize = futures_util::future::join_all(pushes)
        .await
        .into_iter()
        .sum();
    let peak = marina.status_kib("VmHWM") / 1024;
    let documented = 64 + budget_mib * 7 / 4;
    eprintln!(
        "64 concurrent 32 MiB pushes, budget {budget_mib} MiB: peak RSS {peak} MiB \
         (documented bound {documented}), {refusals} told to retry"
    );
    assert!(
        peak < documented,
        "peak RSS {peak} MiB over {documented} MiB"
    );
    for seed in 0..64 {
        let digest = crate::memory::seeded_digest(32, seed).await;
        let head = http().head(format!("{}/v2/crowd/blobs/{digest}", marina.base));
        assert_eq!(
            head.send().await.unwrap().status(),
            StatusCode::OK,
            "blob {seed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_pushes_stay_within_the_default_upload_memory() {
    crowd_within_budget(256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_pushes_stay_within_a_small_upload_memory() {
    crowd_within_budget(64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_over_the_copy_limit_is_streamed_into_place() {
    // S3 copies at most 5 GiB in one CopyObject; with the limit lowered to 1 MiB, a 3 MiB
    // single-part upload takes the same path a 6 GiB one would.
    let node = garage::shared();
    let mut config = garage::s3_config(&node.endpoint(), &garage::unique_prefix("copylimit"));
    config.copy_limit = Some(1024 * 1024);
    let store = marina_store::s3::S3Store::with_credentials(
        &config,
        garage::ACCESS_KEY,
        garage::SECRET_KEY,
    )
    .unwrap();
    let s = Server::serve(
        std::sync::Arc::new(store),
        marina_registry::Config::default(),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = s.push_blob("big/blob", &data).await;
    let body = s
        .get(&format!("/v2/big/blob/blobs/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&body), digest);
    let ranged = s
        .request(
            reqwest::Method::GET,
            &format!("/v2/big/blob/blobs/{digest}"),
        )
        .header("Range", "bytes=1048570-1048580")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.bytes().await.unwrap(),
        data[1_048_570..=1_048_580].to_vec()
    );
}

/// A container image sets STORAGE_PATH; run on S3, the platform cannot unset it. From the
/// environment it is ignored (and said so), where a flag or file setting is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inherited_storage_path_is_ignored_on_s3() {
    let node = garage::shared();
    let mut env = garage::s3_env(&node.endpoint(), &garage::unique_prefix("inherited"));
    env.push(("STORAGE_PATH".into(), "/nonexistent/data".into()));
    let marina = Process::spawn(&[], &env).await;
    let data = b"stored on S3 despite STORAGE_PATH".to_vec();
    assert_eq!(
        push_blob_via(&marina.base, "inherited", &data)
            .await
            .status(),
        StatusCode::CREATED
    );
    assert!(!std::path::Path::new("/nonexistent/data").exists());
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_marina"))
        .args(["config", "check", "--storage-path", "/nonexistent/data"])
        .envs(
            env.iter()
                .filter(|(k, _)| k != "STORAGE_PATH")
                .map(|(k, v)| (k, v)),
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("flag --storage-path is set"), "{said}");
}
