//! The dedup key of an alert: a stable hash of what identifies the problem.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::model::AlertType;

/// SHA-256 (first 16 bytes, hex) over type, source, source id, metric and the labels in
/// key order. Every part is length-prefixed so that no two different inputs can
/// concatenate to the same bytes (`("ab", "c")` vs `("a", "bc")`). The message, values
/// and metadata are left out on purpose: they change between occurrences of one problem.
pub fn fingerprint(
    alert_type: AlertType,
    source: &str,
    source_id: &str,
    metric: &str,
    labels: &BTreeMap<String, String>,
) -> String {
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(alert_type.as_str().as_bytes());
    part(source.as_bytes());
    part(source_id.as_bytes());
    part(metric.as_bytes());
    for (key, value) in labels {
        part(key.as_bytes());
        part(value.as_bytes());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equal_identities_share_a_fingerprint_whatever_the_label_order() {
        let a = fingerprint(
            AlertType::Regression,
            "evaluation",
            "ds1",
            "pass_rate",
            &labels(&[("prompt", "p"), ("model", "m")]),
        );
        let b = fingerprint(
            AlertType::Regression,
            "evaluation",
            "ds1",
            "pass_rate",
            &labels(&[("model", "m"), ("prompt", "p")]),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn any_identity_difference_changes_it() {
        let base = fingerprint(AlertType::Regression, "ab", "c", "m", &labels(&[]));
        assert_ne!(
            base,
            fingerprint(AlertType::Regression, "a", "bc", "m", &labels(&[]))
        );
        assert_ne!(
            base,
            fingerprint(AlertType::Threshold, "ab", "c", "m", &labels(&[]))
        );
        assert_ne!(
            base,
            fingerprint(
                AlertType::Regression,
                "ab",
                "c",
                "m",
                &labels(&[("k", "v")])
            )
        );
    }
}
