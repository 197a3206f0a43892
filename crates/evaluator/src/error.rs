//! The evaluator's one error type.

use llmops_core::join_violations;
pub use llmops_core::{FieldViolation, StoreError};

/// Everything that can go wrong with datasets and runs.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    /// The request is malformed; every problem found is listed.
    #[error("{}", join_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The dataset or sample does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A dataset or sample with the id (or name) exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well formed but the resource is not in a state that allows it
    /// (starting an empty dataset's run, cancelling an ended run).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Storage failed; nothing was changed.
    #[error("storage unavailable: {0}")]
    Storage(String),
}

impl EvaluationError {
    /// An invalid-argument error about a single field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<StoreError> for EvaluationError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Duplicate(message) => Self::AlreadyExists(message),
            StoreError::NotFound(message) => Self::NotFound(message),
            StoreError::Conflict(message) => Self::FailedPrecondition(message),
            StoreError::Unavailable(message) => Self::Storage(message),
        }
    }
}
