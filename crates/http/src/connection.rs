//! Client connections: accepted up to a limit, tuned (no Nagle delay, a short unsent queue),
//! and closed when they idle between requests, take too long to send a request head, or stop
//! reading an answer. Plain connections write through [`crate::sendfile`], which sends blob
//! files in place of stand-in bytes; TLS connections (handshaken on first use, so a slow client
//! never holds up the accept loop) write through rustls and never see a stand-in.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::Limits;
use crate::sendfile::{self, SendQueue};

/// Unsent bytes a connection's socket queues at most before a write waits (`TCP_NOTSENT_LOWAT`).
///
/// When the client reads slower than marina sends (one client pulling a big blob), a full
/// socket buffer of unsent bytes waits for the client's window, and the kernel transmits them
/// when the client's acknowledgements arrive: on the client's core, in the client's time. With
/// a short queue, marina's next sendfile transmits them on its own core. Over loopback, one
/// pull of a cached 1 GiB blob went from 2.0–2.3 GiB/s to 3.2–3.6 GiB/s (curl and
/// `marina bench`). A fast client is unaffected: with the window open, bytes leave as soon as
/// they are queued.
const NOTSENT_LOWAT: u32 = 16 * 1024;

/// Accepts TCP connections as [`Connection`]s, at most `max_connections` open at once: past
/// that, new ones wait in the kernel's backlog.
pub(crate) struct Listener {
    tcp: tokio::net::TcpListener,
    open: Arc<Semaphore>,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Listener {
    pub(crate) fn new(
        tcp: tokio::net::TcpListener,
        limits: Limits,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        Self {
            tcp,
            open,
            limits,
            tls,
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = Arc::clone(&self.open)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let (tcp, peer) = axum::serve::Listener::accept(&mut self.tcp).await;
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT);
        let io = match &self.tls {
            Some(acceptor) => Io::Handshake(Box::pin(acceptor.accept(tcp))),
            None => Io::Plain(tcp),
        };
        (Connection::new(io, slot, self.limits), peer)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// What handlers reach of their connection through `ConnectInfo`.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionInfo {
    /// Where sendfile bodies queue their file ranges.
    pub(crate) queue: SendQueue,
    /// Requests under way, for the connection's timeouts.
    pub(crate) activity: Activity,
    /// The client's address.
    pub(crate) peer: std::net::SocketAddr,
    /// Whether the connection is TLS (and so may not send stand-ins).
    pub(crate) tls: bool,
    /// Who the client's certificate says it is (mTLS).
    pub(crate) client: ClientName,
}

/// The Common Name of the client's verified certificate, known once the handshake is done
/// (before any request is read).
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientName(Arc<OnceLock<String>>);

impl ClientName {
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    fn learn(&self, tls: &rustls::ServerConnection) {
        let leaf = tls.peer_certificates().and_then(<[_]>::first);
        if let Some(name) = leaf.and_then(|c| crate::tls::common_name(c)) {
            let _ = self.0.set(name);
        }
    }
}

impl Connected<IncomingStream<'_, Listener>> for ConnectionInfo {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        let io = stream.io();
        Self {
            queue: io.queue.clone(),
            activity: io.activity.clone(),
            peer: *stream.remote_addr(),
            tls: !matches!(io.io, Io::Plain(_)),
            client: io.client.clone(),
        }
    }
}

/// A connection's requests under way and when it last changed phase.
#[derive(Clone, Debug)]
pub(crate) struct Activity(Arc<Mutex<Phase>>);

#[derive(Debug)]
struct Phase {
    /// Requests whose answer is not yet fully written.
    requests: usize,
    /// When the connection last became idle (no request under way).
    idle_since: Instant,
    /// When the first byte of the next request head arrived, while idle.
    head_since: Option<Instant>,
    /// The task that last found nothing to read: woken when the connection turns idle, so that
    /// it arms the idle timer instead of the one it armed before.
    reader: Option<Waker>,
}

impl Activity {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Phase {
            requests: 0,
            idle_since: Instant::now(),
            head_since: None,
            reader: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request's head was read and handling began.
    pub(crate) fn request_started(&self) {
        let mut phase = self.lock();
        phase.requests += 1;
        phase.head_since = None;
    }

    /// A request's answer was written, or abandoned.
    pub(crate) fn request_finished(&self) {
        let mut phase = self.lock();
        phase.requests = phase.requests.saturating_sub(1);
        if phase.requests == 0 {
            phase.idle_since = Instant::now();
            if let Some(reader) = phase.reader.take() {
                reader.wake();
            }
        }
    }

    fn bytes_arrived(&self) {
        let mut phase = self.lock();
        if phase.requests == 0 && phase.head_since.is_none() {
            phase.head_since = Some(Instant::now());
        }
    }

    /// When the connection times out while waiting to read: idle too long, or a request head
    /// too slow. None while a request is under way (its body has a rate limit of its own).
    /// `reader` is woken when the phase changes, to arm the timer of the next one.
    fn read_deadline(&self, limits: &Limits, reader: &Waker) -> Option<Instant> {
        let mut phase = self.lock();
        phase.reader = Some(reader.clone());
        match (phase.requests, phase.head_since) {
            (0, Some(head)) => Some(head + limits.header_timeout),
            (0, None) => Some(phase.idle_since + limits.idle_timeout),
            _ => None,
        }
    }
}

/// The bytes of a connection: plain, or TLS once the handshake is done.
enum Io {
    Plain(TcpStream),
    Handshake(Pin<Box<tokio_rustls::Accept<TcpStream>>>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Failed,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Plain",
            Self::Handshake(_) => "Handshake",
            Self::Tls(_) => "Tls",
            Self::Failed => "Failed",
        })
    }
}

