//! A problem with one field of a request.

use std::fmt;

/// One problem with one field of a request: which field (a dotted path such as
/// `variants[1].weight`) and what is wrong with it, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field at fault.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// What a text field that is stored as a database key or column may not contain: NUL.
/// PostgreSQL's text cannot hold it, and an id with one is a client bug on any backend.
pub const NUL_REFUSED: &str = "must not contain NUL (U+0000)";

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation seen from an enclosing message: `prefix.field`.
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

/// The violations as one line, `field: description; field: description`.
pub fn join_violations(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_names_the_enclosing_field() {
        let violation = FieldViolation::new("weight", "must be positive").prefixed("variants[1]");
        assert_eq!(
            violation.to_string(),
            "variants[1].weight: must be positive"
        );
        assert_eq!(
            FieldViolation::new("name", "is required").prefixed(""),
            FieldViolation::new("name", "is required")
        );
    }
}
