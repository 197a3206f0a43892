//! [`OnlineStore`] on SQLite and PostgreSQL (one source, compiled for each), and the
//! enqueueing of samples by the transactions that store generations.
//!
//! Every transaction that changes the queue's size first updates the one row of
//! `online_queue_depth`; on PostgreSQL that row stays locked until the commit, so
//! enqueues, completions and deletions of every process count the queue one at a time,
//! and completions add to the aggregates one at a time (on SQLite the one writer
//! connection does the same).

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::Utc;
use llmops_evaluator::online::{
    ClaimedSample, CompletedSample, OnlineAggregateRow, OnlineEvaluation, OnlineGroupKey,
    OnlineStore, OnlineTotals, MINUTE_US,
};
use llmops_evaluator::StoreError;
use llmops_generations::{Generation, GenerationScore, QueuedSample, UsageKey};
use sqlx::{QueryBuilder, Row, Transaction};

use super::cluster::record_change;
use super::{Db, Store};
use crate::codec::{parse, record_of, to_micros};
use crate::error::db_error;

/// The change-log entity of an online evaluation (see `sql/cluster.rs`).
const ONLINE_EVALUATION: &str = "online_evaluation";
/// Rows per statement (at most 9 parameters each).
const ROWS_PER_STATEMENT: usize = 500;

/// Locks the queue's size (see the module's comment) and returns it.
async fn lock_depth(tx: &mut Transaction<'_, Db>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("UPDATE online_queue_depth SET depth = depth WHERE id = 1 RETURNING depth")
        .fetch_one(&mut **tx)
        .await
}

async fn add_depth(tx: &mut Transaction<'_, Db>, delta: i64) -> Result<(), sqlx::Error> {
    if delta != 0 {
        sqlx::query("UPDATE online_queue_depth SET depth = depth + $1 WHERE id = 1")
            .bind(delta)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Queues, inside the transaction that stored them, the `samples` whose generation is in
/// `new`, while the queue holds fewer than `limit`: (queued, skipped).
pub(crate) async fn enqueue(
    tx: &mut Transaction<'_, Db>,
    new: &HashSet<&str>,
    samples: &[QueuedSample],
    limit: u64,
) -> Result<(u64, u64), sqlx::Error> {
    let mut seen = HashSet::new();
    let fresh: Vec<&QueuedSample> = samples
        .iter()
        .filter(|s| {
            new.contains(s.generation_id.as_str())
                && seen.insert((s.evaluation_id.as_str(), s.generation_id.as_str()))
        })
        .collect();
    if fresh.is_empty() {
        return Ok((0, 0));
    }
    let depth = u64::try_from(lock_depth(tx).await?).unwrap_or(0);
    let room = usize::try_from(limit.saturating_sub(depth)).unwrap_or(usize::MAX);
    let admitted = &fresh[..fresh.len().min(room)];
    let now = to_micros(Utc::now());
    let mut queued = 0;
    for chunk in admitted.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Db>::new(
            "INSERT INTO online_queue (evaluation_id, generation_id, enqueued_us) ",
        );
        insert.push_values(chunk, |mut row, sample| {
            row.push_bind(sample.evaluation_id.clone())
                .push_bind(sample.generation_id.clone())
                .push_bind(now);
        });
        insert.push(" ON CONFLICT (evaluation_id, generation_id) DO NOTHING");
        queued += insert.build().execute(&mut **tx).await?.rows_affected();
    }
    add_depth(tx, i64::try_from(queued).unwrap_or(i64::MAX)).await?;
    Ok((queued, (fresh.len() - admitted.len()) as u64))
}

/// The scores of `ids`, by generation, oldest first.
pub(crate) async fn scores_of(
    reader: &sqlx::Pool<Db>,
    ids: &[&str],
) -> Result<HashMap<String, Vec<GenerationScore>>, StoreError> {
    let mut scores: HashMap<String, Vec<GenerationScore>> = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<Db>::new(
            "SELECT generation_id, record FROM online_scores WHERE generation_id IN (",
        );
        let mut list = select.separated(", ");
        for id in chunk {
            list.push_bind(id.to_string());
        }
        select.push(") ORDER BY scored_at_us, evaluation_id");
        let rows = select.build().fetch_all(reader).await.map_err(db_error)?;
        for row in rows {
            let id: String = row.get(0);
            let score: GenerationScore = parse("online score", row.get(1))?;
            scores.entry(id).or_default().push(score);
        }
    }
    Ok(scores)
}

