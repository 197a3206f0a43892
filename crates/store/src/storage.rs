//! `Storage`: every store trait behind one value, opened from a database URL, so that the
//! server and the tests never name a backend type.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use llmops_alerts::AlertStore;
use llmops_evaluator::datasets::DatasetStore;
use llmops_evaluator::gates::GateStore;
use llmops_evaluator::runs::RunStore;
use llmops_evaluator::schedules::ScheduleStore;
use llmops_experiments::ExperimentStore;
use llmops_registry::PromptStore;

use crate::error::StoreOpenError;
use crate::sqlite::{Durability, SqliteStore, DATABASE_FILE};

/// Where the data lives: a parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:///absolute/path/llmops.db` or `sqlite://relative/path.db`: the embedded
    /// database in one file (created if missing).
    Sqlite(PathBuf),
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
            "postgres" | "postgresql" => Err(refuse(
                "PostgreSQL is not supported by this build yet; use sqlite:///path/to/llmops.db",
            )),
            _ => Err(refuse("has an unknown scheme; use sqlite://")),
        }
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

/// How to open the database, beyond its URL.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageOptions {
    /// How hard a commit works to survive power loss.
    pub durability: Durability,
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
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Sqlite(store) => f.debug_tuple("Storage").field(store).finish(),
        }
    }
}

impl Storage {
    /// Opens (creating and migrating if needed) the database at `url`.
    pub async fn open(url: &DatabaseUrl, options: StorageOptions) -> Result<Self, StoreOpenError> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                let store = SqliteStore::open_file(path, options.durability).await?;
                Ok(Self::from_sqlite(store))
            }
        }
    }

    fn from_sqlite(store: SqliteStore) -> Self {
        let shared = Arc::new(store.clone());
        Self {
            prompts: shared.clone(),
            alerts: shared.clone(),
            experiments: shared.clone(),
            datasets: shared.clone(),
            runs: shared.clone(),
            schedules: shared.clone(),
            gates: shared,
            backend: Backend::Sqlite(store),
        }
    }

    /// Waits for queries in flight, then closes every connection.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(store) => store.close().await,
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
    fn a_url_that_cannot_be_opened_is_refused_without_its_password() {
        for (url, why) in [
            ("sqlite://", "names no database file"),
            ("/var/lib/llmops.db", "is not a URL"),
            ("mysql://root:hunter2@db/llmops", "unknown scheme"),
            ("postgres://app:hunter2@db:5432/llmops", "PostgreSQL"),
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
