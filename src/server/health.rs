//! `grpc.health.v1.Health`, as the health checking protocol specifies it.
//!
//! tonic-health's service ends a `Watch` of an unknown service with NOT_FOUND; the
//! protocol says to send SERVICE_UNKNOWN and keep the stream open, sending the real
//! status if the service becomes known. This one does, and ends every watch when the
//! server shuts down (after the NOT_SERVING it has sent), so the drain is not held up.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures_util::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Sets the status of the services; every watch sees the change.
#[derive(Debug, Clone)]
pub(crate) struct HealthReporter {
    statuses: watch::Sender<BTreeMap<String, ServingStatus>>,
}

impl HealthReporter {
    /// Sets `status` for the overall server ("") and every service in `services`.
    pub(crate) fn set_all(&self, services: &[&str], status: ServingStatus) {
        self.statuses.send_modify(|statuses| {
            for name in std::iter::once("").chain(services.iter().copied()) {
                statuses.insert(name.to_owned(), status);
            }
        });
    }
}

/// The health service; its watches end when `shutdown` is cancelled.
#[derive(Debug)]
pub(crate) struct HealthService {
    statuses: watch::Receiver<BTreeMap<String, ServingStatus>>,
    shutdown: CancellationToken,
}

/// A reporter and the service it reports through (nothing known until the first
/// [`HealthReporter::set_all`]).
pub(crate) fn health_service(
    shutdown: CancellationToken,
) -> (HealthReporter, HealthServer<HealthService>) {
    let (sender, receiver) = watch::channel(BTreeMap::new());
    let service = HealthService {
        statuses: receiver,
        shutdown,
    };
    (
        HealthReporter { statuses: sender },
        HealthServer::new(service),
    )
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        match self.statuses.borrow().get(&service) {
            Some(status) => Ok(Response::new(HealthCheckResponse {
                status: *status as i32,
            })),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let state = WatchState {
            statuses: self.statuses.clone(),
            shutdown: self.shutdown.clone(),
            service,
            sent: None,
        };
        let stream = futures_util::stream::unfold(state, |mut state| async move {
            let status = state.next_change().await?;
            let response = HealthCheckResponse {
                status: status as i32,
            };
            Some((Ok(response), state))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One watch: the last status sent, and where the next one comes from.
struct WatchState {
    statuses: watch::Receiver<BTreeMap<String, ServingStatus>>,
    shutdown: CancellationToken,
    service: String,
    sent: Option<ServingStatus>,
}

impl WatchState {
    /// The next status to send (the current one first, then each change), or `None`
    /// once the server shuts down.
    async fn next_change(&mut self) -> Option<ServingStatus> {
        loop {
            let current = self
                .statuses
                .borrow_and_update()
                .get(&self.service)
                .copied()
                .unwrap_or(ServingStatus::ServiceUnknown);
            if self.sent != Some(current) {
                self.sent = Some(current);
                return Some(current);
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            tokio::select! {
                changed = self.statuses.changed() => changed.ok()?,
                _ = self.shutdown.cancelled() => {}
            }
        }
    }
}
