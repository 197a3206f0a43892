//! llmops: a self-hosted gRPC service for running LLM applications in production.
//!
//! The binary's pieces live here so that the end-to-end tests can start the real server
//! in-process: [`config`] (layered configuration), [`server`] (assembly, health,
//! reflection, shutdown), [`grpc`] (the adapters between protobuf and the domain crates),
//! [`telemetry`] (logs and Prometheus metrics), [`cli`] (client subcommands) and
//! [`bench`] (the load tool).

mod auto_complete;
pub mod bench;
pub mod cli;
pub mod config;
mod generation_metrics;
pub mod grpc;
pub mod memory;
mod online;
pub mod prompt_versions;
pub mod release_guard;
pub mod server;
pub mod telemetry;

/// Code generated from `proto/llmops/v1`.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("llmops.v1");

    /// The encoded descriptor set of every llmops proto, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("llmops_descriptor");
}
