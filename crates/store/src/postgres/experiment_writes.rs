//! The experiments' group commit on PostgreSQL: one transaction per batch; which rows
//! were new is what `ON CONFLICT DO NOTHING ... RETURNING` inserted, which stays true
//! with any number of concurrent writers in any number of processes.

use std::collections::HashSet;

use llmops_experiments::{Committed, Exposure, MetricRecord, StoreError};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::experiments::{insert_exposures, insert_records, EXPERIMENT_WRITES};
use super::{sequencer, PostgresStore};
use crate::error::db_error;

/// Rows per multi-row INSERT (7 parameters each, well under PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 1000;

/// Stores a batch of exposures and records whole; reports which were new.
///
/// Other processes share the database, so the batch checks, under a share lock held to
/// commit, that no experiment it writes to has ended: one completed or cancelled by
/// another process meanwhile makes the whole batch write nothing and name it (the
/// writer then commits the rest without it). The service checks the rest of what a
/// write needs (a running experiment) before queueing it. The batch takes the next sequence of the
/// experiment-writes stream, stored on every row, so other processes read it back in
/// commit order.
pub(super) async fn commit_writes(
    store: &PostgresStore,
    exposures: &[Exposure],
    records: &[MetricRecord],
) -> Result<Committed, StoreError> {
    let mut tx = store.writer.begin().await.map_err(db_error)?;
    let mut involved: Vec<&str> = exposures
        .iter()
        .map(|e| e.experiment_id.as_str())
        .chain(records.iter().map(|r| r.experiment_id.as_str()))
        .collect();
    involved.sort_unstable();
    involved.dedup();
    let mut check = QueryBuilder::<Postgres>::new(
        "SELECT id FROM experiments WHERE status IN ('completed', 'cancelled') AND id IN (",
    );
    let mut ids = check.separated(", ");
    for id in &involved {
        ids.push_bind(*id);
    }
    check.push(") ORDER BY id FOR SHARE");
    let closed: Vec<String> = check
        .build()
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    if !closed.is_empty() {
        return Ok(Committed {
            closed,
            ..Committed::default()
        });
    }
    let batch = sequencer::next_sequence(&mut tx, EXPERIMENT_WRITES)
        .await
        .map_err(db_error)?;
    let mut committed = Committed {
        sequence: batch as u64,
        closed: Vec::new(),
        exposures: Vec::with_capacity(exposures.len()),
        records: Vec::with_capacity(records.len()),
    };
    for chunk in exposures.chunks(ROWS_PER_STATEMENT) {
        let mut insert = insert_exposures(chunk, batch);
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
        let mut insert = insert_records(chunk, batch);
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
