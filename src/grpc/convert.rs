//! Conversions between protobuf well-known types and the domain's JSON and time types.

use chrono::{DateTime, Utc};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp, Value};
use serde_json::{Map, Number, Value as JsonValue};

/// A protobuf `Value` as JSON. Protobuf numbers are doubles; non-finite ones (which JSON
/// cannot hold) become null, which callers treat as "no value".
pub(crate) fn json_from_value(value: Value) -> JsonValue {
    match value.kind {
        None | Some(Kind::NullValue(_)) => JsonValue::Null,
        Some(Kind::NumberValue(n)) => {
            Number::from_f64(n).map_or(JsonValue::Null, JsonValue::Number)
        }
        Some(Kind::StringValue(s)) => JsonValue::String(s),
        Some(Kind::BoolValue(b)) => JsonValue::Bool(b),
        Some(Kind::StructValue(s)) => JsonValue::Object(json_from_struct(s)),
        Some(Kind::ListValue(list)) => {
            JsonValue::Array(list.values.into_iter().map(json_from_value).collect())
        }
    }
}

/// A protobuf `Struct` as a JSON object.
pub(crate) fn json_from_struct(value: Struct) -> Map<String, JsonValue> {
    value
        .fields
        .into_iter()
        .map(|(k, v)| (k, json_from_value(v)))
        .collect()
}

/// JSON as a protobuf `Value`.
pub(crate) fn value_from_json(value: &JsonValue) -> Value {
    let kind = match value {
        JsonValue::Null => Kind::NullValue(0),
        JsonValue::Bool(b) => Kind::BoolValue(*b),
        JsonValue::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        JsonValue::String(s) => Kind::StringValue(s.clone()),
        JsonValue::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(value_from_json).collect(),
        }),
        JsonValue::Object(map) => Kind::StructValue(struct_from_json(map)),
    };
    Value { kind: Some(kind) }
}

/// A JSON object as a protobuf `Struct`.
pub(crate) fn struct_from_json(map: &Map<String, JsonValue>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), value_from_json(v)))
            .collect(),
    }
}

/// A UTC time as a protobuf `Timestamp`.
pub(crate) fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf `Timestamp` as a UTC time; None when out of range.
pub(crate) fn time_from_timestamp(stamp: &Timestamp) -> Option<DateTime<Utc>> {
    u32::try_from(stamp.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(stamp.seconds, nanos))
}

/// A duration as a protobuf `Duration`.
pub(crate) fn duration_to_pb(duration: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: duration.as_secs().min(i64::MAX as u64) as i64,
        nanos: duration.subsec_nanos() as i32,
    }
}

/// A protobuf `Duration` as a duration; None when negative or malformed.
pub(crate) fn duration_from_pb(duration: &prost_types::Duration) -> Option<std::time::Duration> {
    let seconds = u64::try_from(duration.seconds).ok()?;
    let nanos = u32::try_from(duration.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(std::time::Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_survives_a_round_trip_through_protobuf() {
        let original = json!({"s": "x", "n": 2.5, "b": true, "l": [1.0, "two", null], "o": {"k": false}, "z": null});
        let JsonValue::Object(map) = &original else {
            unreachable!()
        };
        let back = JsonValue::Object(json_from_struct(struct_from_json(map)));
        assert_eq!(back, original);
    }

    #[test]
    fn non_finite_numbers_become_null() {
        let value = Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        };
        assert_eq!(json_from_value(value), JsonValue::Null);
    }
}
