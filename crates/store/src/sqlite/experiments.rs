//! [`ExperimentStore`] on SQLite.

use async_trait::async_trait;
use llmops_experiments::{
    Committed, Experiment, ExperimentStore, ExperimentStoreError, Exposure, MetricRecord,
    RecordVisitor,
};
use sqlx::Row;

use super::{to_micros, SqliteStore};
use crate::error::{corrupt_experiment, experiment_store_error as db_error};

/// Records read per query while rebuilding statistics.
const VISIT_PAGE: i64 = 10_000;

#[async_trait]
impl ExperimentStore for SqliteStore {
    async fn insert_experiment(&self, experiment: &Experiment) -> Result<(), ExperimentStoreError> {
        let record =
            serde_json::to_string(experiment).map_err(|e| corrupt_experiment("experiment", e))?;
        sqlx::query(
            "INSERT INTO experiments (id, status, record, created_at_us, updated_at_us) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&experiment.id)
        .bind(experiment.status.as_str())
        .bind(record)
        .bind(to_micros(experiment.created_at))
        .bind(to_micros(experiment.updated_at))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_experiment(&self, experiment: &Experiment) -> Result<(), ExperimentStoreError> {
        let record =
            serde_json::to_string(experiment).map_err(|e| corrupt_experiment("experiment", e))?;
        let updated = sqlx::query(
            "UPDATE experiments SET status = $2, record = $3, updated_at_us = $4 WHERE id = $1",
        )
        .bind(&experiment.id)
        .bind(experiment.status.as_str())
        .bind(record)
        .bind(to_micros(experiment.updated_at))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        if updated.rows_affected() == 0 {
            return Err(ExperimentStoreError::Unavailable(format!(
                "experiment {} is missing from storage",
                experiment.id
            )));
        }
        Ok(())
    }

    async fn load_experiments(&self) -> Result<Vec<Experiment>, ExperimentStoreError> {
        let rows = sqlx::query("SELECT record FROM experiments ORDER BY created_at_us, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(row.get::<&str, _>(0))
                    .map_err(|e| corrupt_experiment("experiment", e))
            })
            .collect()
    }

    async fn commit_writes(
        &self,
        exposures: &[Exposure],
        records: &[MetricRecord],
    ) -> Result<Committed, ExperimentStoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let mut committed = Committed {
            exposures: Vec::with_capacity(exposures.len()),
            records: Vec::with_capacity(records.len()),
        };
        for exposure in exposures {
            let inserted = sqlx::query(
                "INSERT INTO experiment_exposures (experiment_id, user_id, variant_id, exposed_at_us)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&exposure.experiment_id)
            .bind(&exposure.user_id)
            .bind(&exposure.variant_id)
            .bind(to_micros(exposure.time))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            committed.exposures.push(inserted.rows_affected() == 1);
        }
        for record in records {
            let record_id = (!record.record_id.is_empty()).then_some(record.record_id.as_str());
            let inserted = sqlx::query(
                "INSERT INTO experiment_metric_records (experiment_id, variant_id, metric, value, user_id, record_id, recorded_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&record.experiment_id)
            .bind(&record.variant_id)
            .bind(&record.metric)
            .bind(record.value)
            .bind(&record.user_id)
            .bind(record_id)
            .bind(to_micros(record.time))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            committed.records.push(inserted.rows_affected() == 1);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(committed)
    }

    async fn load_exposures(
        &self,
        experiment_id: &str,
    ) -> Result<Vec<(String, String)>, ExperimentStoreError> {
        let rows = sqlx::query(
            "SELECT user_id, variant_id FROM experiment_exposures WHERE experiment_id = $1",
        )
        .bind(experiment_id)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    async fn visit_records(
        &self,
        experiment_id: &str,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<(), ExperimentStoreError> {
        // Keyset pages keep memory flat however many records there are.
        let mut after = 0_i64;
        loop {
            let rows = sqlx::query(
                "SELECT id, variant_id, metric, value, user_id FROM experiment_metric_records
                 WHERE experiment_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(experiment_id)
            .bind(after)
            .bind(VISIT_PAGE)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = last.get(0);
            for row in &rows {
                visit(row.get(1), row.get(2), row.get(3), row.get(4));
            }
        }
    }
}
