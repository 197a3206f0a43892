//! A provider's caps: at most `max_concurrency` calls in flight and at most
//! `requests_per_minute` started per minute, spaced evenly.
//!
//! A process alone counts them itself ([`Quota::Local`]). Replicas of one deployment
//! count them in the shared database ([`Quota::Shared`]), so the caps hold for the
//! deployment as the provider sees it, not per replica: a call holds one of the
//! provider's numbered call slots (a row leased to the replica, renewed while it lives,
//! free again when it stops or its lease lapses), and each start is reserved one
//! spacing after the previous start anyone reserved. A local semaphore of the same size
//! sits in front, so a replica never has more callers asking the database than the cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmops_cluster::ClusterStore;
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::ProviderError;

/// How long a caller that found every shared slot held waits before asking again (plus
/// up to as much again of jitter, so waiters on several replicas do not ask together).
const SLOT_POLL: Duration = Duration::from_millis(20);

/// Where a provider's caps are counted.
#[derive(Clone, Default)]
pub enum Quota {
    /// In this process: the caps hold per process.
    #[default]
    Local,
    /// In the deployment's database: the caps hold for every replica together.
    Shared(Arc<SharedQuota>),
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("Local"),
            Self::Shared(shared) => write!(f, "Shared({})", shared.holder),
        }
    }
}

/// The deployment's call slots and pacing, held for one replica.
pub struct SharedQuota {
    store: Arc<dyn ClusterStore>,
    /// This replica's id: the holder of its slots.
    holder: String,
    /// How long a slot stays held without renewal: a killed replica's slots are free
    /// again after it.
    lease: Duration,
}

impl SharedQuota {
    /// Slots held by `holder` (this replica) under `lease`; [`SharedQuota::renew`]
    /// must run for as long as they are used.
    pub fn new(store: Arc<dyn ClusterStore>, holder: &str, lease: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            holder: holder.to_owned(),
            lease,
        })
    }

    /// Renews this replica's slots every third of the lease until `stop`. A failed
    /// renewal is retried at the next tick; two failures in a row can lose the slots
    /// to other replicas for the rest of their calls, which the caps then exceed by at
    /// most those calls.
    pub async fn renew(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.lease / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(error) = self.store.renew_call_slots(&self.holder, self.lease).await {
                tracing::warn!(%error, "renewing this replica's provider call slots failed");
            }
        }
    }
}

/// One provider's caps.
pub struct CallLimits {
    provider: String,
    max_concurrency: Option<usize>,
    requests_per_minute: Option<u32>,
    /// This process's share of the slots: all of them, and the only count when local.
    in_flight: Option<Semaphore>,
    /// When the next call may start, when paced locally (tokio's clock, which tests
    /// can pause).
    next_start: Mutex<tokio::time::Instant>,
    quota: Quota,
    /// How long a caller waits for the database before the call fails.
    patience: Duration,
}

impl std::fmt::Debug for CallLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLimits")
            .field("provider", &self.provider)
            .field("max_concurrency", &self.max_concurrency)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("quota", &self.quota)
            .finish()
    }
}

/// A call's place under the concurrency cap, given back when dropped.
pub struct CallSlot<'a> {
    _local: Option<SemaphorePermit<'a>>,
    shared: Option<(Arc<SharedQuota>, String, u32)>,
}

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        let Some((quota, provider, slot)) = self.shared.take() else {
            return;
        };
        // Dropped in a call's future (also when it is cancelled), so the release runs on
        // its own. A failed release is retried until it goes through: the replica's
        // renewals extend every slot it holds, so a slot left held would stay taken for
        // as long as the replica lives. (A clean stop frees them all anyway.)
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                while let Err(error) = quota
                    .store
                    .release_call_slot(&provider, slot, &quota.holder)
                    .await
                {
                    tracing::warn!(%error, provider, slot, "releasing a provider call slot failed; retrying");
                    tokio::time::sleep(quota.lease / 3).await;
                }
            });
        }
    }
}

