//! The pull-through cache against a fake upstream in the test process: cold and warm pulls,
//! one fetch for many clients, tag TTLs, an upstream that dies or lies, and the read-only
//! prefix. Real upstreams (marina with tokens, Distribution) are in `proxy_upstreams.rs`.

use std::sync::Arc;
use std::time::Duration;

use marina_registry::Config;
use marina_registry::proxy::{OnUpstreamError, Proxy};
use marina_upstream::{Credentials, Remote, Settings};
use reqwest::{Method, StatusCode};

use crate::common::{
    OCI_MANIFEST, Server, assert_error, descriptor, image_manifest, noise, sha256,
};
use crate::fake_upstream::{FakeUpstream, PASSWORD, USER};

const PREFIX: &str = "up.example";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A marina mirroring `upstream`, trusting tags for a minute and serving the cache when the
/// upstream fails.
async fn cached_mirror(upstream: &FakeUpstream) -> Server {
    mirror(
        upstream,
        Duration::from_secs(60),
        OnUpstreamError::ServeCached,
    )
    .await
}

/// A marina mirroring `upstream` under [`PREFIX`].
async fn mirror(upstream: &FakeUpstream, tag_ttl: Duration, on_error: OnUpstreamError) -> Server {
    mirror_evicting(upstream, tag_ttl, on_error, None, None).await
}

/// A marina mirroring `upstream`, evicting by age or size, with a 1 s GC grace.
async fn mirror_evicting(
    upstream: &FakeUpstream,
    tag_ttl: Duration,
    on_error: OnUpstreamError,
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
) -> Server {
    let credentials = Some(Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let remote = Remote::new(Settings {
        credentials,
        ..Settings::anonymous(&upstream.base)
    })
    .unwrap();
    let proxy = Proxy {
        prefix: PREFIX.into(),
        remote,
        tag_ttl,
        on_upstream_error: on_error,
        max_bytes,
        max_age,
    };
    let gc_grace = if max_age.is_some() || max_bytes.is_some() {
        Duration::from_secs(1)
    } else {
        Config::default().gc_grace
    };
    Server::start_with(Config {
        proxies: vec![Arc::new(proxy)],
        gc_grace,
        ..Config::default()
    })
    .await
}

/// Runs a garbage collection through the admin endpoint; returns its report.
async fn collect(server: &Server) -> serde_json::Value {
    let response = server
        .request(Method::POST, "/admin/gc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let last = text.lines().last().unwrap();
    let line: serde_json::Value = serde_json::from_str(last).unwrap();
    line["report"].clone()
}

/// Whether the mirror stores each of the image's blobs.
async fn stored(server: &Server, image: &Image) -> Vec<bool> {
    let content = server.content().await;
    image
        .blobs
        .iter()
        .map(|(d, _)| {
            content
                .iter()
                .any(|k| k.ends_with(d.trim_start_matches("sha256:")))
        })
        .collect()
}

/// An image upstream: its manifest digest, and every blob's (digest, bytes).
struct Image {
    manifest: String,
    body: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
}

fn publish(upstream: &FakeUpstream, repo: &str, tag: Option<&str>, seed: u64) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layers = [noise(300_000, seed), noise(1000, seed + 1)];
    let mut blobs = vec![(upstream.add_blob(&config), config.clone())];
    for layer in &layers {
        blobs.push((upstream.add_blob(layer), layer.clone()));
    }
    let manifest = image_manifest(
        &descriptor("application/vnd.oci.image.config.v1+json", &config),
        &layers
            .iter()
            .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l))
            .collect::<Vec<_>>(),
        "",
    );
    let body = manifest.into_bytes();
    let manifest = upstream.add_manifest(repo, tag, OCI_MANIFEST, &body);
    Image {
        manifest,
        body,
        blobs,
    }
}

