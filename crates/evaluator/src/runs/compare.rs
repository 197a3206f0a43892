//! Comparing two runs (`CompareRuns`) and the alerts a completed run calls for:
//! regressions against its baseline and breaches of the configured thresholds.

use std::collections::{BTreeMap, HashMap};

use llmops_alerts::{AlertSeverity, AlertType, NewAlert};

use super::model::{Run, RunResults};
use crate::mcnemar::mcnemar_exact;

/// The `source` of evaluation alerts.
pub const SOURCE: &str = "evaluation";
/// A pass-rate drop beyond this (in rate, 5 points) is a regression.
pub const PASS_RATE_DROP: f64 = 0.05;
/// A pass-rate drop beyond this (10 points) is a critical regression.
pub const CRITICAL_PASS_RATE_DROP: f64 = 0.10;
/// A metric mean dropping by more than this is a regression.
pub const METRIC_MEAN_DROP: f64 = 0.1;
/// A metric whose mean changes by more than this share of the baseline's has regressed
/// or improved (the seed's rule).
pub const RELATIVE_CHANGE: f64 = 0.05;
/// Float noise below this is not a change (0.80 - 0.75 is 0.05000000000000004).
const EPSILON: f64 = 1e-9;

/// Whether a pass rate fell from `baseline` by more than [`PASS_RATE_DROP`]: the rule of
/// the regression alert, and of release gates with `no_regression`.
pub fn pass_rate_regressed(baseline: f64, candidate: f64) -> bool {
    baseline - candidate > PASS_RATE_DROP + EPSILON
}

/// How one metric's mean changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricChange {
    /// The baseline's mean.
    pub baseline: f64,
    /// The candidate's mean.
    pub candidate: f64,
    /// candidate - baseline.
    pub absolute_change: f64,
    /// (candidate - baseline) / baseline; None when the baseline is 0.
    pub relative_change: Option<f64>,
}

/// Paired pass/fail outcomes of the samples both runs have.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairedOutcomes {
    /// Passed in the baseline, not in the candidate.
    pub newly_failing: Vec<String>,
    /// Passed in the candidate, not in the baseline.
    pub newly_passing: Vec<String>,
    /// Samples in both runs.
    pub pairs: u64,
}

impl PairedOutcomes {
    /// Pairs outcomes by sample id.
    pub fn pair(baseline: &HashMap<String, bool>, candidate: &HashMap<String, bool>) -> Self {
        let mut paired = Self::default();
        for (sample, passed) in candidate {
            let Some(before) = baseline.get(sample) else {
                continue;
            };
            paired.pairs += 1;
            match (before, passed) {
                (true, false) => paired.newly_failing.push(sample.clone()),
                (false, true) => paired.newly_passing.push(sample.clone()),
                _ => {}
            }
        }
        paired.newly_failing.sort();
        paired.newly_passing.sort();
        paired
    }

    /// McNemar's exact p-value on the discordant pairs.
    pub fn mcnemar_p_value(&self) -> f64 {
        mcnemar_exact(
            self.newly_failing.len() as u64,
            self.newly_passing.len() as u64,
        )
    }
}

/// `CompareRuns`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The baseline's pass rate.
    pub baseline_pass_rate: f64,
    /// The candidate's pass rate.
    pub candidate_pass_rate: f64,
    /// candidate - baseline.
    pub pass_rate_change: f64,
    /// Per metric both runs have.
    pub metric_changes: BTreeMap<String, MetricChange>,
    /// Fell by more than 5% relative.
    pub regressed_metrics: Vec<String>,
    /// Rose by more than 5% relative (or from 0).
    pub improved_metrics: Vec<String>,
    /// Paired outcomes, when both runs used the same dataset.
    pub paired: Option<PairedOutcomes>,
    /// One line for humans.
    pub summary: String,
}

impl Comparison {
    /// McNemar's p-value, when the runs were paired.
    pub fn mcnemar_p_value(&self) -> Option<f64> {
        self.paired.as_ref().map(PairedOutcomes::mcnemar_p_value)
    }
}

