//! The registry's one error type.

pub use llmops_core::FieldViolation;
use llmops_core::{join_violations, StoreError};

/// Everything that can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is malformed; every problem found is listed.
    #[error("invalid argument: {}", join_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The prompt, version or label does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A version with the same precedence already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The registry's state forbids the change (deleting the active version, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Rendering hit a configured limit (fuel or output size).
    #[error("{0}")]
    ResourceExhausted(String),
    /// Storage failed; the change was not made.
    #[error("storage unavailable: {0}")]
    Storage(String),
}

impl RegistryError {
    /// An invalid-argument error about a single field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

/// What a store failure means to the registry's callers: a lost race for a unique key is
/// ALREADY_EXISTS, a broken reference a precondition, a database fault storage.
impl From<StoreError> for RegistryError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Duplicate(message) => Self::AlreadyExists(message),
            StoreError::NotFound(message) => Self::NotFound(message),
            StoreError::Conflict(message) => Self::FailedPrecondition(message),
            StoreError::Unavailable(message) => Self::Storage(message),
        }
    }
}
