//! Experiments learn from generations: each generation logged with an experiment's id
//! and one of its variants records the experiment's generation-sourced metrics
//! (`MetricSource::LatencyMs`, `Cost`, `OutputTokens`, `Error`), once per generation id;
//! and each verdict of an online evaluation on such a generation records the metrics
//! sourced from that evaluation (`MetricSource::OnlineScore`), once per generation id.

use std::collections::HashMap;
use std::sync::Arc;

use llmops_evaluator::online::{CompletedSample, OnlineScoreObserver};
use llmops_experiments::{
    AnalysisUnit, Experiment, ExperimentService, ExperimentStatus, MetricKind, MetricSource,
    RecordInput, RecordNaming,
};
use llmops_generations::{Generation, GenerationObserver, GenerationStatus};

/// Generation-sourced metric values that could not be recorded.
pub(crate) const GENERATION_METRIC_FAILURES_TOTAL: &str = "llmops_generation_metric_failures_total";

/// Records experiments' generation-sourced metrics.
#[derive(Debug)]
pub(crate) struct ExperimentMetricsFromGenerations {
    experiments: Arc<ExperimentService>,
}

impl ExperimentMetricsFromGenerations {
    pub(crate) fn new(experiments: Arc<ExperimentService>) -> Arc<Self> {
        Arc::new(Self { experiments })
    }

    /// The records `generation` makes: one per generation-sourced metric of
    /// `experiment` (its experiment), while it runs or is paused and names one of its
    /// variants.
    fn records(generation: &Generation, experiment: &Experiment) -> Vec<RecordInput> {
        if !accepts(experiment, &generation.variant_id, &generation.user_id) {
            return Vec::new();
        }
        experiment
            .metrics
            .iter()
            .filter_map(|metric| {
                let value = match metric.source {
                    MetricSource::Client | MetricSource::OnlineScore => return None,
                    MetricSource::LatencyMs => generation.latency_ms,
                    MetricSource::Cost => generation.cost?,
                    MetricSource::OutputTokens => generation.output_tokens as f64,
                    MetricSource::Error => {
                        f64::from(u8::from(generation.status == GenerationStatus::Error))
                    }
                };
                Some(RecordInput {
                    experiment_id: generation.experiment_id.clone(),
                    variant_id: generation.variant_id.clone(),
                    metric: metric.name.clone(),
                    value,
                    user_id: generation.user_id.clone(),
                    record_id: record_id(&format!("gen:{}:{}", generation.id, metric.name)),
                    time: generation.start_time,
                })
            })
            .collect()
    }
}

/// Whether `experiment` takes values for `variant` (and `user`): while it runs or is
/// paused, for one of its variants, with a user when it is analysed per user.
fn accepts(experiment: &Experiment, variant: &str, user: &str) -> bool {
    let open = matches!(
        experiment.status,
        ExperimentStatus::Running | ExperimentStatus::Paused
    );
    let known = experiment.variants.iter().any(|v| v.id == variant);
    let per_user = experiment.analysis_unit == AnalysisUnit::User;
    open && known && !(per_user && user.is_empty())
}

/// The records an online verdict on a generation of `experiment` makes: one per metric
/// sourced from that online evaluation whose value the verdict has.
fn online_records(sample: &CompletedSample, experiment: &Experiment) -> Vec<RecordInput> {
    let key = &sample.key;
    if !sample.score.error.is_empty() || !accepts(experiment, &key.variant_id, &sample.user_id) {
        return Vec::new();
    }
    experiment
        .metrics
        .iter()
        .filter(|m| {
            m.source == MetricSource::OnlineScore && m.online_evaluation_id == sample.evaluation_id
        })
        .filter_map(|metric| {
            let name = if metric.online_metric.is_empty() {
                &metric.name
            } else {
                &metric.online_metric
            };
            let totals = &sample.totals;
            let value = if name == "pass" {
                totals.passed as f64
            } else {
                let scored = totals.metrics.get(name)?;
                match metric.kind {
                    MetricKind::Proportion => scored.passed as f64,
                    MetricKind::Mean => scored.sum,
                }
            };
            Some(RecordInput {
                experiment_id: key.experiment_id.clone(),
                variant_id: key.variant_id.clone(),
                metric: metric.name.clone(),
                value,
                user_id: sample.user_id.clone(),
                record_id: record_id(&format!(
                    "online:{}:{}:{}",
                    sample.evaluation_id, sample.generation_id, metric.name
                )),
                time: Some(sample.time),
            })
        })
        .collect()
}

/// An idempotency key (record ids are at most 128 bytes): `full` when it fits, else a
/// 64-bit FNV-1a digest of it (a collision would drop one value; at 64 bits it does not
/// happen in practice).
fn record_id(full: &str) -> String {
    if full.len() <= 128 {
        return full.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in full.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("gen#{hash:016x}")
}

impl ExperimentMetricsFromGenerations {
    /// Records `records` in one batch, or one by one when the batch is refused (an
    /// experiment ended meanwhile, say), counting what fails.
    async fn record(&self, records: Vec<RecordInput>) {
        if records.is_empty() {
            return;
        }
        let batch = self
            .experiments
            .record_metrics(records.clone(), RecordNaming::Batch { first_index: 0 })
            .await;
        if batch.is_ok() {
            return;
        }
        for record in records {
            if let Err(err) = self
                .experiments
                .record_metrics(vec![record], RecordNaming::Single)
                .await
            {
                metrics::counter!(GENERATION_METRIC_FAILURES_TOTAL).increment(1);
                tracing::warn!(%err, "a metric from a generation could not be recorded");
            }
        }
    }
}

#[async_trait::async_trait]
impl OnlineScoreObserver for ExperimentMetricsFromGenerations {
    async fn scored(&self, samples: &[CompletedSample]) {
        let mut experiments: HashMap<&str, Option<Experiment>> = HashMap::new();
        let mut records: Vec<RecordInput> = Vec::new();
        for sample in samples.iter().filter(|s| !s.key.experiment_id.is_empty()) {
            let id = sample.key.experiment_id.as_str();
            let experiment = experiments
                .entry(id)
                .or_insert_with(|| self.experiments.get(id).ok());
            if let Some(experiment) = experiment {
                records.extend(online_records(sample, experiment));
            }
        }
        self.record(records).await;
    }
}

#[async_trait::async_trait]
impl GenerationObserver for ExperimentMetricsFromGenerations {
    fn wants(&self, generation: &Generation) -> bool {
        !generation.experiment_id.is_empty() && !generation.variant_id.is_empty()
    }

    async fn stored(&self, generations: &[Generation]) {
        // Each experiment is read once per batch, not once per generation.
        let mut experiments: HashMap<&str, Option<Experiment>> = HashMap::new();
        let mut records: Vec<RecordInput> = Vec::new();
        for generation in generations {
            let experiment = experiments
                .entry(generation.experiment_id.as_str())
                .or_insert_with(|| self.experiments.get(&generation.experiment_id).ok());
            if let Some(experiment) = experiment {
                records.extend(Self::records(generation, experiment));
            }
        }
        self.record(records).await;
    }
}
