//! What the experiment service needs from storage.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::model::{Experiment, Exposure, MetricRecord};

/// Which writes of a batch were new (false: an exposure of a user already exposed, or
/// a record whose `record_id` was stored before).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The batch's sequence in the shared stream of experiment writes (commit order;
    /// 0 where no other process can share the database).
    pub sequence: u64,
    /// Experiments the batch wrote to that have ended (completed or cancelled, by
    /// another process). When any is named, nothing of the batch was written.
    pub closed: Vec<String>,
    /// One per exposure, in order.
    pub exposures: Vec<bool>,
    /// One per record, in order.
    pub records: Vec<bool>,
}

/// Write batches read back for following: each write with its batch's sequence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchWrites {
    /// The last batch read (the caller continues after it).
    pub through: u64,
    /// Exposures, in batch order.
    pub exposures: Vec<(u64, Exposure)>,
    /// Records, in batch order.
    pub records: Vec<(u64, MetricRecord)>,
}

/// A visitor of stored metric records: (variant id, metric, value, user id).
pub type RecordVisitor<'a> = dyn FnMut(&str, &str, f64, &str) + Send + 'a;

/// Durable storage of experiments, exposures and metric records.
#[async_trait]
pub trait ExperimentStore: Send + Sync + 'static {
    /// Stores a new experiment; `Duplicate` if the id is taken.
    async fn insert_experiment(&self, experiment: &Experiment) -> Result<(), StoreError>;

    /// Replaces a stored experiment.
    async fn update_experiment(&self, experiment: &Experiment) -> Result<(), StoreError>;

    /// Every experiment.
    async fn load_experiments(&self) -> Result<Vec<Experiment>, StoreError>;

    /// Stores exposures (ignoring users already exposed) and metric records (ignoring
    /// repeated record ids), all in one transaction.
    async fn commit_writes(
        &self,
        exposures: &[Exposure],
        records: &[MetricRecord],
    ) -> Result<Committed, StoreError>;

    /// An experiment's exposures: (user id, variant id); only those of write batches up
    /// to `through` when given.
    async fn load_exposures(
        &self,
        experiment_id: &str,
        through: Option<u64>,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Visits an experiment's metric records in the order they were stored; only those
    /// of write batches up to `through` when given.
    async fn visit_records(
        &self,
        experiment_id: &str,
        through: Option<u64>,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<(), StoreError>;

    /// One experiment.
    async fn get_experiment(&self, id: &str) -> Result<Option<Experiment>, StoreError>;

    /// The sequence of the latest committed write batch (0 when none, or where no other
    /// process can share the database).
    async fn write_head(&self) -> Result<u64, StoreError>;

    /// The exposures and records of the write batches after `after`, through at most
    /// `batches` batches, each with its batch's sequence, in commit order.
    async fn writes_after(&self, after: u64, batches: u64) -> Result<BatchWrites, StoreError>;
}
