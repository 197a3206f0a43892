//! Conversions between the AlertService messages and the alerts crate's types.

use chrono::{DateTime, Utc};
use llmops_alerts::{
    Alert, AlertEvent, AlertEventKind, AlertSeverity, AlertStatus, AlertType, NewAlert,
};
use tonic::Status;
use uuid::Uuid;

use crate::grpc::convert::timestamp;
use crate::grpc::status::invalid_field;
use crate::pb;

pub(crate) fn alert_type(value: i32, field: &str) -> Result<AlertType, Status> {
    match pb::AlertType::try_from(value) {
        Ok(pb::AlertType::Regression) => Ok(AlertType::Regression),
        Ok(pb::AlertType::Threshold) => Ok(AlertType::Threshold),
        Ok(pb::AlertType::Anomaly) => Ok(AlertType::Anomaly),
        Ok(pb::AlertType::Experiment) => Ok(AlertType::Experiment),
        Ok(pb::AlertType::Unspecified) => Err(invalid_field(field, "an alert type is required")),
        Err(_) => Err(invalid_field(field, format!("{value} is not an AlertType"))),
    }
}

pub(crate) fn severity(value: i32, field: &str) -> Result<AlertSeverity, Status> {
    match pb::AlertSeverity::try_from(value) {
        Ok(pb::AlertSeverity::Info) => Ok(AlertSeverity::Info),
        Ok(pb::AlertSeverity::Warning) => Ok(AlertSeverity::Warning),
        Ok(pb::AlertSeverity::Critical) => Ok(AlertSeverity::Critical),
        Ok(pb::AlertSeverity::Unspecified) => Err(invalid_field(field, "a severity is required")),
        Err(_) => Err(invalid_field(
            field,
            format!("{value} is not an AlertSeverity"),
        )),
    }
}

pub(crate) fn status(value: i32, field: &str) -> Result<AlertStatus, Status> {
    match pb::AlertStatus::try_from(value) {
        Ok(pb::AlertStatus::Firing) => Ok(AlertStatus::Firing),
        Ok(pb::AlertStatus::Acknowledged) => Ok(AlertStatus::Acknowledged),
        Ok(pb::AlertStatus::Resolved) => Ok(AlertStatus::Resolved),
        Ok(pb::AlertStatus::Unspecified) | Err(_) => Err(invalid_field(
            field,
            format!("{value} is not an AlertStatus"),
        )),
    }
}

pub(crate) fn alert_id(text: &str) -> Result<Uuid, Status> {
    if text.is_empty() {
        return Err(invalid_field("alert_id", "alert_id is required"));
    }
    Uuid::parse_str(text)
        .map_err(|_| invalid_field("alert_id", format!("{text:?} is not an alert id")))
}

pub(crate) fn time(
    value: Option<prost_types::Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, Status> {
    value
        .map(|t| {
            DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| invalid_field(field, "the time is out of range"))
        })
        .transpose()
}

/// A client's alert, as the service takes it. Output-only fields are ignored.
pub(crate) fn new_alert(alert: pb::Alert) -> Result<NewAlert, Status> {
    let pb::Alert {
        id: _,
        r#type,
        severity: alert_severity,
        status: _,
        message,
        source,
        source_id,
        metric,
        threshold,
        actual_value,
        labels,
        metadata,
        fingerprint,
        occurrences: _,
        first_seen_at: _,
        last_seen_at: _,
        created_at: _,
        acknowledged_at: _,
        acknowledged_by: _,
        ack_comment: _,
        resolved_at: _,
    } = alert;
    Ok(NewAlert {
        alert_type: alert_type(r#type, "alert.type")?,
        severity: severity(alert_severity, "alert.severity")?,
        message,
        source,
        source_id,
        metric,
        threshold,
        actual_value,
        labels: labels.into_iter().collect(),
        metadata: metadata.into_iter().collect(),
        fingerprint,
    })
}

pub(crate) fn alert_to_pb(alert: &Alert) -> pb::Alert {
    let r#type = match alert.alert_type {
        AlertType::Regression => pb::AlertType::Regression,
        AlertType::Threshold => pb::AlertType::Threshold,
        AlertType::Anomaly => pb::AlertType::Anomaly,
        AlertType::Experiment => pb::AlertType::Experiment,
    };
    let severity = match alert.severity {
        AlertSeverity::Info => pb::AlertSeverity::Info,
        AlertSeverity::Warning => pb::AlertSeverity::Warning,
        AlertSeverity::Critical => pb::AlertSeverity::Critical,
    };
    let status = match alert.status {
        AlertStatus::Firing => pb::AlertStatus::Firing,
        AlertStatus::Acknowledged => pb::AlertStatus::Acknowledged,
        AlertStatus::Resolved => pb::AlertStatus::Resolved,
    };
    pb::Alert {
        id: alert.id.to_string(),
        r#type: r#type.into(),
        severity: severity.into(),
        status: status.into(),
        message: alert.message.clone(),
        source: alert.source.clone(),
        source_id: alert.source_id.clone(),
        metric: alert.metric.clone(),
        threshold: alert.threshold,
        actual_value: alert.actual_value,
        labels: alert.labels.clone().into_iter().collect(),
        metadata: alert.metadata.clone().into_iter().collect(),
        fingerprint: alert.fingerprint.clone(),
        occurrences: alert.occurrences,
        first_seen_at: Some(timestamp(alert.first_seen_at)),
        last_seen_at: Some(timestamp(alert.last_seen_at)),
        created_at: Some(timestamp(alert.created_at)),
        acknowledged_at: alert.acknowledged_at.map(timestamp),
        acknowledged_by: alert.acknowledged_by.clone(),
        ack_comment: alert.ack_comment.clone(),
        resolved_at: alert.resolved_at.map(timestamp),
    }
}

pub(crate) fn event_to_pb(event: &AlertEvent) -> pb::AlertEvent {
    let kind = match event.kind {
        AlertEventKind::Created => pb::AlertEventKind::Created,
        AlertEventKind::Updated => pb::AlertEventKind::Updated,
        AlertEventKind::Acknowledged => pb::AlertEventKind::Acknowledged,
        AlertEventKind::Resolved => pb::AlertEventKind::Resolved,
    };
    pb::AlertEvent {
        sequence: event.sequence,
        kind: kind.into(),
        alert: Some(alert_to_pb(&event.alert)),
        time: Some(timestamp(event.time)),
    }
}

pub(crate) fn heartbeat(sequence: u64) -> pb::AlertEvent {
    pb::AlertEvent {
        sequence,
        kind: pb::AlertEventKind::Heartbeat.into(),
        alert: None,
        time: Some(timestamp(Utc::now())),
    }
}

/// Page tokens name the last alert returned: `<created_at micros>_<id>`.
pub(crate) fn encode_page_token(alert: &Alert) -> String {
    format!("{}_{}", alert.created_at.timestamp_micros(), alert.id)
}

pub(crate) fn decode_page_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || invalid_field("page_token", "page_token is not one this server issued");
    let (micros, id) = token.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let time = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some((time, Uuid::parse_str(id).map_err(|_| bad())?)))
}
