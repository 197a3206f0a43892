//! Rules for prompt names and label names.

use crate::error::FieldViolation;

/// The label name that always means "the active version"; it cannot be set or deleted.
pub const RESERVED_ACTIVE_LABEL: &str = "active";

const MAX_NAME_CHARS: usize = 128;

/// Checks a prompt name: 1-128 characters from `[A-Za-z0-9._/-]`.
pub fn validate_prompt_name(field: &str, name: &str) -> Result<(), FieldViolation> {
    validate_identifier(field, name, "name")
}

/// Checks a label name: the prompt name rules, and not the reserved `active`.
pub fn validate_label(field: &str, label: &str) -> Result<(), FieldViolation> {
    validate_identifier(field, label, "label")?;
    if label == RESERVED_ACTIVE_LABEL {
        return Err(FieldViolation::new(
            field,
            "the label `active` is reserved for the active version; use ActivatePromptVersion",
        ));
    }
    Ok(())
}

fn validate_identifier(field: &str, value: &str, what: &str) -> Result<(), FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, format!("{what} is required")));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(FieldViolation::new(
            field,
            format!("{what} is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')))
    {
        return Err(FieldViolation::new(
            field,
            format!("{what} contains {bad:?}; allowed are letters, digits and . _ / -"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_from_the_allowed_alphabet() {
        for name in ["code-review", "team/summarise.v2", "A_b-9"] {
            assert!(validate_prompt_name("name", name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_empty_long_and_odd_names() {
        assert!(validate_prompt_name("name", "").is_err());
        assert!(validate_prompt_name("name", &"a".repeat(129)).is_err());
        assert!(validate_prompt_name("name", &"a".repeat(128)).is_ok());
        let err = validate_prompt_name("name", "has space").unwrap_err();
        assert_eq!(err.field, "name");
        assert!(err.description.contains("' '"), "{}", err.description);
    }

    #[test]
    fn the_active_label_is_reserved() {
        assert!(validate_label("label", "active").is_err());
        assert!(validate_label("label", "production").is_ok());
    }
}
