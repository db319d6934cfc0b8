//! Hashing beside the write: a request's bytes pass through the hasher on a blocking thread on
//! their way to the store, so receiving, hashing and writing run on different cores. Memory is
//! bounded by the chunks in flight.

use bytes::Bytes;
use futures_util::StreamExt;
use marina_oci::Hasher;
use marina_store::InputStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks in flight between two stages (a chunk is one read of the socket, at most ~400 KiB).
const IN_FLIGHT: usize = 8;

/// Splits `body` into the stream the store consumes and the hasher, handed back once the store
/// has drained the stream. Every byte the store receives has been hashed first.
pub(crate) fn hash_on_the_way(
    mut body: InputStream,
    mut hasher: Hasher,
) -> (InputStream, JoinHandle<Hasher>) {
    let (to_hasher, mut from_body) = mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
    let (to_store, from_hasher) = mpsc::channel(IN_FLIGHT);
    tokio::spawn(async move {
        while let Some(item) = body.next().await {
            let failed = item.is_err();
            if to_hasher.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let hashing = tokio::task::spawn_blocking(move || {
        while let Some(item) = from_body.blocking_recv() {
            if let Ok(bytes) = &item {
                hasher.update(bytes);
            }
            if to_store.blocking_send(item).is_err() {
                break;
            }
        }
        hasher
    });
    let stream = futures_util::stream::unfold(from_hasher, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (Box::pin(stream), hashing)
}
