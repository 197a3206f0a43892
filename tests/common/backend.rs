//! The database an end-to-end test runs on, as a parameter: `on_both_backends!` turns
//! `async fn case(backend: Backend)` into one test per backend.

use std::path::Path;

use llmops::config::Config;
use llmops_store::scratch::ScratchSchema;

/// Which database a server stores in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file under the data directory (the default).
    Sqlite,
    /// A schema of its own on the PostgreSQL server of `LLMOPS_TEST_DATABASE_URL`.
    Postgres,
}

impl Backend {
    /// The backend of tests that do not name one: SQLite, or PostgreSQL with
    /// `LLMOPS_TEST_BACKEND=postgres` (to run the whole suite against it).
    pub fn default_for_tests() -> Self {
        match std::env::var("LLMOPS_TEST_BACKEND").as_deref() {
            Ok("postgres") => Self::Postgres,
            Ok("sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("LLMOPS_TEST_BACKEND={other:?}: use sqlite or postgres"),
        }
    }
}

/// A fresh database of one backend, kept until dropped (restart tests start several
/// servers on one).
pub struct TestDatabase {
    dir: tempfile::TempDir,
    schema: Option<ScratchSchema>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(ScratchSchema::create().await),
        };
        Self {
            dir: tempfile::tempdir().unwrap(),
            schema,
        }
    }

    /// The data directory (SQLite's file lives there; PostgreSQL deployments use it for
    /// nothing the tests read).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Points `config` at this database.
    pub fn configure(&self, config: &mut Config) {
        config.data_dir = self.dir.path().to_owned();
        config.database_url = self
            .schema
            .as_ref()
            .map(|schema| schema.url().to_owned())
            .unwrap_or_default();
    }

    /// Opens this database's stores directly, as a stopped server left them.
    pub async fn open_storage(&self) -> llmops_store::Storage {
        let mut config = Config::default();
        self.configure(&mut config);
        let url = config.database_url().unwrap();
        llmops_store::Storage::open(&url, Default::default())
            .await
            .unwrap()
    }

    /// The `database_url` of this database (empty for the embedded default).
    pub fn url(&self) -> String {
        let mut config = Config::default();
        self.configure(&mut config);
        config.database_url
    }
}

/// `on_both_backends!(case, ...)`: for each `async fn case(backend: Backend)` in this
/// file, a test `sqlite::case` and a test `postgres::case`.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::common::backend::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::common::backend::Backend::Postgres).await;
                }
            )*
        }
    };
}
