//! Character- and token-level similarity, with Python's string semantics where the
//! reference implementations rely on them.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// Python's `str.split()` / `str.strip()` whitespace: Unicode White_Space plus the
/// information separators U+001C-U+001F, which Python counts and Rust does not.
pub(super) fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `text.split()`.
pub(super) fn python_split(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_python_whitespace).filter(|t| !t.is_empty())
}

/// `1 - distance / max(len)` over Unicode code points, as
/// `rapidfuzz.distance.Levenshtein.normalized_similarity`; two empty strings are 1.
pub fn levenshtein_similarity(a: &str, b: &str) -> f64 {
    strsim::normalized_levenshtein(a, b)
}

/// Runs of Python `re` word characters (letters, numbers, `_`; not combining marks).
static WORDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{L}\p{N}_]+").expect("a valid pattern"));

/// SQuAD v1.1's `normalize_answer`, split into tokens: lowercase, drop ASCII
/// punctuation, replace the whole words a/an/the with a space, split on whitespace.
fn squad_tokens(text: &str) -> Vec<String> {
    let lowered = text.to_lowercase();
    let stripped: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let without_articles =
        WORDS.replace_all(&stripped, |word: &regex::Captures<'_>| match &word[0] {
            "a" | "an" | "the" => " ".to_owned(),
            other => other.to_owned(),
        });
    python_split(&without_articles).map(str::to_owned).collect()
}

/// SQuAD v1.1 token F1: the harmonic mean of token precision and recall over the
/// normalised tokens, counting repeated tokens as often as both sides have them. No
/// common token (including both sides empty, as the v1.1 script has it) is 0.
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let predicted = squad_tokens(prediction);
    let expected = squad_tokens(reference);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for token in &expected {
        *counts.entry(token).or_default() += 1;
    }
    let mut common = 0usize;
    for token in &predicted {
        if let Some(count) = counts.get_mut(token.as_str()) {
            if *count > 0 {
                *count -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / predicted.len() as f64;
    let recall = common as f64 / expected.len() as f64;
    2.0 * precision * recall / (precision + recall)
}
