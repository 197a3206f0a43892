//! Server assembly: storage, the gRPC services, health, reflection, metrics, and a
//! graceful shutdown.
//!
//! Start-up order matters to operators: the listeners are bound and health answers
//! NOT_SERVING first; storage is opened and migrated (a PostgreSQL server not up yet is
//! waited for, see `database`); only then does health say SERVING, and it says
//! NOT_SERVING again whenever the database stops answering. On shutdown health says
//! NOT_SERVING at once, open streams are ended, new connections are refused, in-flight
//! calls get `shutdown_grace` to finish (those still running then are answered
//! UNAVAILABLE by `cut_off`), and the store is closed last.

pub(crate) mod access;
pub(crate) mod audit;
mod connection;
mod cut_off;
mod database;
mod follow;
mod health;
mod starting;
pub(crate) mod tls;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use llmops_access::{AuditLog, KeyService, LAST_USED_RESOLUTION};
use llmops_alerts::webhook::sender::WebhookSender;
use llmops_alerts::AlertService;
use llmops_cluster::{run_while_held, Membership, MembershipSettings, Role};
use llmops_core::{Clock, SystemClock};
use llmops_evaluator::dataset_users::DatasetUsers;
use llmops_evaluator::datasets::{DatasetService, ImportLeases};
use llmops_evaluator::gates::GateService;
use llmops_evaluator::online::{OnlineEvaluationService, OnlineScorer, OnlineSettings};
use llmops_evaluator::providers::limits::{Quota, SharedQuota};
use llmops_evaluator::providers::openai::OpenAiProvider;
use llmops_evaluator::providers::registry::ProviderRegistry;
use llmops_evaluator::providers::{ConfiguredProvider, Provider, ProviderSet};
use llmops_evaluator::runs::{RunService, RunSettings};
use llmops_evaluator::schedules::{ScheduleService, ScheduleSettings};
use llmops_experiments::monitor::AlertMonitor;
use llmops_experiments::ExperimentService;
use llmops_generations::{GenerationLimits, GenerationService};
use llmops_registry::Registry;
use llmops_store::{Storage, StorageOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use self::starting::Starting;
use crate::config::{AuthMode, Config};
use crate::grpc::bounded_status::BoundedStatusLayer;
use crate::grpc::{
    AlertApi, AuthApi, ClusterApi, EvaluationApi, EvaluationServices, ExperimentApi, GenerationApi,
    OtlpTraceApi, PromptApi, ProviderApi,
};
use crate::pb;
use crate::pb::alert_service_server::AlertServiceServer;
use crate::pb::auth_service_server::AuthServiceServer;
use crate::pb::cluster_service_server::ClusterServiceServer;
use crate::pb::evaluation_service_server::EvaluationServiceServer;
use crate::pb::experiment_service_server::ExperimentServiceServer;
use crate::pb::generation_service_server::GenerationServiceServer;
use crate::pb::prompt_service_server::PromptServiceServer;
use crate::pb::provider_service_server::ProviderServiceServer;
use crate::prompt_versions::RegistryVersions;
use crate::release_guard::EvaluationGuard;
use crate::telemetry::{self, GrpcMetricsLayer};
use access::{Access, AccessLayer, MethodRoles};
use audit::{AuditLayer, Auditor};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use tls::{MetricsTlsListener, ServerTls};

/// The services health reports on, besides the overall status ("").
const SERVICE_NAMES: &[&str] = &[
    "llmops.v1.PromptService",
    "llmops.v1.AlertService",
    "llmops.v1.ExperimentService",
    "llmops.v1.EvaluationService",
    "llmops.v1.ProviderService",
    "llmops.v1.ClusterService",
    "llmops.v1.AuthService",
    "llmops.v1.GenerationService",
];

/// OTLP trace export, served on the gRPC port beside the llmops services.
const OTLP_TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";

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
    serve_with_clock(
        config,
        Arc::new(SystemClock),
        grpc_listener,
        metrics_listener,
        shutdown,
    )
    .await
}

