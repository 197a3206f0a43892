//! Checks of an online evaluation, every problem named by its field.

use std::collections::HashSet;
use std::time::Duration;

use super::model::{OnlineEvaluation, OnlineThresholds};
use crate::runs::validate::check_metric;
use crate::FieldViolation;

/// The scorers an online evaluation may use: production traffic has no expected output,
/// so only scorers that judge an output alone (or against its input: `levenshtein` and
/// `token_f1` compare the answer with what the model was given).
pub const ALLOWED_SCORERS: &[&str] = &[
    "json_valid",
    "regex",
    "contains",
    "contains_any",
    "contains_all",
    "heuristic",
    "levenshtein",
    "token_f1",
    "llm_judge",
    "panel",
];

/// The narrowest window: aggregates are kept per minute.
pub(super) const MIN_WINDOW: Duration = Duration::from_secs(60);
/// The widest window.
pub(super) const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Metrics of one online evaluation at most.
const MAX_METRICS: usize = 16;
/// Bytes of a name or id at most.
const MAX_NAME_BYTES: usize = 256;

/// The problems of `evaluation`'s fields (not those that need the providers or the
/// registry).
pub(super) fn check_evaluation(evaluation: &OnlineEvaluation) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let mut bad =
        |field: &str, message: String| violations.push(FieldViolation::new(field, message));
    if evaluation.id.len() > MAX_NAME_BYTES || evaluation.id.chars().any(char::is_control) {
        bad(
            "online_evaluation_id",
            format!("must be at most {MAX_NAME_BYTES} bytes without control characters"),
        );
    }
    if evaluation.name.len() > MAX_NAME_BYTES {
        bad("name", format!("must be at most {MAX_NAME_BYTES} bytes"));
    }
    let filter = &evaluation.filter;
    if filter.prompt_name.is_empty() {
        bad("filter.prompt_name", "is required".to_owned());
    }
    if !filter.label.is_empty() && !filter.prompt_version.is_empty() {
        bad(
            "filter.label",
            "give a label or a prompt_version, not both".to_owned(),
        );
    }
    for (field, value) in [
        ("filter.prompt_name", &filter.prompt_name),
        ("filter.label", &filter.label),
        ("filter.prompt_version", &filter.prompt_version),
        ("filter.model", &filter.model),
        ("filter.experiment_id", &filter.experiment_id),
    ] {
        if value.len() > MAX_NAME_BYTES {
            bad(field, format!("must be at most {MAX_NAME_BYTES} bytes"));
        }
    }
    check_sample_rate(evaluation.sample_rate, &mut bad);
    if evaluation.metrics.is_empty() {
        bad("metrics", "at least one metric is required".to_owned());
    }
    if evaluation.metrics.len() > MAX_METRICS {
        bad("metrics", format!("at most {MAX_METRICS} metrics"));
    }
    let mut names = HashSet::new();
    for (index, metric) in evaluation.metrics.iter().enumerate() {
        check_metric(&mut bad, index, metric, &mut names);
        let field = format!("metrics[{index}].scorer");
        if !metric.scorer.is_empty() && !ALLOWED_SCORERS.contains(&metric.scorer.as_str()) {
            bad(
                &field,
                format!(
                    "metric {:?}: scorer {:?} needs an expected output, which production traffic does not have; online evaluations use {}",
                    metric.name,
                    metric.scorer,
                    ALLOWED_SCORERS.join(", ")
                ),
            );
        }
        if metric.scorer == "contains" && !metric.params.contains_key("value") {
            bad(
                &format!("metrics[{index}].params.value"),
                format!(
                    "metric {:?}: contains needs a value online (there is no expected output to look for)",
                    metric.name
                ),
            );
        }
    }
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&evaluation.window)
        || evaluation.window.as_secs() % 60 != 0
        || evaluation.window.subsec_nanos() != 0
    {
        bad(
            "window",
            format!(
                "must be whole minutes between {} and {}",
                humantime::format_duration(MIN_WINDOW),
                humantime::format_duration(MAX_WINDOW)
            ),
        );
    }
    if evaluation.min_samples == 0 {
        bad("min_samples", "must be at least 1".to_owned());
    }
    let metric_names: HashSet<&str> = evaluation.metrics.iter().map(|m| m.name.as_str()).collect();
    check_thresholds(&evaluation.thresholds, &metric_names, &mut bad);
    violations
}

/// A sample rate in (0, 1].
pub(super) fn check_sample_rate(rate: f64, bad: &mut impl FnMut(&str, String)) {
    if !(rate > 0.0 && rate <= 1.0) {
        bad("sample_rate", format!("must be in (0, 1], not {rate}"));
    }
}

/// Bounds that are numbers in range and name the evaluation's metrics.
pub(super) fn check_thresholds(
    thresholds: &OnlineThresholds,
    metrics: &HashSet<&str>,
    bad: &mut impl FnMut(&str, String),
) {
    if let Some(rate) = thresholds.min_pass_rate {
        if !(0.0..=1.0).contains(&rate) {
            bad(
                "thresholds.min_pass_rate",
                format!("must be between 0 and 1, not {rate}"),
            );
        }
    }
    for (name, minimum) in &thresholds.metric_minimums {
        let field = format!("thresholds.metric_minimums[{name}]");
        if !metrics.contains(name.as_str()) {
            bad(
                &field,
                format!("{name:?} is not one of the evaluation's metrics"),
            );
        } else if !(0.0..=1.0).contains(minimum) {
            bad(&field, format!("must be between 0 and 1, not {minimum}"));
        }
    }
    if let Some(p99) = thresholds.max_latency_p99_ms {
        if !(p99.is_finite() && p99 > 0.0) {
            bad(
                "thresholds.max_latency_p99_ms",
                format!("must be a positive number of ms, not {p99}"),
            );
        }
    }
}
