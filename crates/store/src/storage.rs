//! `Storage`: every store trait behind one value, opened from a database URL, so that the
//! server and the tests never name a backend type.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use llmops_access::{AuditStore, KeyStore};
use llmops_alerts::AlertStore;
use llmops_cluster::ClusterStore;
use llmops_core::StoreError;
use llmops_evaluator::datasets::DatasetStore;
use llmops_evaluator::gates::GateStore;
use llmops_evaluator::online::OnlineStore;
use llmops_evaluator::runs::RunStore;
use llmops_evaluator::schedules::ScheduleStore;
use llmops_experiments::ExperimentStore;
use llmops_generations::GenerationStore;
use llmops_registry::PromptStore;

use crate::error::StoreOpenError;
use crate::postgres::{AppendListener, PostgresStore};
use crate::sqlite::{Durability, SqliteStore, DATABASE_FILE};

/// Where the data lives: a parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:///absolute/path/llmops.db` or `sqlite://relative/path.db`: the embedded
    /// database in one file (created if missing).
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/db?sslmode=...` (or `postgresql://`): a
    /// PostgreSQL database, with any parameter sqlx's driver accepts. Kept whole, since
    /// the driver parses it; [`Display`](std::fmt::Display) redacts the password.
    Postgres(String),
}

impl DatabaseUrl {
    /// The embedded database in `data_dir` (the default deployment).
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::Sqlite(data_dir.join(DATABASE_FILE))
    }

    /// Parses `url`. Errors say what is wrong in words an operator can act on; the URL is
    /// quoted without its credentials.
    pub fn parse(url: &str) -> Result<Self, StoreOpenError> {
        let refuse = |reason: &str| StoreOpenError::Url {
            url: llmops_redact::redact_url(url),
            reason: reason.to_owned(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(refuse("is not a URL; use sqlite:///path/to/llmops.db"));
        };
        match scheme {
            "sqlite" => {
                let path = rest.split(['?', '#']).next().unwrap_or_default();
                if path.is_empty() {
                    return Err(refuse("names no database file"));
                }
                Ok(Self::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => {
                // Parsed here so a bad URL is refused at start, in words, not at the
                // first connection attempt.
                sqlx::postgres::PgConnectOptions::from_str(url).map_err(|err| {
                    refuse(&format!(
                        "is not a PostgreSQL URL the driver accepts: {}",
                        llmops_redact::redact_url(&err.to_string())
                    ))
                })?;
                Ok(Self::Postgres(url.to_owned()))
            }
            _ => Err(refuse(
                "has an unknown scheme; use sqlite:///path/file.db or postgres://user@host/db",
            )),
        }
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact_database_url(url)),
        }
    }
}

/// `url` with its password (in the user information or a `password` parameter)
/// replaced, and everything else as given: what `config show` and logs print.
pub fn redact_database_url(url: &str) -> String {
    // Only PostgreSQL URLs carry credentials worth keeping the user of; anything else is
    // shown as written (re-serialising a file URL would percent-encode its path).
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let parsed = postgres.then(|| url::Url::parse(url).ok()).flatten();
    let Some(mut parsed) = parsed else {
        return llmops_redact::redact_url(url);
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = parsed.set_password(Some(llmops_redact::REDACTED));
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    llmops_redact::REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // The URL encoding of the brackets would obscure what happened.
    parsed
        .to_string()
        .replace("%5BREDACTED%5D", llmops_redact::REDACTED)
}

/// How to open the database, beyond its URL.
#[derive(Debug, Clone, Copy)]
pub struct StorageOptions {
    /// How hard a commit works to survive power loss (SQLite; PostgreSQL commits as
    /// the server's `synchronous_commit` says, which llmops never lowers).
    pub durability: Durability,
    /// The most connections to a PostgreSQL server (SQLite uses its own fixed pools).
    pub max_connections: u32,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            max_connections: 16,
        }
    }
}

/// Every store the domain services need, from one database.
#[derive(Clone)]
pub struct Storage {
    /// Prompt versions, labels and the registry's event feed.
    pub prompts: Arc<dyn PromptStore>,
    /// Alerts, their event log and the webhook outbox.
    pub alerts: Arc<dyn AlertStore>,
    /// Experiments, exposures and metric records.
    pub experiments: Arc<dyn ExperimentStore>,
    /// Datasets and their samples.
    pub datasets: Arc<dyn DatasetStore>,
    /// Evaluation runs and their results.
    pub runs: Arc<dyn RunStore>,
    /// Evaluation schedules.
    pub schedules: Arc<dyn ScheduleStore>,
    /// Release gates.
    pub gates: Arc<dyn GateStore>,
    /// Replicas, leases of background roles, and the change log of cached definitions.
    pub cluster: Arc<dyn ClusterStore>,
    /// API keys.
    pub keys: Arc<dyn KeyStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditStore>,
    /// Generations logged by applications.
    pub generations: Arc<dyn GenerationStore>,
    /// Online evaluations, their queue, scores and aggregates.
    pub online: Arc<dyn OnlineStore>,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Sqlite(store) => f.debug_tuple("Storage").field(store).finish(),
            Backend::Postgres(store) => f.debug_tuple("Storage").field(store).finish(),
        }
    }
}

