//! [`ClusterStore`] on SQLite and PostgreSQL (one source, compiled for each): replicas,
//! leases and the change log. Lease times are the database's clock (`super::NOW_US`), so
//! replicas' clocks need not agree.

use std::time::Duration;

use async_trait::async_trait;
use llmops_cluster::{Change, ClusterStore, LeaseRow, ProbeRow, ReplicaRow, StoreError};
use sqlx::Row;

use super::{sequencer, Connection, Store, GREATEST, NOW_US, SKIP_LOCKED};
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
        sqlx::query("UPDATE provider_call_slots SET holder = NULL WHERE holder = $1")
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

    async fn take_call_slot(
        &self,
        provider: &str,
        capacity: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<u32>, StoreError> {
        // A free slot among those that exist: racing takers each lock a different row
        // (or find none), so no slot is given twice.
        let taken: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE provider_call_slots SET holder = $3, expires_at_us = {NOW_US} + $4
             WHERE provider = $1 AND slot = (
                 SELECT slot FROM provider_call_slots
                 WHERE provider = $1 AND slot < $2
                   AND (holder IS NULL OR expires_at_us < {NOW_US})
                 ORDER BY slot LIMIT 1{SKIP_LOCKED})
             RETURNING slot"
        ))
        .bind(provider)
        .bind(i64::from(capacity))
        .bind(holder)
        .bind(micros(lease))
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        if let Some(slot) = taken {
            return Ok(Some(slot as u32));
        }
        // None free: add the next number while fewer than `capacity` exist. Two racing
        // adders pick the same number and the key lets one of them in.
        let added: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO provider_call_slots (provider, slot, holder, expires_at_us)
             SELECT $1, COUNT(*), $3, {NOW_US} + $4 FROM provider_call_slots
             WHERE provider = $1 HAVING COUNT(*) < $2
             ON CONFLICT (provider, slot) DO NOTHING
             RETURNING slot"
        ))
        .bind(provider)
        .bind(i64::from(capacity))
        .bind(holder)
        .bind(micros(lease))
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(added.map(|slot| slot as u32))
    }

    async fn release_call_slot(
        &self,
        provider: &str,
        slot: u32,
        holder: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE provider_call_slots SET holder = NULL
             WHERE provider = $1 AND slot = $2 AND holder = $3",
        )
        .bind(provider)
        .bind(i64::from(slot))
        .bind(holder)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn renew_call_slots(&self, holder: &str, lease: Duration) -> Result<u64, StoreError> {
        let renewed = sqlx::query(&format!(
            "UPDATE provider_call_slots SET expires_at_us = {NOW_US} + $2 WHERE holder = $1"
        ))
        .bind(holder)
        .bind(micros(lease))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(renewed.rows_affected())
    }

    async fn reserve_call_start(
        &self,
        provider: &str,
        spacing: Duration,
    ) -> Result<Duration, StoreError> {
        // One statement: the row's lock orders racing callers, each one `spacing` after
        // the one before, so the deployment's starts are spaced as one client's would be.
        let wait_us: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO provider_call_pacing (provider, next_start_us)
             VALUES ($1, {NOW_US} + $2)
             ON CONFLICT (provider) DO UPDATE SET next_start_us =
                 {GREATEST}(provider_call_pacing.next_start_us, {NOW_US}) + $2
             RETURNING next_start_us - $2 - {NOW_US}"
        ))
        .bind(provider)
        .bind(micros(spacing))
        .fetch_one(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(Duration::from_micros(wait_us.max(0) as u64))
    }

    async fn store_probes(&self, probes: &[ProbeRow]) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        for probe in probes {
            sqlx::query(
                "INSERT INTO provider_probes
                     (provider, healthy, consecutive_failures, last_error, probed_at_us)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (provider) DO UPDATE SET
                     healthy = excluded.healthy,
                     consecutive_failures = excluded.consecutive_failures,
                     last_error = excluded.last_error,
                     probed_at_us = excluded.probed_at_us",
            )
            .bind(&probe.provider)
            .bind(probe.healthy)
            .bind(i64::from(probe.consecutive_failures))
            .bind(&probe.last_error)
            .bind(probe.probed_at_us)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn probes(&self) -> Result<Vec<ProbeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, healthy, consecutive_failures, last_error, probed_at_us
             FROM provider_probes ORDER BY provider",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| ProbeRow {
                provider: row.get(0),
                healthy: row.get(1),
                consecutive_failures: u32::try_from(row.get::<i64, _>(2)).unwrap_or(u32::MAX),
                last_error: row.get(3),
                probed_at_us: row.get(4),
            })
            .collect())
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
