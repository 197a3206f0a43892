//! The `online-judge` scenario: how close online evaluation gets to the ideal rate of
//! judge-scored samples.
//!
//! An online evaluation of a fresh prompt samples every generation (rate 1.0) and scores
//! it with an `llm_judge` on the mock provider, which answers after a fixed latency with
//! no rate cap. `samples` generations are logged at once; the time runs from the first
//! LogGenerations call until every sample is scored. The ideal is
//! `samples * latency / online_max_concurrency` (every scoring slot always busy).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use tonic::transport::Endpoint;

use crate::pb;
use crate::pb::evaluation_service_client::EvaluationServiceClient;
use crate::pb::generation_service_client::GenerationServiceClient;
use crate::pb::prompt_service_client::PromptServiceClient;

const PROMPT: &str = "bench-online-judge";
/// Generations per LogGenerations call.
const BATCH: usize = 1000;
/// How often scoring progress is read.
const POLL: Duration = Duration::from_millis(20);

/// What the scenario runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OnlineJudgeShape {
    /// Generations logged (all sampled).
    pub(crate) samples: usize,
    /// The server's `online_max_concurrency`.
    pub(crate) concurrency: usize,
    /// The mock provider's latency.
    pub(crate) latency: Duration,
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OnlineJudgeRow {
    /// Always `online-judge`.
    pub(crate) scenario: &'static str,
    /// Samples scored.
    pub(crate) samples: u64,
    /// The server's `online_max_concurrency`.
    pub(crate) concurrency: usize,
    /// The judge's latency in milliseconds.
    pub(crate) latency_ms: f64,
    /// First LogGenerations call to the last sample scored.
    pub(crate) seconds: f64,
    /// samples * latency / concurrency.
    pub(crate) ideal_seconds: f64,
    /// Scored samples per second.
    pub(crate) samples_per_second: f64,
    /// concurrency / latency.
    pub(crate) ideal_samples_per_second: f64,
    /// samples_per_second / ideal_samples_per_second.
    pub(crate) ratio: f64,
}

/// Runs the scenario against a server whose provider `judge` answers after
/// `shape.latency` and whose `online_max_concurrency` is `shape.concurrency`.
pub(crate) async fn run(
    endpoint: &Endpoint,
    judge: &str,
    shape: OnlineJudgeShape,
) -> anyhow::Result<OnlineJudgeRow> {
    if shape.samples == 0 || shape.samples > 100_000 || shape.concurrency == 0 {
        bail!("--online-samples must be 1-100000 and --online-concurrency at least 1");
    }
    let channel = endpoint.connect().await.context("connecting")?;
    let created = PromptServiceClient::new(channel.clone())
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
    let id = format!("bench-judge-{}", uuid::Uuid::now_v7());
    let mut evaluation = EvaluationServiceClient::new(channel.clone());
    evaluation
        .create_online_evaluation(pb::CreateOnlineEvaluationRequest {
            online_evaluation: Some(pb::OnlineEvaluation {
                id: id.clone(),
                filter: Some(pb::OnlineEvaluationFilter {
                    prompt_name: PROMPT.into(),
                    ..Default::default()
                }),
                sample_rate: 1.0,
                metrics: vec![pb::MetricConfig {
                    name: "helpful".into(),
                    scorer: "llm_judge".into(),
                    params: Some(crate::grpc::convert::struct_from_json(
                        serde_json::json!({"judge": judge})
                            .as_object()
                            .expect("an object"),
                    )),
                    threshold: None,
                }],
                ..Default::default()
            }),
            online_evaluation_id: String::new(),
        })
        .await
        .context("creating the online evaluation")?;
    let mut generations = GenerationServiceClient::new(channel);
    let started = Instant::now();
    for first in (0..shape.samples).step_by(BATCH) {
        let batch = (first..(first + BATCH).min(shape.samples))
            .map(|n| pb::Generation {
                id: format!("{id}-{n}"),
                prompt_name: PROMPT.into(),
                prompt_version: "1.0.0".into(),
                model: "bench-model".into(),
                input: format!("question {n}"),
                output: format!("answer {n} [[score:0.9]]"),
                latency_ms: 100.0,
                ..Default::default()
            })
            .collect();
        generations
            .log_generations(pb::LogGenerationsRequest { generations: batch })
            .await
            .context("logging the bench generations")?;
    }
    let done = loop {
        let rows = evaluation
            .get_online_evaluation_stats(pb::GetOnlineEvaluationStatsRequest {
                online_evaluation_id: id.clone(),
                bucket: Some(prost_types::Duration {
                    seconds: 24 * 3600,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .context("reading the online evaluation's progress")?
            .into_inner()
            .rows;
        let (scored, failed, sampled) = rows.iter().fold((0, 0, 0), |(s, f, n), row| {
            (s + row.scored, f + row.failed, n + row.sampled)
        });
        if failed > 0 {
            bail!("{failed} samples failed to score");
        }
        if scored >= shape.samples as u64 {
            break scored;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {scored} of {sampled} samples scored after 10 minutes");
        }
        tokio::time::sleep(POLL).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    // Leaves nothing behind to score.
    evaluation
        .delete_online_evaluation(pb::DeleteOnlineEvaluationRequest {
            online_evaluation_id: id,
        })
        .await
        .context("deleting the online evaluation")?;
    let latency = shape.latency.as_secs_f64();
    let ideal_seconds = done as f64 * latency / shape.concurrency as f64;
    let ideal_samples_per_second = shape.concurrency as f64 / latency;
    let samples_per_second = done as f64 / seconds;
    Ok(OnlineJudgeRow {
        scenario: "online-judge",
        samples: done,
        concurrency: shape.concurrency,
        latency_ms: latency * 1000.0,
        seconds,
        ideal_seconds,
        samples_per_second,
        ideal_samples_per_second,
        ratio: samples_per_second / ideal_samples_per_second,
    })
}
