//! The key service: every key in memory, so a call's check reads no database.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use llmops_core::{FieldViolation, ServiceError};
use uuid::Uuid;

use crate::key::{ApiKey, Caller, KeySpec};
use crate::role::Role;
use crate::secret::{hash_secret, new_secret, SecretHash, SECRET_PREFIX};
use crate::store::{KeyStore, StoredKey};

/// The longest key name.
const MAX_NAME: usize = 128;
/// The longest description.
const MAX_DESCRIPTION: usize = 1024;
/// The most keys one list page holds.
const MAX_PAGE_SIZE: usize = 1000;
/// The list page size when none is asked for.
const DEFAULT_PAGE_SIZE: usize = 100;
/// How stale a key's stored `last_used_at` may get: a use is written at most this often.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// Why a call's credentials were refused (UNAUTHENTICATED, or RESOURCE_EXHAUSTED for
/// the rate limit). Messages name the key, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer` header.
    #[error("no API key: send `authorization: Bearer <secret>`")]
    Missing,
    /// A header that is not `Bearer <secret>`, or a secret no key has.
    #[error("unknown API key")]
    Unknown,
    /// The key was revoked.
    #[error("API key {name:?} was revoked at {at}")]
    Revoked {
        /// The key's name.
        name: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The key expired.
    #[error("API key {name:?} expired at {at}")]
    Expired {
        /// The key's name.
        name: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The key made more calls this second than its `requests_per_second`.
    #[error("API key {name:?} is limited to {limit} calls per second")]
    RateLimited {
        /// The key's name.
        name: String,
        /// Its limit.
        limit: u32,
        /// When a call would be admitted again.
        retry_after: Duration,
    },
}

/// One page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Newest first.
    pub keys: Vec<ApiKey>,
    /// Where the next page starts; empty at the end.
    pub next_page_token: String,
}

#[derive(Debug)]
struct Entry {
    /// The key's caller, built once: a call clones it (the key is shared, not copied).
    caller: Caller,
    hash: SecretHash,
}

impl Entry {
    fn api_key(&self) -> &ApiKey {
        self.caller
            .key
            .as_deref()
            .expect("the caller of a key carries the key")
    }
}

/// A token bucket of one second's calls.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// API keys: created, listed, revoked, and checked on every call.
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    /// By id.
    keys: DashMap<String, Entry>,
    /// Key id by secret hash.
    by_hash: DashMap<SecretHash, String>,
    /// Uses not yet written, by key id.
    uses: DashMap<String, DateTime<Utc>>,
    /// Per-key rate limits, by key id.
    buckets: DashMap<String, Mutex<Bucket>>,
    /// Serialises changes with the follower's reloads.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn entry(key: Arc<ApiKey>, hash: SecretHash) -> Entry {
    Entry {
        caller: Caller::of_key(key),
        hash,
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("API key {id:?} not found"))
}

impl KeyService {
    /// Loads every key from `store`.
    pub async fn open(store: Arc<dyn KeyStore>) -> Result<Self, ServiceError> {
        let service = Self {
            store,
            keys: DashMap::new(),
            by_hash: DashMap::new(),
            uses: DashMap::new(),
            buckets: DashMap::new(),
            changes: tokio::sync::Mutex::new(()),
        };
        for stored in service.store.load_keys().await? {
            service.cache(stored);
        }
        Ok(service)
    }

    fn cache(&self, stored: StoredKey) {
        let Some(hash) = SecretHash::from_hex(&stored.secret_hash) else {
            tracing::warn!(key = %stored.key.id, "a stored API key has no valid hash; it cannot be used");
            return;
        };
        self.by_hash.insert(hash, stored.key.id.clone());
        self.keys
            .insert(stored.key.id.clone(), entry(Arc::new(stored.key), hash));
    }

    /// A new key for `spec`, and its secret (to be shown once).
    pub async fn create(
        &self,
        spec: KeySpec,
        now: DateTime<Utc>,
    ) -> Result<(ApiKey, String), ServiceError> {
        let (stored, secret) = new_key(spec, now)?;
        let _changes = self.changes.lock().await;
        self.store.insert_key(&stored).await?;
        let key = stored.key.clone();
        self.cache(stored);
        Ok((key, secret))
    }

