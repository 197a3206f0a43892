//! What runs need from storage.

use std::time::Duration;

use async_trait::async_trait;

use super::model::{ResultCounts, Run, RunStatus, SampleResult};
use crate::error::StoreError;

/// What `insert_results` does with a sample that already has a result in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Nothing is stored: `Duplicate` (a client submitted an output twice).
    Refuse,
    /// The earlier result stays and the batch's other results are stored (an executor
    /// whose claim lapsed while another replica evaluated the same samples).
    Skip,
}

/// What storing a batch of results did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredResults {
    /// The samples whose results were stored now.
    pub stored: Vec<String>,
    /// The run's results counted after the batch, by every process.
    pub counts: ResultCounts,
}

/// A range of a run's dataset snapshot: the samples at positions in `(after, through]`,
/// claimed by one worker (a replica's executor) until its lease lapses unrenewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleChunk {
    /// The position before the chunk's first sample (0 before the dataset's first).
    pub after: i64,
    /// The position of the chunk's last sample.
    pub through: i64,
}

/// Durable storage of runs and their per-sample results.
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Stores a new run; `Duplicate` if the id is taken.
    async fn insert_run(&self, run: &Run) -> Result<(), StoreError>;

    /// Replaces a stored run's record (status, resolved versions, results) if its status
    /// is still `from`, and returns how many results it had then; None when another
    /// process changed its status first. No results are stored in a run that is not
    /// running, so a run that ends has its results counted for good. A run that ends
    /// gives up its sample chunks.
    async fn transition_run(&self, run: &Run, from: RunStatus) -> Result<Option<u64>, StoreError>;

    /// One run; a running run's progress counts the results stored so far.
    async fn get_run(&self, id: &str) -> Result<Option<Run>, StoreError>;

    /// Every run, counted as `get_run` does.
    async fn load_runs(&self) -> Result<Vec<Run>, StoreError>;

    /// Stores results of a RUNNING run in one transaction with its counts, all or none;
    /// `Conflict` if the run is not running (it ended on another process).
    async fn insert_results(
        &self,
        run_id: &str,
        results: &[SampleResult],
        on_duplicate: OnDuplicate,
    ) -> Result<StoredResults, StoreError>;

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

    /// Claims for `worker` the first unfinished chunk whose claim lapsed (its worker
    /// died or stopped), for `lease`; None if there is none. Concurrent claimers get
    /// different chunks.
    async fn claim_lapsed_chunk(
        &self,
        run_id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<SampleChunk>, StoreError>;

    /// The position up to which the run's snapshot is divided into chunks (0: none yet).
    async fn chunk_frontier(&self, run_id: &str) -> Result<i64, StoreError>;

    /// Claims a new chunk that starts at the frontier for `worker`; Ok(false) if another
    /// worker claimed a chunk starting there first.
    async fn claim_new_chunk(
        &self,
        run_id: &str,
        chunk: SampleChunk,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Extends `worker`'s unfinished claims in the run by `lease` from now.
    async fn renew_chunks(
        &self,
        run_id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<(), StoreError>;

    /// Marks chunks finished: each of their samples has a result.
    async fn finish_chunks(&self, run_id: &str, afters: &[i64]) -> Result<(), StoreError>;

    /// Gives up `worker`'s unfinished claims at once, for others to take (it stops).
    async fn release_chunks(&self, run_id: &str, worker: &str) -> Result<(), StoreError>;

    /// How many of the run's chunks are not finished.
    async fn unfinished_chunks(&self, run_id: &str) -> Result<u64, StoreError>;
}
