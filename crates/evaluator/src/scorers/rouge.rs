//! ROUGE-L exactly as Google's `rouge-score` (0.1.2) computes it with its default
//! tokenizer and no stemmer: tokens are the runs of ASCII `[a-z0-9]` in the lowercased
//! text; the score is the F-measure of the longest common token subsequence.

/// rouge-score's default tokens.
fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The length of the longest common subsequence of two token lists.
fn lcs_length(a: &[String], b: &[String]) -> usize {
    let mut previous = vec![0usize; b.len() + 1];
    let mut current = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = if x == y {
                previous[j] + 1
            } else {
                current[j].max(previous[j + 1])
            };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The ROUGE-L F-measure of `prediction` against `reference`; 0 when either has no
/// tokens.
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let (predicted, target) = (tokens(prediction), tokens(reference));
    if predicted.is_empty() || target.is_empty() {
        return 0.0;
    }
    let lcs = lcs_length(&target, &predicted) as f64;
    let precision = lcs / predicted.len() as f64;
    let recall = lcs / target.len() as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}
