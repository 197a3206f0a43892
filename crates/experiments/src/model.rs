//! The experiment records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::validate::ExperimentSpec;

/// The significance level when none is given.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// The sequential test's tuning parameter when none is given (gbstats' default).
pub const DEFAULT_SEQUENTIAL_TUNING: f64 = 5000.0;

/// Where an experiment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    /// Being set up: anything may change; no assignment, no metrics.
    Draft,
    /// Assigning users and recording metrics.
    Running,
    /// No assignment; metrics still recorded (late results of earlier assignments).
    Paused,
    /// Final, with an optional winner.
    Completed,
    /// Final, abandoned.
    Cancelled,
}

impl ExperimentStatus {
    /// The lowercase name used in messages and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the experiment has started (variants and weights are frozen).
    pub fn has_started(self) -> bool {
        !matches!(self, Self::Draft)
    }

    /// Whether metrics may be recorded: while running, and while paused for the late
    /// results of users assigned before the pause.
    pub fn accepts_metrics(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// How a metric's observations are summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Any finite number; compared by the mean.
    Mean,
    /// 0 or 1; compared by the rate of 1s.
    Proportion,
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricDirection {
    /// Quality, satisfaction, conversion.
    HigherIsBetter,
    /// Latency, cost, error rate.
    LowerIsBetter,
}

/// What part a metric plays in the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricRole {
    /// The one metric a winner must improve (the seed's "target metric").
    Primary,
    /// Reported, and part of the multiple-testing correction.
    Secondary,
    /// Must not get significantly worse; judged on raw p-values.
    Guardrail,
}

/// What one observation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisUnit {
    /// Each record is one observation (per-request LLM scores).
    #[default]
    Record,
    /// Each user is one observation: the mean of their records (a proportion user
    /// counts 1 if any record is 1).
    User,
}

/// A metric an experiment measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDefinition {
    /// The name records refer to.
    pub name: String,
    /// Mean or proportion.
    pub kind: MetricKind,
    /// Which way is better.
    pub direction: MetricDirection,
    /// Primary, secondary or guardrail.
    pub role: MetricRole,
    /// Where values come from: clients, or the generations attributed to a variant.
    #[serde(default)]
    pub source: MetricSource,
    /// With [`MetricSource::OnlineScore`]: the online evaluation whose verdicts feed it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub online_evaluation_id: String,
    /// With [`MetricSource::OnlineScore`]: the online evaluation's metric (its score for a
    /// MEAN metric, whether it reached its threshold for a PROPORTION one), or `pass`
    /// (whether every metric did); empty: this metric's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub online_metric: String,
}

/// Where a metric's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricSource {
    /// RecordMetric and its kin.
    #[default]
    Client,
    /// Each attributed generation's `latency_ms` (a mean).
    LatencyMs,
    /// Each attributed generation's cost (a mean; generations without one are skipped).
    Cost,
    /// Each attributed generation's output tokens (a mean).
    OutputTokens,
    /// Whether each attributed generation failed (a proportion).
    Error,
    /// An online evaluation's verdict on each attributed generation it scored.
    OnlineScore,
}

impl MetricDefinition {
    /// A metric definition.
    pub fn new(
        name: impl Into<String>,
        kind: MetricKind,
        direction: MetricDirection,
        role: MetricRole,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            direction,
            role,
            source: MetricSource::Client,
            online_evaluation_id: String::new(),
            online_metric: String::new(),
        }
    }
}

/// One arm of an experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Unique within the experiment.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The arm the others are compared with; exactly one per experiment.
    pub is_control: bool,
    /// The prompt this arm serves, if any.
    pub prompt_name: String,
    /// The prompt version this arm serves, if any.
    pub prompt_version: String,
    /// The model provider this arm uses, if any.
    pub model: String,
    /// Model parameters (temperature, ...).
    pub parameters: Map<String, Value>,
    /// The share of covered traffic; all unset means an equal split.
    pub weight: Option<f64>,
}

