//! The generation record and the queries over it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationStatus {
    /// The model answered.
    #[default]
    Ok,
    /// The call failed (`error` says how).
    Error,
}

impl GenerationStatus {
    /// The stored name (`ok`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// One call of a model by an application.
///
/// Stored as JSON without its empty, zero and absent fields (about 180 of the 990 bytes of
/// a typical record, written once to the WAL and again to the table); `#[serde(default)]`
/// reads them back.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Generation {
    /// Given by the client (idempotency), else a UUIDv7.
    pub id: String,
    /// The render it came from, as `RenderPrompt` returned it; empty when none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub render_id: String,
    /// The prompt.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prompt_name: String,
    /// The prompt version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prompt_version: String,
    /// The experiment that chose the version, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub experiment_id: String,
    /// The experiment's variant.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant_id: String,
    /// The end user.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// The model.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// The provider (`openai`, a configured provider's name...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// What the model was given (rendered text, or messages as JSON).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub input: String,
    /// What it answered.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Whether `input` was cut to the size limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub input_truncated: bool,
    /// Whether `output` was cut to the size limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
    /// How it ended.
    pub status: GenerationStatus,
    /// Why it failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Wall time of the call.
    pub latency_ms: f64,
    /// Time to the first streamed token; 0 when not streamed.
    #[serde(skip_serializing_if = "is_zero")]
    pub time_to_first_token_ms: f64,
    /// Tokens in.
    pub input_tokens: u64,
    /// Tokens out.
    pub output_tokens: u64,
    /// Cost as given, or computed from the model's prices; `None` when neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Free-form.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// When the call started (defaults to when it was logged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    /// When llmops stored it.
    pub logged_at: Option<DateTime<Utc>>,
    /// What online evaluations made of it, oldest first. Stored apart from the record
    /// (one row per evaluation) and joined when it is read.
    #[serde(skip)]
    pub scores: Vec<GenerationScore>,
}

/// One online evaluation's verdict on a generation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationScore {
    /// The online evaluation.
    pub online_evaluation_id: String,
    /// Per metric, in [0, 1].
    pub scores: BTreeMap<String, f64>,
    /// Every metric reached its threshold.
    pub passed: bool,
    /// The first metric below its threshold, or why nothing was scored.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failure_reason: String,
    /// Why scoring failed (a judge did not answer, the generation had failed...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Each judge's verdict, with its reasoning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub judges: Vec<JudgeVerdict>,
    /// Cost of the judges' calls, where the providers report it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_cost: Option<f64>,
    /// When it was scored.
    pub scored_at: Option<DateTime<Utc>>,
}

/// What one judge said of one metric.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JudgeVerdict {
    /// The metric.
    pub metric: String,
    /// The judge (a provider's name).
    pub judge: String,
    /// Its score.
    pub score: f64,
    /// Its answer: the justification before the score line.
    pub reasoning: String,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

impl Generation {
    /// The time generations are ordered by: the start, else when it was logged.
    pub fn time(&self) -> DateTime<Utc> {
        self.start_time
            .or(self.logged_at)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }
}

/// Prices of a model, per 1,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prices {
    /// Per 1,000 input tokens.
    pub input_per_1k: f64,
    /// Per 1,000 output tokens.
    pub output_per_1k: f64,
}

/// Which generations to list: every set filter must hold. Newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationQuery {
    /// Exactly this prompt.
    pub prompt_name: Option<String>,
    /// Exactly this version.
    pub prompt_version: Option<String>,
    /// Exactly this model.
    pub model: Option<String>,
    /// Exactly this experiment.
    pub experiment_id: Option<String>,
    /// Exactly this variant.
    pub variant_id: Option<String>,
    /// Exactly this user.
    pub user_id: Option<String>,
    /// Only this outcome.
    pub status: Option<GenerationStatus>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// Only generations older than this one (time, id): the previous page's last.
    pub before: Option<(DateTime<Utc>, String)>,
    /// At most this many.
    pub limit: usize,
}

impl GenerationQuery {
    /// Whether `generation` passes every filter (`before` and `limit` aside): what a
    /// live tail sends.
    pub fn matches(&self, generation: &Generation) -> bool {
        let same =
            |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        let time = generation.time();
        same(&self.prompt_name, &generation.prompt_name)
            && same(&self.prompt_version, &generation.prompt_version)
            && same(&self.model, &generation.model)
            && same(&self.experiment_id, &generation.experiment_id)
            && same(&self.variant_id, &generation.variant_id)
            && same(&self.user_id, &generation.user_id)
            && self.status.is_none_or(|status| status == generation.status)
            && self.since.is_none_or(|since| time >= since)
            && self.until.is_none_or(|until| time < until)
    }
}

/// A page of generations, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationPage {
    /// The generations.
    pub generations: Vec<Generation>,
    /// The last one's (time, id) when more follow.
    pub next: Option<(DateTime<Utc>, String)>,
}
