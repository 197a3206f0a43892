//! How values are stored, the same on every backend: times as integer microseconds
//! since the Unix epoch, records as JSON text.

use chrono::{DateTime, Utc};
use llmops_core::StoreError;

use crate::error::corrupt;

/// Microseconds since the Unix epoch.
pub(crate) fn to_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// `value` as the JSON text a record column holds.
pub(crate) fn record_of<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(what, e))
}

/// A record column's JSON text as a `T`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}
