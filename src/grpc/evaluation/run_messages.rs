//! Conversions between the evaluator's run types and their protobuf messages.

use llmops_evaluator::runs::{
    Comparison, JudgeScore, LatencySummary, MetricConfig, MetricSummary, Run, RunFilter,
    RunProgress, RunResults, RunSpec, RunStatus, SampleResult, SubmittedOutput, DEFAULT_THRESHOLD,
};
use tonic::Status;

use crate::grpc::convert::{
    duration_from_pb, duration_to_pb, json_from_struct, struct_from_json, time_from_timestamp,
    timestamp, value_from_json,
};
use crate::grpc::status::invalid_field;
use crate::pb;

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

pub(crate) fn status_to_pb(status: RunStatus) -> pb::RunStatus {
    match status {
        RunStatus::Pending => pb::RunStatus::Pending,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Completed => pb::RunStatus::Completed,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Cancelled => pb::RunStatus::Cancelled,
    }
}

/// A status filter: UNSPECIFIED is none.
pub(crate) fn status_from_pb(value: i32, field: &str) -> Result<Option<RunStatus>, Status> {
    match pb::RunStatus::try_from(value) {
        Ok(pb::RunStatus::Unspecified) => Ok(None),
        Ok(pb::RunStatus::Pending) => Ok(Some(RunStatus::Pending)),
        Ok(pb::RunStatus::Running) => Ok(Some(RunStatus::Running)),
        Ok(pb::RunStatus::Completed) => Ok(Some(RunStatus::Completed)),
        Ok(pb::RunStatus::Failed) => Ok(Some(RunStatus::Failed)),
        Ok(pb::RunStatus::Cancelled) => Ok(Some(RunStatus::Cancelled)),
        Err(_) => Err(invalid_field(field, format!("{value} is not a RunStatus"))),
    }
}

/// The run fields of `run`; `field` names it in errors (`run`, `run_template`).
pub(crate) fn spec_from_pb(run: pb::Run, field: &str) -> Result<RunSpec, Status> {
    let sample_timeout = match &run.sample_timeout {
        None => None,
        Some(duration) => Some(duration_from_pb(duration).ok_or_else(|| {
            invalid_field(
                &format!("{field}.sample_timeout"),
                "must be a non-negative duration",
            )
        })?),
    };
    let metrics = run
        .metrics
        .into_iter()
        .map(|metric| MetricConfig {
            name: metric.name,
            scorer: metric.scorer,
            params: metric.params.map(json_from_struct).unwrap_or_default(),
            threshold: metric.threshold.unwrap_or(DEFAULT_THRESHOLD),
        })
        .collect();
    Ok(RunSpec {
        // Who creates it is the caller, set by the handler, never the message.
        created_by: String::new(),
        id: run.id,
        name: run.name,
        description: run.description,
        dataset_id: run.dataset_id,
        prompt_name: run.prompt_name,
        prompt_version: run.prompt_version,
        prompt_label: run.prompt_label,
        model: run.model,
        metrics,
        concurrency: run.concurrency,
        sample_timeout,
        baseline_run_id: run.baseline_run_id,
        submitted_outputs: run.submitted_outputs,
    })
}

fn progress_to_pb(progress: RunProgress) -> pb::RunProgress {
    pb::RunProgress {
        total: progress.total,
        done: progress.done,
        passed: progress.passed,
        failed: progress.failed,
        errored: progress.errored,
    }
}

fn metric_summary_to_pb(summary: MetricSummary) -> pb::MetricSummary {
    pb::MetricSummary {
        mean: summary.mean,
        std: summary.std,
        count: summary.count,
        min: summary.min,
        max: summary.max,
        pass_rate: summary.pass_rate,
    }
}

fn latency_to_pb(latency: LatencySummary) -> pb::LatencySummary {
    pb::LatencySummary {
        p50_ms: latency.p50_ms,
        p95_ms: latency.p95_ms,
        p99_ms: latency.p99_ms,
        mean_ms: latency.mean_ms,
        max_ms: latency.max_ms,
    }
}

pub(crate) fn results_to_pb(results: RunResults) -> pb::RunResults {
    pb::RunResults {
        total: results.total,
        passed: results.passed,
        failed: results.failed,
        errored: results.errored,
        pass_rate: results.pass_rate,
        metrics: results
            .metrics
            .into_iter()
            .map(|(name, summary)| (name, metric_summary_to_pb(summary)))
            .collect(),
        latency: Some(latency_to_pb(results.latency)),
        tokens: Some(pb::TokenUsage {
            input: results.input_tokens,
            output: results.output_tokens,
        }),
        cost: results.cost,
        failure_reasons: results.failure_reasons.into_iter().collect(),
    }
}

pub(crate) fn metrics_to_pb(metrics: Vec<MetricConfig>) -> Vec<pb::MetricConfig> {
    metrics
        .into_iter()
        .map(|metric| pb::MetricConfig {
            name: metric.name,
            scorer: metric.scorer,
            params: Some(struct_from_json(&metric.params)),
            threshold: Some(metric.threshold),
        })
        .collect()
}

