//! `llmops.v1.ClusterService` on top of this process's membership of the deployment.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use llmops_cluster::{ClusterStatus, Membership};
use llmops_core::ServiceError;
use tonic::{Request, Response, Status};

use crate::grpc::convert::timestamp;
use crate::grpc::status::OrStatus as _;
use crate::pb;
use crate::pb::cluster_service_server::ClusterService as ClusterServiceRpc;

/// The ClusterService adapter.
#[derive(Debug, Clone)]
pub struct ClusterApi {
    membership: Arc<Membership>,
}

impl ClusterApi {
    /// An adapter over this process's membership.
    pub fn new(membership: Arc<Membership>) -> Self {
        Self { membership }
    }
}

fn time(micros: i64) -> prost_types::Timestamp {
    timestamp(DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default())
}

fn status_to_pb(status: ClusterStatus) -> pb::ListReplicasResponse {
    let now = status.now_us;
    pb::ListReplicasResponse {
        replicas: status
            .replicas
            .into_iter()
            .map(|replica| {
                let state = if replica.row.stopped {
                    pb::ReplicaState::Stopped
                } else if replica.alive {
                    pb::ReplicaState::Alive
                } else {
                    pb::ReplicaState::Dead
                };
                pb::Replica {
                    id: replica.row.id,
                    address: replica.row.address,
                    version: replica.row.version,
                    started_at: Some(time(replica.row.started_at_us)),
                    last_heartbeat_at: Some(time(replica.row.heartbeat_at_us)),
                    state: state.into(),
                    roles: replica.roles,
                    is_self: replica.is_self,
                }
            })
            .collect(),
        leases: status
            .leases
            .into_iter()
            .map(|lease| pb::RoleLease {
                held: lease.expires_at_us > now,
                role: lease.role,
                replica_id: lease.holder,
                acquired_at: Some(time(lease.acquired_at_us)),
                expires_at: Some(time(lease.expires_at_us)),
            })
            .collect(),
        observed_at: Some(time(now)),
    }
}

#[tonic::async_trait]
impl ClusterServiceRpc for ClusterApi {
    async fn list_replicas(
        &self,
        _request: Request<pb::ListReplicasRequest>,
    ) -> Result<Response<pb::ListReplicasResponse>, Status> {
        let status = self
            .membership
            .status()
            .await
            .map_err(ServiceError::from)
            .or_status()?;
        Ok(Response::new(status_to_pb(status)))
    }
}
