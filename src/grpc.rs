//! The gRPC adapters: each validates and converts a request, calls its domain crate and
//! converts the answer back. Domain crates know nothing of protobuf.

mod alerts;
pub mod bounded_status;
pub mod codec;
pub(crate) mod convert;
mod evaluation;
mod experiments;
mod prompts;
mod providers;
mod status;

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures_util::{Stream, StreamExt as _};

use tokio_util::sync::CancellationToken;
use tonic::Status;

pub use alerts::AlertApi;
pub use evaluation::EvaluationApi;
pub use experiments::ExperimentApi;
pub use prompts::PromptApi;
pub use providers::ProviderApi;

/// What the adapters share: the domain services (set once storage is open) and the
/// shutdown signal that ends open streams.
#[derive(Debug)]
pub struct ServiceState {
    registry: OnceLock<Arc<llmops_registry::Registry>>,
    alerts: OnceLock<Arc<llmops_alerts::AlertService>>,
    experiments: OnceLock<Arc<llmops_experiments::ExperimentService>>,
    datasets: OnceLock<Arc<llmops_evaluator::datasets::DatasetService>>,
    runs: OnceLock<Arc<llmops_evaluator::runs::RunService>>,
    schedules: OnceLock<Arc<llmops_evaluator::schedules::ScheduleService>>,
    gates: OnceLock<Arc<llmops_evaluator::gates::GateService>>,
    shutdown: CancellationToken,
}

impl ServiceState {
    /// A state whose services are not ready yet.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            registry: OnceLock::new(),
            alerts: OnceLock::new(),
            experiments: OnceLock::new(),
            datasets: OnceLock::new(),
            runs: OnceLock::new(),
            schedules: OnceLock::new(),
            gates: OnceLock::new(),
            shutdown,
        }
    }

    /// Makes the registry available to the adapters.
    pub fn set_registry(&self, registry: Arc<llmops_registry::Registry>) {
        // Set once at start-up; a second call would be a wiring bug, which the
        // health status (already SERVING) would hide, so fail loudly.
        assert!(
            self.registry.set(registry).is_ok(),
            "the registry is set once"
        );
    }

    /// Makes the alert service available to the adapters.
    pub fn set_alerts(&self, alerts: Arc<llmops_alerts::AlertService>) {
        assert!(
            self.alerts.set(alerts).is_ok(),
            "the alert service is set once"
        );
    }

    /// Makes the experiment service available to the adapters.
    pub fn set_experiments(&self, experiments: Arc<llmops_experiments::ExperimentService>) {
        assert!(
            self.experiments.set(experiments).is_ok(),
            "the experiment service is set once"
        );
    }

    pub(crate) fn experiments(&self) -> Result<&llmops_experiments::ExperimentService, Status> {
        self.experiments
            .get()
            .map(Arc::as_ref)
            .ok_or_else(|| Status::unavailable("the server is starting: storage is not open yet"))
    }

    /// Makes the dataset service available to the adapters.
    pub fn set_datasets(&self, datasets: Arc<llmops_evaluator::datasets::DatasetService>) {
        assert!(
            self.datasets.set(datasets).is_ok(),
            "the dataset service is set once"
        );
    }

    pub(crate) fn datasets(&self) -> Result<&llmops_evaluator::datasets::DatasetService, Status> {
        self.datasets
            .get()
            .map(Arc::as_ref)
            .ok_or_else(|| Status::unavailable("the server is starting: storage is not open yet"))
    }

    /// Makes the run service available to the adapters.
    pub fn set_runs(&self, runs: Arc<llmops_evaluator::runs::RunService>) {
        assert!(self.runs.set(runs).is_ok(), "the run service is set once");
    }

    pub(crate) fn runs(&self) -> Result<&llmops_evaluator::runs::RunService, Status> {
        self.runs
            .get()
            .map(Arc::as_ref)
            .ok_or_else(|| Status::unavailable("the server is starting: storage is not open yet"))
    }

    /// Makes the schedule service available to the adapters.
    pub fn set_schedules(&self, schedules: Arc<llmops_evaluator::schedules::ScheduleService>) {
        assert!(
            self.schedules.set(schedules).is_ok(),
            "the schedule service is set once"
        );
    }

    pub(crate) fn schedules(
        &self,
    ) -> Result<&llmops_evaluator::schedules::ScheduleService, Status> {
        self.schedules
            .get()
            .map(Arc::as_ref)
            .ok_or_else(|| Status::unavailable("the server is starting: storage is not open yet"))
    }

    /// Makes the release gates available to the adapters.
    pub fn set_gates(&self, gates: Arc<llmops_evaluator::gates::GateService>) {
        assert!(
            self.gates.set(gates).is_ok(),
            "the gate service is set once"
        );
    }

    pub(crate) fn gates(&self) -> Result<&llmops_evaluator::gates::GateService, Status> {
        self.gates
            .get()
            .map(Arc::as_ref)
            .ok_or_else(|| Status::unavailable("the server is starting: storage is not open yet"))
    }

    pub(crate) fn alerts(&self) -> Result<&llmops_alerts::AlertService, Status> {
        self.alerts
            .get()
            .map(Arc::as_ref)
            .ok_or_else(|| Status::unavailable("the server is starting: storage is not open yet"))
    }

    pub(crate) fn registry(&self) -> Result<&llmops_registry::Registry, Status> {
        self.registry
            .get()
            .map(Arc::as_ref)
            .ok_or_else(|| Status::unavailable("the server is starting: storage is not open yet"))
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

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
