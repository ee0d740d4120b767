//! Compiles the contracts with protox (a pure-Rust protobuf compiler, so no system `protoc` is
//! needed), generates the prost messages and tonic clients and servers, and writes the encoded
//! descriptor set (with comments) for reflection and the gateway's docs.

use std::{env, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "todo/auth/v1/auth_service.proto",
    "todo/task/v1/task_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }

    let descriptors = protox::compile(PROTOS, [&root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("todo_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
