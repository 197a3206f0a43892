//! The experiment service's one error type.

use llmops_core::join_violations;
pub use llmops_core::{FieldViolation, StoreError};

/// Everything that can go wrong in the experiment service.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The request is malformed; every problem found is listed.
    #[error("{}", join_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The experiment does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An experiment with the id exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The experiment's state forbids the change.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Storage failed, or the service is shutting down; nothing was changed.
    #[error("storage unavailable: {0}")]
    Storage(String),
}

impl ExperimentError {
    /// An invalid-argument error about a single field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<StoreError> for ExperimentError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Duplicate(message) => Self::AlreadyExists(message),
            StoreError::NotFound(message) => Self::NotFound(message),
            StoreError::Conflict(message) => Self::FailedPrecondition(message),
            StoreError::Unavailable(message) => Self::Storage(message),
        }
    }
}
