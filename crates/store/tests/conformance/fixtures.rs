//! Helpers every store's cases share.

use chrono::{DateTime, Utc};

/// The current time to the microsecond: all of a time that every backend keeps, so a
/// record compares equal to itself after a round trip.
pub(crate) fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("a representable time")
}

/// Owned ids, for the stores' `&[String]` arguments.
pub(crate) fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}
