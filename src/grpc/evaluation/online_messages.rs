//! Online evaluation messages to and from the evaluator's types.

use chrono::{DateTime, Utc};
use llmops_evaluator::online::{
    OnlineEvaluation, OnlineFilter, OnlineGroup, OnlineThresholds, OnlineUpdate,
    DEFAULT_MIN_SAMPLES, DEFAULT_WINDOW,
};
use llmops_evaluator::runs::{MetricConfig, DEFAULT_THRESHOLD};
use tonic::Status;

use super::run_messages::metrics_to_pb;
use crate::grpc::convert::{duration_from_pb, duration_to_pb, json_from_struct, timestamp};
use crate::grpc::status::invalid_field;
use crate::pb;

/// The evaluation a create request describes (its times are set by the service).
pub(crate) fn new_online_from_pb(
    request: pb::CreateOnlineEvaluationRequest,
) -> Result<OnlineEvaluation, Status> {
    let given = request.online_evaluation.unwrap_or_default();
    let id = if given.id.is_empty() {
        request.online_evaluation_id
    } else {
        given.id
    };
    let filter = given.filter.unwrap_or_default();
    let window = match &given.window {
        None => DEFAULT_WINDOW,
        Some(window) => duration_from_pb(window).ok_or_else(|| {
            invalid_field(
                "online_evaluation.window",
                "must be a non-negative duration",
            )
        })?,
    };
    Ok(OnlineEvaluation {
        id,
        name: given.name,
        filter: OnlineFilter {
            prompt_name: filter.prompt_name,
            label: filter.label,
            prompt_version: filter.prompt_version,
            model: filter.model,
            experiment_id: filter.experiment_id,
        },
        sample_rate: given.sample_rate,
        metrics: given
            .metrics
            .into_iter()
            .map(|metric| MetricConfig {
                name: metric.name,
                scorer: metric.scorer,
                params: metric.params.map(json_from_struct).unwrap_or_default(),
                threshold: metric.threshold.unwrap_or(DEFAULT_THRESHOLD),
            })
            .collect(),
        thresholds: given.thresholds.map(thresholds_from_pb).unwrap_or_default(),
        window,
        min_samples: if given.min_samples == 0 {
            DEFAULT_MIN_SAMPLES
        } else {
            given.min_samples
        },
        paused: false,
        created_at: DateTime::<Utc>::UNIX_EPOCH,
        updated_at: DateTime::<Utc>::UNIX_EPOCH,
    })
}

fn thresholds_from_pb(thresholds: pb::OnlineThresholds) -> OnlineThresholds {
    OnlineThresholds {
        min_pass_rate: thresholds.min_pass_rate,
        metric_minimums: thresholds.metric_minimums.into_iter().collect(),
        max_latency_p99_ms: thresholds.max_latency_p99_ms,
    }
}

/// What an update request changes.
pub(crate) fn update_from_pb(
    request: &pb::UpdateOnlineEvaluationRequest,
) -> Result<OnlineUpdate, Status> {
    let window = match &request.window {
        None => None,
        Some(window) => Some(
            duration_from_pb(window)
                .ok_or_else(|| invalid_field("window", "must be a non-negative duration"))?,
        ),
    };
    Ok(OnlineUpdate {
        sample_rate: request.sample_rate,
        thresholds: request.thresholds.clone().map(thresholds_from_pb),
        paused: request.paused,
        window,
        min_samples: request.min_samples,
    })
}

pub(crate) fn online_to_pb(evaluation: OnlineEvaluation) -> pb::OnlineEvaluation {
    let thresholds = evaluation.thresholds;
    pb::OnlineEvaluation {
        id: evaluation.id,
        name: evaluation.name,
        filter: Some(pb::OnlineEvaluationFilter {
            prompt_name: evaluation.filter.prompt_name,
            label: evaluation.filter.label,
            prompt_version: evaluation.filter.prompt_version,
            model: evaluation.filter.model,
            experiment_id: evaluation.filter.experiment_id,
        }),
        sample_rate: evaluation.sample_rate,
        metrics: metrics_to_pb(evaluation.metrics),
        thresholds: Some(pb::OnlineThresholds {
            min_pass_rate: thresholds.min_pass_rate,
            metric_minimums: thresholds.metric_minimums.into_iter().collect(),
            max_latency_p99_ms: thresholds.max_latency_p99_ms,
        }),
        window: Some(duration_to_pb(evaluation.window)),
        min_samples: evaluation.min_samples,
        paused: evaluation.paused,
        created_at: Some(timestamp(evaluation.created_at)),
        updated_at: Some(timestamp(evaluation.updated_at)),
    }
}

pub(crate) fn online_group_to_pb(group: OnlineGroup) -> pb::OnlineStatsRow {
    let totals = group.totals;
    pb::OnlineStatsRow {
        bucket_start: Some(timestamp(group.bucket_start)),
        prompt_name: group.key.prompt_name,
        prompt_version: group.key.prompt_version,
        model: group.key.model,
        experiment_id: group.key.experiment_id,
        variant_id: group.key.variant_id,
        sampled: totals.sampled(),
        scored: totals.scored,
        failed: totals.failed,
        queued: totals.queued,
        pass_rate: totals.pass_rate(),
        metrics: totals
            .metrics
            .iter()
            .map(|(name, metric)| {
                (
                    name.clone(),
                    pb::OnlineMetricStats {
                        mean: metric.mean(),
                        pass_rate: metric.pass_rate(),
                        count: metric.count,
                    },
                )
            })
            .collect(),
        latency_p50_ms: totals.latency.quantile_ms(0.50),
        latency_p95_ms: totals.latency.quantile_ms(0.95),
        latency_p99_ms: totals.latency.quantile_ms(0.99),
        cost: totals.cost,
        judge_cost: totals.judge_cost,
    }
}
