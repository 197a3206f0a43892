//! A gRPC service that exists before it is ready.
//!
//! The listener is bound, and health answers, before storage is open (a mesh must see
//! NOT_SERVING, not a refused connection), but tonic's router takes its services when it
//! is built. So each domain service is registered as a [`Starting`] slot, answering
//! UNAVAILABLE (retryable) until start-up fills it with the real adapter, once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::server::NamedService;
use tower::Service;

/// A service slot, empty until [`Starting::fill`].
#[derive(Debug)]
pub(crate) struct Starting<S> {
    ready: Arc<OnceLock<S>>,
}

impl<S> Clone for Starting<S> {
    fn clone(&self) -> Self {
        Self {
            ready: self.ready.clone(),
        }
    }
}

impl<S> Starting<S> {
    pub(crate) fn new() -> Self {
        Self {
            ready: Arc::new(OnceLock::new()),
        }
    }

    /// Puts the real service in place; every call from now on goes to it.
    pub(crate) fn fill(&self, service: S) {
        // Filled once at start-up; a second fill would be a wiring bug, which health
        // (already SERVING) would hide, so fail loudly.
        assert!(self.ready.set(service).is_ok(), "a service is filled once");
    }
}

impl<S: NamedService> NamedService for Starting<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Starting<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // tonic's generated servers are always ready; readiness of the slot is decided
        // per call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.ready.get() {
            Some(service) => {
                let mut service = service.clone();
                Box::pin(async move { service.call(request).await })
            }
            None => Box::pin(std::future::ready(Ok(tonic::Status::unavailable(
                "the server is starting: storage is not open yet",
            )
            .into_http()))),
        }
    }
}
