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

/// A provider's health as the prober last found it, shared with the other replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRow {
    /// The provider's configured name.
    pub provider: String,
    /// Whether it counts as serving.
    pub healthy: bool,
    /// Failed probes since the last successful one.
    pub consecutive_failures: u32,
    /// Why the last probe failed, while probes are failing.
    pub last_error: String,
    /// When the last probe ended, in microseconds since the Unix epoch.
    pub probed_at_us: i64,
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

    /// Takes one of `provider`'s first `capacity` call slots for `holder` until `lease`
    /// from now, if one is free (never taken, released, or its lease lapsed); its
    /// number, or `None` while every one is held.
    async fn take_call_slot(
        &self,
        provider: &str,
        capacity: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<u32>, StoreError>;

    /// Frees `provider`'s call slot `slot` if `holder` still holds it.
    async fn release_call_slot(
        &self,
        provider: &str,
        slot: u32,
        holder: &str,
    ) -> Result<(), StoreError>;

    /// Extends every call slot `holder` holds to `lease` from now; how many it holds.
    async fn renew_call_slots(&self, holder: &str, lease: Duration) -> Result<u64, StoreError>;

    /// Reserves the start of one call to `provider`, `spacing` after the start the
    /// previous reservation got (or now, when that is past); how long to wait for it.
    async fn reserve_call_start(
        &self,
        provider: &str,
        spacing: Duration,
    ) -> Result<Duration, StoreError>;

    /// Replaces the stored health of each provider in `probes`.
    async fn store_probes(&self, probes: &[ProbeRow]) -> Result<(), StoreError>;

    /// Every provider's stored health.
    async fn probes(&self) -> Result<Vec<ProbeRow>, StoreError>;
}
