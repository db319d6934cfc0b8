//! Early answers that leave the connection readable. A handler may answer (416, 404, 413...)
//! before it has read the request body. If the server then stopped reading, the client, still
//! writing, would meet a reset and never see the answer. So a body dropped unfinished is read
//! to its end and discarded in the background, bounded in bytes and in time, the way nginx's
//! lingering close and Go's net/http do. Once it is drained, the connection stays alive.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;

/// The most bytes drained after an early answer. A client sending more meets a closed
/// connection, as it would anywhere.
pub(crate) const DRAIN_BYTES: u64 = 256 * 1024 * 1024;

/// The longest a body is drained after an early answer.
pub(crate) const DRAIN_TIME: Duration = Duration::from_secs(30);

/// A request body that, dropped before its end, drains the rest in the background.
#[derive(Debug)]
pub(crate) struct DrainOnDrop {
    inner: Option<Body>,
    /// Whether the handler polled it: a client waiting for `100 Continue` has sent nothing yet.
    polled: bool,
    expects_continue: bool,
}

impl DrainOnDrop {
    /// Wraps the body of a request with these headers.
    pub(crate) fn wrap(body: Body, headers: &HeaderMap) -> Body {
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        Body::new(Self {
            inner: Some(body),
            polled: false,
            expects_continue,
        })
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
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body, DRAIN_BYTES, DRAIN_TIME));
        }
    }
}

/// Reads and discards `body` until it ends, `bytes` were read, or `time` passed. Dropping it
/// then tells the server whether the connection can be reused.
async fn drain(mut body: Body, bytes: u64, time: Duration) {
    let read = async {
        let mut left = bytes;
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, |d| d.len() as u64);
            left = left.saturating_sub(len);
            if left == 0 {
                return;
            }
        }
    };
    if tokio::time::timeout(time, read).await.is_err() {
        tracing::debug!("stopped draining a request body after an early answer: too slow");
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
    async fn a_body_dropped_unread_is_drained_to_its_end() {
        let read = Arc::new(AtomicU64::new(0));
        drop(DrainOnDrop::wrap(counted(64, &read), &HeaderMap::new()));
        settle().await;
        assert_eq!(read.load(Ordering::SeqCst), 64 * 1024);
    }

    #[tokio::test]
    async fn draining_stops_at_its_byte_bound() {
        let read = Arc::new(AtomicU64::new(0));
        drain(counted(64, &read), 8 * 1024, DRAIN_TIME).await;
        assert_eq!(read.load(Ordering::SeqCst), 8 * 1024);
    }

    #[tokio::test]
    async fn a_client_waiting_for_100_continue_is_not_asked_for_its_body() {
        let read = Arc::new(AtomicU64::new(0));
        let mut headers = HeaderMap::new();
        headers.insert(header::EXPECT, "100-continue".parse().unwrap());
        drop(DrainOnDrop::wrap(counted(64, &read), &headers));
        settle().await;
        assert_eq!(read.load(Ordering::SeqCst), 0);
    }
}