impl CallLimits {
    /// The caps of `provider`, counted where `quota` says; `patience` bounds how long a
    /// call waits for an unreachable database before it fails.
    pub fn new(
        provider: &str,
        max_concurrency: Option<usize>,
        requests_per_minute: Option<u32>,
        quota: Quota,
        patience: Duration,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            max_concurrency,
            requests_per_minute,
            in_flight: max_concurrency.map(|cap| Semaphore::new(cap.max(1))),
            next_start: Mutex::new(tokio::time::Instant::now()),
            quota,
            patience,
        }
    }

    /// Waits for a place under the concurrency cap (none without one).
    pub async fn slot(&self) -> Result<CallSlot<'_>, ProviderError> {
        let (Some(semaphore), Some(cap)) = (&self.in_flight, self.max_concurrency) else {
            return Ok(CallSlot {
                _local: None,
                shared: None,
            });
        };
        let local = semaphore
            .acquire()
            .await
            .map_err(|e| ProviderError::Connection(e.to_string()))?;
        let shared = match &self.quota {
            Quota::Local => None,
            Quota::Shared(quota) => Some((
                quota.clone(),
                self.provider.clone(),
                self.shared_slot(quota, cap).await?,
            )),
        };
        Ok(CallSlot {
            _local: Some(local),
            shared,
        })
    }

    async fn shared_slot(&self, quota: &SharedQuota, cap: usize) -> Result<u32, ProviderError> {
        let capacity = u32::try_from(cap).unwrap_or(u32::MAX);
        let mut failing_since = None;
        loop {
            match quota
                .store
                .take_call_slot(&self.provider, capacity, &quota.holder, quota.lease)
                .await
            {
                Ok(Some(slot)) => return Ok(slot),
                Ok(None) => failing_since = None,
                Err(error) => self.tolerate(&mut failing_since, error)?,
            }
            tokio::time::sleep(SLOT_POLL.mul_f64(1.0 + fastrand::f64())).await;
        }
    }

    /// Waits for this call's start under the requests-per-minute cap (none without one).
    pub async fn pace(&self) -> Result<(), ProviderError> {
        let Some(rpm) = self.requests_per_minute else {
            return Ok(());
        };
        let spacing = Duration::from_secs(60) / rpm.max(1);
        let wait = match &self.quota {
            Quota::Local => {
                let mut next = self.next_start.lock().await;
                let now = tokio::time::Instant::now();
                let start = (*next).max(now);
                *next = start + spacing;
                start - now
            }
            Quota::Shared(quota) => {
                let mut failing_since = None;
                loop {
                    match quota
                        .store
                        .reserve_call_start(&self.provider, spacing)
                        .await
                    {
                        Ok(wait) => break wait,
                        Err(error) => self.tolerate(&mut failing_since, error)?,
                    }
                    tokio::time::sleep(SLOT_POLL).await;
                }
            }
        };
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Lets a call wait out a database error until its patience runs out.
    fn tolerate(
        &self,
        failing_since: &mut Option<Instant>,
        error: llmops_core::StoreError,
    ) -> Result<(), ProviderError> {
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.patience {
            return Ok(());
        }
        Err(ProviderError::Connection(format!(
            "the deployment's caps of provider {} could not be read: {error}",
            self.provider
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_pacing_spaces_starts_evenly() {
        let limits = CallLimits::new("p", None, Some(6000), Quota::Local, Duration::ZERO);
        let started = std::time::Instant::now();
        for _ in 0..5 {
            limits.pace().await.unwrap();
        }
        // 6,000 per minute is one every 10 ms; the first starts at once, so five starts
        // take at least 40 ms (a busy machine can only make it longer).
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[tokio::test]
    async fn the_local_concurrency_cap_admits_that_many_at_once() {
        let limits = CallLimits::new("p", Some(2), None, Quota::Local, Duration::ZERO);
        let first = limits.slot().await.unwrap();
        let _second = limits.slot().await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), limits.slot())
                .await
                .is_err(),
            "a third call was admitted beside two"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), limits.slot())
            .await
            .expect("a freed place is given to the next call")
            .unwrap();
    }
}
