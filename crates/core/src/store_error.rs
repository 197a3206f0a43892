//! The one storage error every store trait returns.

/// Why a store could not do what was asked, in terms a domain service can answer a client
/// with. Messages never carry database text (table names, SQL, driver errors): backends
/// log those with a correlation id and put only the id in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A unique key is already taken: another writer created the same thing first.
    #[error("{0}")]
    Duplicate(String),
    /// The row to change does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change would break a stored invariant: it refers to something that does not
    /// exist, or removes something still referenced. Retrying will not help; the client
    /// must change something first.
    #[error("{0}")]
    Conflict(String),
    /// The database failed or could not be reached; nothing was changed, and retrying
    /// may succeed.
    #[error("{0}")]
    Unavailable(String),
}
