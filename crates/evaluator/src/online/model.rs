//! The online evaluation record.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runs::MetricConfig;

/// The window thresholds are checked over when none is given.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
/// The scored samples a window needs before its thresholds are checked, when not given.
pub const DEFAULT_MIN_SAMPLES: u64 = 50;

/// Which generations an online evaluation watches: every set field must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineFilter {
    /// The prompt (required).
    pub prompt_name: String,
    /// Generations of the version this label points to, and of the experiment serving
    /// the label; exclusive with `prompt_version`.
    pub label: String,
    /// Exactly this version.
    pub prompt_version: String,
    /// Exactly this model.
    pub model: String,
    /// Exactly this experiment.
    pub experiment_id: String,
}

/// The bounds a window must stay within; unset ones are not checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineThresholds {
    /// The share of scored samples that passed.
    pub min_pass_rate: Option<f64>,
    /// Per metric, the lowest mean score.
    pub metric_minimums: BTreeMap<String, f64>,
    /// The 99th percentile of the generations' latency.
    pub max_latency_p99_ms: Option<f64>,
}

impl OnlineThresholds {
    /// Whether any bound is set.
    pub fn is_empty(&self) -> bool {
        self.min_pass_rate.is_none()
            && self.metric_minimums.is_empty()
            && self.max_latency_p99_ms.is_none()
    }
}

/// A continuous evaluation of production generations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineEvaluation {
    /// UUIDv7 unless the client chose one.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it watches.
    pub filter: OnlineFilter,
    /// The share of matching generations scored, in (0, 1].
    pub sample_rate: f64,
    /// How each sample is scored.
    pub metrics: Vec<MetricConfig>,
    /// What its windows are checked against.
    #[serde(default)]
    pub thresholds: OnlineThresholds,
    /// The width of a window.
    #[serde(with = "seconds")]
    pub window: Duration,
    /// Scored samples a window needs before it is checked.
    pub min_samples: u64,
    /// Paused: samples nothing and scores nothing.
    #[serde(default)]
    pub paused: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl OnlineEvaluation {
    /// Per metric, the score a sample needs to pass.
    pub fn metric_thresholds(&self) -> BTreeMap<String, f64> {
        self.metrics
            .iter()
            .map(|m| (m.name.clone(), m.threshold))
            .collect()
    }
}

/// Durations stored as whole seconds.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(deserializer)?))
    }
}
