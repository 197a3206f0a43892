//! The `eval` scenario: how close an evaluation run gets to the ideal wall time.
//!
//! A mock OpenAI-compatible provider (this process, [`MockProvider`]) answers every
//! request after a fixed latency with no rate cap. A dataset of `samples` samples is run
//! against it at `concurrency`; the time runs from StartRun to the final WatchRun state.
//! The ideal is `samples * latency / concurrency` (every slot always busy); the ratio of
//! the two is what the run's own overhead (rendering, scoring, storing each result)
//! costs.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use tokio_stream::StreamExt as _;
use tonic::transport::Endpoint;

use super::mock_provider::MockProvider;
use crate::pb;
use crate::pb::evaluation_service_client::EvaluationServiceClient;
use crate::pb::prompt_service_client::PromptServiceClient;

/// The provider name a spawned server is configured with for this scenario.
pub(crate) const MOCK_PROVIDER: &str = "bench-mock";
const PROMPT: &str = "bench-eval";

/// What the scenario runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EvalShape {
    /// Samples in the dataset.
    pub(crate) samples: usize,
    /// The run's concurrency.
    pub(crate) concurrency: u32,
    /// The mock provider's latency.
    pub(crate) latency: Duration,
}

/// The eval scenario's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EvalRow {
    /// Always `eval`.
    pub(crate) scenario: &'static str,
    /// Samples run.
    pub(crate) samples: u64,
    /// The run's concurrency.
    pub(crate) concurrency: u32,
    /// The provider's latency in milliseconds.
    pub(crate) latency_ms: f64,
    /// StartRun to the final state.
    pub(crate) seconds: f64,
    /// samples * latency / concurrency.
    pub(crate) ideal_seconds: f64,
    /// seconds / ideal_seconds.
    pub(crate) ratio: f64,
    /// The run's pass rate (1.0 unless something broke).
    pub(crate) pass_rate: f64,
}

/// The `[[providers]]` entry that points a spawned server at `mock`.
pub(crate) fn provider_config(mock: &MockProvider) -> String {
    format!(
        "[[providers]]\nname = \"{MOCK_PROVIDER}\"\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"mock-model\"\n",
        mock.base_url()
    )
}

fn sample(n: usize) -> pb::Sample {
    let text = format!("answer number {n}");
    pb::Sample {
        id: format!("s{n:06}"),
        input: Some(prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(text.clone())),
        }),
        expected_output: text,
        ..Default::default()
    }
}

/// Runs the scenario against a server whose provider `model` answers after
/// `shape.latency`.
pub(crate) async fn run(
    endpoint: &Endpoint,
    model: &str,
    shape: EvalShape,
) -> anyhow::Result<EvalRow> {
    if shape.samples == 0 || shape.samples > 10_000 || shape.concurrency == 0 {
        bail!("--eval-samples must be 1-10000 and --eval-concurrency at least 1");
    }
    let channel = endpoint.connect().await.context("connecting")?;
    let mut prompts = PromptServiceClient::new(channel.clone());
    let created = prompts
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: PROMPT.into(),
                version: "1.0.0".into(),
                template: "{{input}}".into(),
                ..Default::default()
            }),
        })
        .await;
    match created {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::AlreadyExists => {}
        Err(status) => return Err(status).context("creating the bench prompt"),
    }
    let mut evaluation = EvaluationServiceClient::new(channel);
    let dataset = evaluation
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: format!("bench-eval-{}", uuid::Uuid::now_v7()),
                ..Default::default()
            }),
        })
        .await
        .context("creating the bench dataset")?
        .into_inner()
        .dataset
        .context("no dataset in the answer")?;
    evaluation
        .add_samples(pb::AddSamplesRequest {
            dataset_id: dataset.id.clone(),
            samples: (0..shape.samples).map(sample).collect(),
        })
        .await
        .context("adding the bench samples")?;
    let run = evaluation
        .create_run(pb::CreateRunRequest {
            run: Some(pb::Run {
                dataset_id: dataset.id,
                prompt_name: PROMPT.into(),
                prompt_version: "1.0.0".into(),
                model: model.into(),
                concurrency: shape.concurrency,
                metrics: vec![pb::MetricConfig {
                    name: "exact".into(),
                    scorer: "exact_match".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .context("creating the bench run")?
        .into_inner()
        .run
        .context("no run in the answer")?;
    let mut watch = evaluation
        .watch_run(pb::WatchRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .context("watching the bench run")?
        .into_inner();
    let started = Instant::now();
    evaluation
        .start_run(pb::StartRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .context("starting the bench run")?;
    let mut last = None;
    while let Some(event) = watch.next().await {
        last = event.context("watching the bench run")?.run;
    }
    let seconds = started.elapsed().as_secs_f64();
    let last = last.context("WatchRun ended without a state")?;
    if last.status != pb::RunStatus::Completed as i32 {
        bail!("the bench run ended {:?}: {}", last.status, last.error);
    }
    let results = last.results.clone().unwrap_or_default();
    if results.total != shape.samples as u64
        || results.errored > 0
        || results.passed != results.total
    {
        bail!(
            "the bench run did not evaluate every sample cleanly: {} of {} done, {} errored, {} passed ({:?})",
            results.total, shape.samples, results.errored, results.passed, results.failure_reasons
        );
    }
    let ideal_seconds =
        shape.samples as f64 * shape.latency.as_secs_f64() / f64::from(shape.concurrency);
    Ok(EvalRow {
        scenario: "eval",
        samples: shape.samples as u64,
        concurrency: shape.concurrency,
        latency_ms: shape.latency.as_secs_f64() * 1000.0,
        seconds,
        ideal_seconds,
        ratio: seconds / ideal_seconds,
        pass_rate: last.results.map(|r| r.pass_rate).unwrap_or_default(),
    })
}
