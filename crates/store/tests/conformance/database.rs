//! The database a conformance case runs against.
//!
//! Adding a backend takes two steps, and no case changes:
//!
//! 1. a constructor here that makes a fresh, empty database and returns a
//!    [`TestDatabase`] with its URL and a guard that keeps it alive (and, dropped, removes
//!    it), as `TestDatabase::postgres()` makes a schema of its own per case;
//! 2. one line in `main.rs`, as `conformance!(postgres, TestDatabase::postgres);`.

use std::any::Any;

use llmops_store::{DatabaseUrl, Storage, StorageOptions};

/// One fresh database for one case. Opened any number of times (after `close`), so a
/// case can check what survives a restart.
pub(crate) struct TestDatabase {
    url: DatabaseUrl,
    options: StorageOptions,
    /// Whatever keeps the database alive while the case runs.
    _guard: Box<dyn Any + Send>,
}

impl TestDatabase {
    /// The embedded SQLite database, in a temporary directory removed on drop.
    pub(crate) async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self {
            url: DatabaseUrl::in_data_dir(dir.path()),
            options: StorageOptions::default(),
            _guard: Box::new(dir),
        }
    }

    /// A PostgreSQL database: a schema of its own on the server named by
    /// `LLMOPS_TEST_DATABASE_URL`, dropped on drop.
    pub(crate) async fn postgres() -> Self {
        let schema = llmops_store::scratch::ScratchSchema::create().await;
        Self {
            url: DatabaseUrl::parse(schema.url()).expect("a PostgreSQL URL"),
            options: StorageOptions::default(),
            _guard: Box::new(schema),
        }
    }

    /// Opens every store of the database (creating and migrating it the first time).
    pub(crate) async fn open(&self) -> Storage {
        Storage::open(&self.url, self.options)
            .await
            .unwrap_or_else(|err| panic!("opening {}: {err}", self.url))
    }

    /// Closes `storage` and opens the database again: a restart of the server.
    pub(crate) async fn reopen(&self, storage: Storage) -> Storage {
        storage.close().await;
        drop(storage);
        self.open().await
    }
}