impl Storage {
    /// Opens (creating and migrating if needed) the database at `url`.
    pub async fn open(url: &DatabaseUrl, options: StorageOptions) -> Result<Self, StoreOpenError> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                let store = SqliteStore::open_file(path, options.durability).await?;
                Ok(Self::from_backend(
                    Arc::new(store.clone()),
                    Backend::Sqlite(store),
                ))
            }
            DatabaseUrl::Postgres(url) => {
                let store = PostgresStore::open(url, options.max_connections).await?;
                Ok(Self::from_backend(
                    Arc::new(store.clone()),
                    Backend::Postgres(store),
                ))
            }
        }
    }

    fn from_backend<S>(shared: Arc<S>, backend: Backend) -> Self
    where
        S: PromptStore
            + AlertStore
            + ExperimentStore
            + DatasetStore
            + RunStore
            + ScheduleStore
            + GateStore
            + ClusterStore
            + KeyStore
            + AuditStore
            + GenerationStore
            + OnlineStore
            + 'static,
    {
        Self {
            prompts: shared.clone(),
            alerts: shared.clone(),
            experiments: shared.clone(),
            datasets: shared.clone(),
            runs: shared.clone(),
            schedules: shared.clone(),
            gates: shared.clone(),
            cluster: shared.clone(),
            keys: shared.clone(),
            audit: shared.clone(),
            generations: shared.clone(),
            online: shared,
            backend,
        }
    }

    /// Every (table, column) of the schema.
    #[cfg(test)]
    pub(crate) async fn schema_columns(&self) -> Vec<(String, String)> {
        match &self.backend {
            Backend::Sqlite(store) => store.schema_columns().await,
            Backend::Postgres(store) => store.schema_columns().await,
        }
    }

    /// This database as either end of a copy.
    pub(crate) fn copy_end(&self) -> &dyn crate::copy::CopyEnd {
        match &self.backend {
            Backend::Sqlite(store) => store,
            Backend::Postgres(store) => store,
        }
    }

    /// Whether the database answers now (for health: a lost connection makes the
    /// server NOT_SERVING until it is back).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let answer = match &self.backend {
            Backend::Sqlite(store) => store.ping().await,
            Backend::Postgres(store) => store.ping().await,
        };
        answer.map_err(crate::error::db_error)
    }

    /// Announcements of event-stream appends by every process sharing the database, or
    /// `None` when no other process can share it (SQLite).
    pub async fn listen_for_appends(&self) -> Result<Option<AppendListener>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(store) => store
                .listen_for_appends()
                .await
                .map(Some)
                .map_err(crate::error::db_error),
        }
    }

    /// Whether other processes may write to this database (PostgreSQL), so caches
    /// must follow the shared event feeds.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Waits for queries in flight, then closes every connection.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(store) => store.close().await,
            Backend::Postgres(store) => store.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/llmops/llmops.db").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/llmops/llmops.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/llmops.db?mode=rwc").unwrap(),
            DatabaseUrl::Sqlite("data/llmops.db".into())
        );
        assert_eq!(
            DatabaseUrl::in_data_dir(Path::new("/d")).to_string(),
            "sqlite:///d/llmops.db"
        );
    }

    #[test]
    fn other_urls_are_shown_as_written() {
        for url in [
            "",
            "sqlite:///srv/my data/llmops.db",
            "sqlite://rel.db?mode=rwc",
        ] {
            assert_eq!(redact_database_url(url), url);
        }
    }

    #[test]
    fn postgres_urls_are_kept_whole_and_shown_without_the_password() {
        for url in [
            "postgres://app:hunter2@db:5432/llmops?sslmode=require",
            "postgresql://app:hunter2@db/llmops?application_name=x&options[search_path]=s",
            "postgres://app@db/llmops?password=hunter2&sslmode=disable",
        ] {
            let parsed = DatabaseUrl::parse(url).unwrap();
            assert_eq!(parsed, DatabaseUrl::Postgres(url.to_owned()));
            let shown = parsed.to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("app") && shown.contains("db"), "{shown}");
        }
    }

    #[test]
    fn a_url_that_cannot_be_opened_is_refused_without_its_password() {
        for (url, why) in [
            ("sqlite://", "names no database file"),
            ("/var/lib/llmops.db", "is not a URL"),
            ("mysql://root:hunter2@db/llmops", "unknown scheme"),
            (
                "postgres://app:hunter2@db:5432/llmops?sslmode=sometimes",
                "PostgreSQL URL",
            ),
        ] {
            let message = DatabaseUrl::parse(url).unwrap_err().to_string();
            assert!(message.contains(why), "{url}: {message}");
            assert!(!message.contains("hunter2"), "{url}: {message}");
        }
    }

    #[tokio::test]
    async fn every_store_of_a_bundle_shares_one_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::in_data_dir(dir.path());
        let storage = Storage::open(&url, StorageOptions::default())
            .await
            .unwrap();
        assert!(dir.path().join(DATABASE_FILE).exists());
        assert_eq!(
            storage
                .prompts
                .load_registry()
                .await
                .unwrap()
                .versions
                .len(),
            0
        );
        storage.close().await;
    }
}
