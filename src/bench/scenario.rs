//! The scenarios: what each one sets up and which request it sends.
//!
//! Adding a scenario: add a [`Scenario`] variant (its doc comment is its `--help` text),
//! its name, its setup (if it reads data) and a [`Caller`] variant that sends its request.
//! `fanout` is the exception: it is not a closed loop of one request, and runs its own
//! course in `fanout`.

use std::collections::BTreeMap;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::cli::Credentials;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::load::Call;
use crate::pb;
use crate::pb::alert_service_client::AlertServiceClient;
use crate::pb::evaluation_service_client::EvaluationServiceClient;
use crate::pb::experiment_service_client::ExperimentServiceClient;
use crate::pb::generation_service_client::GenerationServiceClient;
use crate::pb::prompt_service_client::PromptServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1 as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1 as otlp_trace;

/// The prompt the prompt scenarios read.
const PROMPT_NAME: &str = "bench-prompt";
/// Its only version.
const PROMPT_VERSION: &str = "1.0.0";
/// A typical small review prompt with three variables.
const PROMPT_TEMPLATE: &str = "Review this {{ language }} code for {{ focus_area }}: {{ code }}";
/// The variables of [`PROMPT_TEMPLATE`] and the values rendered with.
const PROMPT_VARIABLES: [(&str, &str, &str); 3] = [
    ("language", "The programming language", "rust"),
    ("focus_area", "What to look for", "error handling"),
    (
        "code",
        "The code to review",
        "fn main() {\n    let n: u32 = std::env::args().count().try_into().unwrap();\n    println!(\"{n}\");\n}",
    ),
];

/// The experiment the experiment scenarios use.
const EXPERIMENT_ID: &str = "bench-experiment";
/// Of the users `assign` sends, one in this many is new (never assigned before).
const ASSIGN_NEW_USER_EVERY: u64 = 2;
/// The returning users `assign` cycles through.
const ASSIGN_RETURNING_USERS: u64 = 1000;

