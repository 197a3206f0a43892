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
    let confidence = results.confidence.unwrap();
    assert_eq!(
        results.recommendation,
        format!("Deploy variant b with {confidence:.1}% confidence")
    );
    assert!(
        results.reasons[0].contains("-10.0%"),
        "{:?}",
        results.reasons
    );
}

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
    assert_eq!(results.winner_variant_id, None);
    assert_eq!(results.recommendation, CONTINUE);
    assert!(
        results
            .reasons
            .iter()
            .any(|r| r.contains("significantly worse than control")),
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
    let raw: Vec<f64> = ["quality", "helpful"]
        .map(|m| by_metric(m).comparison.relative.unwrap().p_value)
        .to_vec();
    let expected = llmops_experiments::stats::holm::holm(&raw);
    assert_eq!(by_metric("quality").adjusted_p_value, Some(expected[0]));
    assert_eq!(by_metric("helpful").adjusted_p_value, Some(expected[1]));
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
    let raw = quality.comparison.relative.unwrap().p_value;
    let expected = llmops_experiments::stats::holm::holm(&[raw, 1.0])[0];
    assert_eq!(quality.adjusted_p_value, Some(expected));
    assert_eq!(expected, (2.0 * raw).min(1.0), "the family has two tests");
}
