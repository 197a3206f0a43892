//! [`ExperimentStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use llmops_experiments::{
    Committed, Experiment, ExperimentStore, Exposure, MetricRecord, RecordVisitor, StoreError,
};
use sqlx::{QueryBuilder, Row};

use super::{Db, Store};
use crate::codec::to_micros;
use crate::error::{corrupt, db_error};

/// Records read per query while rebuilding statistics.
const VISIT_PAGE: i64 = 10_000;

#[async_trait]
impl ExperimentStore for Store {
    async fn insert_experiment(&self, experiment: &Experiment) -> Result<(), StoreError> {
        let record = serde_json::to_string(experiment).map_err(|e| corrupt("experiment", e))?;
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

    async fn update_experiment(&self, experiment: &Experiment) -> Result<(), StoreError> {
        let record = serde_json::to_string(experiment).map_err(|e| corrupt("experiment", e))?;
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
            return Err(StoreError::NotFound(format!(
                "experiment {} does not exist",
                experiment.id
            )));
        }
        Ok(())
    }

    async fn load_experiments(&self) -> Result<Vec<Experiment>, StoreError> {
        let rows = sqlx::query("SELECT record FROM experiments ORDER BY created_at_us, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(row.get::<&str, _>(0)).map_err(|e| corrupt("experiment", e))
            })
            .collect()
    }

    async fn commit_writes(
        &self,
        exposures: &[Exposure],
        records: &[MetricRecord],
    ) -> Result<Committed, StoreError> {
        super::experiment_writes::commit_writes(self, exposures, records).await
    }

    async fn load_exposures(
        &self,
        experiment_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
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
    ) -> Result<(), StoreError> {
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

/// `INSERT INTO experiment_exposures ... VALUES` for `chunk`, ending after the values so
/// each backend adds its conflict clause.
pub(super) fn insert_exposures(chunk: &[Exposure]) -> QueryBuilder<'_, Db> {
    let mut insert = QueryBuilder::<Db>::new(
        "INSERT INTO experiment_exposures (experiment_id, user_id, variant_id, exposed_at_us) ",
    );
    insert.push_values(chunk, |mut row, exposure| {
        row.push_bind(&exposure.experiment_id)
            .push_bind(&exposure.user_id)
            .push_bind(&exposure.variant_id)
            .push_bind(to_micros(exposure.time));
    });
    insert
}

/// `INSERT INTO experiment_metric_records ... VALUES` for `chunk` (an empty record id
/// stored as NULL, which never conflicts), ending after the values.
pub(super) fn insert_records(chunk: &[MetricRecord]) -> QueryBuilder<'_, Db> {
    let mut insert = QueryBuilder::<Db>::new(
        "INSERT INTO experiment_metric_records (experiment_id, variant_id, metric, value, user_id, record_id, recorded_at_us) ",
    );
    insert.push_values(chunk, |mut row, record| {
        row.push_bind(&record.experiment_id)
            .push_bind(&record.variant_id)
            .push_bind(&record.metric)
            .push_bind(record.value)
            .push_bind(&record.user_id)
            .push_bind((!record.record_id.is_empty()).then_some(record.record_id.as_str()))
            .push_bind(to_micros(record.time));
    });
    insert
}
