//! The gRPC adapters: each validates and converts a request, calls its domain crate and
//! converts the answer back. Domain crates know nothing of protobuf.

mod alerts;
mod auth;
pub mod bounded_status;
mod cluster;
pub mod codec;
pub(crate) mod convert;
mod evaluation;
mod experiments;
pub(crate) mod generations;
pub(crate) mod otlp;
pub(crate) mod prompts;
mod providers;
mod status;

use std::pin::Pin;

use futures_util::{Stream, StreamExt as _};

use tokio_util::sync::CancellationToken;
use tonic::Status;

pub use alerts::AlertApi;
pub use auth::AuthApi;
pub use cluster::ClusterApi;
pub use evaluation::{EvaluationApi, EvaluationServices};
pub use experiments::ExperimentApi;
pub use generations::GenerationApi;
pub use otlp::OtlpTraceApi;
pub use prompts::PromptApi;
pub use providers::ProviderApi;

/// A server-streaming response.
pub(crate) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Turns a source of items into a response stream that ends after the first error, and
/// at once when the server shuts down (open streams must not hold shutdown hostage).
///
/// The stream is polled by the connection that carries it: there is no task and no
/// channel per stream, so an idle subscriber costs only its own state, and a client that
/// goes away drops the state (and with it the subscription) right away.
pub(crate) fn response_stream<S, T, Next, Fut>(
    shutdown: &CancellationToken,
    state: S,
    mut next: Next,
) -> ResponseStream<T>
where
    S: Send + 'static,
    T: Send + 'static,
    Next: FnMut(S) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<(Result<T, Status>, S)>> + Send + 'static,
{
    let items = futures_util::stream::unfold(Some(state), move |state| {
        let step = state.map(&mut next);
        async move {
            let (item, state) = step?.await?;
            // After an error the stream ends: the client reconnects from its last sequence.
            let state = if item.is_err() { None } else { Some(state) };
            Some((item, state))
        }
    });
    Box::pin(items.take_until(shutdown.clone().cancelled_owned()))
}
