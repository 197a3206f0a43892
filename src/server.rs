//! Server assembly: storage, the gRPC services, health, reflection, metrics, and a
//! graceful shutdown.
//!
//! Start-up order matters to operators: the listeners are bound and health answers
//! NOT_SERVING first; storage is opened and migrated; only then does health say
//! SERVING. On shutdown health says NOT_SERVING at once, open streams are ended, new
//! connections are refused, in-flight calls get `shutdown_grace` to finish (those still
//! running then are answered UNAVAILABLE by `cut_off`), and the store is closed last.

mod connection;
mod cut_off;
mod health;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use llmops_alerts::webhook::sender::WebhookSender;
use llmops_alerts::AlertService;
use llmops_evaluator::gates::GateService;
use llmops_evaluator::providers::openai::OpenAiProvider;
use llmops_evaluator::providers::{ConfiguredProvider, Provider, ProviderSet};
use llmops_evaluator::runs::{RunService, RunSettings};
use llmops_evaluator::schedules::{ScheduleService, ScheduleSettings};
use llmops_experiments::monitor::AlertMonitor;
use llmops_experiments::ExperimentService;
use llmops_registry::Registry;
use llmops_store::SqliteStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::config::Config;
use crate::grpc::bounded_status::BoundedStatusLayer;
use crate::grpc::{AlertApi, EvaluationApi, ExperimentApi, PromptApi, ServiceState};
use crate::pb;
use crate::pb::alert_service_server::AlertServiceServer;
use crate::pb::evaluation_service_server::EvaluationServiceServer;
use crate::pb::experiment_service_server::ExperimentServiceServer;
use crate::pb::prompt_service_server::PromptServiceServer;
use crate::release_guard::EvaluationGuard;
use crate::telemetry::{self, GrpcMetricsLayer};

/// The services health reports on, besides the overall status ("").
const SERVICE_NAMES: &[&str] = &[
    "llmops.v1.PromptService",
    "llmops.v1.AlertService",
    "llmops.v1.ExperimentService",
    "llmops.v1.EvaluationService",
    "llmops.v1.ProviderService",
];

