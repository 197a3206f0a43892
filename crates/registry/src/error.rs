//! The registry's one error type.

use std::fmt;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field at fault, as a path in the request (`variables[2].default_value`).
    pub field: String,
    /// What is wrong with it, lowercase.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation, its field nested under `prefix` (`control.version`).
    pub fn prefixed(self, prefix: &str) -> Self {
        if prefix.is_empty() {
            return self;
        }
        Self {
            field: format!("{prefix}.{}", self.field),
            description: self.description,
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

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

fn join_violations(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
