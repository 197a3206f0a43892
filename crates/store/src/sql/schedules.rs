//! [`ScheduleStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use llmops_evaluator::schedules::{Schedule, ScheduleStore};
use llmops_evaluator::StoreError;
use sqlx::Row;

use super::Store;
use crate::codec::{parse, record_of, to_micros};
use crate::error::db_error;

#[async_trait]
impl ScheduleStore for Store {
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO eval_schedules (id, created_at_us, record) VALUES ($1, $2, $3)")
            .bind(&schedule.id)
            .bind(to_micros(schedule.created_at))
            .bind(record_of("schedule", schedule)?)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn update_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE eval_schedules SET record = $2 WHERE id = $1")
            .bind(&schedule.id)
            .bind(record_of("schedule", schedule)?)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound(format!(
                "schedule {} does not exist",
                schedule.id
            )));
        }
        Ok(())
    }

    async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM eval_schedules WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn load_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let rows = sqlx::query("SELECT record FROM eval_schedules ORDER BY created_at_us, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| parse("schedule", row.get(0)))
            .collect()
    }
}
