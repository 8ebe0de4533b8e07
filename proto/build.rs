//! Compiles `netmoe/v1/*.proto` with the pure-Rust `protox` parser, so no
//! system `protoc` is needed, and saves the descriptor set for reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "netmoe/v1/edge.proto",
        "netmoe/v1/link.proto",
        "netmoe/v1/coordinator.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("netmoe_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
