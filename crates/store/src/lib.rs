//! Storage for llmops: the domain crates' store traits implemented on SQLite (the
//! embedded default) and PostgreSQL (shared by any number of processes).
//!
//! The queries are written once, in `src/sql/`, in SQL both databases run: `$n`
//! placeholders, `ON CONFLICT` upserts, `RETURNING`, times as integer microseconds,
//! records as JSON text. Each backend module compiles those files against its own
//! driver types (`#[path]` modules over a `Db` alias), so both are checked by the
//! compiler and neither pays for dynamic dispatch over rows; what must differ (opening,
//! snapshots, the experiments' group commit) lives beside them in the backend's module.
//! The conformance suite (`tests/conformance`) runs every case against both.

// Loading each `src/sql/` file once per backend is the point (see above), not a mistake.
#![allow(clippy::duplicate_mod)]

mod codec;
mod copy;
mod error;
mod postgres;
pub mod scratch;
mod sqlite;
mod storage;

pub use copy::{copy_database, CopyError, CopyProgress, CopyReport};
pub use error::StoreOpenError;
pub use postgres::{AppendListener, PostgresStore, FEED_CHANNEL};
pub use sqlite::{Durability, SqliteStore};
pub use storage::{redact_database_url, DatabaseUrl, Storage, StorageOptions};
