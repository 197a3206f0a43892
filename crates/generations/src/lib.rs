//! Generations: what an application asked a model and what it answered, with timing,
//! tokens, cost and attribution (prompt version, experiment variant, user).
//!
//! [`GenerationService`] validates a batch (every problem named by its field), caps large
//! texts (flagging the truncation), fills in ids and costs, and stores it through a
//! group-commit writer: concurrent batches share one transaction, and each call returns
//! once its batch is durable. A generation's id makes logging idempotent: a repeated id is
//! counted as a duplicate and changes nothing.

mod model;
mod render_ref;
mod service;
mod store;
mod usage;
mod validate;

pub use model::{
    Generation, GenerationPage, GenerationQuery, GenerationScore, GenerationStatus, JudgeVerdict,
    Prices,
};
pub use render_ref::RenderRef;
pub use service::{
    GenerationLimits, GenerationObserver, GenerationSampler, GenerationService, Logged,
    ONLINE_SAMPLES_SKIPPED_TOTAL,
};
pub use store::{GenerationStore, Inserted, QueuedSample};
pub use usage::{
    group_usage, hour_of, LatencyHistogram, UsageAggregate, UsageBucket, UsageDimension,
    UsageFilter, UsageGroup, UsageKey, UsageQuery, UsageTotals, HOUR_US, MAX_AGGREGATES_READ,
    MAX_USAGE_ROWS,
};
pub use validate::MAX_BATCH;
