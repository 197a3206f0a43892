//! [`ExperimentStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use llmops_experiments::{
    BatchWrites, Committed, Experiment, ExperimentStatus, ExperimentStore, Exposure, MetricRecord,
    RecordVisitor, StoreError,
};
use sqlx::{QueryBuilder, Row};

use super::cluster::record_change;
use super::{sequencer, Db, Store};
use crate::codec::{from_micros, to_micros};
use crate::error::{corrupt, db_error};

/// The stream numbering write batches in commit order (other processes follow it).
pub(super) const EXPERIMENT_WRITES: &str = "experiment_writes";
/// The change-log entity of an experiment definition (see `sql/cluster.rs`).
const EXPERIMENT: &str = "experiment";

/// Records read per query while rebuilding statistics.
const VISIT_PAGE: i64 = 10_000;

/// The (prompt, label) a running experiment serves, stored in the columns a unique index
/// covers: at most one running experiment serves a label, whichever process starts it.
/// Empty (which the index leaves out) when it does not run or serves nothing.
fn serving(experiment: &Experiment) -> (&str, &str) {
    if experiment.status == ExperimentStatus::Running && !experiment.serves_prompt.is_empty() {
        (&experiment.serves_prompt, &experiment.serves_label)
    } else {
        ("", "")
    }
}

impl Store {
    /// The conflict of starting `experiment` while another serves its label (found after
    /// the unique index refused the update, so it is named when it can be read).
    async fn label_taken(&self, experiment: &Experiment) -> StoreError {
        let other: Option<String> = sqlx::query_scalar(
            "SELECT id FROM experiments WHERE serving_prompt = $1 AND serving_label = $2",
        )
        .bind(&experiment.serves_prompt)
        .bind(&experiment.serves_label)
        .fetch_optional(&self.writer)
        .await
        .ok()
        .flatten();
        let other = match other {
            Some(id) => format!("experiment {id:?}"),
            None => "another experiment".to_owned(),
        };
        StoreError::Conflict(format!(
            "{other} already serves {:?} label {:?}; complete, pause or cancel it first",
            experiment.serves_prompt, experiment.serves_label
        ))
    }
}

