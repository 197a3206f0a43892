//! This process as one replica of a deployment: registration, heartbeats and the leases
//! of background roles.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{ClusterStore, LeaseRow, ReplicaRow, StoreError};
use crate::Role;

/// How long stopped or silent replicas stay listed before they are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How this process takes part.
#[derive(Debug, Clone)]
pub struct MembershipSettings {
    /// How long a lease lasts unrenewed (`leader_lease`); it is renewed every third of
    /// that, and a silent replica counts as dead after it.
    pub lease: Duration,
    /// The address this process serves gRPC on.
    pub address: String,
    /// Its llmops version.
    pub version: String,
    /// Whether other processes may share the database. If not (SQLite), this process
    /// holds every role from the start and nothing is written for membership.
    pub shared: bool,
}

/// A replica as `ListReplicas` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// As stored.
    pub row: ReplicaRow,
    /// Heartbeating within the lease and not stopped.
    pub alive: bool,
    /// The roles whose unexpired lease it holds.
    pub roles: Vec<String>,
    /// Whether it is the process answering.
    pub is_self: bool,
}

/// The deployment as the database sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The database's clock when read.
    pub now_us: i64,
    /// Every registered replica, oldest first.
    pub replicas: Vec<ReplicaStatus>,
    /// Every role's lease (a role never taken has none).
    pub leases: Vec<LeaseRow>,
}

/// Whether this process holds one role; follows the lease as it is renewed or lost.
#[derive(Debug, Clone)]
pub struct Leadership {
    role: Role,
    held: watch::Receiver<bool>,
}

