//! The CSI suite (`tests/csi_suite`) against the real `lvmd` on loop devices in the test
//! VM, with `lvmd-csi` in its own mount namespace as in its pod: the kubelet directory
//! is a slave of the host's (`mountPropagation: HostToContainer`), and the plugin's
//! default `--mount-check mountinfo` confirms every mount the daemon made. Beyond the
//! RPCs, the cases check data, `statfs` sizes after online grows of ext4 and xfs,
//! writes refused on read-only publishes, and lvm2's view. One more case: with no
//! propagation, staging fails FAILED_PRECONDITION and leaves nothing mounted.
//!
//! VM only, like `tests/vm_daemon.rs` (`test = false`; it fails outside the VM):
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo test --test vm_csi
//! ```
#![allow(clippy::result_large_err)]

mod common;
#[macro_use]
mod csi_suite;

use csi_suite::{block_cap, code, mount_cap, req, stage_req, Env, MIB};
use lvmd::csi::pb::*;
use tonic::Code;

csi_cases!(Env::real());

/// The snapshot RPCs and volume sources (`csi_suite::snapshots`), then the
/// GroupController's (`csi_suite::group_snapshots`, in the same env: no second daemon
/// and pool to start), on the real daemon's thin pool: every create_snap, delete and
/// restore through the kernel's pool.
#[test]
fn snapshots_and_volume_sources_follow_the_spec() {
    let e = Env::real_thin();
    csi_suite::snapshots::snapshot_rules(&e);
    csi_suite::group_snapshots::group_snapshot_rules(&e);
}

#[test]
fn no_propagation_fails_staging_and_leaves_nothing_mounted() {
    let e = Env::real_with_propagation("private");
    let id = e
        .create(req("pvc-private", 32 * MIB, &[]))
        .unwrap()
        .volume_id;
    let mut node = e.node();
    let err = code(e.rt.block_on(node.node_stage_volume(stage_req(&e, &id, mount_cap("ext4")))));
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("mountPropagation") && err.message().contains("HostToContainer"),
        "{err:?}"
    );
    assert_eq!(
        e.host_mounts(),
        Vec::<std::path::PathBuf>::new(),
        "left mounted on the host"
    );
    // A block publish is a mount too: the same check, nothing left behind.
    let target = e.path("plugins/kubernetes.io/csi/volumeDevices/publish/pv/uid");
    let err = code(
        e.rt.block_on(node.node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.clone(),
            target_path: target.clone(),
            volume_capability: Some(block_cap()),
            ..Default::default()
        })),
    );
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(e.host_mounts(), Vec::<std::path::PathBuf>::new());
    assert!(
        !std::path::Path::new(&target).exists(),
        "target left behind"
    );
    assert_eq!(e.lvm2_lvs(0).len(), 1);
    e.delete(&id);
    assert!(e.lvm2_lvs(0).is_empty());
}
