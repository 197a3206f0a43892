//! Render variables from the command line: `--var NAME=VALUE` strings, converted to the
//! declared type of each variable, over the typed values of a `--vars-file`.

use std::collections::BTreeMap;

use anyhow::bail;
use llmops_registry::VariableType;
use serde_json::{Map, Value as JsonValue};

/// Parses a `NAME=VALUE` argument (the value may itself contain `=`).
pub(crate) fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// The values to render with: the file's values, overridden by the `--var` values, each
/// converted to its declared type (`declared` gives the type of each known variable;
/// values of undeclared variables stay strings and the server reports them).
pub(crate) fn merge(
    file: Map<String, JsonValue>,
    vars: &[(String, String)],
    declared: &BTreeMap<String, VariableType>,
) -> anyhow::Result<BTreeMap<String, JsonValue>> {
    let mut values: BTreeMap<String, JsonValue> = file.into_iter().collect();
    for (name, text) in vars {
        let value = match declared.get(name) {
            Some(&var_type) => coerce(name, var_type, text)?,
            None => JsonValue::String(text.clone()),
        };
        values.insert(name.clone(), value);
    }
    Ok(values)
}

/// Converts a `--var` string to a value of `var_type`; the error names the variable.
pub(crate) fn coerce(name: &str, var_type: VariableType, text: &str) -> anyhow::Result<JsonValue> {
    let trimmed = text.trim();
    let value = match var_type {
        VariableType::String => return Ok(JsonValue::String(text.to_owned())),
        VariableType::Int => trimmed.parse::<i64>().ok().map(JsonValue::from),
        VariableType::Float => trimmed
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(JsonValue::from),
        VariableType::Bool => match trimmed {
            "true" => Some(JsonValue::Bool(true)),
            "false" => Some(JsonValue::Bool(false)),
            _ => None,
        },
        VariableType::List => serde_json::from_str(trimmed)
            .ok()
            .filter(JsonValue::is_array),
        VariableType::Object => serde_json::from_str(trimmed)
            .ok()
            .filter(JsonValue::is_object),
    };
    match value {
        Some(value) => Ok(value),
        None => bail!("--var {name}: {text:?} is not {}", expected(var_type)),
    }
}

fn expected(var_type: VariableType) -> &'static str {
    match var_type {
        VariableType::String => "a string",
        VariableType::Int => "an int (a whole number such as 42)",
        VariableType::Float => "a float (a finite number such as 0.5)",
        VariableType::Bool => "a bool (true or false)",
        VariableType::List => "a list (a JSON array such as [\"a\", 1])",
        VariableType::Object => "an object (a JSON object such as {\"k\": \"v\"})",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(parse_assignment("a=1"), Ok(("a".into(), "1".into())));
        assert_eq!(parse_assignment("q=a=b"), Ok(("q".into(), "a=b".into())));
        assert_eq!(
            parse_assignment("empty="),
            Ok(("empty".into(), String::new()))
        );
        assert!(parse_assignment("novalue").is_err());
        assert!(parse_assignment("=1").is_err());
    }

    #[test]
    fn strings_stay_strings() {
        for text in ["42", "true", " padded ", "[1]", ""] {
            assert_eq!(
                coerce("s", VariableType::String, text).unwrap(),
                json!(text)
            );
        }
    }

    #[test]
    fn scalars_are_parsed_by_type() {
        assert_eq!(coerce("n", VariableType::Int, "42").unwrap(), json!(42));
        assert_eq!(coerce("n", VariableType::Int, "-7").unwrap(), json!(-7));
        assert_eq!(coerce("f", VariableType::Float, "0.5").unwrap(), json!(0.5));
        assert_eq!(coerce("f", VariableType::Float, "3").unwrap(), json!(3.0));
        assert_eq!(
            coerce("b", VariableType::Bool, "true").unwrap(),
            json!(true)
        );
        assert_eq!(
            coerce("b", VariableType::Bool, "false").unwrap(),
            json!(false)
        );
    }

    #[test]
    fn lists_and_objects_are_parsed_as_json() {
        assert_eq!(
            coerce("l", VariableType::List, r#"["a", 1]"#).unwrap(),
            json!(["a", 1])
        );
        assert_eq!(
            coerce("o", VariableType::Object, r#"{"k": [true]}"#).unwrap(),
            json!({"k": [true]})
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_the_variable() {
        let cases = [
            ("count", VariableType::Int, "many"),
            ("count", VariableType::Int, "1.5"),
            ("ratio", VariableType::Float, "half"),
            ("ratio", VariableType::Float, "inf"),
            ("ratio", VariableType::Float, "NaN"),
            ("flag", VariableType::Bool, "yes"),
            ("items", VariableType::List, "a,b"),
            ("items", VariableType::List, r#"{"k": 1}"#),
            ("opts", VariableType::Object, "[1]"),
            ("opts", VariableType::Object, "{bad json"),
        ];
        for (name, var_type, text) in cases {
            let err = coerce(name, var_type, text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("--var {name}: {text:?} is not a")),
                "{err}"
            );
        }
    }

    #[test]
    fn vars_override_the_file_and_are_typed_by_declaration() {
        let declared = BTreeMap::from([
            ("n".to_owned(), VariableType::Int),
            ("tone".to_owned(), VariableType::String),
        ]);
        let file = json!({"n": 1, "tone": "dry", "items": ["a"]});
        let JsonValue::Object(file) = file else {
            unreachable!()
        };
        let vars = [
            ("n".to_owned(), "5".to_owned()),
            ("extra".to_owned(), "7".to_owned()),
        ];
        let values = merge(file, &vars, &declared).unwrap();
        assert_eq!(
            JsonValue::Object(values.into_iter().collect()),
            json!({"n": 5, "tone": "dry", "items": ["a"], "extra": "7"})
        );
        assert!(merge(Map::new(), &[("n".into(), "x".into())], &declared).is_err());
    }
}
