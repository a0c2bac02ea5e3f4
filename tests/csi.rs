//! The CSI suite (`tests/csi_suite`) on the host: `lvmd-csi` against `lvmd --simulate`,
//! both over their real unix sockets in a temp dir, no root. The simulated daemon's
//! mounts exist only in its memory, so the plugin runs with `--mount-check lvmd`; the
//! same cases run against the real daemon in the VM (`tests/vm_csi.rs`).
#![allow(clippy::result_large_err)]

mod common;
#[macro_use]
mod csi_suite;

use csi_suite::{Env, NODE};
use lvmd::csi::pb::controller_client::ControllerClient;
use lvmd::csi::pb::identity_client::IdentityClient;
use lvmd::csi::pb::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

csi_cases!(Env::simulated());

fn wait_for(path: &std::path::Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The resizer's pod runs the plugin with no lvmd beside it: with `--controller-only`
/// Probe says ready (csi-resizer waits for that) and ControllerExpandVolume answers;
/// without it, a missing lvmd means not ready.
#[test]
fn controller_only_plugin_is_ready_without_lvmd() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for controller_only in [true, false] {
        let sock = dir.path().join(format!("csi-{controller_only}.sock"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lvmd-csi"));
        cmd.arg(format!("--csi-endpoint=unix://{}", sock.display()))
            .arg("--lvmd-socket")
            .arg(dir.path().join("no-lvmd.sock"))
            .args(["--node-id", NODE, "--metrics-address="])
            .stderr(Stdio::null());
        if controller_only {
            cmd.arg("--controller-only");
        }
        let mut child = cmd.spawn().unwrap();
        wait_for(&sock, "lvmd-csi");
        let ch = rt.block_on(lvmd::api::client::connect(&sock)).unwrap();
        let ready = rt
            .block_on(IdentityClient::new(ch.clone()).probe(ProbeRequest {}))
            .unwrap()
            .into_inner()
            .ready;
        assert_eq!(ready, Some(controller_only));
        if controller_only {
            let r = rt
                .block_on(ControllerClient::new(ch).controller_expand_volume(
                    ControllerExpandVolumeRequest {
                        volume_id: format!("{NODE}#ssd#pvc-1"),
                        capacity_range: Some(CapacityRange {
                            required_bytes: 10 << 20,
                            limit_bytes: 0,
                        }),
                        ..Default::default()
                    },
                ))
                .unwrap()
                .into_inner();
            assert!(r.node_expansion_required);
            assert_eq!(r.capacity_bytes, 12 << 20);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Both killed: the simulated lvmd comes back empty (the real one keeps its volumes:
/// `ephemeral_crash_cleanup` restarts both in the VM). kubelet's unpublish of a volume
/// that is gone with it is still fine, and publishing again works.
#[test]
fn ephemeral_unpublish_after_both_restarted() {
    use csi_suite::{eph_id, eph_publish, eph_unpublish, lvmd_lv, publish, wait_ready};
    use lvmd::csi::volume_id::ephemeral_lv_name;
    let mut e = Env::simulated();
    let vid = eph_id(20);
    let r = eph_publish(&e, &vid, &[("size", "8Mi")]);
    publish(&e, &r).unwrap();
    e.crash_and_restart(true);
    wait_ready(&e);
    for _ in 0..2 {
        eph_unpublish(&e, &vid, &r.target_path).unwrap();
    }
    publish(&e, &r).unwrap();
    assert!(lvmd_lv(&e, &ephemeral_lv_name(&vid)).is_some());
    eph_unpublish(&e, &vid, &r.target_path).unwrap();
    assert!(lvmd_lv(&e, &ephemeral_lv_name(&vid)).is_none());
}
