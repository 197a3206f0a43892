//! [`ExperimentStore`] on SQLite.

use async_trait::async_trait;
use llmops_experiments::{
    Committed, Experiment, ExperimentStore, ExperimentStoreError, Exposure, MetricRecord,
    RecordVisitor,
};
use std::collections::HashMap;

use sqlx::{QueryBuilder, Row, Sqlite};

use super::{to_micros, SqliteStore};
use crate::error::{corrupt_experiment, experiment_store_error as db_error};

/// Rows per multi-row INSERT (7 parameters each, well under SQLite's 32,766).
const ROWS_PER_STATEMENT: usize = 1000;

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
            exposures: vec![false; exposures.len()],
            records: vec![false; records.len()],
        };
        // One multi-row statement per chunk: per-statement overhead, not row count,
        // dominates small inserts. `RETURNING` lists the rows actually inserted (a
        // conflict skips the row), which tells new writes from repeats.
        for (chunk_index, chunk) in exposures.chunks(ROWS_PER_STATEMENT).enumerate() {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO experiment_exposures (experiment_id, user_id, variant_id, exposed_at_us) ",
            );
            insert.push_values(chunk, |mut row, exposure| {
                row.push_bind(&exposure.experiment_id)
                    .push_bind(&exposure.user_id)
                    .push_bind(&exposure.variant_id)
                    .push_bind(to_micros(exposure.time));
            });
            insert.push(" ON CONFLICT DO NOTHING RETURNING experiment_id, user_id");
            let inserted = insert.build().fetch_all(&mut *tx).await.map_err(db_error)?;
            let keys = inserted
                .iter()
                .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)));
            let offset = chunk_index * ROWS_PER_STATEMENT;
            mark_inserted(
                &mut committed.exposures[offset..offset + chunk.len()],
                keys,
                |i| (chunk[i].experiment_id.clone(), chunk[i].user_id.clone()),
            );
        }
        for (chunk_index, chunk) in records.chunks(ROWS_PER_STATEMENT).enumerate() {
            let mut insert = QueryBuilder::<Sqlite>::new(
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
            insert.push(" ON CONFLICT DO NOTHING RETURNING experiment_id, record_id");
            let inserted = insert.build().fetch_all(&mut *tx).await.map_err(db_error)?;
            let offset = chunk_index * ROWS_PER_STATEMENT;
            let marks = &mut committed.records[offset..offset + chunk.len()];
            // Records without an id cannot conflict: every one is new.
            for (mark, record) in marks.iter_mut().zip(chunk) {
                *mark = record.record_id.is_empty();
            }
            let keys = inserted.iter().filter_map(|row| {
                let record_id: Option<String> = row.get(1);
                record_id.map(|id| (row.get::<String, _>(0), id))
            });
            mark_inserted(marks, keys, |i| {
                if chunk[i].record_id.is_empty() {
                    // Never matches a returned key.
                    (String::new(), String::new())
                } else {
                    (chunk[i].experiment_id.clone(), chunk[i].record_id.clone())
                }
            });
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

/// Marks as inserted, for each returned key, the first row of the chunk with that key
/// (a key repeated within one statement is inserted once, by its first row).
fn mark_inserted(
    marks: &mut [bool],
    returned: impl Iterator<Item = (String, String)>,
    key_of: impl Fn(usize) -> (String, String),
) {
    let mut returned_keys: HashMap<(String, String), usize> = HashMap::new();
    for key in returned {
        *returned_keys.entry(key).or_default() += 1;
    }
    if returned_keys.is_empty() {
        return;
    }
    for (i, mark) in marks.iter_mut().enumerate() {
        if let Some(count) = returned_keys.get_mut(&key_of(i)) {
            if *count > 0 {
                *count -= 1;
                *mark = true;
            }
        }
    }
}
