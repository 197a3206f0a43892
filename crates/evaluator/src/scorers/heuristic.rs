//! The seed's heuristic scorer: a weighted mix of token Jaccard similarity, coverage of
//! the expected tokens, and the length ratio, with weights chosen by the kind of metric.

use std::collections::HashSet;

/// Weights of Jaccard, coverage and length ratio; they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeuristicWeights {
    /// Token-set Jaccard similarity.
    pub jaccard: f64,
    /// Share of the expected tokens found in the output.
    pub coverage: f64,
    /// Shorter over longer token count.
    pub length: f64,
}

impl HeuristicWeights {
    /// Correctness-type metrics: mostly Jaccard.
    pub const CORRECTNESS: Self = Self {
        jaccard: 0.6,
        coverage: 0.25,
        length: 0.15,
    };
    /// Completeness-type metrics: mostly coverage.
    pub const COMPLETENESS: Self = Self {
        jaccard: 0.25,
        coverage: 0.6,
        length: 0.15,
    };
    /// Conciseness-type metrics: mostly the length ratio.
    pub const CONCISENESS: Self = Self {
        jaccard: 0.25,
        coverage: 0.15,
        length: 0.6,
    };
    /// Anything else: equal weights.
    pub const BALANCED: Self = Self {
        jaccard: 1.0 / 3.0,
        coverage: 1.0 / 3.0,
        length: 1.0 / 3.0,
    };

    /// The seed's default for a metric name: correctness/accuracy/precision,
    /// completeness/coverage/recall, conciseness/brevity/length, else balanced.
    pub fn for_metric(metric: &str) -> Self {
        let name = metric.to_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| name.contains(w));
        if any(&["correctness", "accuracy", "precision"]) {
            Self::CORRECTNESS
        } else if any(&["completeness", "coverage", "recall"]) {
            Self::COMPLETENESS
        } else if any(&["conciseness", "brevity", "length"]) {
            Self::CONCISENESS
        } else {
            Self::BALANCED
        }
    }

    /// A named profile.
    pub fn for_profile(profile: &str) -> Option<Self> {
        match profile {
            "correctness" => Some(Self::CORRECTNESS),
            "completeness" => Some(Self::COMPLETENESS),
            "conciseness" => Some(Self::CONCISENESS),
            "balanced" => Some(Self::BALANCED),
            _ => None,
        }
    }
}

/// Lowercased alphanumeric tokens.
fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The weighted score; both texts empty score 1, one empty 0.
pub fn heuristic_score(output: &str, expected: &str, weights: HeuristicWeights) -> f64 {
    let (out, exp) = (tokens(output), tokens(expected));
    if out.is_empty() && exp.is_empty() {
        return 1.0;
    }
    if out.is_empty() || exp.is_empty() {
        return 0.0;
    }
    let out_set: HashSet<&str> = out.iter().map(String::as_str).collect();
    let exp_set: HashSet<&str> = exp.iter().map(String::as_str).collect();
    let common = out_set.intersection(&exp_set).count() as f64;
    let jaccard = common / out_set.union(&exp_set).count() as f64;
    let coverage = common / exp_set.len() as f64;
    let length = out.len().min(exp.len()) as f64 / out.len().max(exp.len()) as f64;
    (weights.jaccard * jaccard + weights.coverage * coverage + weights.length * length)
        .clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_the_metric_name() {
        assert_eq!(
            HeuristicWeights::for_metric("answer_correctness"),
            HeuristicWeights::CORRECTNESS
        );
        assert_eq!(
            HeuristicWeights::for_metric("Recall"),
            HeuristicWeights::COMPLETENESS
        );
        assert_eq!(
            HeuristicWeights::for_metric("brevity"),
            HeuristicWeights::CONCISENESS
        );
        assert_eq!(
            HeuristicWeights::for_metric("helpfulness"),
            HeuristicWeights::BALANCED
        );
    }

    #[test]
    fn the_parts_combine_by_weight() {
        // Output tokens {the, cat, sat}, expected {the, cat, sat, down}: Jaccard 3/4,
        // coverage 3/4, length 3/4.
        let score = heuristic_score(
            "The cat sat.",
            "the cat sat down",
            HeuristicWeights::CORRECTNESS,
        );
        assert!((score - 0.75).abs() < 1e-12);
        let score = heuristic_score("cat", "the cat sat down", HeuristicWeights::CONCISENESS);
        assert!((score - (0.25 * 0.25 + 0.15 * 0.25 + 0.6 * 0.25)).abs() < 1e-12);
        assert_eq!(heuristic_score("", "", HeuristicWeights::BALANCED), 1.0);
        assert_eq!(heuristic_score("", "x", HeuristicWeights::BALANCED), 0.0);
    }
}
