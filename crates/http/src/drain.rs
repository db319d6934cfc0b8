//! Early answers that leave the connection readable. A handler may answer (416, 404, 413...)
//! before it has read the request body. If the server then stopped reading, the client, still
//! writing, would meet a reset and never see the answer. So a body the handler dropped
//! unfinished is read to its end and discarded before the answer goes out, bounded in bytes
//! and time; past those bounds the answer goes out and the rest is drained in the background,
//! as nginx's lingering close and Go's net/http do. Once drained, the connection stays alive.
//!
//! Draining before answering matters behind a reverse proxy that streams request bodies
//! (nginx with `proxy_request_buffering off`): an answer that overtakes the body makes nginx
//! close the client connection after it, though it said keep-alive, and the client's next
//! request on it fails.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;

/// The most bytes drained before an early answer goes out.
pub(crate) const BEFORE_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// The longest an early answer waits for the body to be drained.
pub(crate) const BEFORE_ANSWER_TIME: Duration = Duration::from_secs(10);

/// The most bytes drained in the background after the answer. A client sending more meets a
/// closed connection, as it would anywhere.
pub(crate) const DRAIN_BYTES: u64 = 256 * 1024 * 1024;

/// The longest a body is drained in the background after the answer.
pub(crate) const DRAIN_TIME: Duration = Duration::from_secs(30);

/// A request body that, dropped before its end, hands the rest back to be drained: to the
/// request's [`Leftover`] while it waits, else to a task in the background.
#[derive(Debug)]
pub(crate) struct DrainOnDrop {
    inner: Option<Body>,
    /// Whether the handler polled it: a client waiting for `100 Continue` has sent nothing yet.
    polled: bool,
    expects_continue: bool,
    give_back: Option<oneshot::Sender<Body>>,
}

/// What the handler left of a request body, drained before the answer goes out.
#[derive(Debug)]
pub(crate) struct Leftover(oneshot::Receiver<Body>);

impl DrainOnDrop {
    /// Wraps the body of a request with these headers.
    pub(crate) fn wrap(body: Body, headers: &HeaderMap) -> (Body, Leftover) {
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let (give_back, leftover) = oneshot::channel();
        let wrapped = Body::new(Self {
            inner: Some(body),
            polled: false,
            expects_continue,
            give_back: Some(give_back),
        });
        (wrapped, Leftover(leftover))
    }
}

impl Leftover {
    /// Once the answer is ready: drains what the handler dropped unread, up to the bounds
    /// before an answer; what remains after them drains in the background. A body still in
    /// use (by a task the handler started) drains in the background when it is dropped.
    pub(crate) async fn drain_before_answer(mut self) {
        let Ok(body) = self.0.try_recv() else {
            return;
        };
        if let Some(rest) = drain(body, BEFORE_ANSWER_BYTES, BEFORE_ANSWER_TIME).await {
            tokio::spawn(async move {
                drain(rest, DRAIN_BYTES, DRAIN_TIME).await;
            });
        }
    }
}

impl http_body::Body for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.polled = true;
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        // A client waiting for `100 Continue` sends no body once it has the answer: the server
        // skips the 100 when nothing read the body.
        if http_body::Body::is_end_stream(&body) || (self.expects_continue && !self.polled) {
            return;
        }
        let body = match self.give_back.take() {
            Some(to) => match to.send(body) {
                Ok(()) => return,
                Err(body) => body,
            },
            None => body,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                drain(body, DRAIN_BYTES, DRAIN_TIME).await;
            });
        }
    }
}

/// Reads and discards `body` until it ends or fails (`None`), or until `bytes` were read or
/// `time` passed (the body, with the rest unread). Dropping a body tells the server whether
/// the connection can be reused.
async fn drain(mut body: Body, bytes: u64, time: Duration) -> Option<Body> {
    let read = async {
        let mut left = bytes;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    left = left.saturating_sub(len);
                    if left == 0 {
                        return true;
                    }
                }
                Some(Err(_)) | None => return false,
            }
        }
    };
    match tokio::time::timeout(time, read).await {
        Ok(false) => None,
        Ok(true) | Err(_) => Some(body),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A body of `chunks` chunks of 1 KiB that counts what was read of it.
    fn counted(chunks: usize, read: &Arc<AtomicU64>) -> Body {
        let read = Arc::clone(read);
        let stream = futures_util::stream::iter((0..chunks).map(move |_| {
            read.fetch_add(1024, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 1024]))
        }));
        Body::from_stream(stream)
    }

    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_body_dropped_unread_is_drained_before_the_answer() {
        let read = Arc::new(AtomicU64::new(0));
        let (body, leftover) = DrainOnDrop::wrap(counted(64, &read), &HeaderMap::new());
        drop(body);
        leftover.drain_before_answer().await;
        assert_eq!(read.load(Ordering::SeqCst), 64 * 1024);
    }

    #[tokio::test]
    async fn a_body_dropped_after_the_answer_drains_in_the_background() {
        let read = Arc::new(AtomicU64::new(0));
        let (body, leftover) = DrainOnDrop::wrap(counted(64, &read), &HeaderMap::new());
        leftover.drain_before_answer().await;
        drop(body);
        settle().await;
        assert_eq!(read.load(Ordering::SeqCst), 64 * 1024);
    }

    #[tokio::test]
    async fn draining_stops_at_its_byte_bound_and_hands_back_the_rest() {
        let read = Arc::new(AtomicU64::new(0));
        let rest = drain(counted(64, &read), 8 * 1024, DRAIN_TIME).await;
        assert_eq!(read.load(Ordering::SeqCst), 8 * 1024);
        assert!(rest.is_some());
    }

    #[tokio::test]
    async fn a_client_waiting_for_100_continue_is_not_asked_for_its_body() {
        let read = Arc::new(AtomicU64::new(0));
        let mut headers = HeaderMap::new();
        headers.insert(header::EXPECT, "100-continue".parse().unwrap());
        let (body, leftover) = DrainOnDrop::wrap(counted(64, &read), &headers);
        drop(body);
        leftover.drain_before_answer().await;
        settle().await;
        assert_eq!(read.load(Ordering::SeqCst), 0);
    }
}
