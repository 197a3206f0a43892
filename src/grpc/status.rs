//! The one mapping from domain errors to gRPC status codes.
//!
//! Each domain error becomes a status in one exhaustive `match` here. Handlers write
//! `.or_status()?` (or `.or_status_at("field")?` where the domain validated a nested
//! message): `From<DomainError> for Status` cannot be written in this crate, since both
//! types are foreign to it, and the domain crates know nothing of tonic.

use llmops_alerts::AlertError;
use llmops_core::ServiceError;
use llmops_registry::{FieldViolation, RegistryError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A domain error as the status a client gets. Field violations are nested under
/// `field_prefix`, the request field that held what the domain validated.
pub(crate) trait IntoStatus {
    /// The status, field violations nested under `field_prefix` ("" for none).
    fn into_status_at(self, field_prefix: &str) -> Status;

    /// The status.
    fn into_status(self) -> Status
    where
        Self: Sized,
    {
        self.into_status_at("")
    }
}

/// Turns a domain result into a handler's result.
pub(crate) trait OrStatus<T> {
    /// The value, or the error's status.
    fn or_status(self) -> Result<T, Status>;

    /// The value, or the error's status with field violations nested under
    /// `field_prefix` (`prompt_version` for the registry's `template`).
    fn or_status_at(self, field_prefix: &str) -> Result<T, Status>;
}

impl<T, E: IntoStatus> OrStatus<T> for Result<T, E> {
    fn or_status(self) -> Result<T, Status> {
        self.map_err(IntoStatus::into_status)
    }

    fn or_status_at(self, field_prefix: &str) -> Result<T, Status> {
        self.map_err(|err| err.into_status_at(field_prefix))
    }
}

// Storage failures are UNAVAILABLE (retryable): the stores' messages carry no database
// text, only a correlation id for the log.

impl IntoStatus for RegistryError {
    fn into_status_at(self, field_prefix: &str) -> Status {
        match self {
            Self::InvalidArgument(violations) => invalid_argument(violations, field_prefix),
            Self::NotFound(message) => Status::not_found(message),
            Self::AlreadyExists(message) => Status::already_exists(message),
            Self::FailedPrecondition(message) => Status::failed_precondition(message),
            Self::ResourceExhausted(message) => Status::resource_exhausted(message),
            Self::Storage(message) => Status::unavailable(message),
        }
    }
}

/// Experiments and the evaluator share this error (`ExperimentError`, `EvaluationError`).
impl IntoStatus for ServiceError {
    fn into_status_at(self, field_prefix: &str) -> Status {
        match self {
            Self::InvalidArgument(violations) => invalid_argument(violations, field_prefix),
            Self::NotFound(message) => Status::not_found(message),
            Self::AlreadyExists(message) => Status::already_exists(message),
            Self::FailedPrecondition(message) => Status::failed_precondition(message),
            Self::Storage(message) => Status::unavailable(message),
        }
    }
}

impl IntoStatus for AlertError {
    fn into_status_at(self, field_prefix: &str) -> Status {
        match self {
            Self::InvalidArgument { field, message } => {
                invalid_argument(vec![FieldViolation::new(field, message)], field_prefix)
            }
            Self::NotFound(message) => Status::not_found(message),
            Self::FailedPrecondition(message) => Status::failed_precondition(message),
            Self::OutOfRange(message) => Status::out_of_range(message),
            Self::Storage(message) => Status::unavailable(message),
        }
    }
}

/// INVALID_ARGUMENT with one `BadRequest` field violation per problem; the message lists
/// them too, for clients that do not read details.
pub(crate) fn invalid_argument(violations: Vec<FieldViolation>, field_prefix: &str) -> Status {
    let violations: Vec<FieldViolation> = violations
        .into_iter()
        .map(|v| v.prefixed(field_prefix))
        .collect();
    let message = llmops_core::join_violations(&violations);
    let details = ErrorDetails::with_bad_request(
        violations
            .into_iter()
            .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
            .collect::<Vec<_>>(),
    );
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// INVALID_ARGUMENT about one field.
pub(crate) fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    invalid_argument(vec![FieldViolation::new(field, description)], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_nested_under_the_request_field_and_listed_in_the_message() {
        let status = RegistryError::InvalidArgument(vec![
            FieldViolation::new("template", "unclosed tag"),
            FieldViolation::new("variables[0].name", "is required"),
        ])
        .into_status_at("prompt_version");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "prompt_version.template: unclosed tag; prompt_version.variables[0].name: is required"
        );
        let fields: Vec<String> = status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.clone())
            .collect();
        assert_eq!(
            fields,
            [
                "prompt_version.template",
                "prompt_version.variables[0].name"
            ]
        );
    }

    #[test]
    fn a_stored_conflict_is_a_precondition_never_unavailable() {
        // A client told UNAVAILABLE retries; a broken reference never heals by retrying.
        let conflict = || llmops_core::StoreError::Conflict("still in use".into());
        assert_eq!(
            RegistryError::from(conflict()).into_status().code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            ServiceError::from(conflict()).into_status().code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            AlertError::from(conflict()).into_status().code(),
            Code::FailedPrecondition
        );
        let duplicate = llmops_core::StoreError::Duplicate("taken".into());
        assert_eq!(
            ServiceError::from(duplicate).into_status().code(),
            Code::AlreadyExists
        );
    }
}
