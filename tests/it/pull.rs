//! The pull workflow: `GET /v2/`, manifests by tag and digest, blobs whole and in ranges.

use reqwest::{Method, StatusCode};

use crate::common::*;

#[tokio::test]
async fn base_endpoint_answers_with_the_api_version() {
    let s = Server::start().await;
    let response = s.get("/v2/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "Docker-Distribution-API-Version"),
        "registry/2.0"
    );
    assert_eq!(s.get("/v2").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn manifests_are_served_untouched_by_tag_and_by_digest() {
    let s = Server::start().await;
    let (digest, bytes) = s.push_image("app/web", "v1", "pull").await;
    for reference in ["v1", digest.as_str()] {
        let path = format!("/v2/app/web/manifests/{reference}");
        // No Accept header at all: the manifest is still served.
        let response = s.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "Content-Type"), OCI_MANIFEST);
        assert_eq!(header(&response, "Docker-Content-Digest"), digest);
        assert_eq!(header(&response, "Content-Length"), bytes.len().to_string());
        assert_eq!(response.bytes().await.unwrap(), bytes, "bytes as pushed");
        let head = s.head(&path).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "Content-Length"), bytes.len().to_string());
        assert_eq!(header(&head, "Docker-Content-Digest"), digest);
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD has no body");
    }
}

#[tokio::test]
async fn manifests_keep_unknown_fields_and_whitespace() {
    let s = Server::start().await;
    let config = s.push_blob("odd", b"{}").await;
    let body = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"x-custom\": {{\"kept\": true}},\n  \"config\": {{\"mediaType\": \"{EMPTY_JSON}\", \"digest\": \"{config}\", \"size\": 2, \"data\": \"e30=\"}},\n  \"layers\": []\n}}\n"
    );
    assert_eq!(
        s.put_manifest("odd", "t", OCI_MANIFEST, body.as_bytes())
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        s.get("/v2/odd/manifests/t").await.text().await.unwrap(),
        body
    );
}

#[tokio::test]
async fn unknown_and_malformed_manifest_references() {
    let s = Server::start().await;
    s.push_image("r", "v1", "x").await;
    assert_error(
        s.get("/v2/r/manifests/missing").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.head("/v2/r/manifests/missing").await.status(),
        StatusCode::NOT_FOUND
    );
    let absent = sha256(b"absent");
    assert_error(
        s.get(&format!("/v2/r/manifests/{absent}")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // A malformed tag can name nothing: unknown (the upstream conformance suite requires 404).
    assert_error(
        s.get("/v2/r/manifests/.INVALID_MANIFEST_NAME").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // A malformed digest is a bad request, never a 500.
    assert_error(
        s.get("/v2/r/manifests/sha256:totallywrong").await,
        400,
        "DIGEST_INVALID",
    )
    .await;
    assert_error(
        s.get("/v2/r/manifests/md5:abc").await,
        400,
        "DIGEST_INVALID",
    )
    .await;
    assert_error(s.get("/v2/Bad/manifests/v1").await, 400, "NAME_INVALID").await;
}

#[tokio::test]
async fn blobs_are_served_with_length_digest_and_type() {
    let s = Server::start().await;
    let data = b"some blob bytes".repeat(1000);
    let digest = s.push_blob("b", &data).await;
    let path = format!("/v2/b/blobs/{digest}");
    let response = s.get(&path).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "Content-Type"),
        "application/octet-stream"
    );
    assert_eq!(header(&response, "Docker-Content-Digest"), digest);
    assert_eq!(header(&response, "Content-Length"), data.len().to_string());
    assert_eq!(response.bytes().await.unwrap(), data);
    let head = s.head(&path).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "Content-Length"), data.len().to_string());
    assert!(head.bytes().await.unwrap().is_empty());
    let unknown = sha256(b"never pushed");
    assert_error(
        s.get(&format!("/v2/b/blobs/{unknown}")).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(
        s.head(&format!("/v2/b/blobs/{unknown}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_error(
        s.get("/v2/b/blobs/sha256:short").await,
        400,
        "DIGEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn blob_ranges_give_206_or_416() {
    let s = Server::start().await;
    let data: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
    let digest = s.push_blob("ranges", &data).await;
    let path = format!("/v2/ranges/blobs/{digest}");
    let cases: [(&str, std::ops::Range<usize>); 4] = [
        ("bytes=500-1499", 500..1500),
        ("bytes=500-", 500..2048),
        ("bytes=-500", 1548..2048),
        ("bytes=2000-5000", 2000..2048),
    ];
    for (range, expected) in cases {
        let response = s
            .request(Method::GET, &path)
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let content_range = format!("bytes {}-{}/2048", expected.start, expected.end - 1);
        assert_eq!(header(&response, "Content-Range"), content_range, "{range}");
        assert_eq!(
            header(&response, "Content-Length"),
            expected.len().to_string(),
            "{range}"
        );
        assert_eq!(
            response.bytes().await.unwrap(),
            data[expected].to_vec(),
            "{range}"
        );
    }
    for range in ["bytes=500-0", "bytes=5000-10000", "bytes=-0"] {
        let response = s
            .request(Method::GET, &path)
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&response, "Content-Range"),
            "bytes */2048",
            "{range}"
        );
        assert_error(response, 416, "SIZE_INVALID").await;
    }
    let garbage = s
        .request(Method::GET, &path)
        .header("Range", "lines=1-2")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn empty_blobs_push_and_pull() {
    let s = Server::start().await;
    let digest = s.push_blob("empty", b"").await;
    let path = format!("/v2/empty/blobs/{digest}");
    let head = s.head(&path).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "Content-Length"), "0");
    let get = s.get(&path).await;
    assert_eq!(header(&get, "Content-Length"), "0");
    assert!(get.bytes().await.unwrap().is_empty());
}
