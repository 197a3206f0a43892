//! [`GateStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use llmops_evaluator::gates::{GateStore, ReleaseGate};
use llmops_evaluator::StoreError;
use sqlx::Row;

use super::cluster::record_change;
use super::Store;

/// The change-log entity of a release gate (see `sql/cluster.rs`), keyed
/// `prompt/label` for people reading the log (followers reload every gate).
const GATE: &str = "gate";

fn gate_key(prompt_name: &str, label: &str) -> String {
    format!("{prompt_name}/{label}")
}
use crate::codec::{parse, record_of};
use crate::error::db_error;

#[async_trait]
impl GateStore for Store {
    async fn upsert_gate(&self, gate: &ReleaseGate) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO release_gates (prompt_name, label, record) VALUES ($1, $2, $3)
             ON CONFLICT (prompt_name, label) DO UPDATE SET record = excluded.record",
        )
        .bind(&gate.prompt_name)
        .bind(&gate.label)
        .bind(record_of("release gate", gate)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        record_change(&mut tx, GATE, &gate_key(&gate.prompt_name, &gate.label)).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_gate(&self, prompt_name: &str, label: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let deleted =
            sqlx::query("DELETE FROM release_gates WHERE prompt_name = $1 AND label = $2")
                .bind(prompt_name)
                .bind(label)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        if deleted.rows_affected() != 1 {
            return Ok(false);
        }
        record_change(&mut tx, GATE, &gate_key(prompt_name, label)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
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
