//! The alert service: dedup, acknowledgement, resolution, listing and subscriptions.
//!
//! Writes are serialised by one lock: each decides against the in-memory index of open
//! alerts, commits (alert, event and webhook deliveries in one transaction), and only
//! then updates the index and publishes the event, so subscribers see events in
//! sequence order and never one that is not durable.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use llmops_feed::{LiveFeed, ReplaySource, Sequenced, Subscription};
use tokio::sync::{Mutex, Notify};
use uuid::Uuid;

use crate::error::AlertError;
use crate::filter::{AlertFilter, SubscriptionFilter};
use crate::model::{Alert, AlertEvent, AlertEventKind, AlertStatus, NewAlert};
use crate::store::{AlertCommit, AlertCursor, AlertStore};
use crate::validate::validate_new_alert;
use crate::webhook::{alertmanager_body, WebhookDelivery, WebhookReceiver};

mod follow;

/// How many events a subscriber may fall behind before catching up from storage.
const LIVE_FEED_CAPACITY: usize = 4096;

/// The outcome of raising an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct RaisedAlert {
    /// The alert as stored.
    pub alert: Alert,
    /// Whether an open alert with the same fingerprint absorbed this occurrence.
    pub deduplicated: bool,
}

/// Raising and resolving alerts from inside the process (the evaluator, experiments).
#[async_trait]
pub trait AlertSink: Send + Sync {
    /// Raises an alert, deduplicated by fingerprint.
    async fn raise(&self, alert: NewAlert) -> Result<RaisedAlert, AlertError>;
    /// Resolves the open alert with this fingerprint, if there is one.
    async fn resolve_fingerprint(&self, fingerprint: &str) -> Result<Option<Alert>, AlertError>;
    /// The open alerts of `source`: (fingerprint, source id). A checker that raises on
    /// changes starts from these after a restart, so a condition that still holds is not
    /// raised again and one that cleared while the server was down is resolved.
    async fn open_of_source(&self, source: &str) -> Vec<(String, String)>;
}

/// The alert service.
pub struct AlertService {
    store: Arc<dyn AlertStore>,
    receivers: Vec<WebhookReceiver>,
    external_url: String,
    /// Open (not resolved) alerts by fingerprint.
    open: Mutex<HashMap<String, Alert>>,
    feed: LiveFeed<AlertEvent>,
    /// Wakes the webhook sender after a commit that queued deliveries.
    delivery_waker: Option<Arc<Notify>>,
    /// Where this process is in the feed shared with other processes.
    follower: std::sync::Mutex<llmops_feed::FollowCursor>,
}

impl std::fmt::Debug for AlertService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertService")
            .field("receivers", &self.receivers.len())
            .finish_non_exhaustive()
    }
}

impl Sequenced for AlertEvent {
    fn sequence(&self) -> u64 {
        self.sequence
    }
}

struct AlertReplay(Arc<dyn AlertStore>);

#[async_trait]
impl ReplaySource<AlertEvent> for AlertReplay {
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<AlertEvent>, String> {
        self.0
            .alert_events_after(after, limit)
            .await
            .map_err(|err| err.to_string())
    }
}

impl AlertService {
    /// Opens the service: loads open alerts and the event head from storage.
    pub async fn open(
        store: Arc<dyn AlertStore>,
        receivers: Vec<WebhookReceiver>,
        external_url: String,
    ) -> Result<Self, AlertError> {
        // The head first: an event committed between the two reads is then both in the
        // index and after the head, and following it again changes nothing.
        let head = store.alert_head_sequence().await?;
        let open = store
            .open_alerts()
            .await?
            .into_iter()
            .map(|a| (a.fingerprint.clone(), a))
            .collect();
        Ok(Self {
            store,
            receivers,
            external_url,
            open: Mutex::new(open),
            feed: LiveFeed::new(LIVE_FEED_CAPACITY, head),
            delivery_waker: None,
            follower: std::sync::Mutex::new(llmops_feed::FollowCursor::starting_after(head)),
        })
    }

    /// Wakes `waker` (the webhook sender's) whenever a commit queues deliveries, so they
    /// go out at once rather than at the sender's next poll.
    pub fn with_delivery_waker(mut self, waker: Arc<Notify>) -> Self {
        self.delivery_waker = Some(waker);
        self
    }

    /// The sequence of the last committed event.
    pub fn head_sequence(&self) -> u64 {
        self.feed.head()
    }

    /// Raises an alert. An open alert with the same fingerprint is updated instead
    /// (occurrences + 1, last seen, value, message; severity only ever raised), whichever
    /// process sharing the database opened it.
    pub async fn create(&self, new: NewAlert) -> Result<RaisedAlert, AlertError> {
        validate_new_alert(&new)?;
        let fingerprint = new.dedup_key();
        let mut open = self.open.lock().await;
        let mut current = open.get(&fingerprint).cloned();
        for _ in 0..MAX_STALE_RETRIES {
            let now = now();
            let (alert, kind) = merged(current.as_ref(), &new, &fingerprint, now);
            match self.commit(&alert, current.as_ref(), kind, now).await? {
                AlertCommit::Committed(_) => {
                    open.insert(fingerprint, alert.clone());
                    return Ok(RaisedAlert {
                        alert,
                        deduplicated: kind == AlertEventKind::Updated,
                    });
                }
                // Changed by another process: decide again from what it committed.
                AlertCommit::Stale(stored) => {
                    current = stored.filter(|a| a.status != AlertStatus::Resolved);
                }
            }
        }
        Err(contended(&fingerprint))
    }

