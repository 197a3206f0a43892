//! Evaluation runs: a prompt version run against a model over a dataset snapshot, every
//! output scored by the run's metrics, results persisted per sample, regressions and
//! threshold breaches raised as alerts.

pub mod compare;
pub(crate) mod executor;
pub(crate) mod metric;
mod model;
mod service;
mod store;
mod summary;
pub(crate) mod validate;

pub use compare::{pass_rate_regressed, Comparison, MetricChange, PairedOutcomes, PASS_RATE_DROP};
pub use metric::JUDGE_SCORERS;
pub use model::{
    JudgeScore, LatencySummary, MetricConfig, MetricSummary, Outcome, ResultCounts, Run,
    RunProgress, RunResults, RunSpec, RunStatus, SampleResult, DEFAULT_CONCURRENCY,
    DEFAULT_SAMPLE_TIMEOUT, DEFAULT_THRESHOLD,
};
pub use service::{ResultPage, RunFilter, RunService, RunSettings, SubmittedOutput};
pub use store::{OnDuplicate, RunStore, SampleChunk, StoredResults};
pub use summary::{quantile, summarise};
pub use validate::limits;
