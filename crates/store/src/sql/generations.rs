//! [`GenerationStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_core::StoreError;
use std::collections::HashSet;

use llmops_generations::{
    Generation, GenerationQuery, GenerationStore, Inserted, QueuedSample, UsageAggregate,
    UsageFilter,
};
use sqlx::QueryBuilder;

use super::{Db, Store};
use crate::codec::{parse, record_of, to_micros};
use crate::error::db_error;

/// Generations per INSERT statement (10 parameters each, far below either database's
/// limit).
const INSERT_ROWS: usize = 500;

/// The row every insert transaction of generations updates first: on PostgreSQL it
/// stays locked until the commit, so the transactions of every process that add to the
/// usage aggregates do so one at a time (see `usage.rs`).
const GENERATIONS_STREAM: &str = "generations";

#[async_trait]
impl GenerationStore for Store {
    async fn insert_sampled_generations(
        &self,
        generations: &[Generation],
        samples: &[QueuedSample],
        queue_limit: u64,
    ) -> Result<Inserted, StoreError> {
        // Serialized before the transaction begins: the writer is held for the database
        // work alone.
        let records = generations
            .iter()
            .map(|g| record_of("generation", g))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query("UPDATE event_sequences SET value = value + 1 WHERE stream = $1")
            .bind(GENERATIONS_STREAM)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let mut new = Vec::new();
        for (chunk, records) in generations
            .chunks(INSERT_ROWS)
            .zip(records.chunks(INSERT_ROWS))
        {
            let rows = chunk.iter().zip(records);
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO generations (id, time_us, prompt_name, prompt_version, model, \
                 experiment_id, variant_id, user_id, status, record) ",
            );
            insert.push_values(rows, |mut row, (g, record)| {
                row.push_bind(&g.id)
                    .push_bind(to_micros(g.time()))
                    .push_bind(&g.prompt_name)
                    .push_bind(&g.prompt_version)
                    .push_bind(&g.model)
                    .push_bind(&g.experiment_id)
                    .push_bind(&g.variant_id)
                    .push_bind(&g.user_id)
                    .push_bind(g.status.as_str())
                    .push_bind(record);
            });
            // A stored id changes nothing; the ids that were new come back.
            insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
            let ids: Vec<String> = insert
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            new.extend(ids);
        }
        // What was new is counted in the usage aggregates by the same transaction: each
        // generation once (a repeated id within the batch was stored first-come).
        let mut counted: HashSet<&str> = new.iter().map(String::as_str).collect();
        let (queued, skipped) = if samples.is_empty() {
            (0, 0)
        } else {
            super::online::enqueue(&mut tx, &counted, samples, queue_limit)
                .await
                .map_err(db_error)?
        };
        let stored: Vec<&Generation> = generations
            .iter()
            .filter(|g| counted.remove(g.id.as_str()))
            .collect();
        super::usage::add(&mut tx, &stored)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Inserted {
            new,
            queued,
            skipped,
        })
    }

    async fn get_generation(&self, id: &str) -> Result<Option<Generation>, StoreError> {
        let record: Option<String> =
            sqlx::query_scalar("SELECT record FROM generations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_error)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let mut generation: Generation = parse("generation", &record)?;
        generation.scores = super::online::scores_of(&self.reader, &[id])
            .await?
            .remove(id)
            .unwrap_or_default();
        Ok(Some(generation))
    }

    async fn list_generations(
        &self,
        query: &GenerationQuery,
    ) -> Result<Vec<Generation>, StoreError> {
        let mut select = QueryBuilder::<Db>::new("SELECT record FROM generations WHERE 1 = 1");
        for (column, value) in [
            ("prompt_name", &query.prompt_name),
            ("prompt_version", &query.prompt_version),
            ("model", &query.model),
            ("experiment_id", &query.experiment_id),
            ("variant_id", &query.variant_id),
            ("user_id", &query.user_id),
        ] {
            if let Some(value) = value {
                select
                    .push(format!(" AND {column} = "))
                    .push_bind(value.clone());
            }
        }
        if let Some(status) = query.status {
            select.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(since) = query.since {
            select.push(" AND time_us >= ").push_bind(to_micros(since));
        }
        if let Some(until) = query.until {
            select.push(" AND time_us < ").push_bind(to_micros(until));
        }
        if let Some((time, id)) = &query.before {
            let time = to_micros(*time);
            select
                .push(" AND (time_us < ")
                .push_bind(time)
                .push(" OR (time_us = ")
                .push_bind(time)
                .push(" AND id < ")
                .push_bind(id.clone())
                .push("))");
        }
        select
            .push(" ORDER BY time_us DESC, id DESC LIMIT ")
            .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let records: Vec<String> = select
            .build_query_scalar()
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        let mut generations = records
            .iter()
            .map(|record| parse("generation", record))
            .collect::<Result<Vec<Generation>, StoreError>>()?;
        let ids: Vec<&str> = generations.iter().map(|g| g.id.as_str()).collect();
        let mut scores = super::online::scores_of(&self.reader, &ids).await?;
        for generation in &mut generations {
            generation.scores = scores.remove(&generation.id).unwrap_or_default();
        }
        Ok(generations)
    }

    async fn prune_generations(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done = sqlx::query("DELETE FROM generations WHERE time_us < $1")
            .bind(to_micros(before))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // Online verdicts go with their generations (scored after them, so by the same
        // cutoff nothing newer is lost); the aggregates stay, as usage does.
        sqlx::query(
            "DELETE FROM online_scores WHERE scored_at_us < $1 \
             AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.id = online_scores.generation_id)",
        )
        .bind(to_micros(before))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let done = sqlx::query("DELETE FROM usage_hourly WHERE bucket_us <= $1")
            .bind(to_micros(before) - llmops_generations::HOUR_US)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // Online statistics are kept as long as usage.
        sqlx::query("DELETE FROM online_aggregates WHERE minute_us < $1")
            .bind(to_micros(before))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn usage_aggregates(
        &self,
        filter: &UsageFilter,
    ) -> Result<Vec<UsageAggregate>, StoreError> {
        super::usage::aggregates(&self.reader, filter).await
    }
}
