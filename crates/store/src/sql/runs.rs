//! [`RunStore`] on SQLite and PostgreSQL (one source, compiled for each).

use std::time::Duration;

use async_trait::async_trait;
use llmops_evaluator::runs::{
    OnDuplicate, ResultCounts, Run, RunStatus, RunStore, SampleChunk, SampleResult, StoredResults,
};
use llmops_evaluator::StoreError;
use sqlx::{QueryBuilder, Row};

use super::cluster::{micros, record_change};
use super::datasets::push_sample_ids;
use super::{Db, Store, NOW_US, SKIP_LOCKED};

/// The change-log entity of an evaluation run (see `sql/cluster.rs`).
const RUN: &str = "run";
use crate::codec::{parse, record_of, to_micros};
use crate::error::db_error;

/// Rows per multi-row statement (5 parameters each).
const ROWS_PER_STATEMENT: usize = 1000;

fn status_of(run: &Run) -> &'static str {
    run.status.as_str()
}

/// A run's columns as `run_of` reads them.
const RUN_COLUMNS: &str = "record, status, done_count, passed_count, errored_count";

/// A run from its row: a running run's progress is the results counted so far (the
/// record holds the progress of its last change of status).
fn run_of(row: &<Db as sqlx::Database>::Row) -> Result<Run, StoreError> {
    let mut run: Run = parse("run", row.get(0))?;
    if row.get::<String, _>(1) == RunStatus::Running.as_str() {
        let count = |index: usize| u64::try_from(row.get::<i64, _>(index)).unwrap_or(0);
        let (done, passed, errored) = (count(2), count(3), count(4));
        run.progress.set_counts(ResultCounts {
            done,
            passed,
            errored,
            failed: done.saturating_sub(passed + errored),
        });
    }
    Ok(run)
}

fn signed(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
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
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM eval_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error)?;
        row.as_ref().map(run_of).transpose()
    }

    async fn transition_run(&self, run: &Run, from: RunStatus) -> Result<Option<u64>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done: Option<i64> = sqlx::query_scalar(
            "UPDATE eval_runs SET status = $2, record = $3 WHERE id = $1 AND status = $4
             RETURNING done_count",
        )
        .bind(&run.id)
        .bind(status_of(run))
        .bind(record_of("run", run)?)
        .bind(from.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(done) = done else {
            return Ok(None);
        };
        if run.status.is_terminal() {
            sqlx::query("DELETE FROM eval_run_chunks WHERE run_id = $1")
                .bind(&run.id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        record_change(&mut tx, RUN, &run.id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(u64::try_from(done).unwrap_or(0)))
    }

    async fn load_runs(&self) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM eval_runs ORDER BY created_at_us, id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.iter().map(run_of).collect()
    }

    async fn insert_results(
        &self,
        run_id: &str,
        results: &[SampleResult],
        on_duplicate: OnDuplicate,
    ) -> Result<StoredResults, StoreError> {
        let records = results
            .iter()
            .map(|result| Ok((result, record_of("result", result)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Every chunk commits together: a batch is stored whole or not at all.
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let mut stored = Vec::with_capacity(results.len());
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
            if on_duplicate == OnDuplicate::Skip {
                insert.push(" ON CONFLICT (run_id, sample_id) DO NOTHING");
            }
            insert.push(" RETURNING sample_id");
            for row in insert.build().fetch_all(&mut *tx).await.map_err(db_error)? {
                stored.push(row.get::<String, _>(0));
            }
        }
        let counted = {
            let new: std::collections::HashSet<&str> = stored.iter().map(String::as_str).collect();
            ResultCounts::of(
                results
                    .iter()
                    .filter(|r| new.contains(r.sample_id.as_str())),
            )
        };
        // Counting in the run's row also orders the batch against the run's end: a batch
        // either committed before it (and is summarised) or finds the run ended.
        let row = sqlx::query(
            "UPDATE eval_runs SET done_count = done_count + $2, passed_count = passed_count + $3,
                    errored_count = errored_count + $4
             WHERE id = $1 AND status = $5
             RETURNING done_count, passed_count, errored_count",
        )
        .bind(run_id)
        .bind(signed(counted.done))
        .bind(signed(counted.passed))
        .bind(signed(counted.errored))
        .bind(RunStatus::Running.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!(
                "run {run_id} is not running; its results are final"
            )));
        };
        let count = |index: usize| u64::try_from(row.get::<i64, _>(index)).unwrap_or(0);
        let (done, passed, errored) = (count(0), count(1), count(2));
        if counted.done > 0 {
            record_change(&mut tx, RUN, run_id).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(StoredResults {
            stored,
            counts: ResultCounts {
                done,
                passed,
                errored,
                failed: done.saturating_sub(passed + errored),
            },
        })
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

    async fn claim_lapsed_chunk(
        &self,
        run_id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<SampleChunk>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE eval_run_chunks SET worker = $2, expires_at_us = {NOW_US} + $3
             WHERE run_id = $1 AND after_position = (
                 SELECT after_position FROM eval_run_chunks
                 WHERE run_id = $1 AND NOT finished AND expires_at_us < {NOW_US}
                 ORDER BY after_position LIMIT 1{SKIP_LOCKED})
             RETURNING after_position, last_position"
        ))
        .bind(run_id)
        .bind(worker)
        .bind(micros(lease))
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(row.map(|row| SampleChunk {
            after: row.get(0),
            through: row.get(1),
        }))
    }

    async fn chunk_frontier(&self, run_id: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT COALESCE(MAX(last_position), 0) FROM eval_run_chunks WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_one(&self.reader)
        .await
        .map_err(db_error)
    }

    async fn claim_new_chunk(
        &self,
        run_id: &str,
        chunk: SampleChunk,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO eval_run_chunks
                 (run_id, after_position, last_position, worker, expires_at_us, finished)
             VALUES ($1, $2, $3, $4, {NOW_US} + $5, $6)
             ON CONFLICT (run_id, after_position) DO NOTHING"
        ))
        .bind(run_id)
        .bind(chunk.after)
        .bind(chunk.through)
        .bind(worker)
        .bind(micros(lease))
        .bind(false)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn renew_chunks(
        &self,
        run_id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE eval_run_chunks SET expires_at_us = {NOW_US} + $3
             WHERE run_id = $1 AND worker = $2 AND NOT finished"
        ))
        .bind(run_id)
        .bind(worker)
        .bind(micros(lease))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn finish_chunks(&self, run_id: &str, afters: &[i64]) -> Result<(), StoreError> {
        if afters.is_empty() {
            return Ok(());
        }
        let mut update =
            QueryBuilder::<Db>::new("UPDATE eval_run_chunks SET finished = TRUE WHERE run_id = ");
        update.push_bind(run_id).push(" AND after_position IN (");
        let mut list = update.separated(", ");
        for after in afters {
            list.push_bind(*after);
        }
        update.push(")");
        update
            .build()
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn release_chunks(&self, run_id: &str, worker: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE eval_run_chunks SET expires_at_us = 0
             WHERE run_id = $1 AND worker = $2 AND NOT finished",
        )
        .bind(run_id)
        .bind(worker)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn unfinished_chunks(&self, run_id: &str) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM eval_run_chunks WHERE run_id = $1 AND NOT finished",
        )
        .bind(run_id)
        .fetch_one(&self.reader)
        .await
        .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
