//! Typed template variables: declaration checks, value type checks and validation.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use crate::error::FieldViolation;

/// The largest integer a JSON number (an IEEE double) holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// The type every value of a variable must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VariableType {
    /// A string.
    #[default]
    String,
    /// A whole number within +-2^53.
    Int,
    /// Any finite number.
    Float,
    /// true or false.
    Bool,
    /// A list of values; files may say `array` (the seed's word).
    #[serde(alias = "array")]
    List,
    /// A map of string keys to values.
    Object,
}

impl VariableType {
    /// The lowercase name used in messages and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::List => "list",
            Self::Object => "object",
        }
    }

    fn is_scalar(self) -> bool {
        !matches!(self, Self::List | Self::Object)
    }
}

/// A variable a template uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptVariable {
    /// The name used in the template.
    pub name: String,
    /// The type values must have.
    #[serde(rename = "type", default)]
    pub var_type: VariableType,
    /// Whether a render without a value (and without a default) fails.
    #[serde(default)]
    pub required: bool,
    /// The value used when the render call gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<JsonValue>,
    /// What the variable is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A regex the whole value must match (empty: no check).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub validation: String,
}

impl PromptVariable {
    /// A required string variable, as inferred from a template that declares none.
    pub fn inferred(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            var_type: VariableType::String,
            required: true,
            default_value: None,
            description: String::new(),
            validation: String::new(),
        }
    }
}

/// A declared variable with its validation regex compiled.
#[derive(Debug, Clone)]
pub(crate) struct CheckedVariable {
    pub(crate) declaration: PromptVariable,
    validation: Option<Regex>,
}

impl CheckedVariable {
    /// Checks a declaration (`field` names it in errors): a valid identifier, a
    /// compilable regex on a scalar type, and a default that passes its own checks.
    pub(crate) fn new(
        field: &str,
        declaration: PromptVariable,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        if !is_identifier(&declaration.name) {
            violations.push(FieldViolation::new(
                format!("{field}.name"),
                format!(
                    "{:?} is not a template variable name (letters, digits and _, not starting with a digit)",
                    declaration.name
                ),
            ));
        }
        let validation = if declaration.validation.is_empty() {
            None
        } else if !declaration.var_type.is_scalar() {
            violations.push(FieldViolation::new(
                format!("{field}.validation"),
                format!(
                    "validation applies to string, int, float and bool variables, not {}",
                    declaration.var_type.as_str()
                ),
            ));
            None
        } else {
            // Anchored so the whole value must match, not just a part of it.
            match Regex::new(&format!("^(?:{})$", declaration.validation)) {
                Ok(regex) => Some(regex),
                Err(err) => {
                    violations.push(FieldViolation::new(
                        format!("{field}.validation"),
                        format!("the regex does not compile: {}", one_line(&err.to_string())),
                    ));
                    None
                }
            }
        };
        let checked = Self {
            declaration,
            validation,
        };
        if let Some(default) = &checked.declaration.default_value {
            if let Err(problem) = checked.check_value(default) {
                violations.push(FieldViolation::new(
                    format!("{field}.default_value"),
                    format!("the default {problem}"),
                ));
            }
        }
        if violations.is_empty() {
            Ok(checked)
        } else {
            Err(violations)
        }
    }

    /// Checks a value's type and validation; the error completes "the value ...".
    pub(crate) fn check_value(&self, value: &JsonValue) -> Result<(), String> {
        let expected = self.declaration.var_type;
        if !has_type(value, expected) {
            return Err(format!(
                "must be {} {}, got {}",
                article(expected),
                expected.as_str(),
                describe(value)
            ));
        }
        if let Some(regex) = &self.validation {
            let text = scalar_text(value);
            if !regex.is_match(&text) {
                return Err(format!(
                    "{text:?} does not match the validation pattern {:?}",
                    self.declaration.validation
                ));
            }
        }
        Ok(())
    }

    /// The value handed to the template: ints become integers so `{{ n }}` prints `3`,
    /// not `3.0` (JSON and protobuf carry every number as a double).
    pub(crate) fn normalise(&self, value: &JsonValue) -> JsonValue {
        match self.declaration.var_type {
            VariableType::Float => value.clone(),
            _ => integralise(value),
        }
    }
}

