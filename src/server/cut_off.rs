//! The end of `shutdown_grace`: calls still in flight are answered UNAVAILABLE.
//!
//! A graceful shutdown lets calls in flight finish. One that outlasts the grace (a
//! client holding an import stream open, say) would otherwise die with its connection,
//! and clients see a transport error (tonic reports UNKNOWN "broken pipe") that says
//! nothing about retrying. Cut off here, the call gets a proper gRPC status, and its
//! handler is dropped, which abandons whatever it had started (an import discards its
//! staged batches).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

/// Answers every call still running when `cut_off` is cancelled with UNAVAILABLE.
#[derive(Debug, Clone)]
pub(crate) struct CutOffLayer {
    cut_off: CancellationToken,
}

impl CutOffLayer {
    pub(crate) fn new(cut_off: CancellationToken) -> Self {
        Self { cut_off }
    }
}

impl<S> Layer<S> for CutOffLayer {
    type Service = CutOff<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CutOff {
            inner,
            cut_off: self.cut_off.clone(),
        }
    }
}

/// The service [`CutOffLayer`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct CutOff<S> {
    inner: S,
    cut_off: CancellationToken,
}

impl<S, B> Service<Request<B>> for CutOff<S>
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
        let response = self.inner.call(request);
        let cut_off = self.cut_off.clone();
        Box::pin(async move {
            tokio::select! {
                response = response => response,
                () = cut_off.cancelled() => Ok(tonic::Status::unavailable(
                    "the server is shutting down and this call outlasted its shutdown_grace; \
                     nothing it started was kept, retry it",
                )
                .into_http()),
            }
        })
    }
}
