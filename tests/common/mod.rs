//! Starts the real server in-process on 127.0.0.1:0 (gRPC and metrics), the way a user
//! would run it, and connects real gRPC clients to it.

#![allow(dead_code, unreachable_pub)]

pub mod backend;
pub mod cluster;
pub mod eval;
pub mod outage;
pub mod process;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use llmops::config::Config;
use llmops::pb::alert_service_client::AlertServiceClient;
use llmops::pb::evaluation_service_client::EvaluationServiceClient;
use llmops::pb::experiment_service_client::ExperimentServiceClient;
use llmops::pb::prompt_service_client::PromptServiceClient;
use llmops_core::{Clock, ManualClock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub struct TestServer {
    pub address: SocketAddr,
    pub metrics_address: SocketAddr,
    pub channel: Channel,
    pub data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
    /// Declared last: dropped after the server's shutdown has been sent.
    _database: Option<backend::TestDatabase>,
}

impl TestServer {
    /// A server on a fresh database of the default backend (see
    /// [`backend::Backend::default_for_tests`]).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with a tweaked configuration on a fresh database of the default backend.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on_backend(backend::Backend::default_for_tests(), tweak).await
    }

    /// A server with a tweaked configuration on a fresh database of `backend`.
    pub async fn start_on_backend(
        backend: backend::Backend,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let database = backend::TestDatabase::new(backend).await;
        let mut server = Self::start_on(&database, tweak).await;
        server._database = Some(database);
        server
    }

    /// A server on `database` (which outlives it, for restart tests).
    pub async fn start_on(
        database: &backend::TestDatabase,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_in(database.data_dir(), |config| {
            database.configure(config);
            tweak(config);
        })
        .await
    }

    /// A server on `data_dir` (which outlives it, for restart tests).
    pub async fn start_in(data_dir: &Path, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on_clock(data_dir, Arc::new(SystemClock), tweak).await
    }

    /// A server on a fresh data directory whose schedules and retention read `clock`,
    /// which the test moves instead of waiting.
    pub async fn start_at(clock: &ManualClock, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_at_on(backend::Backend::default_for_tests(), clock, tweak).await
    }

    /// [`TestServer::start_at`] on a fresh database of `backend`.
    pub async fn start_at_on(
        backend: backend::Backend,
        clock: &ManualClock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let database = backend::TestDatabase::new(backend).await;
        let mut server =
            Self::start_on_clock(database.data_dir(), Arc::new(clock.clone()), |config| {
                database.configure(config);
                tweak(config);
            })
            .await;
        server._database = Some(database);
        server
    }

    /// A server on `data_dir` and `clock` (see [`TestServer::start_at`]).
    pub async fn start_on_clock(
        data_dir: &Path,
        clock: Arc<dyn Clock>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let server = Self::launch(data_dir, clock, tweak).await;
        server.wait_until_serving().await;
        server
    }

    /// A server on `data_dir`, returned as soon as it accepts connections: its health
    /// may still be NOT_SERVING (see [`TestServer::health`]).
    pub async fn launch(
        data_dir: &Path,
        clock: Arc<dyn Clock>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = grpc.local_addr().unwrap();
        let metrics_address = metrics.local_addr().unwrap();
        let mut config = Config {
            data_dir: data_dir.to_owned(),
            listen: address,
            metrics_listen: metrics_address,
            ..Config::default()
        };
        tweak(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(llmops::server::serve_with_clock(
            config,
            clock,
            grpc,
            metrics,
            async move {
                let _ = rx.await;
            },
        ));
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            address,
            metrics_address,
            channel,
            data_dir: data_dir.to_owned(),
            shutdown: Some(tx),
            task: Some(task),
            _temp: None,
            _database: None,
        }
    }

    /// The overall health status now.
    pub async fn health(&self) -> ServingStatus {
        let status = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        ServingStatus::try_from(status).unwrap()
    }

    /// Waits (up to `limit`) for the health status to become `status`.
    pub async fn wait_for_health(&self, status: ServingStatus, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.health().await != status {
            assert!(
                tokio::time::Instant::now() < deadline,
                "health did not become {status:?} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_until_serving(&self) {
        let mut health = HealthClient::new(self.channel.clone());
        for _ in 0..500 {
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status);
            if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the server never became SERVING");
    }

    pub fn prompts(&self) -> PromptServiceClient<Channel> {
        PromptServiceClient::new(self.channel.clone())
    }

    pub fn evaluation(&self) -> EvaluationServiceClient<Channel> {
        EvaluationServiceClient::new(self.channel.clone())
    }

    pub fn experiments(&self) -> ExperimentServiceClient<Channel> {
        ExperimentServiceClient::new(self.channel.clone())
    }

    pub fn alerts(&self) -> AlertServiceClient<Channel> {
        AlertServiceClient::new(self.channel.clone())
    }

    /// Begins shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    /// Begins shutdown without waiting.
    pub fn begin_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap()
    }

    /// GET /metrics as text.
    pub async fn metrics_text(&self) -> String {
        metrics_text(self.metrics_address).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn string_value(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.to_owned())),
    }
}

pub fn number_value(n: f64) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::NumberValue(n)),
    }
}

/// GET /metrics of the metrics endpoint at `address`, as text.
pub async fn metrics_text(address: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
