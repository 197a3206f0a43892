//! The online regression test must equal statsmodels' `proportions_ztest` (pooled,
//! `alternative="smaller"`); the vectors come from it (`vectors/generate_two_proportion.py`).

use llmops_evaluator::online::{two_proportion_smaller, PassCount};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    two_proportion_smaller: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    passed_new: u64,
    n_new: u64,
    passed_old: u64,
    n_old: u64,
    z: f64,
    p_value: f64,
}

#[test]
fn the_two_proportion_test_equals_statsmodels() {
    let vectors: Vectors =
        serde_json::from_str(include_str!("vectors/two_proportion.json")).unwrap();
    assert!(vectors.two_proportion_smaller.len() >= 100);
    for case in &vectors.two_proportion_smaller {
        let new = PassCount {
            passed: case.passed_new,
            scored: case.n_new,
        };
        let old = PassCount {
            passed: case.passed_old,
            scored: case.n_old,
        };
        let (z, p) = two_proportion_smaller(new, old).expect("defined");
        assert!(
            (z - case.z).abs() <= 1e-12 * case.z.abs().max(1.0),
            "z {z} != {}",
            case.z
        );
        // The normal CDF far in the tail: relative agreement.
        assert!(
            (p - case.p_value).abs() <= 1e-9 * case.p_value.max(1e-300)
                || (p - case.p_value).abs() < 1e-14,
            "p {p} != {} for {}/{} vs {}/{}",
            case.p_value,
            case.passed_new,
            case.n_new,
            case.passed_old,
            case.n_old
        );
    }
}
