//! The push workflow: every way to upload a blob, mounts, and manifest validation.

use reqwest::{Method, StatusCode};

use crate::common::*;

async fn start_session(s: &Server, repo: &str, query: &str) -> String {
    let response = s
        .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "Range"), "0-0");
    assert!(
        header(&response, "OCI-Chunk-Min-Length")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let id = header(&response, "Docker-Upload-UUID").to_owned();
    let location = header(&response, "Location").to_owned();
    assert_eq!(location, format!("/v2/{repo}/blobs/uploads/{id}"));
    location
}

async fn patch(s: &Server, location: &str, range: Option<&str>, data: &[u8]) -> reqwest::Response {
    let mut request = s.request(Method::PATCH, location).body(data.to_vec());
    if let Some(range) = range {
        request = request.header("Content-Range", range);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn monolithic_post_with_digest_creates_the_blob() {
    let s = Server::start().await;
    let data = b"monolithic";
    let digest = sha256(data);
    let response = s
        .request(
            Method::POST,
            &format!("/v2/m/blobs/uploads/?digest={digest}"),
        )
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "Location"),
        format!("/v2/m/blobs/{digest}")
    );
    assert_eq!(header(&response, "Docker-Content-Digest"), digest);
    assert_eq!(
        s.get(&format!("/v2/m/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &data[..]
    );
}

#[tokio::test]
async fn post_then_put_with_the_whole_body() {
    let s = Server::start().await;
    let location = start_session(&s, "pp", "").await;
    let data = b"whole body in the PUT";
    let digest = sha256(data);
    let response = s
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "Location"),
        format!("/v2/pp/blobs/{digest}")
    );
    assert_eq!(header(&response, "Docker-Content-Digest"), digest);
    assert_error(s.get(&location).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn chunked_upload_with_ranges_status_and_last_chunk_in_put() {
    let s = Server::start().await;
    let location = start_session(&s, "chunked", "").await;
    let response = patch(&s, &location, Some("0-4"), b"hello").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "Range"), "0-4");
    assert_eq!(header(&response, "Location"), location);
    let response = patch(&s, &location, Some("bytes 5-5/*"), b",").await;
    assert_eq!(header(&response, "Range"), "0-5");
    let status = s.get(&location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "Range"), "0-5");
    assert_eq!(header(&status, "Location"), location);
    let digest = sha256(b"hello, world");
    let response = s
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .header("Content-Range", "6-11")
        .body(&b" world"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        s.get(&format!("/v2/chunked/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &b"hello, world"[..]
    );
}

#[tokio::test]
async fn streamed_chunks_without_content_range() {
    let s = Server::start().await;
    let location = start_session(&s, "streamed", "").await;
    let chunks = futures_util::stream::iter(
        ["a", "bc", "def"].map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
    );
    let response = s
        .request(Method::PATCH, &location)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "Range"), "0-5");
    let digest = sha256(b"abcdef");
    let response = s
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn out_of_order_chunks_get_416_and_change_nothing() {
    let s = Server::start().await;
    let location = start_session(&s, "order", "").await;
    let early = patch(&s, &location, Some("5-9"), b"world").await;
    assert_eq!(header(&early, "Range"), "0-0");
    assert_error(early, 416, "BLOB_UPLOAD_INVALID").await;
    assert_eq!(
        patch(&s, &location, Some("0-4"), b"hello").await.status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        patch(&s, &location, Some("0-4"), b"hello").await,
        416,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // Content-Range and Content-Length that disagree are refused too.
    let mismatch = s
        .request(Method::PATCH, &location)
        .header("Content-Range", "5-9")
        .body(&b"abc"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let digest = sha256(b"hello!");
    let late_put = s
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .header("Content-Range", "9-9")
        .body(&b"!"[..])
        .send()
        .await
        .unwrap();
    assert_error(late_put, 416, "BLOB_UPLOAD_INVALID").await;
    assert_eq!(
        header(&s.get(&location).await, "Range"),
        "0-4",
        "offset unchanged"
    );
    let response = s
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .header("Content-Range", "5-5")
        .body(&b"!"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn digest_mismatch_is_400_and_stores_nothing() {
    let s = Server::start().await;
    let wrong = sha256(b"something else");
    let response = s
        .request(
            Method::POST,
            &format!("/v2/dm/blobs/uploads/?digest={wrong}"),
        )
        .body(&b"actual"[..])
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "DIGEST_INVALID").await;
    assert!(s.content().await.is_empty(), "nothing stored");
    assert_error(
        s.get(&format!("/v2/dm/blobs/{}", sha256(b"actual"))).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;

    let location = start_session(&s, "dm", "").await;
    assert_eq!(
        patch(&s, &location, None, b"actual").await.status(),
        StatusCode::ACCEPTED
    );
    let response = s
        .request(Method::PUT, &format!("{location}?digest={wrong}"))
        .body(&b"+more"[..])
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "DIGEST_INVALID").await;
    assert!(s.content().await.is_empty(), "nothing stored");
    assert_eq!(
        header(&s.get(&location).await, "Range"),
        "0-5",
        "the session is as it was"
    );
    let missing = s.request(Method::PUT, &location).send().await.unwrap();
    assert_error(missing, 400, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn sessions_cancel_and_unknown_sessions_are_404() {
    let s = Server::start().await;
    let location = start_session(&s, "cancel", "").await;
    patch(&s, &location, None, b"data").await;
    let response = s.request(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(s.get(&location).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
    assert_error(
        patch(&s, &location, None, b"x").await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        s.request(Method::DELETE, &location).send().await.unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let unknown = "/v2/cancel/blobs/uploads/0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
    assert_error(s.get(unknown).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
    assert_error(
        s.get("/v2/cancel/blobs/uploads/not-a-session").await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // A session belongs to its repository.
    let other = start_session(&s, "cancel", "")
        .await
        .replace("/v2/cancel/", "/v2/other/");
    assert_error(s.get(&other).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn sha512_blobs_with_and_without_a_hint() {
    let s = Server::start().await;
    let data = b"five-twelve";
    let digest = format!(
        "sha512:{}",
        hex::encode(<sha2::Sha512 as sha2::Digest>::digest(data))
    );
    let response = s
        .request(
            Method::POST,
            &format!("/v2/s5/blobs/uploads/?digest={digest}"),
        )
        .body(&data[..])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    for hint in ["?digest-algorithm=sha512", ""] {
        let location = start_session(&s, "s5", hint).await;
        patch(&s, &location, None, data).await;
        let response = s
            .request(Method::PUT, &format!("{location}?digest={digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "hint {hint:?}");
    }
    assert_eq!(
        s.get(&format!("/v2/s5/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &data[..]
    );
    let bad = s
        .request(Method::POST, "/v2/s5/blobs/uploads/?digest-algorithm=md5")
        .send()
        .await
        .unwrap();
    assert_error(bad, 400, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn mounts_across_repositories() {
    let s = Server::start().await;
    let digest = s.push_blob("source/repo", b"shared layer").await;
    let response = s
        .request(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={digest}&from=source/repo"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "Location"),
        format!("/v2/target/blobs/{digest}")
    );
    assert_eq!(header(&response, "Docker-Content-Digest"), digest);
    assert_eq!(
        s.get(&format!("/v2/target/blobs/{digest}")).await.status(),
        StatusCode::OK
    );
    // Not in the source: a normal session instead.
    let missing = sha256(b"nowhere");
    let response = s
        .request(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={missing}&from=source/repo"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(header(&response, "Location").starts_with("/v2/target/blobs/uploads/"));
    // Without `from`, mounting is off by default.
    let response = s
        .request(
            Method::POST,
            &format!("/v2/third/blobs/uploads/?mount={digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_error(
        s.get(&format!("/v2/third/blobs/{digest}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    let bad = s
        .request(
            Method::POST,
            &format!("/v2/t/blobs/uploads/?mount={digest}&from=Bad"),
        )
        .send()
        .await
        .unwrap();
    assert_error(bad, 400, "NAME_INVALID").await;
}

#[tokio::test]
async fn mount_without_from_when_enabled() {
    let s = Server::start_with(marina_registry::Config {
        mount_without_from: true,
        ..Default::default()
    })
    .await;
    let digest = s.push_blob("one", b"anywhere").await;
    let response = s
        .request(
            Method::POST,
            &format!("/v2/two/blobs/uploads/?mount={digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        s.get(&format!("/v2/two/blobs/{digest}")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn manifest_push_answers_location_and_digest() {
    let s = Server::start().await;
    let (digest, _) = s.push_image("mp", "v1", "a").await;
    let response = s.get("/v2/mp/manifests/v1").await;
    assert_eq!(header(&response, "Docker-Content-Digest"), digest);
    let config = s.push_blob("mp", b"{}").await;
    let body = image_manifest(
        &format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#),
        &[],
        "",
    );
    let response = s
        .put_manifest(
            "mp",
            &sha256(body.as_bytes()),
            OCI_MANIFEST,
            body.as_bytes(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "Location"),
        format!("/v2/mp/manifests/{}", sha256(body.as_bytes()))
    );
    assert_eq!(
        header(&response, "Docker-Content-Digest"),
        sha256(body.as_bytes())
    );
}

/// A refused manifest push: reference, Content-Type, body, status, code, what the message says.
type Refusal<'a> = (&'a str, &'a str, &'a [u8], u16, &'a str, &'a str);

#[tokio::test]
async fn manifest_push_validation_errors() {
    let s = Server::start().await;
    let config = s.push_blob("mv", b"{}").await;
    let config_desc = format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#);
    let good = image_manifest(&config_desc, &[], "");
    let missing_layer = image_manifest(
        &config_desc,
        &[descriptor(
            "application/vnd.oci.image.layer.v1.tar",
            b"not pushed",
        )],
        "",
    );
    let missing_child = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        descriptor(OCI_MANIFEST, b"no such manifest")
    );
    let wrong_digest = sha256(b"other");
    let cases: [Refusal<'_>; 8] = [
        (
            "t",
            OCI_MANIFEST,
            b"not json",
            400,
            "MANIFEST_INVALID",
            "not valid JSON",
        ),
        (
            "t",
            OCI_MANIFEST,
            br#"{"schemaVersion":1}"#,
            400,
            "MANIFEST_INVALID",
            "schemaVersion",
        ),
        (
            "t",
            OCI_INDEX,
            good.as_bytes(),
            400,
            "MANIFEST_INVALID",
            "does not match",
        ),
        (
            "t",
            OCI_MANIFEST,
            missing_layer.as_bytes(),
            400,
            "MANIFEST_BLOB_UNKNOWN",
            "not in this repository",
        ),
        (
            &wrong_digest,
            OCI_MANIFEST,
            good.as_bytes(),
            400,
            "DIGEST_INVALID",
            "content digest",
        ),
        (
            "bad..tag/",
            OCI_MANIFEST,
            good.as_bytes(),
            404,
            "UNSUPPORTED",
            "not an endpoint",
        ),
        (
            ".bad",
            OCI_MANIFEST,
            good.as_bytes(),
            400,
            "MANIFEST_INVALID",
            "tag",
        ),
        (
            "i",
            OCI_INDEX,
            missing_child.as_bytes(),
            400,
            "MANIFEST_BLOB_UNKNOWN",
            "not in this repository",
        ),
    ];
    for (reference, content_type, body, status, code, says) in cases {
        let message = assert_error(
            s.put_manifest("mv", reference, content_type, body).await,
            status,
            code,
        )
        .await;
        assert!(
            message.contains(says),
            "{reference}: {message:?} should say {says:?}"
        );
    }
    // Nothing was stored by the refused pushes.
    assert_error(s.get("/v2/mv/manifests/t").await, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(
        s.put_manifest("mv", "t", OCI_MANIFEST, good.as_bytes())
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn manifests_over_the_limit_get_413() {
    let s = Server::start_with(marina_registry::Config {
        max_manifest_bytes: 4096,
        ..Default::default()
    })
    .await;
    let config = s.push_blob("big", b"{}").await;
    let padding = "x".repeat(5000);
    let body = image_manifest(
        &format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#),
        &[],
        &format!(r#","annotations":{{"pad":"{padding}"}}"#),
    );
    assert_error(
        s.put_manifest("big", "t", OCI_MANIFEST, body.as_bytes())
            .await,
        413,
        "SIZE_INVALID",
    )
    .await;
    // Streamed without Content-Length, the limit holds too.
    let chunks = futures_util::stream::iter(
        body.into_bytes()
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let response = s
        .request(Method::PUT, "/v2/big/manifests/t")
        .header("Content-Type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "SIZE_INVALID").await;
}

#[tokio::test]
async fn a_manifest_of_almost_four_mib_is_accepted() {
    let s = Server::start().await;
    let config = s.push_blob("large", b"{}").await;
    let annotations: Vec<String> = (0..390)
        .map(|i| format!(r#""a{i}":"{}""#, "v".repeat(10_000)))
        .collect();
    let body = image_manifest(
        &format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#),
        &[],
        &format!(r#","annotations":{{{}}}"#, annotations.join(",")),
    );
    assert!(body.len() > 3_900_000);
    assert_eq!(
        s.put_manifest("large", "t", OCI_MANIFEST, body.as_bytes())
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn indexes_and_docker_media_types() {
    let s = Server::start().await;
    let (amd, amd_bytes) = s.push_image("multi", "amd", "amd").await;
    let (arm, arm_bytes) = s.push_image("multi", "arm", "arm").await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{amd}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{arm}","size":{},"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
        amd_bytes.len(),
        arm_bytes.len()
    );
    assert_eq!(
        s.put_manifest("multi", "latest", OCI_INDEX, index.as_bytes())
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        header(&s.get("/v2/multi/manifests/latest").await, "Content-Type"),
        OCI_INDEX
    );

    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let config = s.push_blob("docker", br#"{"os":"linux"}"#).await;
    let layer = s.push_blob("docker", b"docker layer").await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{docker}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config}","size":14}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{layer}","size":12}}]}}"#
    );
    assert_eq!(
        s.put_manifest("docker", "v1", docker, body.as_bytes())
            .await
            .status(),
        StatusCode::CREATED
    );
    let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
    let digest = sha256(body.as_bytes());
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"{list_type}","manifests":[{{"mediaType":"{docker}","digest":"{digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        body.len()
    );
    assert_eq!(
        s.put_manifest("docker", "list", list_type, list.as_bytes())
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        header(&s.get("/v2/docker/manifests/list").await, "Content-Type"),
        list_type
    );
}

#[tokio::test]
async fn layers_with_urls_need_not_be_pushed() {
    let s = Server::start().await;
    let config = s.push_blob("foreign", b"{}").await;
    let layer = format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{}","size":5,"urls":["https://example.invalid/layer"]}}"#,
        sha256(b"never")
    );
    let body = image_manifest(
        &format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#),
        &[layer],
        "",
    );
    assert_eq!(
        s.put_manifest("foreign", "t", OCI_MANIFEST, body.as_bytes())
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn several_tags_in_one_push() {
    let s = Server::start().await;
    let config = s.push_blob("tags", b"{}").await;
    let body = image_manifest(
        &format!(r#"{{"mediaType":"{EMPTY_JSON}","digest":"{config}","size":2}}"#),
        &[],
        "",
    );
    let digest = sha256(body.as_bytes());
    let response = s
        .request(
            Method::PUT,
            &format!("/v2/tags/manifests/{digest}?tag=a&tag=b&tag=c"),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let tags: Vec<&str> = response
        .headers()
        .get_all("OCI-Tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["a", "b", "c"]);
    for tag in ["a", "b", "c"] {
        assert_eq!(
            header(
                &s.get(&format!("/v2/tags/manifests/{tag}")).await,
                "Docker-Content-Digest"
            ),
            digest
        );
    }
    let bad = s
        .request(Method::PUT, &format!("/v2/tags/manifests/{digest}?tag=-no"))
        .header("Content-Type", OCI_MANIFEST)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_error(bad, 400, "MANIFEST_INVALID").await;
}

#[tokio::test]
async fn a_tag_moves_to_the_manifest_pushed_last() {
    let s = Server::start().await;
    let (first, first_bytes) = s.push_image("moving", "latest", "one").await;
    let (second, _) = s.push_image("moving", "latest", "two").await;
    assert_ne!(first, second);
    assert_eq!(
        header(
            &s.get("/v2/moving/manifests/latest").await,
            "Docker-Content-Digest"
        ),
        second
    );
    // Pushing the first one again moves the tag back; pushing the same one twice changes nothing.
    for _ in 0..2 {
        let response = s
            .put_manifest("moving", "latest", OCI_MANIFEST, &first_bytes)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            header(
                &s.get("/v2/moving/manifests/latest").await,
                "Docker-Content-Digest"
            ),
            first
        );
    }
}

#[tokio::test]
async fn a_chunk_cut_off_midway_is_not_part_of_the_finished_blob() {
    let s = Server::start().await;
    let counted = b"counted";
    let location = start_session(&s, "cut", "").await;
    let first = patch(&s, &location, Some("0-6"), counted).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    // The next chunk's client goes away after 2 MiB of 4: bytes of it may reach storage, but
    // the session never counts them.
    let (release, held) = tokio::sync::oneshot::channel();
    let cut = s
        .request(Method::PATCH, &location)
        .header("Content-Range", "7-4194310")
        .header("Content-Length", "4194304")
        .body(held_body(bytes::Bytes::from(vec![b'x'; 2 << 20]), held))
        .send();
    let pending = tokio::spawn(cut);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    pending.abort();
    drop(release);
    let digest = sha256(counted);
    let put = s
        .request(Method::PUT, &format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let stored = s
        .get(&format!("/v2/cut/blobs/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        counted.len(),
        "the blob holds exactly what its digest covers"
    );
    assert_eq!(&stored[..], counted);
}