#[async_trait]
impl ExperimentStore for Store {
    async fn insert_experiment(&self, experiment: &Experiment) -> Result<(), StoreError> {
        let record = serde_json::to_string(experiment).map_err(|e| corrupt("experiment", e))?;
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let (prompt, label) = serving(experiment);
        sqlx::query(
            "INSERT INTO experiments (id, status, record, created_at_us, updated_at_us, \
             serving_prompt, serving_label) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&experiment.id)
        .bind(experiment.status.as_str())
        .bind(record)
        .bind(to_micros(experiment.created_at))
        .bind(to_micros(experiment.updated_at))
        .bind(prompt)
        .bind(label)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        record_change(&mut tx, EXPERIMENT, &experiment.id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn update_experiment(&self, experiment: &Experiment) -> Result<(), StoreError> {
        let record = serde_json::to_string(experiment).map_err(|e| corrupt("experiment", e))?;
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let (prompt, label) = serving(experiment);
        let updated = sqlx::query(
            "UPDATE experiments SET status = $2, record = $3, updated_at_us = $4, \
             serving_prompt = $5, serving_label = $6 WHERE id = $1",
        )
        .bind(&experiment.id)
        .bind(experiment.status.as_str())
        .bind(record)
        .bind(to_micros(experiment.updated_at))
        .bind(prompt)
        .bind(label)
        .execute(&mut *tx)
        .await;
        let updated = match updated {
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                drop(tx);
                return Err(self.label_taken(experiment).await);
            }
            other => other.map_err(db_error)?,
        };
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "experiment {} does not exist",
                experiment.id
            )));
        }
        record_change(&mut tx, EXPERIMENT, &experiment.id).await?;
        tx.commit().await.map_err(db_error)
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

    async fn get_experiment(&self, id: &str) -> Result<Option<Experiment>, StoreError> {
        let row = sqlx::query("SELECT record FROM experiments WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(|row| {
            serde_json::from_str(row.get::<&str, _>(0)).map_err(|e| corrupt("experiment", e))
        })
        .transpose()
    }

    async fn write_head(&self) -> Result<u64, StoreError> {
        Ok(sequencer::current(&self.reader, EXPERIMENT_WRITES)
            .await
            .map_err(db_error)? as u64)
    }

    async fn writes_after(&self, after: u64, batches: u64) -> Result<BatchWrites, StoreError> {
        // One snapshot: a batch is read whole or not at all.
        let mut tx = super::begin_snapshot(&self.reader)
            .await
            .map_err(db_error)?;
        let head = sequencer::current(&mut *tx, EXPERIMENT_WRITES)
            .await
            .map_err(db_error)? as u64;
        let through = head.min(after.saturating_add(batches));
        let mut writes = BatchWrites {
            through: through.max(after),
            ..BatchWrites::default()
        };
        if through <= after {
            return Ok(writes);
        }
        let rows = sqlx::query(
            "SELECT batch_sequence, experiment_id, user_id, variant_id, exposed_at_us
             FROM experiment_exposures WHERE batch_sequence > $1 AND batch_sequence <= $2
             ORDER BY batch_sequence",
        )
        .bind(after as i64)
        .bind(through as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        writes.exposures = rows
            .into_iter()
            .map(|row| {
                (
                    row.get::<i64, _>(0) as u64,
                    Exposure {
                        experiment_id: row.get(1),
                        user_id: row.get(2),
                        variant_id: row.get(3),
                        time: from_micros(row.get(4)),
                    },
                )
            })
            .collect();
        let rows = sqlx::query(
            "SELECT batch_sequence, experiment_id, variant_id, metric, value, user_id,
                    COALESCE(record_id, ''), recorded_at_us
             FROM experiment_metric_records WHERE batch_sequence > $1 AND batch_sequence <= $2
             ORDER BY batch_sequence, id",
        )
        .bind(after as i64)
        .bind(through as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        writes.records = rows
            .into_iter()
            .map(|row| {
                (
                    row.get::<i64, _>(0) as u64,
                    MetricRecord {
                        experiment_id: row.get(1),
                        variant_id: row.get(2),
                        metric: row.get(3),
                        value: row.get(4),
                        user_id: row.get(5),
                        record_id: row.get(6),
                        time: from_micros(row.get(7)),
                    },
                )
            })
            .collect();
        Ok(writes)
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
        through: Option<u64>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, variant_id FROM experiment_exposures
             WHERE experiment_id = $1 AND batch_sequence <= $2",
        )
        .bind(experiment_id)
        .bind(through.map_or(i64::MAX, |t| t as i64))
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
        through: Option<u64>,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<(), StoreError> {
        // Keyset pages keep memory flat however many records there are.
        let mut after = 0_i64;
        loop {
            let rows = sqlx::query(
                "SELECT id, variant_id, metric, value, user_id FROM experiment_metric_records
                 WHERE experiment_id = $1 AND id > $2 AND batch_sequence <= $4
                 ORDER BY id LIMIT $3",
            )
            .bind(experiment_id)
            .bind(after)
            .bind(VISIT_PAGE)
            .bind(through.map_or(i64::MAX, |t| t as i64))
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
pub(super) fn insert_exposures(chunk: &[Exposure], batch: i64) -> QueryBuilder<'_, Db> {
    let mut insert = QueryBuilder::<Db>::new(
        "INSERT INTO experiment_exposures (experiment_id, user_id, variant_id, exposed_at_us, batch_sequence) ",
    );
    insert.push_values(chunk, |mut row, exposure| {
        row.push_bind(&exposure.experiment_id)
            .push_bind(&exposure.user_id)
            .push_bind(&exposure.variant_id)
            .push_bind(to_micros(exposure.time))
            .push_bind(batch);
    });
    insert
}

/// `INSERT INTO experiment_metric_records ... VALUES` for `chunk` (an empty record id
/// stored as NULL, which never conflicts), ending after the values.
pub(super) fn insert_records(chunk: &[MetricRecord], batch: i64) -> QueryBuilder<'_, Db> {
    let mut insert = QueryBuilder::<Db>::new(
        "INSERT INTO experiment_metric_records (experiment_id, variant_id, metric, value, user_id, record_id, recorded_at_us, batch_sequence) ",
    );
    insert.push_values(chunk, |mut row, record| {
        row.push_bind(&record.experiment_id)
            .push_bind(&record.variant_id)
            .push_bind(&record.metric)
            .push_bind(record.value)
            .push_bind(&record.user_id)
            .push_bind((!record.record_id.is_empty()).then_some(record.record_id.as_str()))
            .push_bind(to_micros(record.time))
            .push_bind(batch);
    });
    insert
}
