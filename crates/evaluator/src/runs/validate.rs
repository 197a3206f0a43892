//! Checks of a run's own fields; every problem is reported at once. Checks against
//! other resources (the dataset, the prompt, providers) are the service's.

use super::model::{MetricConfig, RunSpec};
use crate::datasets::limits::{DESCRIPTION_BYTES, ID_BYTES, NAME_BYTES};
use crate::FieldViolation;
use std::collections::HashSet;

/// Run limits.
pub mod limits {
    use std::time::Duration;

    /// Metrics per run.
    pub const METRICS: usize = 32;
    /// A metric's name.
    pub const METRIC_NAME_BYTES: usize = 64;
    /// Samples in flight per run.
    pub const CONCURRENCY: u32 = 256;
    /// The shortest per-sample time limit.
    pub const MIN_SAMPLE_TIMEOUT: Duration = Duration::from_millis(10);
    /// The longest per-sample time limit.
    pub const MAX_SAMPLE_TIMEOUT: Duration = Duration::from_secs(3600);
    /// Outputs per SubmitRunOutputs call.
    pub const SUBMITTED_OUTPUTS: usize = 1000;
    /// One submitted output or error.
    pub const OUTPUT_BYTES: usize = 256 * 1024;
}

fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::METRIC_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The fields of `spec` that need nothing else to check.
pub(super) fn check_spec(spec: &RunSpec) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let mut bad =
        |field: &str, message: String| violations.push(FieldViolation::new(field, message));
    if spec.id.len() > ID_BYTES
        || !spec
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c))
    {
        bad(
            "id",
            format!("must be at most {ID_BYTES} characters from [A-Za-z0-9._:/-]"),
        );
    }
    if spec.name.len() > NAME_BYTES {
        bad("name", format!("must be at most {NAME_BYTES} bytes"));
    }
    if spec.description.len() > DESCRIPTION_BYTES {
        bad(
            "description",
            format!("must be at most {DESCRIPTION_BYTES} bytes"),
        );
    }
    if spec.dataset_id.is_empty() {
        bad("dataset_id", "is required".to_owned());
    }
    if spec.prompt_name.is_empty() {
        bad("prompt_name", "is required".to_owned());
    }
    if !spec.prompt_version.is_empty() && !spec.prompt_label.is_empty() {
        bad(
            "prompt_label",
            "give either a prompt_version or a prompt_label, not both".to_owned(),
        );
    }
    if spec.model.is_empty() {
        bad("model", "is required".to_owned());
    }
    if spec.metrics.is_empty() && !spec.submitted_outputs {
        bad(
            "metrics",
            "at least one metric is required (a sample with no scores cannot pass)".to_owned(),
        );
    }
    if spec.metrics.len() > limits::METRICS {
        bad("metrics", format!("at most {} metrics", limits::METRICS));
    }
    let mut names = HashSet::new();
    for (index, metric) in spec.metrics.iter().enumerate() {
        check_metric(&mut bad, index, metric, &mut names);
    }
    if spec.concurrency > limits::CONCURRENCY {
        bad(
            "concurrency",
            format!("must be at most {}", limits::CONCURRENCY),
        );
    }
    if let Some(timeout) = spec.sample_timeout {
        if !(limits::MIN_SAMPLE_TIMEOUT..=limits::MAX_SAMPLE_TIMEOUT).contains(&timeout) {
            bad(
                "sample_timeout",
                format!(
                    "must be between {:?} and {:?}",
                    limits::MIN_SAMPLE_TIMEOUT,
                    limits::MAX_SAMPLE_TIMEOUT
                ),
            );
        }
    }
    violations
}

pub(crate) fn check_metric<'a>(
    bad: &mut impl FnMut(&str, String),
    index: usize,
    metric: &'a MetricConfig,
    names: &mut HashSet<&'a str>,
) {
    let field = |rest: &str| format!("metrics[{index}].{rest}");
    if !is_metric_name(&metric.name) {
        bad(
            &field("name"),
            format!(
                "must be 1-{} characters from [A-Za-z0-9_.-]",
                limits::METRIC_NAME_BYTES
            ),
        );
    } else if !names.insert(&metric.name) {
        bad(
            &field("name"),
            format!("{:?} is used by an earlier metric", metric.name),
        );
    }
    if metric.scorer.is_empty() {
        bad(&field("scorer"), "is required".to_owned());
    }
    if !(0.0..=1.0).contains(&metric.threshold) {
        bad(
            &field("threshold"),
            format!("must be between 0 and 1, not {}", metric.threshold),
        );
    }
}

/// Checks one submitted score's name and value.
pub(super) fn check_submitted_score(field: &str, name: &str, score: f64) -> Option<FieldViolation> {
    if !is_metric_name(name) {
        return Some(FieldViolation::new(
            field,
            format!(
                "score names must be 1-{} characters from [A-Za-z0-9_.-]",
                limits::METRIC_NAME_BYTES
            ),
        ));
    }
    if !(0.0..=1.0).contains(&score) {
        return Some(FieldViolation::new(
            format!("{field}[{name}]"),
            format!("must be between 0 and 1, not {score}"),
        ));
    }
    None
}
