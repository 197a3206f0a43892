//! The alert service's one error type.

use llmops_core::StoreError;

/// Everything that can go wrong in the alert service.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The request is malformed: (field, problem).
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The alert does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The alert's state forbids the change.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A subscription asked for events retention no longer holds.
    #[error("{0}")]
    OutOfRange(String),
    /// Storage failed; nothing was changed.
    #[error("storage unavailable: {0}")]
    Storage(String),
}

impl AlertError {
    /// An invalid-argument error about one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for AlertError {
    fn from(err: StoreError) -> Self {
        match err {
            // The store answers a racing open of the same fingerprint as stale, for the
            // service to fold into; a unique key can only clash here in ways nobody races
            // for (a reused id).
            StoreError::Duplicate(message) => Self::FailedPrecondition(format!(
                "a concurrent writer changed the alert: {message}"
            )),
            StoreError::NotFound(message) => Self::NotFound(message),
            StoreError::Conflict(message) => Self::FailedPrecondition(message),
            StoreError::Unavailable(message) => Self::Storage(message),
        }
    }
}
