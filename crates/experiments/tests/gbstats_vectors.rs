//! Results must equal GrowthBook's `gbstats` 0.8.0 on the same sufficient statistics,
//! and the sample-ratio check and Holm must equal scipy and statsmodels. The vectors come
//! from those packages (`tests/vectors/generate_stats.py`, which calls their own classes).

use llmops_experiments::stats::holm::holm;
use llmops_experiments::stats::srm::srm_p_value;
use llmops_experiments::stats::ttest::{test, DifferenceType, TestSettings};
use llmops_experiments::stats::Summary;
use llmops_experiments::MetricKind;
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    tests: Vec<TestCase>,
    srm: Vec<SrmCase>,
    holm: Vec<HolmCase>,
}

#[derive(Deserialize)]
struct Sums {
    n: u64,
    sum: f64,
    sum_squares: f64,
}

#[derive(Deserialize)]
struct TestCase {
    kind: String,
    control: Sums,
    treatment: Sums,
    alpha: f64,
    sequential: bool,
    tuning: f64,
    difference_type: String,
    expected: Option<f64>,
    ci_lower: Option<f64>,
    ci_upper: Option<f64>,
    p_value: Option<f64>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct SrmCase {
    observed: Vec<u64>,
    weights: Vec<f64>,
    p_value: f64,
}

#[derive(Deserialize)]
struct HolmCase {
    p_values: Vec<f64>,
    adjusted: Vec<f64>,
}

fn vectors() -> Vectors {
    let text = include_str!("vectors/stats.json");
    serde_json::from_str(text).expect("stats.json parses")
}

/// Within 1e-6, relative to the size of the value when it is larger than 1.
fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0)
}

#[test]
fn two_sample_tests_equal_gbstats() {
    let vectors = vectors();
    assert!(vectors.tests.len() > 300, "the vectors cover the cases");
    let mut failures = Vec::new();
    for (i, case) in vectors.tests.iter().enumerate() {
        let kind = match case.kind.as_str() {
            "mean" => MetricKind::Mean,
            "proportion" => MetricKind::Proportion,
            other => panic!("unknown kind {other}"),
        };
        let difference = match case.difference_type.as_str() {
            "relative" => DifferenceType::Relative,
            "absolute" => DifferenceType::Absolute,
            other => panic!("unknown difference type {other}"),
        };
        let summary = |s: &Sums| Summary::from_sums(s.n, s.sum, s.sum_squares);
        let settings = TestSettings {
            alpha: case.alpha,
            sequential_tuning: case.sequential.then_some(case.tuning),
        };
        let outcome = test(
            kind,
            &summary(&case.control),
            &summary(&case.treatment),
            difference,
            settings,
        );
        match (&case.error, outcome) {
            (Some(_), Err(_)) => {}
            (Some(error), Ok(estimate)) => {
                failures.push(format!(
                    "case {i}: gbstats says {error}, we computed {estimate:?}"
                ));
            }
            (None, Err(reason)) => {
                failures.push(format!(
                    "case {i}: gbstats computed it, we say {}",
                    reason.reason()
                ));
            }
            (None, Ok(estimate)) => {
                let expected = [case.expected, case.ci_lower, case.ci_upper, case.p_value]
                    .map(|v| v.expect("computed cases carry every figure"));
                let actual = [
                    estimate.estimate,
                    estimate.ci_lower,
                    estimate.ci_upper,
                    estimate.p_value,
                ];
                if !actual.iter().zip(&expected).all(|(a, e)| close(*a, *e)) {
                    failures.push(format!("case {i}: expected {expected:?}, got {actual:?}"));
                }
                assert!(actual.iter().all(|v| v.is_finite()), "case {i}: never NaN");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        vectors.tests.len(),
        failures.join("\n")
    );
}

#[test]
fn sample_ratio_check_equals_scipy_chisquare() {
    let vectors = vectors();
    assert!(vectors.srm.len() >= 40);
    for (i, case) in vectors.srm.iter().enumerate() {
        let p = srm_p_value(&case.observed, &case.weights).expect("counts to test");
        assert!(
            close(p, case.p_value),
            "case {i}: {:?} {:?}: expected {}, got {p}",
            case.observed,
            case.weights,
            case.p_value
        );
    }
}

#[test]
fn holm_equals_statsmodels() {
    let vectors = vectors();
    assert!(vectors.holm.len() >= 40);
    for (i, case) in vectors.holm.iter().enumerate() {
        let adjusted = holm(&case.p_values);
        assert_eq!(adjusted.len(), case.adjusted.len());
        for (a, e) in adjusted.iter().zip(&case.adjusted) {
            assert!(
                close(*a, *e),
                "case {i}: {:?}: expected {:?}, got {adjusted:?}",
                case.p_values,
                case.adjusted
            );
        }
    }
}
