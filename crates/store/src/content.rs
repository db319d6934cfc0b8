//! What a read hands back: a byte stream, or a slice of a local file that the HTTP layer can
//! pass to the kernel (sendfile) instead of copying it through user memory.

use std::io::{Read as _, Seek as _};
use std::ops::Range;

use bytes::Bytes;

use crate::{ByteStream, Error, Key, Result};

/// Bytes read per step when a file slice is streamed.
const READ_CHUNK: usize = 2 * 1024 * 1024;
/// Steps read ahead of the consumer.
const READ_AHEAD: usize = 2;

/// The bytes of a read, in the form that costs the least to send.
pub enum Content {
    /// Bytes to copy out as they come.
    Stream(ByteStream),
    /// A range of a local file that nothing rewrites while it is open.
    File(FileSlice),
}

impl Content {
    /// The bytes as a stream, whatever the form.
    #[must_use]
    pub fn into_stream(self) -> ByteStream {
        match self {
            Self::Stream(stream) => stream,
            Self::File(slice) => slice.into_stream(),
        }
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stream(_) => f.write_str("Content::Stream"),
            Self::File(slice) => f.debug_tuple("Content::File").field(slice).finish(),
        }
    }
}

/// `range` of an open file holding the object under `key`. The file is immutable: objects
/// are only ever replaced by renaming a new file over the old name.
#[derive(Debug)]
pub struct FileSlice {
    file: std::fs::File,
    range: Range<u64>,
    key: Key,
}

impl FileSlice {
    pub(crate) fn new(file: std::fs::File, range: Range<u64>, key: Key) -> Self {
        Self { file, range, key }
    }

    /// The open file, the range to send, and the key (for error messages).
    #[must_use]
    pub fn into_parts(self) -> (std::fs::File, Range<u64>, Key) {
        (self.file, self.range, self.key)
    }

    /// Streams the range: one blocking thread reads it in `READ_CHUNK` steps straight into
    /// the buffers it hands on (no second copy, no hand-off per chunk), a few steps ahead.
    #[must_use]
    pub fn into_stream(self) -> ByteStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let Self {
                mut file,
                range,
                key,
            } = self;
            if let Err(e) = file.seek(std::io::SeekFrom::Start(range.start)) {
                let _ = tx.blocking_send(Err(Error::io(&key, e)));
                return;
            }
            let mut left = range.end - range.start;
            while left > 0 {
                let chunk = read_step(&mut file, left).map_err(|e| Error::io(&key, e));
                left = chunk.as_ref().map_or(0, |c| left - c.len() as u64);
                if tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|c| (c, rx))
        }))
    }
}

/// Reads the next step of at most `left` bytes; a file shorter than promised is an error.
fn read_step(file: &mut std::fs::File, left: u64) -> std::io::Result<Bytes> {
    let step = left.min(READ_CHUNK as u64);
    let mut buf = Vec::with_capacity(usize::try_from(step).unwrap_or(READ_CHUNK));
    file.take(step).read_to_end(&mut buf)?;
    if buf.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Bytes::from(buf))
}
