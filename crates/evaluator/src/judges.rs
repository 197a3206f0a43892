//! LLM judges: a model scores another model's output. `llm_judge` asks one provider;
//! `panel` asks several and takes their consensus (the seed's debate evaluation),
//! recording each judge's score and their spread.
//!
//! A judge answers with lines `SCORE_<criterion>: <number>`; the line for the metric's
//! criterion is its score. A score outside [0, 1] is an error, or clamped when the
//! metric's params say `out_of_range = "clamp"`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

/// The rubric used when a judge metric names no prompt from the registry. The
/// placeholders are filled in by plain substitution.
pub const BUILT_IN_RUBRIC: &str = "You are an impartial judge of a language model's answer.

Task given to the model:
{prompt}

Model's answer:
{response}

Reference answer (may be empty):
{expected}

Context (may be empty):
{context}

Judge the answer on the criterion \"{criterion}\". Reply with a short justification, then \
one line of exactly this form, with a number between 0 (worst) and 1 (best):
SCORE_{criterion}: <number>";

static SCORE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*\**SCORE_([A-Za-z0-9_.\-]+)\**\s*[:=]\s*\**\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
        .expect("the score line pattern compiles")
});

/// Every `SCORE_<name>: <number>` line of a judge's answer, by lowercased name; the
/// first line for a name wins.
pub fn parse_scores(answer: &str) -> BTreeMap<String, f64> {
    let mut scores = BTreeMap::new();
    for captures in SCORE_LINE.captures_iter(answer) {
        if let Ok(value) = captures[2].parse::<f64>() {
            scores.entry(captures[1].to_lowercase()).or_insert(value);
        }
    }
    scores
}

/// What to do with a score outside [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfRange {
    /// The sample errors.
    Error,
    /// The score is clamped into [0, 1].
    Clamp,
}

/// How a panel combines its judges' scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consensus {
    /// The mean.
    Mean,
    /// The median (the mean of the middle two for an even panel).
    Median,
}

impl Consensus {
    /// The consensus of `scores` (not empty).
    pub fn combine(self, scores: &[f64]) -> f64 {
        match self {
            Self::Mean => scores.iter().sum::<f64>() / scores.len() as f64,
            Self::Median => {
                let mut sorted = scores.to_vec();
                sorted.sort_by(f64::total_cmp);
                let middle = sorted.len() / 2;
                if sorted.len() % 2 == 1 {
                    sorted[middle]
                } else {
                    (sorted[middle - 1] + sorted[middle]) / 2.0
                }
            }
        }
    }
}

/// The judge prompt: built in, or a prompt from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgePrompt {
    /// [`BUILT_IN_RUBRIC`].
    BuiltIn,
    /// A registry prompt, rendered with whichever of `prompt`, `response`, `expected`,
    /// `context`, `input` and `criterion` it declares.
    Registry {
        /// The prompt's name.
        name: String,
        /// A label; empty for the active version.
        label: String,
    },
}

/// A configured judge metric (`llm_judge` with one judge, `panel` with several).
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// The providers that judge, in order.
    pub judges: Vec<String>,
    /// How several judges' scores combine.
    pub consensus: Consensus,
    /// What the judges are asked.
    pub prompt: JudgePrompt,
    /// The `SCORE_<criterion>` line read.
    pub criterion: String,
    /// Scores outside [0, 1].
    pub out_of_range: OutOfRange,
}

/// Why a judge config is refused: the parameter and the reason.
pub type ParamError = (String, String);

fn param_error(param: &str, message: impl Into<String>) -> ParamError {
    (param.to_owned(), message.into())
}

fn text_param(params: &Map<String, Value>, name: &str) -> Result<Option<String>, ParamError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(param_error(name, format!("must be a string, not {other}"))),
    }
}