/// An A/B experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Unique; chosen by the caller or generated (UUID v7).
    pub id: String,
    /// Display name; required.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The hash seed; the id unless set.
    pub seed: String,
    /// The share of users in the experiment, in [0, 1].
    pub coverage: f64,
    /// At least two; exactly one control.
    pub variants: Vec<Variant>,
    /// What is measured; at most one primary.
    pub metrics: Vec<MetricDefinition>,
    /// The significance level, in (0, 1).
    pub alpha: f64,
    /// Observations each variant needs on the primary metric before a winner is named.
    pub min_samples: u64,
    /// Whether results use the sequential (peeking-safe) test.
    pub sequential: bool,
    /// The sequential test's tuning parameter (the sample size it is tuned for).
    pub sequential_tuning: f64,
    /// What one observation is.
    pub analysis_unit: AnalysisUnit,
    /// Where it is in its life.
    pub status: ExperimentStatus,
    /// When it first started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it completed or was cancelled.
    pub end_time: Option<DateTime<Utc>>,
    /// The winner named on completion, if any.
    pub winner_variant_id: String,
    /// Free-form.
    pub metadata: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Who created it (an API key's name or a certificate identity); empty when unknown
    /// (no authentication, or stored before it was recorded).
    #[serde(default)]
    pub created_by: String,
    /// Every status change, oldest first, with who made it.
    #[serde(default)]
    pub status_changes: Vec<StatusChange>,
    /// The prompt whose `serves_label` this experiment serves while it runs: a call
    /// for that (prompt, label) with a user gets the user's variant's version. Empty
    /// when it serves nothing.
    #[serde(default)]
    pub serves_prompt: String,
    /// The label it serves.
    #[serde(default)]
    pub serves_label: String,
    /// The experiment monitor completes it once the primary metric names a winner (or
    /// shows every variant worse than control) with enough samples and no guardrail
    /// worse.
    #[serde(default)]
    pub auto_complete: bool,
    /// Completing it automatically moves the served label to the winner's version
    /// (through the release gate).
    #[serde(default)]
    pub promote_winner: bool,
}

/// One change of an experiment's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The status it moved to.
    pub status: ExperimentStatus,
    /// When.
    pub at: DateTime<Utc>,
    /// Who made it; empty when unknown.
    pub actor: String,
}

impl Experiment {
    /// A draft made from `spec` with id `id`, defaults filled in (seed: the id; coverage
    /// 1; alpha 0.05; tuning 5000; min samples `default_min_samples`). Not validated.
    pub fn draft(
        spec: ExperimentSpec,
        id: String,
        default_min_samples: u64,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            seed: if spec.seed.is_empty() {
                id.clone()
            } else {
                spec.seed
            },
            id,
            name: spec.name,
            description: spec.description,
            coverage: spec.coverage.unwrap_or(1.0),
            variants: spec.variants,
            metrics: spec.metrics,
            alpha: spec.alpha.unwrap_or(DEFAULT_ALPHA),
            min_samples: spec.min_samples.unwrap_or(default_min_samples),
            sequential: spec.sequential,
            sequential_tuning: spec.sequential_tuning.unwrap_or(DEFAULT_SEQUENTIAL_TUNING),
            analysis_unit: spec.analysis_unit,
            status: ExperimentStatus::Draft,
            start_time: None,
            end_time: None,
            winner_variant_id: String::new(),
            metadata: spec.metadata,
            created_at: now,
            updated_at: now,
            created_by: spec.created_by,
            status_changes: Vec::new(),
            serves_prompt: spec.serves_prompt,
            serves_label: spec.serves_label,
            auto_complete: spec.auto_complete,
            promote_winner: spec.promote_winner,
        }
    }

    /// The control variant's index (validation guarantees there is exactly one).
    pub fn control_index(&self) -> usize {
        self.variants.iter().position(|v| v.is_control).unwrap_or(0)
    }

    /// The variants' weights as assignment uses them: as given, or an equal split when
    /// none is set.
    pub fn weights(&self) -> Vec<f64> {
        let count = self.variants.len();
        if self.variants.iter().all(|v| v.weight.is_none()) {
            crate::assignment::equal_weights(count)
        } else {
            self.variants
                .iter()
                .map(|v| v.weight.unwrap_or(0.0))
                .collect()
        }
    }

    /// The index of the variant with this id.
    pub fn variant_index(&self, id: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.id == id)
    }

    /// The metric with this name.
    pub fn metric(&self, name: &str) -> Option<&MetricDefinition> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// A user's first assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    /// The experiment.
    pub experiment_id: String,
    /// The user.
    pub user_id: String,
    /// The variant the user got.
    pub variant_id: String,
    /// When.
    pub time: DateTime<Utc>,
}

/// One recorded metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRecord {
    /// The experiment.
    pub experiment_id: String,
    /// The variant observed.
    pub variant_id: String,
    /// A declared metric.
    pub metric: String,
    /// Finite; 0 or 1 for proportions.
    pub value: f64,
    /// The user, when known (required for per-user analysis).
    pub user_id: String,
    /// A caller-chosen idempotency key; empty for none.
    pub record_id: String,
    /// When it was observed.
    pub time: DateTime<Utc>,
}

impl Variant {
    /// A variant with this id (also its name) and nothing else set: not control, no
    /// prompt or model, no weight.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            name: id.clone(),
            id,
            ..Self::default()
        }
    }
}
