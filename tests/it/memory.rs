//! Memory is bounded by concurrency, not content size: a 1 GiB push and pull through the real
//! binary, with the server's peak RSS read from /proc.

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};

use crate::common::Process;

const MIB: usize = 1024 * 1024;

/// Deterministic incompressible bytes, a MiB at a time.
fn chunks(total_mib: usize) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    seeded_chunks(total_mib, 0)
}

/// Like [`chunks`], different for each `seed`.
pub(crate) fn seeded_chunks(
    total_mib: usize,
    seed: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::iter(0..total_mib).map(move |i| {
        let mut state = (i as u64 + 1 + (seed << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut chunk = Vec::with_capacity(MIB);
        while chunk.len() < MIB {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.extend_from_slice(&state.to_le_bytes());
        }
        Ok(Bytes::from(chunk))
    })
}

async fn digest_of(total_mib: usize) -> String {
    seeded_digest(total_mib, 0).await
}

/// The digest of [`seeded_chunks`].
pub(crate) async fn seeded_digest(total_mib: usize, seed: u64) -> String {
    let mut hasher = Sha256::new();
    let mut stream = Box::pin(seeded_chunks(total_mib, seed));
    while let Some(chunk) = stream.next().await {
        hasher.update(chunk.unwrap());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Pushes and pulls `total_mib`; returns the server's peak RSS in MiB afterwards.
pub(crate) async fn round_trip(marina: &Process, total_mib: usize) -> u64 {
    let http = reqwest::Client::new();
    let digest = digest_of(total_mib).await;
    let url = format!("{}/v2/memory/blobs/uploads/?digest={digest}", marina.base);
    let response = http
        .post(url)
        .body(reqwest::Body::wrap_stream(chunks(total_mib)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let mut pulled = http
        .get(format!("{}/v2/memory/blobs/{digest}", marina.base))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut hasher = Sha256::new();
    let mut length = 0;
    while let Some(chunk) = pulled.next().await {
        let chunk = chunk.unwrap();
        length += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!(length, total_mib * MIB);
    assert_eq!(
        format!("sha256:{}", hex::encode(hasher.finalize())),
        digest,
        "pulled bytes match"
    );
    marina.status_kib("VmHWM") / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_push_and_pull_keep_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let marina = Process::start(dir.path(), &[]).await;
    let after_small = round_trip(&marina, 16).await;
    let after_big = round_trip(&marina, 1024).await;
    eprintln!("marina peak RSS: {after_small} MiB after 16 MiB, {after_big} MiB after 1 GiB");
    assert!(
        after_big <= after_small + 16,
        "peak RSS grew with the blob: {after_small} -> {after_big} MiB"
    );
    assert!(after_big < 64, "peak RSS {after_big} MiB");
}