/// A client connection: its socket, its sendfile queue and its timeouts.
#[derive(Debug)]
pub(crate) struct Connection {
    io: Io,
    queue: SendQueue,
    activity: Activity,
    client: ClientName,
    limits: Limits,
    /// The timer of whichever deadline applies now.
    timer: Pin<Box<Sleep>>,
    /// When a write began to wait for the client to read.
    write_blocked_since: Option<Instant>,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    fn new(io: Io, slot: OwnedSemaphorePermit, limits: Limits) -> Self {
        Self {
            io,
            queue: SendQueue::default(),
            activity: Activity::new(),
            client: ClientName::default(),
            limits,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            write_blocked_since: None,
            _slot: slot,
        }
    }

    /// Whether `deadline` has passed; if not, wakes the task when it does.
    fn expired(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        if Instant::now() >= deadline {
            return true;
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// A write that could not proceed: fails once the client has read nothing for the idle
    /// timeout.
    fn write_blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let since = *self.write_blocked_since.get_or_insert_with(Instant::now);
        if self.expired(since + self.limits.idle_timeout, cx) {
            return Poll::Ready(Err(timed_out("the client stopped reading the answer")));
        }
        Poll::Pending
    }
}

impl Connection {
    /// Finishes the TLS handshake, if there is one under way.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Io::Handshake(accept) = &mut self.io else {
            return Poll::Ready(match self.io {
                Io::Failed => Err(io::Error::other("the TLS handshake failed")),
                _ => Ok(()),
            });
        };
        match accept.as_mut().poll(cx) {
            Poll::Pending => match self.activity.read_deadline(&self.limits, cx.waker()) {
                Some(deadline) if self.expired(deadline, cx) => {
                    self.io = Io::Failed;
                    Poll::Ready(Err(timed_out("the TLS handshake took too long")))
                }
                _ => Poll::Pending,
            },
            Poll::Ready(Ok(stream)) => {
                self.client.learn(stream.get_ref().1);
                self.io = Io::Tls(Box::new(stream));
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.io = Io::Failed;
                tracing::debug!(error = %e, "TLS handshake failed");
                Poll::Ready(Err(e))
            }
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_handshake(cx))?;
        let before = buf.filled().len();
        let read = match &mut this.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
            Io::Handshake(_) | Io::Failed => unreachable!("the handshake finished above"),
        };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.activity.bytes_arrived();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.activity.read_deadline(&this.limits, cx.waker()) {
                Some(deadline) if this.expired(deadline, cx) => Poll::Ready(Err(timed_out(
                    "the connection idled, or sent a request head too slowly",
                ))),
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_handshake(cx))?;
        let written = match &mut this.io {
            Io::Plain(tcp) => sendfile::poll_write_vectored(Pin::new(tcp), &this.queue, cx, bufs),
            Io::Tls(tls) if bufs.iter().any(|b| sendfile::is_stand_in(b)) => {
                let _ = tls;
                Poll::Ready(Err(io::Error::other(
                    "a stand-in body chunk reached a TLS connection",
                )))
            }
            Io::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
            Io::Handshake(_) | Io::Failed => unreachable!("the handshake finished above"),
        };
        match written {
            Poll::Pending => this.write_blocked(cx),
            done => {
                this.write_blocked_since = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
            Io::Handshake(_) | Io::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
            Io::Handshake(_) | Io::Failed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_queue_little_unsent_data() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let mut listener = Listener::new(tcp, Limits::default(), None);
        let client = tokio::spawn(TcpStream::connect(address));
        let (connection, _) = axum::serve::Listener::accept(&mut listener).await;
        let Io::Plain(tcp) = &connection.io else {
            panic!("a plain listener accepts plain connections");
        };
        let socket = socket2::SockRef::from(tcp);
        assert_eq!(socket.tcp_notsent_lowat().unwrap(), NOTSENT_LOWAT);
        assert!(socket.tcp_nodelay().unwrap());
        drop(client.await.unwrap().unwrap());
    }

    #[test]
    fn the_deadline_follows_the_phase() {
        let (limits, waker) = (Limits::default(), Waker::noop());
        let activity = Activity::new();
        let idle = activity.read_deadline(&limits, waker).unwrap();
        activity.bytes_arrived();
        let head = activity.read_deadline(&limits, waker).unwrap();
        assert!(
            head < idle,
            "a request head has less time than an idle connection"
        );
        activity.request_started();
        assert_eq!(activity.read_deadline(&limits, waker), None);
        activity.bytes_arrived();
        let during = activity.read_deadline(&limits, waker);
        assert_eq!(during, None, "body bytes do not start a head");
        assert!(
            activity.lock().reader.is_some(),
            "the reader waits to be woken"
        );
        activity.request_finished();
        assert!(activity.lock().reader.is_none(), "the reader was woken");
        assert!(activity.read_deadline(&limits, waker).unwrap() >= idle);
    }
}
