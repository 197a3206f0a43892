//! API keys as callers and listings see them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::role::Role;

/// An API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Assigned at creation (`key_` and a UUID v7).
    pub id: String,
    /// Unique among keys.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// What it is for.
    pub description: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used, to within [`crate::KeyService`]'s flush interval.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The first characters of its secret.
    pub secret_prefix: String,
    /// Calls per second it may make on each replica; 0: no limit.
    pub requests_per_second: u32,
}

/// What a new key should be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySpec {
    /// 1-128 characters from `[A-Za-z0-9._@:/-]`.
    pub name: String,
    /// Required.
    pub role: Option<Role>,
    /// At most 1,024 characters.
    pub description: String,
    /// In the future, when set.
    pub expires_at: Option<DateTime<Utc>>,
    /// 0: no limit.
    pub requests_per_second: u32,
}

/// Who is calling: a key, or nobody in particular when authentication is off. Cheap to
/// clone (every call carries one): the key is shared with the key service's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key the call came with; `None` without authentication.
    pub key: Option<Arc<ApiKey>>,
    /// What the caller may do.
    pub role: Role,
    /// How logs, audit entries and actor fields name the caller.
    pub identity: Arc<str>,
}

/// The identity of the caller when authentication is off.
const ANONYMOUS: &str = "anonymous";

impl Caller {
    /// A caller when authentication is off: anyone may do anything.
    pub fn anonymous() -> Self {
        Self {
            key: None,
            role: Role::Admin,
            identity: Arc::from(ANONYMOUS),
        }
    }

    /// The caller of a client certificate whose identity `subject` has `role`.
    pub fn of_certificate(subject: &str, role: Role) -> Self {
        Self {
            key: None,
            role,
            identity: Arc::from(subject),
        }
    }

    /// How actor fields (author, acknowledged by, label history) name the caller:
    /// the key's name or the certificate identity; `None` without authentication.
    pub fn actor(&self) -> Option<&str> {
        match &self.key {
            Some(key) => Some(key.name.as_str()),
            None => (&*self.identity != ANONYMOUS).then_some(&*self.identity),
        }
    }

    /// The caller of a key.
    pub fn of_key(key: Arc<ApiKey>) -> Self {
        Self {
            role: key.role,
            identity: Arc::from(key.name.as_str()),
            key: Some(key),
        }
    }
}
