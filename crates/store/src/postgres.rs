//! The PostgreSQL store: a pool of connections to a database any number of llmops
//! processes can share.
//!
//! The queries are the SQLite store's (see `crate::sql`), compiled against PostgreSQL's
//! types; what holds across processes is in the schema and the transactions (unique
//! keys, the single active pointer, row-locked event sequences), never in this process.

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

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::StoreOpenError;

/// How long a call waits for a free connection before it is answered UNAVAILABLE.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Both fields are the same pool; the shared queries name the role of a query.
    writer: PgPool,
    reader: PgPool,
}

impl PostgresStore {
    /// Connects to `url` with at most `max_connections` connections, and migrates the
    /// database (under an advisory lock, so processes starting together migrate once).
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreOpenError> {
        let mut options = PgConnectOptions::from_str(url).map_err(StoreOpenError::Connect)?;
        // Named in pg_stat_activity, unless the URL names it (e.g. per replica).
        if options.get_application_name().is_none() {
            options = options.application_name("llmops");
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(StoreOpenError::Connect)?;
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        // During a rolling upgrade a replica of the previous version may start after a
        // newer one migrated: the newer migrations only add, so it runs on them.
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
        })
    }

    /// Waits for queries in flight, then closes every connection.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    /// Every (table, column) of llmops's schema, for checking the copy's table list.
    #[cfg(test)]
    pub(crate) async fn schema_columns(&self) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
        )
        .fetch_all(&self.reader)
        .await
        .expect("the schema is readable")
    }

    /// Listens for announcements of appends to the event streams (see [`FEED_CHANNEL`]).
    pub async fn listen_for_appends(&self) -> Result<AppendListener, sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.reader).await?;
        listener.listen(FEED_CHANNEL).await?;
        Ok(AppendListener { listener })
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(drop)
    }
}

/// Announcements of appends to the event streams, by any process sharing the database.
pub struct AppendListener {
    listener: sqlx::postgres::PgListener,
}

impl std::fmt::Debug for AppendListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendListener").finish_non_exhaustive()
    }
}

impl AppendListener {
    /// The stream named by the next announcement, or `None` when the connection was lost
    /// and is being made again: announcements made meanwhile are lost, so the caller
    /// should read every stream.
    pub async fn next(&mut self) -> Result<Option<String>, llmops_core::StoreError> {
        // A driver error may name the server; it is logged under a correlation id, as
        // every store error is, and only the id travels on.
        Ok(self
            .listener
            .try_recv()
            .await
            .map_err(crate::error::db_error)?
            .map(|notification| notification.payload().to_owned()))
    }
}

/// What a read that a decision rests on appends: a share lock on the rows read, held to
/// commit, so a concurrent change of them waits (or was committed before the read).
const FOR_SHARE: &str = " FOR SHARE";

/// What a read appends when the transaction will change the rows read: an exclusive
/// row lock held to commit, so a concurrent writer of them waits.
const FOR_UPDATE: &str = " FOR UPDATE";

/// What a claim's read appends: a row lock that passes over rows another transaction
/// holds, so concurrent claimers each take a different row without waiting.
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

/// The larger of two values (SQLite's two-argument `MAX` is the same function).
const GREATEST: &str = "GREATEST";

/// The database clock now, in microseconds since the Unix epoch (leases and heartbeats).
const NOW_US: &str = "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000 AS BIGINT)";

/// The channel on which an append to an event stream is announced, with the stream's
/// name as the payload. Notifications are delivered at commit, so a listener woken by
/// one reads the event it announces.
pub const FEED_CHANNEL: &str = "llmops_feed";

/// Takes a stream's next sequence (see `sql/sequencer.rs`) and announces the append on
/// [`FEED_CHANNEL`], in one round trip.
const NEXT_SEQUENCE: &str = "WITH next AS (
         UPDATE event_sequences SET value = value + 1 WHERE stream = $1 RETURNING value
     )
     SELECT next.value FROM next, pg_notify('llmops_feed', $1)";

/// The driver the shared queries are compiled for.
type Db = sqlx::Postgres;
type Connection = sqlx::PgConnection;
type Store = PostgresStore;

/// Finishes a copy into this database: identity columns continue after the largest
/// key copied in (rows were inserted with their own keys).
async fn after_copy(tx: &mut sqlx::Transaction<'static, Db>) -> Result<(), sqlx::Error> {
    for (table, column) in crate::copy::tables::GENERATED_KEYS {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE(MAX({column}), 0) + 1, false) FROM {table}"
        ))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Begins a read transaction that sees one snapshot throughout (PostgreSQL's default,
/// READ COMMITTED, takes a new one per statement).
async fn begin_snapshot(pool: &PgPool) -> Result<sqlx::Transaction<'static, Db>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchSchema;

    /// An acknowledged write is committed as durably as the server is configured to
    /// commit: every pooled connection has the server's own `synchronous_commit` (what
    /// a plain connection gets), which llmops never lowers; and the pool is as large as
    /// configured.
    #[tokio::test]
    async fn commits_wait_for_the_wal_and_the_pool_has_the_configured_size() {
        let schema = ScratchSchema::create().await;
        let server_url = std::env::var(crate::scratch::TEST_DATABASE_URL_VAR)
            .unwrap_or_else(|_| crate::scratch::DEFAULT_TEST_DATABASE_URL.to_owned());
        let plain = PgPool::connect(&server_url).await.unwrap();
        let configured: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&plain)
            .await
            .unwrap();
        plain.close().await;
        assert_ne!(configured, "off", "the test server must commit durably");
        let store = PostgresStore::open(schema.url(), 3).await.unwrap();
        assert_eq!(store.writer.options().get_max_connections(), 3);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(store.writer.acquire().await.unwrap());
        }
        for connection in &mut held {
            let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            assert_eq!(setting, configured);
        }
        drop(held);
        store.close().await;
    }

    /// In a rolling upgrade, a replica of the previous version (re)starts after a newer
    /// one added a migration: it starts on the newer schema instead of refusing it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_previous_version_starts_on_a_schema_a_newer_one_migrated() {
        let schema = ScratchSchema::create().await;
        let store = PostgresStore::open(schema.url(), 2).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (99991231000001, 'from a newer llmops', TRUE, '\\x00'::bytea, 0)",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        store.close().await;
        let reopened = PostgresStore::open(schema.url(), 2).await;
        assert!(reopened.is_ok(), "{:?}", reopened.err());
        reopened.unwrap().close().await;
    }

    /// Replicas of a deployment start in any order, often together: all of them must
    /// come up, and the schema must be migrated once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_starting_together_migrate_once() {
        let schema = ScratchSchema::create().await;
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = schema.url().to_owned();
                tokio::spawn(async move { PostgresStore::open(&url, 2).await })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every process starts"));
        }
        let migrations = sqlx::migrate!("./migrations/postgres").iter().count() as i64;
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&stores[0].reader)
            .await
            .unwrap();
        assert_eq!(applied, migrations);
        let sequences: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_sequences")
            .fetch_one(&stores[0].reader)
            .await
            .unwrap();
        // prompts, alerts, alerts_floor, changes, experiment_writes, generations: each
        // seeded once.
        assert_eq!(sequences, 6, "the seed rows were inserted once");
        for store in stores {
            store.close().await;
        }
    }
}
