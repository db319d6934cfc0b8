//! Hashing beside the write: a request's bytes pass through the hasher on a blocking thread on
//! their way to the store, so receiving, hashing and writing run on different cores. Memory is
//! bounded by the chunks in flight.

use bytes::Bytes;
use futures_util::StreamExt;
use marina_oci::Hasher;
use marina_store::InputStream;
use tokio::sync::{mpsc, oneshot};

/// Chunks in flight between two stages (a chunk is one read of the socket, at most ~400 KiB).
const IN_FLIGHT: usize = 4;

/// Splits `body` into the stream the store consumes and the hasher, handed back once the store
/// has drained the stream. Every byte the store receives has been hashed first. Nothing is
/// read from `body` until the store first asks for bytes, so a write waiting for room in the
/// store holds none of the client's bytes.
pub(crate) fn hash_on_the_way(
    body: InputStream,
    hasher: Hasher,
) -> (InputStream, oneshot::Receiver<Hasher>) {
    let (done, hashed) = oneshot::channel();
    let start = async move {
        let (to_hasher, from_body) = mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
        let (to_store, from_hasher) = mpsc::channel(IN_FLIGHT);
        tokio::spawn(read_body(body, to_hasher));
        tokio::task::spawn_blocking(move || {
            let _ = done.send(hash_all(from_body, &to_store, hasher));
        });
        futures_util::stream::unfold(from_hasher, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    };
    (
        Box::pin(futures_util::stream::once(start).flatten()),
        hashed,
    )
}

/// Passes the body on until it ends, fails, or nobody listens.
async fn read_body(mut body: InputStream, to_hasher: mpsc::Sender<std::io::Result<Bytes>>) {
    while let Some(item) = body.next().await {
        let failed = item.is_err();
        if to_hasher.send(item).await.is_err() || failed {
            break;
        }
    }
}

/// Hashes every chunk on its way to the store (on a blocking thread); returns the hasher.
fn hash_all(
    mut from_body: mpsc::Receiver<std::io::Result<Bytes>>,
    to_store: &mpsc::Sender<std::io::Result<Bytes>>,
    mut hasher: Hasher,
) -> Hasher {
    while let Some(item) = from_body.blocking_recv() {
        if let Ok(bytes) = &item {
            hasher.update(bytes);
        }
        if to_store.blocking_send(item).is_err() {
            break;
        }
    }
    hasher
}