impl JudgeConfig {
    /// Reads a judge metric's params. `panel` takes `judges` (a list of provider names,
    /// at least two); `llm_judge` takes `judge` (one). Both take `prompt` and
    /// `prompt_label` (a registry prompt), `criterion` (default: the metric's name),
    /// `out_of_range` (`error` or `clamp`) and, for panels, `consensus` (`mean` or
    /// `median`). `known` says whether a provider name exists.
    pub fn from_params(
        scorer: &str,
        metric: &str,
        params: &Map<String, Value>,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Self, ParamError> {
        let panel = scorer == "panel";
        let allowed: &[&str] = if panel {
            &[
                "judges",
                "consensus",
                "prompt",
                "prompt_label",
                "criterion",
                "out_of_range",
            ]
        } else {
            &[
                "judge",
                "prompt",
                "prompt_label",
                "criterion",
                "out_of_range",
            ]
        };
        if let Some(key) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(param_error(
                key,
                format!("unknown parameter; {scorer} takes {}", allowed.join(", ")),
            ));
        }
        let judges = if panel {
            let Some(Value::Array(items)) = params.get("judges") else {
                return Err(param_error(
                    "judges",
                    "is required: a list of at least two provider names",
                ));
            };
            let judges = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(param_error(
                        "judges",
                        format!("must hold provider names, not {other}"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if judges.len() < 2 {
                return Err(param_error("judges", "a panel needs at least two judges"));
            }
            judges
        } else {
            let Some(judge) = text_param(params, "judge")? else {
                return Err(param_error(
                    "judge",
                    "is required: the provider that judges",
                ));
            };
            vec![judge]
        };
        let field = if panel { "judges" } else { "judge" };
        for judge in &judges {
            if !known(judge) {
                return Err(param_error(
                    field,
                    format!("{judge:?} is not a configured provider"),
                ));
            }
        }
        let consensus = match text_param(params, "consensus")?.as_deref() {
            None | Some("mean") => Consensus::Mean,
            Some("median") => Consensus::Median,
            Some(other) => {
                return Err(param_error(
                    "consensus",
                    format!("{other:?} is not mean or median"),
                ))
            }
        };
        let out_of_range = match text_param(params, "out_of_range")?.as_deref() {
            None | Some("error") => OutOfRange::Error,
            Some("clamp") => OutOfRange::Clamp,
            Some(other) => {
                return Err(param_error(
                    "out_of_range",
                    format!("{other:?} is not error or clamp"),
                ))
            }
        };
        let prompt = match text_param(params, "prompt")? {
            None => {
                if params.contains_key("prompt_label") {
                    return Err(param_error("prompt_label", "needs a prompt"));
                }
                JudgePrompt::BuiltIn
            }
            Some(name) => JudgePrompt::Registry {
                name,
                label: text_param(params, "prompt_label")?.unwrap_or_default(),
            },
        };
        let criterion = text_param(params, "criterion")?.unwrap_or_else(|| metric.to_owned());
        if !criterion
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(param_error(
                "criterion",
                format!("{criterion:?} may hold only letters, digits, '_', '-' and '.' (it is read from a SCORE_<criterion> line)"),
            ));
        }
        Ok(Self {
            judges,
            consensus,
            prompt,
            criterion,
            out_of_range,
        })
    }

    /// The criterion's score in one judge's answer, checked against [0, 1].
    pub fn read_score(&self, answer: &str) -> Result<f64, String> {
        let scores = parse_scores(answer);
        let Some(score) = scores.get(&self.criterion.to_lowercase()).copied() else {
            let excerpt: String = answer.chars().take(200).collect();
            return Err(format!(
                "the judge gave no SCORE_{} line (answer began: {excerpt:?})",
                self.criterion
            ));
        };
        if (0.0..=1.0).contains(&score) {
            return Ok(score);
        }
        match self.out_of_range {
            OutOfRange::Clamp if score.is_finite() => Ok(score.clamp(0.0, 1.0)),
            _ => Err(format!(
                "the judge's SCORE_{} of {score} is outside [0, 1]",
                self.criterion
            )),
        }
    }
}

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{(prompt|response|expected|context|criterion)\}")
        .expect("the placeholder pattern compiles")
});

