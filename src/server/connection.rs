//! Accepted connections: how many, how long they may stay silent or idle, and how their
//! writes are batched.
//!
//! A connection costs memory and a file descriptor whatever it does, so one client could
//! exhaust both by opening connections and saying nothing (19,000 held 306 MB and almost
//! every descriptor). Each connection therefore has:
//! - a permit out of `max_connections`; past it, a new connection is closed at once;
//! - a handshake deadline: the 24-byte HTTP/2 preface must arrive within
//!   `handshake_timeout`, or the connection is closed;
//! - an idle deadline: a connection with no call in flight for `idle_timeout` is closed
//!   (a call, a stream such as `Subscribe` included, is activity; bytes are not, since
//!   keepalive pings would keep any connection busy).
//!
//! With `[tls]`, the TLS handshake must also finish within `handshake_timeout`; the
//! handshakes of new connections run concurrently, so a slow one holds up nobody. The
//! preface is then counted in decrypted bytes.
//!
//! Keepalive pings (a peer that vanished without closing) and the per-connection stream
//! limit are HTTP/2 settings, applied in `server.rs`.
//!
//! Writes: h2 copies a DATA frame into its write buffer when it is smaller than a
//! threshold and otherwise chains it and flushes. With vectored writes the threshold is
//! 256 bytes; most llmops responses (a prompt version, a rendered prompt, an alert event)
//! are a few hundred bytes, so each would cost its own `writev` instead of being
//! coalesced with the other responses ready on the connection. Reporting no
//! vectored-write support raises the threshold to 1 KiB: small responses are copied and
//! batched; large ones are still chained, and the copy of a sub-KiB frame is cheaper than
//! a syscall.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpIncoming};
use tower::{Layer, Service};

use super::tls::{Peer, ServerTls, TLS_HANDSHAKE_FAILURES_TOTAL};

/// Connections open now.
pub(crate) const OPEN_CONNECTIONS: &str = "llmops_open_connections";
/// Connections closed by the server, by `reason` (refused, handshake_timeout, idle).
pub(crate) const CLOSED_CONNECTIONS_TOTAL: &str = "llmops_connections_closed_total";

/// The length of the HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
const PREFACE_BYTES: usize = 24;

/// The limits every accepted connection lives under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_connections: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// The accepted connections of `listener`, with TCP_NODELAY set, each under `limits`
/// and, with `tls`, after its TLS handshake; connections past `max_connections` are
/// closed as soon as they are accepted.
pub(crate) fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<Arc<ServerTls>>,
) -> impl Stream<Item = io::Result<Connection>> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |accepted| {
            let permits = permits.clone();
            let tls = tls.clone();
            async move {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(err) => return Some(Err(err)),
                };
                let Ok(permit) = permits.try_acquire_owned() else {
                    // Dropping the stream closes it: the client sees the connection end.
                    metrics::counter!(CLOSED_CONNECTIONS_TOTAL, "reason" => "refused").increment(1);
                    return None;
                };
                let Some(tls) = tls else {
                    return Some(Ok(Connection::new(Io::Plain(stream), None, permit, limits)));
                };
                let handshake = tls.grpc_acceptor().accept(stream);
                match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                    Ok(Ok(stream)) => {
                        let peer = tls.peer(stream.get_ref().1).map(Arc::new);
                        let io = Io::Tls(Box::new(stream));
                        Some(Ok(Connection::new(io, peer, permit, limits)))
                    }
                    Ok(Err(err)) => {
                        metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => "grpc")
                            .increment(1);
                        tracing::debug!(%err, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        metrics::counter!(CLOSED_CONNECTIONS_TOTAL, "reason" => "handshake_timeout")
                            .increment(1);
                        None
                    }
                }
            }
        })
        // Handshakes run side by side; the permits bound how many.
        .buffer_unordered(limits.max_connections)
        .filter_map(std::future::ready)
}

/// A connection's byte stream: plain TCP, or TLS over it.
#[derive(Debug)]
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

