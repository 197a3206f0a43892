//! What schedules need from storage.

use async_trait::async_trait;

use super::model::Schedule;
use crate::error::StoreError;

/// Durable storage of schedules.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Stores a new schedule; `Duplicate` if the id is taken.
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;

    /// Replaces a stored schedule.
    async fn update_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;

    /// Deletes a schedule; false if there was none.
    async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError>;

    /// Every schedule.
    async fn load_schedules(&self) -> Result<Vec<Schedule>, StoreError>;
}
