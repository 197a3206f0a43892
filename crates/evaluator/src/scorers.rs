//! Scorers: each turns a model's output, and the sample's expected output, into a score
//! in [0, 1]. A run's metric config names one (`"exact_match"`) with parameters; the
//! config is checked once, when the scorer is built, so a bad parameter is refused
//! before a run starts rather than failing on every sample.

mod bleu;
mod heuristic;
mod json;
mod rouge;
mod text;

use regex::Regex;
use serde_json::{Map, Value};

pub use self::bleu::sentence_bleu;
pub use self::heuristic::{heuristic_score, HeuristicWeights};
pub use self::rouge::rouge_l;
pub use self::text::{levenshtein_similarity, token_f1};

/// The scorer names a metric config may use.
pub const SCORER_NAMES: &[&str] = &[
    "exact_match",
    "contains",
    "contains_any",
    "contains_all",
    "regex",
    "json_valid",
    "json_match",
    "levenshtein",
    "token_f1",
    "bleu",
    "rouge_l",
    "heuristic",
];

/// Why a scorer config is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScorerError {
    /// No scorer has this name.
    #[error("unknown scorer {0:?}; known scorers: {known}", known = SCORER_NAMES.join(", "))]
    Unknown(String),
    /// A parameter is missing, of the wrong type, or invalid.
    #[error("params.{param}: {message}")]
    InvalidParam {
        /// The parameter.
        param: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(param: &str, message: impl Into<String>) -> ScorerError {
    ScorerError::InvalidParam {
        param: param.to_owned(),
        message: message.into(),
    }
}

/// A configured scorer.
#[derive(Debug, Clone)]
pub enum Scorer {
    /// 1 when the output equals the expected output (optionally trimmed, ignoring case).
    ExactMatch {
        /// Compare without surrounding whitespace (default true).
        trim: bool,
        /// Compare case-insensitively (default false).
        ignore_case: bool,
    },
    /// 1 when the output contains `value` (default: the expected output).
    Contains {
        /// The text to find; the expected output when unset.
        value: Option<String>,
        /// Case-insensitive (default false).
        ignore_case: bool,
    },
    /// 1 when the output contains any of `values`.
    ContainsAny {
        /// At least one.
        values: Vec<String>,
        /// Case-insensitive (default false).
        ignore_case: bool,
    },
    /// The share of `values` the output contains (1 when all).
    ContainsAll {
        /// At least one.
        values: Vec<String>,
        /// Case-insensitive (default false).
        ignore_case: bool,
    },
    /// 1 when `pattern` matches the output: anywhere, or the whole output.
    Regex {
        /// The compiled pattern (anchored at both ends for a full match).
        pattern: Regex,
        /// Whether the whole output must match (default false: search).
        full_match: bool,
    },
    /// 1 when the output parses as JSON.
    JsonValid,
    /// 1 when output and expected output parse to equal JSON (object key order ignored).
    JsonMatch,
    /// Normalised Levenshtein similarity over Unicode code points.
    Levenshtein,
    /// SQuAD v1.1 token F1.
    TokenF1,
    /// sacrebleu's sentence BLEU / 100.
    Bleu,
    /// rouge-score's ROUGE-L F-measure.
    RougeL,
    /// The seed's weighted Jaccard / coverage / length-ratio score.
    Heuristic(HeuristicWeights),
}

fn bool_param(params: &Map<String, Value>, name: &str, default: bool) -> Result<bool, ScorerError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(name, format!("must be true or false, not {other}"))),
    }
}

fn string_param(params: &Map<String, Value>, name: &str) -> Result<Option<String>, ScorerError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(name, format!("must be a string, not {other}"))),
    }
}

fn strings_param(params: &Map<String, Value>, name: &str) -> Result<Vec<String>, ScorerError> {
    let Some(Value::Array(items)) = params.get(name) else {
        return Err(invalid(name, "is required: a non-empty list of strings"));
    };
    if items.is_empty() {
        return Err(invalid(name, "must not be empty"));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(invalid(name, format!("must hold strings, not {other}"))),
        })
        .collect()
}

/// Refuses parameters the scorer does not take (a typo would otherwise be ignored).
fn only(params: &Map<String, Value>, allowed: &[&str]) -> Result<(), ScorerError> {
    match params.keys().find(|key| !allowed.contains(&key.as_str())) {
        None => Ok(()),
        Some(key) if allowed.is_empty() => Err(invalid(key, "this scorer takes no parameters")),
        Some(key) => Err(invalid(
            key,
            format!(
                "unknown parameter; this scorer takes {}",
                allowed.join(", ")
            ),
        )),
    }
}

