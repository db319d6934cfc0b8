//! Answers sent before the request body was read (416, 404, 413) must not break the client's
//! write: the client finishes sending its whole body, then reads the answer and its OCI body,
//! and the connection stays usable (regression: marina answered 416 to the conformance suite's
//! retried chunk and closed the socket; the client got `write: broken pipe`).

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::{OCI_MANIFEST, Server, header, read_response};

const MIB: usize = 1024 * 1024;
const PIECE: usize = 64 * 1024;

/// Sends `head` and then `length` body bytes in 64 KiB pieces, every write checked, then reads
/// the answer; then proves the connection still serves a second request.
async fn send_whole_body_then_read(server: &Server, head: &str, length: usize) -> (u16, String) {
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    let mut stream = BufReader::new(stream);
    let head = format!("{head}Host: localhost\r\nContent-Length: {length}\r\n\r\n");
    stream
        .get_mut()
        .write_all(head.as_bytes())
        .await
        .expect("head");
    let piece = vec![b'x'; PIECE];
    let mut sent = 0;
    while sent < length {
        let n = PIECE.min(length - sent);
        let write = stream.get_mut().write_all(&piece[..n]).await;
        write.unwrap_or_else(|e| panic!("the write failed after {sent} of {length} bytes: {e}"));
        sent += n;
    }
    let (status, _, body) = read_response(&mut stream, false).await;
    let again = b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n";
    stream
        .get_mut()
        .write_all(again)
        .await
        .expect("second request");
    let (second, _, _) = read_response(&mut stream, false).await;
    assert_eq!(
        second, 200,
        "the connection was not kept alive after the drain"
    );
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A session that has received one byte; returns its location.
async fn session_holding_one_byte(server: &Server) -> String {
    let started = server
        .request(Method::POST, "/v2/early/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = header(&started, "location").to_owned();
    let patched = server
        .request(Method::PATCH, &location)
        .header("Content-Range", "0-0")
        .body(vec![1u8])
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    header(&patched, "location").to_owned()
}

#[tokio::test]
async fn a_chunk_at_the_wrong_offset_gets_its_416_after_the_whole_body() {
    let server = Server::start().await;
    let location = session_holding_one_byte(&server).await;
    for round in 0..100 {
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nContent-Type: application/octet-stream\r\n\
             Content-Range: 0-{}\r\n",
            16 * MIB - 1
        );
        let (status, body) = send_whole_body_then_read(&server, &head, 16 * MIB).await;
        assert_eq!(status, 416, "round {round}: {body}");
        assert!(
            body.contains("BLOB_UPLOAD_INVALID"),
            "round {round}: {body}"
        );
    }
    let status = server.get(&location).await;
    assert_eq!(
        header(&status, "range"),
        "0-0",
        "a refused chunk changed the session"
    );
}

#[tokio::test]
async fn a_chunk_for_an_unknown_session_gets_its_404_after_the_whole_body() {
    let server = Server::start().await;
    let head = "PATCH /v2/early/blobs/uploads/00000000-0000-4000-8000-000000000000 HTTP/1.1\r\n\
                Content-Type: application/octet-stream\r\n";
    for round in 0..100 {
        let (status, body) = send_whole_body_then_read(&server, head, 16 * MIB).await;
        assert_eq!(status, 404, "round {round}: {body}");
        assert!(
            body.contains("BLOB_UPLOAD_UNKNOWN"),
            "round {round}: {body}"
        );
    }
}

#[tokio::test]
async fn an_oversized_manifest_gets_its_413_after_the_whole_body() {
    let server = Server::start().await;
    let head =
        format!("PUT /v2/early/manifests/latest HTTP/1.1\r\nContent-Type: {OCI_MANIFEST}\r\n");
    for round in 0..100 {
        let (status, body) = send_whole_body_then_read(&server, &head, 32 * MIB).await;
        assert_eq!(status, 413, "round {round}: {body}");
        assert!(body.contains("SIZE_INVALID"), "round {round}: {body}");
    }
    let tags = server.get("/v2/early/tags/list").await;
    assert_eq!(
        tags.status(),
        StatusCode::NOT_FOUND,
        "a refused manifest left a tag"
    );
}

/// The answer waits until the body is in (up to a bound), so a reverse proxy streaming the body
/// (nginx with request buffering off) never sees an answer overtake it; nginx then closes the
/// client's connection after the answer, and the client's next request on it fails.
#[tokio::test]
async fn an_early_answer_waits_for_the_rest_of_the_body() {
    let server = Server::start().await;
    let location = session_holding_one_byte(&server).await;
    let length = 5 * MIB;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: localhost\r\nContent-Range: 0-{}\r\n\
         Content-Length: {length}\r\n\r\n",
        length - 1
    );
    let mut stream = BufReader::new(TcpStream::connect(server.addr()).await.unwrap());
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    let body = vec![b'x'; length];
    stream
        .get_mut()
        .write_all(&body[..length - 1024])
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        stream.get_mut().peek(&mut byte),
    );
    assert!(
        early.await.is_err(),
        "the answer went out before the body was in"
    );
    stream
        .get_mut()
        .write_all(&body[length - 1024..])
        .await
        .unwrap();
    let (status, _, body) = read_response(&mut stream, false).await;
    assert_eq!(status, 416, "{}", String::from_utf8_lossy(&body));
}
