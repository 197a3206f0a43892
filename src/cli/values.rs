//! Conversions between JSON and protobuf's `Value`/`Struct`/`Timestamp`, for requests
//! (files and `--var` values) and for printing answers.

use chrono::{DateTime, SecondsFormat};
use prost_types::value::Kind;
use prost_types::{Struct, Timestamp, Value};
use serde_json::{Map, Number, Value as JsonValue};

/// The largest integer a double holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

pub(crate) use crate::grpc::convert::{struct_from_json, value_from_json};

/// A protobuf `Value` as JSON, for printing. Whole numbers print as integers (`3`, not
/// `3.0`); non-finite numbers, which JSON cannot hold, become null.
pub(crate) fn json_from_value(value: &Value) -> JsonValue {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => JsonValue::Null,
        Some(Kind::NumberValue(n)) => json_number(*n),
        Some(Kind::StringValue(s)) => JsonValue::String(s.clone()),
        Some(Kind::BoolValue(b)) => JsonValue::Bool(*b),
        Some(Kind::StructValue(s)) => JsonValue::Object(json_from_struct(s)),
        Some(Kind::ListValue(list)) => {
            JsonValue::Array(list.values.iter().map(json_from_value).collect())
        }
    }
}

/// A protobuf `Struct` as a JSON object, keys sorted.
pub(crate) fn json_from_struct(value: &Struct) -> Map<String, JsonValue> {
    let mut fields: Vec<_> = value.fields.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields
        .into_iter()
        .map(|(k, v)| (k.clone(), json_from_value(v)))
        .collect()
}

fn json_number(n: f64) -> JsonValue {
    if n.is_finite() && n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // Exact: a whole double within +-2^53 fits an i64 without loss.
        JsonValue::from(n as i64)
    } else {
        Number::from_f64(n).map_or(JsonValue::Null, JsonValue::Number)
    }
}

/// A timestamp in RFC 3339 (`2026-01-02T03:04:05.123Z`); empty when unset.
pub(crate) fn rfc3339(time: Option<&Timestamp>) -> String {
    let Some(time) = time else {
        return String::new();
    };
    u32::try_from(time.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(time.seconds, nanos))
        .map_or_else(
            || time.to_string(),
            |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_becomes_the_matching_protobuf_kinds() {
        let value = value_from_json(
            &json!({"s": "x", "n": 2, "f": 2.5, "b": true, "z": null, "l": [1, "a"]}),
        );
        let Some(Kind::StructValue(fields)) = value.kind else {
            panic!("not a struct: {value:?}")
        };
        let kind = |k: &str| fields.fields[k].kind.clone().unwrap();
        assert_eq!(kind("s"), Kind::StringValue("x".into()));
        assert_eq!(kind("n"), Kind::NumberValue(2.0));
        assert_eq!(kind("f"), Kind::NumberValue(2.5));
        assert_eq!(kind("b"), Kind::BoolValue(true));
        assert_eq!(kind("z"), Kind::NullValue(0));
        let Kind::ListValue(list) = kind("l") else {
            panic!("not a list")
        };
        assert_eq!(list.values.len(), 2);
        assert_eq!(list.values[0].kind, Some(Kind::NumberValue(1.0)));
        assert_eq!(list.values[1].kind, Some(Kind::StringValue("a".into())));
    }

    #[test]
    fn json_survives_a_round_trip_through_protobuf() {
        let original = json!({"s": "x", "n": 2, "f": 2.5, "b": false, "z": null, "l": [1, "two", null], "o": {"k": [true]}});
        assert_eq!(json_from_value(&value_from_json(&original)), original);
    }

    #[test]
    fn whole_numbers_print_as_integers_and_non_finite_as_null() {
        let number = |n| Value {
            kind: Some(Kind::NumberValue(n)),
        };
        assert_eq!(json_from_value(&number(3.0)).to_string(), "3");
        assert_eq!(json_from_value(&number(-0.5)).to_string(), "-0.5");
        assert_eq!(json_from_value(&number(1e300)).to_string(), "1e+300");
        assert_eq!(json_from_value(&number(f64::NAN)), JsonValue::Null);
        assert_eq!(json_from_value(&Value { kind: None }), JsonValue::Null);
    }

    #[test]
    fn timestamps_print_as_rfc3339() {
        let time = Timestamp {
            seconds: 1_767_323_045,
            nanos: 123_000_000,
        };
        assert_eq!(rfc3339(Some(&time)), "2026-01-02T03:04:05.123Z");
        assert_eq!(rfc3339(None), "");
    }
}
