//! The error of a domain service whose failures are the common ones: bad input, missing,
//! taken, in the wrong state, or storage trouble. Experiments and the evaluator use it as
//! is (`ExperimentError`, `EvaluationError`); services with other failures (the registry's
//! render budget, alerts' retention) have their own enum.

use crate::store_error::StoreError;
use crate::violation::{join_violations, FieldViolation};

/// Everything that can go wrong in a domain service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; every problem found is listed.
    #[error("{}", join_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What the request creates exists already (the id or name is taken).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well formed but what it names is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Storage failed, or the service is shutting down; nothing was changed.
    #[error("storage unavailable: {0}")]
    Storage(String),
}

impl ServiceError {
    /// An invalid-argument error about a single field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

/// What a store failure means to a caller: a lost race for a unique key is
/// ALREADY_EXISTS, a broken reference a precondition, a database fault storage.
impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Duplicate(message) => Self::AlreadyExists(message),
            StoreError::NotFound(message) => Self::NotFound(message),
            StoreError::Conflict(message) => Self::FailedPrecondition(message),
            StoreError::Unavailable(message) => Self::Storage(message),
        }
    }
}
