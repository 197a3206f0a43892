//! [`DatasetStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use llmops_evaluator::datasets::{Dataset, DatasetStore, Sample, StoredSample};
use llmops_evaluator::StoreError;
use sqlx::{QueryBuilder, Row};

use super::cluster::record_change;
use super::{Connection, Db, Store};
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
