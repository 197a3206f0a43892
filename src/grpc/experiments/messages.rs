//! Conversions between the experiment protos and the experiments crate.

use llmops_experiments::results::{ExperimentResults, MetricComparison};
use llmops_experiments::stats::ttest::Outcome;
use llmops_experiments::{
    AnalysisUnit, Experiment, ExperimentSpec, ExperimentStatus, ExperimentUpdate, MetricDefinition,
    MetricDirection, MetricKind, MetricRole, MetricSource, RecordInput, Variant,
};
use llmops_registry::FieldViolation;
use tonic::Status;

use crate::grpc::convert::{json_from_struct, struct_from_json, timestamp};
use crate::grpc::status::invalid_argument;
use crate::pb;

pub(crate) fn status_to_pb(status: ExperimentStatus) -> pb::ExperimentStatus {
    match status {
        ExperimentStatus::Draft => pb::ExperimentStatus::Draft,
        ExperimentStatus::Running => pb::ExperimentStatus::Running,
        ExperimentStatus::Paused => pb::ExperimentStatus::Paused,
        ExperimentStatus::Completed => pb::ExperimentStatus::Completed,
        ExperimentStatus::Cancelled => pb::ExperimentStatus::Cancelled,
    }
}

/// A status filter: UNSPECIFIED means any.
pub(crate) fn status_filter(value: i32) -> Result<Option<ExperimentStatus>, Status> {
    Ok(match pb::ExperimentStatus::try_from(value) {
        Ok(pb::ExperimentStatus::Unspecified) => None,
        Ok(pb::ExperimentStatus::Draft) => Some(ExperimentStatus::Draft),
        Ok(pb::ExperimentStatus::Running) => Some(ExperimentStatus::Running),
        Ok(pb::ExperimentStatus::Paused) => Some(ExperimentStatus::Paused),
        Ok(pb::ExperimentStatus::Completed) => Some(ExperimentStatus::Completed),
        Ok(pb::ExperimentStatus::Cancelled) => Some(ExperimentStatus::Cancelled),
        Err(_) => {
            return Err(crate::grpc::status::invalid_field(
                "status",
                format!("{value} is not an ExperimentStatus"),
            ))
        }
    })
}

fn role_to_pb(role: MetricRole) -> pb::MetricRole {
    match role {
        MetricRole::Primary => pb::MetricRole::Primary,
        MetricRole::Secondary => pb::MetricRole::Secondary,
        MetricRole::Guardrail => pb::MetricRole::Guardrail,
    }
}

/// Collects field violations while converting.
#[derive(Default)]
struct Problems(Vec<FieldViolation>);

impl Problems {
    fn add(&mut self, field: String, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    fn finish<T>(self, value: T, prefix: &str) -> Result<T, Status> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(invalid_argument(self.0, prefix))
        }
    }
}

