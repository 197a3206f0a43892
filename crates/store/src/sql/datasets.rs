//! [`DatasetStore`] on SQLite and PostgreSQL (one source, compiled for each).

use std::time::Duration;

use async_trait::async_trait;
use llmops_evaluator::datasets::{Dataset, DatasetStore, Sample, StoredSample};
use llmops_evaluator::StoreError;
use sqlx::{QueryBuilder, Row};

use super::cluster::{micros, record_change};
use super::{Connection, Db, Store, FOR_UPDATE, NOW_US};
use crate::codec::{parse, record_of, to_micros};
use crate::error::db_error;

/// Rows per multi-row statement (4 parameters each).
const ROWS_PER_STATEMENT: usize = 2000;

/// Inserts `samples` as added in `version`.
async fn insert_samples(
    tx: &mut Connection,
    dataset_id: &str,
    version: i64,
    samples: &[Sample],
) -> Result<(), StoreError> {
    for chunk in samples.chunks(ROWS_PER_STATEMENT) {
        let records = chunk
            .iter()
            .map(|sample| Ok((sample, record_of("sample", sample)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut insert = QueryBuilder::<Db>::new(
            "INSERT INTO dataset_samples (dataset_id, sample_id, added_version, record) ",
        );
        insert.push_values(&records, |mut row, (sample, record)| {
            row.push_bind(dataset_id)
                .push_bind(&sample.id)
                .push_bind(version)
                .push_bind(record);
        });
        insert.build().execute(&mut *tx).await.map_err(db_error)?;
    }
    Ok(())
}

/// Stores the dataset's definition; the dataset must exist.
async fn store_definition(tx: &mut Connection, dataset: &Dataset) -> Result<(), StoreError> {
    let updated = sqlx::query("UPDATE datasets SET record = $2 WHERE id = $1")
        .bind(&dataset.id)
        .bind(record_of("dataset", dataset)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::NotFound(format!(
            "dataset {} does not exist",
            dataset.id
        )));
    }
    record_change(tx, DATASET, &dataset.id).await
}

/// Locks the dataset's row until the transaction ends and returns its stored version:
/// every change of a dataset's samples goes through this lock, so they are serialised.
async fn lock_dataset(tx: &mut Connection, dataset_id: &str) -> Result<u64, StoreError> {
    let record: Option<String> = sqlx::query_scalar(&format!(
        "SELECT record FROM datasets WHERE id = $1{FOR_UPDATE}"
    ))
    .bind(dataset_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let record = record
        .ok_or_else(|| StoreError::NotFound(format!("dataset {dataset_id} does not exist")))?;
    Ok(parse::<Dataset>("dataset", &record)?.version)
}

/// Refuses while an import other than `own`'s holds the dataset (`Conflict`). A
/// reservation that lapsed is dropped with the samples it staged past `version`.
async fn clear_imports(
    tx: &mut Connection,
    dataset_id: &str,
    version: u64,
    own: Option<&str>,
) -> Result<(), StoreError> {
    let reservation: Option<(String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT holder, expires_at_us, {NOW_US} FROM dataset_imports WHERE dataset_id = $1"
    ))
    .bind(dataset_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let Some((holder, expires_at_us, now_us)) = reservation else {
        return Ok(());
    };
    if own == Some(holder.as_str()) {
        return Ok(());
    }
    if expires_at_us >= now_us {
        return Err(StoreError::Conflict(format!(
            "an import into dataset {dataset_id:?} is in progress on another replica; retry when it has finished"
        )));
    }
    discard_staged(tx, dataset_id, version).await?;
    sqlx::query("DELETE FROM dataset_imports WHERE dataset_id = $1")
        .bind(dataset_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Deletes the samples staged past `version` (an import's batches).
async fn discard_staged(
    tx: &mut Connection,
    dataset_id: &str,
    version: u64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM dataset_samples WHERE dataset_id = $1 AND added_version > $2")
        .bind(dataset_id)
        .bind(version as i64)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// `Conflict` unless the stored dataset is at `expected`.
fn check_version(dataset_id: &str, stored: u64, expected: u64) -> Result<(), StoreError> {
    if stored == expected {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "dataset {dataset_id:?} changed meanwhile (now at version {stored}); read it again and retry"
    )))
}

/// Appends ` AND sample_id IN (...)` with `ids` bound: the shared tail of the queries
/// that look samples or results up by id.
pub(super) fn push_sample_ids<'a>(query: &mut QueryBuilder<'a, Db>, ids: &'a [String]) {
    query.push(" AND sample_id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    query.push(")");
}

/// The change-log entity of a dataset (see `sql/cluster.rs`).
const DATASET: &str = "dataset";

#[async_trait]
impl DatasetStore for Store {
    async fn insert_dataset(&self, dataset: &Dataset) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO datasets (id, name, record, created_at_us) VALUES ($1, $2, $3, $4)",
        )
        .bind(&dataset.id)
        .bind(&dataset.name)
        .bind(record_of("dataset", dataset)?)
        .bind(to_micros(dataset.created_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        record_change(&mut tx, DATASET, &dataset.id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_dataset(&self, id: &str) -> Result<Option<Dataset>, StoreError> {
        let row = sqlx::query("SELECT record FROM datasets WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(|row| parse("dataset", row.get(0))).transpose()
    }

    async fn load_datasets(&self) -> Result<Vec<Dataset>, StoreError> {
        let rows = sqlx::query("SELECT record FROM datasets ORDER BY created_at_us, id")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| parse("dataset", row.get(0)))
            .collect()
    }

    async fn delete_dataset(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        match lock_dataset(&mut tx, id).await {
            Ok(version) => clear_imports(&mut tx, id, version, None).await?,
            Err(StoreError::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
        let deleted = sqlx::query("DELETE FROM datasets WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected() == 1 {
            record_change(&mut tx, DATASET, id).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn current_samples(
        &self,
        dataset_id: &str,
        ids: &[String],
    ) -> Result<Vec<Sample>, StoreError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut query =
                QueryBuilder::<Db>::new("SELECT record FROM dataset_samples WHERE dataset_id = ");
            query.push_bind(dataset_id);
            query.push(" AND removed_version IS NULL");
            push_sample_ids(&mut query, chunk);
            for row in query
                .build()
                .fetch_all(&self.reader)
                .await
                .map_err(db_error)?
            {
                found.push(parse("sample", row.get(0))?);
            }
        }
        Ok(found)
    }

    async fn change_samples(
        &self,
        dataset: &Dataset,
        added: &[Sample],
        deleted: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let stored = lock_dataset(&mut tx, &dataset.id).await?;
        check_version(&dataset.id, stored, dataset.version.saturating_sub(1))?;
        clear_imports(&mut tx, &dataset.id, stored, None).await?;
        let version = dataset.version as i64;
        for chunk in deleted.chunks(ROWS_PER_STATEMENT) {
            retire(&mut tx, &dataset.id, version, chunk).await?;
        }
        insert_samples(&mut tx, &dataset.id, version, added).await?;
        store_definition(&mut tx, dataset).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn stage_samples(
        &self,
        dataset_id: &str,
        version: u64,
        samples: &[Sample],
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        insert_samples(&mut tx, dataset_id, version as i64, samples).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn discard_samples_after(
        &self,
        dataset_id: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dataset_samples WHERE dataset_id = $1 AND added_version > $2")
            .bind(dataset_id)
            .bind(version as i64)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn update_dataset(&self, dataset: &Dataset) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        store_definition(&mut tx, dataset).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn begin_import(
        &self,
        dataset_id: &str,
        base_version: u64,
        holder: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let stored = lock_dataset(&mut tx, dataset_id).await?;
        check_version(dataset_id, stored, base_version)?;
        clear_imports(&mut tx, dataset_id, stored, None).await?;
        sqlx::query(&format!(
            "INSERT INTO dataset_imports (dataset_id, holder, base_version, expires_at_us)
             VALUES ($1, $2, $3, {NOW_US} + $4)"
        ))
        .bind(dataset_id)
        .bind(holder)
        .bind(base_version as i64)
        .bind(micros(lease))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn renew_import(
        &self,
        dataset_id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(&format!(
            "UPDATE dataset_imports SET expires_at_us = {NOW_US} + $3
             WHERE dataset_id = $1 AND holder = $2"
        ))
        .bind(dataset_id)
        .bind(holder)
        .bind(micros(lease))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn commit_import(&self, dataset: &Dataset, holder: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let stored = lock_dataset(&mut tx, &dataset.id).await?;
        // Still this import's reservation, even if it lapsed: nobody took the dataset.
        let freed =
            sqlx::query("DELETE FROM dataset_imports WHERE dataset_id = $1 AND holder = $2")
                .bind(&dataset.id)
                .bind(holder)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        if freed.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "the import lost its reservation of dataset {:?} (its process stopped renewing it and another change took the dataset); import again",
                dataset.id
            )));
        }
        check_version(&dataset.id, stored, dataset.version.saturating_sub(1))?;
        store_definition(&mut tx, dataset).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn abandon_import(
        &self,
        dataset_id: &str,
        base_version: u64,
        holder: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let freed =
            sqlx::query("DELETE FROM dataset_imports WHERE dataset_id = $1 AND holder = $2")
                .bind(dataset_id)
                .bind(holder)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        if freed.rows_affected() == 1 {
            discard_staged(&mut tx, dataset_id, base_version).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn discard_abandoned_import(
        &self,
        dataset_id: &str,
        alone: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let stored = lock_dataset(&mut tx, dataset_id).await?;
        if alone {
            sqlx::query("DELETE FROM dataset_imports WHERE dataset_id = $1")
                .bind(dataset_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        match clear_imports(&mut tx, dataset_id, stored, None).await {
            // Samples staged past the version without a live reservation: an import
            // that died (or one from before reservations existed).
            Ok(()) => discard_staged(&mut tx, dataset_id, stored).await?,
            Err(StoreError::Conflict(_)) => {}
            Err(other) => return Err(other),
        }
        tx.commit().await.map_err(db_error)
    }

    async fn samples_at(
        &self,
        dataset_id: &str,
        version: u64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, record FROM dataset_samples
             WHERE dataset_id = $1 AND added_version <= $2 AND (removed_version IS NULL OR removed_version > $2)
               AND position > $3
             ORDER BY position LIMIT $4",
        )
        .bind(dataset_id)
        .bind(version as i64)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(StoredSample {
                    position: row.get(0),
                    sample: parse("sample", row.get(1))?,
                })
            })
            .collect()
    }

    async fn samples_by_id_at(
        &self,
        dataset_id: &str,
        version: u64,
        ids: &[String],
    ) -> Result<Vec<StoredSample>, StoreError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Db>::new(
                "SELECT position, record FROM dataset_samples WHERE dataset_id = ",
            );
            query.push_bind(dataset_id);
            query.push(" AND added_version <= ");
            query.push_bind(version as i64);
            query.push(" AND (removed_version IS NULL OR removed_version > ");
            query.push_bind(version as i64);
            query.push(")");
            push_sample_ids(&mut query, chunk);
            for row in query
                .build()
                .fetch_all(&self.reader)
                .await
                .map_err(db_error)?
            {
                found.push(StoredSample {
                    position: row.get(0),
                    sample: parse("sample", row.get(1))?,
                });
            }
        }
        Ok(found)
    }
}

/// Marks the current samples with these ids as removed as of `version`.
async fn retire(
    conn: &mut Connection,
    dataset_id: &str,
    version: i64,
    ids: &[String],
) -> Result<(), StoreError> {
    let mut update = QueryBuilder::<Db>::new("UPDATE dataset_samples SET removed_version = ");
    update.push_bind(version);
    update.push(" WHERE dataset_id = ");
    update.push_bind(dataset_id);
    update.push(" AND removed_version IS NULL");
    push_sample_ids(&mut update, ids);
    update.build().execute(conn).await.map_err(db_error)?;
    Ok(())
}
