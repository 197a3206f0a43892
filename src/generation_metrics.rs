//! Experiments learn from generations: each generation logged with an experiment's id
//! and one of its variants records the experiment's generation-sourced metrics
//! (`MetricSource::LatencyMs`, `Cost`, `OutputTokens`, `Error`), once per generation id.

use std::collections::HashMap;
use std::sync::Arc;

use llmops_experiments::{
    AnalysisUnit, Experiment, ExperimentService, ExperimentStatus, MetricSource, RecordInput,
    RecordNaming,
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
        let open = matches!(
            experiment.status,
            ExperimentStatus::Running | ExperimentStatus::Paused
        );
        let known = experiment
            .variants
            .iter()
            .any(|v| v.id == generation.variant_id);
        let per_user = experiment.analysis_unit == AnalysisUnit::User;
        if !open || !known || (per_user && generation.user_id.is_empty()) {
            return Vec::new();
        }
        experiment
            .metrics
            .iter()
            .filter_map(|metric| {
                let value = match metric.source {
                    MetricSource::Client => return None,
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
                    record_id: record_id(&generation.id, &metric.name),
                    time: generation.start_time,
                })
            })
            .collect()
    }
}

/// The idempotency key of a generation's value of `metric` (record ids are at most 128
/// bytes): `gen:<generation id>:<metric>` when it fits, else a 64-bit FNV-1a digest of
/// that text (a collision would drop one value; at 64 bits it does not happen in
/// practice).
fn record_id(generation_id: &str, metric: &str) -> String {
    let full = format!("gen:{generation_id}:{metric}");
    if full.len() <= 128 {
        return full;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in full.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("gen#{hash:016x}")
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
        // All or none failed (an experiment ended meanwhile, say): record one by one.
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
