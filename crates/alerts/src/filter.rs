//! Which alerts a listing or a subscription wants.

use chrono::{DateTime, Utc};

use crate::model::{Alert, AlertSeverity, AlertStatus, AlertType};

/// A listing filter; empty lists and `None` match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Any of these types.
    pub types: Vec<AlertType>,
    /// Any of these severities.
    pub severities: Vec<AlertSeverity>,
    /// Any of these statuses.
    pub statuses: Vec<AlertStatus>,
    /// Exactly this source.
    pub source: Option<String>,
    /// Exactly this source id.
    pub source_id: Option<String>,
    /// Only alerts nobody has acknowledged (the seed's filter).
    pub unacknowledged_only: bool,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
}

impl AlertFilter {
    /// Whether `alert` passes the filter (storage applies the same rules in SQL).
    pub fn matches(&self, alert: &Alert) -> bool {
        (self.types.is_empty() || self.types.contains(&alert.alert_type))
            && (self.severities.is_empty() || self.severities.contains(&alert.severity))
            && (self.statuses.is_empty() || self.statuses.contains(&alert.status))
            && self.source.as_ref().is_none_or(|s| *s == alert.source)
            && self
                .source_id
                .as_ref()
                .is_none_or(|s| *s == alert.source_id)
            && (!self.unacknowledged_only || alert.acknowledged_at.is_none())
            && self.since.is_none_or(|t| alert.created_at >= t)
            && self.until.is_none_or(|t| alert.created_at < t)
    }
}

/// A subscription filter; empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionFilter {
    /// Any of these types.
    pub types: Vec<AlertType>,
    /// At least this severity.
    pub min_severity: Option<AlertSeverity>,
    /// Any of these sources.
    pub sources: Vec<String>,
}

impl SubscriptionFilter {
    /// Whether an event about `alert` goes to the subscriber.
    pub fn matches(&self, alert: &Alert) -> bool {
        (self.types.is_empty() || self.types.contains(&alert.alert_type))
            && self.min_severity.is_none_or(|min| alert.severity >= min)
            && (self.sources.is_empty() || self.sources.contains(&alert.source))
    }
}
