//! Generates the gRPC code for `proto/lvmd.proto` (the daemon's API) and `proto/csi.proto`
//! (the CSI v1 subset lvmd-csi serves) with the system's protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/lvmd.proto");
    println!("cargo:rerun-if-changed=proto/csi.proto");
    println!("cargo:rerun-if-changed=proto/google/protobuf/wrappers.proto");
    println!("cargo:rerun-if-changed=proto/google/protobuf/timestamp.proto");
    // Messages carrying a key or secrets get a hand-written Debug that leaves them out
    // (src/rpc/mod.rs, src/csi/mod.rs): prost's derived one would print them.
    let mut b = tonic_build::configure();
    for m in [
        "lvmd.v1.MountVolumeRequest",
        "lvmd.v1.PublishBlockRequest",
        "lvmd.v1.ExpandVolumeRequest",
        "lvmd.v1.RekeyVolumeRequest",
        "csi.v1.CreateVolumeRequest",
        "csi.v1.DeleteVolumeRequest",
        "csi.v1.ControllerExpandVolumeRequest",
        "csi.v1.CreateSnapshotRequest",
        "csi.v1.DeleteSnapshotRequest",
        "csi.v1.ListSnapshotsRequest",
        "csi.v1.CreateVolumeGroupSnapshotRequest",
        "csi.v1.DeleteVolumeGroupSnapshotRequest",
        "csi.v1.GetVolumeGroupSnapshotRequest",
        "csi.v1.ValidateVolumeCapabilitiesRequest",
        "csi.v1.NodeStageVolumeRequest",
        "csi.v1.NodePublishVolumeRequest",
        "csi.v1.NodeExpandVolumeRequest",
    ] {
        b = b.skip_debug(m);
    }
    b.compile_protos(&["proto/lvmd.proto", "proto/csi.proto"], &["proto"])?;
    Ok(())
}