#[async_trait]
impl OnlineStore for Store {
    async fn insert_online_evaluation(
        &self,
        evaluation: &OnlineEvaluation,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO online_evaluations (id, created_at_us, record) VALUES ($1, $2, $3)",
        )
        .bind(&evaluation.id)
        .bind(to_micros(evaluation.created_at))
        .bind(record_of("online evaluation", evaluation)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        record_change(&mut tx, ONLINE_EVALUATION, &evaluation.id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn update_online_evaluation(
        &self,
        evaluation: &OnlineEvaluation,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let updated = sqlx::query("UPDATE online_evaluations SET record = $2 WHERE id = $1")
            .bind(&evaluation.id)
            .bind(record_of("online evaluation", evaluation)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound(format!(
                "online evaluation {} does not exist",
                evaluation.id
            )));
        }
        record_change(&mut tx, ONLINE_EVALUATION, &evaluation.id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_online_evaluation(
        &self,
        id: &str,
    ) -> Result<Option<OnlineEvaluation>, StoreError> {
        let record: Option<String> =
            sqlx::query_scalar("SELECT record FROM online_evaluations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.writer)
                .await
                .map_err(db_error)?;
        record.map(|r| parse("online evaluation", &r)).transpose()
    }

    async fn delete_online_evaluation(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        lock_depth(&mut tx).await.map_err(db_error)?;
        let deleted = sqlx::query("DELETE FROM online_evaluations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected() != 1 {
            return Ok(false);
        }
        let unqueued = sqlx::query("DELETE FROM online_queue WHERE evaluation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        add_depth(&mut tx, -i64::try_from(unqueued).unwrap_or(0))
            .await
            .map_err(db_error)?;
        for table in ["online_scores", "online_aggregates"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE evaluation_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        record_change(&mut tx, ONLINE_EVALUATION, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn load_online_evaluations(&self) -> Result<Vec<OnlineEvaluation>, StoreError> {
        let records: Vec<String> =
            sqlx::query_scalar("SELECT record FROM online_evaluations ORDER BY created_at_us, id")
                .fetch_all(&self.writer)
                .await
                .map_err(db_error)?;
        records
            .iter()
            .map(|r| parse("online evaluation", r))
            .collect()
    }

    async fn claim_online_samples(
        &self,
        evaluations: &[String],
        worker: &str,
        now_us: i64,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedSample>, StoreError> {
        if evaluations.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut claim = QueryBuilder::<Db>::new("UPDATE online_queue SET claimed_by = ");
        claim
            .push_bind(worker.to_owned())
            .push(", claimed_until_us = ")
            .push_bind(until_us)
            .push(
                " WHERE (evaluation_id, generation_id) IN (SELECT evaluation_id, generation_id \
                 FROM online_queue WHERE claimed_until_us < ",
            )
            .push_bind(now_us)
            .push(" AND evaluation_id IN (");
        let mut list = claim.separated(", ");
        for id in evaluations {
            list.push_bind(id.clone());
        }
        claim
            .push(") ORDER BY enqueued_us LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .push(super::SKIP_LOCKED)
            .push(") RETURNING evaluation_id, generation_id");
        let claimed: Vec<(String, String)> = claim
            .build_query_as()
            .fetch_all(&self.writer)
            .await
            .map_err(db_error)?;
        if claimed.is_empty() {
            return Ok(claimed_samples(claimed, HashMap::new()));
        }
        let ids: Vec<&str> = claimed
            .iter()
            .map(|(_, g)| g.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut generations: HashMap<String, Generation> = HashMap::new();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut select =
                QueryBuilder::<Db>::new("SELECT record FROM generations WHERE id IN (");
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(id.to_string());
            }
            select.push(")");
            let records: Vec<String> = select
                .build_query_scalar()
                .fetch_all(&self.writer)
                .await
                .map_err(db_error)?;
            for record in records {
                let generation: Generation = parse("generation", &record)?;
                generations.insert(generation.id.clone(), generation);
            }
        }
        Ok(claimed_samples(claimed, generations))
    }

    async fn renew_online_claims(&self, worker: &str, until_us: i64) -> Result<u64, StoreError> {
        let renewed =
            sqlx::query("UPDATE online_queue SET claimed_until_us = $2 WHERE claimed_by = $1")
                .bind(worker)
                .bind(until_us)
                .execute(&self.writer)
                .await
                .map_err(db_error)?;
        Ok(renewed.rows_affected())
    }

    async fn complete_online_samples(
        &self,
        completed: &[CompletedSample],
        dropped: &[(String, String)],
    ) -> Result<u64, StoreError> {
        if completed.is_empty() && dropped.is_empty() {
            return Ok(0);
        }
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        lock_depth(&mut tx).await.map_err(db_error)?;
        // A verdict of an evaluation deleted while it was being scored is dropped (its
        // sample left the queue with the evaluation).
        let named: HashSet<&str> = completed.iter().map(|c| c.evaluation_id.as_str()).collect();
        let mut existing: HashSet<String> = HashSet::new();
        if !named.is_empty() {
            let mut select =
                QueryBuilder::<Db>::new("SELECT id FROM online_evaluations WHERE id IN (");
            let mut list = select.separated(", ");
            for id in &named {
                list.push_bind(id.to_string());
            }
            select.push(")");
            let found: Vec<String> = select
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            existing.extend(found);
        }
        let completed: Vec<&CompletedSample> = completed
            .iter()
            .filter(|c| existing.contains(&c.evaluation_id))
            .collect();
        let records = completed
            .iter()
            .map(|c| record_of("online score", &c.score))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut new: HashSet<(String, String)> = HashSet::new();
        for (chunk, records) in completed
            .chunks(ROWS_PER_STATEMENT)
            .zip(records.chunks(ROWS_PER_STATEMENT))
        {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO online_scores (evaluation_id, generation_id, scored_at_us, record) ",
            );
            insert.push_values(chunk.iter().zip(records), |mut row, (c, record)| {
                row.push_bind(c.evaluation_id.clone())
                    .push_bind(c.generation_id.clone())
                    .push_bind(c.score.scored_at.map(to_micros).unwrap_or_default())
                    .push_bind(record.clone());
            });
            insert.push(
                " ON CONFLICT (evaluation_id, generation_id) DO NOTHING \
                 RETURNING evaluation_id, generation_id",
            );
            let stored: Vec<(String, String)> = insert
                .build_query_as()
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            new.extend(stored);
        }
        // Only verdicts stored now count: a sample scored twice (a lapsed claim) counts once.
        let mut deltas: BTreeMap<(String, i64, UsageKey), OnlineTotals> = BTreeMap::new();
        for c in &completed {
            if new.remove(&(c.evaluation_id.clone(), c.generation_id.clone())) {
                deltas
                    .entry((c.evaluation_id.clone(), c.minute_us, c.key.clone()))
                    .or_default()
                    .merge(&c.totals);
            }
        }
        let counted = deltas.values().map(|t| t.scored + t.failed).sum();
        add_to_aggregates(&mut tx, deltas).await?;
        // Out of the queue, by evaluation.
        let mut by_evaluation: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for c in &completed {
            by_evaluation
                .entry(c.evaluation_id.as_str())
                .or_default()
                .push(c.generation_id.as_str());
        }
        for (evaluation, generation) in dropped {
            by_evaluation
                .entry(evaluation.as_str())
                .or_default()
                .push(generation.as_str());
        }
        let mut removed = 0;
        for (evaluation, generations) in by_evaluation {
            for chunk in generations.chunks(ROWS_PER_STATEMENT) {
                let mut delete =
                    QueryBuilder::<Db>::new("DELETE FROM online_queue WHERE evaluation_id = ");
                delete
                    .push_bind(evaluation.to_owned())
                    .push(" AND generation_id IN (");
                let mut list = delete.separated(", ");
                for id in chunk {
                    list.push_bind(id.to_string());
                }
                delete.push(")");
                removed += delete
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?
                    .rows_affected();
            }
        }
        add_depth(&mut tx, -i64::try_from(removed).unwrap_or(0))
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(counted)
    }

    async fn online_aggregates(
        &self,
        evaluation_id: &str,
        since_us: i64,
        until_us: i64,
        limit: usize,
    ) -> Result<Vec<OnlineAggregateRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {AGGREGATE_COLUMNS} FROM online_aggregates WHERE evaluation_id = $1 \
             AND minute_us >= $2 AND minute_us < $3 LIMIT $4"
        ))
        .bind(evaluation_id)
        .bind(since_us)
        .bind(until_us)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.iter().map(aggregate_of).collect()
    }

    async fn queued_online_samples(
        &self,
        evaluation_id: &str,
        since_us: i64,
        until_us: i64,
    ) -> Result<Vec<(i64, OnlineGroupKey)>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.time_us, g.prompt_name, g.prompt_version, g.model, g.experiment_id, \
             g.variant_id FROM online_queue q JOIN generations g ON g.id = q.generation_id \
             WHERE q.evaluation_id = $1 AND g.time_us >= $2 AND g.time_us < $3",
        )
        .bind(evaluation_id)
        .bind(since_us)
        .bind(until_us)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| {
                let time: i64 = row.get(0);
                let key = UsageKey::from_parts([
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                    "",
                ]);
                (time - time.rem_euclid(MINUTE_US), key)
            })
            .collect())
    }

    async fn online_queue_depth(&self) -> Result<u64, StoreError> {
        let depth: i64 = sqlx::query_scalar("SELECT depth FROM online_queue_depth WHERE id = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(depth).unwrap_or(0))
    }
}

/// The claimed samples with their generations (`None` for one that is gone).
fn claimed_samples(
    claimed: Vec<(String, String)>,
    mut generations: HashMap<String, Generation>,
) -> Vec<ClaimedSample> {
    let mut claims: Vec<ClaimedSample> = claimed
        .into_iter()
        .map(|(evaluation_id, generation_id)| ClaimedSample {
            generation: generations.get(&generation_id).cloned(),
            evaluation_id,
            generation_id,
        })
        .collect();
    generations.clear();
    claims.sort_by(|a, b| {
        (&a.evaluation_id, &a.generation_id).cmp(&(&b.evaluation_id, &b.generation_id))
    });
    claims
}

/// An aggregate's columns, in the order [`aggregate_of`] and [`add_to_aggregates`] use.
const AGGREGATE_COLUMNS: &str = "evaluation_id, minute_us, group_key, prompt_name, \
     prompt_version, model, experiment_id, variant_id, record";

fn aggregate_of(row: &<Db as sqlx::Database>::Row) -> Result<OnlineAggregateRow, StoreError> {
    Ok(OnlineAggregateRow {
        minute_us: row.get("minute_us"),
        key: UsageKey::from_parts([
            row.get("prompt_name"),
            row.get("prompt_version"),
            row.get("model"),
            row.get("experiment_id"),
            row.get("variant_id"),
            "",
        ]),
        totals: parse("online aggregate", row.get("record"))?,
    })
}

/// Where an aggregate is stored: evaluation, minute, encoded attribution.
type AggregatePlace = (String, i64, String);

/// Adds `deltas` to the stored aggregates (under the queue's lock, so nobody else
/// changes them before this transaction ends).
async fn add_to_aggregates(
    tx: &mut Transaction<'_, Db>,
    deltas: BTreeMap<(String, i64, UsageKey), OnlineTotals>,
) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut merged: BTreeMap<AggregatePlace, (UsageKey, OnlineTotals)> = BTreeMap::new();
    for ((evaluation, minute, key), delta) in deltas {
        let place = (evaluation, minute, key.encode());
        if !merged.contains_key(&place) {
            let stored: Option<String> = sqlx::query_scalar(
                "SELECT record FROM online_aggregates WHERE evaluation_id = $1 AND minute_us = $2 \
                 AND group_key = $3",
            )
            .bind(&place.0)
            .bind(place.1)
            .bind(&place.2)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
            let stored: OnlineTotals = match stored {
                Some(record) => parse("online aggregate", &record)?,
                None => OnlineTotals::default(),
            };
            merged.insert(place.clone(), (key.clone(), stored));
        }
        if let Some((_, totals)) = merged.get_mut(&place) {
            totals.merge(&delta);
        }
    }
    let rows: Vec<(AggregatePlace, (UsageKey, OnlineTotals))> = merged.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let records = chunk
            .iter()
            .map(|(_, (_, totals))| record_of("online aggregate", totals))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut insert = QueryBuilder::<Db>::new(format!(
            "INSERT INTO online_aggregates ({AGGREGATE_COLUMNS}) "
        ));
        insert.push_values(
            chunk.iter().zip(records),
            |mut row, (((evaluation, minute, group), (key, _)), record)| {
                row.push_bind(evaluation.clone())
                    .push_bind(*minute)
                    .push_bind(group.clone())
                    .push_bind(key.prompt_name.clone())
                    .push_bind(key.prompt_version.clone())
                    .push_bind(key.model.clone())
                    .push_bind(key.experiment_id.clone())
                    .push_bind(key.variant_id.clone())
                    .push_bind(record);
            },
        );
        insert.push(
            " ON CONFLICT (evaluation_id, minute_us, group_key) DO UPDATE SET record = excluded.record",
        );
        insert.build().execute(&mut **tx).await.map_err(db_error)?;
    }
    Ok(())
}