/// Fills the built-in rubric in one pass, so text inside the values (a model's answer
/// that happens to say `{prompt}`) is never substituted.
pub fn built_in_rubric(
    prompt: &str,
    response: &str,
    expected: &str,
    context: &str,
    criterion: &str,
) -> String {
    PLACEHOLDER
        .replace_all(BUILT_IN_RUBRIC, |captures: &regex::Captures<'_>| {
            match &captures[1] {
                "prompt" => prompt,
                "response" => response,
                "expected" => expected,
                "context" => context,
                _ => criterion,
            }
            .to_owned()
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(params: Value) -> Result<JudgeConfig, ParamError> {
        let Value::Object(params) = params else {
            unreachable!()
        };
        let scorer = if params.contains_key("judges") {
            "panel"
        } else {
            "llm_judge"
        };
        JudgeConfig::from_params(scorer, "helpfulness", &params, &|name| name != "missing")
    }

    #[test]
    fn score_lines_are_found_in_free_text() {
        let answer = "The answer is mostly right.\nSCORE_helpfulness: 0.8\n  SCORE_Accuracy = 1\n**SCORE_tone**: .5\nSCORE_helpfulness: 0.1";
        let scores = parse_scores(answer);
        assert_eq!(scores["helpfulness"], 0.8, "the first line for a name wins");
        assert_eq!(scores["accuracy"], 1.0);
        assert_eq!(scores["tone"], 0.5);
        assert!(parse_scores("no score here; SCORE_x is mentioned mid-line: 0.3").is_empty());
    }

    #[test]
    fn the_criterion_defaults_to_the_metric_and_out_of_range_is_refused_or_clamped() {
        let strict = config(serde_json::json!({"judge": "gpt"})).unwrap();
        assert_eq!(strict.criterion, "helpfulness");
        assert_eq!(strict.read_score("SCORE_HELPFULNESS: 0.25"), Ok(0.25));
        assert!(strict
            .read_score("SCORE_helpfulness: 7")
            .unwrap_err()
            .contains("outside [0, 1]"));
        assert!(strict
            .read_score("I refuse")
            .unwrap_err()
            .contains("no SCORE_helpfulness line"));
        let lenient = config(serde_json::json!({"judge": "gpt", "out_of_range": "clamp"})).unwrap();
        assert_eq!(lenient.read_score("SCORE_helpfulness: 7"), Ok(1.0));
        assert_eq!(lenient.read_score("SCORE_helpfulness: -2"), Ok(0.0));
    }

    #[test]
    fn bad_params_name_the_parameter() {
        let cases = [
            (serde_json::json!({}), "judge"),
            (serde_json::json!({"judge": "missing"}), "judge"),
            (
                serde_json::json!({"judge": "gpt", "temperature": 1}),
                "temperature",
            ),
            (serde_json::json!({"judges": ["gpt"]}), "judges"),
            (serde_json::json!({"judges": ["gpt", "missing"]}), "judges"),
            (
                serde_json::json!({"judges": ["a", "b"], "consensus": "mode"}),
                "consensus",
            ),
            (
                serde_json::json!({"judge": "gpt", "out_of_range": "ignore"}),
                "out_of_range",
            ),
            (
                serde_json::json!({"judge": "gpt", "criterion": "two words"}),
                "criterion",
            ),
            (
                serde_json::json!({"judge": "gpt", "prompt_label": "prod"}),
                "prompt_label",
            ),
        ];
        for (params, field) in cases {
            let err = config(params.clone()).expect_err(&params.to_string());
            assert_eq!(err.0, field, "{params}: {}", err.1);
        }
    }

    #[test]
    fn consensus_is_mean_or_median() {
        assert_eq!(Consensus::Mean.combine(&[0.2, 0.4, 0.9]), 0.5);
        assert_eq!(Consensus::Median.combine(&[0.2, 0.9, 0.4]), 0.4);
        assert_eq!(Consensus::Median.combine(&[0.2, 0.9, 0.4, 0.6]), 0.5);
    }

    #[test]
    fn the_rubric_never_substitutes_inside_the_answer() {
        let text = built_in_rubric("Say {response}", "I said {prompt}", "", "", "accuracy");
        assert!(text.contains("Say {response}"));
        assert!(text.contains("I said {prompt}"));
        assert!(text.contains("SCORE_accuracy: <number>"));
    }
}