fn metric_from_pb(
    index: usize,
    metric: pb::MetricDefinition,
    problems: &mut Problems,
) -> MetricDefinition {
    let field = |name: &str| format!("metrics[{index}].{name}");
    let kind = match pb::MetricKind::try_from(metric.kind) {
        Ok(pb::MetricKind::Unspecified | pb::MetricKind::Mean) => MetricKind::Mean,
        Ok(pb::MetricKind::Proportion) => MetricKind::Proportion,
        Err(_) => {
            problems.add(
                field("kind"),
                format!("{} is not a MetricKind", metric.kind),
            );
            MetricKind::Mean
        }
    };
    let direction = match pb::MetricDirection::try_from(metric.direction) {
        Ok(pb::MetricDirection::HigherIsBetter) => MetricDirection::HigherIsBetter,
        Ok(pb::MetricDirection::LowerIsBetter) => MetricDirection::LowerIsBetter,
        Ok(pb::MetricDirection::Unspecified) => {
            problems.add(
                field("direction"),
                "is required: HIGHER_IS_BETTER or LOWER_IS_BETTER (latency and cost are lower-is-better)",
            );
            MetricDirection::HigherIsBetter
        }
        Err(_) => {
            problems.add(
                field("direction"),
                format!("{} is not a MetricDirection", metric.direction),
            );
            MetricDirection::HigherIsBetter
        }
    };
    let role = match pb::MetricRole::try_from(metric.role) {
        Ok(pb::MetricRole::Unspecified | pb::MetricRole::Secondary) => MetricRole::Secondary,
        Ok(pb::MetricRole::Primary) => MetricRole::Primary,
        Ok(pb::MetricRole::Guardrail) => MetricRole::Guardrail,
        Err(_) => {
            problems.add(
                field("role"),
                format!("{} is not a MetricRole", metric.role),
            );
            MetricRole::Secondary
        }
    };
    let source = match pb::MetricSource::try_from(metric.source) {
        Ok(pb::MetricSource::Unspecified | pb::MetricSource::Client) => MetricSource::Client,
        Ok(pb::MetricSource::LatencyMs) => MetricSource::LatencyMs,
        Ok(pb::MetricSource::Cost) => MetricSource::Cost,
        Ok(pb::MetricSource::OutputTokens) => MetricSource::OutputTokens,
        Ok(pb::MetricSource::Error) => MetricSource::Error,
        Ok(pb::MetricSource::OnlineScore) => MetricSource::OnlineScore,
        Err(_) => {
            problems.add(
                field("source"),
                format!("{} is not a MetricSource", metric.source),
            );
            MetricSource::Client
        }
    };
    let wanted = match source {
        MetricSource::Client => None,
        MetricSource::OnlineScore => {
            if metric.online_evaluation_id.is_empty() {
                problems.add(
                    field("online_evaluation_id"),
                    "an ONLINE_SCORE metric names the online evaluation that feeds it".to_owned(),
                );
            }
            (metric.online_metric == "pass").then_some(MetricKind::Proportion)
        }
        MetricSource::Error => Some(MetricKind::Proportion),
        _ => Some(MetricKind::Mean),
    };
    if wanted.is_some_and(|wanted| wanted != kind) {
        problems.add(
            field("source"),
            format!(
                "a {source:?} metric is a {}: set kind to match",
                if wanted == Some(MetricKind::Proportion) {
                    "PROPORTION"
                } else {
                    "MEAN"
                }
            ),
        );
    }
    if source != MetricSource::OnlineScore
        && !(metric.online_evaluation_id.is_empty() && metric.online_metric.is_empty())
    {
        problems.add(
            field("online_evaluation_id"),
            "only an ONLINE_SCORE metric names an online evaluation".to_owned(),
        );
    }
    MetricDefinition {
        name: metric.name,
        kind,
        direction,
        role,
        source,
        online_evaluation_id: metric.online_evaluation_id,
        online_metric: metric.online_metric,
    }
}

/// The metrics of a request, each problem named `metrics[i].field`.
pub(crate) fn metrics_from_pb(
    metrics: Vec<pb::MetricDefinition>,
) -> Result<Vec<MetricDefinition>, Status> {
    let mut problems = Problems::default();
    let metrics = metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| metric_from_pb(i, m, &mut problems))
        .collect();
    problems.finish(metrics, "")
}

pub(crate) fn source_to_pb(source: MetricSource) -> pb::MetricSource {
    match source {
        MetricSource::Client => pb::MetricSource::Client,
        MetricSource::LatencyMs => pb::MetricSource::LatencyMs,
        MetricSource::Cost => pb::MetricSource::Cost,
        MetricSource::OutputTokens => pb::MetricSource::OutputTokens,
        MetricSource::Error => pb::MetricSource::Error,
        MetricSource::OnlineScore => pb::MetricSource::OnlineScore,
    }
}

fn variant_from_pb(variant: pb::Variant) -> Variant {
    Variant {
        id: variant.id,
        name: variant.name,
        description: variant.description,
        is_control: variant.is_control,
        prompt_name: variant.prompt_name,
        prompt_version: variant.prompt_version,
        model: variant.model,
        parameters: variant.parameters.map(json_from_struct).unwrap_or_default(),
        weight: variant.weight,
    }
}

fn unit_from_pb(value: i32, problems: &mut Problems) -> AnalysisUnit {
    match pb::AnalysisUnit::try_from(value) {
        Ok(pb::AnalysisUnit::Unspecified | pb::AnalysisUnit::Record) => AnalysisUnit::Record,
        Ok(pb::AnalysisUnit::User) => AnalysisUnit::User,
        Err(_) => {
            problems.add(
                "analysis_unit".to_owned(),
                format!("{value} is not an AnalysisUnit"),
            );
            AnalysisUnit::Record
        }
    }
}

/// The creatable parts of an experiment; `prefix` names the request field holding it.
pub(crate) fn spec_from_pb(
    experiment: pb::Experiment,
    prefix: &str,
) -> Result<ExperimentSpec, Status> {
    let mut problems = Problems::default();
    let metrics = experiment
        .metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| metric_from_pb(i, m, &mut problems))
        .collect();
    let spec = ExperimentSpec {
        id: experiment.id,
        created_by: String::new(),
        serves_prompt: String::new(),
        serves_label: String::new(),
        auto_complete: experiment.auto_complete,
        promote_winner: experiment.promote_winner,
        name: experiment.name,
        description: experiment.description,
        seed: experiment.seed,
        coverage: experiment.coverage,
        variants: experiment
            .variants
            .into_iter()
            .map(variant_from_pb)
            .collect(),
        metrics,
        alpha: experiment.alpha,
        min_samples: experiment.min_samples,
        sequential: experiment.sequential,
        sequential_tuning: experiment.sequential_tuning,
        analysis_unit: unit_from_pb(experiment.analysis_unit, &mut problems),
        metadata: experiment.metadata.into_iter().collect(),
    };
    problems.finish(spec, prefix)
}

