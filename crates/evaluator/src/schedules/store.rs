//! What schedules need from storage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::model::Schedule;
use crate::error::StoreError;

/// Durable storage of schedules.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Stores a new schedule; `Duplicate` if the id is taken.
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;

    /// Replaces a stored schedule.
    async fn update_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;

    /// Replaces the stored schedule with `next` only if it is still the version last
    /// written at `expected_updated_at` (checked under a row lock); false, writing
    /// nothing, when another process changed it since. Firing uses it, so a due time
    /// fires once however many processes try.
    async fn replace_schedule(
        &self,
        expected_updated_at: DateTime<Utc>,
        next: &Schedule,
    ) -> Result<bool, StoreError>;

    /// One schedule.
    async fn get_schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError>;

    /// Deletes a schedule; false if there was none.
    async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError>;

    /// Every schedule.
    async fn load_schedules(&self) -> Result<Vec<Schedule>, StoreError>;
}