/// How long the answers to calls cut off at the end of `shutdown_grace` get to reach
/// their clients before the connections are dropped.
const CUT_OFF_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the server on already-bound listeners until `shutdown` resolves.
pub async fn serve(
    config: Config,
    grpc_listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    telemetry::prometheus();
    let stop = CancellationToken::new();
    let (health, health_service) = health::health_service(stop.clone());
    health.set_all(SERVICE_NAMES, ServingStatus::NotServing);

    // Cancelled when `shutdown_grace` is over: calls still in flight are cut off.
    let cut_off = CancellationToken::new();
    let state = Arc::new(ServiceState::new(stop.clone()));
    let grpc_address = grpc_listener.local_addr()?;
    let mut grpc = tokio::spawn(grpc_server(
        &config,
        state.clone(),
        health_service,
        grpc_listener,
        stop.clone(),
        cut_off.clone(),
    )?);
    let metrics_address = metrics_listener.local_addr()?;
    let metrics = tokio::spawn(telemetry::serve_metrics(metrics_listener, stop.clone()));

    let (store, services, background) = match open_storage(&config, &state, &stop).await {
        Ok(opened) => opened,
        Err(err) => {
            stop.cancel();
            return Err(err);
        }
    };
    health.set_all(SERVICE_NAMES, ServingStatus::Serving);
    tracing::info!(%grpc_address, %metrics_address, data_dir = %config.data_dir.display(), "llmops is serving");

    shutdown.await;
    tracing::info!("shutting down: refusing new calls, draining in-flight ones");
    health.set_all(SERVICE_NAMES, ServingStatus::NotServing);
    stop.cancel();
    match tokio::time::timeout(config.shutdown_grace, &mut grpc).await {
        Ok(joined) => joined
            .context("the gRPC server task failed")?
            .context("the gRPC server failed")?,
        Err(_) => {
            tracing::warn!(grace = ?config.shutdown_grace, "in-flight calls did not finish in time; answering them UNAVAILABLE");
            cut_off.cancel();
            // The cut-off answers are written before the connections close.
            if tokio::time::timeout(CUT_OFF_FLUSH, grpc).await.is_err() {
                tracing::warn!("connections did not close after the cut-off; dropping them");
            }
        }
    }
    let _ = metrics.await;
    for task in background {
        let _ = task.await;
    }
    // Stop evaluation runs (they resume at the next start) and commit what the
    // group-commit writer still holds before the store closes.
    // Schedules first: they start runs.
    services.schedules.close().await;
    services.runs.close().await;
    services.experiments.close().await;
    store.close().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

fn grpc_server(
    config: &Config,
    state: Arc<ServiceState>,
    health_service: tonic_health::pb::health_server::HealthServer<health::HealthService>,
    listener: TcpListener,
    stop: CancellationToken,
    cut_off: CancellationToken,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>>> {
    // Reflection advertises only the public services (and itself).
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in SERVICE_NAMES {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building reflection v1alpha")?;
    let limit = config.max_message_bytes;
    let prompts = PromptServiceServer::new(PromptApi::new(state.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let alerts = AlertServiceServer::new(AlertApi::new(
        state.clone(),
        config.alerts.heartbeat_interval,
    ))
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    let experiments = ExperimentServiceServer::new(ExperimentApi::new(state.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let providers = crate::pb::provider_service_server::ProviderServiceServer::new(
        crate::grpc::ProviderApi::new(state.clone()),
    )
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    let evaluation =
        EvaluationServiceServer::new(EvaluationApi::new(state, config.max_import_bytes))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
    let limits = &config.server;
    let incoming = connection::incoming(
        listener,
        connection::ConnectionLimits {
            max_connections: limits.max_connections,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
        },
    );
    Ok(Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(Some(limits.max_concurrent_streams))
        .layer(GrpcMetricsLayer)
        .layer(BoundedStatusLayer)
        .layer(cut_off::CutOffLayer::new(cut_off))
        // Innermost: it wraps the response bodies of the services themselves.
        .layer(connection::CallActivityLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(prompts)
        .add_service(alerts)
        .add_service(experiments)
        .add_service(evaluation)
        .add_service(providers)
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned()))
}

/// The services that hold work to finish at shutdown.
struct Services {
    experiments: Arc<ExperimentService>,
    runs: Arc<RunService>,
    schedules: Arc<ScheduleService>,
}

/// Opens storage, loads the domain services into `state`, and starts their background
/// work (webhook delivery, alert retention, resumed evaluation runs), which ends when
/// `stop` is cancelled.
async fn open_storage(
    config: &Config,
    state: &ServiceState,
    stop: &CancellationToken,
) -> anyhow::Result<(SqliteStore, Services, Vec<tokio::task::JoinHandle<()>>)> {
    let receivers = config.webhook_receivers()?;
    // Read the providers' API keys now, so that a missing one stops start-up instead of
    // failing the first evaluation that uses the provider.
    let providers = config.provider_settings()?;
    // Variants may name a configured provider, the built-in echo, or `auto`.
    let models = providers
        .iter()
        .map(|p| p.name.clone())
        .chain(["echo".to_owned(), "auto".to_owned()])
        .collect();
    let store = SqliteStore::open(&config.data_dir, config.durability.into())
        .await
        .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    let shared = Arc::new(store.clone());
    let registry = Registry::open(shared.clone(), config.registry_limits())
        .await
        .context("loading the prompt registry")?;
    let registry = Arc::new(registry);
    let sender = WebhookSender::new(shared.clone(), &receivers);
    let alerts = AlertService::open(
        shared.clone(),
        receivers,
        config.alerts.external_url.clone(),
    )
    .await
    .context("loading alerts")?
    .with_delivery_waker(sender.waker());
    let alerts = Arc::new(alerts);
    state.set_alerts(alerts.clone());

    let experiments = ExperimentService::open(
        shared.clone(),
        llmops_experiments::Defaults {
            min_samples: config.experiments.min_samples_for_significance,
            models: Some(models),
        },
    )
    .await
    .context("loading experiments")?;
    let experiments = Arc::new(experiments);
    state.set_experiments(experiments.clone());
    let datasets = llmops_evaluator::datasets::DatasetService::open(shared.clone())
        .await
        .context("loading datasets")?;
    let datasets = Arc::new(datasets);
    state.set_datasets(datasets.clone());
    let providers = providers
        .into_iter()
        .map(|settings| {
            let name = settings.name.clone();
            OpenAiProvider::new(settings)
                .map(|provider| Arc::new(provider) as Arc<dyn Provider>)
                .with_context(|| format!("setting up provider {name}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The entries' scores, in the same order as `providers`; the probes end at `stop`.
    let provider_set = ProviderSet::with_health(
        providers
            .into_iter()
            .zip(&config.providers)
            .map(|(provider, entry)| ConfiguredProvider {
                provider,
                score: entry.score,
            })
            .collect(),
        config.providers_health.settings(),
    );
    let probes = tokio::spawn(provider_set.health().clone().run(stop.clone()));
    let runs = RunService::open(
        shared.clone(),
        datasets.clone(),
        registry.clone(),
        provider_set,
        alerts.clone(),
        RunSettings {
            panel_evaluation: config.evaluation.panel_evaluation,
            alert_thresholds: config.alert_thresholds.clone(),
        },
    )
    .await
    .context("loading evaluation runs")?;
    let runs = Arc::new(runs);
    state.set_runs(runs.clone());
    let gates = GateService::open(shared.clone(), runs.clone(), datasets)
        .await
        .context("loading release gates")?;
    let gates = Arc::new(gates);
    registry.set_release_guard(Arc::new(EvaluationGuard::new(gates.clone())));
    state.set_gates(gates);
    // Prompt calls are served only from here on, once release gates are enforced.
    state.set_registry(registry.clone());
    let schedules = ScheduleService::open(
        shared.clone(),
        runs.clone(),
        registry,
        ScheduleSettings {
            auto_evaluation: config.evaluation.auto_evaluation,
            interval: config.evaluation.interval,
        },
        stop,
    )
    .await
    .context("loading evaluation schedules")?;
    let schedules = Arc::new(schedules);
    state.set_schedules(schedules.clone());

    let sender_stop = stop.clone();
    let webhooks = tokio::spawn(async move { sender.run(sender_stop.cancelled_owned()).await });
    let retention = tokio::spawn(prune_alerts(
        alerts.clone(),
        config.alerts.retention,
        config.alerts.prune_interval,
        stop.clone(),
    ));
    let monitor = tokio::spawn(monitor_experiments(
        experiments.clone(),
        alerts,
        config.experiments.alert_check_interval,
        stop.clone(),
    ));
    Ok((
        store,
        Services {
            experiments,
            runs,
            schedules,
        },
        vec![webhooks, retention, monitor, probes],
    ))
}

/// Checks running experiments for alerts every `interval` until `stop`.
async fn monitor_experiments(
    experiments: Arc<ExperimentService>,
    alerts: Arc<AlertService>,
    interval: std::time::Duration,
    stop: CancellationToken,
) {
    let monitor = AlertMonitor::new();
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match monitor.check(&experiments, alerts.as_ref()).await {
            Ok(0) => {}
            Ok(changes) => tracing::info!(changes, "experiment alerts raised or resolved"),
            Err(err) => {
                tracing::warn!(error = %err, "checking experiment alerts failed; will retry")
            }
        }
    }
}

/// Prunes resolved alerts and old alert events every `interval` until `stop`.
async fn prune_alerts(
    alerts: Arc<AlertService>,
    retention: std::time::Duration,
    interval: std::time::Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match alerts.prune(cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, %cutoff, "pruned resolved alerts"),
            Err(err) => tracing::warn!(error = %err, "pruning alerts failed; will retry"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
