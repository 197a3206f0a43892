//! An experiment's results: per-variant statistics, each non-control variant compared
//! with control on every metric, multiple-testing control, the sample-ratio check, and
//! the decision.

use crate::model::{Experiment, MetricDefinition, MetricDirection, MetricRole};
use crate::stats::holm::holm;
use crate::stats::power::samples_per_variant;
use crate::stats::srm::{srm_p_value, SRM_THRESHOLD};
use crate::stats::ttest::{compare, Comparison, Outcome, TestSettings};
use crate::stats::Summary;
use crate::tally::Tally;

/// The recommendation when no winner can be named (the seed's wording).
pub const CONTINUE: &str = "Continue experiment - insufficient confidence";

/// One variant's statistics on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantMetricStats {
    /// The variant.
    pub variant_id: String,
    /// The metric.
    pub metric: String,
    /// n, mean, standard deviation, min, max.
    pub summary: Summary,
}

/// One non-control variant against control on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricComparison {
    /// The variant compared with control.
    pub variant_id: String,
    /// The metric.
    pub metric: String,
    /// Its role.
    pub role: MetricRole,
    /// Absolute and relative effects.
    pub comparison: Comparison,
    /// The Holm-adjusted p-value of the relative test (primary and secondary metrics
    /// only; guardrails are judged on raw p-values).
    pub adjusted_p_value: Option<f64>,
    /// Whether the variant is better than control in the metric's direction (by the
    /// point estimate; significance is separate).
    pub improves: Option<bool>,
}

impl MetricComparison {
    /// The relative test when computable, else the absolute one.
    fn primary_test(&self) -> Outcome {
        self.comparison.relative.or(self.comparison.absolute)
    }
}

/// The sample-ratio check.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRatio {
    /// Exposures per variant.
    pub observed: Vec<u64>,
    /// Expected exposures per variant from the weights.
    pub expected: Vec<f64>,
    /// The chi-square p-value, when there were exposures to test.
    pub p_value: Option<f64>,
    /// p < 0.001.
    pub detected: bool,
}

/// Everything `GetExperimentResults` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentResults {
    /// Per variant and metric.
    pub stats: Vec<VariantMetricStats>,
    /// Per non-control variant and metric.
    pub comparisons: Vec<MetricComparison>,
    /// The sample-ratio check.
    pub srm: SampleRatio,
    /// The suggested winner, if the rules allow one.
    pub winner_variant_id: Option<String>,
    /// The confidence in the winner, in percent: (1 - adjusted p) x 100.
    pub confidence: Option<f64>,
    /// "Deploy variant X with N% confidence", "Keep control X with N% confidence" or
    /// [`CONTINUE`].
    pub recommendation: String,
    /// Why.
    pub reasons: Vec<String>,
    /// Guardrails significantly worse: (variant, metric, raw p).
    pub guardrail_failures: Vec<(String, String, f64)>,
}

fn improves(direction: MetricDirection, estimate: f64) -> bool {
    match direction {
        MetricDirection::HigherIsBetter => estimate > 0.0,
        MetricDirection::LowerIsBetter => estimate < 0.0,
    }
}

/// Computes the results from the experiment's tally. The cost depends on the number of
/// variants and metrics only, never on the number of records.
pub fn analyse(experiment: &Experiment, tally: &Tally) -> ExperimentResults {
    let control = experiment.control_index();
    let settings = TestSettings {
        alpha: experiment.alpha,
        sequential_tuning: experiment
            .sequential
            .then_some(experiment.sequential_tuning),
    };

    let mut stats = Vec::new();
    for (v, variant) in experiment.variants.iter().enumerate() {
        for (m, metric) in experiment.metrics.iter().enumerate() {
            stats.push(VariantMetricStats {
                variant_id: variant.id.clone(),
                metric: metric.name.clone(),
                summary: tally.summary(v, m),
            });
        }
    }

    let mut comparisons = Vec::new();
    for (v, variant) in experiment.variants.iter().enumerate() {
        if v == control {
            continue;
        }
        for (m, metric) in experiment.metrics.iter().enumerate() {
            let comparison = compare(
                metric.kind,
                &tally.summary(control, m),
                &tally.summary(v, m),
                settings,
            );
            let improves = comparison
                .absolute
                .ok()
                .map(|e| improves(metric.direction, e.estimate));
            comparisons.push(MetricComparison {
                variant_id: variant.id.clone(),
                metric: metric.name.clone(),
                role: metric.role,
                comparison,
                adjusted_p_value: None,
                improves,
            });
        }
    }

    // Holm across (non-control variants x primary and secondary metrics). A test that
    // cannot be computed yet still counts in the family (as p = 1), so a winner is never
    // named with less correction than the experiment's design calls for.
    let family: Vec<usize> = comparisons
        .iter()
        .enumerate()
        .filter(|(_, c)| c.role != MetricRole::Guardrail)
        .map(|(i, _)| i)
        .collect();
    let raw: Vec<f64> = family
        .iter()
        .map(|&i| {
            comparisons[i]
                .comparison
                .relative
                .map_or(1.0, |e| e.p_value)
        })
        .collect();
    for (&i, adjusted) in family.iter().zip(holm(&raw)) {
        if comparisons[i].comparison.relative.is_ok() {
            comparisons[i].adjusted_p_value = Some(adjusted);
        }
    }

    let srm = sample_ratio(experiment, tally);
    let mut results = ExperimentResults {
        stats,
        comparisons,
        srm,
        winner_variant_id: None,
        confidence: None,
        recommendation: CONTINUE.to_owned(),
        reasons: Vec::new(),
        guardrail_failures: Vec::new(),
    };
    decide(experiment, tally, &mut results);
    results
}

