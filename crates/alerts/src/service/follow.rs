//! Following what other processes sharing the database commit: each replica keeps its
//! own index of open alerts (dedup decides against it) and its own live feed, so alert
//! events committed elsewhere are read back, applied to the index and published here.

use std::sync::{Arc, MutexGuard, PoisonError};

use llmops_feed::{FollowCursor, Followed};

use super::AlertService;
use crate::error::AlertError;
use crate::model::{AlertEvent, AlertStatus};

/// How many events one read of the feed takes.
const FOLLOW_BATCH: usize = 500;

impl AlertService {
    /// Applies every alert change committed since the last call, by any process; returns
    /// how many events it read.
    pub async fn follow(&self) -> Result<usize, AlertError> {
        self.follower().enable();
        let mut read = 0;
        loop {
            let after = self.follower().cursor();
            let events = self.store.alert_events_after(after, FOLLOW_BATCH).await?;
            let complete = events.len() < FOLLOW_BATCH;
            read += events.len();
            for event in events {
                self.apply_followed(event).await?;
            }
            if complete {
                return Ok(read);
            }
        }
    }

    async fn apply_followed(&self, event: AlertEvent) -> Result<(), AlertError> {
        // Writers commit and record under this lock, so the check cannot race them.
        let mut open = self.open.lock().await;
        let sequence = event.sequence;
        if self.follower().classify(sequence) != Followed::Remote {
            self.follower().pass(sequence);
            return Ok(());
        }
        // The newest stored state, not the event's: the alert may have changed again
        // since (here or elsewhere), and the index must never move back.
        let alert_id = event.alert.id;
        match self.store.get_alert(alert_id).await? {
            Some(alert) if alert.status != AlertStatus::Resolved => {
                open.insert(alert.fingerprint.clone(), alert);
            }
            // Resolved, or pruned since.
            _ => {
                let fingerprint = &event.alert.fingerprint;
                if open.get(fingerprint).is_some_and(|a| a.id == alert_id) {
                    open.remove(fingerprint);
                }
            }
        }
        self.follower().pass(sequence);
        // Its deliveries were queued by the process that committed it; if this one
        // sends webhooks, they are due now.
        let queued = self
            .receivers
            .iter()
            .any(|r| r.filter.matches(&event.alert));
        if let (true, Some(waker)) = (queued, &self.delivery_waker) {
            waker.notify_one();
        }
        self.feed.publish(Arc::new(event));
        Ok(())
    }

    pub(super) fn follower(&self) -> MutexGuard<'_, FollowCursor> {
        // A cursor and a set, consistent after any panic between statements.
        self.follower.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
