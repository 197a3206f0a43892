//! How alerts look on a terminal and as JSON.

use std::io::{self, Write};

use crate::cli::output::{table, write_table};
use crate::cli::values::rfc3339;
use crate::pb;

pub(crate) fn type_name(value: i32) -> &'static str {
    match pb::AlertType::try_from(value) {
        Ok(pb::AlertType::Regression) => "regression",
        Ok(pb::AlertType::Threshold) => "threshold",
        Ok(pb::AlertType::Anomaly) => "anomaly",
        Ok(pb::AlertType::Experiment) => "experiment",
        _ => "unspecified",
    }
}

pub(crate) fn severity_name(value: i32) -> &'static str {
    match pb::AlertSeverity::try_from(value) {
        Ok(pb::AlertSeverity::Info) => "info",
        Ok(pb::AlertSeverity::Warning) => "warning",
        Ok(pb::AlertSeverity::Critical) => "critical",
        _ => "unspecified",
    }
}

pub(crate) fn status_name(value: i32) -> &'static str {
    match pb::AlertStatus::try_from(value) {
        Ok(pb::AlertStatus::Firing) => "firing",
        Ok(pb::AlertStatus::Acknowledged) => "acknowledged",
        Ok(pb::AlertStatus::Resolved) => "resolved",
        _ => "unspecified",
    }
}

pub(crate) fn event_kind_name(value: i32) -> &'static str {
    match pb::AlertEventKind::try_from(value) {
        Ok(pb::AlertEventKind::Created) => "created",
        Ok(pb::AlertEventKind::Updated) => "updated",
        Ok(pb::AlertEventKind::Acknowledged) => "acknowledged",
        Ok(pb::AlertEventKind::Resolved) => "resolved",
        Ok(pb::AlertEventKind::Heartbeat) => "heartbeat",
        _ => "unspecified",
    }
}

/// ANSI colour by severity: critical red, warning yellow, info blue.
pub(crate) fn colour(severity: i32, text: &str) -> String {
    let code = match pb::AlertSeverity::try_from(severity) {
        Ok(pb::AlertSeverity::Critical) => "31",
        Ok(pb::AlertSeverity::Warning) => "33",
        _ => "34",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

pub(crate) fn alert_table(out: &mut dyn Write, alerts: &[pb::Alert]) -> io::Result<()> {
    let mut rows = table(&[
        "ID",
        "SEVERITY",
        "STATUS",
        "TYPE",
        "SOURCE",
        "SOURCE ID",
        "METRIC",
        "SEEN",
        "LAST SEEN",
        "MESSAGE",
    ]);
    for alert in alerts {
        rows.add_row(vec![
            alert.id.clone(),
            severity_name(alert.severity).to_owned(),
            status_name(alert.status).to_owned(),
            type_name(alert.r#type).to_owned(),
            alert.source.clone(),
            alert.source_id.clone(),
            alert.metric.clone(),
            alert.occurrences.to_string(),
            rfc3339(alert.last_seen_at.as_ref()),
            alert.message.clone(),
        ]);
    }
    write_table(out, rows)
}

pub(crate) fn alert_details(out: &mut dyn Write, alert: &pb::Alert) -> io::Result<()> {
    let mut rows = table(&[]);
    let optional = |value: Option<f64>| value.map(|v| v.to_string()).unwrap_or_default();
    for (key, value) in [
        ("id", alert.id.clone()),
        ("type", type_name(alert.r#type).to_owned()),
        ("severity", severity_name(alert.severity).to_owned()),
        ("status", status_name(alert.status).to_owned()),
        ("message", alert.message.clone()),
        ("source", alert.source.clone()),
        ("source id", alert.source_id.clone()),
        ("metric", alert.metric.clone()),
        ("threshold", optional(alert.threshold)),
        ("actual value", optional(alert.actual_value)),
        (
            "labels",
            alert
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("fingerprint", alert.fingerprint.clone()),
        ("occurrences", alert.occurrences.to_string()),
        ("first seen", rfc3339(alert.first_seen_at.as_ref())),
        ("last seen", rfc3339(alert.last_seen_at.as_ref())),
        (
            "acknowledged",
            format!(
                "{} {} {}",
                rfc3339(alert.acknowledged_at.as_ref()),
                alert.acknowledged_by,
                alert.ack_comment
            ),
        ),
        ("resolved", rfc3339(alert.resolved_at.as_ref())),
    ] {
        rows.add_row(vec![key.to_owned(), value.trim().to_owned()]);
    }
    write_table(out, rows)
}

/// One line per event for `tail`.
pub(crate) fn event_line(event: &pb::AlertEvent, use_colour: bool) -> String {
    let Some(alert) = &event.alert else {
        return format!("#{} {}", event.sequence, event_kind_name(event.kind));
    };
    let severity = severity_name(alert.severity).to_uppercase();
    let severity = if use_colour {
        colour(alert.severity, &severity)
    } else {
        severity
    };
    format!(
        "#{} {} {} {} {}/{} {} (x{}) {}",
        event.sequence,
        rfc3339(event.time.as_ref()),
        severity,
        event_kind_name(event.kind),
        alert.source,
        alert.source_id,
        type_name(alert.r#type),
        alert.occurrences,
        alert.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_name_the_sequence_severity_and_kind() {
        let event = pb::AlertEvent {
            sequence: 7,
            kind: pb::AlertEventKind::Created.into(),
            alert: Some(pb::Alert {
                severity: pb::AlertSeverity::Critical.into(),
                r#type: pb::AlertType::Regression.into(),
                source: "evaluation".into(),
                source_id: "ds1".into(),
                occurrences: 1,
                message: "pass rate dropped".into(),
                ..Default::default()
            }),
            time: None,
        };
        let plain = event_line(&event, false);
        assert!(plain.starts_with("#7 "), "{plain}");
        assert!(
            plain.contains("CRITICAL created evaluation/ds1 regression (x1) pass rate dropped"),
            "{plain}"
        );
        assert!(event_line(&event, true).contains("\x1b[31mCRITICAL\x1b[0m"));
    }
}