impl Leadership {
    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the role is held now.
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits until the role is held; never returns if the membership ended first.
    pub async fn wait_until_held(&mut self) {
        if !self.changed_to(true).await {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until the role is held or lost (`false` if the membership ended).
    async fn changed_to(&mut self, held: bool) -> bool {
        self.held.wait_for(|now| *now == held).await.is_ok()
    }
}

struct RoleState {
    held: watch::Sender<bool>,
    /// Until when this process may act on the lease it last renewed: measured from
    /// before the renewal was sent, and short of the lease by a margin, so it stops
    /// before any other replica can take the role.
    valid_until: Option<Instant>,
}

/// This process's membership of the deployment.
pub struct Membership {
    id: String,
    store: Arc<dyn ClusterStore>,
    settings: MembershipSettings,
    started_at_us: i64,
    roles: Mutex<BTreeMap<Role, RoleState>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Registers this process as replica `id` and, on a shared database, makes a first
    /// attempt at every role's lease, so a lone replica holds its roles before it serves.
    pub async fn join(
        id: String,
        store: Arc<dyn ClusterStore>,
        settings: MembershipSettings,
    ) -> Result<Arc<Self>, StoreError> {
        let started_at_us = if settings.shared {
            store
                .register_replica(&id, &settings.address, &settings.version)
                .await?;
            store.database_now_us().await?
        } else {
            wall_clock_us()
        };
        let roles = Role::ALL
            .into_iter()
            .map(|role| {
                let (held, _) = watch::channel(!settings.shared);
                (
                    role,
                    RoleState {
                        held,
                        valid_until: None,
                    },
                )
            })
            .collect();
        let membership = Arc::new(Self {
            id,
            store,
            settings,
            started_at_us,
            roles: Mutex::new(roles),
        });
        if membership.settings.shared {
            membership.contend().await;
        }
        Ok(membership)
    }

    /// This replica's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Follows whether this process holds `role`.
    pub fn leadership(&self, role: Role) -> Leadership {
        Leadership {
            role,
            held: self.roles()[&role].held.subscribe(),
        }
    }

    /// Heartbeats and renews leases every third of the lease until `stop`; then, on a
    /// shared database, marks this replica stopped and frees its leases, so another
    /// replica takes over at once instead of after the lease.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if !self.settings.shared {
            return;
        }
        let period = self.settings.lease / 3;
        let mut rounds: u64 = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
            if let Err(err) = self.store.heartbeat(&self.id).await {
                tracing::warn!(error = %err, "heartbeat failed; background roles stop when their leases lapse");
            }
            self.contend().await;
            rounds += 1;
            // About hourly at the default lease.
            if rounds % 1000 == 0 {
                if let Err(err) = self.store.prune_replicas(FORGET_AFTER).await {
                    tracing::debug!(error = %err, "forgetting old replicas failed");
                }
            }
        }
        for state in self.roles().values() {
            state.held.send_replace(false);
        }
        if let Err(err) = self.store.stop_replica(&self.id).await {
            tracing::warn!(error = %err, "could not free this replica's leases; others take over when they lapse");
        }
    }

    /// One attempt at every role's lease.
    async fn contend(&self) {
        for role in Role::ALL {
            let sent = Instant::now();
            let outcome = self
                .store
                .acquire_lease(role.as_str(), &self.id, self.settings.lease)
                .await;
            let mut roles = self.roles();
            let state = roles.get_mut(&role).expect("every role has a state");
            let held = match outcome {
                Ok(true) => {
                    // A tenth of the lease covers the renewal's own time and clock drift.
                    state.valid_until = Some(sent + self.settings.lease * 9 / 10);
                    true
                }
                Ok(false) => {
                    state.valid_until = None;
                    false
                }
                Err(err) => {
                    let valid = state
                        .valid_until
                        .is_some_and(|until| Instant::now() < until);
                    if !valid {
                        tracing::warn!(%role, error = %err, "cannot renew the lease; the role stops here");
                    }
                    valid
                }
            };
            let was = state.held.send_replace(held);
            if was != held {
                tracing::info!(%role, held, replica = %self.id, "background role {}", if held { "taken" } else { "lost" });
            }
        }
    }

    /// The deployment as the database sees it (on SQLite: this process alone).
    pub async fn status(&self) -> Result<ClusterStatus, StoreError> {
        if !self.settings.shared {
            let now_us = wall_clock_us();
            return Ok(ClusterStatus {
                now_us,
                replicas: vec![ReplicaStatus {
                    row: ReplicaRow {
                        id: self.id.clone(),
                        address: self.settings.address.clone(),
                        version: self.settings.version.clone(),
                        started_at_us: self.started_at_us,
                        heartbeat_at_us: now_us,
                        stopped: false,
                    },
                    alive: true,
                    roles: Role::ALL.iter().map(|r| r.as_str().to_owned()).collect(),
                    is_self: true,
                }],
                leases: Vec::new(),
            });
        }
        let now_us = self.store.database_now_us().await?;
        let leases = self.store.leases().await?;
        let lease_us = i64::try_from(self.settings.lease.as_micros()).unwrap_or(i64::MAX);
        let replicas = self
            .store
            .replicas()
            .await?
            .into_iter()
            .map(|row| {
                let alive = !row.stopped && row.heartbeat_at_us >= now_us - lease_us;
                let roles = leases
                    .iter()
                    .filter(|l| l.holder == row.id && l.expires_at_us > now_us)
                    .map(|l| l.role.clone())
                    .collect();
                let is_self = row.id == self.id;
                ReplicaStatus {
                    row,
                    alive,
                    roles,
                    is_self,
                }
            })
            .collect();
        Ok(ClusterStatus {
            now_us,
            replicas,
            leases,
        })
    }

    fn roles(&self) -> std::sync::MutexGuard<'_, BTreeMap<Role, RoleState>> {
        self.roles.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs a background role while this process holds it: `start` is called with a token
/// each time the role is taken, and the token is cancelled when the role is lost or at
/// `stop`; the task is awaited before the role is contended for again.
pub async fn run_while_held<F>(mut leadership: Leadership, stop: CancellationToken, mut start: F)
where
    F: FnMut(CancellationToken) -> JoinHandle<()>,
{
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            held = leadership.changed_to(true) => if !held { return },
        }
        let token = stop.child_token();
        let task = start(token.clone());
        tokio::select! {
            () = stop.cancelled() => {}
            _ = leadership.changed_to(false) => {}
        }
        token.cancel();
        let _ = task.await;
        if stop.is_cancelled() {
            return;
        }
        tracing::info!(role = %leadership.role(), "background role stopped here");
    }
}

fn wall_clock_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