/// Pulls `reference` and everything it needs through the mirror; checks every byte.
async fn pull(server: &Server, repo: &str, reference: &str, image: &Image) {
    let response = server
        .get(&format!("/v2/{PREFIX}/{repo}/manifests/{reference}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{repo}:{reference}");
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256(&body), image.manifest);
    for (digest, bytes) in &image.blobs {
        let response = server
            .get(&format!("/v2/{PREFIX}/{repo}/blobs/{digest}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{digest}");
        assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
}

#[tokio::test]
async fn a_cold_pull_fetches_once_through_the_token_dance_and_a_warm_pull_fetches_nothing() {
    let upstream = FakeUpstream::start(true).await;
    let image = publish(&upstream, "team/app", Some("v1"), 1);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        image.manifest
    );
    upstream.add_manifest("team/app", Some("multi"), OCI_INDEX, index.as_bytes());
    let server = mirror(
        &upstream,
        Duration::from_secs(3600),
        OnUpstreamError::ServeCached,
    )
    .await;

    let response = server
        .get(&format!("/v2/{PREFIX}/team/app/manifests/multi"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(crate::common::header(&response, "content-type"), OCI_INDEX);
    assert_eq!(response.bytes().await.unwrap().as_ref(), index.as_bytes());
    pull(&server, "team/app", &image.manifest, &image).await;
    assert_eq!(upstream.count("GET", "/token"), 1, "one token, kept");
    let fetched = upstream.count("GET", "/manifests/") + upstream.count("GET", "/blobs/");
    // The very first GET is refused (401) and sends marina for its token.
    assert_eq!(
        fetched,
        1 + 2 + image.blobs.len(),
        "each object fetched once"
    );

    pull(&server, "team/app", &image.manifest, &image).await;
    let response = server
        .get(&format!("/v2/{PREFIX}/team/app/manifests/multi"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let again = upstream.count("GET", "/manifests/") + upstream.count("GET", "/blobs/");
    assert_eq!(again, fetched, "a warm pull sends the upstream no GET");
    assert_eq!(
        upstream.count("HEAD", "/"),
        0,
        "the tag is still fresh: {:?}",
        upstream.log()
    );
    let catalog: serde_json::Value = server.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(catalog["repositories"][0], format!("{PREFIX}/team/app"));
}

#[tokio::test]
async fn concurrent_pulls_of_a_cold_blob_share_one_upstream_get() {
    let upstream = FakeUpstream::start(false).await;
    let big = noise(24 << 20, 7);
    let digest = upstream.add_blob(&big);
    let server = cached_mirror(&upstream).await;
    let pulls = (0..20).map(|_| {
        let (http, url) = (
            server.http.clone(),
            server.url(&format!("/v2/{PREFIX}/a/blobs/{digest}")),
        );
        tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            sha256(&response.bytes().await.unwrap())
        })
    });
    for pull in futures_util::future::join_all(pulls).await {
        assert_eq!(pull.unwrap(), digest);
    }
    assert_eq!(
        upstream.count("GET", &digest),
        1,
        "one upstream GET for 20 clients"
    );
    let response = server.get(&format!("/v2/{PREFIX}/a/blobs/{digest}")).await;
    assert_eq!(sha256(&response.bytes().await.unwrap()), digest);
    assert_eq!(
        upstream.count("GET", &digest),
        1,
        "then served from the cache"
    );
    let ranged = server
        .get_range(&format!("/v2/{PREFIX}/a/blobs/{digest}"), "bytes=10-19")
        .await;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &big[10..20]);
}

#[tokio::test]
async fn a_tag_moved_upstream_is_served_after_its_ttl_and_not_before() {
    let upstream = FakeUpstream::start(false).await;
    let first = publish(&upstream, "app", Some("latest"), 10);
    let server = mirror(
        &upstream,
        Duration::from_secs(2),
        OnUpstreamError::ServeCached,
    )
    .await;
    pull(&server, "app", "latest", &first).await;
    let second = publish(&upstream, "app", Some("latest"), 20);
    pull(&server, "app", "latest", &first).await;
    assert_eq!(
        upstream.count("HEAD", "/manifests/latest"),
        0,
        "fresh: not re-checked"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    pull(&server, "app", "latest", &second).await;
    assert_eq!(upstream.count("HEAD", "/manifests/latest"), 1);
    assert_eq!(
        upstream.count("GET", "/manifests/latest"),
        2,
        "fetched again: it moved"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    pull(&server, "app", "latest", &second).await;
    assert_eq!(upstream.count("HEAD", "/manifests/latest"), 2);
    assert_eq!(
        upstream.count("GET", "/manifests/latest"),
        2,
        "unchanged: a HEAD only"
    );
}

#[tokio::test]
async fn with_the_upstream_down_the_cache_serves_and_the_rest_is_503_until_it_returns() {
    let mut upstream = FakeUpstream::start(false).await;
    let cached = publish(&upstream, "app", Some("v1"), 30);
    let uncached = publish(&upstream, "app", Some("v2"), 40);
    let server = mirror(
        &upstream,
        Duration::from_millis(200),
        OnUpstreamError::ServeCached,
    )
    .await;
    let failing = mirror(&upstream, Duration::from_millis(200), OnUpstreamError::Fail).await;
    pull(&server, "app", "v1", &cached).await;
    pull(&failing, "app", "v1", &cached).await;
    upstream.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;

    pull(&server, "app", "v1", &cached).await;
    let response = server.get(&format!("/v2/{PREFIX}/app/manifests/v2")).await;
    assert_error(response, 503, "UNAVAILABLE").await;
    let (blob, _) = &uncached.blobs[1];
    let response = server.get(&format!("/v2/{PREFIX}/app/blobs/{blob}")).await;
    assert_error(response, 503, "UNAVAILABLE").await;
    let response = failing.get(&format!("/v2/{PREFIX}/app/manifests/v1")).await;
    assert_error(response, 503, "UNAVAILABLE").await;
    let (blob, _) = &cached.blobs[0];
    let response = failing.get(&format!("/v2/{PREFIX}/app/blobs/{blob}")).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a cached blob never needs the upstream"
    );

    upstream.restart().await;
    pull(&server, "app", "v2", &uncached).await;
    pull(&failing, "app", "v1", &cached).await;
}

#[tokio::test]
async fn a_corrupt_upstream_blob_fails_the_client_and_caches_nothing() {
    let upstream = FakeUpstream::start(false).await;
    let image = publish(&upstream, "app", Some("v1"), 50);
    let server = cached_mirror(&upstream).await;
    let (digest, bytes) = &image.blobs[1];
    upstream.corrupt_blobs(true);
    let response = server
        .get(&format!("/v2/{PREFIX}/app/blobs/{digest}"))
        .await;
    let received = response.bytes().await;
    assert!(
        received.is_err() || sha256(&received.unwrap()) != *digest,
        "the client must not get a complete, wrong blob silently"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hex = digest.trim_start_matches("sha256:");
    assert!(
        !server.content().await.iter().any(|k| k.ends_with(hex)),
        "nothing cached"
    );
    upstream.corrupt_blobs(false);
    let response = server
        .get(&format!("/v2/{PREFIX}/app/blobs/{digest}"))
        .await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn what_the_upstream_lacks_is_unknown_here() {
    let upstream = FakeUpstream::start(false).await;
    let server = cached_mirror(&upstream).await;
    let response = server
        .get(&format!("/v2/{PREFIX}/app/manifests/nope"))
        .await;
    assert_error(response, 404, "MANIFEST_UNKNOWN").await;
    let missing = sha256(b"never published");
    let response = server
        .get(&format!("/v2/{PREFIX}/app/blobs/{missing}"))
        .await;
    assert_error(response, 404, "BLOB_UNKNOWN").await;
    let response = server
        .head(&format!("/v2/{PREFIX}/app/blobs/{missing}"))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn writes_under_the_prefix_are_refused_and_other_repositories_take_pushes() {
    let upstream = FakeUpstream::start(false).await;
    let image = publish(&upstream, "app", Some("v1"), 60);
    let server = cached_mirror(&upstream).await;
    pull(&server, "app", "v1", &image).await;
    let attempts = [
        (Method::POST, format!("/v2/{PREFIX}/app/blobs/uploads/")),
        (Method::PUT, format!("/v2/{PREFIX}/app/manifests/v2")),
        (Method::DELETE, format!("/v2/{PREFIX}/app/manifests/v1")),
        (
            Method::DELETE,
            format!("/v2/{PREFIX}/app/blobs/{}", image.blobs[0].0),
        ),
    ];
    for (method, path) in attempts {
        let response = server.request(method.clone(), &path).send().await.unwrap();
        let message = assert_error(response, 405, "UNSUPPORTED").await;
        assert!(message.contains("read-only"), "{method} {path}: {message}");
    }
    server.push_image("local/app", "v1", "local").await;
    pull(&server, "app", "v1", &image).await;
}

#[tokio::test]
async fn the_ns_parameter_puts_a_request_under_its_proxy() {
    let upstream = FakeUpstream::start(false).await;
    let image = publish(&upstream, "library/app", Some("v1"), 70);
    let server = cached_mirror(&upstream).await;
    let response = server
        .get(&format!("/v2/library/app/manifests/v1?ns={PREFIX}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sha256(&response.bytes().await.unwrap()), image.manifest);
    let (digest, bytes) = &image.blobs[1];
    let response = server
        .get(&format!("/v2/library/app/blobs/{digest}?ns={PREFIX}"))
        .await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let response = server
        .get("/v2/library/app/manifests/v1?ns=elsewhere.io")
        .await;
    assert_error(response, 404, "MANIFEST_UNKNOWN").await;
    pull(&server, "library/app", "v1", &image).await;
    assert_eq!(
        upstream.count("GET", "/manifests/"),
        1,
        "the same cache either way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fetching_one_blob_at_once_store_it_once_on_garage() {
    let upstream = FakeUpstream::start(false).await;
    let big = noise(8 << 20, 81);
    let digest = upstream.add_blob(&big);
    let node = crate::garage::shared();
    let store: Arc<dyn marina_store::Store> = Arc::new(
        crate::garage::store(&node.endpoint(), &crate::garage::unique_prefix("proxy")).await,
    );
    let replica = || async {
        let remote = Remote::new(Settings::anonymous(&upstream.base)).unwrap();
        let proxy = Proxy {
            prefix: PREFIX.into(),
            remote,
            tag_ttl: Duration::from_secs(60),
            on_upstream_error: OnUpstreamError::ServeCached,
            max_bytes: None,
            max_age: None,
        };
        let config = Config {
            proxies: vec![Arc::new(proxy)],
            ..Config::default()
        };
        Server::serve(Arc::clone(&store), config, tempfile::tempdir().unwrap()).await
    };
    let (a, b) = (replica().await, replica().await);
    let path = format!("/v2/{PREFIX}/app/blobs/{digest}");
    let (from_a, from_b) = tokio::join!(a.get(&path), b.get(&path));
    for response in [from_a, from_b] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(sha256(&response.bytes().await.unwrap()), digest);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hex = digest.trim_start_matches("sha256:");
    let stored: Vec<String> = a
        .content()
        .await
        .into_iter()
        .filter(|k| k.ends_with(hex))
        .collect();
    assert_eq!(stored.len(), 1, "one object for the blob: {stored:?}");
    let staged = a.keys(&format!("repos/{PREFIX}/app/_uploads/")).await;
    assert!(staged.is_empty(), "no staging left: {staged:?}");
    for server in [&a, &b] {
        let response = server.get(&path).await;
        assert_eq!(sha256(&response.bytes().await.unwrap()), digest);
    }
    assert!(
        upstream.count("GET", &digest) <= 2,
        "at most one fetch per replica"
    );
}

#[tokio::test]
async fn images_not_pulled_within_max_age_are_evicted_by_gc_and_fetched_again_later() {
    let upstream = FakeUpstream::start(false).await;
    let old = publish(&upstream, "app", Some("old"), 91);
    let used = publish(&upstream, "app", Some("used"), 93);
    let server = mirror_evicting(
        &upstream,
        Duration::from_secs(3600),
        OnUpstreamError::ServeCached,
        Some(Duration::from_secs(3)),
        None,
    )
    .await;
    pull(&server, "app", "old", &old).await;
    pull(&server, "app", "used", &used).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pull(&server, "app", "used", &used).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = collect(&server).await;
    assert!(report["objects_freed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        stored(&server, &old).await,
        vec![false; 3],
        "not pulled for 3 s: evicted"
    );
    assert_eq!(
        stored(&server, &used).await,
        vec![true; 3],
        "pulled 1.5 s ago: kept"
    );
    let gets = upstream.count("GET", "/");
    pull(&server, "app", "used", &used).await;
    assert_eq!(
        upstream.count("GET", "/"),
        gets,
        "the kept image needs no upstream"
    );
    pull(&server, "app", "old", &old).await;
    assert_eq!(
        upstream.count("GET", "/"),
        gets + 4,
        "the evicted one is fetched again"
    );
}

#[tokio::test]
async fn past_max_bytes_the_least_recently_pulled_images_are_evicted() {
    let upstream = FakeUpstream::start(false).await;
    let first = publish(&upstream, "app", Some("first"), 95);
    let second = publish(&upstream, "app", Some("second"), 97);
    // Each image is about 301 kB: the budget holds one.
    let server = mirror_evicting(
        &upstream,
        Duration::from_secs(3600),
        OnUpstreamError::ServeCached,
        None,
        Some(450_000),
    )
    .await;
    pull(&server, "app", "first", &first).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    pull(&server, "app", "second", &second).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    collect(&server).await;
    assert_eq!(
        stored(&server, &first).await,
        vec![false; 3],
        "pulled first: evicted"
    );
    assert_eq!(
        stored(&server, &second).await,
        vec![true; 3],
        "the newest fits: kept"
    );
    let tags: serde_json::Value = server
        .get(&format!("/v2/{PREFIX}/app/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["second"]));
}

#[tokio::test]
async fn a_manifest_too_large_or_not_matching_its_digest_is_refused_and_not_cached() {
    let upstream = FakeUpstream::start(false).await;
    let image = publish(&upstream, "app", Some("v1"), 99);
    let huge = format!(r#"{{"schemaVersion":2,"pad":"{}"}}"#, "x".repeat(5 << 20));
    upstream.add_manifest_under("app", "huge", OCI_MANIFEST, huge.as_bytes());
    let lying = sha256(b"another manifest");
    upstream.add_manifest_under("app", &lying, OCI_MANIFEST, &image.body);
    let server = cached_mirror(&upstream).await;

    let response = server
        .get(&format!("/v2/{PREFIX}/app/manifests/huge"))
        .await;
    let message = assert_error(response, 502, "UNAVAILABLE").await;
    assert!(message.contains("larger than"), "{message}");
    let response = server
        .get(&format!("/v2/{PREFIX}/app/manifests/{lying}"))
        .await;
    let message = assert_error(response, 502, "UNAVAILABLE").await;
    assert!(message.contains("nothing was cached"), "{message}");
    assert!(
        server
            .keys(&format!("repos/{PREFIX}/app/_manifests/"))
            .await
            .is_empty()
    );
    pull(&server, "app", "v1", &image).await;
}

#[tokio::test]
async fn referrers_are_listed_from_the_upstream_fetched_on_demand_and_cached_for_when_it_fails() {
    let mut upstream = FakeUpstream::start(false).await;
    let image = publish(&upstream, "app", Some("v1"), 101);
    let empty = "{}";
    upstream.add_blob(empty.as_bytes());
    let signature = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig+json","config":{},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}}}}"#,
        descriptor("application/vnd.oci.empty.v1+json", empty.as_bytes()),
        image.manifest,
        image.body.len()
    );
    let signed = upstream.add_manifest("app", None, OCI_MANIFEST, signature.as_bytes());
    let server = cached_mirror(&upstream).await;
    let listed = |server: &Server, filter: &'static str| {
        let path = format!("/v2/{PREFIX}/app/referrers/{}{filter}", image.manifest);
        let (http, url) = (server.http.clone(), server.url(&path));
        async move {
            let response = http.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let index: serde_json::Value = response.json().await.unwrap();
            index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["digest"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(&server, "").await, vec![signed.clone()]);
    let filter = "?artifactType=application/vnd.example.sig%2Bjson";
    assert_eq!(listed(&server, filter).await, vec![signed.clone()]);
    assert!(
        listed(&server, "?artifactType=application/other")
            .await
            .is_empty()
    );
    let response = server
        .get(&format!("/v2/{PREFIX}/app/manifests/{signed}"))
        .await;
    assert_eq!(
        sha256(&response.bytes().await.unwrap()),
        signed,
        "fetched on demand"
    );
    upstream.stop();
    assert_eq!(
        listed(&server, "").await,
        vec![signed],
        "the cached referrers, upstream down"
    );
}