    /// One alert.
    pub async fn get(&self, id: Uuid) -> Result<Alert, AlertError> {
        self.store
            .get_alert(id)
            .await?
            .ok_or_else(|| AlertError::NotFound(format!("alert {id} not found")))
    }

    /// Acknowledges an open alert. Idempotent: a second acknowledgement keeps the first
    /// one's time, author and comment. A resolved alert cannot be acknowledged.
    pub async fn acknowledge(
        &self,
        id: Uuid,
        by: &str,
        comment: &str,
    ) -> Result<Alert, AlertError> {
        let mut open = self.open.lock().await;
        let mut current = self.current(&open, id).await?;
        let mut verified = false;
        for _ in 0..MAX_STALE_RETRIES {
            if !verified && current.acknowledged_at.is_some() {
                // Answering from the index alone could repeat what another process has
                // changed since (resolved it, say): confirm against storage.
                current = self.get(id).await?;
                verified = true;
                continue;
            }
            if current.status == AlertStatus::Resolved {
                return Err(AlertError::FailedPrecondition(format!(
                    "alert {} is {}; only open alerts can be acknowledged",
                    current.id,
                    current.status.as_str()
                )));
            }
            if current.acknowledged_at.is_some() {
                return Ok(current);
            }
            let now = now();
            let mut alert = current.clone();
            alert.status = AlertStatus::Acknowledged;
            alert.acknowledged_at = Some(now);
            alert.acknowledged_by = by.to_owned();
            alert.ack_comment = comment.to_owned();
            match self
                .commit(&alert, Some(&current), AlertEventKind::Acknowledged, now)
                .await?
            {
                AlertCommit::Committed(_) => {
                    open.insert(alert.fingerprint.clone(), alert.clone());
                    return Ok(alert);
                }
                AlertCommit::Stale(stored) => current = stored.ok_or_else(|| not_found(id))?,
            }
        }
        Err(contended(&current.fingerprint))
    }

    /// Resolves an alert. Idempotent: resolving a resolved alert returns it unchanged.
    pub async fn resolve(&self, id: Uuid) -> Result<Alert, AlertError> {
        let mut open = self.open.lock().await;
        let current = self.current(&open, id).await?;
        self.resolve_open(&mut open, current).await
    }

    /// The alert with `id`: the index's copy of an open one, else as stored (opened by
    /// another process and not followed yet, or resolved).
    async fn current(&self, open: &HashMap<String, Alert>, id: Uuid) -> Result<Alert, AlertError> {
        match open.values().find(|a| a.id == id) {
            Some(alert) => Ok(alert.clone()),
            None => self.get(id).await,
        }
    }

    async fn resolve_open(
        &self,
        open: &mut HashMap<String, Alert>,
        mut current: Alert,
    ) -> Result<Alert, AlertError> {
        for _ in 0..MAX_STALE_RETRIES {
            if current.status == AlertStatus::Resolved {
                if open
                    .get(&current.fingerprint)
                    .is_some_and(|a| a.id == current.id)
                {
                    open.remove(&current.fingerprint);
                }
                return Ok(current);
            }
            let now = now();
            let mut alert = current.clone();
            alert.status = AlertStatus::Resolved;
            alert.resolved_at = Some(now);
            match self
                .commit(&alert, Some(&current), AlertEventKind::Resolved, now)
                .await?
            {
                AlertCommit::Committed(_) => {
                    open.remove(&alert.fingerprint);
                    return Ok(alert);
                }
                AlertCommit::Stale(stored) => {
                    current = stored.ok_or_else(|| not_found(current.id))?;
                }
            }
        }
        Err(contended(&current.fingerprint))
    }

    /// Alerts matching `filter`, newest first.
    pub async fn list(
        &self,
        filter: &AlertFilter,
        cursor: Option<AlertCursor>,
        limit: usize,
    ) -> Result<Vec<Alert>, AlertError> {
        for (field, value) in [("source", &filter.source), ("source_id", &filter.source_id)] {
            if value.as_deref().is_some_and(|text| text.contains('\0')) {
                return Err(AlertError::invalid(field, llmops_core::NUL_REFUSED));
            }
        }
        Ok(self.store.list_alerts(filter, cursor, limit).await?)
    }

