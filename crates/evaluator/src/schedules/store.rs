//! What schedules need from storage.

use async_trait::async_trait;

use super::model::Schedule;
use crate::error::EvaluationStoreError;

/// Durable storage of schedules.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Stores a new schedule; `Duplicate` if the id is taken.
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<(), EvaluationStoreError>;

    /// Replaces a stored schedule.
    async fn update_schedule(&self, schedule: &Schedule) -> Result<(), EvaluationStoreError>;

    /// Deletes a schedule; false if there was none.
    async fn delete_schedule(&self, id: &str) -> Result<bool, EvaluationStoreError>;

    /// Every schedule.
    async fn load_schedules(&self) -> Result<Vec<Schedule>, EvaluationStoreError>;
}
