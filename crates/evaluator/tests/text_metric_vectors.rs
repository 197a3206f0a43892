//! The text scorers and McNemar's test must equal their reference implementations:
//! sacrebleu (BLEU), rouge-score (ROUGE-L), rapidfuzz (Levenshtein), the official SQuAD
//! v1.1 script (token F1) and statsmodels (McNemar, exact). The vectors come from those
//! packages (`tests/vectors/generate_text_metrics.py`).

use llmops_evaluator::mcnemar::mcnemar_exact;
use llmops_evaluator::scorers::{levenshtein_similarity, rouge_l, sentence_bleu, token_f1};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    bleu: Vec<Bleu>,
    rouge_l: Vec<Rouge>,
    levenshtein: Vec<Levenshtein>,
    token_f1: Vec<TokenF1>,
    mcnemar: Vec<McNemar>,
}

#[derive(Deserialize)]
struct Bleu {
    hypothesis: String,
    reference: String,
    score: f64,
}

#[derive(Deserialize)]
struct Rouge {
    prediction: String,
    reference: String,
    fmeasure: f64,
}

#[derive(Deserialize)]
struct Levenshtein {
    a: String,
    b: String,
    similarity: f64,
}

#[derive(Deserialize)]
struct TokenF1 {
    prediction: String,
    reference: String,
    f1: f64,
}

#[derive(Deserialize)]
struct McNemar {
    b: u64,
    c: u64,
    p_value: f64,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("vectors/text_metrics.json")).expect("the vectors parse")
}

/// Checks every case, reporting all that differ by more than `tolerance`. Every reference
/// is a finite number (JSON has no NaN or infinity), so a result must be finite too: a
/// NaN compares false with everything, and `|NaN - x| > tolerance` would let it pass.
fn check<T>(name: &str, cases: &[T], tolerance: f64, compute: impl Fn(&T) -> (f64, f64, String)) {
    assert!(cases.len() >= 40, "{name}: the vectors cover the cases");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let (actual, expected, label) = compute(case);
            assert!(expected.is_finite(), "{label}: the reference is a number");
            let agrees = actual.is_finite() && (actual - expected).abs() <= tolerance;
            (!agrees).then(|| format!("{label}: expected {expected}, got {actual}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{name}: {} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn bleu_equals_sacrebleu() {
    check("bleu", &vectors().bleu, 1e-12, |c| {
        (
            sentence_bleu(&c.hypothesis, &c.reference),
            c.score,
            format!("{:?} vs {:?}", c.hypothesis, c.reference),
        )
    });
}

#[test]
fn rouge_l_equals_rouge_score() {
    check("rouge_l", &vectors().rouge_l, 1e-12, |c| {
        (
            rouge_l(&c.prediction, &c.reference),
            c.fmeasure,
            format!("{:?} vs {:?}", c.prediction, c.reference),
        )
    });
}

#[test]
fn levenshtein_equals_rapidfuzz() {
    check("levenshtein", &vectors().levenshtein, 1e-12, |c| {
        (
            levenshtein_similarity(&c.a, &c.b),
            c.similarity,
            format!("{:?} vs {:?}", c.a, c.b),
        )
    });
}

#[test]
fn token_f1_equals_the_squad_script() {
    check("token_f1", &vectors().token_f1, 1e-12, |c| {
        (
            token_f1(&c.prediction, &c.reference),
            c.f1,
            format!("{:?} vs {:?}", c.prediction, c.reference),
        )
    });
}

#[test]
fn mcnemar_equals_statsmodels() {
    check("mcnemar", &vectors().mcnemar, 1e-12, |c| {
        (
            mcnemar_exact(c.b, c.c),
            c.p_value,
            format!("b={} c={}", c.b, c.c),
        )
    });
}
