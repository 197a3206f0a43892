//! JSON comparison that ignores object key order (serde_json's maps compare by content).

use serde_json::Value;

/// Whether both texts parse as JSON and the values are equal. Numbers compare by value
/// (`1` and `1.0` are equal), objects regardless of key order, arrays in order.
pub(super) fn json_equal(output: &str, expected: &str) -> bool {
    match (
        serde_json::from_str::<Value>(output),
        serde_json::from_str::<Value>(expected),
    ) {
        (Ok(a), Ok(b)) => values_equal(&a, &b),
        _ => false,
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| values_equal(x, y)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::json_equal;

    #[test]
    fn key_order_and_number_spelling_do_not_matter() {
        assert!(json_equal(
            r#"{"a": 1, "b": [1, 2]}"#,
            r#"{"b": [1, 2.0], "a": 1.0}"#
        ));
        assert!(
            !json_equal(r#"{"b": [2, 1]}"#, r#"{"b": [1, 2]}"#),
            "arrays keep order"
        );
        assert!(!json_equal("not json", "not json"));
        assert!(!json_equal(r#"{"a": 1}"#, r#"{"a": 1, "b": null}"#));
    }
}
