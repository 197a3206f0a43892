//! What runs need from storage.

use async_trait::async_trait;

use super::model::{Run, SampleResult};
use crate::error::StoreError;

/// Durable storage of runs and their per-sample results.
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Stores a new run; `Duplicate` if the id is taken.
    async fn insert_run(&self, run: &Run) -> Result<(), StoreError>;

    /// Replaces a stored run's record (status, resolved versions, results).
    async fn update_run(&self, run: &Run) -> Result<(), StoreError>;

    /// One run.
    async fn get_run(&self, id: &str) -> Result<Option<Run>, StoreError>;

    /// Every run.
    async fn load_runs(&self) -> Result<Vec<Run>, StoreError>;

    /// Stores results of one run in one transaction, all or none; `Duplicate` if a
    /// sample already has a result in the run.
    async fn insert_results(
        &self,
        run_id: &str,
        results: &[SampleResult],
    ) -> Result<(), StoreError>;

    /// Up to `limit` results of a run after position `after`, in dataset order;
    /// `failed_only` skips the samples that passed.
    async fn results_page(
        &self,
        run_id: &str,
        failed_only: bool,
        after: i64,
        limit: usize,
    ) -> Result<Vec<SampleResult>, StoreError>;

    /// Of `sample_ids`, those that already have a result in the run.
    async fn existing_results(
        &self,
        run_id: &str,
        sample_ids: &[String],
    ) -> Result<Vec<String>, StoreError>;
}
