//! What datasets need from storage.

use std::time::Duration;

use async_trait::async_trait;

use super::model::{Dataset, Sample};
use crate::error::StoreError;

/// A stored sample with its position (the order samples were added in).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    /// Increases with every sample stored; pages resume after it.
    pub position: i64,
    /// The sample.
    pub sample: Sample,
}

/// Durable storage of datasets and their versioned samples. A sample belongs to the
/// versions from the one that added it up to (not including) the one that deleted it.
#[async_trait]
pub trait DatasetStore: Send + Sync + 'static {
    /// Stores a new dataset; `Duplicate` if the id or name is taken.
    async fn insert_dataset(&self, dataset: &Dataset) -> Result<(), StoreError>;

    /// Every dataset.
    async fn load_datasets(&self) -> Result<Vec<Dataset>, StoreError>;

    /// One dataset's definition.
    async fn get_dataset(&self, id: &str) -> Result<Option<Dataset>, StoreError>;

    /// Deletes a dataset and its samples.
    async fn delete_dataset(&self, id: &str) -> Result<(), StoreError>;

    /// Of `ids`, those of samples not removed: the dataset's current version and any
    /// samples an import is staging past it (so an import refuses an id it already
    /// staged as well as one the dataset holds). Only one import runs per dataset, and
    /// staged samples of an abandoned import are discarded at the next open.
    async fn current_samples(
        &self,
        dataset_id: &str,
        ids: &[String],
    ) -> Result<Vec<Sample>, StoreError>;

    /// In one transaction: adds `added` and deletes `deleted` (by id) as of
    /// `dataset.version`, and stores `dataset` (its new version, count and hash).
    /// `Conflict` if the stored dataset is not at `dataset.version - 1` (another process
    /// changed it) or an import holds it (see [`Self::begin_import`]).
    async fn change_samples(
        &self,
        dataset: &Dataset,
        added: &[Sample],
        deleted: &[String],
    ) -> Result<(), StoreError>;

    /// Stores `samples` as added in `version` without touching the dataset's definition:
    /// a batch of an import, invisible to readers (who read the dataset's version) until
    /// [`Self::update_dataset`] moves the dataset to `version`. `Duplicate` if an id is
    /// taken by a current sample or an earlier batch.
    async fn stage_samples(
        &self,
        dataset_id: &str,
        version: u64,
        samples: &[Sample],
    ) -> Result<(), StoreError>;

    /// Deletes every sample added after `version`: an abandoned import's batches.
    async fn discard_samples_after(&self, dataset_id: &str, version: u64)
        -> Result<(), StoreError>;

    /// Stores the dataset's definition (its version, count and hash).
    async fn update_dataset(&self, dataset: &Dataset) -> Result<(), StoreError>;

    /// Reserves the dataset for an import by `holder` until `lease` from now, while the
    /// stored dataset is at `base_version`: the import's batches are then staged at the
    /// next version and nothing else changes the dataset. `Conflict` if the dataset
    /// changed or another import's reservation is live; the staged samples of a
    /// reservation that lapsed (its process died) are discarded first.
    async fn begin_import(
        &self,
        dataset_id: &str,
        base_version: u64,
        holder: &str,
        lease: Duration,
    ) -> Result<(), StoreError>;

    /// Extends `holder`'s reservation to `lease` from now; false if it holds none.
    async fn renew_import(
        &self,
        dataset_id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Stores `dataset` (the import's next version) and frees the reservation, in one
    /// transaction. `Conflict` if `holder` no longer holds it.
    async fn commit_import(&self, dataset: &Dataset, holder: &str) -> Result<(), StoreError>;

    /// Deletes the samples staged after `base_version` and frees the reservation, if
    /// `holder` holds it; nothing otherwise (another import's staged samples stay).
    async fn abandon_import(
        &self,
        dataset_id: &str,
        base_version: u64,
        holder: &str,
    ) -> Result<(), StoreError>;

    /// Discards the staged samples of an import whose reservation lapsed, or of any
    /// import when `alone` (a process alone at start: every import is its own dead one).
    async fn discard_abandoned_import(
        &self,
        dataset_id: &str,
        alone: bool,
    ) -> Result<(), StoreError>;

    /// Up to `limit` samples of the dataset as of `version`, after `after` (a position),
    /// in the order they were added.
    async fn samples_at(
        &self,
        dataset_id: &str,
        version: u64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError>;

    /// Of `ids`, the samples in the dataset as of `version`, with their positions.
    async fn samples_by_id_at(
        &self,
        dataset_id: &str,
        version: u64,
        ids: &[String],
    ) -> Result<Vec<StoredSample>, StoreError>;
}
