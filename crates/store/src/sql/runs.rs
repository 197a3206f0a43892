//! [`RunStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use llmops_evaluator::runs::{Run, RunStore, SampleResult};
use llmops_evaluator::StoreError;
use sqlx::{QueryBuilder, Row};

use super::cluster::record_change;
use super::datasets::push_sample_ids;
use super::{Db, Store};

/// The change-log entity of an evaluation run (see `sql/cluster.rs`).
const RUN: &str = "run";
use crate::codec::{parse, record_of, to_micros};
use crate::error::db_error;

/// Rows per multi-row statement (5 parameters each).
const ROWS_PER_STATEMENT: usize = 1000;

fn status_of(run: &Run) -> &'static str {
    run.status.as_str()
}

#[async_trait]
impl RunStore for Store {
    async fn insert_run(&self, run: &Run) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO eval_runs (id, dataset_id, status, created_at_us, record) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&run.id)
        .bind(&run.dataset_id)
        .bind(status_of(run))
        .bind(to_micros(run.created_at))
        .bind(record_of("run", run)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        record_change(&mut tx, RUN, &run.id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query("SELECT record FROM eval_runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(|row| parse("run", row.get(0))).transpose()
    }

    async fn update_run(&self, run: &Run) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let updated = sqlx::query("UPDATE eval_runs SET status = $2, record = $3 WHERE id = $1")
            .bind(&run.id)
            .bind(status_of(run))
            .bind(record_of("run", run)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound(format!(
                "run {} does not exist",
                run.id
            )));
        }
        record_change(&mut tx, RUN, &run.id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn load_runs(&self) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query("SELECT record FROM eval_runs ORDER BY created_at_us, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.iter().map(|row| parse("run", row.get(0))).collect()
    }

    async fn insert_results(
        &self,
        run_id: &str,
        results: &[SampleResult],
    ) -> Result<(), StoreError> {
        let records = results
            .iter()
            .map(|result| Ok((result, record_of("result", result)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Every chunk commits together: a batch is stored whole or not at all.
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO eval_run_results (run_id, sample_id, position, passed, record) ",
            );
            insert.push_values(chunk, |mut row, (result, record)| {
                row.push_bind(run_id)
                    .push_bind(&result.sample_id)
                    .push_bind(result.position)
                    .push_bind(result.passed)
                    .push_bind(record);
            });
            insert.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn results_page(
        &self,
        run_id: &str,
        failed_only: bool,
        after: i64,
        limit: usize,
    ) -> Result<Vec<SampleResult>, StoreError> {
        let rows = sqlx::query(
            "SELECT record FROM eval_run_results
             WHERE run_id = $1 AND position > $2 AND (NOT $3 OR NOT passed)
             ORDER BY position LIMIT $4",
        )
        .bind(run_id)
        .bind(after)
        .bind(failed_only)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.iter().map(|row| parse("result", row.get(0))).collect()
    }

    async fn existing_results(
        &self,
        run_id: &str,
        sample_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        for chunk in sample_ids.chunks(ROWS_PER_STATEMENT) {
            let mut query =
                QueryBuilder::<Db>::new("SELECT sample_id FROM eval_run_results WHERE run_id = ");
            query.push_bind(run_id);
            push_sample_ids(&mut query, chunk);
            for row in query
                .build()
                .fetch_all(&self.reader)
                .await
                .map_err(db_error)?
            {
                found.push(row.get(0));
            }
        }
        Ok(found)
    }
}
