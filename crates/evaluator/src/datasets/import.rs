//! Imports: a stream of sample batches committed as one new version, all or nothing,
//! with server memory bounded by a batch whatever the stream's size.
//!
//! Each batch is checked and stored as it arrives, as samples added in the dataset's
//! next version. Readers read the dataset's current version, so they do not see them;
//! the commit moves the dataset to that version (one small write), and an abandoned
//! import (an error, a client that went away, a crash) deletes them. The dataset is
//! reserved for the import meanwhile: other changes to it are FAILED_PRECONDITION rather
//! than waiting behind a stream that may take minutes. The reservation is stored
//! ([`DatasetStore::begin_import`]) and renewed while the import runs, so it holds for
//! every replica, and lapses when the importing process dies.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dashmap::DashSet;
use uuid::Uuid;

use super::hash::ContentHash;
use super::model::{Dataset, Sample};
use super::store::DatasetStore;
use super::validate::check_samples;
use crate::error::{EvaluationError, StoreError};

/// Who holds imports' reservations, and for how long without renewal.
#[derive(Debug, Clone)]
pub struct ImportLeases {
    /// This process (its replica id).
    pub holder: String,
    /// How long a reservation outlives its last renewal; it is renewed every third.
    pub lease: Duration,
    /// Whether this process is the only one on its database (embedded SQLite): then
    /// every stored reservation at start is a dead process's.
    pub alone: bool,
}

/// An import in progress. Dropped without [`ImportSession::commit`], it deletes what it
/// stored and releases the dataset.
pub struct ImportSession {
    store: Arc<dyn DatasetStore>,
    importing: Arc<DashSet<String>>,
    holder: String,
    /// Renews the stored reservation until the import ends.
    renewal: tokio::task::JoinHandle<()>,
    /// The dataset as it was when the import began; nothing else changes it meanwhile.
    base: Dataset,
    hash: ContentHash,
    staged: u64,
    max_samples: usize,
    finished: bool,
}

impl std::fmt::Debug for ImportSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportSession")
            .field("dataset", &self.base.id)
            .field("staged", &self.staged)
            .finish_non_exhaustive()
    }
}

impl ImportSession {
    /// An import into `base`, whose reservation `leases.holder` has just stored.
    pub(super) fn new(
        store: Arc<dyn DatasetStore>,
        importing: Arc<DashSet<String>>,
        leases: &ImportLeases,
        base: Dataset,
        max_samples: usize,
    ) -> Self {
        let renewal = tokio::spawn(renew(
            store.clone(),
            base.id.clone(),
            leases.holder.clone(),
            leases.lease,
        ));
        Self {
            hash: ContentHash::from_hex(&base.content_hash).unwrap_or_default(),
            store,
            importing,
            holder: leases.holder.clone(),
            renewal,
            base,
            staged: 0,
            max_samples,
            finished: false,
        }
    }

    /// The dataset being imported into.
    pub fn dataset_id(&self) -> &str {
        &self.base.id
    }

    /// Samples stored so far.
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// Checks and stores one batch. Violations name the sample by its index in the whole
    /// stream (`samples[12345].input`).
    pub async fn add_batch(&mut self, mut samples: Vec<Sample>) -> Result<(), EvaluationError> {
        if self.staged as usize + samples.len() > self.max_samples {
            return Err(EvaluationError::invalid(
                "samples",
                format!(
                    "one import holds at most {} samples; split it into several imports",
                    self.max_samples
                ),
            ));
        }
        for sample in &mut samples {
            if sample.id.is_empty() {
                sample.id = Uuid::now_v7().to_string();
            }
        }
        let first_index = self.staged as usize;
        check_samples(&samples, first_index)?;
        let version = self.base.version + 1;
        match self
            .store
            .stage_samples(&self.base.id, version, &samples)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                return Err(self.duplicate_error(&samples, first_index).await)
            }
            Err(other) => return Err(other.into()),
        }
        for sample in &samples {
            self.hash.add(sample);
        }
        self.staged += samples.len() as u64;
        Ok(())
    }

    /// Which id of a refused batch was taken, by the dataset or by an earlier batch.
    async fn duplicate_error(&self, samples: &[Sample], first_index: usize) -> EvaluationError {
        let ids: Vec<String> = samples.iter().map(|s| s.id.clone()).collect();
        let Ok(taken) = self.store.current_samples(&self.base.id, &ids).await else {
            return EvaluationError::Storage("could not find the duplicate sample id".into());
        };
        let Some(first) = taken.first() else {
            return EvaluationError::Storage("a concurrent change conflicted; retry".into());
        };
        let index = ids.iter().position(|id| *id == first.id).unwrap_or(0);
        EvaluationError::AlreadyExists(format!(
            "samples[{}].id: dataset {} or an earlier batch of this import already has a sample {:?}",
            first_index + index,
            self.base.id,
            first.id
        ))
    }

    /// Makes every stored sample part of the dataset, as its next version. Returns the
    /// dataset after the import.
    pub async fn commit(mut self) -> Result<Dataset, EvaluationError> {
        if self.staged == 0 {
            return Err(EvaluationError::invalid(
                "samples",
                "at least one sample is required",
            ));
        }
        let next = Dataset {
            sample_count: self.base.sample_count + self.staged,
            version: self.base.version + 1,
            content_hash: self.hash.to_hex(),
            updated_at: Utc::now(),
            ..self.base.clone()
        };
        self.renewal.abort();
        let committed = self.store.commit_import(&next, &self.holder).await;
        self.finished = committed.is_ok();
        committed?;
        self.importing.remove(&self.base.id);
        Ok(next)
    }
}

impl Drop for ImportSession {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.finished {
            return;
        }
        let store = self.store.clone();
        let importing = self.importing.clone();
        let dataset_id = self.base.id.clone();
        let version = self.base.version;
        let holder = self.holder.clone();
        let discard = async move {
            match store.abandon_import(&dataset_id, version, &holder).await {
                // Released only once the samples are gone: a later change of the dataset
                // reuses their version and would otherwise take them in.
                Ok(()) => {
                    importing.remove(&dataset_id);
                }
                Err(err) => tracing::warn!(
                    error = %err,
                    dataset = %dataset_id,
                    "discarding an abandoned import failed; the dataset stays reserved until its reservation lapses"
                ),
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(discard);
            }
            Err(_) => {
                tracing::warn!(dataset = %self.base.id, "an abandoned import is discarded at the next start")
            }
        }
    }
}

/// Renews an import's reservation every third of `lease` until aborted.
async fn renew(store: Arc<dyn DatasetStore>, dataset_id: String, holder: String, lease: Duration) {
    let mut ticks = tokio::time::interval(lease / 3);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match store.renew_import(&dataset_id, &holder, lease).await {
            Ok(true) => {}
            // Taken over after a lapse: the commit will say so.
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, dataset = %dataset_id, "renewing an import's reservation failed")
            }
        }
    }
}
