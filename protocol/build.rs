//! Compiles `proto/gateway.proto` with a pure-Rust protobuf compiler (protox),
//! so no `protoc` binary is needed, and generates the Rust types with prost-build.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    const PROTO: &str = "proto/gateway.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile([PROTO], ["proto"])?;
    let mut config = prost_build::Config::new();
    // Every `bytes` field becomes `bytes::Bytes`: a Push payload is shared, not copied.
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
