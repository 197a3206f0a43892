//! Event sequences, assigned in commit order.
//!
//! Incrementing a row inside the committing transaction serialises the writers of a
//! stream on that row until they commit, so sequence order is commit order. A bare
//! database sequence would hand out numbers that can commit out of order, and a reader
//! resuming "after N" could then skip an event that committed late.

use sqlx::{Sqlite, Transaction};

/// Takes the next sequence of `stream` inside `tx`.
pub(crate) async fn next_sequence(
    tx: &mut Transaction<'_, Sqlite>,
    stream: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE event_sequences SET value = value + 1 WHERE stream = $1 RETURNING value",
    )
    .bind(stream)
    .fetch_one(&mut **tx)
    .await
}

/// The current value of `stream`.
pub(crate) async fn current(
    executor: impl sqlx::SqliteExecutor<'_>,
    stream: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM event_sequences WHERE stream = $1")
        .bind(stream)
        .fetch_one(executor)
        .await
}
