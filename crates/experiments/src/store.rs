//! What the experiment service needs from storage.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::model::{Experiment, Exposure, MetricRecord};

/// Which writes of a batch were new (false: an exposure of a user already exposed, or
/// a record whose `record_id` was stored before).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// One per exposure, in order.
    pub exposures: Vec<bool>,
    /// One per record, in order.
    pub records: Vec<bool>,
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

    /// An experiment's exposures: (user id, variant id).
    async fn load_exposures(
        &self,
        experiment_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Visits an experiment's metric records in the order they were stored.
    async fn visit_records(
        &self,
        experiment_id: &str,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<(), StoreError>;
}
