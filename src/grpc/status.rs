//! The one mapping from domain errors to gRPC status codes.

use llmops_registry::{FieldViolation, RegistryError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A registry error as a status; field violations travel as `google.rpc.BadRequest`
/// details, each field prefixed with `field_prefix` (the request field that holds them).
pub(crate) fn registry_status(err: RegistryError, field_prefix: &str) -> Status {
    match err {
        RegistryError::InvalidArgument(violations) => invalid_argument(violations, field_prefix),
        RegistryError::NotFound(message) => Status::not_found(message),
        RegistryError::AlreadyExists(message) => Status::already_exists(message),
        RegistryError::FailedPrecondition(message) => Status::failed_precondition(message),
        RegistryError::ResourceExhausted(message) => Status::resource_exhausted(message),
        // The registry's storage messages are already free of internals.
        RegistryError::Storage(message) => Status::unavailable(message),
    }
}

/// INVALID_ARGUMENT with one `BadRequest` field violation per problem; the message lists
/// them too, for clients that do not read details.
pub(crate) fn invalid_argument(violations: Vec<FieldViolation>, field_prefix: &str) -> Status {
    let violations: Vec<FieldViolation> = violations
        .into_iter()
        .map(|v| FieldViolation {
            field: if field_prefix.is_empty() {
                v.field
            } else {
                format!("{field_prefix}.{}", v.field)
            },
            description: v.description,
        })
        .collect();
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
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
