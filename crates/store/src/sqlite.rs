//! The embedded SQLite store: one database file under the data directory, in WAL mode.
//!
//! All writes go through one dedicated writer connection (SQLite admits one writer at a
//! time anyway; queuing in the pool beats retrying on SQLITE_BUSY). Reads use a separate
//! pool, which WAL lets run beside the writer.

// The portable queries (see the crate's doc), compiled against SQLite's types.
#[path = "sql/alerts.rs"]
mod alerts;
#[path = "sql/audit.rs"]
mod audit;
#[path = "sql/cluster.rs"]
mod cluster;
#[path = "sql/copy.rs"]
mod copy;
#[path = "sql/datasets.rs"]
mod datasets;
mod experiment_writes;
#[path = "sql/experiments.rs"]
mod experiments;
#[path = "sql/gates.rs"]
mod gates;
#[path = "sql/generations.rs"]
mod generations;
#[path = "sql/keys.rs"]
mod keys;
#[path = "sql/online.rs"]
mod online;
#[path = "sql/prompts.rs"]
mod prompts;
#[path = "sql/runs.rs"]
mod runs;
#[path = "sql/schedules.rs"]
mod schedules;
#[path = "sql/sequencer.rs"]
mod sequencer;
#[path = "sql/usage.rs"]
mod usage;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::StoreOpenError;

/// The file the database lives in, inside the data directory.
pub(crate) const DATABASE_FILE: &str = "llmops.db";

/// How hard a commit works to survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit is on disk before it is acknowledged.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process, but a power loss may lose
    /// the last commits.
    Normal,
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!(
                "{other:?} is not a durability; use \"full\" or \"normal\""
            )),
        }
    }
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database under `data_dir` and migrates it.
    pub async fn open(data_dir: &Path, durability: Durability) -> Result<Self, StoreOpenError> {
        Self::open_file(&data_dir.join(DATABASE_FILE), durability).await
    }

    /// Opens (creating if needed, with its directory) the database in `path` and
    /// migrates it.
    pub async fn open_file(path: &Path, durability: Durability) -> Result<Self, StoreOpenError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreOpenError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let synchronous = match durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(StoreOpenError::Connect)?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreOpenError::Connect)?;
        Ok(Self { writer, reader })
    }

    /// Every (table, column) of llmops's schema, for checking the copy's table list.
    #[cfg(test)]
    pub(crate) async fn schema_columns(&self) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p
             WHERE m.type = 'table' AND m.name <> '_sqlx_migrations' AND m.name NOT LIKE 'sqlite!_%' ESCAPE '!'",
        )
        .fetch_all(&self.reader)
        .await
        .expect("the schema is readable")
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(drop)
    }

    /// Waits for queries in flight, then closes every connection.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// What a read that a decision rests on appends: nothing, the one writer connection
/// already serialises every transaction.
const FOR_SHARE: &str = "";

/// Row locks do not exist on SQLite: its one writer connection serialises writes.
const FOR_UPDATE: &str = "";

/// Claims need no row locks on SQLite: its one writer connection serialises them.
const SKIP_LOCKED: &str = "";

/// The larger of two values (SQLite's two-argument `MAX` is the same function).
const GREATEST: &str = "MAX";

/// The database clock now, in microseconds since the Unix epoch (leases and heartbeats).
const NOW_US: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

/// Takes a stream's next sequence (see `sql/sequencer.rs`). One process owns a SQLite
/// database, so nobody else needs to hear of the append.
const NEXT_SEQUENCE: &str =
    "UPDATE event_sequences SET value = value + 1 WHERE stream = $1 RETURNING value";

/// The driver the shared queries are compiled for.
type Db = sqlx::Sqlite;
type Connection = sqlx::SqliteConnection;
type Store = SqliteStore;

/// Finishes a copy into this database: nothing to do, an `INTEGER PRIMARY KEY`
/// continues after the largest key by itself.
async fn after_copy(_tx: &mut sqlx::Transaction<'static, Db>) -> Result<(), sqlx::Error> {
    Ok(())
}

/// Begins a read transaction that sees one snapshot throughout: SQLite's WAL gives every
/// transaction one from its first read.
async fn begin_snapshot(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Db>, sqlx::Error> {
    pool.begin().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PRAGMA synchronous` of every connection a pool can hand out (all held at once,
    /// so each is a different connection).
    async fn synchronous_of_every_connection(pool: &SqlitePool, size: u32) -> Vec<i64> {
        let mut held = Vec::new();
        for _ in 0..size {
            held.push(pool.acquire().await.unwrap());
        }
        let mut settings = Vec::new();
        for connection in &mut held {
            let (setting,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            settings.push(setting);
        }
        settings
    }

    /// A commit is durable only if the connection that makes it syncs; SQLite's
    /// default in WAL mode would not, and a crash test cannot tell (the page cache
    /// survives a SIGKILL). 2 is FULL, 1 is NORMAL.
    #[tokio::test]
    async fn every_connection_has_the_configured_synchronous_setting() {
        for (durability, expected) in [(Durability::Full, 2), (Durability::Normal, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path(), durability).await.unwrap();
            let writer = synchronous_of_every_connection(&store.writer, 1).await;
            let reader = synchronous_of_every_connection(&store.reader, 4).await;
            assert_eq!(writer, vec![expected], "{durability:?} writer");
            assert_eq!(reader, vec![expected; 4], "{durability:?} readers");
            store.close().await;
        }
    }
}