/// One kind of request the load tool can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scenario {
    /// grpc.health.v1.Health/Check: the floor set by the transport and framework.
    Health,
    /// GetPromptVersion of one prompt version by name and version.
    GetPrompt,
    /// RenderPrompt of a three-variable template.
    Render,
    /// AssignVariant; every other user is new, so half the calls store an exposure.
    Assign,
    /// RecordMetric, durable before the answer (group commit).
    RecordMetric,
    /// CreateAlert of a new alert (a fresh fingerprint each call): a durable write with
    /// an event on the ordered feed. Only run when named.
    CreateAlert,
    /// RenderPrompt of a label an experiment serves, with a user from a fixed set of
    /// 1,000 (after the first round, every user returns: no write). Only run when named.
    RenderServed,
    /// RenderPrompt of a label an experiment serves, for a new user each call (each
    /// stores an exposure). Only run when named.
    RenderServedNewUser,
    /// LogGenerations of [`GENERATIONS_PER_CALL`] new generations (a few hundred bytes
    /// of input and output each), durable before the answer: generations per second are
    /// RPS x 100. Only run when named.
    LogGenerations,
    /// OTLP TraceService/Export of [`GENERATIONS_PER_CALL`] new GenAI spans (the same
    /// content as `log-generations`), each stored as a generation: spans per second are
    /// RPS x 100. Only run when named.
    OtlpExport,
    /// `log-generations` while an online evaluation of the bench prompt samples every
    /// generation (rate 1.0) and scores it with three local scorers (contains, regex,
    /// heuristic): what online evaluation costs ingest. Only run when named.
    LogGenerationsOnline,
    /// ImportSamples of a new dataset, streamed in batches: samples per second. Only
    /// run when named.
    Import,
    /// Alert Subscribe fan-out: many subscribers, alerts created at a fixed rate;
    /// delivery latency and server memory per subscriber. Only run when named.
    Fanout,
    /// An evaluation run against a mock provider with a fixed latency: wall time as a
    /// ratio of the ideal. Only run when named.
    Eval,
    /// Online evaluation judged by a mock provider with a fixed latency: scored samples
    /// per second against the ideal at the server's `online_max_concurrency`. Only run
    /// when named.
    OnlineJudge,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub(crate) const ALL: [Self; 15] = [
        Self::Health,
        Self::GetPrompt,
        Self::Render,
        Self::Assign,
        Self::RecordMetric,
        Self::CreateAlert,
        Self::RenderServed,
        Self::RenderServedNewUser,
        Self::LogGenerations,
        Self::OtlpExport,
        Self::LogGenerationsOnline,
        Self::Import,
        Self::Fanout,
        Self::Eval,
        Self::OnlineJudge,
    ];
    /// The closed-loop request scenarios, run by `load`; the default selection.
    pub(crate) const CLOSED_LOOP: [Self; 11] = [
        Self::Health,
        Self::GetPrompt,
        Self::Render,
        Self::Assign,
        Self::RecordMetric,
        Self::CreateAlert,
        Self::RenderServed,
        Self::RenderServedNewUser,
        Self::LogGenerations,
        Self::OtlpExport,
        Self::LogGenerationsOnline,
    ];

    /// The name used on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::GetPrompt => "get-prompt",
            Self::Render => "render",
            Self::Assign => "assign",
            Self::RecordMetric => "record-metric",
            Self::CreateAlert => "create-alert",
            Self::RenderServed => "render-served",
            Self::RenderServedNewUser => "render-served-new-user",
            Self::LogGenerations => "log-generations",
            Self::OtlpExport => "otlp-export",
            Self::LogGenerationsOnline => "log-generations-online",
            Self::Import => "import",
            Self::Fanout => "fanout",
            Self::Eval => "eval",
            Self::OnlineJudge => "online-judge",
        }
    }

    /// Whether this is a closed loop of one request (see `load`), with a [`Caller`].
    pub(crate) fn is_closed_loop(self) -> bool {
        Self::CLOSED_LOOP.contains(&self)
    }

    /// Creates what the scenario reads. Safe to run again against the same server.
    pub(crate) async fn setup(self, channel: Authed) -> anyhow::Result<()> {
        match self {
            // Fanout creates its alerts, and import its dataset, as they run.
            Self::Health
            | Self::Fanout
            | Self::Import
            | Self::Eval
            | Self::OnlineJudge
            | Self::CreateAlert
            | Self::LogGenerations
            | Self::OtlpExport => Ok(()),
            Self::GetPrompt | Self::Render => create_bench_prompt(channel).await,
            Self::LogGenerationsOnline => {
                create_bench_prompt(channel.clone()).await?;
                create_bench_online_evaluation(channel).await
            }
            Self::Assign | Self::RecordMetric => start_bench_experiment(channel).await,
            Self::RenderServed | Self::RenderServedNewUser => {
                start_serving_experiment(channel).await
            }
        }
    }

    /// A caller sending this scenario's request over `channel`.
    ///
    /// # Panics
    ///
    /// For a scenario that is not [closed-loop](Self::is_closed_loop); `bench::run`
    /// sends those elsewhere.
    pub(crate) fn caller(self, channel: Channel, credentials: &Credentials) -> Caller {
        let channel = InterceptedService::new(channel, credentials.clone());
        match self {
            Self::Health => Caller::Health(HealthClient::new(channel)),
            Self::GetPrompt => Caller::GetPrompt(
                PromptServiceClient::new(channel),
                pb::GetPromptVersionRequest {
                    name: PROMPT_NAME.into(),
                    version: PROMPT_VERSION.into(),
                    label: String::new(),
                    user_id: String::new(),
                },
            ),
            Self::Render => Caller::Render(
                PromptServiceClient::new(channel),
                pb::RenderPromptRequest {
                    name: PROMPT_NAME.into(),
                    version: PROMPT_VERSION.into(),
                    label: String::new(),
                    variables: render_values(),
                    user_id: String::new(),
                },
            ),
            Self::Assign => Caller::Assign(ExperimentServiceClient::new(channel), UserIds::new()),
            Self::RecordMetric => Caller::RecordMetric(
                ExperimentServiceClient::new(channel),
                pb::RecordMetricRequest {
                    experiment_id: EXPERIMENT_ID.into(),
                    variant_id: "control".into(),
                    metric: "quality".into(),
                    value: 0.87,
                    ..Default::default()
                },
            ),
            Self::CreateAlert => {
                Caller::CreateAlert(AlertServiceClient::new(channel), UserIds::new())
            }
            Self::LogGenerations | Self::LogGenerationsOnline => {
                Caller::LogGenerations(GenerationServiceClient::new(channel), UserIds::new())
            }
            Self::OtlpExport => {
                Caller::OtlpExport(TraceServiceClient::new(channel), UserIds::new())
            }
            Self::RenderServed | Self::RenderServedNewUser => Caller::RenderServed(
                PromptServiceClient::new(channel),
                UserIds::new(),
                self == Self::RenderServedNewUser,
            ),
            Self::Fanout | Self::Import | Self::Eval | Self::OnlineJudge => {
                unreachable!("{} is not a closed-loop scenario", self.name())
            }
        }
    }
}

