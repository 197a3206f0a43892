//! The evaluator's errors: the common service errors (see [`llmops_core::ServiceError`]).

pub use llmops_core::{FieldViolation, StoreError};

/// Everything that can go wrong with datasets, runs, schedules, gates and providers.
pub type EvaluationError = llmops_core::ServiceError;
