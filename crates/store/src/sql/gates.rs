//! [`GateStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use llmops_evaluator::gates::{GateStore, ReleaseGate};
use llmops_evaluator::StoreError;
use sqlx::Row;

use super::Store;
use crate::codec::{parse, record_of};
use crate::error::db_error;

#[async_trait]
impl GateStore for Store {
    async fn upsert_gate(&self, gate: &ReleaseGate) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO release_gates (prompt_name, label, record) VALUES ($1, $2, $3)
             ON CONFLICT (prompt_name, label) DO UPDATE SET record = excluded.record",
        )
        .bind(&gate.prompt_name)
        .bind(&gate.label)
        .bind(record_of("release gate", gate)?)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn delete_gate(&self, prompt_name: &str, label: &str) -> Result<bool, StoreError> {
        let deleted =
            sqlx::query("DELETE FROM release_gates WHERE prompt_name = $1 AND label = $2")
                .bind(prompt_name)
                .bind(label)
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn load_gates(&self) -> Result<Vec<ReleaseGate>, StoreError> {
        let rows = sqlx::query("SELECT record FROM release_gates ORDER BY prompt_name, label")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| parse("release gate", row.get(0)))
            .collect()
    }
}