/// The users one `assign` stream sends: every [`ASSIGN_NEW_USER_EVERY`]th is new (a
/// per-stream random prefix keeps them new across streams and runs), the rest return.
#[derive(Debug)]
pub(crate) struct UserIds {
    prefix: u64,
    sent: u64,
}

impl UserIds {
    fn new() -> Self {
        Self {
            prefix: fastrand::u64(..),
            sent: 0,
        }
    }

    fn next(&mut self) -> String {
        self.sent += 1;
        if self.sent % ASSIGN_NEW_USER_EVERY == 0 {
            format!("new-{:016x}-{}", self.prefix, self.sent)
        } else {
            format!("returning-{}", self.sent % ASSIGN_RETURNING_USERS)
        }
    }
}

/// The selected scenarios without repeats, in [`Scenario::ALL`] order (health first, so
/// the others can be compared with it).
pub(crate) fn run_order(selected: &[Scenario]) -> Vec<Scenario> {
    Scenario::ALL
        .into_iter()
        .filter(|scenario| selected.contains(scenario))
        .collect()
}

/// A channel whose calls carry the API key given to the tool, if any.
pub(crate) type Authed = InterceptedService<Channel, Credentials>;

/// A client with its prepared request, for one in-flight stream.
#[derive(Debug)]
pub(crate) enum Caller {
    /// Health/Check of the overall status.
    Health(HealthClient<Authed>),
    /// GetPromptVersion.
    GetPrompt(PromptServiceClient<Authed>, pb::GetPromptVersionRequest),
    /// RenderPrompt.
    Render(PromptServiceClient<Authed>, pb::RenderPromptRequest),
    /// AssignVariant, with the users to send.
    Assign(ExperimentServiceClient<Authed>, UserIds),
    /// RecordMetric.
    RecordMetric(ExperimentServiceClient<Authed>, pb::RecordMetricRequest),
    /// CreateAlert, each for a new source (the ids' prefix keeps them apart).
    CreateAlert(AlertServiceClient<Authed>, UserIds),
    /// RenderPrompt of the served label, for returning users or (`true`) new ones.
    RenderServed(PromptServiceClient<Authed>, UserIds, bool),
    /// LogGenerations of new generations (the ids' prefix keeps them apart).
    LogGenerations(GenerationServiceClient<Authed>, UserIds),
    /// OTLP export of new GenAI spans (trace ids from the ids' prefix keep them apart).
    OtlpExport(TraceServiceClient<Authed>, UserIds),
}

