//! The experiments' group commit on SQLite: one writer connection, so which keys are new
//! can be asked before inserting.

use std::collections::HashSet;

use llmops_experiments::{Committed, Exposure, MetricRecord, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::experiments::{insert_exposures, insert_records};
use super::SqliteStore;
use crate::error::db_error;

/// Rows per multi-row INSERT (7 parameters each, well under SQLite's 32,766).
const ROWS_PER_STATEMENT: usize = 1000;

/// Stores a batch of exposures and records whole; reports which were new.
pub(super) async fn commit_writes(
    store: &SqliteStore,
    exposures: &[Exposure],
    records: &[MetricRecord],
) -> Result<Committed, StoreError> {
    // A single statement commits by itself, saving the BEGIN and COMMIT round trips
    // to SQLite's worker thread (a third of a small group commit's time); several
    // statements share one transaction, so a batch is stored whole or not at all.
    let mut conn = store.writer.acquire().await.map_err(db_error)?;
    let statements =
        exposures.len().div_ceil(ROWS_PER_STATEMENT) + records.len().div_ceil(ROWS_PER_STATEMENT);
    let explicit = statements > 1;
    if explicit {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    let mut result = insert_writes(&mut conn, exposures, records).await;
    if explicit {
        if result.is_ok() {
            if let Err(err) = sqlx::query("COMMIT").execute(&mut *conn).await {
                result = Err(db_error(err));
            }
        }
        // After any failure the transaction must not outlive this batch: a writer
        // connection left inside it would make later batches part of it. If even
        // the rollback fails, the connection is closed instead of reused.
        if result.is_err() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
            conn.close_on_drop();
        }
    }
    result
}

/// Inserts exposures, then records, in multi-row statements; returns which were new.
///
/// Which rows are repeats is asked first with one SELECT of the keys already stored
/// (usually none, so it returns nothing), then the rows are inserted with
/// `ON CONFLICT DO NOTHING`. Asking for the inserted rows back with `RETURNING` instead
/// costs a hand-off from SQLite's worker thread per row, which measured slower. The
/// writer connection is the only writer, so nothing changes between the two statements.
async fn insert_writes(
    conn: &mut PoolConnection<Sqlite>,
    exposures: &[Exposure],
    records: &[MetricRecord],
) -> Result<Committed, StoreError> {
    // One process owns a SQLite database: nothing follows its batches (sequence 0), and
    // the service's own status check under its write gate is the whole story.
    let mut committed = Committed {
        exposures: Vec::with_capacity(exposures.len()),
        records: Vec::with_capacity(records.len()),
        ..Committed::default()
    };
    for chunk in exposures.chunks(ROWS_PER_STATEMENT) {
        let keys: Vec<(&str, &str)> = chunk
            .iter()
            .map(|e| (e.experiment_id.as_str(), e.user_id.as_str()))
            .collect();
        let stored = stored_keys(conn, "experiment_exposures", "user_id", &keys).await?;
        committed.exposures.extend(new_rows(&keys, &stored));
        let mut insert = insert_exposures(chunk, 0);
        insert.push(" ON CONFLICT DO NOTHING");
        insert
            .build()
            .execute(&mut **conn)
            .await
            .map_err(db_error)?;
    }
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        // Only records with an id can repeat.
        let keys: Vec<(&str, &str)> = chunk
            .iter()
            .filter(|r| !r.record_id.is_empty())
            .map(|r| (r.experiment_id.as_str(), r.record_id.as_str()))
            .collect();
        let stored = if keys.is_empty() {
            HashSet::new()
        } else {
            stored_keys(conn, "experiment_metric_records", "record_id", &keys).await?
        };
        let mut keyed = new_rows(&keys, &stored).into_iter();
        committed.records.extend(
            chunk
                .iter()
                .map(|record| record.record_id.is_empty() || keyed.next().unwrap_or(false)),
        );
        let mut insert = insert_records(chunk, 0);
        insert.push(" ON CONFLICT DO NOTHING");
        insert
            .build()
            .execute(&mut **conn)
            .await
            .map_err(db_error)?;
    }
    Ok(committed)
}

/// The (experiment id, `column`) pairs of `keys` already in `table`.
async fn stored_keys(
    conn: &mut PoolConnection<Sqlite>,
    table: &str,
    column: &str,
    keys: &[(&str, &str)],
) -> Result<HashSet<(String, String)>, StoreError> {
    // A join with the VALUES list lets SQLite search the (experiment_id, key) index for
    // each key; a row-value `IN (VALUES ...)` made it scan the whole table.
    let mut query =
        QueryBuilder::<Sqlite>::new(format!("SELECT t.experiment_id, t.{column} FROM (VALUES "));
    let mut values = query.separated(", ");
    for (experiment, key) in keys {
        values.push("(");
        values.push_bind_unseparated(*experiment);
        values.push_unseparated(", ");
        values.push_bind_unseparated(*key);
        values.push_unseparated(")");
    }
    query.push(format!(
        ") AS k JOIN {table} AS t ON t.experiment_id = k.column1 AND t.{column} = k.column2"
    ));
    let rows = query
        .build()
        .fetch_all(&mut **conn)
        .await
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Whether each key is new: not stored, and the first of its kind in the chunk.
fn new_rows(keys: &[(&str, &str)], stored: &HashSet<(String, String)>) -> Vec<bool> {
    let mut seen = HashSet::new();
    keys.iter()
        .map(|&(experiment, key)| {
            let owned = (experiment.to_owned(), key.to_owned());
            !stored.contains(&owned) && seen.insert(owned)
        })
        .collect()
}
