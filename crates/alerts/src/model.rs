//! The alert records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What kind of problem an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    /// Quality dropped against an earlier run.
    Regression,
    /// A metric crossed a configured threshold.
    Threshold,
    /// Something unusual was detected.
    Anomaly,
    /// An experiment needs attention (sample ratio mismatch, guardrail, winner).
    Experiment,
}

impl AlertType {
    /// The lowercase name used in fingerprints, storage and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::Threshold => "threshold",
            Self::Anomaly => "anomaly",
            Self::Experiment => "experiment",
        }
    }
}

/// How urgent an alert is; ordered, so filters can ask for "at least WARNING".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// For information.
    Info,
    /// Needs a look.
    Warning,
    /// Needs action now.
    Critical,
}

impl AlertSeverity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Open and not yet acknowledged.
    Firing,
    /// Open, and someone has taken it.
    Acknowledged,
    /// Closed. A new occurrence of the same problem opens a new alert.
    Resolved,
}

impl AlertStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }
}

/// What a caller gives to raise an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAlert {
    /// The kind of problem.
    pub alert_type: AlertType,
    /// How urgent.
    pub severity: AlertSeverity,
    /// A human-readable description.
    pub message: String,
    /// What raised it (`evaluation`, `experiments`, a service name).
    pub source: String,
    /// The thing concerned (a dataset id, an experiment id).
    pub source_id: String,
    /// The metric concerned.
    pub metric: String,
    /// The threshold crossed, when there is one.
    pub threshold: Option<f64>,
    /// The observed value.
    pub actual_value: Option<f64>,
    /// Identifying labels; part of the fingerprint.
    pub labels: BTreeMap<String, String>,
    /// Extra information; not part of the fingerprint.
    pub metadata: BTreeMap<String, String>,
    /// A caller-chosen dedup key; computed from the identity fields when empty.
    pub fingerprint: String,
}

impl NewAlert {
    /// The dedup key: the caller's, or the one computed from the identity fields.
    pub fn dedup_key(&self) -> String {
        if self.fingerprint.is_empty() {
            crate::fingerprint::fingerprint(
                self.alert_type,
                &self.source,
                &self.source_id,
                &self.metric,
                &self.labels,
            )
        } else {
            self.fingerprint.clone()
        }
    }
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// UUID v7.
    pub id: Uuid,
    /// The kind of problem.
    pub alert_type: AlertType,
    /// How urgent; only ever raised by later occurrences.
    pub severity: AlertSeverity,
    /// Where it is in its life.
    pub status: AlertStatus,
    /// The latest occurrence's message.
    pub message: String,
    /// What raised it.
    pub source: String,
    /// The thing concerned.
    pub source_id: String,
    /// The metric concerned.
    pub metric: String,
    /// The threshold crossed.
    pub threshold: Option<f64>,
    /// The latest observed value.
    pub actual_value: Option<f64>,
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// Extra information.
    pub metadata: BTreeMap<String, String>,
    /// The dedup key.
    pub fingerprint: String,
    /// How many times the problem was raised while this alert was open.
    pub occurrences: u64,
    /// The first occurrence.
    pub first_seen_at: DateTime<Utc>,
    /// The latest occurrence.
    pub last_seen_at: DateTime<Utc>,
    /// When the alert was created.
    pub created_at: DateTime<Utc>,
    /// When it was first acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acknowledged_by: String,
    /// The acknowledger's comment.
    pub ack_comment: String,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What an [`AlertEvent`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEventKind {
    /// A new alert.
    Created,
    /// Another occurrence of an open alert.
    Updated,
    /// Someone acknowledged it.
    Acknowledged,
    /// It was resolved.
    Resolved,
}

/// A committed change to an alert, with its durable sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Strictly increasing, assigned in commit order.
    pub sequence: u64,
    /// What happened.
    pub kind: AlertEventKind,
    /// The alert right after the change.
    pub alert: Alert,
    /// When.
    pub time: DateTime<Utc>,
}
