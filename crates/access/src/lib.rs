//! Who may call llmops. An API key has a role ([`Role`], ordered: reader, app, editor,
//! admin); every RPC declares the least role it needs. Secrets are long random tokens
//! (`llmops_...`) shown once at creation and stored only as a SHA-256 hash: they carry
//! 256 random bits, so a fast hash is as safe as a slow one and keeps every call cheap.
//! [`KeyService`] keeps every key in memory, so checking a call touches no database;
//! other replicas' changes (a revocation) arrive through the change log.

mod audit;
mod key;
mod role;
mod secret;
mod service;
mod store;

pub use audit::{AuditEvent, AuditLog, AuditQuery, AuditStore};
pub use key::{ApiKey, Caller, KeySpec};
pub use role::Role;
pub use secret::{hash_secret, SecretHash, SECRET_PREFIX};
pub use service::{AuthError, KeyPage, KeyService, LAST_USED_RESOLUTION};
pub use store::{KeyStore, StoredKey};
