//! The webhook body, shaped like Alertmanager's webhook (version 4) so receivers built
//! for Alertmanager work unchanged, plus an `llmops` object with what Alertmanager lacks.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::model::{Alert, AlertEvent, AlertStatus};

/// The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Llmops-Signature";

/// Alertmanager's "no end time" value.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The JSON body for `event` sent to `receiver`.
pub fn alertmanager_body(receiver: &str, event: &AlertEvent, external_url: &str) -> String {
    let alert = &event.alert;
    let status = if alert.status == AlertStatus::Resolved {
        "resolved"
    } else {
        "firing"
    };
    let labels = alert_labels(alert);
    let annotations = alert_annotations(alert);
    let body = json!({
        "version": "4",
        "groupKey": format!("{{}}:{{fingerprint=\"{}\"}}", alert.fingerprint),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": { "fingerprint": alert.fingerprint },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(alert.first_seen_at),
            "endsAt": alert.resolved_at.map_or_else(|| ZERO_TIME.to_owned(), rfc3339),
            "generatorURL": external_url,
            "fingerprint": alert.fingerprint,
        }],
        "llmops": {
            "sequence": event.sequence,
            "event_kind": event.kind,
            "alert_id": alert.id,
            "alert_status": alert.status.as_str(),
            "occurrences": alert.occurrences,
            "threshold": alert.threshold,
            "actual_value": alert.actual_value,
            "acknowledged_by": alert.acknowledged_by,
            "metadata": alert.metadata,
        },
    });
    body.to_string()
}

fn alert_labels(alert: &Alert) -> BTreeMap<String, String> {
    let mut labels = alert.labels.clone();
    labels.insert(
        "alertname".into(),
        format!("llmops_{}", alert.alert_type.as_str()),
    );
    labels.insert("severity".into(), alert.severity.as_str().into());
    labels.insert("source".into(), alert.source.clone());
    if !alert.source_id.is_empty() {
        labels.insert("source_id".into(), alert.source_id.clone());
    }
    if !alert.metric.is_empty() {
        labels.insert("metric".into(), alert.metric.clone());
    }
    labels
}

fn alert_annotations(alert: &Alert) -> Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert("summary".into(), Value::String(alert.message.clone()));
    if let Some(value) = alert.actual_value {
        annotations.insert("actual_value".into(), Value::String(value.to_string()));
    }
    if let Some(threshold) = alert.threshold {
        annotations.insert("threshold".into(), Value::String(threshold.to_string()));
    }
    Value::Object(annotations)
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The signature header value for `body` signed with `secret` at `unix_seconds`. The
/// timestamp is signed too, so a receiver can refuse replays of old deliveries.
pub fn signature_header(secret: &str, unix_seconds: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{unix_seconds}.").as_bytes());
    mac.update(body.as_bytes());
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix_seconds},v1={digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_hmac(key: &[u8], data: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231_test_case_2() {
        assert_eq!(
            hex_hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let header = signature_header("s3cret", 1_700_000_000, "{\"a\":1}");
        assert_eq!(
            header,
            format!(
                "t=1700000000,v1={}",
                hex_hmac(b"s3cret", b"1700000000.{\"a\":1}")
            )
        );
        assert_ne!(
            header,
            signature_header("s3cret", 1_700_000_001, "{\"a\":1}")
        );
    }
}
