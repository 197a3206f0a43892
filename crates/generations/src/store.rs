//! What generations need from storage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_core::StoreError;

use crate::model::{Generation, GenerationQuery};
use crate::usage::{UsageAggregate, UsageFilter};

/// Durable storage of generations.
#[async_trait]
pub trait GenerationStore: Send + Sync + 'static {
    /// Stores every generation whose id is new, and adds them to the hourly usage
    /// aggregates, in one transaction; the ids that were new (a repeated id changes
    /// nothing).
    async fn insert_generations(
        &self,
        generations: &[Generation],
    ) -> Result<Vec<String>, StoreError>;

    /// One generation.
    async fn get_generation(&self, id: &str) -> Result<Option<Generation>, StoreError>;

    /// The generations `query` selects, newest first (by `Generation::time`, then id).
    async fn list_generations(
        &self,
        query: &GenerationQuery,
    ) -> Result<Vec<Generation>, StoreError>;

    /// Deletes the generations that started before `before`; how many.
    async fn prune_generations(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Deletes the usage aggregates of hours that ended by `before`; how many.
    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The hourly usage aggregates `filter` selects (at most `filter.limit`).
    async fn usage_aggregates(
        &self,
        filter: &UsageFilter,
    ) -> Result<Vec<UsageAggregate>, StoreError>;
}
