//! Generates the gRPC code for `proto/lvmd.proto` (the daemon's API) and `proto/csi.proto`
//! (the CSI v1 subset lvmd-csi serves) with the system's protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/lvmd.proto");
    println!("cargo:rerun-if-changed=proto/csi.proto");
    println!("cargo:rerun-if-changed=proto/google/protobuf/wrappers.proto");
    tonic_build::configure()
        .compile_protos(&["proto/lvmd.proto", "proto/csi.proto"], &["proto"])?;
    Ok(())
}
