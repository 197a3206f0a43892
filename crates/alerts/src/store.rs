//! What the alert service needs from storage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use llmops_core::StoreError;
use uuid::Uuid;

use crate::filter::AlertFilter;
use crate::model::{Alert, AlertEvent};
use crate::webhook::{DeliveryOutcome, PendingDelivery, WebhookDelivery};

/// Where listing resumes: after the alert with this creation time and id.
pub type AlertCursor = (DateTime<Utc>, Uuid);

/// Builds the webhook deliveries of an event once it has its sequence.
pub type DeliveriesFor<'a> =
    dyn for<'e> Fn(&'e AlertEvent) -> Vec<WebhookDelivery> + Send + Sync + 'a;

/// What [`AlertStore::commit_alert`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertCommit {
    /// Written; the event as stored, with its sequence.
    Committed(AlertEvent),
    /// Nothing written: the decision rested on an alert that changed meanwhile. Carries
    /// the alert as stored now (for an insert, the open alert with the fingerprint; for
    /// a replacement, the alert with the id, `None` if it is gone).
    Stale(Option<Alert>),
}

/// Durable storage of alerts, their event log and the webhook outbox.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// Every alert that is not resolved (the dedup index is built from them).
    async fn open_alerts(&self) -> Result<Vec<Alert>, StoreError>;

    /// The sequence of the last committed alert event.
    async fn alert_head_sequence(&self) -> Result<u64, StoreError>;

    /// Inserts an alert (`previous` is `None`) or replaces `previous` with it, appends
    /// `event` with the next sequence (assigned in commit order) and queues the webhook
    /// deliveries `deliveries` builds for the event as stored, in one transaction.
    ///
    /// Other processes may write the same alerts, so the write is checked against what
    /// is stored, under a row lock held to commit: an insert whose fingerprint already
    /// has an open alert, or a replacement of an alert that no longer equals `previous`,
    /// writes nothing and answers [`AlertCommit::Stale`] with the alert as stored; the
    /// caller decides again from it.
    async fn commit_alert(
        &self,
        alert: &Alert,
        previous: Option<&Alert>,
        event: &AlertEvent,
        deliveries: &DeliveriesFor<'_>,
    ) -> Result<AlertCommit, StoreError>;

    /// One alert.
    async fn get_alert(&self, id: Uuid) -> Result<Option<Alert>, StoreError>;

    /// Alerts matching `filter`, newest first, after `cursor`, at most `limit`.
    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        cursor: Option<AlertCursor>,
        limit: usize,
    ) -> Result<Vec<Alert>, StoreError>;

    /// Up to `limit` events after `after`, oldest first.
    async fn alert_events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AlertEvent>, StoreError>;

    /// The highest event sequence removed by retention (0 when none was): a subscriber
    /// resuming from below it would miss events.
    async fn alert_event_floor(&self) -> Result<u64, StoreError>;

    /// Deletes alerts resolved before `cutoff` and events older than it; returns how
    /// many alerts went.
    async fn prune_alerts(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Deliveries due at `now`, oldest first.
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError>;

    /// Records one delivery attempt's outcome.
    async fn record_delivery(
        &self,
        delivery_id: Uuid,
        outcome: &DeliveryOutcome,
    ) -> Result<(), StoreError>;
}
