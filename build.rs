//! Compiles `proto/` into Rust without a system `protoc`, and writes the encoded
//! descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let protos = [
        "proto/llmops/v1/prompts.proto",
        "proto/llmops/v1/alerts.proto",
        "proto/llmops/v1/experiments.proto",
        "proto/llmops/v1/evaluation.proto",
        "proto/llmops/v1/providers.proto",
        "proto/llmops/v1/cluster.proto",
        "proto/llmops/v1/auth.proto",
        "proto/llmops/v1/generations.proto",
    ];
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(protos)?;
    let file_descriptors = compiler.file_descriptor_set();

    // `compile_fds` does not write the descriptor set; reflection and the server's role
    // checks (each RPC's `required_role` option) need it, so write it here. Encoded by
    // the compiler, so that custom options are kept.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("llmops_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Undecodable requests are INVALID_ARGUMENT, not INTERNAL (see src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::ProstCodec")
        // Maps in key order: what clients print and tests compare is deterministic.
        .btree_map(".")
        // `prost::Name` on every message: the CLI finds a message's descriptor by its
        // full name to print the proto3 JSON mapping (src/cli/proto_json.rs).
        .compile_fds_with_config(file_descriptors, {
            let mut config = tonic_prost_build::Config::new();
            config.enable_type_names();
            config
        })?;
    Ok(())
}
