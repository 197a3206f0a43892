//! The experiment service: its state (live experiments, their statistics, the
//! group-commit writer) and start-up; each responsibility is a child module:
//! `definitions` (definitions and their lifecycle), `assignment` (variants and exposures), `recording`
//! (metric records), `templates` (prompt and model experiments).
//!
//! Definitions change under one lock, are written to storage, and only then replace the
//! in-memory copy. Exposures and metric records go through the group-commit writer and
//! are folded into the in-memory statistics after their batch is durable, so results
//! never count a write that could still be lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use uuid::Uuid;

use crate::assignment::{bucket_ranges, choose_variation, hash_v2, BucketRange};
use crate::error::ExperimentError;
use crate::lifecycle;
use crate::model::{
    AnalysisUnit, Experiment, ExperimentStatus, Exposure, MetricDefinition, MetricKind,
    MetricRecord, Variant,
};
use crate::results::{analyse, ExperimentResults};
use crate::store::{Committed, ExperimentStore};
use crate::tally::Tally;
use crate::validate::{
    check_analysis, check_coverage, check_identifier, check_length, check_metadata, check_metrics,
    check_variants, limits, ExperimentSpec, Violations,
};
use crate::writer::{FollowLock, GroupCommit, OnCommit, Writes};

mod assignment;
mod definitions;
mod follow;
mod recording;
mod templates;

pub use self::assignment::Assignment;
pub use self::definitions::ExperimentUpdate;
pub use self::recording::{RecordInput, RecordNaming, RecordOutcome};
pub use self::templates::{
    ModelExperiment, PromptArm, PromptExperiment, PromptVersions, TemplateError,
    DEFAULT_TREATMENT_SHARE,
};
pub use crate::model::{DEFAULT_ALPHA, DEFAULT_SEQUENTIAL_TUNING};
/// The largest magnitude a metric value may have: squares and sums of values this size
/// stay far from overflow, so statistics never turn into infinities or NaN.
pub const MAX_ABS_VALUE: f64 = 1e15;
/// The most records one `RecordMetrics` call may carry.
pub const MAX_RECORDS_PER_CALL: usize = 10_000;
/// The most exposures one `RecordExposures` call may carry.
pub const MAX_EXPOSURES_PER_CALL: usize = 10_000;
/// The most experiments one list page holds.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Settings that come from configuration.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Min samples per variant when an experiment does not say.
    pub min_samples: u64,
    /// The model names a variant may use (the configured providers); `None` accepts any.
    pub models: Option<std::collections::BTreeSet<String>>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            min_samples: 100,
            models: None,
        }
    }
}

/// One experiment in memory.
struct Live {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Users already exposed, with their variant index: a repeated assignment touches
    /// no storage.
    known_users: DashMap<String, usize>,
    tally: Mutex<Tally>,
    /// Writes (exposures, records) hold it shared from their status check until they
    /// are committed; status changes hold it exclusively. So once `CompleteExperiment`
    /// answers, no write accepted before it can still land and change the results.
    gate: Arc<tokio::sync::RwLock<()>>,
}

struct Snapshot {
    experiment: Experiment,
    ranges: Vec<BucketRange>,
}

impl Snapshot {
    fn new(experiment: Experiment) -> Arc<Self> {
        let ranges = bucket_ranges(
            experiment.variants.len(),
            experiment.coverage,
            Some(&experiment.weights()),
        );
        Arc::new(Self { experiment, ranges })
    }
}

impl Live {
    fn new(experiment: Experiment) -> Self {
        Self {
            tally: Mutex::new(Tally::new(&experiment)),
            snapshot: RwLock::new(Snapshot::new(experiment)),
            known_users: DashMap::new(),
            gate: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, experiment: Experiment) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Snapshot::new(experiment);
    }

    /// Folds a stored exposure: the user is known from now on, and a `new` one counts.
    fn fold_exposure(&self, exposure: &Exposure, new: bool) {
        if let Some(index) = self
            .snapshot()
            .experiment
            .variant_index(&exposure.variant_id)
        {
            self.known_users
                .entry(exposure.user_id.clone())
                .or_insert(index);
        }
        if new {
            self.tally().add_exposure(&exposure.variant_id);
        }
    }

