//! Online evaluation: production generations, sampled and scored as they arrive.
//!
//! An [`OnlineEvaluation`] names which generations it watches (a prompt and its label or
//! version, a model, an experiment), what share of them it samples, the metrics that
//! score them (scorers that need no expected output, and judges), and the bounds its
//! windows must stay within.
//!
//! - **Sampling** is a hash of the evaluation's id and the generation's id
//!   ([`sampled`]), so every replica, and any client, agrees on which generations are
//!   sampled. The samples are queued by the transaction that stores the generations
//!   (`GenerationSampler`), into a bounded durable queue.
//! - **Scoring** ([`OnlineScorer`]) claims queued samples (leased, so replicas share the
//!   work and a dead one's claims lapse), scores them through the providers with at most
//!   `online_max_concurrency` at once, and stores each score, removes the sample from
//!   the queue and adds it to the per-minute aggregates in one transaction; a score
//!   already stored is kept, so a generation is counted once per evaluation.
//! - **Alerts** ([`OnlineMonitor`]) check the latest complete window of each prompt
//!   version against the thresholds.

mod model;
mod monitor;
mod regression;
mod sampling;
mod service;
mod stats;
mod store;
mod validate;
mod worker;

pub use model::{
    OnlineEvaluation, OnlineFilter, OnlineThresholds, DEFAULT_MIN_SAMPLES, DEFAULT_WINDOW,
};
pub use monitor::{OnlineMonitor, ONLINE_ALERT_SOURCE};
pub use regression::{two_proportion_smaller, PassCount, REGRESSION_ALPHA};
pub use sampling::{sample_point, sampled};
pub use service::{
    OnlineEvaluationService, OnlineScoreObserver, OnlineSettings, OnlineUpdate, ServingExperiments,
};
pub use stats::{
    group_online, MetricTotals, OnlineAggregateRow, OnlineGroup, OnlineGroupKey, OnlineStatsQuery,
    OnlineTotals, MINUTE_US,
};
pub use store::{ClaimedSample, CompletedSample, OnlineStore};
pub use validate::ALLOWED_SCORERS;
pub use worker::{OnlineScorer, ONLINE_SAMPLES_SCORED_TOTAL};
