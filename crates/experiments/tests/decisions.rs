//! The decision rules on controlled statistics: direction, guardrails, sample sizes,
//! sample ratio mismatch and the wording of the recommendation.

use chrono::Utc;
use llmops_experiments::results::{analyse, CONTINUE};
use llmops_experiments::{
    Experiment, ExperimentSpec, ExperimentStatus, MetricDefinition, MetricDirection, MetricKind,
    MetricRole, Tally, Variant,
};

fn experiment(metrics: Vec<MetricDefinition>) -> Experiment {
    let mut control = Variant::new("a");
    control.is_control = true;
    let spec = ExperimentSpec {
        created_by: String::new(),
        serves_prompt: String::new(),
        serves_label: String::new(),
        name: "e".into(),
        variants: vec![control, Variant::new("b")],
        metrics,
        min_samples: Some(50),
        ..ExperimentSpec::default()
    };
    let mut experiment = Experiment::draft(spec, "e".into(), 100, Utc::now());
    experiment.status = ExperimentStatus::Running;
    experiment
}

fn metric(name: &str, direction: MetricDirection, role: MetricRole) -> MetricDefinition {
    MetricDefinition::new(name, MetricKind::Mean, direction, role)
}

/// Agreement with a p-value from gbstats and statsmodels (`decisions_reference.py`).
/// The crate's Student-t CDF is not scipy's, so the last digits may differ; 1e-9
/// relative is far below any difference a decision could turn on.
fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        actual.is_finite() && (actual - expected).abs() <= 1e-9 * expected.abs(),
        "{what}: expected {expected} (gbstats/statsmodels), got {actual}"
    );
}

/// `n` values around `center` with a fixed spread.
fn fill(tally: &mut Tally, variant: &str, metric: &str, center: f64, n: usize) {
    for i in 0..n {
        tally.add_record(variant, metric, center + ((i % 10) as f64 - 4.5) / 10.0, "");
    }
}

#[test]
fn lower_latency_wins_when_lower_is_better() {
    let experiment = experiment(vec![metric(
        "latency",
        MetricDirection::LowerIsBetter,
        MetricRole::Primary,
    )]);
    let mut tally = Tally::new(&experiment);
    fill(&mut tally, "a", "latency", 10.0, 100);
    fill(&mut tally, "b", "latency", 9.0, 100);
    let results = analyse(&experiment, &tally);
    assert_eq!(results.winner_variant_id.as_deref(), Some("b"));
    // gbstats gives p = 0.0 here (its `2 * (1 - cdf)` saturates) and Holm over the one
    // primary metric leaves it 0.0 (`decisions_reference.py`), so the confidence,
    // (1 - adjusted p) x 100, is exactly 100.
    assert_eq!(results.confidence, Some(100.0));
    assert_eq!(
        results.recommendation,
        "Deploy variant b with 100.0% confidence"
    );
    assert!(
        results.reasons[0].contains("-10.0%"),
        "{:?}",
        results.reasons
    );
}

/// Significantly higher latency never wins; with every variant worse, control is kept.
#[test]
fn higher_latency_never_wins_even_when_significant() {
    let experiment = experiment(vec![metric(
        "latency",
        MetricDirection::LowerIsBetter,
        MetricRole::Primary,
    )]);
    let mut tally = Tally::new(&experiment);
    fill(&mut tally, "a", "latency", 9.0, 100);
    fill(&mut tally, "b", "latency", 10.0, 100);
    let results = analyse(&experiment, &tally);
    assert_eq!(results.winner_variant_id.as_deref(), Some("a"));
    assert!(
        results.recommendation.starts_with("Keep control a with "),
        "{}",
        results.recommendation
    );
    assert!(
        results
            .reasons
            .iter()
            .any(|r| r.contains("b is significantly worse than control")),
        "{:?}",
        results.reasons
    );
}

#[test]
fn too_few_samples_name_the_shortfall_and_estimate_what_is_needed() {
    let experiment = experiment(vec![metric(
        "quality",
        MetricDirection::HigherIsBetter,
        MetricRole::Primary,
    )]);
    let mut tally = Tally::new(&experiment);
    fill(&mut tally, "a", "quality", 1.0, 20);
    fill(&mut tally, "b", "quality", 1.05, 20);
    let results = analyse(&experiment, &tally);
    assert_eq!(results.recommendation, CONTINUE);
    let reasons = results.reasons.join("\n");
    assert!(
        reasons
            .contains("not enough samples on quality: a has 20, b has 20; each variant needs 50"),
        "{reasons}"
    );
    assert!(
        reasons.contains("more per variant would detect the observed effect with 80% power"),
        "{reasons}"
    );
}