impl Scorer {
    /// Builds the scorer `name` with `params`. `metric` (the metric's name) picks the
    /// heuristic's default weights, as the seed did.
    pub fn from_config(
        name: &str,
        params: &Map<String, Value>,
        metric: &str,
    ) -> Result<Self, ScorerError> {
        let scorer = match name {
            "exact_match" => {
                only(params, &["trim", "ignore_case"])?;
                Self::ExactMatch {
                    trim: bool_param(params, "trim", true)?,
                    ignore_case: bool_param(params, "ignore_case", false)?,
                }
            }
            "contains" => {
                only(params, &["value", "ignore_case"])?;
                Self::Contains {
                    value: string_param(params, "value")?,
                    ignore_case: bool_param(params, "ignore_case", false)?,
                }
            }
            "contains_any" | "contains_all" => {
                only(params, &["values", "ignore_case"])?;
                let values = strings_param(params, "values")?;
                let ignore_case = bool_param(params, "ignore_case", false)?;
                if name == "contains_any" {
                    Self::ContainsAny {
                        values,
                        ignore_case,
                    }
                } else {
                    Self::ContainsAll {
                        values,
                        ignore_case,
                    }
                }
            }
            "regex" => {
                only(params, &["pattern", "full_match", "ignore_case"])?;
                let Some(pattern) = string_param(params, "pattern")? else {
                    return Err(invalid("pattern", "is required"));
                };
                let full_match = bool_param(params, "full_match", false)?;
                // A full match is the pattern anchored at both ends; searching and then
                // checking the span would miss `a|ab` matching all of "ab".
                let source = if full_match {
                    format!(r"\A(?:{pattern})\z")
                } else {
                    pattern
                };
                let pattern = regex::RegexBuilder::new(&source)
                    .case_insensitive(bool_param(params, "ignore_case", false)?)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| invalid("pattern", format!("does not compile: {e}")))?;
                Self::Regex {
                    pattern,
                    full_match,
                }
            }
            "json_valid" => {
                only(params, &[])?;
                Self::JsonValid
            }
            "json_match" => {
                only(params, &[])?;
                Self::JsonMatch
            }
            "levenshtein" => {
                only(params, &[])?;
                Self::Levenshtein
            }
            "token_f1" => {
                only(params, &[])?;
                Self::TokenF1
            }
            "bleu" => {
                only(params, &[])?;
                Self::Bleu
            }
            "rouge_l" => {
                only(params, &[])?;
                Self::RougeL
            }
            "heuristic" => {
                only(params, &["profile"])?;
                let weights = match string_param(params, "profile")? {
                    None => HeuristicWeights::for_metric(metric),
                    Some(profile) => HeuristicWeights::for_profile(&profile)
                        .ok_or_else(|| invalid("profile", format!("{profile:?} is not correctness, completeness, conciseness or balanced")))?,
                };
                Self::Heuristic(weights)
            }
            other => return Err(ScorerError::Unknown(other.to_owned())),
        };
        Ok(scorer)
    }

    /// Scores `output` against `expected`; always in [0, 1].
    pub fn score(&self, output: &str, expected: &str) -> f64 {
        let fold = |text: &str, ignore_case: bool| {
            if ignore_case {
                text.to_lowercase()
            } else {
                text.to_owned()
            }
        };
        let hit = |found: bool| f64::from(u8::from(found));
        match self {
            Self::ExactMatch { trim, ignore_case } => {
                let (mut a, mut b) = (output, expected);
                if *trim {
                    (a, b) = (a.trim(), b.trim());
                }
                hit(fold(a, *ignore_case) == fold(b, *ignore_case))
            }
            Self::Contains { value, ignore_case } => {
                let needle = value.as_deref().unwrap_or(expected);
                hit(fold(output, *ignore_case).contains(&fold(needle, *ignore_case)))
            }
            Self::ContainsAny {
                values,
                ignore_case,
            } => {
                let haystack = fold(output, *ignore_case);
                hit(values
                    .iter()
                    .any(|v| haystack.contains(&fold(v, *ignore_case))))
            }
            Self::ContainsAll {
                values,
                ignore_case,
            } => {
                let haystack = fold(output, *ignore_case);
                let found = values
                    .iter()
                    .filter(|v| haystack.contains(&fold(v, *ignore_case)))
                    .count();
                found as f64 / values.len() as f64
            }
            Self::Regex { pattern, .. } => hit(pattern.is_match(output)),
            Self::JsonValid => hit(serde_json::from_str::<Value>(output).is_ok()),
            Self::JsonMatch => hit(json::json_equal(output, expected)),
            Self::Levenshtein => levenshtein_similarity(output, expected),
            Self::TokenF1 => token_f1(output, expected),
            Self::Bleu => sentence_bleu(output, expected),
            Self::RougeL => rouge_l(output, expected),
            Self::Heuristic(weights) => heuristic_score(output, expected, *weights),
        }
    }
}
