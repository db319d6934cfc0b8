//! One blob on its way from an upstream: written to an unnamed temporary file as it arrives,
//! hashed on the way, and read from that file by every client that asked for it, each at its
//! own pace. A reader gets the last byte only once the digest matched, so a client of a
//! corrupt download never receives a complete body. Memory stays at a chunk per writer and
//! reader, whatever the blob's size; the file vanishes with the last reader.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use marina_oci::{Digest, Hasher};
use marina_store::ByteStream;
use tokio::sync::watch;

/// Bytes gathered before each write to the file, and read from it at once.
const CHUNK: usize = 1024 * 1024;

/// How far a download got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    /// This many bytes are in the file.
    Running(u64),
    /// All bytes are in, and their digest matched.
    Verified,
    /// It failed; readers fail too.
    Failed(String),
}

/// A download under way (or just finished).
#[derive(Debug)]
pub(crate) struct Download {
    file: Arc<File>,
    /// The blob's length, as the upstream announced it.
    pub(crate) length: u64,
    progress: watch::Receiver<Progress>,
}

impl Download {
    /// Starts writing `body`, `length` bytes said to hash to `digest`, into a temporary file in
    /// `scratch`. `counted` is told of every chunk received. The returned future finishes the
    /// download: await it (in a task of its own) for the outcome.
    pub(crate) fn start(
        scratch: &Path,
        digest: Digest,
        length: u64,
        body: futures_util::stream::BoxStream<'static, Result<Bytes, marina_upstream::Error>>,
        counted: impl Fn(usize) + Send + 'static,
    ) -> std::io::Result<(
        Arc<Self>,
        impl Future<Output = Result<(), String>> + Send + 'static,
    )> {
        std::fs::create_dir_all(scratch)?;
        let file = Arc::new(tempfile::tempfile_in(scratch)?);
        let (sender, progress) = watch::channel(Progress::Running(0));
        let download = Arc::new(Self {
            file: Arc::clone(&file),
            length,
            progress,
        });
        let fill = async move {
            let outcome = fill(file, digest, length, body, &sender, counted).await;
            let _ = sender.send(match &outcome {
                Ok(()) => Progress::Verified,
                Err(e) => Progress::Failed(e.clone()),
            });
            outcome
        };
        Ok((download, fill))
    }

    /// Streams `range` of the blob as it arrives.
    pub(crate) fn read(self: &Arc<Self>, start: u64, end: u64) -> ByteStream {
        let state = (Arc::clone(self), start, self.progress.clone());
        Box::pin(futures_util::stream::unfold(
            state,
            move |(download, at, mut progress)| async move {
                if at >= end {
                    return None;
                }
                match download.next_chunk(at, end, &mut progress).await {
                    Ok(bytes) => {
                        let next = at + bytes.len() as u64;
                        Some((Ok(bytes), (download, next, progress)))
                    }
                    Err(e) => Some((Err(e), (download, end, progress))),
                }
            },
        ))
    }

    /// The next bytes from `at` (before `end`), waiting for them to arrive.
    async fn next_chunk(
        &self,
        at: u64,
        end: u64,
        progress: &mut watch::Receiver<Progress>,
    ) -> marina_store::Result<Bytes> {
        loop {
            let ready = match &*progress.borrow_and_update() {
                Progress::Running(written) => (*written).min(self.length.saturating_sub(1)),
                Progress::Verified => self.length,
                Progress::Failed(e) => return Err(failed(e)),
            };
            let until = ready.min(end).min(at + CHUNK as u64);
            if at < until {
                return self.read_at(at, until).await;
            }
            if progress.changed().await.is_err() {
                return Err(failed("the download stopped"));
            }
        }
    }

    async fn read_at(&self, from: u64, to: u64) -> marina_store::Result<Bytes> {
        let file = Arc::clone(&self.file);
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; usize::try_from(to - from).unwrap_or(CHUNK)];
            file.read_exact_at(&mut buf, from)
                .map(|()| Bytes::from(buf))
        })
        .await;
        match read {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => Err(failed(&format!("reading the download: {e}"))),
            Err(e) => Err(failed(&format!("reading the download: {e}"))),
        }
    }
}

fn failed(why: &str) -> marina_store::Error {
    marina_store::Error::Unavailable(format!("fetching from the upstream failed: {why}"))
}

/// Writes the body into the file, hashing it, and checks length and digest at the end.
async fn fill(
    file: Arc<File>,
    digest: Digest,
    length: u64,
    mut body: futures_util::stream::BoxStream<'static, Result<Bytes, marina_upstream::Error>>,
    progress: &watch::Sender<Progress>,
    counted: impl Fn(usize),
) -> Result<(), String> {
    let mut hasher = Some(digest.algorithm().hasher());
    let mut written = 0u64;
    let mut pending = BytesMut::with_capacity(CHUNK);
    loop {
        let chunk = body.next().await.transpose().map_err(|e| e.to_string())?;
        if let Some(chunk) = &chunk {
            counted(chunk.len());
            pending.extend_from_slice(chunk);
            if written + pending.len() as u64 > length {
                return Err(format!(
                    "the upstream sent more than the {length} bytes it announced"
                ));
            }
        }
        if pending.len() >= CHUNK || (chunk.is_none() && !pending.is_empty()) {
            let bytes = pending.split().freeze();
            let n = bytes.len() as u64;
            hasher = Some(write(&file, bytes, written, hasher.take()).await?);
            written += n;
            let _ = progress.send(Progress::Running(written));
        }
        if chunk.is_none() {
            break;
        }
    }
    if written != length {
        return Err(format!(
            "the upstream sent {written} of the {length} bytes it announced"
        ));
    }
    let actual = hasher.map(Hasher::finish);
    match actual {
        Some(actual) if actual == digest => Ok(()),
        actual => Err(format!(
            "the upstream sent bytes whose digest is {}, not {digest}; nothing was cached",
            actual.map_or_else(String::new, |d| d.to_string())
        )),
    }
}

/// Hashes and writes one chunk at `offset` off the async workers.
async fn write(
    file: &Arc<File>,
    bytes: Bytes,
    offset: u64,
    hasher: Option<Hasher>,
) -> Result<Hasher, String> {
    let file = Arc::clone(file);
    let mut hasher = hasher.ok_or("the hasher is gone")?;
    tokio::task::spawn_blocking(move || {
        hasher.update(&bytes);
        file.write_all_at(&bytes, offset).map(|()| hasher)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("writing the download: {e}"))
}
