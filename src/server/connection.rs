//! Accepted connections, tuned for many small gRPC responses.
//!
//! h2 copies a DATA frame into its write buffer when it is smaller than a threshold and
//! otherwise chains it and flushes. With vectored writes the threshold is 256 bytes;
//! most llmops responses (a prompt version, a rendered prompt, an alert event) are a few
//! hundred bytes, so each would cost its own `writev` instead of being coalesced with
//! the other responses ready on the connection. Reporting no vectored-write support
//! raises the threshold to 1 KiB: small responses are copied and batched; large ones
//! are still chained, and the copy of a sub-KiB frame is cheaper than a syscall.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt as _};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

pin_project! {
    /// A TCP connection whose writes h2 batches (see the module comment).
    pub(crate) struct BatchedWrites {
        #[pin]
        inner: TcpStream,
    }
}

impl BatchedWrites {
    /// The accepted connections of `listener`, with TCP_NODELAY set.
    pub(crate) fn incoming(listener: TcpListener) -> impl Stream<Item = io::Result<Self>> {
        TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .map(|accepted| accepted.map(|inner| Self { inner }))
    }
}

impl Connected for BatchedWrites {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for BatchedWrites {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl AsyncWrite for BatchedWrites {
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
