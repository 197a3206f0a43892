//! [`AlertStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_alerts::webhook::{DeliveryOutcome, PendingDelivery};
use llmops_alerts::{
    Alert, AlertCommit, AlertCursor, AlertEvent, AlertFilter, AlertStatus, AlertStore,
    DeliveriesFor, StoreError,
};
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use super::{sequencer, Db, Store};
use crate::codec::to_micros;
use crate::error::{corrupt, db_error};

const ALERT_EVENTS: &str = "alerts";
const ALERT_EVENT_FLOOR: &str = "alerts_floor";

#[async_trait]
impl AlertStore for Store {
    async fn open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query("SELECT record FROM alerts WHERE status <> 'resolved'")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.iter().map(|row| parse_alert(row.get(0))).collect()
    }

    async fn alert_head_sequence(&self) -> Result<u64, StoreError> {
        Ok(sequencer::current(&self.reader, ALERT_EVENTS)
            .await
            .map_err(db_error)? as u64)
    }

    async fn commit_alert(
        &self,
        alert: &Alert,
        previous: Option<&Alert>,
        event: &AlertEvent,
        deliveries: &DeliveriesFor<'_>,
    ) -> Result<AlertCommit, StoreError> {
        let record = serde_json::to_string(alert).map_err(|e| corrupt("alert", e))?;
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let statement = match previous {
            None => {
                let open = locked_alert(
                    &mut tx,
                    "fingerprint = $1 AND status <> 'resolved'",
                    &alert.fingerprint,
                )
                .await?;
                if open.is_some() {
                    return Ok(AlertCommit::Stale(open));
                }
                "INSERT INTO alerts (id, fingerprint, alert_type, severity, status, source, source_id, acknowledged, record, created_at_us, resolved_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            }
            Some(previous) => {
                let stored = locked_alert(&mut tx, "id = $1", &alert.id.to_string()).await?;
                if stored.as_ref() != Some(previous) {
                    return Ok(AlertCommit::Stale(stored));
                }
                "UPDATE alerts SET fingerprint = $2, alert_type = $3, severity = $4, status = $5, source = $6, source_id = $7,
                     acknowledged = $8, record = $9, created_at_us = $10, resolved_at_us = $11
                 WHERE id = $1"
            }
        };
        let written = sqlx::query(statement)
            .bind(alert.id.to_string())
            .bind(&alert.fingerprint)
            .bind(alert.alert_type.as_str())
            .bind(alert.severity.as_str())
            .bind(alert.status.as_str())
            .bind(&alert.source)
            .bind(&alert.source_id)
            .bind(alert.acknowledged_at.is_some())
            .bind(record)
            .bind(to_micros(alert.created_at))
            .bind(alert.resolved_at.map(to_micros))
            .execute(&mut *tx)
            .await
            .map_err(db_error);
        match written {
            Ok(_) => {}
            // Another process opened an alert with this fingerprint after the check
            // above and committed first (the insert waited for it): that one stands.
            Err(StoreError::Duplicate(_)) if previous.is_none() => {
                drop(tx);
                let open = open_alert_with_fingerprint(&self.reader, &alert.fingerprint).await?;
                return Ok(AlertCommit::Stale(open));
            }
            Err(err) => return Err(err),
        }

        let sequence = sequencer::next_sequence(&mut tx, ALERT_EVENTS)
            .await
            .map_err(db_error)?;
        let mut stored_event = event.clone();
        stored_event.sequence = sequence as u64;
        let payload =
            serde_json::to_string(&stored_event).map_err(|e| corrupt("alert event", e))?;
        sqlx::query("INSERT INTO alert_events (sequence, alert_id, kind, payload, created_at_us) VALUES ($1, $2, $3, $4, $5)")
            .bind(sequence)
            .bind(alert.id.to_string())
            .bind(format!("{:?}", event.kind).to_lowercase())
            .bind(payload)
            .bind(to_micros(event.time))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for delivery in deliveries(&stored_event) {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, receiver, sequence, body, state, attempts, next_attempt_at_us, last_error)
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, '')",
            )
            .bind(delivery.id.to_string())
            .bind(&delivery.receiver)
            .bind(sequence)
            .bind(&delivery.body)
            .bind(to_micros(event.time))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(AlertCommit::Committed(stored_event))
    }

    async fn get_alert(&self, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let row = sqlx::query("SELECT record FROM alerts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(|row| parse_alert(row.get(0))).transpose()
    }

    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        cursor: Option<AlertCursor>,
        limit: usize,
    ) -> Result<Vec<Alert>, StoreError> {
        let mut query = QueryBuilder::<Db>::new("SELECT record FROM alerts WHERE 1 = 1");
        push_in(
            &mut query,
            "alert_type",
            filter.types.iter().map(|t| t.as_str()),
        );
        push_in(
            &mut query,
            "severity",
            filter.severities.iter().map(|s| s.as_str()),
        );
        push_in(
            &mut query,
            "status",
            filter.statuses.iter().map(|s| s.as_str()),
        );
        if let Some(source) = &filter.source {
            query.push(" AND source = ").push_bind(source.clone());
        }
        if let Some(source_id) = &filter.source_id {
            query.push(" AND source_id = ").push_bind(source_id.clone());
        }
        if filter.unacknowledged_only {
            query.push(" AND NOT acknowledged");
        }
        if let Some(since) = filter.since {
            query
                .push(" AND created_at_us >= ")
                .push_bind(to_micros(since));
        }
        if let Some(until) = filter.until {
            query
                .push(" AND created_at_us < ")
                .push_bind(to_micros(until));
        }
        if let Some((created_at, id)) = cursor {
            let micros = to_micros(created_at);
            query
                .push(" AND (created_at_us < ")
                .push_bind(micros)
                .push(" OR (created_at_us = ")
                .push_bind(micros)
                .push(" AND id < ")
                .push_bind(id.to_string())
                .push("))");
        }
        query
            .push(" ORDER BY created_at_us DESC, id DESC LIMIT ")
            .push_bind(limit as i64);
        let rows = query
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.iter().map(|row| parse_alert(row.get(0))).collect()
    }

    async fn alert_events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AlertEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT payload FROM alert_events WHERE sequence > $1 ORDER BY sequence LIMIT $2",
        )
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(row.get::<&str, _>(0)).map_err(|e| corrupt("alert event", e))
            })
            .collect()
    }

    async fn alert_event_floor(&self) -> Result<u64, StoreError> {
        Ok(sequencer::current(&self.reader, ALERT_EVENT_FLOOR)
            .await
            .map_err(db_error)? as u64)
    }

    async fn prune_alerts(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = to_micros(cutoff);
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let pruned =
            sqlx::query("DELETE FROM alerts WHERE status = 'resolved' AND resolved_at_us < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        let floor: Option<i64> =
            sqlx::query_scalar("SELECT MAX(sequence) FROM alert_events WHERE created_at_us < $1")
                .bind(cutoff)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        if let Some(floor) = floor {
            sqlx::query("DELETE FROM alert_events WHERE sequence <= $1")
                .bind(floor)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query("UPDATE event_sequences SET value = $2 WHERE stream = $1 AND value < $2")
                .bind(ALERT_EVENT_FLOOR)
                .bind(floor)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND finished_at_us < $1",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(pruned)
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, receiver, body, attempts FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at_us <= $1 ORDER BY next_attempt_at_us, sequence LIMIT $2",
        )
        .bind(to_micros(now))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(PendingDelivery {
                    id: Uuid::parse_str(row.get::<&str, _>(0))
                        .map_err(|e| corrupt("delivery id", e))?,
                    receiver: row.get(1),
                    body: row.get(2),
                    attempts: row.get::<i64, _>(3) as u32,
                })
            })
            .collect()
    }

    async fn record_delivery(
        &self,
        delivery_id: Uuid,
        outcome: &DeliveryOutcome,
    ) -> Result<(), StoreError> {
        let (state, attempts, next_at, error, finished_at) = match outcome {
            DeliveryOutcome::Delivered { at, attempts } => (
                "delivered",
                *attempts,
                None,
                String::new(),
                Some(to_micros(*at)),
            ),
            DeliveryOutcome::Retry {
                attempts,
                next_attempt_at,
                error,
            } => (
                "pending",
                *attempts,
                Some(to_micros(*next_attempt_at)),
                error.clone(),
                None,
            ),
            DeliveryOutcome::GaveUp { attempts, error } => (
                "failed",
                *attempts,
                None,
                error.clone(),
                Some(to_micros(Utc::now())),
            ),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $2, attempts = $3, next_attempt_at_us = COALESCE($4, next_attempt_at_us),
                 last_error = $5, finished_at_us = $6 WHERE id = $1",
        )
        .bind(delivery_id.to_string())
        .bind(state)
        .bind(i64::from(attempts))
        .bind(next_at)
        .bind(error)
        .bind(finished_at)
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

fn push_in<'a>(
    query: &mut QueryBuilder<'_, Db>,
    column: &str,
    values: impl Iterator<Item = &'a str>,
) {
    let values: Vec<&str> = values.collect();
    if values.is_empty() {
        return;
    }
    query.push(format!(" AND {column} IN ("));
    let mut separated = query.separated(", ");
    for value in values {
        separated.push_bind(value.to_owned());
    }
    separated.push_unseparated(")");
}

