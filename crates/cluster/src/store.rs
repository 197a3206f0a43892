//! What membership, leases and the change log need from the database.

use std::time::Duration;

use async_trait::async_trait;
pub use llmops_core::StoreError;

/// A registered process, as stored. Times are microseconds of the database's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// Unique per process start.
    pub id: String,
    /// Where it serves gRPC.
    pub address: String,
    /// Its llmops version.
    pub version: String,
    /// When it started.
    pub started_at_us: i64,
    /// Its latest heartbeat.
    pub heartbeat_at_us: i64,
    /// Whether it shut down cleanly.
    pub stopped: bool,
}

/// A background role's lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The role's name.
    pub role: String,
    /// The replica id holding (or last holding) it.
    pub holder: String,
    /// When the holder took it.
    pub acquired_at_us: i64,
    /// When it lapses unless renewed.
    pub expires_at_us: i64,
}

/// A cached definition changed: `entity` (e.g. `schedule`) with key `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Dense and in commit order.
    pub sequence: u64,
    /// What kind of thing changed.
    pub entity: String,
    /// Which one.
    pub key: String,
}

/// Membership, leases and the change log in the shared database.
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// The database's clock, in microseconds: every replica measures leases and
    /// heartbeats by it, so their own clocks need not agree.
    async fn database_now_us(&self) -> Result<i64, StoreError>;

    /// Registers a starting replica (its heartbeat is now).
    async fn register_replica(
        &self,
        id: &str,
        address: &str,
        version: &str,
    ) -> Result<(), StoreError>;

    /// Records that replica `id` is alive now.
    async fn heartbeat(&self, id: &str) -> Result<(), StoreError>;

    /// Marks replica `id` stopped and frees its leases (a clean shutdown).
    async fn stop_replica(&self, id: &str) -> Result<(), StoreError>;

    /// Forgets replicas stopped, or silent, for longer than `age`.
    async fn prune_replicas(&self, age: Duration) -> Result<u64, StoreError>;

    /// Takes or renews `role`'s lease for `holder` until `lease` from now, if it is free
    /// (never taken, expired, or already `holder`'s); true when `holder` holds it.
    async fn acquire_lease(
        &self,
        role: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Every registered replica, oldest first.
    async fn replicas(&self) -> Result<Vec<ReplicaRow>, StoreError>;

    /// Every lease, by role.
    async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError>;

    /// Up to `limit` changes after `after`, oldest first.
    async fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError>;

    /// The sequence of the latest change (0 when none).
    async fn change_head(&self) -> Result<u64, StoreError>;

    /// Deletes changes older than `age`; a process that fell further behind reloads
    /// everything instead.
    async fn prune_changes(&self, age: Duration) -> Result<u64, StoreError>;
}
