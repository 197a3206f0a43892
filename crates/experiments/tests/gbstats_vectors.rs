//! Results must equal GrowthBook's `gbstats` 0.8.0 on the same sufficient statistics,
//! and the sample-ratio check and Holm must equal scipy and statsmodels. The vectors come
//! from those packages (`tests/vectors/generate_stats.py`, which calls their own classes).

use llmops_experiments::stats::holm::holm;
use llmops_experiments::stats::srm::srm_p_value;
use llmops_experiments::stats::ttest::{test, DifferenceType, NotComputable, TestSettings};
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

/// How far a figure may be from the reference, relative to the reference's size. An
/// absolute tolerance would leave small p-values (1e-8, 1e-22) unchecked, so every figure
/// is compared relatively. Our t distribution is statrs', not scipy's: on the committed
/// vectors the worst relative difference is 9.1e-9 (a confidence bound near 0), 2.3e-9
/// for a p-value, 2.9e-14 for a sample-ratio p-value and 0 for Holm; 1e-6 leaves a
/// hundredfold margin for another platform's libm and still tells any wrong formula.
const RELATIVE: f64 = 1e-6;

/// The fixed-horizon p-value is `2 * (1 - cdf)`, in gbstats and here, so it moves in
/// steps of `f64::EPSILON` (twice the spacing of doubles just below 1): gbstats' own
/// figure is no finer than that, and one vector is one step away from ours. Below 8.9e-10
/// such p-values are compared to within four steps; every other figure has no floor.
const FIXED_P_VALUE_FLOOR: f64 = 4.0 * f64::EPSILON;

/// Within `RELATIVE` of `expected`'s size, or within `floor`; never NaN or infinite (a
/// NaN fails every comparison, so it must not reach one unchecked).
fn close(actual: f64, expected: f64, floor: f64) -> bool {
    actual.is_finite() && (actual - expected).abs() <= (RELATIVE * expected.abs()).max(floor)
}

/// The reason we must give where gbstats reports `error`. gbstats checks a zero control
/// mean first (`ZERO_NEGATIVE_BASELINE_VARIATION`), then a variance that is not positive
/// (`ZERO_NEGATIVE_VARIANCE`), which includes every arm with fewer than 2 observations;
/// we report too few observations before either, as the more useful reason, so those
/// cases map by their sizes (gbstats refuses every one of them).
fn expected_reason(case: &TestCase, error: &str) -> NotComputable {
    let named = match error {
        "ZERO_NEGATIVE_BASELINE_VARIATION" => NotComputable::ZeroControlMean,
        "ZERO_NEGATIVE_VARIANCE" => NotComputable::ZeroVariance,
        other => panic!("gbstats error {other} has no counterpart here"),
    };
    if case.control.n < 2 || case.treatment.n < 2 {
        NotComputable::TooFewObservations
    } else {
        named
    }
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
            (Some(error), Err(reason)) => {
                let expected = expected_reason(case, error);
                if reason != expected {
                    failures.push(format!(
                        "case {i}: gbstats says {error} ({expected:?} here); we say {reason:?}"
                    ));
                }
            }
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
                let p_value_floor = if case.sequential {
                    0.0
                } else {
                    FIXED_P_VALUE_FLOOR
                };
                let floors = [0.0, 0.0, 0.0, p_value_floor];
                let agrees = (0..4).all(|k| close(actual[k], expected[k], floors[k]));
                if !agrees {
                    failures.push(format!("case {i}: expected {expected:?}, got {actual:?}"));
                }
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
            close(p, case.p_value, 0.0),
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
                close(*a, *e, 0.0),
                "case {i}: {:?}: expected {:?}, got {adjusted:?}",
                case.p_values,
                case.adjusted
            );
        }
    }
}
