//! Limits and checks for datasets and samples; every problem is reported at once.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::model::{DatasetSpec, Sample};
use crate::error::{EvaluationError, FieldViolation};

/// Size limits.
pub mod limits {
    /// Dataset ids and sample ids.
    pub const ID_BYTES: usize = 128;
    /// Dataset names.
    pub const NAME_BYTES: usize = 256;
    /// Descriptions.
    pub const DESCRIPTION_BYTES: usize = 4096;
    /// A sample's input, as JSON.
    pub const INPUT_BYTES: usize = 64 * 1024;
    /// A sample's expected output and its context, each.
    pub const TEXT_BYTES: usize = 64 * 1024;
    /// Metadata entries.
    pub const METADATA_ENTRIES: usize = 64;
    /// One metadata key or value.
    pub const METADATA_BYTES: usize = 1024;
}

fn check_metadata(
    violations: &mut Vec<FieldViolation>,
    field: &str,
    metadata: &BTreeMap<String, String>,
) {
    if metadata.len() > limits::METADATA_ENTRIES {
        violations.push(FieldViolation::new(
            field,
            format!("has more than {} entries", limits::METADATA_ENTRIES),
        ));
    }
    for (key, value) in metadata {
        if key.is_empty()
            || key.len() > limits::METADATA_BYTES
            || value.len() > limits::METADATA_BYTES
        {
            violations.push(FieldViolation::new(
                format!("{field}[{key}]"),
                format!(
                    "keys must be 1-{0} bytes and values at most {0}",
                    limits::METADATA_BYTES
                ),
            ));
        }
    }
}

fn check_id(violations: &mut Vec<FieldViolation>, field: &str, id: &str) {
    if id.is_empty() {
        violations.push(FieldViolation::new(field, "is required"));
    } else if id.len() > limits::ID_BYTES {
        violations.push(FieldViolation::new(
            field,
            format!("is longer than {} bytes", limits::ID_BYTES),
        ));
    } else if !id.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
    {
        violations.push(FieldViolation::new(
            field,
            format!("{id:?} must start with a letter or digit and use only letters, digits, '.', '_', '-', ':', '/'"),
        ));
    }
}

/// Checks a dataset definition.
pub(super) fn check_dataset(spec: &DatasetSpec) -> Result<(), EvaluationError> {
    let mut violations = Vec::new();
    check_id(&mut violations, "id", &spec.id);
    if spec.name.trim().is_empty() {
        violations.push(FieldViolation::new("name", "is required"));
    } else if spec.name.len() > limits::NAME_BYTES {
        violations.push(FieldViolation::new(
            "name",
            format!("is longer than {} bytes", limits::NAME_BYTES),
        ));
    } else if spec.name.contains('\0') {
        violations.push(FieldViolation::new("name", llmops_core::NUL_REFUSED));
    }
    if spec.description.len() > limits::DESCRIPTION_BYTES {
        violations.push(FieldViolation::new(
            "description",
            format!("is longer than {} bytes", limits::DESCRIPTION_BYTES),
        ));
    }
    check_metadata(&mut violations, "metadata", &spec.metadata);
    finish(violations)
}

/// Checks samples (with their ids already filled in): sizes, input shape, ids unique
/// within the batch. `first_index` is the position of the first in the whole call.
pub(super) fn check_samples(samples: &[Sample], first_index: usize) -> Result<(), EvaluationError> {
    let mut violations = Vec::new();
    let mut ids = HashSet::new();
    for (offset, sample) in samples.iter().enumerate() {
        let field = |name: &str| format!("samples[{}].{name}", first_index + offset);
        if sample.id.len() > limits::ID_BYTES {
            violations.push(FieldViolation::new(
                field("id"),
                format!("is longer than {} bytes", limits::ID_BYTES),
            ));
        } else if sample.id.chars().any(char::is_control) {
            violations.push(FieldViolation::new(
                field("id"),
                "must not contain control characters",
            ));
        } else if !ids.insert(sample.id.as_str()) {
            violations.push(FieldViolation::new(
                field("id"),
                format!("{:?} appears twice in the request", sample.id),
            ));
        }
        match &sample.input {
            Value::String(_) | Value::Object(_) => {
                let size = serde_json::to_vec(&sample.input).map_or(usize::MAX, |b| b.len());
                if size > limits::INPUT_BYTES {
                    violations.push(FieldViolation::new(
                        field("input"),
                        format!("is larger than {} bytes as JSON", limits::INPUT_BYTES),
                    ));
                }
            }
            Value::Null => violations.push(FieldViolation::new(
                field("input"),
                "is required: a string or an object of template variables",
            )),
            other => violations.push(FieldViolation::new(
                field("input"),
                format!(
                    "must be a string or an object of template variables, not {}",
                    kind(other)
                ),
            )),
        }
        for (name, text) in [
            ("expected_output", &sample.expected_output),
            ("context", &sample.context),
        ] {
            if text.len() > limits::TEXT_BYTES {
                violations.push(FieldViolation::new(
                    field(name),
                    format!("is longer than {} bytes", limits::TEXT_BYTES),
                ));
            }
        }
        check_metadata(&mut violations, &field("metadata"), &sample.metadata);
    }
    finish(violations)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn finish(violations: Vec<FieldViolation>) -> Result<(), EvaluationError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(EvaluationError::InvalidArgument(violations))
    }
}