pin_project! {
    /// An accepted connection under [`ConnectionLimits`], whose writes h2 batches.
    pub(crate) struct Connection {
        #[pin]
        inner: Io,
        activity: Arc<Activity>,
        peer: Option<Arc<Peer>>,
        preface_read: usize,
        handshake_deadline: Option<Pin<Box<Sleep>>>,
        idle_deadline: Pin<Box<Sleep>>,
        idle_timeout: Duration,
        _permit: OwnedSemaphorePermit,
    }

    impl PinnedDrop for Connection {
        fn drop(_this: Pin<&mut Self>) {
            metrics::gauge!(OPEN_CONNECTIONS).decrement(1.0);
        }
    }
}

impl Connection {
    fn new(
        inner: Io,
        peer: Option<Arc<Peer>>,
        permit: OwnedSemaphorePermit,
        limits: ConnectionLimits,
    ) -> Self {
        metrics::gauge!(OPEN_CONNECTIONS).increment(1.0);
        Self {
            inner,
            activity: Arc::new(Activity::new()),
            peer,
            preface_read: 0,
            handshake_deadline: Some(Box::pin(tokio::time::sleep(limits.handshake_timeout))),
            idle_deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            idle_timeout: limits.idle_timeout,
            _permit: permit,
        }
    }
}

/// What the calls of one connection are doing: how many are in flight, and since when
/// none has been.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> CallInFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        CallInFlight {
            activity: self.clone(),
        }
    }

    /// When the connection became idle, or `None` while a call is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One call in flight; the connection is busy until it is dropped (with the response,
/// so a stream counts until it ends).
#[derive(Debug)]
struct CallInFlight {
    activity: Arc<Activity>,
}

impl Drop for CallInFlight {
    fn drop(&mut self) {
        let mut since = self
            .activity
            .idle_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *since = Instant::now();
        self.activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What tonic stores in each request's extensions: the connection's activity, and its
/// client certificate's identity (mTLS).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    activity: Arc<Activity>,
    pub(crate) peer: Option<Arc<Peer>>,
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            activity: self.activity.clone(),
            peer: self.peer.clone(),
        }
    }
}

fn closed(reason: &'static str, message: &str) -> io::Error {
    metrics::counter!(CLOSED_CONNECTIONS_TOTAL, "reason" => reason).increment(1);
    io::Error::new(io::ErrorKind::TimedOut, message.to_owned())
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &read {
            if this.handshake_deadline.is_some() {
                *this.preface_read += buf.filled().len() - before;
                if *this.preface_read >= PREFACE_BYTES {
                    *this.handshake_deadline = None;
                }
            }
            return read;
        }
        if read.is_ready() {
            return read;
        }
        if let Some(deadline) = this.handshake_deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(closed(
                    "handshake_timeout",
                    "no HTTP/2 handshake within the handshake timeout",
                )));
            }
        }
        // Re-armed while calls are in flight; fires only after `idle_timeout` without one.
        while this.idle_deadline.as_mut().poll(cx).is_ready() {
            match this.activity.idle_since() {
                Some(since) if since.elapsed() >= *this.idle_timeout => {
                    return Poll::Ready(Err(closed("idle", "no call for the idle timeout")));
                }
                Some(since) => this
                    .idle_deadline
                    .as_mut()
                    .reset(since + *this.idle_timeout),
                None => this
                    .idle_deadline
                    .as_mut()
                    .reset(Instant::now() + *this.idle_timeout),
            }
        }
        Poll::Pending
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Marks each call in flight on its connection until its response (body included) is
/// dropped, for the idle deadline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallActivityLayer;

impl<S> Layer<S> for CallActivityLayer {
    type Service = CallActivity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallActivity { inner }
    }
}

/// The service [`CallActivityLayer`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct CallActivity<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CallActivity<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let call = request
            .extensions()
            .get::<ConnectionInfo>()
            .map(|info| info.activity.begin());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match call {
                Some(call) => response.map(|body| {
                    tonic::body::Body::new(BodyInFlight {
                        inner: body,
                        _call: call,
                    })
                }),
                None => response,
            })
        })
    }
}

pin_project! {
    /// A response body that keeps its call in flight until it is dropped.
    struct BodyInFlight {
        #[pin]
        inner: tonic::body::Body,
        _call: CallInFlight,
    }
}

impl http_body::Body for BodyInFlight {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