#[test]
fn a_worse_guardrail_blocks_an_otherwise_clear_winner() {
    let experiment = experiment(vec![
        metric(
            "quality",
            MetricDirection::HigherIsBetter,
            MetricRole::Primary,
        ),
        metric(
            "cost",
            MetricDirection::LowerIsBetter,
            MetricRole::Guardrail,
        ),
    ]);
    let mut tally = Tally::new(&experiment);
    fill(&mut tally, "a", "quality", 1.0, 100);
    fill(&mut tally, "b", "quality", 2.0, 100);
    fill(&mut tally, "a", "cost", 5.0, 100);
    fill(&mut tally, "b", "cost", 6.0, 100);
    let results = analyse(&experiment, &tally);
    assert_eq!(results.winner_variant_id, None);
    assert_eq!(results.guardrail_failures.len(), 1);
    assert!(results.reasons.iter().any(|r| r
        == &format!(
            "guardrail cost is significantly worse in b (p = {:.4})",
            results.guardrail_failures[0].2
        )));
}

#[test]
fn holm_adjusts_across_variants_and_non_guardrail_metrics_only() {
    let experiment = experiment(vec![
        metric(
            "quality",
            MetricDirection::HigherIsBetter,
            MetricRole::Primary,
        ),
        metric(
            "helpful",
            MetricDirection::HigherIsBetter,
            MetricRole::Secondary,
        ),
        metric(
            "cost",
            MetricDirection::LowerIsBetter,
            MetricRole::Guardrail,
        ),
    ]);
    let mut tally = Tally::new(&experiment);
    for (metric, shift) in [("quality", 0.05), ("helpful", 0.02), ("cost", 0.0)] {
        fill(&mut tally, "a", metric, 1.0, 200);
        fill(&mut tally, "b", metric, 1.0 + shift, 200);
    }
    let results = analyse(&experiment, &tally);
    let by_metric = |name: &str| {
        results
            .comparisons
            .iter()
            .find(|c| c.metric == name)
            .unwrap()
    };
    // From gbstats and statsmodels, not from this crate: `decisions_reference.py`.
    for (metric, raw, adjusted) in [
        ("quality", 0.09113061895321484, 0.18226123790642967),
        ("helpful", 0.4920693112625183, 0.4920693112625183),
    ] {
        let comparison = by_metric(metric);
        let actual_raw = comparison.comparison.relative.unwrap().p_value;
        assert_close(actual_raw, raw, &format!("{metric}: raw p"));
        let actual_adjusted = comparison.adjusted_p_value.unwrap();
        assert_close(actual_adjusted, adjusted, &format!("{metric}: adjusted p"));
    }
    assert_eq!(
        by_metric("cost").adjusted_p_value,
        None,
        "guardrails use raw p-values"
    );
}

#[test]
fn degenerate_statistics_are_reported_not_computable_never_nan() {
    let experiment = experiment(vec![metric(
        "quality",
        MetricDirection::HigherIsBetter,
        MetricRole::Primary,
    )]);
    let mut tally = Tally::new(&experiment);
    for _ in 0..60 {
        tally.add_record("a", "quality", 1.0, "");
        tally.add_record("b", "quality", 1.0, "");
    }
    let results = analyse(&experiment, &tally);
    let comparison = &results.comparisons[0];
    assert!(comparison.comparison.relative.is_err() && comparison.comparison.absolute.is_err());
    assert_eq!(results.recommendation, CONTINUE);
    assert!(
        results.reasons.iter().any(|r| r.contains("not computable")),
        "{:?}",
        results.reasons
    );
}

#[test]
fn a_negative_control_mean_does_not_flip_better_and_worse() {
    // A log-probability: higher (closer to 0) is better; control -2, treatment -1.
    let experiment = experiment(vec![metric(
        "logprob",
        MetricDirection::HigherIsBetter,
        MetricRole::Primary,
    )]);
    let mut tally = Tally::new(&experiment);
    fill(&mut tally, "a", "logprob", -2.0, 100);
    fill(&mut tally, "b", "logprob", -1.0, 100);
    let results = analyse(&experiment, &tally);
    assert_eq!(
        results.winner_variant_id.as_deref(),
        Some("b"),
        "{:?}",
        results.reasons
    );
}

#[test]
fn uncomputable_tests_still_count_in_the_holm_family() {
    let experiment = experiment(vec![
        metric(
            "quality",
            MetricDirection::HigherIsBetter,
            MetricRole::Primary,
        ),
        metric(
            "converted",
            MetricDirection::HigherIsBetter,
            MetricRole::Secondary,
        ),
    ]);
    let mut tally = Tally::new(&experiment);
    fill(&mut tally, "a", "quality", 1.0, 100);
    fill(&mut tally, "b", "quality", 1.05, 100);
    // No conversions yet in control: its mean is 0, so that test is not computable.
    for _ in 0..100 {
        tally.add_record("a", "converted", 0.0, "");
        tally.add_record("b", "converted", 0.0, "");
    }
    let results = analyse(&experiment, &tally);
    let quality = results
        .comparisons
        .iter()
        .find(|c| c.metric == "quality")
        .unwrap();
    // From gbstats and statsmodels' Holm over [p, 1.0], not from this crate:
    // `decisions_reference.py`. Twice the raw p: the family has two tests.
    let raw = quality.comparison.relative.unwrap().p_value;
    assert_close(raw, 0.23370444974065263, "quality: raw p");
    assert_close(
        quality.adjusted_p_value.unwrap(),
        0.46740889948130526,
        "quality: adjusted p in a family of two",
    );
}
