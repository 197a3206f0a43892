//! The evaluator's one error type.

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field at fault, as a path (`samples[2].input`).
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

/// Everything that can go wrong with datasets and runs.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    /// The request is malformed; every problem found is listed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<Violation>),
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
    /// An invalid-argument error about one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![Violation::new(field, description)])
    }
}

/// Storage errors in the evaluator's terms.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationStoreError {
    /// A unique key is taken.
    #[error("{0}")]
    Duplicate(String),
    /// The database failed; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<EvaluationStoreError> for EvaluationError {
    fn from(err: EvaluationStoreError) -> Self {
        match err {
            EvaluationStoreError::Duplicate(message) => Self::AlreadyExists(message),
            EvaluationStoreError::Unavailable(message) => Self::Storage(message),
        }
    }
}
