//! `llmops migrate`: copies a whole deployment from one database to another (SQLite to
//! PostgreSQL to move onto a server, PostgreSQL to SQLite for a backup), row for row:
//! ids, versions, label history, event feeds with their sequence numbers (a subscriber
//! resumes on the new database where it left the old), the webhook outbox, records,
//! every dataset version. The target must be empty; everything is written in one
//! transaction, so a failed copy leaves it empty; afterwards every table's row count
//! and every dataset's content hash are checked on both sides.

pub(crate) mod tables;

use async_trait::async_trait;
use llmops_evaluator::datasets::{ContentHash, DatasetStore};

use self::tables::{Table, TABLES};
use crate::{DatabaseUrl, Storage, StorageOptions, StoreOpenError};

/// Rows read and written per step.
const PAGE: usize = 5_000;

/// One column's value, nullable, as both backends store it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
    Bool(Option<bool>),
}

/// One end of a copy: the source is read a page at a time; the target is counted (to
/// refuse one that holds data) and written through [`CopyEnd::begin_copy`].
#[async_trait]
pub(crate) trait CopyEnd: Send + Sync {
    /// Up to `limit` rows of `table` with keys after `after`, in key order.
    async fn read_page(
        &self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, sqlx::Error>;
    async fn count(&self, table: &Table) -> Result<i64, sqlx::Error>;
    /// A transaction that receives a copy.
    async fn begin_copy(&self) -> Result<Box<dyn CopyTarget>, sqlx::Error>;
}

/// A copy being written, in one transaction.
#[async_trait]
pub(crate) trait CopyTarget: Send {
    async fn clear(&mut self, table: &Table) -> Result<(), sqlx::Error>;
    async fn write(&mut self, table: &Table, rows: &[Vec<Value>]) -> Result<(), sqlx::Error>;
    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error>;
}

/// Why a copy stopped. Nothing was written to the target in any case.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A database could not be opened.
    #[error("{which}: {source}")]
    Open {
        /// `--from` or `--to`.
        which: &'static str,
        /// Why it could not be opened.
        source: StoreOpenError,
    },
    /// The source is a SQLite file that does not exist: nothing is created or copied.
    #[error("the source {0} does not exist; check --from")]
    SourceMissing(String),
    /// The source holds nothing to copy (a mistyped URL, most likely): nothing is
    /// created or copied.
    #[error("the source {0} holds no llmops data; check --from")]
    SourceEmpty(String),
    /// The target already holds a deployment.
    #[error("the target already holds data ({rows} rows in {table}); copy into an empty database")]
    TargetNotEmpty {
        /// The first table found with rows.
        table: &'static str,
        /// Its rows.
        rows: i64,
    },
    /// Reading or writing failed.
    #[error("copying {table}: {message}")]
    Database {
        /// The table being copied.
        table: &'static str,
        /// What the database said, without credentials.
        message: String,
    },
    /// The copy does not match its source.
    #[error("verification failed: {0}")]
    Verify(String),
}

/// What a copy did, table by table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows copied per table, in copy order.
    pub tables: Vec<(&'static str, u64)>,
    /// Datasets whose content hash was checked on both sides.
    pub datasets_verified: usize,
}

/// A step of a copy, for progress output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyProgress {
    /// `rows` of `table`'s `total` are copied.
    Rows {
        /// The table.
        table: &'static str,
        /// Rows copied so far.
        rows: u64,
        /// Rows the source holds.
        total: u64,
    },
    /// Copied and committed; now checking both sides.
    Verifying,
}

/// Copies everything from `from` into the empty database `to` (both migrated first),
/// then verifies the copy. The source should not be written meanwhile (stop its server).
pub async fn copy_database(
    from: &DatabaseUrl,
    to: &DatabaseUrl,
    options: StorageOptions,
    mut progress: impl FnMut(CopyProgress),
) -> Result<CopyReport, CopyError> {
    // Opening a SQLite URL creates the file: a mistyped path must not become an empty
    // source that "copies" nothing.
    if let DatabaseUrl::Sqlite(path) = from {
        if !path.is_file() {
            return Err(CopyError::SourceMissing(from.to_string()));
        }
    }
    let source = Storage::open(from, options)
        .await
        .map_err(|source| CopyError::Open {
            which: "--from",
            source,
        })?;
    let target = Storage::open(to, options)
        .await
        .map_err(|source| CopyError::Open {
            which: "--to",
            source,
        })?;
    let result = copy_between(&source, &target, from, &mut progress).await;
    source.close().await;
    target.close().await;
    result
}

async fn copy_between(
    source: &Storage,
    target: &Storage,
    from: &DatabaseUrl,
    progress: &mut impl FnMut(CopyProgress),
) -> Result<CopyReport, CopyError> {
    let (reader, writer) = (source.copy_end(), target.copy_end());
    if holds_data(reader).await?.is_none() {
        return Err(CopyError::SourceEmpty(from.to_string()));
    }
    if let Some((table, rows)) = holds_data(writer).await? {
        return Err(CopyError::TargetNotEmpty { table, rows });
    }
    let mut copy = writer
        .begin_copy()
        .await
        .map_err(|err| database_error("the target", err))?;
    let mut report = CopyReport::default();
    for table in TABLES {
        let failed = |err| database_error(table.name, err);
        let total = reader.count(table).await.map_err(failed)? as u64;
        // The target's migrations seeded the event sequences; the source's replace them.
        copy.clear(table).await.map_err(failed)?;
        let mut copied = 0_u64;
        let mut after: Option<Vec<Value>> = None;
        loop {
            let rows = reader
                .read_page(table, after.as_deref(), PAGE)
                .await
                .map_err(failed)?;
            let Some(last) = rows.last() else { break };
            after = Some(key_of(table, last));
            copy.write(table, &rows).await.map_err(failed)?;
            copied += rows.len() as u64;
            progress(CopyProgress::Rows {
                table: table.name,
                rows: copied,
                total,
            });
        }
        if copied == 0 {
            progress(CopyProgress::Rows {
                table: table.name,
                rows: 0,
                total,
            });
        }
        report.tables.push((table.name, copied));
    }
    copy.commit()
        .await
        .map_err(|err| database_error("the commit", err))?;
    progress(CopyProgress::Verifying);
    verify_counts(reader, writer, &report).await?;
    report.datasets_verified = verify_datasets(source, target).await?;
    Ok(report)
}

