//! Sends queued webhook deliveries: POSTs each due delivery, records the outcome, and
//! schedules retries with backoff. Runs until its shutdown future resolves.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{
    backoff, signature_header, DeliveryOutcome, PendingDelivery, WebhookReceiver, SIGNATURE_HEADER,
};
use crate::store::AlertStore;

/// Deliveries sent per batch.
const BATCH: usize = 64;
/// How often the outbox is checked when nothing wakes the sender.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Counter of delivery attempts, by `receiver` and `outcome` (delivered, retry, gave_up).
pub const DELIVERIES_TOTAL: &str = "llmops_webhook_deliveries_total";

/// The outbox worker.
pub struct WebhookSender {
    store: Arc<dyn AlertStore>,
    receivers: HashMap<String, WebhookReceiver>,
    /// Scrubs the receivers' secrets and URL credentials from errors before they are
    /// stored in the outbox or logged (an HTTP client's error names the URL it called).
    redactor: llmops_redact::Redactor,
    client: reqwest::Client,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("receivers", &self.receivers.len())
            .finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// A sender for `receivers`, reading the outbox in `store`.
    pub fn new(store: Arc<dyn AlertStore>, receivers: &[WebhookReceiver]) -> Self {
        Self {
            store,
            receivers: receivers
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
            redactor: llmops_redact::Redactor::new(
                receivers.iter().filter_map(|r| r.secret.as_deref()),
            ),
            client: reqwest::Client::new(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// A handle that makes the sender look at the outbox now (after a commit).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Sends due deliveries until `shutdown` resolves.
    ///
    /// Shutdown ends the loop at once, even in the middle of a batch or while a backlog
    /// keeps every batch full: deliveries whose outcome was not recorded stay due in the
    /// outbox and are sent after the next start (receivers dedup by `Idempotency-Key`).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let this = self;
        tokio::pin!(shutdown);
        loop {
            let sent = tokio::select! {
                biased;
                _ = &mut shutdown => return,
                sent = this.send_due() => sent,
            };
            match sent {
                // A full batch means more may be due: go on at once.
                Ok(sent) if sent == BATCH => continue,
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "webhook outbox unavailable"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    /// Sends every due delivery once; returns how many were attempted.
    pub async fn send_due(self: &Arc<Self>) -> Result<usize, String> {
        let due = self
            .store
            .due_deliveries(Utc::now(), BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let count = due.len();
        let mut attempts = JoinSet::new();
        for delivery in due {
            let this = self.clone();
            attempts.spawn(async move {
                let outcome = this.attempt(&delivery).await;
                (delivery, outcome)
            });
        }
        while let Some(joined) = attempts.join_next().await {
            let Ok((delivery, outcome)) = joined else {
                continue;
            };
            log_outcome(&delivery, &outcome);
            if let Err(err) = self.store.record_delivery(delivery.id, &outcome).await {
                // The delivery stays due and is retried; the receiver dedups by key.
                tracing::warn!(error = %err, delivery = %delivery.id, "could not record a webhook delivery outcome");
            }
        }
        Ok(count)
    }

    async fn attempt(&self, delivery: &PendingDelivery) -> DeliveryOutcome {
        let attempts = delivery.attempts + 1;
        let Some(receiver) = self.receivers.get(&delivery.receiver) else {
            return DeliveryOutcome::GaveUp {
                attempts,
                error: format!("receiver {:?} is no longer configured", delivery.receiver),
            };
        };
        let mut request = self
            .client
            .post(&receiver.url)
            .timeout(receiver.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", delivery.id.to_string());
        if let Some(secret) = &receiver.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature_header(secret, Utc::now().timestamp(), &delivery.body),
            );
        }
        let error = match request.body(delivery.body.clone()).send().await {
            Ok(response) if response.status().is_success() => {
                return DeliveryOutcome::Delivered {
                    at: Utc::now(),
                    attempts,
                }
            }
            Ok(response) => format!("the receiver answered {}", response.status()),
            Err(err) if err.is_timeout() => format!("no answer within {:?}", receiver.timeout),
            Err(err) => self
                .redactor
                .redact(&format!("request failed: {err}"))
                .into_owned(),
        };
        if attempts >= receiver.max_attempts {
            return DeliveryOutcome::GaveUp { attempts, error };
        }
        let wait = backoff(delivery.attempts, fastrand::f64());
        let next_attempt_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        DeliveryOutcome::Retry {
            attempts,
            next_attempt_at,
            error,
        }
    }
}

fn log_outcome(delivery: &PendingDelivery, outcome: &DeliveryOutcome) {
    let receiver = delivery.receiver.clone();
    let label = match outcome {
        DeliveryOutcome::Delivered { attempts, .. } => {
            tracing::info!(%receiver, delivery = %delivery.id, attempts, "webhook delivered");
            "delivered"
        }
        DeliveryOutcome::Retry {
            attempts,
            next_attempt_at,
            error,
        } => {
            tracing::warn!(%receiver, delivery = %delivery.id, attempts, %next_attempt_at, %error, "webhook failed; will retry");
            "retry"
        }
        DeliveryOutcome::GaveUp { attempts, error } => {
            tracing::error!(%receiver, delivery = %delivery.id, attempts, %error, "webhook failed; giving up");
            "gave_up"
        }
    };
    metrics::counter!(DELIVERIES_TOTAL, "receiver" => receiver, "outcome" => label).increment(1);
}
