//! Sentence BLEU exactly as sacrebleu 2.6 `sentence_bleu(hypothesis, [reference])` with
//! its defaults: the `13a` tokenizer, case-sensitive, 4-gram, effective order, and
//! `exp` smoothing (mteval's method 3). The score is divided by 100.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::text::{is_python_whitespace, python_split};

const MAX_ORDER: usize = 4;

/// The 13a post-tokenizer's rules, applied in order with leftmost, non-overlapping
/// replacement (as Python's `re.sub`).
static RULES: LazyLock<[(Regex, &'static str); 4]> = LazyLock::new(|| {
    let rule =
        |pattern: &str, replacement| (Regex::new(pattern).expect("a valid pattern"), replacement);
    [
        // Symbols: `{|}~`, `[\]^_`, space to `&`, `(` to `+`, `:` to `@`, and `/`.
        rule(
            r"([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40\x2F])",
            " ${1} ",
        ),
        // Period and comma unless preceded by a digit.
        rule(r"([^0-9])([\.,])", "${1} ${2} "),
        // Period and comma unless followed by a digit.
        rule(r"([\.,])([^0-9])", " ${1} ${2}"),
        // Dash when preceded by a digit.
        rule(r"([0-9])(-)", "${1} ${2} "),
    ]
});

/// sacrebleu's `13a` tokenization of one segment (after its `rstrip`).
fn tokenize_13a(text: &str) -> Vec<String> {
    let mut line = text
        .trim_end_matches(is_python_whitespace)
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (pattern, replacement) in RULES.iter() {
        line = pattern.replace_all(&line, *replacement).into_owned();
    }
    python_split(&line).map(str::to_owned).collect()
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_default() += 1;
    }
    counts
}

/// sacrebleu's sentence BLEU of `hypothesis` against one `reference`, in [0, 1] (it can
/// exceed 1 by a rounding error for identical texts, as sacrebleu's does).
pub fn sentence_bleu(hypothesis: &str, reference: &str) -> f64 {
    let hyp = tokenize_13a(hypothesis);
    let refs = tokenize_13a(reference);
    let mut correct = [0usize; MAX_ORDER];
    let mut total = [0usize; MAX_ORDER];
    for n in 1..=MAX_ORDER {
        let reference_counts = ngram_counts(&refs, n);
        for (gram, count) in ngram_counts(&hyp, n) {
            total[n - 1] += count;
            correct[n - 1] += count.min(reference_counts.get(gram).copied().unwrap_or(0));
        }
    }
    if correct.iter().all(|c| *c == 0) {
        return 0.0;
    }
    let (sys_len, ref_len) = (hyp.len() as f64, refs.len() as f64);
    let brevity = if sys_len < ref_len {
        if sys_len > 0.0 {
            (1.0 - ref_len / sys_len).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    // Percent, in sacrebleu's order of operations, so the result matches to the bit.
    let mut precisions = [0.0f64; MAX_ORDER];
    let mut smooth = 1.0f64;
    let mut order = MAX_ORDER;
    for n in 1..=MAX_ORDER {
        if total[n - 1] == 0 {
            break;
        }
        order = n;
        precisions[n - 1] = if correct[n - 1] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n - 1] as f64)
        } else {
            100.0 * correct[n - 1] as f64 / total[n - 1] as f64
        };
    }
    let log_sum: f64 = precisions[..order]
        .iter()
        .map(|p| if *p == 0.0 { -9_999_999_999.0 } else { p.ln() })
        .sum();
    brevity * (log_sum / order as f64).exp() / 100.0
}

#[cfg(test)]
mod tests {
    use super::tokenize_13a;

    #[test]
    fn the_13a_tokenizer_splits_as_sacrebleu() {
        assert_eq!(
            tokenize_13a("Hello, world! It's 3.14."),
            ["Hello", ",", "world", "!", "It's", "3.14", "."]
        );
        assert_eq!(
            tokenize_13a("1990-2000 a-b &amp;lt;"),
            ["1990", "-", "2000", "a-b", "<"]
        );
        assert_eq!(tokenize_13a("a.,b"), ["a", ".", ",", "b"]);
    }
}
