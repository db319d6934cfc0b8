//! What a client may cost: how many connections, how long a connection may idle or take to
//! send a request head, and how slowly a request body may arrive. A client trickling a byte a
//! second would otherwise hold a connection, an upload session and its buffers forever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The connection limits, each a setting with a default.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request head, from its first byte.
    pub header_timeout: Duration,
    /// How long a connection may sit between requests, or a client leave an answer unread.
    pub idle_timeout: Duration,
    /// The slowest a request body may arrive on average, in bytes per second, once
    /// [`Limits::body_grace`] has passed. Zero turns the check off.
    pub min_body_rate: u64,
    /// How long a body may arrive at any rate before the minimum applies.
    pub body_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            min_body_rate: 1024,
            body_grace: Duration::from_secs(30),
        }
    }
}

/// A request body that fails once it arrives slower than the minimum rate.
#[derive(Debug)]
pub(crate) struct MinRate {
    inner: Body,
    rate: u64,
    grace: Duration,
    started: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl MinRate {
    /// Wraps `body` under `limits`; with no minimum rate, `body` is returned as it is.
    pub(crate) fn wrap(body: Body, limits: &Limits) -> Body {
        if limits.min_body_rate == 0 {
            return body;
        }
        Body::new(Self {
            inner: body,
            rate: limits.min_body_rate,
            grace: limits.body_grace,
            started: Instant::now(),
            received: 0,
            timer: None,
        })
    }

    /// When the body falls behind: the grace, plus the time its bytes so far buy at the rate.
    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.rate as f64);
        self.started + self.grace + earned
    }

    fn too_slow(&self) -> axum::Error {
        axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the request body arrived slower than {} bytes per second ({} bytes in {:.0} s)",
                self.rate,
                self.received,
                self.started.elapsed().as_secs_f64()
            ),
        ))
    }
}

impl http_body::Body for MinRate {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.received += frame.data_ref().map_or(0, |d| d.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(this.too_slow())));
                }
                Poll::Pending
            }
            done => done,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    fn limits(rate: u64, grace_ms: u64) -> Limits {
        Limits {
            min_body_rate: rate,
            body_grace: Duration::from_millis(grace_ms),
            ..Limits::default()
        }
    }

    /// A body yielding `pieces` of `size` bytes, `every` apart.
    fn trickle(pieces: usize, size: usize, every: Duration) -> Body {
        let stream = futures_util::stream::unfold(0, move |i| async move {
            if i == pieces {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, std::io::Error>(Bytes::from(vec![0; size])), i + 1))
        });
        Body::from_stream(stream)
    }

    async fn read_all(body: Body) -> Result<usize, axum::Error> {
        Ok(body.collect().await?.to_bytes().len())
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_the_minimum_fails_after_the_grace() {
        let slow = trickle(100, 1, Duration::from_secs(1));
        let failed = read_all(MinRate::wrap(slow, &limits(100, 5_000))).await;
        assert!(
            failed
                .unwrap_err()
                .to_string()
                .contains("slower than 100 bytes per second")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_or_faster_arrives_whole() {
        let steady = trickle(20, 200, Duration::from_secs(1));
        assert_eq!(
            read_all(MinRate::wrap(steady, &limits(100, 5_000)))
                .await
                .unwrap(),
            4000
        );
        let unchecked = trickle(3, 1, Duration::from_secs(10));
        assert_eq!(
            read_all(MinRate::wrap(unchecked, &limits(0, 0)))
                .await
                .unwrap(),
            3
        );
    }
}
