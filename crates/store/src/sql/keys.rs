//! [`KeyStore`] on SQLite and PostgreSQL (one source, compiled for each). A key's
//! record holds everything but its secret's hash, which has a column (unique) of its own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_access::{ApiKey, KeyStore, Role, StoredKey};
use llmops_core::StoreError;
use sqlx::Row;

use super::cluster::record_change;
use super::{Connection, Store, FOR_UPDATE};
use crate::codec::{parse, record_of, to_micros};
use crate::error::db_error;

/// The change-log entity of an API key (see `sql/cluster.rs`).
const API_KEY: &str = "api_key";

async fn insert(tx: &mut Connection, key: &StoredKey) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, name, secret_hash, record, created_at_us)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.key.id)
    .bind(&key.key.name)
    .bind(&key.secret_hash)
    .bind(record_of("API key", &key.key)?)
    .bind(to_micros(key.key.created_at))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    record_change(tx, API_KEY, &key.key.id).await
}

/// Key `id`, locked for the rest of the transaction; `None` if there is none.
async fn locked_key(tx: &mut Connection, id: &str) -> Result<Option<ApiKey>, StoreError> {
    let record: Option<String> = sqlx::query_scalar(&format!(
        "SELECT record FROM api_keys WHERE id = $1{FOR_UPDATE}"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    record.map(|record| parse("API key", &record)).transpose()
}

/// Replaces the stored record of `key`.
async fn store_record(tx: &mut Connection, key: &ApiKey) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_keys SET record = $2 WHERE id = $1")
        .bind(&key.id)
        .bind(record_of("API key", key)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl KeyStore for Store {
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        insert(&mut tx, key).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn insert_first_admin(
        &self,
        key: &StoredKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        // Every key, locked: a concurrent revocation waits for this decision.
        let records: Vec<String> =
            sqlx::query_scalar(&format!("SELECT record FROM api_keys{FOR_UPDATE}"))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
        for record in records {
            let existing: ApiKey = parse("API key", &record)?;
            let usable =
                existing.revoked_at.is_none() && existing.expires_at.is_none_or(|at| at > now);
            if existing.role == Role::Admin && usable {
                return Ok(false);
            }
        }
        insert(&mut tx, key).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows =
            sqlx::query("SELECT record, secret_hash FROM api_keys ORDER BY created_at_us, id")
                .fetch_all(&self.reader)
                .await
                .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(StoredKey {
                    key: parse("API key", row.get(0))?,
                    secret_hash: row.get(1),
                })
            })
            .collect()
    }

    async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let row = sqlx::query("SELECT record, secret_hash FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(|row| {
            Ok(StoredKey {
                key: parse("API key", row.get(0))?,
                secret_hash: row.get(1),
            })
        })
        .transpose()
    }

    async fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let Some(mut key) = locked_key(&mut tx, id).await? else {
            return Ok(None);
        };
        if key.revoked_at.is_none() {
            key.revoked_at = Some(at);
            store_record(&mut tx, &key).await?;
            record_change(&mut tx, API_KEY, id).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Some(key))
    }

    async fn record_use(&self, uses: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        // Not logged as a change: other replicas need not reload a key for it.
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        for (id, at) in uses {
            let Some(mut key) = locked_key(&mut tx, id).await? else {
                continue;
            };
            if key.last_used_at.is_some_and(|last| last >= *at) {
                continue;
            }
            key.last_used_at = Some(*at);
            store_record(&mut tx, &key).await?;
        }
        tx.commit().await.map_err(db_error)
    }
}