/// The fields named in `mask`, taken from `experiment`.
pub(crate) fn update_from_pb(
    experiment: pb::Experiment,
    mask: &[String],
) -> Result<ExperimentUpdate, Status> {
    if mask.is_empty() {
        return Err(crate::grpc::status::invalid_field(
            "update_mask",
            "name the fields to change (e.g. [\"coverage\", \"description\"])",
        ));
    }
    let mut problems = Problems::default();
    let mut update = ExperimentUpdate::default();
    let mut source = experiment;
    for path in mask {
        match path.as_str() {
            "name" => update.name = Some(std::mem::take(&mut source.name)),
            "description" => update.description = Some(std::mem::take(&mut source.description)),
            "seed" => update.seed = Some(std::mem::take(&mut source.seed)),
            "coverage" => match source.coverage {
                Some(coverage) => update.coverage = Some(coverage),
                None => problems.add(
                    "experiment.coverage".to_owned(),
                    "is in update_mask but not set",
                ),
            },
            "variants" => {
                update.variants = Some(
                    std::mem::take(&mut source.variants)
                        .into_iter()
                        .map(variant_from_pb)
                        .collect(),
                )
            }
            "metrics" => {
                update.metrics = Some(
                    std::mem::take(&mut source.metrics)
                        .into_iter()
                        .enumerate()
                        .map(|(i, m)| metric_from_pb(i, m, &mut problems))
                        .collect(),
                )
            }
            "alpha" => {
                update.alpha = Some(
                    source
                        .alpha
                        .unwrap_or(llmops_experiments::service::DEFAULT_ALPHA),
                )
            }
            "min_samples" => match source.min_samples {
                Some(min_samples) => update.min_samples = Some(min_samples),
                None => problems.add(
                    "experiment.min_samples".to_owned(),
                    "is in update_mask but not set",
                ),
            },
            "sequential" => update.sequential = Some(source.sequential),
            "sequential_tuning" => {
                update.sequential_tuning = Some(
                    source
                        .sequential_tuning
                        .unwrap_or(llmops_experiments::service::DEFAULT_SEQUENTIAL_TUNING),
                )
            }
            "analysis_unit" => {
                update.analysis_unit = Some(unit_from_pb(source.analysis_unit, &mut problems))
            }
            "metadata" => {
                update.metadata = Some(std::mem::take(&mut source.metadata).into_iter().collect())
            }
            "auto_complete" => update.auto_complete = Some(source.auto_complete),
            "promote_winner" => update.promote_winner = Some(source.promote_winner),
            other => problems.add(
                "update_mask".to_owned(),
                format!("{other:?} is not a field that can be updated"),
            ),
        }
    }
    problems.finish(update, "")
}

pub(crate) fn experiment_to_pb(experiment: Experiment) -> pb::Experiment {
    pb::Experiment {
        status: status_to_pb(experiment.status).into(),
        analysis_unit: match experiment.analysis_unit {
            AnalysisUnit::Record => pb::AnalysisUnit::Record,
            AnalysisUnit::User => pb::AnalysisUnit::User,
        }
        .into(),
        id: experiment.id,
        name: experiment.name,
        description: experiment.description,
        seed: experiment.seed,
        coverage: Some(experiment.coverage),
        variants: experiment.variants.into_iter().map(variant_to_pb).collect(),
        metrics: experiment
            .metrics
            .into_iter()
            .map(|m| pb::MetricDefinition {
                name: m.name,
                kind: match m.kind {
                    MetricKind::Mean => pb::MetricKind::Mean,
                    MetricKind::Proportion => pb::MetricKind::Proportion,
                }
                .into(),
                direction: match m.direction {
                    MetricDirection::HigherIsBetter => pb::MetricDirection::HigherIsBetter,
                    MetricDirection::LowerIsBetter => pb::MetricDirection::LowerIsBetter,
                }
                .into(),
                role: role_to_pb(m.role).into(),
                source: source_to_pb(m.source).into(),
                online_evaluation_id: m.online_evaluation_id,
                online_metric: m.online_metric,
            })
            .collect(),
        alpha: Some(experiment.alpha),
        min_samples: Some(experiment.min_samples),
        sequential: experiment.sequential,
        sequential_tuning: Some(experiment.sequential_tuning),
        start_time: experiment.start_time.map(timestamp),
        end_time: experiment.end_time.map(timestamp),
        winner_variant_id: experiment.winner_variant_id,
        metadata: experiment.metadata.into_iter().collect(),
        created_at: Some(timestamp(experiment.created_at)),
        updated_at: Some(timestamp(experiment.updated_at)),
        created_by: experiment.created_by,
        prompt_name: experiment.serves_prompt,
        label: experiment.serves_label,
        auto_complete: experiment.auto_complete,
        promote_winner: experiment.promote_winner,
        status_changes: experiment
            .status_changes
            .into_iter()
            .map(|change| pb::ExperimentStatusChange {
                status: status_to_pb(change.status).into(),
                time: Some(timestamp(change.at)),
                actor: change.actor,
            })
            .collect(),
    }
}

