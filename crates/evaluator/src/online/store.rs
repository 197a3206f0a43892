//! What online evaluation needs from storage.

use async_trait::async_trait;
use llmops_generations::{Generation, GenerationScore};

use super::model::OnlineEvaluation;
use super::stats::{OnlineAggregateRow, OnlineGroupKey, OnlineTotals};
use crate::StoreError;

/// A queued sample this worker holds a claim on.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedSample {
    /// The online evaluation.
    pub evaluation_id: String,
    /// The generation's id.
    pub generation_id: String,
    /// The generation; `None` when it is gone (pruned meanwhile).
    pub generation: Option<Generation>,
}

/// A scored sample, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedSample {
    /// The online evaluation.
    pub evaluation_id: String,
    /// The generation.
    pub generation_id: String,
    /// The minute of the generation's time (µs).
    pub minute_us: i64,
    /// The generation's attribution.
    pub key: OnlineGroupKey,
    /// The generation's user (experiments analysed per user need it).
    pub user_id: String,
    /// The generation's time.
    pub time: chrono::DateTime<chrono::Utc>,
    /// The verdict, as the generation shows it.
    pub score: GenerationScore,
    /// The verdict counted (one sample), for the aggregates.
    pub totals: OnlineTotals,
}

/// Durable storage of online evaluations, their queue, scores and aggregates.
#[async_trait]
pub trait OnlineStore: Send + Sync + 'static {
    /// Stores a new online evaluation; `Duplicate` if the id is taken.
    async fn insert_online_evaluation(
        &self,
        evaluation: &OnlineEvaluation,
    ) -> Result<(), StoreError>;

    /// Replaces a stored online evaluation; `NotFound` if there is none.
    async fn update_online_evaluation(
        &self,
        evaluation: &OnlineEvaluation,
    ) -> Result<(), StoreError>;

    /// One online evaluation.
    async fn get_online_evaluation(&self, id: &str)
        -> Result<Option<OnlineEvaluation>, StoreError>;

    /// Deletes an online evaluation with its queued samples, scores and aggregates; false
    /// if there was none.
    async fn delete_online_evaluation(&self, id: &str) -> Result<bool, StoreError>;

    /// Every online evaluation, oldest first.
    async fn load_online_evaluations(&self) -> Result<Vec<OnlineEvaluation>, StoreError>;

    /// Claims up to `limit` queued samples of `evaluations` that nobody holds (or whose
    /// claim lapsed before `now_us`), oldest first, for `worker` until `until_us`.
    async fn claim_online_samples(
        &self,
        evaluations: &[String],
        worker: &str,
        now_us: i64,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedSample>, StoreError>;

    /// Extends every claim `worker` holds to `until_us`.
    async fn renew_online_claims(&self, worker: &str, until_us: i64) -> Result<u64, StoreError>;

    /// In one transaction: stores each completed sample's score unless one is stored
    /// (adding the new ones to the aggregates), and removes the completed and the
    /// `dropped` samples from the queue. Returns how many scores were new.
    async fn complete_online_samples(
        &self,
        completed: &[CompletedSample],
        dropped: &[(String, String)],
    ) -> Result<u64, StoreError>;

    /// The per-minute aggregates of an evaluation in `[since_us, until_us)`, at most
    /// `limit` of them.
    async fn online_aggregates(
        &self,
        evaluation_id: &str,
        since_us: i64,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<OnlineAggregateRow>, StoreError>;

    /// The queued samples of an evaluation whose generation's time is in
    /// `[since_us, until_us)`: (the minute, the attribution) of each.
    async fn queued_online_samples(
        &self,
        evaluation_id: &str,
        since_us: i64,
        until_us: i64,
    ) -> Result<Vec<(i64, OnlineGroupKey)>, StoreError>;

    /// Samples waiting in the queue (of every evaluation).
    async fn online_queue_depth(&self) -> Result<u64, StoreError>;
}
