//! The experiments' group commit on PostgreSQL: one transaction per batch; which rows
//! were new is what `ON CONFLICT DO NOTHING ... RETURNING` inserted, which stays true
//! with any number of concurrent writers in any number of processes.

use std::collections::HashSet;

use llmops_experiments::{Committed, Exposure, MetricRecord, StoreError};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::experiments::{insert_exposures, insert_records};
use super::PostgresStore;
use crate::error::db_error;

/// Rows per multi-row INSERT (7 parameters each, well under PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 1000;

/// Stores a batch of exposures and records whole; reports which were new.
pub(super) async fn commit_writes(
    store: &PostgresStore,
    exposures: &[Exposure],
    records: &[MetricRecord],
) -> Result<Committed, StoreError> {
    let mut tx = store.writer.begin().await.map_err(db_error)?;
    let mut committed = Committed {
        exposures: Vec::with_capacity(exposures.len()),
        records: Vec::with_capacity(records.len()),
    };
    for chunk in exposures.chunks(ROWS_PER_STATEMENT) {
        let mut insert = insert_exposures(chunk);
        insert.push(" ON CONFLICT DO NOTHING RETURNING experiment_id, user_id");
        let inserted = inserted_keys(&mut tx, insert).await?;
        committed.exposures.extend(first_of_inserted(
            chunk
                .iter()
                .map(|e| Some((e.experiment_id.as_str(), e.user_id.as_str()))),
            &inserted,
        ));
    }
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        let mut insert = insert_records(chunk);
        insert.push(" ON CONFLICT DO NOTHING RETURNING experiment_id, COALESCE(record_id, '')");
        let inserted = inserted_keys(&mut tx, insert).await?;
        // Records without an id never repeat: each is new.
        committed.records.extend(first_of_inserted(
            chunk.iter().map(|r| {
                (!r.record_id.is_empty())
                    .then_some((r.experiment_id.as_str(), r.record_id.as_str()))
            }),
            &inserted,
        ));
    }
    tx.commit().await.map_err(db_error)?;
    Ok(committed)
}

/// Runs `insert` and collects the keys it returned.
async fn inserted_keys(
    conn: &mut PgConnection,
    mut insert: QueryBuilder<'_, Postgres>,
) -> Result<HashSet<(String, String)>, StoreError> {
    let rows = insert
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Whether each row was new: keyless rows always; keyed rows if the insert stored the
/// key and this is its first occurrence in the batch.
fn first_of_inserted<'a>(
    keys: impl Iterator<Item = Option<(&'a str, &'a str)>>,
    inserted: &HashSet<(String, String)>,
) -> Vec<bool> {
    let mut seen = HashSet::new();
    keys.map(|key| match key {
        None => true,
        Some((experiment, key)) => {
            let owned = (experiment.to_owned(), key.to_owned());
            inserted.contains(&owned) && seen.insert(owned)
        }
    })
    .collect()
}
