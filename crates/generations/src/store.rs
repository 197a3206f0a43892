//! What generations need from storage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_core::StoreError;

use crate::model::{Generation, GenerationQuery};
use crate::usage::{UsageAggregate, UsageFilter};

/// A generation an online evaluation sampled, queued for scoring with the generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSample {
    /// The online evaluation.
    pub evaluation_id: String,
    /// The generation.
    pub generation_id: String,
}

/// What an insert stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inserted {
    /// The ids that were new.
    pub new: Vec<String>,
    /// Samples of new generations queued for scoring.
    pub queued: u64,
    /// Samples of new generations left out because the queue was full.
    pub skipped: u64,
}

/// Durable storage of generations.
#[async_trait]
pub trait GenerationStore: Send + Sync + 'static {
    /// Stores every generation whose id is new, and adds them to the hourly usage
    /// aggregates, in one transaction; the ids that were new (a repeated id changes
    /// nothing).
    async fn insert_generations(
        &self,
        generations: &[Generation],
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .insert_sampled_generations(generations, &[], 0)
            .await?
            .new)
    }

    /// [`GenerationStore::insert_generations`], and in the same transaction queues the
    /// `samples` whose generation was new for online scoring while the queue holds fewer
    /// than `queue_limit` samples (the rest are skipped and counted).
    async fn insert_sampled_generations(
        &self,
        generations: &[Generation],
        samples: &[QueuedSample],
        queue_limit: u64,
    ) -> Result<Inserted, StoreError>;

    /// One generation.
    async fn get_generation(&self, id: &str) -> Result<Option<Generation>, StoreError>;

    /// The generations `query` selects, newest first (by `Generation::time`, then id).
    async fn list_generations(
        &self,
        query: &GenerationQuery,
    ) -> Result<Vec<Generation>, StoreError>;

    /// Deletes the generations that started before `before`, with the online verdicts
    /// on them; how many generations.
    async fn prune_generations(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Deletes the usage aggregates of hours that ended by `before` (and the online
    /// aggregates of minutes before it); how many usage aggregates.
    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The hourly usage aggregates `filter` selects (at most `filter.limit`).
    async fn usage_aggregates(
        &self,
        filter: &UsageFilter,
    ) -> Result<Vec<UsageAggregate>, StoreError>;
}