    /// Folds a stored (new) metric record into the statistics.
    fn fold_record(&self, record: &MetricRecord) {
        self.tally().add_record(
            &record.variant_id,
            &record.metric,
            record.value,
            &record.user_id,
        );
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Experiments = DashMap<String, Arc<Live>>;

/// The experiment service.
pub struct ExperimentService {
    store: Arc<dyn ExperimentStore>,
    experiments: Arc<Experiments>,
    writer: GroupCommit,
    /// Serialises definition and lifecycle changes.
    changes: tokio::sync::Mutex<()>,
    defaults: Defaults,
    /// Where this process is in the shared stream of write batches.
    follower: FollowLock,
    /// Folds other processes' batches (also the writer's, before each of its own).
    remote: Arc<follow::RemoteFolder>,
}

impl std::fmt::Debug for ExperimentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExperimentService")
            .field("experiments", &self.experiments.len())
            .finish_non_exhaustive()
    }
}

impl ExperimentService {
    /// Loads every experiment, its exposures and its statistics from `store`, and starts
    /// the group-commit writer.
    pub async fn open(
        store: Arc<dyn ExperimentStore>,
        defaults: Defaults,
    ) -> Result<Self, ExperimentError> {
        // The write stream's head first, and every tally loaded through it: following
        // then continues after it, neither missing nor repeating a batch.
        let head = store.write_head().await?;
        let experiments: Arc<Experiments> = Arc::new(DashMap::new());
        for experiment in store.load_experiments().await? {
            let id = experiment.id.clone();
            let live = load_live(store.as_ref(), experiment, head).await?;
            experiments.insert(id, Arc::new(live));
        }
        let follower: FollowLock = Arc::new(tokio::sync::Mutex::new(
            llmops_feed::FollowCursor::starting_after(head),
        ));
        let remote = Arc::new(follow::RemoteFolder {
            store: store.clone(),
            experiments: experiments.clone(),
        });
        let writer = GroupCommit::start(
            store.clone(),
            recording::fold_into(experiments.clone()),
            follower.clone(),
            remote.clone(),
        );
        Ok(Self {
            store,
            experiments,
            writer,
            changes: tokio::sync::Mutex::new(()),
            defaults,
            follower,
            remote,
        })
    }

    /// Commits queued writes and stops the writer; later writes are refused.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    fn live(&self, id: &str) -> Result<Arc<Live>, ExperimentError> {
        self.experiments
            .get(id)
            .map(|entry| entry.value().clone())
            .ok_or_else(|| ExperimentError::NotFound(format!("experiment {id:?} not found")))
    }

    /// The experiment and its results, computed from the in-memory statistics.
    pub fn results(&self, id: &str) -> Result<(Experiment, ExperimentResults), ExperimentError> {
        let live = self.live(id)?;
        let snapshot = live.snapshot();
        let results = analyse(&snapshot.experiment, &live.tally());
        Ok((snapshot.experiment.clone(), results))
    }

    /// The ids of running experiments (for the alert monitor).
    pub fn running(&self) -> Vec<String> {
        self.experiments
            .iter()
            .filter(|entry| entry.value().snapshot().experiment.status == ExperimentStatus::Running)
            .map(|entry| entry.key().clone())
            .collect()
    }
}

/// `experiment` in memory with its statistics and exposed users, from the write batches
/// stored through `through`.
async fn load_live(
    store: &dyn ExperimentStore,
    experiment: Experiment,
    through: u64,
) -> Result<Live, ExperimentError> {
    let id = experiment.id.clone();
    let mut tally = Tally::new(&experiment);
    store
        .visit_records(&id, Some(through), &mut |variant, metric, value, user| {
            tally.add_record(variant, metric, value, user);
        })
        .await?;
    let exposures = store.load_exposures(&id, Some(through)).await?;
    // Only an experiment that can still assign needs to know who is in it.
    let assigning = matches!(
        experiment.status,
        ExperimentStatus::Running | ExperimentStatus::Paused
    );
    let live = Live::new(experiment);
    let snapshot = live.snapshot();
    for (user, variant) in exposures {
        tally.add_exposure(&variant);
        if let Some(index) = snapshot
            .experiment
            .variant_index(&variant)
            .filter(|_| assigning)
        {
            live.known_users.insert(user, index);
        }
    }
    *live.tally() = tally;
    Ok(live)
}
