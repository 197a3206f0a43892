//! Following what other processes sharing the database write: experiment definitions
//! (the change log calls [`ExperimentService::refresh`]) and exposures and records (the
//! stream of write batches, [`ExperimentService::follow`]), so every replica's results
//! count every replica's writes.

use std::collections::BTreeSet;

use llmops_feed::{FollowCursor, Followed};

use super::*;
use crate::writer::CatchUp;

/// How many write batches one read takes.
const FOLLOW_BATCHES: u64 = 256;

/// Folds what other processes committed into this process's statistics, in the order
/// of the shared write stream. The writer calls it before folding its own batch, and
/// the follower between batches, so every replica folds every write in one order and
/// computes bit-identical results.
pub(crate) struct RemoteFolder {
    pub(super) store: Arc<dyn ExperimentStore>,
    pub(super) experiments: Arc<Experiments>,
}

#[async_trait::async_trait]
impl CatchUp for RemoteFolder {
    async fn catch_up(
        &self,
        cursor: &mut FollowCursor,
        through: u64,
    ) -> Result<usize, ExperimentError> {
        let mut read = 0;
        loop {
            let after = cursor.cursor();
            if after >= through {
                return Ok(read);
            }
            let batches = self
                .store
                .writes_after(after, FOLLOW_BATCHES.min(through - after))
                .await?;
            if batches.through <= after {
                return Ok(read);
            }
            read += batches.exposures.len() + batches.records.len();
            let mut unknown = BTreeSet::new();
            // Every stored row was new when its batch committed.
            for (sequence, exposure) in &batches.exposures {
                if cursor.classify(*sequence) != Followed::Remote {
                    continue;
                }
                match self.experiments.get(&exposure.experiment_id) {
                    Some(live) => live.fold_exposure(exposure, true),
                    None => {
                        unknown.insert(exposure.experiment_id.clone());
                    }
                }
            }
            for (sequence, record) in &batches.records {
                if cursor.classify(*sequence) != Followed::Remote {
                    continue;
                }
                match self.experiments.get(&record.experiment_id) {
                    Some(live) => live.fold_record(record),
                    None => {
                        unknown.insert(record.experiment_id.clone());
                    }
                }
            }
            cursor.pass(batches.through);
            // Created by another process after this one loaded: loaded whole, through
            // the batches just passed.
            for id in unknown {
                load_through(self.store.as_ref(), &self.experiments, &id, batches.through).await?;
            }
        }
    }
}

impl ExperimentService {
    /// Folds every write batch another process committed since the last call into the
    /// statistics; returns how many writes it read.
    pub async fn follow(&self) -> Result<usize, ExperimentError> {
        // Held throughout: the local writer commits and folds its batches under it.
        let mut cursor = self.follower.lock().await;
        cursor.enable();
        // Most wake-ups announce this process's own batches, already folded: one
        // query tells, where reading the batches takes a snapshot of three.
        if self.store.write_head().await? <= cursor.cursor() {
            return Ok(0);
        }
        self.remote.catch_up(&mut cursor, u64::MAX).await
    }

    /// Reloads experiment `id`'s definition after another process changed it or its
    /// status. Its statistics stay: they already count every batch this process wrote
    /// or followed. (Only a draft's variants and metrics can change, and a draft has no
    /// writes, so its statistics restart empty.)
    pub async fn refresh(&self, id: &str) -> Result<(), ExperimentError> {
        let _changes = self.changes.lock().await;
        let cursor = self.follower.lock().await;
        let Some(live) = self.experiments.get(id).map(|e| e.value().clone()) else {
            // Created elsewhere: no write of it is this process's.
            return load_through(self.store.as_ref(), &self.experiments, id, cursor.cursor()).await;
        };
        let Some(stored) = self.store.get_experiment(id).await? else {
            self.experiments.remove(id);
            return Ok(());
        };
        let current = live.snapshot();
        if stored.variants != current.experiment.variants
            || stored.metrics != current.experiment.metrics
        {
            *live.tally() = Tally::new(&stored);
        }
        live.replace(stored);
        Ok(())
    }

    /// Reloads every experiment, stored or cached (after falling too far behind the
    /// change log to know which changed).
    pub async fn refresh_all(&self) -> Result<(), ExperimentError> {
        let mut ids: BTreeSet<String> = self.experiments.iter().map(|e| e.key().clone()).collect();
        ids.extend(
            self.store
                .load_experiments()
                .await?
                .into_iter()
                .map(|e| e.id),
        );
        for id in ids {
            self.refresh(&id).await?;
        }
        Ok(())
    }
}

/// Replaces experiment `id` in memory with what storage holds, its statistics counting
/// the write batches through `through`.
async fn load_through(
    store: &dyn ExperimentStore,
    experiments: &Experiments,
    id: &str,
    through: u64,
) -> Result<(), ExperimentError> {
    match store.get_experiment(id).await? {
        Some(experiment) => {
            let live = load_live(store, experiment, through).await?;
            experiments.insert(id.to_owned(), Arc::new(live));
        }
        None => {
            experiments.remove(id);
        }
    }
    Ok(())
}
