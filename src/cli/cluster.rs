//! `llmops cluster ...`: the replicas of a deployment and the background roles they hold.

use std::io::{self, Write};

use clap::{Args, Subcommand};

use crate::cli::output::{emit, table, write_table};
use crate::cli::values::rfc3339;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::cluster_service_client::ClusterServiceClient;

/// `llmops cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// List the replicas (alive, stopped or dead), their heartbeats and the background
    /// roles each holds, then every role's lease.
    ///
    /// A replica silent for `leader_lease` is dead and its roles are free; another
    /// replica takes them at its next renewal. Any replica gives the same answer.
    Status,
}

/// Runs an `llmops cluster` command.
pub async fn run(args: ClusterArgs, options: &ClientOptions) -> anyhow::Result<()> {
    let mut client = ClusterServiceClient::new(connect(options).await?);
    match args.command {
        ClusterCommand::Status => {
            let status = client
                .list_replicas(pb::ListReplicasRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if options.json {
                emit(|out| crate::cli::output::message(out, &status))
            } else {
                emit(|out| status_tables(out, &status))
            }
        }
    }
}

fn state_name(value: i32) -> &'static str {
    match pb::ReplicaState::try_from(value) {
        Ok(pb::ReplicaState::Alive) => "alive",
        Ok(pb::ReplicaState::Stopped) => "stopped",
        Ok(pb::ReplicaState::Dead) => "dead",
        _ => "unspecified",
    }
}

fn status_tables(out: &mut dyn Write, status: &pb::ListReplicasResponse) -> io::Result<()> {
    let mut rows = table(&[
        "REPLICA",
        "ADDRESS",
        "VERSION",
        "STATE",
        "STARTED",
        "LAST HEARTBEAT",
        "ROLES",
    ]);
    for replica in &status.replicas {
        let id = if replica.is_self {
            format!("{} (answering)", replica.id)
        } else {
            replica.id.clone()
        };
        rows.add_row(vec![
            id,
            replica.address.clone(),
            replica.version.clone(),
            state_name(replica.state).to_owned(),
            rfc3339(replica.started_at.as_ref()),
            rfc3339(replica.last_heartbeat_at.as_ref()),
            if replica.roles.is_empty() {
                "-".to_owned()
            } else {
                replica.roles.join(", ")
            },
        ]);
    }
    write_table(out, rows)?;
    if status.leases.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut rows = table(&["ROLE", "REPLICA", "HELD", "EXPIRES"]);
    for lease in &status.leases {
        rows.add_row(vec![
            lease.role.clone(),
            lease.replica_id.clone(),
            if lease.held { "yes" } else { "no (free)" }.to_owned(),
            rfc3339(lease.expires_at.as_ref()),
        ]);
    }
    write_table(out, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing::text;

    #[test]
    fn the_tables_show_each_replica_with_its_roles_and_each_lease() {
        let status = pb::ListReplicasResponse {
            replicas: vec![
                pb::Replica {
                    id: "r1".into(),
                    address: "10.0.0.1:50051".into(),
                    version: "0.1.0".into(),
                    state: pb::ReplicaState::Alive as i32,
                    roles: vec!["scheduler".into(), "retention".into()],
                    is_self: true,
                    ..Default::default()
                },
                pb::Replica {
                    id: "r2".into(),
                    address: "10.0.0.2:50051".into(),
                    version: "0.1.0".into(),
                    state: pb::ReplicaState::Dead as i32,
                    ..Default::default()
                },
            ],
            leases: vec![pb::RoleLease {
                role: "scheduler".into(),
                replica_id: "r1".into(),
                held: true,
                ..Default::default()
            }],
            observed_at: None,
        };
        let out = text(|out| status_tables(out, &status));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("REPLICA"), "{out}");
        assert!(lines[1].contains("r1 (answering)"), "{out}");
        assert!(lines[1].contains("alive"), "{out}");
        assert!(lines[1].contains("scheduler, retention"), "{out}");
        assert!(lines[2].contains("dead"), "{out}");
        assert!(lines[4].starts_with("ROLE"), "{out}");
        assert!(
            lines[5].contains("scheduler") && lines[5].contains("yes"),
            "{out}"
        );
    }
}