    /// The first admin key (`llmops auth bootstrap`), stored only if no usable admin key
    /// exists; FAILED_PRECONDITION otherwise.
    pub async fn bootstrap(
        store: &dyn KeyStore,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(ApiKey, String), ServiceError> {
        let spec = KeySpec {
            name: name.to_owned(),
            role: Some(Role::Admin),
            description: "the first admin key, made by `llmops auth bootstrap`".to_owned(),
            ..KeySpec::default()
        };
        let (stored, secret) = new_key(spec, now)?;
        if !store.insert_first_admin(&stored, now).await? {
            return Err(ServiceError::FailedPrecondition(
                "an admin key exists already; create further keys with it (`llmops auth create`)"
                    .to_owned(),
            ));
        }
        Ok((stored.key, secret))
    }

    /// One key.
    pub fn get(&self, id: &str) -> Result<ApiKey, ServiceError> {
        self.keys
            .get(id)
            .map(|entry| entry.api_key().clone())
            .ok_or_else(|| not_found(id))
    }

    /// Keys newest first, after `page_token` (the last id of the previous page).
    pub fn list(&self, page_size: usize, page_token: &str) -> Result<KeyPage, ServiceError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut all: Vec<ApiKey> = self
            .keys
            .iter()
            .map(|entry| entry.api_key().clone())
            .collect();
        all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let start = if page_token.is_empty() {
            0
        } else {
            all.iter()
                .position(|key| key.id == page_token)
                .map(|index| index + 1)
                .ok_or_else(|| {
                    ServiceError::invalid("page_token", "not a token this listing gave")
                })?
        };
        let keys: Vec<ApiKey> = all.iter().skip(start).take(size).cloned().collect();
        let next_page_token = if start + keys.len() < all.len() {
            keys.last().map(|key| key.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(KeyPage {
            keys,
            next_page_token,
        })
    }

    /// Revokes key `id` (again: unchanged).
    pub async fn revoke(&self, id: &str, now: DateTime<Utc>) -> Result<ApiKey, ServiceError> {
        let _changes = self.changes.lock().await;
        let key = self
            .store
            .revoke_key(id, now)
            .await?
            .ok_or_else(|| not_found(id))?;
        if let Some(mut cached) = self.keys.get_mut(id) {
            let hash = cached.hash;
            *cached = entry(Arc::new(key.clone()), hash);
        }
        Ok(key)
    }

    /// Reloads key `id` after another process changed it.
    pub async fn refresh(&self, id: &str) -> Result<(), ServiceError> {
        let _changes = self.changes.lock().await;
        match self.store.get_key(id).await? {
            Some(stored) => self.cache(stored),
            None => {
                if let Some((_, entry)) = self.keys.remove(id) {
                    self.by_hash.remove(&entry.hash);
                }
            }
        }
        Ok(())
    }

    /// Reloads every key (after falling too far behind the change log).
    pub async fn refresh_all(&self) -> Result<(), ServiceError> {
        let _changes = self.changes.lock().await;
        let stored = self.store.load_keys().await?;
        self.keys.clear();
        self.by_hash.clear();
        for key in stored {
            self.cache(key);
        }
        Ok(())
    }

    /// The caller a secret (the `authorization` header's token) belongs to, if the key
    /// is usable at `now` and under its rate limit.
    pub fn authenticate(&self, secret: &str, now: DateTime<Utc>) -> Result<Caller, AuthError> {
        if !secret.starts_with(SECRET_PREFIX) {
            return Err(AuthError::Unknown);
        }
        let hash = hash_secret(secret);
        let id = self
            .by_hash
            .get(&hash)
            .map(|id| id.clone())
            .ok_or(AuthError::Unknown)?;
        let caller = {
            let entry = self.keys.get(&id).ok_or(AuthError::Unknown)?;
            if !entry.hash.matches(&hash) {
                return Err(AuthError::Unknown);
            }
            entry.caller.clone()
        };
        let key = caller.key.as_deref().ok_or(AuthError::Unknown)?;
        if let Some(at) = key.revoked_at {
            let name = key.name.clone();
            return Err(AuthError::Revoked { name, at });
        }
        if let Some(at) = key.expires_at.filter(|at| *at <= now) {
            let name = key.name.clone();
            return Err(AuthError::Expired { name, at });
        }
        if key.requests_per_second > 0 {
            self.admit(key)?;
        }
        self.note_use(key, now);
        Ok(caller)
    }

    /// Takes a token of the key's bucket (one second's calls, refilled continuously).
    fn admit(&self, key: &ApiKey) -> Result<(), AuthError> {
        let limit = f64::from(key.requests_per_second);
        let bucket = self.buckets.entry(key.id.clone()).or_insert_with(|| {
            Mutex::new(Bucket {
                tokens: limit,
                refilled: Instant::now(),
            })
        });
        let mut bucket = bucket.lock().expect("rate bucket lock");
        let now = Instant::now();
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.refilled).as_secs_f64() * limit).min(limit);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(AuthError::RateLimited {
            name: key.name.clone(),
            limit: key.requests_per_second,
            retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / limit),
        })
    }

    /// Remembers a use for the next flush, when the stored one is older than the
    /// resolution (so a busy key costs one write a minute, not one per call).
    fn note_use(&self, key: &ApiKey, now: DateTime<Utc>) {
        let resolution = chrono::Duration::from_std(LAST_USED_RESOLUTION).unwrap_or_default();
        if key.last_used_at.is_some_and(|at| now - at < resolution) {
            return;
        }
        self.uses.insert(key.id.clone(), now);
        if let Some(mut cached) = self.keys.get_mut(&key.id) {
            let mut used = cached.api_key().clone();
            used.last_used_at = Some(now);
            let hash = cached.hash;
            *cached = entry(Arc::new(used), hash);
        }
    }

    /// Writes the uses noted since the last flush.
    pub async fn flush_uses(&self) -> Result<(), ServiceError> {
        let uses: Vec<(String, DateTime<Utc>)> = self
            .uses
            .iter()
            .map(|entry| (entry.key().clone(), *entry.value()))
            .collect();
        if uses.is_empty() {
            return Ok(());
        }
        self.store.record_use(&uses).await?;
        for (id, at) in uses {
            self.uses.remove_if(&id, |_, noted| *noted == at);
        }
        Ok(())
    }
}

