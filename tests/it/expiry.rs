//! Upload expiry against a slow client: a session being written to is never expired, however
//! long its request runs, and a session that really expired answers 404, never 500
//! (regression: the purge unlinked a running PATCH's data, and every later request of that
//! session answered 500).

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;

use crate::common::*;
use crate::garage;

const EXPIRY: &str = "2s";

/// The binary with a 2 s upload expiry (so the purge runs every second), on this run's
/// backend; on S3, a second replica on the same bucket purges too.
async fn marina_with_tiny_expiry(dir: &std::path::Path) -> (Process, Option<Process>) {
    if testing_s3() {
        let node = garage::shared();
        let env = garage::s3_env(&node.endpoint(), &garage::unique_prefix("expiry"));
        let args = ["--upload-expiry".into(), EXPIRY.into()];
        let first = Process::spawn(&args, &env).await;
        (first, Some(Process::spawn(&args, &env).await))
    } else {
        (
            Process::start(dir, &["--upload-expiry", EXPIRY]).await,
            None,
        )
    }
}

/// A body that sends `pieces` pieces of 1 KiB, one every `every`.
fn trickle(pieces: usize, every: Duration) -> reqwest::Body {
    let stream = futures_util::stream::iter(0..pieces).then(move |i| async move {
        tokio::time::sleep(every).await;
        Ok::<_, std::io::Error>(Bytes::from(vec![u8::try_from(i % 251).unwrap(); 1024]))
    });
    reqwest::Body::wrap_stream(stream)
}

use futures_util::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_sent_for_longer_than_the_expiry_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (marina, other) = marina_with_tiny_expiry(dir.path()).await;
    let http = reqwest::Client::new();
    let start = http
        .post(format!("{}/v2/slow/blobs/uploads/", marina.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let location = header(&start, "Location").to_owned();
    let url = format!("{}{location}", marina.base);
    // Another replica's purge must not take the session for idle either.
    let watched = format!("{}{location}", other.as_ref().unwrap_or(&marina).base);
    // 28 pieces, 250 ms apart: 7 s, three and a half expiries.
    let pieces = 28;
    let patch = http
        .patch(&url)
        .body(trickle(pieces, Duration::from_millis(250)))
        .send();
    let watch = async {
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let status = http.get(&watched).send().await.unwrap();
            assert_eq!(status.status(), StatusCode::NO_CONTENT, "expired mid-write");
        }
    };
    let (patched, ()) = tokio::join!(patch, watch);
    let patched = patched.unwrap();
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header(&patched, "Range"),
        format!("0-{}", pieces * 1024 - 1)
    );
    let whole: Vec<u8> = (0..pieces)
        .flat_map(|i| vec![u8::try_from(i % 251).unwrap(); 1024])
        .collect();
    let digest = sha256(&whole);
    let put = http
        .put(format!("{url}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let got = http
        .get(format!("{}/v2/slow/blobs/{digest}", marina.base))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_answers_404_to_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let (marina, _other) = marina_with_tiny_expiry(dir.path()).await;
    let http = reqwest::Client::new();
    let start = http
        .post(format!("{}/v2/idle/blobs/uploads/", marina.base))
        .send()
        .await
        .unwrap();
    let url = format!("{}{}", marina.base, header(&start, "Location"));
    let chunk = http
        .patch(&url)
        .header("Content-Range", "0-2")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(chunk.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let status = http.get(&url).send().await.unwrap();
    assert_error(status, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let more = http
        .patch(&url)
        .header("Content-Range", "3-5")
        .body("def")
        .send()
        .await
        .unwrap();
    assert_error(more, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let digest = sha256(b"abc");
    let put = http
        .put(format!("{url}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_error(put, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let cancel = http.delete(&url).send().await.unwrap();
    assert_error(cancel, 404, "BLOB_UPLOAD_UNKNOWN").await;
}
