//! The gRPC adapters: each validates and converts a request, calls its domain crate and
//! converts the answer back. Domain crates know nothing of protobuf.

mod alerts;
pub(crate) mod convert;
mod prompts;
mod status;

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;
use tonic::Status;

pub use alerts::AlertApi;
pub use prompts::PromptApi;

/// What the adapters share: the domain services (set once storage is open) and the
/// shutdown signal that ends open streams.
#[derive(Debug, Default)]
pub struct ServiceState {
    registry: OnceLock<Arc<llmops_registry::Registry>>,
    alerts: OnceLock<Arc<llmops_alerts::AlertService>>,
    shutdown: CancellationToken,
}

impl ServiceState {
    /// A state whose services are not ready yet.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            registry: OnceLock::new(),
            alerts: OnceLock::new(),
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
