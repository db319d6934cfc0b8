//! Zero-copy blob bodies: on HTTP/1 connections accepted by [`Listener`], the bytes of a blob
//! file go from the page cache to the socket with sendfile(2), never through user memory.
//!
//! hyper hands each body chunk to the socket untouched (it writes with writev when the IO says
//! it can). So a sendfile body yields slices of one shared stand-in buffer, and before yielding
//! each it queues, on its connection, the file range those bytes stand for. The connection
//! knows stand-in slices by their address and sends the queued file range in their place.
//! HTTP/1 writes bodies one after another in the order their chunks were yielded, so the queue
//! and the bytes on the wire agree. HTTP/2 interleaves streams on one connection, so it never
//! takes this path (marina serves HTTP/1 only, and the handler checks the request's version).
//! A stand-in slice with nothing queued for it fails the connection; it is never sent as is.
//! [`crate::connection::Connection`] calls [`poll_write_vectored`] for every write.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::num::NonZeroU64;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use bytes::Bytes;
use marina_store::{Error, FileSlice, Key};
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;

/// Bytes a body yields per chunk, and so the most one sendfile call sends.
const CHUNK: usize = 4 * 1024 * 1024;

/// The stand-in for file bytes. Zeroed on allocation and never read or written, so the pages
/// are never touched and cost no memory.
static STAND_IN: LazyLock<Box<[u8]>> = LazyLock::new(|| vec![0; CHUNK].into_boxed_slice());

pub(crate) fn is_stand_in(buf: &[u8]) -> bool {
    let base = STAND_IN.as_ptr().addr();
    let at = buf.as_ptr().addr();
    !buf.is_empty() && at >= base && at < base + STAND_IN.len()
}

/// The file ranges a connection's stand-in bytes stand for, oldest first. Handlers reach it
/// through the request's `ConnectInfo`.
#[derive(Clone, Debug, Default)]
pub(crate) struct SendQueue(Arc<Mutex<VecDeque<Pending>>>);

/// A run of file bytes not yet sent.
#[derive(Debug)]
struct Pending {
    file: Arc<std::fs::File>,
    offset: u64,
    left: u64,
}

impl SendQueue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Pending>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `len` bytes of `file` from `offset`, joining the run before when it continues it.
    fn push(&self, file: &Arc<std::fs::File>, offset: u64, len: u64) {
        let mut queue = self.lock();
        if let Some(last) = queue.back_mut()
            && Arc::ptr_eq(&last.file, file)
            && last.offset + last.left == offset
        {
            last.left += len;
            return;
        }
        queue.push_back(Pending {
            file: Arc::clone(file),
            offset,
            left: len,
        });
    }

    /// A response body that sends `slice` with sendfile through this queue's connection.
    pub(crate) fn body(&self, slice: FileSlice) -> Body {
        let (file, range, key) = slice.into_parts();
        let state = (self.clone(), Arc::new(file), range, key);
        let chunks = futures_util::stream::try_unfold(state, |(queue, file, range, key)| {
            next_chunk(queue, file, range, key)
        });
        Body::from_stream(chunks)
    }
}

type BodyState = (SendQueue, Arc<std::fs::File>, Range<u64>, Key);

/// Readies the next chunk of the range in the page cache, queues it, and yields its stand-in.
async fn next_chunk(
    queue: SendQueue,
    file: Arc<std::fs::File>,
    range: Range<u64>,
    key: Key,
) -> Result<Option<(Bytes, BodyState)>, Error> {
    let len = (range.end - range.start).min(CHUNK as u64);
    if len == 0 {
        return Ok(None);
    }
    let start = range.start;
    if !cached(&file, start + len - 1) {
        let warm = Arc::clone(&file);
        tokio::task::spawn_blocking(move || read_ahead(&warm, start, len))
            .await
            .map_err(|e| Error::io(&key, io::Error::other(e.to_string())))?
            .map_err(|e| Error::io(&key, e))?;
    }
    queue.push(&file, start, len);
    let stand_in: &'static [u8] = &STAND_IN;
    let chunk = Bytes::from_static(&stand_in[..usize::try_from(len).unwrap_or(CHUNK)]);
    Ok(Some((chunk, (queue, file, start + len..range.end, key))))
}

/// Whether the byte at `at` is in the page cache: a read that may not wait for the disk
/// succeeds. Chunks are read in order, so the last byte of one being there almost always means
/// all of it is; when not, sendfile waits for the disk a little, which costs only time.
fn cached(file: &std::fs::File, at: u64) -> bool {
    let mut byte = [0u8; 1];
    let bufs = &mut [io::IoSliceMut::new(&mut byte)];
    let nowait = rustix::io::preadv2(file, bufs, at, rustix::io::ReadWriteFlags::NOWAIT);
    matches!(nowait, Ok(1))
}

/// Waits, on a blocking thread, until `len` bytes from `offset` are in the page cache (reading
/// their last byte), having asked the kernel to read this chunk and the next one ahead. So
/// sendfile, which runs on an async worker, finds the bytes there and does not wait for disk.
fn read_ahead(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        NonZeroU64::new(2 * len),
        rustix::fs::Advice::WillNeed,
    );
    let mut last = [0u8; 1];
    match file.read_at(&mut last, offset + len - 1)? {
        1 => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file is shorter than its recorded size",
        )),
    }
}

/// Sends up to `want` bytes of the oldest file range queued on `tcp`'s connection.
pub(crate) fn poll_send_file(
    tcp: &TcpStream,
    queue: &SendQueue,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<io::Result<usize>> {
    let mut queue = queue.lock();
    let Some(next) = queue.front_mut() else {
        return Poll::Ready(Err(io::Error::other(
            "a stand-in body chunk reached the socket with no file range queued for it",
        )));
    };
    let count = want.min(usize::try_from(next.left).unwrap_or(usize::MAX));
    loop {
        ready!(tcp.poll_write_ready(cx))?;
        let sent = tcp.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(tcp, &*next.file, Some(&mut next.offset), count)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "a blob file ended before its recorded size",
                )));
            }
            Ok(n) => {
                next.left -= n as u64;
                if next.left == 0 {
                    queue.pop_front();
                }
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Writes `bufs` to `tcp`: the plain buffers before the first stand-in; at a stand-in, the
/// file bytes queued for it.
pub(crate) fn poll_write_vectored(
    tcp: Pin<&mut TcpStream>,
    queue: &SendQueue,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let plain = bufs.iter().take_while(|b| !is_stand_in(b)).count();
    if bufs[..plain].iter().any(|b| !b.is_empty()) {
        return tcp.poll_write_vectored(cx, &bufs[..plain]);
    }
    let stand_ins = bufs[plain..].iter().take_while(|b| is_stand_in(b));
    match stand_ins.map(|b| b.len()).sum() {
        0 => Poll::Ready(Ok(0)),
        want => poll_send_file(&tcp, queue, cx, want),
    }
}
