//! Errors of opening a store, and the mapping of database errors to the domain's terms.
//!
//! What a client is told never contains database text (table or constraint names, SQL,
//! driver messages): those go to the log under a correlation id, and the client gets the
//! id, so an operator can find the cause from a user's report.

use llmops_core::StoreError;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// The data directory could not be created or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database URL is not one this build can open.
    #[error("database url {url:?}: {reason}")]
    Url {
        /// The URL, its password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be opened.
    #[error("opening the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Maps a database error onto the domain's storage errors, by what the client can do
/// about it: a unique violation means another writer got there first (ALREADY_EXISTS
/// upstream); a foreign-key, check or not-null violation means the change contradicts
/// stored data (FAILED_PRECONDITION upstream; retrying cannot help); anything else is
/// the database failing (UNAVAILABLE upstream; retrying may help).
pub(crate) fn db_error(err: sqlx::Error) -> StoreError {
    let correlation_id = uuid::Uuid::now_v7();
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            tracing::info!(%correlation_id, error = %err, "unique key taken");
            StoreError::Duplicate(format!(
                "already exists: another request created it first (correlation id {correlation_id})"
            ))
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            tracing::info!(%correlation_id, error = %err, "foreign key violated");
            StoreError::Conflict(format!(
                "the change refers to something that no longer exists, or removes something \
                 still in use (correlation id {correlation_id})"
            ))
        }
        sqlx::Error::Database(db)
            if matches!(
                db.kind(),
                sqlx::error::ErrorKind::CheckViolation | sqlx::error::ErrorKind::NotNullViolation
            ) =>
        {
            tracing::warn!(%correlation_id, error = %err, "check constraint violated");
            StoreError::Conflict(format!(
                "the change contradicts stored data (correlation id {correlation_id})"
            ))
        }
        _ => {
            tracing::error!(%correlation_id, error = %err, "database error");
            StoreError::Unavailable(format!(
                "the database failed; the change was not made (correlation id {correlation_id})"
            ))
        }
    }
}

/// Stored data that cannot be decoded: the database holds something this build does not
/// understand (a bug or a hand edit), which the client cannot fix.
pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    let correlation_id = uuid::Uuid::now_v7();
    tracing::error!(%correlation_id, error = %err, what, "unreadable stored data");
    StoreError::Unavailable(format!(
        "stored {what} is unreadable (correlation id {correlation_id})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn database() -> sqlx::SqlitePool {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        for statement in [
            "CREATE TABLE parent (id TEXT PRIMARY KEY)",
            "CREATE TABLE child (id TEXT PRIMARY KEY, parent TEXT NOT NULL REFERENCES parent(id), \
             weight INTEGER CHECK (weight > 0))",
            "INSERT INTO parent VALUES ('p')",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool
    }

    fn assert_no_database_text(message: &str) {
        for internal in [
            "constraint",
            "FOREIGN KEY",
            "UNIQUE",
            "CHECK",
            "parent",
            "child",
        ] {
            assert!(
                !message.contains(internal),
                "{internal:?} reached the client: {message}"
            );
        }
        assert!(message.contains("correlation id"), "{message}");
    }

    #[tokio::test]
    async fn a_missing_reference_is_a_conflict_without_database_text() {
        let pool = database().await;
        let err = sqlx::query("INSERT INTO child (id, parent) VALUES ('c', 'missing')")
            .execute(&pool)
            .await
            .unwrap_err();
        let StoreError::Conflict(message) = db_error(err) else {
            panic!("a foreign-key violation is the client's conflict, not an outage");
        };
        assert_no_database_text(&message);
    }

    #[tokio::test]
    async fn removing_what_is_still_referenced_is_a_conflict() {
        let pool = database().await;
        sqlx::query("INSERT INTO child (id, parent) VALUES ('c', 'p')")
            .execute(&pool)
            .await
            .unwrap();
        let err = sqlx::query("DELETE FROM parent WHERE id = 'p'")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(matches!(db_error(err), StoreError::Conflict(_)));
    }

    #[tokio::test]
    async fn a_taken_key_is_a_duplicate_and_a_failed_check_a_conflict() {
        let pool = database().await;
        let err = sqlx::query("INSERT INTO parent VALUES ('p')")
            .execute(&pool)
            .await
            .unwrap_err();
        let StoreError::Duplicate(message) = db_error(err) else {
            panic!("a unique violation is a duplicate");
        };
        assert_no_database_text(&message);
        let err = sqlx::query("INSERT INTO child (id, parent, weight) VALUES ('c', 'p', 0)")
            .execute(&pool)
            .await
            .unwrap_err();
        let StoreError::Conflict(message) = db_error(err) else {
            panic!("a failed check is a conflict");
        };
        assert_no_database_text(&message);
    }

    #[tokio::test]
    async fn a_database_fault_is_unavailable_without_database_text() {
        let pool = database().await;
        let err = sqlx::query("SELECT * FROM no_such_table")
            .execute(&pool)
            .await
            .unwrap_err();
        let StoreError::Unavailable(message) = db_error(err) else {
            panic!("anything else is the database failing");
        };
        assert!(!message.contains("no_such_table"), "{message}");
    }
}
