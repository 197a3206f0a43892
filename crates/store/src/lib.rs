//! Storage for llmops: the domain crates' store traits implemented on SQLite (the
//! embedded default) and, later, PostgreSQL. SQL stays portable between the two: `$n`
//! placeholders, `ON CONFLICT` upserts, `RETURNING`, times as integer microseconds.

mod error;
mod sqlite;
mod storage;

pub use error::StoreOpenError;
pub use sqlite::{Durability, SqliteStore};
pub use storage::{DatabaseUrl, Storage, StorageOptions};