/// [`serve`], with schedules, retention and the experiment monitor waiting on `clock` (tests move a
/// [`llmops_core::ManualClock`] instead of waiting).
pub async fn serve_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
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
    let slots = Slots::new();
    let methods =
        Arc::new(MethodRoles::from_descriptor().context("reading each RPC's required role")?);
    let access = Access::new(
        methods.clone(),
        config.auth.mode == AuthMode::ApiKeys || config.tls.mutual(),
    );
    let auditor = Auditor::new();
    let tls = if config.tls.enabled() {
        let tls = ServerTls::load(&config.tls).context("loading [tls]")?;
        tokio::spawn(tls.clone().watch(stop.clone()));
        Some(tls)
    } else {
        None
    };
    let grpc_address = grpc_listener.local_addr()?;
    let mut grpc = tokio::spawn(grpc_server(
        &config,
        &slots,
        CallChecks {
            audit: AuditLayer::new(methods.clone(), auditor.clone(), config.audit_runtime_calls),
            access: access.clone(),
            tls: tls.clone(),
        },
        health_service,
        grpc_listener,
        stop.clone(),
        cut_off.clone(),
    )?);
    let metrics_address = metrics_listener.local_addr()?;
    let metrics = match tls.filter(|_| config.metrics_tls) {
        Some(tls) => {
            let listener = MetricsTlsListener::new(
                metrics_listener,
                tls,
                config.server.handshake_timeout,
                stop.clone(),
            )?;
            tokio::spawn(telemetry::serve_metrics(listener, stop.clone()))
        }
        None => tokio::spawn(telemetry::serve_metrics(metrics_listener, stop.clone())),
    };

    tokio::pin!(shutdown);
    let opened = tokio::select! {
        opened = open_storage(&config, clock, grpc_address, &stop) => opened,
        () = &mut shutdown => {
            tracing::info!("shut down before the database could be opened");
            stop.cancel();
            let _ = tokio::time::timeout(config.shutdown_grace, grpc).await;
            let _ = metrics.await;
            return Ok(());
        }
    };
    let (storage, services, mut background) = match opened {
        Ok(opened) => opened,
        Err(err) => {
            stop.cancel();
            return Err(err);
        }
    };
    slots.fill(&services, &config, &stop, &methods);
    access.fill(services.keys.clone());
    auditor.fill(AuditLog::start(storage.audit.clone()));
    health.set_all(SERVICE_NAMES, ServingStatus::Serving);
    background.push(tokio::spawn(database::watch(
        storage.clone(),
        health.clone(),
        stop.clone(),
    )));
    let database = config.database_url()?;
    tracing::info!(%grpc_address, %metrics_address, %database, tls = config.tls.enabled(), mtls = config.tls.mutual(), "llmops is serving");

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
    storage.close().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// What every connection and call passes before a service: TLS, the access check and
/// the audit log.
struct CallChecks {
    audit: AuditLayer,
    access: Arc<Access>,
    tls: Option<Arc<ServerTls>>,
}

