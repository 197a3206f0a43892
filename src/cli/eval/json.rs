//! Answers as JSON for `--json`, built by hand (protobuf types do not derive serde).
//! Field names are the proto's (snake_case); statuses are the short lowercase names the
//! tables show; times are RFC 3339 strings; durations are milliseconds, in fields named
//! with an `_ms` suffix; unset optional numbers and messages are null; maps have sorted
//! keys.

use serde_json::{json, Map, Value as JsonValue};

use super::format::{duration_ms, status_name};
use crate::cli::values::{json_from_struct, json_from_value, json_time};
use crate::pb;

/// A run.
pub(crate) fn run(r: &pb::Run) -> JsonValue {
    json!({
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "status": status_name(r.status),
        "error": r.error,
        "dataset_id": r.dataset_id,
        "dataset_version": r.dataset_version,
        "dataset_hash": r.dataset_hash,
        "prompt_name": r.prompt_name,
        "prompt_version": r.prompt_version,
        "prompt_label": r.prompt_label,
        "model": r.model,
        "requested_model": r.requested_model,
        "metrics": r.metrics.iter().map(metric).collect::<Vec<_>>(),
        "concurrency": r.concurrency,
        "sample_timeout_ms": r.sample_timeout.as_ref().map(duration_ms),
        "baseline_run_id": r.baseline_run_id,
        "compared_with_run_id": r.compared_with_run_id,
        "submitted_outputs": r.submitted_outputs,
        "progress": r.progress.as_ref().map(progress),
        "results": r.results.as_ref().map(results),
        "created_at": json_time(r.created_at.as_ref()),
        "started_at": json_time(r.started_at.as_ref()),
        "finished_at": json_time(r.finished_at.as_ref()),
    })
}

fn metric(m: &pb::MetricConfig) -> JsonValue {
    json!({
        "name": m.name,
        "scorer": m.scorer,
        "params": m.params.as_ref().map(json_from_struct).unwrap_or_default(),
        "threshold": m.threshold,
    })
}

fn progress(p: &pb::RunProgress) -> JsonValue {
    json!({
        "total": p.total,
        "done": p.done,
        "passed": p.passed,
        "failed": p.failed,
        "errored": p.errored,
    })
}

/// A run's results.
fn results(r: &pb::RunResults) -> JsonValue {
    let metrics: Map<String, JsonValue> = r
        .metrics
        .iter()
        .map(|(name, m)| {
            (
                name.clone(),
                json!({
                    "mean": m.mean,
                    "std": m.std,
                    "count": m.count,
                    "min": m.min,
                    "max": m.max,
                    "pass_rate": m.pass_rate,
                }),
            )
        })
        .collect();
    let reasons: Map<String, JsonValue> = r
        .failure_reasons
        .iter()
        .map(|(reason, count)| (reason.clone(), JsonValue::from(*count)))
        .collect();
    json!({
        "total": r.total,
        "passed": r.passed,
        "failed": r.failed,
        "errored": r.errored,
        "pass_rate": r.pass_rate,
        "metrics": metrics,
        "latency": r.latency.as_ref().map(|l| json!({
            "p50_ms": l.p50_ms,
            "p95_ms": l.p95_ms,
            "p99_ms": l.p99_ms,
            "mean_ms": l.mean_ms,
            "max_ms": l.max_ms,
        })),
        "tokens": r.tokens.as_ref().map(|t| json!({"input": t.input, "output": t.output})),
        "cost": r.cost,
        "failure_reasons": reasons,
    })
}

/// Per-sample results.
pub(crate) fn sample_results(results: &[pb::SampleResult]) -> JsonValue {
    JsonValue::Array(results.iter().map(sample_result).collect())
}

fn sample_result(r: &pb::SampleResult) -> JsonValue {
    let numbers = |map: &std::collections::BTreeMap<String, f64>| -> Map<String, JsonValue> {
        map.iter()
            .map(|(k, v)| (k.clone(), JsonValue::from(*v)))
            .collect()
    };
    json!({
        "sample_id": r.sample_id,
        "input": r.input.as_ref().map_or(JsonValue::Null, json_from_value),
        "expected_output": r.expected_output,
        "output": r.output,
        "scores": numbers(&r.scores),
        "passed": r.passed,
        "latency_ms": r.latency.as_ref().map(duration_ms),
        "error": r.error,
        "failure_reason": r.failure_reason,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cost": r.cost,
        "judge_scores": r.judge_scores.iter().map(|j| json!({
            "metric": j.metric,
            "judge": j.judge,
            "score": j.score,
        })).collect::<Vec<_>>(),
        "panel_spread": numbers(&r.panel_spread),
    })
}

/// A comparison, with the two runs' ids.
pub(crate) fn comparison(
    baseline: &str,
    candidate: &str,
    c: &pb::CompareRunsResponse,
) -> JsonValue {
    let changes: Map<String, JsonValue> = c
        .metric_changes
        .iter()
        .map(|(name, m)| {
            (
                name.clone(),
                json!({
                    "baseline": m.baseline,
                    "candidate": m.candidate,
                    "absolute_change": m.absolute_change,
                    "relative_change": m.relative_change,
                }),
            )
        })
        .collect();
    json!({
        "baseline_run_id": baseline,
        "candidate_run_id": candidate,
        "summary": c.summary,
        "baseline_pass_rate": c.baseline_pass_rate,
        "candidate_pass_rate": c.candidate_pass_rate,
        "pass_rate_change": c.pass_rate_change,
        "metric_changes": changes,
        "regressed_metrics": c.regressed_metrics,
        "improved_metrics": c.improved_metrics,
        "newly_failing": c.newly_failing,
        "newly_passing": c.newly_passing,
        "mcnemar_p_value": c.mcnemar_p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_uses_short_statuses_milliseconds_and_nulls() {
        let r = pb::Run {
            id: "r1".into(),
            status: pb::RunStatus::Cancelled as i32,
            metrics: vec![pb::MetricConfig {
                name: "exact".into(),
                scorer: "exact_match".into(),
                ..Default::default()
            }],
            sample_timeout: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            results: Some(pb::RunResults {
                total: 2,
                pass_rate: 0.5,
                failure_reasons: [("timeout".to_owned(), 1)].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = run(&r);
        assert_eq!(value["status"], "cancelled");
        assert_eq!(value["sample_timeout_ms"], 30000.0);
        assert_eq!(value["metrics"][0]["threshold"], JsonValue::Null);
        assert_eq!(value["metrics"][0]["params"], json!({}));
        assert_eq!(value["progress"], JsonValue::Null);
        assert_eq!(value["results"]["pass_rate"], 0.5);
        assert_eq!(value["results"]["failure_reasons"], json!({"timeout": 1}));
        assert_eq!(value["results"]["latency"], JsonValue::Null);
        assert_eq!(value["created_at"], JsonValue::Null);
    }

    #[test]
    fn a_comparison_keeps_absent_numbers_null() {
        let c = pb::CompareRunsResponse {
            metric_changes: [(
                "f1".to_owned(),
                pb::MetricChange {
                    candidate: 0.2,
                    absolute_change: 0.2,
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        let value = comparison("a", "b", &c);
        assert_eq!(value["baseline_run_id"], "a");
        assert_eq!(
            value["metric_changes"]["f1"]["relative_change"],
            JsonValue::Null
        );
        assert_eq!(value["mcnemar_p_value"], JsonValue::Null);
    }
}
