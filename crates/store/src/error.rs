//! Errors of opening a store, and the mapping of database errors to the domain's terms.

use llmops_alerts::AlertStoreError;
use llmops_evaluator::EvaluationStoreError;
use llmops_experiments::ExperimentStoreError;
use llmops_registry::StoreError;

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
    /// The database could not be opened.
    #[error("opening the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Maps a database error onto the registry's storage errors. A unique violation means a
/// concurrent writer got there first; anything else is the database being unavailable.
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Duplicate(format!("already exists: {}", db.message()))
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Conflict(format!("still referenced: {}", db.message()))
        }
        _ => {
            tracing::error!(error = %err, "database error");
            StoreError::Unavailable("the database failed; the change was not made".to_owned())
        }
    }
}

/// Maps a database error onto the alert service's storage errors.
pub(crate) fn alert_store_error(err: sqlx::Error) -> AlertStoreError {
    match store_error(err) {
        StoreError::Duplicate(message) => AlertStoreError::Duplicate(message),
        StoreError::NotFound(message)
        | StoreError::Conflict(message)
        | StoreError::Unavailable(message) => AlertStoreError::Unavailable(message),
    }
}

pub(crate) fn corrupt_alert(what: &str, err: impl std::fmt::Display) -> AlertStoreError {
    tracing::error!(error = %err, what, "unreadable stored data");
    AlertStoreError::Unavailable(format!("stored {what} is unreadable"))
}

pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    tracing::error!(error = %err, what, "unreadable stored data");
    StoreError::Unavailable(format!("stored {what} is unreadable"))
}

/// Maps a database error onto the experiment service's storage errors.
pub(crate) fn experiment_store_error(err: sqlx::Error) -> ExperimentStoreError {
    match store_error(err) {
        StoreError::Duplicate(message) => ExperimentStoreError::Duplicate(message),
        StoreError::NotFound(message)
        | StoreError::Conflict(message)
        | StoreError::Unavailable(message) => ExperimentStoreError::Unavailable(message),
    }
}

pub(crate) fn corrupt_experiment(what: &str, err: impl std::fmt::Display) -> ExperimentStoreError {
    tracing::error!(error = %err, what, "unreadable stored data");
    ExperimentStoreError::Unavailable(format!("stored {what} is unreadable"))
}

/// Maps a database error onto the evaluator's storage errors.
pub(crate) fn evaluation_store_error(err: sqlx::Error) -> EvaluationStoreError {
    match store_error(err) {
        StoreError::Duplicate(message) => EvaluationStoreError::Duplicate(message),
        StoreError::NotFound(message)
        | StoreError::Conflict(message)
        | StoreError::Unavailable(message) => EvaluationStoreError::Unavailable(message),
    }
}

pub(crate) fn corrupt_evaluation(what: &str, err: impl std::fmt::Display) -> EvaluationStoreError {
    tracing::error!(error = %err, what, "unreadable stored data");
    EvaluationStoreError::Unavailable(format!("stored {what} is unreadable"))
}
