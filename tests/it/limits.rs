//! Connection limits: at most N connections, idle connections and slow request heads closed,
//! request bodies slower than the minimum rate refused, and answers a client stops reading
//! abandoned.

use std::sync::Arc;
use std::time::Duration;

use marina_http::Limits;
use marina_store::filesystem::FileStore;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::*;

async fn limited(limits: Limits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    Server::serve_limited(store, marina_registry::Config::default(), dir, limits).await
}

/// Whether the server closed the connection within `within` (reads until EOF or an error).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = vec![0u8; 64 * 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

const BASE: &[u8] = b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let s = limited(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let first = TcpStream::connect(s.addr()).await.unwrap();
    let _second = TcpStream::connect(s.addr()).await.unwrap();
    let mut third = BufReader::new(TcpStream::connect(s.addr()).await.unwrap());
    third.get_mut().write_all(BASE).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), third.get_mut().peek(&mut byte));
    assert!(
        early.await.is_err(),
        "a third connection was served past the limit of 2"
    );
    drop(first);
    let (status, _, _) =
        tokio::time::timeout(Duration::from_secs(5), read_response(&mut third, false))
            .await
            .expect("served once a connection closed");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_secs(1);
    let s = limited(Limits {
        idle_timeout,
        ..Limits::default()
    })
    .await;
    let mut stream = BufReader::new(TcpStream::connect(s.addr()).await.unwrap());
    stream.get_mut().write_all(BASE).await.unwrap();
    assert_eq!(read_response(&mut stream, false).await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    stream.get_mut().write_all(BASE).await.unwrap();
    assert_eq!(
        read_response(&mut stream, false).await.0,
        200,
        "kept alive within the timeout"
    );
    let mut stream = stream.into_inner();
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).await,
        "still open"
    );
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_closes_the_connection() {
    let header_timeout = Duration::from_secs(1);
    let s = limited(Limits {
        header_timeout,
        ..Limits::default()
    })
    .await;
    let mut stream = TcpStream::connect(s.addr()).await.unwrap();
    stream.write_all(b"GET /v2/ HTTP/1.1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).await,
        "still open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_refused_and_the_session_survives() {
    let limits = Limits {
        min_body_rate: 1024,
        body_grace: Duration::from_secs(1),
        ..Limits::default()
    };
    let s = limited(limits).await;
    let start = s
        .request(Method::POST, "/v2/slow/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&start, "Location").to_owned();
    // 10 bytes every 200 ms: 50 bytes per second, far below 1 KiB.
    let trickle = futures_util::stream::unfold(0, |i| async move {
        (i < 100).then_some(())?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 10])),
            i + 1,
        ))
    });
    let patch = s
        .request(Method::PATCH, &location)
        .body(reqwest::Body::wrap_stream(trickle));
    let started = std::time::Instant::now();
    let refused = patch.send().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "held for {:?}",
        started.elapsed()
    );
    let body = assert_error(refused, 400, "BLOB_UPLOAD_INVALID").await;
    assert!(body.contains("slower than 1024 bytes per second"), "{body}");
    let status = s.get(&location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&status, "Range"),
        "0-0",
        "the refused chunk changed the session"
    );
}

#[tokio::test]
async fn an_answer_the_client_stops_reading_is_abandoned_after_the_idle_timeout() {
    let idle_timeout = Duration::from_secs(1);
    let s = limited(Limits {
        idle_timeout,
        ..Limits::default()
    })
    .await;
    let blob = noise(64 * 1024 * 1024, 3);
    let digest = s.push_blob("unread", &blob).await;
    let mut stream = TcpStream::connect(s.addr()).await.unwrap();
    let request = format!("GET /v2/unread/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    assert!(
        received.len() < blob.len(),
        "the whole blob was sent to a client that stopped reading"
    );
}
