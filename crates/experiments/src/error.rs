//! The experiment service's one error type.

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field at fault, as a path (`variants[1].weight`).
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Everything that can go wrong in the experiment service.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The request is malformed; every problem found is listed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<Violation>),
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
    /// An invalid-argument error about one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![Violation::new(field, description)])
    }
}

/// Storage errors in the experiment service's terms.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentStoreError {
    /// A unique key is taken (the experiment id).
    #[error("{0}")]
    Duplicate(String),
    /// The database failed; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ExperimentStoreError> for ExperimentError {
    fn from(err: ExperimentStoreError) -> Self {
        match err {
            ExperimentStoreError::Duplicate(message) => Self::AlreadyExists(message),
            ExperimentStoreError::Unavailable(message) => Self::Storage(message),
        }
    }
}