impl Call for Caller {
    async fn call(&mut self) -> Result<(), Status> {
        match self {
            Self::Health(client) => {
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                let status = client.check(request).await?.into_inner().status();
                if status == ServingStatus::Serving {
                    Ok(())
                } else {
                    Err(Status::unavailable(format!(
                        "health status is {}",
                        status.as_str_name()
                    )))
                }
            }
            Self::GetPrompt(client, request) => {
                client.get_prompt_version(request.clone()).await?;
                Ok(())
            }
            Self::Render(client, request) => {
                client.render_prompt(request.clone()).await?;
                Ok(())
            }
            Self::Assign(client, users) => {
                let request = pb::AssignVariantRequest {
                    experiment_id: EXPERIMENT_ID.into(),
                    user_id: users.next(),
                };
                client.assign_variant(request).await?;
                Ok(())
            }
            Self::RecordMetric(client, request) => {
                client.record_metric(request.clone()).await?;
                Ok(())
            }
            Self::CreateAlert(client, sources) => {
                sources.sent += 1;
                let request = pb::CreateAlertRequest {
                    alert: Some(pb::Alert {
                        r#type: pb::AlertType::Threshold.into(),
                        severity: pb::AlertSeverity::Info.into(),
                        message: "bench".into(),
                        source: "bench".into(),
                        source_id: format!("{:016x}-{}", sources.prefix, sources.sent),
                        metric: "latency_p99".into(),
                        ..Default::default()
                    }),
                };
                client.create_alert(request).await?;
                Ok(())
            }
            Self::RenderServed(client, users, new_users) => {
                users.sent += 1;
                let user_id = if *new_users {
                    format!("new-{:016x}-{}", users.prefix, users.sent)
                } else {
                    format!("served-{}", users.sent % ASSIGN_RETURNING_USERS)
                };
                let request = pb::RenderPromptRequest {
                    name: SERVED_PROMPT.into(),
                    label: SERVED_LABEL.into(),
                    variables: render_values(),
                    user_id,
                    ..Default::default()
                };
                let rendered = client.render_prompt(request).await?.into_inner();
                if rendered.experiment_id.is_empty() {
                    return Err(Status::internal(
                        "the served label answered without its experiment",
                    ));
                }
                Ok(())
            }
            Self::LogGenerations(client, ids) => {
                let generations = (0..GENERATIONS_PER_CALL)
                    .map(|_| {
                        ids.sent += 1;
                        bench_generation(format!("{:016x}-{}", ids.prefix, ids.sent), ids.sent)
                    })
                    .collect();
                client
                    .log_generations(pb::LogGenerationsRequest { generations })
                    .await?;
                Ok(())
            }
            Self::OtlpExport(client, ids) => {
                let spans = (0..GENERATIONS_PER_CALL)
                    .map(|_| {
                        ids.sent += 1;
                        bench_span(ids.prefix, ids.sent)
                    })
                    .collect();
                let answer = client
                    .export(otlp::ExportTraceServiceRequest {
                        resource_spans: vec![otlp_trace::ResourceSpans {
                            scope_spans: vec![otlp_trace::ScopeSpans {
                                spans,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                    })
                    .await?
                    .into_inner();
                match answer.partial_success {
                    Some(partial) if partial.rejected_spans > 0 => Err(Status::internal(format!(
                        "spans rejected: {}",
                        partial.error_message
                    ))),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// A GenAI span carrying what [`bench_generation`] logs.
fn bench_span(prefix: u64, n: u64) -> otlp_trace::Span {
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    let generation = bench_generation(String::new(), n);
    let attribute = |key: &str, value: Value| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    };
    let text = |key: &str, value: &str| attribute(key, Value::StringValue(value.into()));
    let start = 1_800_000_000_000_000_000 + n * 1_000_000;
    otlp_trace::Span {
        trace_id: [prefix.to_be_bytes(), n.to_be_bytes()].concat(),
        span_id: n.to_be_bytes().to_vec(),
        name: "chat bench-model".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + (generation.latency_ms * 1e6) as u64,
        attributes: vec![
            text("gen_ai.operation.name", "chat"),
            text("gen_ai.system", &generation.provider),
            text("gen_ai.request.model", &generation.model),
            attribute(
                "gen_ai.usage.input_tokens",
                Value::IntValue(generation.input_tokens as i64),
            ),
            attribute(
                "gen_ai.usage.output_tokens",
                Value::IntValue(generation.output_tokens as i64),
            ),
            text("gen_ai.prompt", &generation.input),
            text("gen_ai.completion", &generation.output),
            text("llmops.prompt.name", &generation.prompt_name),
            text("llmops.prompt.version", &generation.prompt_version),
            text("llmops.user_id", &generation.user_id),
        ],
        ..Default::default()
    }
}

/// The prompt, label and experiment `render-served` renders: an experiment serving the
/// label splits users between two versions.
const SERVED_PROMPT: &str = "bench-served";
const SERVED_LABEL: &str = "live";
const SERVED_EXPERIMENT: &str = "bench-served-experiment";

/// Creates the served prompt's two versions through a prompt experiment serving its
/// label, points the label at the control and starts the experiment; what an earlier
/// run left is reused.
async fn start_serving_experiment(channel: Authed) -> anyhow::Result<()> {
    let version = |version: &str, template: &str| pb::PromptVersion {
        name: SERVED_PROMPT.into(),
        version: version.into(),
        template: template.into(),
        variables: PROMPT_VARIABLES
            .iter()
            .map(|(name, description, _)| pb::PromptVariable {
                name: (*name).into(),
                r#type: pb::VariableType::String.into(),
                required: true,
                description: (*description).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut experiments = ExperimentServiceClient::new(channel.clone());
    let created = experiments
        .create_prompt_experiment(pb::CreatePromptExperimentRequest {
            experiment_id: SERVED_EXPERIMENT.into(),
            name: "llmops bench: a served label".into(),
            control: Some(version("1.0.0", PROMPT_TEMPLATE)),
            treatment: Some(version(
                "1.1.0",
                "Carefully review this {{ language }} code for {{ focus_area }}: {{ code }}",
            )),
            prompt_name: SERVED_PROMPT.into(),
            label: SERVED_LABEL.into(),
            ..Default::default()
        })
        .await;
    match created {
        Ok(_) => {}
        Err(status) if status.code() == Code::AlreadyExists => {}
        Err(status) => anyhow::bail!("cannot create {SERVED_EXPERIMENT}: {status}"),
    }
    PromptServiceClient::new(channel)
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: SERVED_PROMPT.into(),
            label: SERVED_LABEL.into(),
            version: "1.0.0".into(),
            ..Default::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!("cannot point {SERVED_LABEL}: {status}"))?;
    match experiments
        .start_experiment(pb::StartExperimentRequest {
            experiment_id: SERVED_EXPERIMENT.into(),
        })
        .await
    {
        Ok(_) => Ok(()),
        // Running since an earlier run.
        Err(status) if status.code() == Code::FailedPrecondition => Ok(()),
        Err(status) => Err(anyhow::anyhow!(
            "cannot start {SERVED_EXPERIMENT}: {status}"
        )),
    }
}

/// Generations per `log-generations` call.
pub(crate) const GENERATIONS_PER_CALL: u64 = 100;

/// A generation as an application would log it: a rendered prompt of about 200 bytes and
/// an answer of about 300.
fn bench_generation(id: String, n: u64) -> pb::Generation {
    pb::Generation {
        id,
        prompt_name: PROMPT_NAME.into(),
        prompt_version: PROMPT_VERSION.into(),
        model: "bench-model".into(),
        provider: "bench".into(),
        user_id: format!("user-{}", n % 1000),
        input: "You are a helpful assistant. Summarise the following support ticket in two \
                sentences for an engineer on call, naming the product area and the customer's \
                plan: the export to CSV times out for workspaces over 10k rows."
            .into(),
        output: "The CSV export times out for workspaces with more than 10,000 rows. The \
                 customer is on the Business plan and the issue is in the reporting area; \
                 exports of smaller workspaces succeed, so the cause is likely the synchronous \
                 export path hitting the request timeout."
            .into(),
        latency_ms: 840.0 + (n % 100) as f64,
        input_tokens: 48,
        output_tokens: 64,
        ..Default::default()
    }
}

/// The online evaluation `log-generations-online` runs under.
const ONLINE_EVALUATION_ID: &str = "bench-online";

/// Creates the online evaluation of `log-generations-online`; one left by an earlier
/// run is fine.
async fn create_bench_online_evaluation(channel: Authed) -> anyhow::Result<()> {
    let metric = |name: &str, scorer: &str, params: serde_json::Value| pb::MetricConfig {
        name: name.into(),
        scorer: scorer.into(),
        params: params
            .as_object()
            .map(crate::grpc::convert::struct_from_json),
        threshold: None,
    };
    let created = EvaluationServiceClient::new(channel)
        .create_online_evaluation(pb::CreateOnlineEvaluationRequest {
            online_evaluation: Some(pb::OnlineEvaluation {
                id: ONLINE_EVALUATION_ID.into(),
                filter: Some(pb::OnlineEvaluationFilter {
                    prompt_name: PROMPT_NAME.into(),
                    ..Default::default()
                }),
                sample_rate: 1.0,
                metrics: vec![
                    metric(
                        "mentions_csv",
                        "contains",
                        serde_json::json!({"value": "CSV"}),
                    ),
                    metric(
                        "has_number",
                        "regex",
                        serde_json::json!({"pattern": "[0-9]+"}),
                    ),
                    metric("quality", "heuristic", serde_json::json!({})),
                ],
                ..Default::default()
            }),
            online_evaluation_id: String::new(),
        })
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(anyhow::anyhow!("creating the online evaluation: {status}")),
    }
}

/// Creates `bench-prompt` 1.0.0; a version left by an earlier run is fine.
async fn create_bench_prompt(channel: Authed) -> anyhow::Result<()> {
    let variables = PROMPT_VARIABLES
        .iter()
        .map(|(name, description, _)| pb::PromptVariable {
            name: (*name).into(),
            r#type: pb::VariableType::String.into(),
            required: true,
            description: (*description).into(),
            ..Default::default()
        })
        .collect();
    let request = pb::CreatePromptVersionRequest {
        prompt_version: Some(pb::PromptVersion {
            name: PROMPT_NAME.into(),
            version: PROMPT_VERSION.into(),
            template: PROMPT_TEMPLATE.into(),
            variables,
            description: "Created by llmops bench.".into(),
            commit_message: "llmops bench".into(),
            ..Default::default()
        }),
    };
    match PromptServiceClient::new(channel)
        .create_prompt_version(request)
        .await
    {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(anyhow::anyhow!(
            "cannot create {PROMPT_NAME} {PROMPT_VERSION}: {status}"
        )),
    }
}

/// Creates and starts `bench-experiment` (two variants, one metric); an experiment left
/// running by an earlier run is reused.
async fn start_bench_experiment(channel: Authed) -> anyhow::Result<()> {
    let mut client = ExperimentServiceClient::new(channel);
    let experiment = pb::Experiment {
        id: EXPERIMENT_ID.into(),
        name: "llmops bench".into(),
        variants: ["control", "treatment"]
            .map(|id| pb::Variant {
                id: id.into(),
                ..Default::default()
            })
            .to_vec(),
        metrics: vec![pb::MetricDefinition {
            name: "quality".into(),
            kind: pb::MetricKind::Mean.into(),
            direction: pb::MetricDirection::HigherIsBetter.into(),
            role: pb::MetricRole::Primary.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let created = client
        .create_experiment(pb::CreateExperimentRequest {
            experiment: Some(experiment),
        })
        .await;
    match created {
        Ok(_) => {}
        Err(status) if status.code() == Code::AlreadyExists => {}
        Err(status) => anyhow::bail!("cannot create {EXPERIMENT_ID}: {status}"),
    }
    let current = client
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: EXPERIMENT_ID.into(),
        })
        .await
        .map_err(|status| anyhow::anyhow!("cannot read {EXPERIMENT_ID}: {status}"))?
        .into_inner()
        .experiment
        .unwrap_or_default();
    if current.status() != pb::ExperimentStatus::Running {
        client
            .start_experiment(pb::StartExperimentRequest {
                experiment_id: EXPERIMENT_ID.into(),
            })
            .await
            .map_err(|status| anyhow::anyhow!("cannot start {EXPERIMENT_ID}: {status}"))?;
    }
    Ok(())
}

/// The values [`Scenario::Render`] renders with.
fn render_values() -> BTreeMap<String, prost_types::Value> {
    PROMPT_VARIABLES
        .iter()
        .map(|(name, _, value)| {
            let value = prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue((*value).into())),
            };
            ((*name).to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_names_match_report_names() {
        use clap::ValueEnum as _;
        for scenario in Scenario::ALL {
            let value = scenario.to_possible_value().unwrap();
            assert_eq!(value.get_name(), scenario.name());
        }
        assert_eq!(Scenario::value_variants(), Scenario::ALL);
    }

    #[test]
    fn only_import_fanout_eval_and_online_judge_are_not_closed_loops() {
        let open: Vec<_> = Scenario::ALL
            .into_iter()
            .filter(|scenario| !scenario.is_closed_loop())
            .collect();
        assert_eq!(
            open,
            [
                Scenario::Import,
                Scenario::Fanout,
                Scenario::Eval,
                Scenario::OnlineJudge
            ]
        );
    }

    #[test]
    fn the_render_values_cover_the_template() {
        let values = render_values();
        for (name, _, _) in PROMPT_VARIABLES {
            assert!(PROMPT_TEMPLATE.contains(&format!("{{{{ {name} }}}}")));
            assert!(values.contains_key(name));
        }
    }
}