fn sample_ratio(experiment: &Experiment, tally: &Tally) -> SampleRatio {
    let observed = tally.exposures().to_vec();
    let weights = experiment.weights();
    let total: u64 = observed.iter().sum();
    let weight_sum: f64 = weights.iter().sum();
    let expected = weights
        .iter()
        .map(|w| {
            if weight_sum > 0.0 {
                w / weight_sum * total as f64
            } else {
                0.0
            }
        })
        .collect();
    let p_value = srm_p_value(&observed, &weights);
    SampleRatio {
        observed,
        expected,
        detected: p_value.is_some_and(|p| p < SRM_THRESHOLD),
        p_value,
    }
}

/// Applies the decision rules: a winner only when there is no SRM, every variant has
/// min-samples on the primary metric, the variant beats control on the primary metric in
/// its direction with adjusted p < alpha, and no guardrail of it is significantly worse.
fn decide(experiment: &Experiment, tally: &Tally, results: &mut ExperimentResults) {
    let alpha = experiment.alpha;
    let mut blocked = false;

    if results.srm.detected {
        blocked = true;
        results.reasons.push(format!(
            "sample ratio mismatch: exposures {:?} differ from the expected split (p = {:.2e}); fix assignment before trusting any result",
            results.srm.observed,
            results.srm.p_value.unwrap_or(0.0)
        ));
    }

    for comparison in &results.comparisons {
        if comparison.role != MetricRole::Guardrail {
            continue;
        }
        if let Ok(test) = comparison.primary_test() {
            if test.p_value < alpha && comparison.improves == Some(false) {
                results.guardrail_failures.push((
                    comparison.variant_id.clone(),
                    comparison.metric.clone(),
                    test.p_value,
                ));
            }
        }
    }

    let Some((primary_index, primary)) = experiment
        .metrics
        .iter()
        .enumerate()
        .find(|(_, m)| m.role == MetricRole::Primary)
    else {
        results
            .reasons
            .push("no primary metric is declared, so no winner can be named".to_owned());
        add_guardrail_reasons(results);
        return;
    };

    let control = experiment.control_index();
    let short: Vec<(String, u64)> = experiment
        .variants
        .iter()
        .enumerate()
        .map(|(v, variant)| (variant.id.clone(), tally.summary(v, primary_index).n()))
        .filter(|(_, n)| *n < experiment.min_samples)
        .collect();
    if !short.is_empty() {
        blocked = true;
        let listed = short
            .iter()
            .map(|(id, n)| format!("{id} has {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        // The most any variant needs to show its observed effect with 80% power.
        let power_hint = experiment
            .variants
            .iter()
            .enumerate()
            .filter(|(v, _)| *v != control)
            .filter_map(|(_, variant)| {
                needed_for_power(experiment, tally, control, primary_index, &variant.id, primary)
            })
            .max()
            .map(|more| {
                format!("; roughly {more} more per variant would detect the observed effect with 80% power")
            })
            .unwrap_or_default();
        results.reasons.push(format!(
            "not enough samples on {}: {listed}; each variant needs {}{power_hint}",
            primary.name, experiment.min_samples
        ));
    }

    // The best significant improvement on the primary metric.
    let mut candidate: Option<(usize, f64, f64)> = None;
    let mut reasons = Vec::new();
    // Variants compared on the primary metric, and the largest adjusted p of those
    // significantly worse than control (when every one is, control wins).
    let mut compared = 0;
    let mut worse: Vec<f64> = Vec::new();
    for (index, comparison) in results
        .comparisons
        .iter()
        .enumerate()
        .filter(|(_, c)| c.metric == primary.name)
    {
        let (Ok(relative), Some(adjusted)) =
            (comparison.comparison.relative, comparison.adjusted_p_value)
        else {
            reasons.push(format!(
                "{} vs control on {}: {}",
                comparison.variant_id,
                primary.name,
                comparison
                    .primary_test()
                    .err()
                    .map_or("not computable", |e| e.reason())
            ));
            continue;
        };
        // Better or worse by the difference of means: the relative lift's sign flips
        // when the control mean is negative.
        let better = comparison.improves.unwrap_or(false);
        compared += 1;
        if adjusted >= alpha {
            reasons.push(format!(
                "{} vs control on {}: {:+.1}% (adjusted p = {:.4}) is not significant at alpha {}{}",
                comparison.variant_id,
                primary.name,
                relative.estimate * 100.0,
                adjusted,
                alpha,
                more_samples_hint(experiment, tally, control, primary_index, &comparison.variant_id, primary)
            ));
            continue;
        }
        if !better {
            worse.push(adjusted);
            reasons.push(format!(
                "{} is significantly worse than control on {}: {:+.1}% (adjusted p = {:.4})",
                comparison.variant_id,
                primary.name,
                relative.estimate * 100.0,
                adjusted
            ));
            continue;
        }
        if results
            .guardrail_failures
            .iter()
            .any(|(v, _, _)| *v == comparison.variant_id)
        {
            continue;
        }
        let gain = relative.estimate.abs();
        if candidate.is_none_or(|(_, best_gain, _)| gain > best_gain) {
            candidate = Some((index, gain, adjusted));
        }
    }
    results.reasons.extend(reasons);
    add_guardrail_reasons(results);

    match candidate {
        Some((index, _, adjusted)) if !blocked => {
            let comparison = &results.comparisons[index];
            let relative = comparison.comparison.relative.expect("checked above");
            let confidence = (1.0 - adjusted) * 100.0;
            let winner = comparison.variant_id.clone();
            results.reasons.insert(
                0,
                format!(
                    "{winner} improves {} by {:+.1}% [{:+.1}%, {:+.1}%] over control (adjusted p = {:.4})",
                    primary.name,
                    relative.estimate * 100.0,
                    relative.ci_lower * 100.0,
                    relative.ci_upper * 100.0,
                    adjusted
                ),
            );
            results.recommendation =
                format!("Deploy variant {winner} with {confidence:.1}% confidence");
            results.confidence = Some(confidence);
            results.winner_variant_id = Some(winner);
        }
        None if !blocked && compared > 0 && worse.len() == compared => {
            let control_id = experiment.variants[control].id.clone();
            let adjusted = worse.iter().copied().fold(0.0, f64::max);
            let confidence = (1.0 - adjusted) * 100.0;
            results.reasons.insert(
                0,
                format!(
                    "every variant is significantly worse than control {control_id} on {} (largest adjusted p = {adjusted:.4})",
                    primary.name
                ),
            );
            results.recommendation =
                format!("Keep control {control_id} with {confidence:.1}% confidence");
            results.confidence = Some(confidence);
            results.winner_variant_id = Some(control_id);
        }
        _ => results.recommendation = CONTINUE.to_owned(),
    }
}

fn add_guardrail_reasons(results: &mut ExperimentResults) {
    for (variant, metric, p) in &results.guardrail_failures {
        results.reasons.push(format!(
            "guardrail {metric} is significantly worse in {variant} (p = {p:.4})"
        ));
    }
}

/// How many more observations per variant a test of `variant_id`
/// against control would need to detect the effect observed so far with 80% power;
/// `None` when the effect is zero or already detectable with what there is.
fn needed_for_power(
    experiment: &Experiment,
    tally: &Tally,
    control: usize,
    metric_index: usize,
    variant_id: &str,
    metric: &MetricDefinition,
) -> Option<u64> {
    let v = experiment.variant_index(variant_id)?;
    let (a, b) = (
        tally.summary(control, metric_index),
        tally.summary(v, metric_index),
    );
    let variance = |s: &Summary| match metric.kind {
        crate::model::MetricKind::Mean => s.variance(),
        crate::model::MetricKind::Proportion => s.mean() * (1.0 - s.mean()),
    };
    let needed = samples_per_variant(
        b.mean() - a.mean(),
        variance(&a),
        variance(&b),
        experiment.alpha,
    )?;
    let have = a.n().min(b.n());
    (needed > have).then(|| needed - have)
}

/// "; roughly N more per variant ..." when the observed effect is nonzero.
fn more_samples_hint(
    experiment: &Experiment,
    tally: &Tally,
    control: usize,
    metric_index: usize,
    variant_id: &str,
    metric: &MetricDefinition,
) -> String {
    needed_for_power(experiment, tally, control, metric_index, variant_id, metric)
        .map(|more| {
            format!(
                "; roughly {more} more per variant would detect the observed effect with 80% power"
            )
        })
        .unwrap_or_default()
}
