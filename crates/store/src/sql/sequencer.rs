//! Event sequences, assigned in commit order.
//!
//! Incrementing a row inside the committing transaction serialises the writers of a
//! stream on that row until they commit, so sequence order is commit order. A bare
//! database sequence would hand out numbers that can commit out of order, and a reader
//! resuming "after N" could then skip an event that committed late.
//!
//! On SQLite the one writer connection serialises everything anyway. On PostgreSQL the
//! `UPDATE` takes the stream's row lock, held until the transaction ends; a second
//! appender waits for it and then reads the value the first one committed, which by
//! then is visible to every reader. So no reader can see N+1 without N, whichever
//! process or connection wrote them. The cost is that appends to one stream commit one
//! at a time (BENCHMARKS.md, "PostgreSQL").

use super::{Connection, Db};

/// Takes the next sequence of `stream` inside `tx` (on PostgreSQL also announcing the
/// append to other processes, at commit).
pub(crate) async fn next_sequence(tx: &mut Connection, stream: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(super::NEXT_SEQUENCE)
        .bind(stream)
        .fetch_one(&mut *tx)
        .await
}

/// The current value of `stream`.
pub(crate) async fn current(
    executor: impl sqlx::Executor<'_, Database = Db>,
    stream: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM event_sequences WHERE stream = $1")
        .bind(stream)
        .fetch_one(executor)
        .await
}
