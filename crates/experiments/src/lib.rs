//! A/B experiments of prompts and models.
//!
//! - [`assignment`]: deterministic user-to-variant assignment, computed exactly as
//!   GrowthBook's SDKs compute it, so any client in any language can assign locally.
//! - [`service`]: definitions, lifecycle, exposures and durable metric recording through
//!   a group-commit writer, with in-memory sufficient statistics.
//! - [`stats`] and [`results`]: the tests of GrowthBook's `gbstats`, Holm-Bonferroni,
//!   the sample-ratio check and the decision rules.
//! - [`monitor`]: experiment alerts (sample ratio mismatch, guardrails, winners).

pub mod assignment;
mod error;
pub mod lifecycle;
mod model;
pub mod monitor;
pub mod results;
pub mod service;
pub mod stats;
mod store;
mod tally;
mod validate;
mod writer;

pub use error::{ExperimentError, FieldViolation, StoreError};
pub use model::{
    AnalysisUnit, Experiment, ExperimentStatus, Exposure, MetricDefinition, MetricDirection,
    MetricKind, MetricRecord, MetricRole, MetricSource, StatusChange, Variant,
};
pub use service::{
    Assignment, Defaults, ExperimentService, ExperimentUpdate, ModelExperiment, PromptArm,
    PromptExperiment, PromptVersions, RecordInput, RecordNaming, RecordOutcome, TemplateError,
    DEFAULT_TREATMENT_SHARE,
};
pub use store::{BatchWrites, Committed, ExperimentStore, RecordVisitor};
pub use tally::Tally;
pub use validate::{limits, ExperimentSpec};
