//! The experiment service's errors: the common service errors (see
//! [`llmops_core::ServiceError`]).

pub use llmops_core::{FieldViolation, StoreError};

/// Everything that can go wrong in the experiment service.
pub type ExperimentError = llmops_core::ServiceError;