/// Compares two runs' results; `paired` when they share the dataset.
pub fn compare(
    baseline: &Run,
    baseline_results: &RunResults,
    candidate: &Run,
    candidate_results: &RunResults,
    paired: Option<PairedOutcomes>,
) -> Comparison {
    let mut metric_changes = BTreeMap::new();
    let mut regressed_metrics = Vec::new();
    let mut improved_metrics = Vec::new();
    for (name, after) in &candidate_results.metrics {
        let Some(before) = baseline_results.metrics.get(name) else {
            continue;
        };
        let absolute_change = after.mean - before.mean;
        let relative_change = (before.mean != 0.0).then(|| absolute_change / before.mean);
        match relative_change {
            Some(relative) if relative < -RELATIVE_CHANGE - EPSILON => {
                regressed_metrics.push(name.clone())
            }
            Some(relative) if relative > RELATIVE_CHANGE + EPSILON => {
                improved_metrics.push(name.clone())
            }
            None if after.mean > 0.0 => improved_metrics.push(name.clone()),
            _ => {}
        }
        metric_changes.insert(
            name.clone(),
            MetricChange {
                baseline: before.mean,
                candidate: after.mean,
                absolute_change,
                relative_change,
            },
        );
    }
    let pass_rate_change = candidate_results.pass_rate - baseline_results.pass_rate;
    let mut summary = format!(
        "Run {} passed {:.1}% against {:.1}% for run {} ({:+.1} points); regressed: {}; improved: {}",
        candidate.id,
        candidate_results.pass_rate * 100.0,
        baseline_results.pass_rate * 100.0,
        baseline.id,
        pass_rate_change * 100.0,
        list_or_none(&regressed_metrics),
        list_or_none(&improved_metrics),
    );
    if let Some(paired) = &paired {
        summary.push_str(&format!(
            "; {} newly failing, {} newly passing of {} paired samples (McNemar p = {:.4})",
            paired.newly_failing.len(),
            paired.newly_passing.len(),
            paired.pairs,
            paired.mcnemar_p_value()
        ));
    }
    Comparison {
        baseline_pass_rate: baseline_results.pass_rate,
        candidate_pass_rate: candidate_results.pass_rate,
        pass_rate_change,
        metric_changes,
        regressed_metrics,
        improved_metrics,
        paired,
        summary,
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// One alert condition of a completed run: raise `alert` when `breaching`, otherwise
/// resolve the open alert with the same identity (a later run that no longer breaches).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertCheck {
    /// The alert as it would be raised.
    pub alert: NewAlert,
    /// Whether the condition holds.
    pub breaching: bool,
}

/// What one condition found, before it becomes an alert.
struct Finding {
    alert_type: AlertType,
    severity: AlertSeverity,
    metric: String,
    breaching: bool,
    message: String,
    threshold: Option<f64>,
    actual: f64,
}

impl Finding {
    /// The check, labelled so that the same problem of the same prompt and model on the
    /// same dataset deduplicates across runs.
    fn into_check(self, run: &Run, metadata: &BTreeMap<String, String>) -> AlertCheck {
        let labels = BTreeMap::from([
            ("prompt".to_owned(), run.prompt_name.clone()),
            ("model".to_owned(), run.model.clone()),
            ("metric".to_owned(), self.metric.clone()),
        ]);
        AlertCheck {
            alert: NewAlert {
                alert_type: self.alert_type,
                severity: self.severity,
                message: self.message,
                source: SOURCE.to_owned(),
                source_id: run.dataset_id.clone(),
                metric: self.metric,
                threshold: self.threshold,
                actual_value: Some(self.actual),
                labels,
                metadata: metadata.clone(),
                fingerprint: String::new(),
            },
            breaching: self.breaching,
        }
    }
}

/// Regression checks of `candidate` against `baseline`: the pass rate, then each metric
/// both have. `paired` (same dataset version) adds McNemar's test to the metadata.
pub fn regression_checks(
    baseline: &Run,
    baseline_results: &RunResults,
    candidate: &Run,
    candidate_results: &RunResults,
    paired: Option<&PairedOutcomes>,
) -> Vec<AlertCheck> {
    let mut metadata = BTreeMap::from([
        ("run_id".to_owned(), candidate.id.clone()),
        ("baseline_run_id".to_owned(), baseline.id.clone()),
        (
            "prompt_version".to_owned(),
            candidate.prompt_version.clone(),
        ),
        (
            "baseline_prompt_version".to_owned(),
            baseline.prompt_version.clone(),
        ),
        (
            "dataset_version".to_owned(),
            candidate.dataset_version.to_string(),
        ),
        (
            "baseline_dataset_version".to_owned(),
            baseline.dataset_version.to_string(),
        ),
        (
            "pass_rate".to_owned(),
            format!("{:.4}", candidate_results.pass_rate),
        ),
        (
            "baseline_pass_rate".to_owned(),
            format!("{:.4}", baseline_results.pass_rate),
        ),
    ]);
    // Always written, so a later occurrence never keeps an earlier pair's test.
    let (p_value, newly_failing, newly_passing) = match paired {
        Some(paired) => (
            format!("{:.6}", paired.mcnemar_p_value()),
            paired.newly_failing.len().to_string(),
            paired.newly_passing.len().to_string(),
        ),
        None => {
            let absent = "n/a (the runs used different dataset versions)".to_owned();
            (absent.clone(), absent.clone(), absent)
        }
    };
    metadata.insert("mcnemar_p_value".to_owned(), p_value);
    metadata.insert("newly_failing".to_owned(), newly_failing);
    metadata.insert("newly_passing".to_owned(), newly_passing);
    let versions = format!(
        "prompt {} {} (baseline {}), model {}",
        candidate.prompt_name, candidate.prompt_version, baseline.prompt_version, candidate.model
    );
    let mut checks = Vec::new();
    let drop = baseline_results.pass_rate - candidate_results.pass_rate;
    let severity = if drop > CRITICAL_PASS_RATE_DROP + EPSILON {
        AlertSeverity::Critical
    } else {
        AlertSeverity::Warning
    };
    checks.push(Finding {
        alert_type: AlertType::Regression,
        severity,
        metric: "pass_rate".to_owned(),
        breaching: pass_rate_regressed(baseline_results.pass_rate, candidate_results.pass_rate),
        message: format!(
            "run {}: pass rate fell {:.1} points to {:.1}% against run {} ({:.1}%) on dataset {}; {versions}",
            candidate.id,
            drop * 100.0,
            candidate_results.pass_rate * 100.0,
            baseline.id,
            baseline_results.pass_rate * 100.0,
            candidate.dataset_id,
        ),
        threshold: Some(baseline_results.pass_rate - PASS_RATE_DROP),
        actual: candidate_results.pass_rate,
    }
    .into_check(candidate, &metadata));
    for (name, after) in &candidate_results.metrics {
        let Some(before) = baseline_results.metrics.get(name) else {
            continue;
        };
        let drop = before.mean - after.mean;
        checks.push(Finding {
            alert_type: AlertType::Regression,
            severity: AlertSeverity::Warning,
            metric: name.clone(),
            breaching: drop > METRIC_MEAN_DROP + EPSILON,
            message: format!(
                "run {}: mean {name} fell {drop:.3} to {:.3} against run {} ({:.3}) on dataset {}; {versions}",
                candidate.id, after.mean, baseline.id, before.mean, candidate.dataset_id,
            ),
            threshold: Some(before.mean - METRIC_MEAN_DROP),
            actual: after.mean,
        }
        .into_check(candidate, &metadata));
    }
    checks
}

/// Threshold checks from `[alert_thresholds]`: `pass_rate` is a minimum, `latency_p99`
/// a maximum in milliseconds, any other key a minimum of that metric's mean.
pub fn threshold_checks(
    run: &Run,
    results: &RunResults,
    thresholds: &BTreeMap<String, f64>,
) -> Vec<AlertCheck> {
    let metadata = BTreeMap::from([
        ("run_id".to_owned(), run.id.clone()),
        ("prompt_version".to_owned(), run.prompt_version.clone()),
        (
            "dataset_version".to_owned(),
            run.dataset_version.to_string(),
        ),
    ]);
    let mut checks = Vec::new();
    for (key, limit) in thresholds {
        let (value, breaching, message) = match key.as_str() {
            "pass_rate" => (
                results.pass_rate,
                results.pass_rate < *limit,
                format!(
                    "run {}: pass rate {:.1}% is below the threshold {:.1}%",
                    run.id,
                    results.pass_rate * 100.0,
                    limit * 100.0
                ),
            ),
            "latency_p99" => {
                if results.latency == Default::default() {
                    continue;
                }
                let p99 = results.latency.p99_ms;
                (
                    p99,
                    p99 > *limit,
                    format!(
                        "run {}: p99 latency {p99:.0} ms is above the threshold {limit} ms",
                        run.id
                    ),
                )
            }
            metric => {
                let Some(summary) = results.metrics.get(metric) else {
                    continue;
                };
                (
                    summary.mean,
                    summary.mean < *limit,
                    format!(
                        "run {}: mean {metric} {:.3} is below the threshold {limit}",
                        run.id, summary.mean
                    ),
                )
            }
        };
        checks.push(
            Finding {
                alert_type: AlertType::Threshold,
                severity: AlertSeverity::Warning,
                metric: key.clone(),
                breaching,
                message: format!(
                    "{message} (prompt {} {}, model {}, dataset {})",
                    run.prompt_name, run.prompt_version, run.model, run.dataset_id
                ),
                threshold: Some(*limit),
                actual: value,
            }
            .into_check(run, &metadata),
        );
    }
    checks
}