    /// Subscribes to events matching `filter`: after `after_sequence` (replayed from
    /// storage, then live), or live from now. A sequence older than retention keeps is
    /// refused, never answered with a silent gap.
    pub async fn subscribe(
        &self,
        filter: SubscriptionFilter,
        after_sequence: Option<u64>,
    ) -> Result<Subscription<AlertEvent>, AlertError> {
        if let Some(after) = after_sequence {
            let floor = self.store.alert_event_floor().await?;
            if after < floor {
                return Err(AlertError::OutOfRange(format!(
                    "events up to sequence {floor} were removed by retention; list the alerts again and subscribe from {}",
                    self.head_sequence()
                )));
            }
        }
        // Under the writers' lock, so the head is not moving while we read it.
        let _open = self.open.lock().await;
        let cursor = after_sequence.unwrap_or_else(|| self.head_sequence());
        let source = Arc::new(AlertReplay(self.store.clone()));
        Ok(self.feed.subscribe(
            source,
            cursor,
            after_sequence.is_some(),
            move |event: &AlertEvent| filter.matches(&event.alert),
        ))
    }

    /// Removes alerts resolved before `cutoff`, and events older than it.
    pub async fn prune(&self, cutoff: DateTime<Utc>) -> Result<u64, AlertError> {
        Ok(self.store.prune_alerts(cutoff).await?)
    }

    /// Commits `alert` in place of `previous` (`None`: a new alert) with its event and
    /// webhook deliveries; once committed, publishes the event.
    async fn commit(
        &self,
        alert: &Alert,
        previous: Option<&Alert>,
        kind: AlertEventKind,
        time: DateTime<Utc>,
    ) -> Result<AlertCommit, AlertError> {
        let event = AlertEvent {
            sequence: 0,
            kind,
            alert: alert.clone(),
            time,
        };
        // Built by the store once the event has its sequence, which the bodies carry.
        let deliveries = |event: &AlertEvent| -> Vec<WebhookDelivery> {
            self.receivers
                .iter()
                .filter(|receiver| receiver.filter.matches(&event.alert))
                .map(|receiver| WebhookDelivery {
                    id: Uuid::now_v7(),
                    receiver: receiver.name.clone(),
                    sequence: event.sequence,
                    body: alertmanager_body(&receiver.name, event, &self.external_url),
                })
                .collect()
        };
        let outcome = self
            .store
            .commit_alert(alert, previous, &event, &deliveries)
            .await?;
        if let AlertCommit::Committed(event) = &outcome {
            self.follower().record_local(event.sequence);
            self.feed.publish(Arc::new(event.clone()));
            let queued = self.receivers.iter().any(|r| r.filter.matches(alert));
            if let (true, Some(waker)) = (queued, &self.delivery_waker) {
                waker.notify_one();
            }
        }
        Ok(outcome)
    }
}

/// How often one write decides again after finding its alert changed by another process
/// before giving up; each retry means that another process committed a change of it.
const MAX_STALE_RETRIES: usize = 64;

/// `new` folded into `current` (the open alert with its fingerprint), or a new alert.
fn merged(
    current: Option<&Alert>,
    new: &NewAlert,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> (Alert, AlertEventKind) {
    let new = new.clone();
    match current {
        Some(existing) => {
            let mut alert = existing.clone();
            alert.occurrences += 1;
            alert.last_seen_at = now;
            alert.message = new.message;
            alert.actual_value = new.actual_value.or(alert.actual_value);
            alert.threshold = new.threshold.or(alert.threshold);
            alert.severity = alert.severity.max(new.severity);
            alert.metadata.extend(new.metadata);
            (alert, AlertEventKind::Updated)
        }
        None => (
            Alert {
                id: Uuid::now_v7(),
                alert_type: new.alert_type,
                severity: new.severity,
                status: AlertStatus::Firing,
                message: new.message,
                source: new.source,
                source_id: new.source_id,
                metric: new.metric,
                threshold: new.threshold,
                actual_value: new.actual_value,
                labels: new.labels,
                metadata: new.metadata,
                fingerprint: fingerprint.to_owned(),
                occurrences: 1,
                first_seen_at: now,
                last_seen_at: now,
                created_at: now,
                acknowledged_at: None,
                acknowledged_by: String::new(),
                ack_comment: String::new(),
                resolved_at: None,
            },
            AlertEventKind::Created,
        ),
    }
}

fn not_found(id: Uuid) -> AlertError {
    AlertError::NotFound(format!("alert {id} not found"))
}

/// Too many processes changed the alert at once for this write to land; retrying is safe.
fn contended(fingerprint: &str) -> AlertError {
    AlertError::Storage(format!(
        "alert {fingerprint} kept changing under concurrent writers; retry"
    ))
}

#[async_trait]
impl AlertSink for AlertService {
    async fn raise(&self, alert: NewAlert) -> Result<RaisedAlert, AlertError> {
        self.create(alert).await
    }

    async fn resolve_fingerprint(&self, fingerprint: &str) -> Result<Option<Alert>, AlertError> {
        let mut open = self.open.lock().await;
        match open.get(fingerprint).cloned() {
            Some(alert) => self.resolve_open(&mut open, alert).await.map(Some),
            None => Ok(None),
        }
    }

    async fn open_of_source(&self, source: &str) -> Vec<(String, String)> {
        self.open
            .lock()
            .await
            .iter()
            .filter(|(_, alert)| alert.source == source)
            .map(|(fingerprint, alert)| (fingerprint.clone(), alert.source_id.clone()))
            .collect()
    }
}

/// The current time at the microsecond precision storage keeps.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}
