//! [`AuditStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_access::{AuditEvent, AuditQuery, AuditStore};
use llmops_core::StoreError;
use sqlx::{QueryBuilder, Row};

use super::{Db, Store};
use crate::codec::{from_micros, to_micros};
use crate::error::db_error;

/// Entries per INSERT statement (8 parameters each, far below either database's limit).
const INSERT_ROWS: usize = 256;

#[async_trait]
impl AuditStore for Store {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        // One statement per chunk: a statement per entry made a batch's commit cost
        // grow with its size (each statement is a round trip to the database).
        for chunk in events.chunks(INSERT_ROWS) {
            let mut insert = QueryBuilder::<Db>::new(
                "INSERT INTO audit_events
                     (id, time_us, actor, api_key_id, method, resource, code, request_id) ",
            );
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(&event.id)
                    .push_bind(to_micros(event.time))
                    .push_bind(&event.actor)
                    .push_bind(&event.api_key_id)
                    .push_bind(&event.method)
                    .push_bind(&event.resource)
                    .push_bind(&event.code)
                    .push_bind(&event.request_id);
            });
            insert.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        // A resource matches itself and what is under it (`greet` matches `greet/1.0.0`).
        let under = query
            .resource
            .as_ref()
            .map(|resource| format!("{resource}/"));
        let rows = sqlx::query(
            "SELECT id, time_us, actor, api_key_id, method, resource, code, request_id
             FROM audit_events
             WHERE ($1 IS NULL OR actor = $1)
               AND ($2 IS NULL OR method = $2)
               AND ($3 IS NULL OR resource = $3
                    OR substr(resource, 1, length($4)) = $4)
               AND ($5 IS NULL OR time_us >= $5)
               AND ($6 IS NULL OR time_us < $6)
               AND ($7 IS NULL OR id < $7)
             ORDER BY id DESC
             LIMIT $8",
        )
        .bind(&query.actor)
        .bind(&query.method)
        .bind(&query.resource)
        .bind(&under)
        .bind(query.since.map(to_micros))
        .bind(query.until.map(to_micros))
        .bind(&query.before_id)
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| AuditEvent {
                id: row.get(0),
                time: from_micros(row.get(1)),
                actor: row.get(2),
                api_key_id: row.get(3),
                method: row.get(4),
                resource: row.get(5),
                code: row.get(6),
                request_id: row.get(7),
            })
            .collect())
    }

    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE time_us < $1")
            .bind(to_micros(before))
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }
}