fn has_type(value: &JsonValue, expected: VariableType) -> bool {
    match (expected, value) {
        (VariableType::String, JsonValue::String(_)) => true,
        (VariableType::Bool, JsonValue::Bool(_)) => true,
        (VariableType::Float, JsonValue::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
        (VariableType::Int, JsonValue::Number(n)) => {
            n.is_i64()
                || n.is_u64() && n.as_u64().is_some_and(|u| u as f64 <= MAX_SAFE_INTEGER)
                || n.as_f64().is_some_and(is_safe_integer)
        }
        (VariableType::List, JsonValue::Array(_)) => true,
        (VariableType::Object, JsonValue::Object(_)) => true,
        _ => false,
    }
}

fn is_safe_integer(x: f64) -> bool {
    x.is_finite() && x.fract() == 0.0 && x.abs() <= MAX_SAFE_INTEGER
}

/// Numbers with no fractional part become integers, recursively.
fn integralise(value: &JsonValue) -> JsonValue {
    match value {
        JsonValue::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(x) if is_safe_integer(x) => JsonValue::from(x as i64),
            _ => value.clone(),
        },
        JsonValue::Array(items) => JsonValue::Array(items.iter().map(integralise).collect()),
        JsonValue::Object(map) => JsonValue::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), integralise(v)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

fn scalar_text(value: &JsonValue) -> String {
    match value {
        JsonValue::String(s) => s.clone(),
        other => integralise(other).to_string(),
    }
}

fn describe(value: &JsonValue) -> &'static str {
    match value {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "a bool",
        JsonValue::Number(_) => "a number",
        JsonValue::String(_) => "a string",
        JsonValue::Array(_) => "a list",
        JsonValue::Object(_) => "an object",
    }
}

fn article(t: VariableType) -> &'static str {
    match t {
        VariableType::Int | VariableType::Object => "an",
        _ => "a",
    }
}

pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn var(t: VariableType, validation: &str) -> PromptVariable {
        PromptVariable {
            validation: validation.into(),
            ..PromptVariable {
                var_type: t,
                ..PromptVariable::inferred("x")
            }
        }
    }

    #[test]
    fn values_are_checked_against_the_declared_type() {
        let cases = [
            (VariableType::String, json!("a"), true),
            (VariableType::String, json!(1), false),
            (VariableType::Int, json!(3), true),
            (VariableType::Int, json!(3.0), true),
            (VariableType::Int, json!(3.5), false),
            (VariableType::Int, json!(1e300), false),
            (VariableType::Float, json!(3.5), true),
            (VariableType::Float, json!("3.5"), false),
            (VariableType::Bool, json!(true), true),
            (VariableType::Bool, json!("true"), false),
            (VariableType::List, json!([1, 2]), true),
            (VariableType::List, json!({"a": 1}), false),
            (VariableType::Object, json!({"a": 1}), true),
            (VariableType::Object, json!(null), false),
        ];
        for (t, value, ok) in cases {
            let checked = CheckedVariable::new("v", var(t, "")).unwrap();
            assert_eq!(checked.check_value(&value).is_ok(), ok, "{t:?} {value}");
        }
    }

    #[test]
    fn validation_must_match_the_whole_value() {
        // The seed's regex was unanchored: "abc123" passed `[0-9]+`.
        let checked = CheckedVariable::new("v", var(VariableType::String, "[0-9]+")).unwrap();
        assert!(checked.check_value(&json!("123")).is_ok());
        let err = checked.check_value(&json!("abc123")).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        // An alternation must not escape the anchors.
        let checked = CheckedVariable::new("v", var(VariableType::String, "a|b")).unwrap();
        assert!(checked.check_value(&json!("ab")).is_err());
        assert!(checked.check_value(&json!("b")).is_ok());
    }

    #[test]
    fn ints_are_validated_in_decimal_form() {
        let checked = CheckedVariable::new("v", var(VariableType::Int, "[1-5]")).unwrap();
        assert!(checked.check_value(&json!(3.0)).is_ok());
        assert!(checked.check_value(&json!(7)).is_err());
    }

    #[test]
    fn a_bad_regex_or_a_bad_default_is_refused_with_the_field() {
        let errs =
            CheckedVariable::new("variables[0]", var(VariableType::String, "(")).unwrap_err();
        assert_eq!(errs[0].field, "variables[0].validation");

        let mut declared = var(VariableType::Int, "");
        declared.default_value = Some(json!("three"));
        let errs = CheckedVariable::new("variables[1]", declared).unwrap_err();
        assert_eq!(errs[0].field, "variables[1].default_value");

        let mut declared = var(VariableType::String, "[a-z]+");
        declared.default_value = Some(json!("ABC"));
        assert!(CheckedVariable::new("v", declared).is_err());
    }

    #[test]
    fn validation_is_refused_on_lists_and_objects() {
        assert!(CheckedVariable::new("v", var(VariableType::List, ".*")).is_err());
    }

    #[test]
    fn array_is_accepted_as_a_synonym_for_list() {
        let parsed: PromptVariable =
            serde_json::from_value(json!({"name": "x", "type": "array"})).unwrap();
        assert_eq!(parsed.var_type, VariableType::List);
    }

    #[test]
    fn identifiers_follow_template_rules() {
        assert!(is_identifier("focus_area"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
    }
}
