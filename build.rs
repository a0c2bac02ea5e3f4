//! Generates the gRPC code for `proto/lvmd.proto` with the system's protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/lvmd.proto");
    tonic_build::configure().compile_protos(&["proto/lvmd.proto"], &["proto"])?;
    Ok(())
}