fn parse_alert(record: &str) -> Result<Alert, StoreError> {
    let alert: Alert = serde_json::from_str(record).map_err(|e| corrupt("alert", e))?;
    debug_assert!(alert.status != AlertStatus::Resolved || alert.resolved_at.is_some());
    Ok(alert)
}

/// The alert `condition` (with one parameter, `key`) selects, locked until `tx` ends so
/// no other process changes it meanwhile.
async fn locked_alert(
    tx: &mut sqlx::Transaction<'_, Db>,
    condition: &str,
    key: &str,
) -> Result<Option<Alert>, StoreError> {
    let query = format!(
        "SELECT record FROM alerts WHERE {condition}{}",
        super::FOR_UPDATE
    );
    let row = sqlx::query(&query)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    row.map(|row| parse_alert(row.get(0))).transpose()
}

/// The open alert with `fingerprint`, as committed.
async fn open_alert_with_fingerprint(
    executor: impl sqlx::Executor<'_, Database = Db>,
    fingerprint: &str,
) -> Result<Option<Alert>, StoreError> {
    let row =
        sqlx::query("SELECT record FROM alerts WHERE fingerprint = $1 AND status <> 'resolved'")
            .bind(fingerprint)
            .fetch_optional(executor)
            .await
            .map_err(db_error)?;
    row.map(|row| parse_alert(row.get(0))).transpose()
}
