//! [`ClusterStore`] on SQLite and PostgreSQL (one source, compiled for each): replicas,
//! leases and the change log. Lease times are the database's clock (`super::NOW_US`), so
//! replicas' clocks need not agree.

use std::time::Duration;

use async_trait::async_trait;
use llmops_cluster::{Change, ClusterStore, LeaseRow, ReplicaRow, StoreError};
use sqlx::Row;

use super::{sequencer, Connection, Store, NOW_US};
use crate::error::db_error;

const CHANGES: &str = "changes";

pub(super) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[async_trait]
impl ClusterStore for Store {
    async fn database_now_us(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(&format!("SELECT {NOW_US}"))
            .fetch_one(&self.reader)
            .await
            .map_err(db_error)
    }

    async fn register_replica(
        &self,
        id: &str,
        address: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO replicas (id, address, version, started_at_us, heartbeat_at_us, stopped)
             VALUES ($1, $2, $3, {NOW_US}, {NOW_US}, $4)"
        ))
        .bind(id)
        .bind(address)
        .bind(version)
        .bind(false)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn heartbeat(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE replicas SET heartbeat_at_us = {NOW_US} WHERE id = $1"
        ))
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn stop_replica(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query("UPDATE replicas SET stopped = $2 WHERE id = $1")
            .bind(id)
            .bind(true)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM leases WHERE holder = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn prune_replicas(&self, age: Duration) -> Result<u64, StoreError> {
        let pruned = sqlx::query(&format!(
            "DELETE FROM replicas WHERE heartbeat_at_us < {NOW_US} - $1"
        ))
        .bind(micros(age))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(pruned.rows_affected())
    }

    async fn acquire_lease(
        &self,
        role: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        // One statement: the row's lock orders racing replicas, and the second one sees
        // the first one's unexpired lease and takes nothing.
        let taken: Option<String> = sqlx::query_scalar(&format!(
            "INSERT INTO leases (role, holder, acquired_at_us, expires_at_us)
             VALUES ($1, $2, {NOW_US}, {NOW_US} + $3)
             ON CONFLICT (role) DO UPDATE SET
                 holder = excluded.holder,
                 acquired_at_us = CASE WHEN leases.holder = excluded.holder
                     THEN leases.acquired_at_us ELSE excluded.acquired_at_us END,
                 expires_at_us = excluded.expires_at_us
             WHERE leases.holder = excluded.holder OR leases.expires_at_us < excluded.acquired_at_us
             RETURNING holder"
        ))
        .bind(role)
        .bind(holder)
        .bind(micros(lease))
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(taken.is_some())
    }

    async fn replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, address, version, started_at_us, heartbeat_at_us, stopped
             FROM replicas ORDER BY started_at_us, id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| ReplicaRow {
                id: row.get(0),
                address: row.get(1),
                version: row.get(2),
                started_at_us: row.get(3),
                heartbeat_at_us: row.get(4),
                stopped: row.get(5),
            })
            .collect())
    }

    async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT role, holder, acquired_at_us, expires_at_us FROM leases ORDER BY role",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| LeaseRow {
                role: row.get(0),
                holder: row.get(1),
                acquired_at_us: row.get(2),
                expires_at_us: row.get(3),
            })
            .collect())
    }

    async fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, entity, entity_key FROM changes WHERE sequence > $1
             ORDER BY sequence LIMIT $2",
        )
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| Change {
                sequence: row.get::<i64, _>(0) as u64,
                entity: row.get(1),
                key: row.get(2),
            })
            .collect())
    }

    async fn change_head(&self) -> Result<u64, StoreError> {
        Ok(sequencer::current(&self.reader, CHANGES)
            .await
            .map_err(db_error)? as u64)
    }

    async fn prune_changes(&self, age: Duration) -> Result<u64, StoreError> {
        let pruned = sqlx::query(&format!(
            "DELETE FROM changes WHERE created_at_us < {NOW_US} - $1"
        ))
        .bind(micros(age))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(pruned.rows_affected())
    }
}

/// Logs, inside `tx`, that `entity` `key` changed, for other processes' caches.
pub(crate) async fn record_change(
    tx: &mut Connection,
    entity: &str,
    key: &str,
) -> Result<(), StoreError> {
    let sequence = sequencer::next_sequence(tx, CHANGES)
        .await
        .map_err(db_error)?;
    sqlx::query(&format!(
        "INSERT INTO changes (sequence, entity, entity_key, created_at_us) VALUES ($1, $2, $3, {NOW_US})"
    ))
    .bind(sequence)
    .bind(entity)
    .bind(key)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    Ok(())
}