/// A checked key for `spec` with a new secret.
fn new_key(spec: KeySpec, now: DateTime<Utc>) -> Result<(StoredKey, String), ServiceError> {
    let mut violations = Vec::new();
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "._@:/-".contains(c);
    if spec.name.is_empty()
        || spec.name.chars().count() > MAX_NAME
        || !spec.name.chars().all(name_ok)
    {
        violations.push(FieldViolation::new(
            "name",
            format!("1-{MAX_NAME} characters from [A-Za-z0-9._@:/-]"),
        ));
    }
    if spec.role.is_none() {
        violations.push(FieldViolation::new(
            "role",
            "required: ROLE_READER, ROLE_APP, ROLE_EDITOR or ROLE_ADMIN",
        ));
    }
    if spec.description.chars().count() > MAX_DESCRIPTION {
        violations.push(FieldViolation::new(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    } else if spec.description.contains('\0') {
        violations.push(FieldViolation::new("description", llmops_core::NUL_REFUSED));
    }
    if spec.expires_at.is_some_and(|at| at <= now) {
        violations.push(FieldViolation::new("expires_at", "must be in the future"));
    }
    if !violations.is_empty() {
        return Err(ServiceError::InvalidArgument(violations));
    }
    let (secret, secret_prefix) = new_secret();
    let key = ApiKey {
        id: format!("key_{}", Uuid::now_v7().simple()),
        name: spec.name,
        role: spec.role.expect("checked above"),
        description: spec.description,
        created_at: now,
        expires_at: spec.expires_at,
        revoked_at: None,
        last_used_at: None,
        secret_prefix,
        requests_per_second: spec.requests_per_second,
    };
    let stored = StoredKey {
        key,
        secret_hash: hash_secret(&secret).to_hex(),
    };
    Ok((stored, secret))
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use llmops_core::StoreError;

    use super::*;

    /// Keys in a vector: enough to drive the service.
    #[derive(Default)]
    struct Memory(Mutex<Vec<StoredKey>>);

    #[async_trait]
    impl KeyStore for Memory {
        async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
            let mut keys = self.0.lock().unwrap();
            if keys.iter().any(|k| k.key.name == key.key.name) {
                return Err(StoreError::Duplicate("name".into()));
            }
            keys.push(key.clone());
            Ok(())
        }
        async fn insert_first_admin(
            &self,
            key: &StoredKey,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let usable = self.0.lock().unwrap().iter().any(|k| {
                k.key.role == Role::Admin
                    && k.key.revoked_at.is_none()
                    && k.key.expires_at.is_none_or(|at| at > now)
            });
            if usable {
                return Ok(false);
            }
            self.insert_key(key).await.map(|()| true)
        }
        async fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|k| k.key.id == id)
                .cloned())
        }
        async fn revoke_key(
            &self,
            id: &str,
            at: DateTime<Utc>,
        ) -> Result<Option<ApiKey>, StoreError> {
            let mut keys = self.0.lock().unwrap();
            let Some(stored) = keys.iter_mut().find(|k| k.key.id == id) else {
                return Ok(None);
            };
            stored.key.revoked_at.get_or_insert(at);
            Ok(Some(stored.key.clone()))
        }
        async fn record_use(&self, uses: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
            let mut keys = self.0.lock().unwrap();
            for (id, at) in uses {
                if let Some(stored) = keys.iter_mut().find(|k| k.key.id == *id) {
                    stored.key.last_used_at = Some(*at);
                }
            }
            Ok(())
        }
    }

    fn spec(name: &str, role: Role) -> KeySpec {
        KeySpec {
            name: name.into(),
            role: Some(role),
            ..KeySpec::default()
        }
    }

    async fn service() -> (Arc<Memory>, KeyService) {
        let store = Arc::new(Memory::default());
        let service = KeyService::open(store.clone()).await.unwrap();
        (store, service)
    }

    #[tokio::test]
    async fn a_secret_authenticates_its_key_until_revoked_or_expired() {
        let (store, keys) = service().await;
        let now = Utc::now();
        let (key, secret) = keys.create(spec("ci", Role::Editor), now).await.unwrap();
        assert_eq!(
            store.load_keys().await.unwrap()[0].secret_hash,
            hash_secret(&secret).to_hex()
        );
        assert!(!format!("{:?}", store.load_keys().await.unwrap()).contains(&secret));
        let caller = keys.authenticate(&secret, now).unwrap();
        assert_eq!((caller.role, &*caller.identity), (Role::Editor, "ci"));
        assert_eq!(
            keys.authenticate("llmops_other", now),
            Err(AuthError::Unknown)
        );
        assert_eq!(keys.authenticate("Basic x", now), Err(AuthError::Unknown));

        keys.revoke(&key.id, now).await.unwrap();
        assert!(matches!(
            keys.authenticate(&secret, now),
            Err(AuthError::Revoked { .. })
        ));

        let expires_at = now + chrono::Duration::seconds(60);
        let (_, expiring) = keys
            .create(
                KeySpec {
                    expires_at: Some(expires_at),
                    ..spec("temp", Role::Reader)
                },
                now,
            )
            .await
            .unwrap();
        assert!(keys.authenticate(&expiring, now).is_ok());
        assert_eq!(
            keys.authenticate(&expiring, expires_at),
            Err(AuthError::Expired {
                name: "temp".into(),
                at: expires_at
            })
        );
    }

    #[tokio::test]
    async fn bad_specs_are_refused_with_every_field_named() {
        let (_, keys) = service().await;
        let now = Utc::now();
        let bad = KeySpec {
            name: "has space".into(),
            role: None,
            description: "x".repeat(2000),
            expires_at: Some(now),
            requests_per_second: 0,
        };
        let ServiceError::InvalidArgument(violations) = keys.create(bad, now).await.unwrap_err()
        else {
            panic!("not invalid");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["name", "role", "description", "expires_at"]);
        keys.create(spec("twice", Role::App), now).await.unwrap();
        assert!(matches!(
            keys.create(spec("twice", Role::App), now).await,
            Err(ServiceError::AlreadyExists(_))
        ));
    }

    #[tokio::test]
    async fn a_key_past_its_rate_limit_is_told_when_to_retry() {
        let (_, keys) = service().await;
        let now = Utc::now();
        let (_, secret) = keys
            .create(
                KeySpec {
                    requests_per_second: 3,
                    ..spec("batch", Role::App)
                },
                now,
            )
            .await
            .unwrap();
        for _ in 0..3 {
            keys.authenticate(&secret, now).unwrap();
        }
        let Err(AuthError::RateLimited { retry_after, .. }) = keys.authenticate(&secret, now)
        else {
            panic!("a fourth call in the same instant was admitted");
        };
        assert!(retry_after <= Duration::from_millis(334), "{retry_after:?}");
    }

    #[tokio::test]
    async fn uses_are_written_coarsely_and_listing_pages_newest_first() {
        let (store, keys) = service().await;
        let start = Utc::now();
        let mut secrets = Vec::new();
        for n in 0..5 {
            let at = start + chrono::Duration::seconds(n);
            secrets.push(
                keys.create(spec(&format!("k{n}"), Role::Reader), at)
                    .await
                    .unwrap(),
            );
        }
        keys.authenticate(&secrets[0].1, start).unwrap();
        keys.authenticate(&secrets[0].1, start + chrono::Duration::seconds(1))
            .unwrap();
        keys.flush_uses().await.unwrap();
        let stored = store.get_key(&secrets[0].0.id).await.unwrap().unwrap();
        // The second use came within the resolution of the first: not written.
        assert_eq!(stored.key.last_used_at, Some(start));

        let first = keys.list(2, "").unwrap();
        let names: Vec<&str> = first.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["k4", "k3"]);
        let second = keys.list(2, &first.next_page_token).unwrap();
        let third = keys.list(2, &second.next_page_token).unwrap();
        assert_eq!(third.keys.len(), 1);
        assert!(third.next_page_token.is_empty());
        assert!(keys.list(2, "key_unknown").is_err());
    }

    #[tokio::test]
    async fn bootstrap_stores_one_usable_admin() {
        let store = Memory::default();
        let now = Utc::now();
        let (key, secret) = KeyService::bootstrap(&store, "admin", now).await.unwrap();
        assert_eq!(key.role, Role::Admin);
        assert!(secret.starts_with(SECRET_PREFIX));
        assert!(matches!(
            KeyService::bootstrap(&store, "admin2", now).await,
            Err(ServiceError::FailedPrecondition(_))
        ));
    }
}