/// The key columns' values of `row`.
fn key_of(table: &Table, row: &[Value]) -> Vec<Value> {
    table
        .key
        .iter()
        .map(|key| {
            let index = table
                .columns
                .iter()
                .position(|(name, _)| name == key)
                .expect("a table's key is among its columns");
            row[index].clone()
        })
        .collect()
}

/// Tables whose rows the migrations seed, each a (name, counter) pair that is 0 until
/// used: the stream sequences and the online queue's depth.
const SEEDED_COUNTERS: &[&str] = &["event_sequences", "online_queue_depth"];

/// The first table of `database` that holds data, with its rows; `None` if it is empty.
async fn holds_data(database: &dyn CopyEnd) -> Result<Option<(&'static str, i64)>, CopyError> {
    for table in TABLES {
        let rows = if SEEDED_COUNTERS.contains(&table.name) {
            // Seeded by the migrations; holding data means a counter has moved.
            let counters = database
                .read_page(table, None, 100)
                .await
                .map_err(|err| database_error(table.name, err))?;
            counters
                .iter()
                .filter(|row| row[1] != Value::Int(Some(0)))
                .count() as i64
        } else {
            database
                .count(table)
                .await
                .map_err(|err| database_error(table.name, err))?
        };
        if rows > 0 {
            return Ok(Some((table.name, rows)));
        }
    }
    Ok(None)
}

async fn verify_counts(
    source: &dyn CopyEnd,
    target: &dyn CopyEnd,
    report: &CopyReport,
) -> Result<(), CopyError> {
    for (table, (name, copied)) in TABLES.iter().zip(&report.tables) {
        let failed = |err| database_error(name, err);
        let (from, to) = (
            source.count(table).await.map_err(failed)?,
            target.count(table).await.map_err(failed)?,
        );
        if from != to || to as u64 != *copied {
            return Err(CopyError::Verify(format!(
                "{name}: {from} rows in the source, {to} in the target, {copied} copied \
                 (was the source written during the copy?)"
            )));
        }
    }
    Ok(())
}

/// Recomputes every dataset's content hash from its current samples on both sides;
/// both must equal the hash the dataset records. Returns how many were checked.
async fn verify_datasets(source: &Storage, target: &Storage) -> Result<usize, CopyError> {
    let store_error = |err: llmops_core::StoreError| CopyError::Verify(err.to_string());
    let datasets = source.datasets.load_datasets().await.map_err(store_error)?;
    for dataset in &datasets {
        for (side, store) in [("source", &source.datasets), ("target", &target.datasets)] {
            let hash = current_hash(&**store, &dataset.id, dataset.version)
                .await
                .map_err(store_error)?;
            if hash != dataset.content_hash {
                return Err(CopyError::Verify(format!(
                    "dataset {:?} (version {}): the {side}'s samples hash to {hash}, the dataset records {}",
                    dataset.name, dataset.version, dataset.content_hash
                )));
            }
        }
    }
    Ok(datasets.len())
}

async fn current_hash(
    store: &dyn DatasetStore,
    dataset_id: &str,
    version: u64,
) -> Result<String, llmops_core::StoreError> {
    let mut hash = ContentHash::empty();
    let mut after = 0_i64;
    loop {
        let page = store.samples_at(dataset_id, version, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for stored in &page {
            hash.add(&stored.sample);
        }
    }
    Ok(hash.to_hex())
}

fn database_error(table: &'static str, err: sqlx::Error) -> CopyError {
    CopyError::Database {
        table,
        message: llmops_redact::redact_url(&err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn listed() -> BTreeSet<(String, String)> {
        TABLES
            .iter()
            .flat_map(|table| {
                table
                    .columns
                    .iter()
                    .map(|(column, _)| (table.name.to_owned(), (*column).to_owned()))
            })
            .collect()
    }

    /// A table or column the migrations add but the copy does not list would be lost
    /// by `llmops migrate` without a word; this fails first, on either backend.
    #[tokio::test]
    async fn every_table_and_column_of_the_schema_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let schema = crate::scratch::ScratchSchema::create().await;
        for url in [
            DatabaseUrl::in_data_dir(dir.path()),
            DatabaseUrl::parse(schema.url()).unwrap(),
        ] {
            let storage = Storage::open(&url, StorageOptions::default())
                .await
                .unwrap();
            let columns: BTreeSet<_> = storage
                .schema_columns()
                .await
                .into_iter()
                .filter(|(table, _)| !tables::NOT_COPIED.contains(&table.as_str()))
                .collect();
            assert_eq!(columns, listed(), "{url}");
            storage.close().await;
        }
    }
}