pub(crate) fn variant_to_pb(variant: Variant) -> pb::Variant {
    pb::Variant {
        parameters: Some(struct_from_json(&variant.parameters)),
        id: variant.id,
        name: variant.name,
        description: variant.description,
        is_control: variant.is_control,
        prompt_name: variant.prompt_name,
        prompt_version: variant.prompt_version,
        model: variant.model,
        weight: variant.weight,
    }
}

pub(crate) fn record_from_pb(record: pb::RecordMetricRequest) -> Result<RecordInput, Status> {
    let time = match record.time {
        None => None,
        Some(t) => Some(
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(u32::MAX))
                .ok_or_else(|| {
                    crate::grpc::status::invalid_field("time", "is not a valid timestamp")
                })?,
        ),
    };
    Ok(RecordInput {
        experiment_id: record.experiment_id,
        variant_id: record.variant_id,
        metric: record.metric,
        value: record.value,
        user_id: record.user_id,
        record_id: record.record_id,
        time,
    })
}

fn effect_to_pb(outcome: Outcome) -> pb::Effect {
    match outcome {
        Ok(e) => pb::Effect {
            estimate: e.estimate,
            ci_lower: e.ci_lower,
            ci_upper: e.ci_upper,
            p_value: e.p_value,
            computable: true,
            reason: String::new(),
        },
        Err(reason) => pb::Effect {
            estimate: 0.0,
            ci_lower: 0.0,
            ci_upper: 0.0,
            p_value: 1.0,
            computable: false,
            reason: reason.reason().to_owned(),
        },
    }
}

fn comparison_to_pb(comparison: MetricComparison, alpha: f64) -> pb::Comparison {
    let tested = if comparison.role == MetricRole::Guardrail {
        comparison
            .comparison
            .relative
            .or(comparison.comparison.absolute)
            .ok()
            .map(|e| e.p_value)
    } else {
        comparison.adjusted_p_value
    };
    pb::Comparison {
        absolute: Some(effect_to_pb(comparison.comparison.absolute)),
        relative: Some(effect_to_pb(comparison.comparison.relative)),
        adjusted_p_value: comparison.adjusted_p_value,
        role: role_to_pb(comparison.role).into(),
        significant: tested.is_some_and(|p| p < alpha),
        improves: comparison.improves.unwrap_or(false),
        variant_id: comparison.variant_id,
        metric: comparison.metric,
    }
}

pub(crate) fn results_to_pb(
    experiment: Experiment,
    results: ExperimentResults,
) -> pb::GetExperimentResultsResponse {
    let alpha = experiment.alpha;
    pb::GetExperimentResultsResponse {
        experiment: Some(experiment_to_pb(experiment)),
        stats: results
            .stats
            .into_iter()
            .map(|s| pb::VariantMetricStats {
                n: s.summary.n(),
                mean: s.summary.mean(),
                std_dev: s.summary.std_dev(),
                min: s.summary.min(),
                max: s.summary.max(),
                sum: s.summary.sum(),
                sum_squares: s.summary.sum_squares(),
                variant_id: s.variant_id,
                metric: s.metric,
            })
            .collect(),
        comparisons: results
            .comparisons
            .into_iter()
            .map(|c| comparison_to_pb(c, alpha))
            .collect(),
        srm: Some(pb::SampleRatioMismatch {
            p_value: results.srm.p_value.unwrap_or(1.0),
            detected: results.srm.detected,
            observed: results.srm.observed,
            expected: results.srm.expected,
        }),
        winner_variant_id: results.winner_variant_id.unwrap_or_default(),
        recommendation: results.recommendation,
        reasons: results.reasons,
        confidence: results.confidence.unwrap_or(0.0),
    }
}