/// A run template (a schedule's) as a `Run` message with only the input fields set.
pub(crate) fn spec_to_pb(spec: RunSpec) -> pb::Run {
    pb::Run {
        id: spec.id,
        name: spec.name,
        description: spec.description,
        dataset_id: spec.dataset_id,
        prompt_name: spec.prompt_name,
        prompt_version: spec.prompt_version,
        prompt_label: spec.prompt_label,
        model: spec.model,
        metrics: metrics_to_pb(spec.metrics),
        concurrency: spec.concurrency,
        sample_timeout: spec.sample_timeout.map(duration_to_pb),
        baseline_run_id: spec.baseline_run_id,
        submitted_outputs: spec.submitted_outputs,
        ..pb::Run::default()
    }
}

pub(crate) fn run_to_pb(run: Run) -> pb::Run {
    pb::Run {
        id: run.id,
        name: run.name,
        description: run.description,
        dataset_id: run.dataset_id,
        prompt_name: run.prompt_name,
        prompt_version: run.prompt_version,
        prompt_label: run.prompt_label,
        model: run.model,
        metrics: metrics_to_pb(run.metrics),
        concurrency: run.concurrency,
        sample_timeout: Some(duration_to_pb(run.sample_timeout)),
        baseline_run_id: run.baseline_run_id,
        status: status_to_pb(run.status).into(),
        results: run.results.map(results_to_pb),
        dataset_version: run.dataset_version,
        created_at: Some(timestamp(run.created_at)),
        started_at: run.started_at.map(timestamp),
        finished_at: run.finished_at.map(timestamp),
        dataset_hash: run.dataset_hash,
        progress: Some(progress_to_pb(run.progress)),
        error: run.error,
        submitted_outputs: run.submitted_outputs,
        compared_with_run_id: run.compared_with_run_id,
        requested_model: run.requested_model,
        created_by: run.created_by,
    }
}

fn judge_score_to_pb(score: JudgeScore) -> pb::JudgeScore {
    pb::JudgeScore {
        metric: score.metric,
        judge: score.judge,
        score: score.score,
    }
}

pub(crate) fn result_to_pb(result: SampleResult) -> pb::SampleResult {
    pb::SampleResult {
        sample_id: result.sample_id,
        expected_output: result.expected_output,
        output: result.output,
        scores: result.scores.into_iter().collect(),
        passed: result.passed,
        latency: result.latency.map(duration_to_pb),
        error: result.error,
        input: Some(value_from_json(&result.input)),
        input_tokens: result.input_tokens,
        output_tokens: result.output_tokens,
        cost: result.cost.unwrap_or(0.0),
        failure_reason: result.failure_reason,
        judge_scores: result
            .judge_scores
            .into_iter()
            .map(judge_score_to_pb)
            .collect(),
        panel_spread: result.panel_spread.into_iter().collect(),
    }
}

pub(crate) fn filter_from_pb(request: &pb::ListRunsRequest) -> Result<RunFilter, Status> {
    let time = |stamp: &Option<prost_types::Timestamp>, field: &str| match stamp {
        None => Ok(None),
        Some(stamp) => time_from_timestamp(stamp)
            .map(Some)
            .ok_or_else(|| invalid_field(field, "is not a valid time")),
    };
    Ok(RunFilter {
        dataset_id: non_empty(request.dataset_id.clone()),
        prompt_name: non_empty(request.prompt_name.clone()),
        model: non_empty(request.model.clone()),
        status: status_from_pb(request.status, "status")?,
        created_after: time(&request.created_after, "created_after")?,
        created_before: time(&request.created_before, "created_before")?,
    })
}

pub(crate) fn output_from_pb(
    index: usize,
    output: pb::SubmittedOutput,
) -> Result<SubmittedOutput, Status> {
    let latency = match &output.latency {
        None => None,
        Some(duration) => Some(duration_from_pb(duration).ok_or_else(|| {
            invalid_field(
                &format!("outputs[{index}].latency"),
                "must be a non-negative duration",
            )
        })?),
    };
    Ok(SubmittedOutput {
        sample_id: output.sample_id,
        output: output.output,
        scores: output.scores.into_iter().collect(),
        latency,
        error: output.error,
    })
}

pub(crate) fn comparison_to_pb(comparison: Comparison) -> pb::CompareRunsResponse {
    let mcnemar_p_value = comparison.mcnemar_p_value();
    let (newly_failing, newly_passing) = comparison
        .paired
        .map(|p| (p.newly_failing, p.newly_passing))
        .unwrap_or_default();
    pb::CompareRunsResponse {
        pass_rate_change: comparison.pass_rate_change,
        metric_changes: comparison
            .metric_changes
            .into_iter()
            .map(|(name, change)| {
                (
                    name,
                    pb::MetricChange {
                        baseline: change.baseline,
                        candidate: change.candidate,
                        absolute_change: change.absolute_change,
                        relative_change: change.relative_change,
                    },
                )
            })
            .collect(),
        regressed_metrics: comparison.regressed_metrics,
        improved_metrics: comparison.improved_metrics,
        newly_failing,
        newly_passing,
        mcnemar_p_value,
        summary: comparison.summary,
        baseline_pass_rate: comparison.baseline_pass_rate,
        candidate_pass_rate: comparison.candidate_pass_rate,
    }
}
