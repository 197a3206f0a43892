//! What API keys need from storage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_core::StoreError;

use crate::key::ApiKey;

/// A key with the hash of its secret, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key.
    pub key: ApiKey,
    /// The secret's SHA-256 as hex ([`crate::SecretHash::to_hex`]).
    pub secret_hash: String,
}

/// Durable storage of API keys. Every change is logged in the change log (entity
/// `api_key`), so other replicas' caches follow it.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key; `Duplicate` if its name (or secret) is taken.
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError>;

    /// Stores `key` only if no admin key is usable at `now` (neither revoked nor
    /// expired), checked in the same transaction; false if one is.
    async fn insert_first_admin(
        &self,
        key: &StoredKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Every key.
    async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// One key.
    async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError>;

    /// Marks key `id` revoked at `at` unless it already is; the key as stored after,
    /// `None` if there is no such key.
    async fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError>;

    /// Moves each key's `last_used_at` forward to the time given (never back).
    async fn record_use(&self, uses: &[(String, DateTime<Utc>)]) -> Result<(), StoreError>;
}
