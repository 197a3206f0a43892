//! Webhook receivers: which events they get, the Alertmanager-compatible body they are
//! sent, its signature, and the retry schedule. Deliveries go through a durable outbox:
//! each is queued in the transaction that records its event, and sent by
//! [`sender::WebhookSender`], so none is lost to a crash or restart.

mod payload;
pub mod sender;

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use payload::{alertmanager_body, signature_header, SIGNATURE_HEADER};

use crate::filter::SubscriptionFilter;

/// A configured receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookReceiver {
    /// Its name (`receiver` in the body).
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// The HMAC-SHA256 signing secret, if any.
    pub secret: Option<String>,
    /// Which events it gets.
    pub filter: SubscriptionFilter,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// How many attempts before giving up.
    pub max_attempts: u32,
}

/// A delivery to queue with its event.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    /// Also the idempotency key the receiver sees.
    pub id: Uuid,
    /// The receiver's name.
    pub receiver: String,
    /// The event it carries.
    pub sequence: u64,
    /// The JSON body.
    pub body: String,
}

/// A queued delivery that is due.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    /// The delivery's id (idempotency key).
    pub id: Uuid,
    /// The receiver's name.
    pub receiver: String,
    /// The JSON body.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// What one attempt achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered {
        /// When.
        at: DateTime<Utc>,
        /// Attempts made, this one included.
        attempts: u32,
    },
    /// It failed; try again at `next_attempt_at`.
    Retry {
        /// Attempts made, this one included.
        attempts: u32,
        /// When to try again.
        next_attempt_at: DateTime<Utc>,
        /// Why it failed.
        error: String,
    },
    /// It failed `max_attempts` times (or the receiver is no longer configured).
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        error: String,
    },
}

/// The wait before attempt `attempt + 1`: exponential from 1 s, capped at 5 minutes,
/// with "equal jitter" (half fixed, half random) so that receivers recovering from an
/// outage are not hit by every sender at once.
pub fn backoff(attempt: u32, random_unit: f64) -> Duration {
    let exponential = Duration::from_secs(1).saturating_mul(1u32 << attempt.min(16));
    let capped = exponential.min(Duration::from_secs(300));
    capped / 2 + capped.mul_f64(random_unit.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_stays_capped() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(30, 1.0), Duration::from_secs(300));
        assert!(backoff(30, 0.0) >= Duration::from_secs(150));
    }
}
