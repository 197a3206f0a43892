//! Several llmops processes serving one deployment from one database.
//!
//! Nothing here is consensus of its own: the database decides. Each process registers
//! itself as a replica and heartbeats ([`Membership`]); each background role runs on the
//! one replica holding the role's lease, a row it renews well within `leader_lease` and
//! another replica takes once it expires ([`Role`], [`Leadership`]); and definitions that
//! processes cache are reloaded from a change log written in the changing transaction
//! ([`Change`]).

mod membership;
mod store;

pub use membership::{
    run_while_held, ClusterStatus, Leadership, Membership, MembershipSettings, ReplicaStatus,
};
pub use store::{Change, ClusterStore, LeaseRow, ProbeRow, ReplicaRow, StoreError};

use std::fmt;

/// A background duty that must run on exactly one replica at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Fires due schedules.
    Scheduler,
    /// Delivers the webhook outbox.
    WebhookSender,
    /// Prunes resolved alerts, old events and the change log.
    Retention,
    /// Raises and resolves experiment alerts.
    ExperimentMonitor,
    /// Probes the providers' health for every replica.
    ProviderProber,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 5] = [
        Role::Scheduler,
        Role::WebhookSender,
        Role::Retention,
        Role::ExperimentMonitor,
        Role::ProviderProber,
    ];

    /// The role's name in the database and in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::WebhookSender => "webhook-sender",
            Role::Retention => "retention",
            Role::ExperimentMonitor => "experiment-monitor",
            Role::ProviderProber => "provider-prober",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