fn grpc_server(
    config: &Config,
    slots: &Slots,
    checks: CallChecks,
    health_service: tonic_health::pb::health_server::HealthServer<health::HealthService>,
    listener: TcpListener,
    stop: CancellationToken,
    cut_off: CancellationToken,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>>> {
    // Reflection advertises only the public services (and itself), OTLP trace export
    // among them, from the opentelemetry-proto crate's own descriptors.
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(opentelemetry_proto::DESCRIPTORS)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name(OTLP_TRACE_SERVICE);
        for name in SERVICE_NAMES {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building reflection v1alpha")?;
    let limits = &config.server;
    let incoming = connection::incoming(
        listener,
        connection::ConnectionLimits {
            max_connections: limits.max_connections,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
        },
        checks.tls,
    );
    Ok(Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(Some(limits.max_concurrent_streams))
        .layer(GrpcMetricsLayer)
        .layer(checks.audit)
        .layer(AccessLayer::new(checks.access))
        .layer(BoundedStatusLayer)
        .layer(cut_off::CutOffLayer::new(cut_off))
        // Innermost: it wraps the response bodies of the services themselves.
        .layer(connection::CallActivityLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(slots.prompts.clone())
        .add_service(slots.alerts.clone())
        .add_service(slots.experiments.clone())
        .add_service(slots.evaluation.clone())
        .add_service(slots.providers.clone())
        .add_service(slots.cluster.clone())
        .add_service(slots.auth.clone())
        .add_service(slots.generations.clone())
        .add_service(slots.otlp_traces.clone())
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned()))
}

/// The domain services, built once at start-up from storage and configuration. Each
/// adapter receives only the ones it uses.
struct Services {
    registry: Arc<Registry>,
    providers: Arc<ProviderRegistry>,
    alerts: Arc<AlertService>,
    experiments: Arc<ExperimentService>,
    datasets: Arc<DatasetService>,
    runs: Arc<RunService>,
    schedules: Arc<ScheduleService>,
    gates: Arc<GateService>,
    membership: Arc<Membership>,
    keys: Arc<KeyService>,
    audit: Arc<dyn llmops_access::AuditStore>,
    generations: Arc<GenerationService>,
    online: Arc<OnlineEvaluationService>,
}

/// The gRPC services, registered with the router before storage is open and filled once
/// it is (see [`Starting`]).
struct Slots {
    prompts: Starting<PromptServiceServer<PromptApi>>,
    alerts: Starting<AlertServiceServer<AlertApi>>,
    experiments: Starting<ExperimentServiceServer<ExperimentApi>>,
    evaluation: Starting<EvaluationServiceServer<EvaluationApi>>,
    providers: Starting<ProviderServiceServer<ProviderApi>>,
    cluster: Starting<ClusterServiceServer<ClusterApi>>,
    auth: Starting<AuthServiceServer<AuthApi>>,
    generations: Starting<GenerationServiceServer<GenerationApi>>,
    otlp_traces: Starting<TraceServiceServer<OtlpTraceApi>>,
}

impl Slots {
    fn new() -> Self {
        Self {
            prompts: Starting::new(),
            alerts: Starting::new(),
            experiments: Starting::new(),
            evaluation: Starting::new(),
            providers: Starting::new(),
            cluster: Starting::new(),
            auth: Starting::new(),
            generations: Starting::new(),
            otlp_traces: Starting::new(),
        }
    }

    /// Builds every adapter over its services; calls are served from here on.
    fn fill(
        &self,
        services: &Services,
        config: &Config,
        stop: &CancellationToken,
        methods: &Arc<MethodRoles>,
    ) {
        let limit = config.max_message_bytes;
        self.prompts.fill(
            PromptServiceServer::new(
                PromptApi::new(
                    services.registry.clone(),
                    stop.clone(),
                    config.protected_labels.clone(),
                )
                .serving_experiments(services.experiments.clone()),
            )
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
        self.alerts.fill(
            AlertServiceServer::new(AlertApi::new(
                services.alerts.clone(),
                config.alerts.heartbeat_interval,
                stop.clone(),
            ))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
        self.experiments.fill(
            ExperimentServiceServer::new(
                ExperimentApi::new(
                    services.experiments.clone(),
                    RegistryVersions::new(services.registry.clone()),
                    services.providers.clone(),
                )
                .protecting(config.protected_labels.clone()),
            )
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
        self.evaluation.fill(
            EvaluationServiceServer::new(EvaluationApi::new(
                EvaluationServices {
                    datasets: services.datasets.clone(),
                    runs: services.runs.clone(),
                    schedules: services.schedules.clone(),
                    gates: services.gates.clone(),
                    dataset_users: DatasetUsers::new(
                        services.datasets.clone(),
                        services.runs.clone(),
                        services.schedules.clone(),
                        services.gates.clone(),
                    ),
                    online: services.online.clone(),
                },
                config.max_import_bytes,
                stop.clone(),
            ))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
        self.providers.fill(
            ProviderServiceServer::new(ProviderApi::new(services.providers.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        self.cluster.fill(
            ClusterServiceServer::new(ClusterApi::new(services.membership.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        self.auth.fill(
            AuthServiceServer::new(AuthApi::new(
                services.keys.clone(),
                services.audit.clone(),
                methods.clone(),
            ))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
        self.generations.fill(
            GenerationServiceServer::new(GenerationApi::new(
                services.generations.clone(),
                stop.clone(),
            ))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
        self.otlp_traces.fill(
            TraceServiceServer::new(OtlpTraceApi::new(services.generations.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
    }
}

/// Opens storage, builds the domain services, and starts their background work
/// (webhook delivery, alert retention, resumed evaluation runs), which ends when `stop`
/// is cancelled.
async fn open_storage(
    config: &Config,
    clock: Arc<dyn Clock>,
    address: std::net::SocketAddr,
    stop: &CancellationToken,
) -> anyhow::Result<(Storage, Services, Vec<tokio::task::JoinHandle<()>>)> {
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
    let url = config.database_url()?;
    let options = StorageOptions {
        durability: config.durability.into(),
        max_connections: config.database_max_connections,
    };
    let storage = database::open_with_retry(&url, options)
        .await
        .with_context(|| format!("opening storage at {url}"))?;
    // Before any cache is loaded: a change committed meanwhile is then followed again,
    // which reloads what is already current, rather than missed.
    let change_head = storage
        .cluster
        .change_head()
        .await
        .context("reading the change log")?;
    let membership = Membership::join(
        Uuid::now_v7().to_string(),
        storage.cluster.clone(),
        MembershipSettings {
            lease: config.leader_lease,
            address: address.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            shared: storage.is_shared(),
        },
    )
    .await
    .context("registering this replica")?;
    let registry = Registry::open(storage.prompts.clone(), config.registry_limits())
        .await
        .context("loading the prompt registry")?;
    let registry = Arc::new(registry);
    let sender = WebhookSender::new(storage.alerts.clone(), &receivers);
    let alerts = AlertService::open(
        storage.alerts.clone(),
        receivers,
        config.alerts.external_url.clone(),
    )
    .await
    .context("loading alerts")?
    .with_delivery_waker(sender.waker());
    let alerts = Arc::new(alerts);

    let experiments = ExperimentService::open(
        storage.experiments.clone(),
        llmops_experiments::Defaults {
            min_samples: config.experiments.min_samples_for_significance,
            models: Some(models),
        },
    )
    .await
    .context("loading experiments")?;
    let experiments = Arc::new(experiments);
    let datasets = DatasetService::open(
        storage.datasets.clone(),
        ImportLeases {
            holder: membership.id().to_owned(),
            lease: config.leader_lease,
            alone: !storage.is_shared(),
        },
    )
    .await
    .context("loading datasets")?;
    let datasets = Arc::new(datasets);
    // Replicas count the providers' caps together, in the database, so the caps hold
    // for the deployment as the provider sees it.
    let (quota, quota_renewal) = if storage.is_shared() {
        let shared = SharedQuota::new(
            storage.cluster.clone(),
            membership.id(),
            config.leader_lease,
        );
        let renewal = tokio::spawn(shared.clone().renew(stop.clone()));
        (Quota::Shared(shared), Some(renewal))
    } else {
        (Quota::Local, None)
    };
    let providers = providers
        .into_iter()
        .map(|settings| {
            let name = settings.name.clone();
            OpenAiProvider::with_quota(settings, quota.clone())
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
    // Replicas share probes: the prober role's holder probes for all of them.
    let probes = if storage.is_shared() {
        tokio::spawn(provider_set.health().clone().run_shared(
            membership.leadership(Role::ProviderProber),
            storage.cluster.clone(),
            stop.clone(),
        ))
    } else {
        tokio::spawn(provider_set.health().clone().run(stop.clone()))
    };
    let providers = Arc::new(ProviderRegistry::new(provider_set));
    let runs = RunService::open(
        storage.runs.clone(),
        datasets.clone(),
        registry.clone(),
        providers.clone(),
        alerts.clone(),
        RunSettings {
            panel_evaluation: config.evaluation.panel_evaluation,
            alert_thresholds: config.alert_thresholds.clone(),
            worker: membership.id().to_owned(),
            claim_lease: config.leader_lease,
        },
    )
    .await
    .context("loading evaluation runs")?;
    let runs = Arc::new(runs);
    let gates = GateService::open(storage.gates.clone(), runs.clone(), datasets.clone())
        .await
        .context("loading release gates")?;
    let gates = Arc::new(gates);
    registry.set_release_guard(Arc::new(EvaluationGuard::new(gates.clone())));
    // Prompt calls are served only once this is set (the slots are filled after
    // `open_storage`), so release gates are always enforced.
    let schedules = ScheduleService::open(
        storage.schedules.clone(),
        runs.clone(),
        registry.clone(),
        ScheduleSettings {
            auto_evaluation: config.evaluation.auto_evaluation,
            interval: config.evaluation.interval,
            clock: clock.clone(),
            leadership: storage
                .is_shared()
                .then(|| membership.leadership(Role::Scheduler)),
        },
        stop,
    )
    .await
    .context("loading evaluation schedules")?;
    let schedules = Arc::new(schedules);

    let sender = Arc::new(sender);
    let webhooks = tokio::spawn(run_while_held(
        membership.leadership(Role::WebhookSender),
        stop.clone(),
        move |token| {
            let sender = sender.clone();
            tokio::spawn(async move { sender.run(token.cancelled_owned()).await })
        },
    ));
    let retention = {
        let (alerts, cluster, clock) = (alerts.clone(), storage.cluster.clone(), clock.clone());
        let logs = Logs {
            audit: storage.audit.clone(),
            generations: storage.generations.clone(),
        };
        let retention = Retention {
            alerts: config.alerts.retention,
            audit: config.audit_retention,
            generations: config.generation_retention,
            usage: config.usage_retention,
            interval: config.alerts.prune_interval,
        };
        tokio::spawn(run_while_held(
            membership.leadership(Role::Retention),
            stop.clone(),
            move |token| {
                tokio::spawn(prune(
                    alerts.clone(),
                    cluster.clone(),
                    logs.clone(),
                    clock.clone(),
                    retention,
                    token,
                ))
            },
        ))
    };
    let online = Arc::new(
        OnlineEvaluationService::open(
            storage.online.clone(),
            registry.clone(),
            providers.clone(),
            Arc::new(crate::online::ServingFromExperiments(experiments.clone())),
            Some(
                crate::generation_metrics::ExperimentMetricsFromGenerations::new(
                    experiments.clone(),
                ),
            ),
            OnlineSettings {
                queue_limit: config.online_queue_limit,
                max_concurrency: config.online_max_concurrency,
                panel_evaluation: config.evaluation.panel_evaluation,
                worker: membership.id().to_owned(),
                // Judges may wait long for their providers' caps; claims are renewed
                // every third of this, so only a dead replica's claims lapse.
                claim_lease: config.leader_lease.max(ONLINE_CLAIM_LEASE),
            },
        )
        .await
        .context("loading online evaluations")?,
    );
    let online_monitor = {
        let (online, alerts, clock) = (online.clone(), alerts.clone(), clock.clone());
        let interval = config.online_check_interval;
        tokio::spawn(run_while_held(
            membership.leadership(Role::ExperimentMonitor),
            stop.clone(),
            move |token| {
                tokio::spawn(crate::online::monitor_online(
                    online.clone(),
                    alerts.clone(),
                    clock.clone(),
                    interval,
                    token,
                ))
            },
        ))
    };
    let monitor = {
        let (experiments, alerts, clock) = (experiments.clone(), alerts.clone(), clock.clone());
        let registry = registry.clone();
        let interval = config.experiments.alert_check_interval;
        tokio::spawn(run_while_held(
            membership.leadership(Role::ExperimentMonitor),
            stop.clone(),
            move |token| {
                tokio::spawn(monitor_experiments(
                    experiments.clone(),
                    registry.clone(),
                    alerts.clone(),
                    clock.clone(),
                    interval,
                    token,
                ))
            },
        ))
    };
    let mut background = vec![
        webhooks,
        retention,
        monitor,
        online_monitor,
        tokio::spawn(OnlineScorer::new(online.clone()).run(stop.clone())),
        probes,
        tokio::spawn(membership.clone().run(stop.clone())),
    ];
    background.extend(quota_renewal);
    let keys = Arc::new(
        KeyService::open(storage.keys.clone())
            .await
            .context("loading API keys")?,
    );
    background.push(tokio::spawn(record_key_uses(keys.clone(), stop.clone())));
    background.extend(follow::spawn(
        &storage,
        follow::Followed {
            registry: registry.clone(),
            alerts: alerts.clone(),
            schedules: schedules.clone(),
            datasets: datasets.clone(),
            gates: gates.clone(),
            experiments: experiments.clone(),
            runs: runs.clone(),
            keys: keys.clone(),
            online: online.clone(),
            change_head,
        },
        config.feed_poll_interval,
        stop,
    ));
    let audit = storage.audit.clone();
    let generations = Arc::new(GenerationService::with_sampler(
        storage.generations.clone(),
        GenerationLimits {
            max_text_bytes: config.max_generation_text_bytes,
        },
        config.model_prices(),
        Some(crate::generation_metrics::ExperimentMetricsFromGenerations::new(experiments.clone())),
        online.clone(),
    ));
    Ok((
        storage,
        Services {
            registry,
            providers,
            alerts,
            experiments,
            datasets,
            runs,
            schedules,
            gates,
            membership,
            keys,
            audit,
            generations,
            online,
        },
        background,
    ))
}

/// Writes API keys' last uses every [`LAST_USED_RESOLUTION`] until `stop`, and once more
/// then.
async fn record_key_uses(keys: Arc<KeyService>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(LAST_USED_RESOLUTION);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = ticks.tick() => false,
        };
        if let Err(error) = keys.flush_uses().await {
            tracing::warn!(%error, "recording API keys' last uses failed; trying again later");
        }
        if stopping {
            return;
        }
    }
}

/// Checks running experiments for alerts, and completes those that decided themselves
/// (`auto_complete`), every `interval` until `stop`.
async fn monitor_experiments(
    experiments: Arc<ExperimentService>,
    registry: Arc<Registry>,
    alerts: Arc<AlertService>,
    clock: Arc<dyn Clock>,
    interval: std::time::Duration,
    stop: CancellationToken,
) {
    let monitor = AlertMonitor::new();
    loop {
        match monitor.check(&experiments, alerts.as_ref()).await {
            Ok(0) => {}
            Ok(changes) => tracing::info!(changes, "experiment alerts raised or resolved"),
            Err(err) => {
                tracing::warn!(error = %err, "checking experiment alerts failed; will retry")
            }
        }
        crate::auto_complete::complete_decided(&experiments, &registry, alerts.as_ref()).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.sleep(interval) => {}
        }
    }
}

/// The shortest lease of a claim on an online sample.
const ONLINE_CLAIM_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the change log keeps a change: a replica further behind than this (cut off
/// from the database meanwhile) reloads every cached definition instead.
const CHANGE_LOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// How long resolved alerts and audit entries are kept, and how often they are pruned.
#[derive(Debug, Clone, Copy)]
struct Retention {
    alerts: std::time::Duration,
    audit: std::time::Duration,
    generations: std::time::Duration,
    usage: std::time::Duration,
    interval: std::time::Duration,
}

/// The logs retention prunes besides alerts.
#[derive(Clone)]
struct Logs {
    audit: Arc<dyn llmops_access::AuditStore>,
    generations: Arc<dyn llmops_generations::GenerationStore>,
}

/// Prunes resolved alerts, old alert events, old audit entries, old generations, old
/// usage aggregates and the old change log every `retention.interval` until `stop`.
async fn prune(
    alerts: Arc<AlertService>,
    cluster: Arc<dyn llmops_cluster::ClusterStore>,
    logs: Logs,
    clock: Arc<dyn Clock>,
    retention: Retention,
    stop: CancellationToken,
) {
    // A retention longer than recorded time keeps everything: nothing to prune.
    let cutoff = |kept: std::time::Duration| {
        chrono::Duration::from_std(kept)
            .ok()
            .and_then(|kept| clock.now().checked_sub_signed(kept))
    };
    loop {
        if let Some(cutoff) = cutoff(retention.alerts) {
            match alerts.prune(cutoff).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, %cutoff, "pruned resolved alerts"),
                Err(err) => tracing::warn!(error = %err, "pruning alerts failed; will retry"),
            }
        }
        if let Some(cutoff) = cutoff(retention.audit) {
            match logs.audit.prune_audit(cutoff).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, %cutoff, "pruned audit entries"),
                Err(err) => {
                    tracing::warn!(error = %err, "pruning the audit log failed; will retry")
                }
            }
        }
        if let Some(cutoff) = cutoff(retention.generations) {
            match logs.generations.prune_generations(cutoff).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, %cutoff, "pruned generations"),
                Err(err) => {
                    tracing::warn!(error = %err, "pruning generations failed; will retry")
                }
            }
        }
        if let Some(cutoff) = cutoff(retention.usage) {
            match logs.generations.prune_usage(cutoff).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, %cutoff, "pruned usage aggregates"),
                Err(err) => {
                    tracing::warn!(error = %err, "pruning usage aggregates failed; will retry")
                }
            }
        }
        if let Err(err) = cluster.prune_changes(CHANGE_LOG_RETENTION).await {
            tracing::warn!(error = %err, "pruning the change log failed; will retry");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.sleep(retention.interval) => {}
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
