//! [`ScheduleStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_evaluator::schedules::{Schedule, ScheduleStore};
use llmops_evaluator::StoreError;
use sqlx::Row;

use super::cluster::record_change;
use super::Store;

/// The change-log entity of a schedule (see `sql/cluster.rs`).
const SCHEDULE: &str = "schedule";
use crate::codec::{parse, record_of, to_micros};
use crate::error::db_error;

#[async_trait]
impl ScheduleStore for Store {
    async fn insert_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query("INSERT INTO eval_schedules (id, created_at_us, record) VALUES ($1, $2, $3)")
            .bind(&schedule.id)
            .bind(to_micros(schedule.created_at))
            .bind(record_of("schedule", schedule)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        record_change(&mut tx, SCHEDULE, &schedule.id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn update_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let updated = sqlx::query("UPDATE eval_schedules SET record = $2 WHERE id = $1")
            .bind(&schedule.id)
            .bind(record_of("schedule", schedule)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound(format!(
                "schedule {} does not exist",
                schedule.id
            )));
        }
        record_change(&mut tx, SCHEDULE, &schedule.id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn replace_schedule(
        &self,
        expected_updated_at: DateTime<Utc>,
        next: &Schedule,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let query = format!(
            "SELECT record FROM eval_schedules WHERE id = $1{}",
            super::FOR_UPDATE
        );
        let stored: Option<String> = sqlx::query_scalar(&query)
            .bind(&next.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let stored: Schedule = parse("schedule", &stored)?;
        if stored.updated_at != expected_updated_at {
            return Ok(false);
        }
        sqlx::query("UPDATE eval_schedules SET record = $2 WHERE id = $1")
            .bind(&next.id)
            .bind(record_of("schedule", next)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        record_change(&mut tx, SCHEDULE, &next.id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn get_schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query("SELECT record FROM eval_schedules WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(|row| parse("schedule", row.get(0))).transpose()
    }

    async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let deleted = sqlx::query("DELETE FROM eval_schedules WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected() != 1 {
            return Ok(false);
        }
        record_change(&mut tx, SCHEDULE, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
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
