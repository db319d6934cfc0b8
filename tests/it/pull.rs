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
        let response = s.get_range(&path, range).await;
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
        let response = s.get_range(&path, range).await;
        assert_eq!(
            header(&response, "Content-Range"),
            "bytes */2048",
            "{range}"
        );
        assert_error(response, 416, "SIZE_INVALID").await;
    }
    // RFC 9110 §14.2: a range in a unit the server does not know is ignored: 200, whole blob.
    let other_unit = s.get_range(&path, "lines=1-2").await;
    assert_eq!(other_unit.status(), StatusCode::OK);
    assert!(other_unit.headers().get("Content-Range").is_none());
    assert_eq!(other_unit.bytes().await.unwrap(), data);
    let garbage = s.get_range(&path, "bytes=x-2").await;
    assert_error(garbage, 416, "BLOB_UPLOAD_INVALID").await;
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

/// Regression: an empty blob through a session (POST, then PUT ?digest= with no body, with or
/// without `Content-Length: 0`) answered 500, since nothing was ever staged.
#[tokio::test]
async fn an_empty_blob_through_a_session_is_created() {
    let s = Server::start().await;
    let digest = sha256(b"");
    for (repo, content_length) in [("empty/with-length", true), ("empty/without", false)] {
        let start = s.request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"));
        let start = start.send().await.unwrap();
        assert_eq!(start.status(), StatusCode::ACCEPTED);
        let location = format!("{}?digest={digest}", header(&start, "Location"));
        let (status, body) = if content_length {
            let put = s
                .request(Method::PUT, &location)
                .header("Content-Length", "0");
            let put = put.send().await.unwrap();
            (put.status().as_u16(), put.text().await.unwrap())
        } else {
            raw_request_without_length(s.addr(), "PUT", &location).await
        };
        assert_eq!(status, 201, "{repo}: {body}");
        let get = s.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        assert_eq!(get.status(), StatusCode::OK, "{repo}");
        assert!(get.bytes().await.unwrap().is_empty());
    }
}

/// Blobs large enough to be sent from their files (with sendfile on the filesystem backend).
const LARGE: usize = 9 * 1024 * 1024 + 123;

#[tokio::test]
async fn large_blobs_are_sent_whole_and_in_ranges() {
    let s = Server::start().await;
    let data = noise(LARGE, 1);
    let digest = s.push_blob("large", &data).await;
    let path = format!("/v2/large/blobs/{digest}");
    let whole = s.get(&path).await;
    assert_eq!(header(&whole, "Content-Length"), LARGE.to_string());
    assert!(whole.bytes().await.unwrap() == data, "whole blob differs");
    let ranges = [
        ("bytes=4194000-8388999", 4_194_000..8_389_000),
        ("bytes=1-", 1..LARGE),
        ("bytes=-5", LARGE - 5..LARGE),
        ("bytes=4194304-4194304", 4_194_304..4_194_305),
    ];
    for (range, expected) in ranges {
        let response = s.get_range(&path, range).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let body = response.bytes().await.unwrap();
        assert!(body == data[expected], "{range}: bytes differ");
    }
    let together = (0..4).map(|_| async { s.get(&path).await.bytes().await.unwrap() });
    for body in futures_util::future::join_all(together).await {
        assert!(body == data, "a concurrent download differs");
    }
}

#[tokio::test]
async fn pipelined_requests_each_get_their_own_body() {
    use tokio::io::AsyncWriteExt;
    let s = Server::start().await;
    let a = noise(LARGE, 2);
    let b = noise(LARGE / 2, 3);
    let small = b"a small blob".to_vec();
    let (da, db, ds) = (
        s.push_blob("pipe", &a).await,
        s.push_blob("pipe", &b).await,
        s.push_blob("pipe", &small).await,
    );
    let get = |digest: &str, extra: &str| {
        format!("GET /v2/pipe/blobs/{digest} HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
    };
    let head = format!("HEAD /v2/pipe/blobs/{db} HTTP/1.1\r\nHost: x\r\n\r\n");
    let requests = [
        get(&da, ""),
        head,
        get(&ds, ""),
        get(&db, "Range: bytes=1000-\r\n"),
        get(&da, ""),
    ];
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stream
        .write_all(requests.concat().as_bytes())
        .await
        .unwrap();
    let mut stream = tokio::io::BufReader::new(stream);
    let expected: [(u16, bool, &[u8]); 5] = [
        (200, false, &a),
        (200, true, b""),
        (200, false, &small),
        (206, false, &b[1000..]),
        (200, false, &a),
    ];
    for (i, (status, is_head, body)) in expected.into_iter().enumerate() {
        let (got_status, _, got_body) = read_response(&mut stream, is_head).await;
        assert_eq!(got_status, status, "response {i}");
        assert!(got_body == body, "response {i}: body differs");
    }
}

#[tokio::test]
async fn a_client_hanging_up_mid_blob_leaves_the_server_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start().await;
    let data = noise(LARGE, 4);
    let digest = s.push_blob("hangup", &data).await;
    let request = format!("GET /v2/hangup/blobs/{digest} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut some = vec![0; 64 * 1024];
    stream.read_exact(&mut some).await.unwrap();
    drop(stream);
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut stream = tokio::io::BufReader::new(stream);
    let (status, _, body) = read_response(&mut stream, false).await;
    assert_eq!(status, 200);
    assert!(body == data, "HTTP/1.0 download differs");
}
