//! Run records: what a run evaluates, how far it got, and what each sample scored.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A sample passes when each score reaches this, unless its metric says otherwise.
pub const DEFAULT_THRESHOLD: f64 = 0.7;
/// Samples in flight at once, unless the run says otherwise.
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// How long one sample may take, unless the run says otherwise.
pub const DEFAULT_SAMPLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, not started.
    Pending,
    /// Samples are running.
    Running,
    /// Every sample has a result.
    Completed,
    /// The run could not go on.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl RunStatus {
    /// Whether the run has ended (no more results will come).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The lowercase name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One metric: a scorer with parameters and a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricConfig {
    /// Unique in the run; the key of its scores.
    pub name: String,
    /// The scorer's name.
    pub scorer: String,
    /// The scorer's parameters.
    pub params: Map<String, Value>,
    /// The score a sample needs to pass.
    pub threshold: f64,
}

/// What a client gives to create a run (and what a schedule keeps as its template).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSpec {
    /// Generated when empty.
    pub id: String,
    /// Defaults to "<prompt> on <dataset name>".
    pub name: String,
    /// Free text.
    pub description: String,
    /// The dataset.
    pub dataset_id: String,
    /// The prompt.
    pub prompt_name: String,
    /// An exact version, or empty.
    pub prompt_version: String,
    /// A label, or empty.
    pub prompt_label: String,
    /// A configured provider's name, or `echo`.
    pub model: String,
    /// The metrics.
    pub metrics: Vec<MetricConfig>,
    /// 0: the default.
    pub concurrency: u32,
    /// None: the default.
    pub sample_timeout: Option<Duration>,
    /// Explicit baseline, or empty.
    pub baseline_run_id: String,
    /// Outputs come from SubmitRunOutputs.
    pub submitted_outputs: bool,
    /// Who creates it (an API key's name, a certificate identity, or `schedule/<id>`);
    /// empty when unknown.
    pub created_by: String,
}

/// How far a run has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunProgress {
    /// Samples in the snapshot.
    pub total: u64,
    /// Samples with a result.
    pub done: u64,
    /// Passed.
    pub passed: u64,
    /// Scored below a threshold or unscored.
    pub failed: u64,
    /// Errored.
    pub errored: u64,
}

impl RunProgress {
    /// The stored results counted so far (every process's).
    pub fn counts(&self) -> ResultCounts {
        ResultCounts {
            done: self.done,
            passed: self.passed,
            failed: self.failed,
            errored: self.errored,
        }
    }

    /// Takes the counts of stored results, keeping the total.
    pub fn set_counts(&mut self, counts: ResultCounts) {
        self.done = counts.done;
        self.passed = counts.passed;
        self.failed = counts.failed;
        self.errored = counts.errored;
    }
}

/// A run's stored results, counted by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResultCounts {
    /// Results.
    pub done: u64,
    /// Passed.
    pub passed: u64,
    /// Scored below a threshold or unscored.
    pub failed: u64,
    /// Errored.
    pub errored: u64,
}

impl ResultCounts {
    /// Counts one more result.
    pub fn count(&mut self, result: &SampleResult) {
        self.done += 1;
        match result.outcome() {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Errored => self.errored += 1,
        }
    }

    /// The counts of `results`.
    pub fn of<'a>(results: impl IntoIterator<Item = &'a SampleResult>) -> Self {
        let mut counts = Self::default();
        for result in results {
            counts.count(result);
        }
        counts
    }
}

/// A run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// UUID v7 unless given.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The dataset.
    pub dataset_id: String,
    /// The prompt.
    pub prompt_name: String,
    /// As asked for, then (from the start) the version rendered.
    pub prompt_version: String,
    /// As asked for.
    pub prompt_label: String,
    /// The provider's name.
    pub model: String,
    /// The model as the request named it: `auto` when `model` was selected for it;
    /// empty for runs stored before it existed.
    #[serde(default)]
    pub requested_model: String,
    /// The metrics.
    pub metrics: Vec<MetricConfig>,
    /// Samples in flight at most.
    pub concurrency: u32,
    /// Per-sample time limit.
    pub sample_timeout: Duration,
    /// Explicit baseline, or empty.
    pub baseline_run_id: String,
    /// Outputs come from SubmitRunOutputs.
    pub submitted_outputs: bool,
    /// Where it is.
    pub status: RunStatus,
    /// Set when it ends.
    pub results: Option<RunResults>,
    /// Recorded at start (0 before).
    pub dataset_version: u64,
    /// The dataset's content hash at `dataset_version`.
    pub dataset_hash: String,
    /// Samples done so far.
    pub progress: RunProgress,
    /// Why it failed.
    pub error: String,
    /// The run the regression check compared with.
    pub compared_with_run_id: String,
    /// Who created it; empty when unknown (or stored before it was recorded).
    #[serde(default)]
    pub created_by: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Start time.
    pub started_at: Option<DateTime<Utc>>,
    /// End time.
    pub finished_at: Option<DateTime<Utc>>,
}

/// How one sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every score reached its threshold.
    Passed,
    /// A score fell short, or there were none.
    Failed,
    /// Rendering, the model call, a judge or the time limit failed.
    Errored,
}

/// One judge's score of one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeScore {
    /// The metric.
    pub metric: String,
    /// The judging provider.
    pub judge: String,
    /// In [0, 1].
    pub score: f64,
    /// The judge's answer without its score line (kept for online evaluations only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
}

/// The result of one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleResult {
    /// The sample.
    pub sample_id: String,
    /// Its position in the dataset (results list in this order).
    pub position: i64,
    /// The sample's input.
    pub input: Value,
    /// The sample's expected output.
    pub expected_output: String,
    /// The output.
    pub output: String,
    /// Score per metric.
    pub scores: BTreeMap<String, f64>,
    /// Every score reached its threshold.
    pub passed: bool,
    /// The model call's latency (None when there was no answer).
    pub latency: Option<Duration>,
    /// Why it errored; empty if it did not.
    pub error: String,
    /// The cause it is grouped under when it did not pass.
    pub failure_reason: String,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Answer tokens.
    pub output_tokens: u64,
    /// Cost, when priced.
    pub cost: Option<f64>,
    /// Each judge's score.
    pub judge_scores: Vec<JudgeScore>,
    /// Per panel metric, the largest minus the smallest judge score.
    pub panel_spread: BTreeMap<String, f64>,
}

impl SampleResult {
    /// How the sample ended.
    pub fn outcome(&self) -> Outcome {
        if !self.error.is_empty() {
            Outcome::Errored
        } else if self.passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        }
    }
}

/// One metric's scores summarised.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricSummary {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub std: f64,
    /// Scores.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Share at or above the threshold.
    pub pass_rate: f64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// A run's results.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunResults {
    /// Samples with a result.
    pub total: u64,
    /// Passed.
    pub passed: u64,
    /// Failed.
    pub failed: u64,
    /// Errored.
    pub errored: u64,
    /// passed / total (0 when total is 0).
    pub pass_rate: f64,
    /// Per metric.
    pub metrics: BTreeMap<String, MetricSummary>,
    /// Model-call latency.
    pub latency: LatencySummary,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Answer tokens.
    pub output_tokens: u64,
    /// Total cost.
    pub cost: f64,
    /// Samples that did not pass, by cause.
    pub failure_reasons: BTreeMap<String, u64>,
}
