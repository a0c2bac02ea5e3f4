//! The whole CSI path a pod's volume takes, as kubelet and the external-provisioner
//! drive it, against the lvm2-CLI path the peer drivers take for the same volume.
//!
//! - lvmd: `lvmd-csi` (in its own mount namespace, as in its pod) over its socket, and
//!   the real `lvmd` behind it: CreateVolume, NodeStageVolume (lvmd makes the
//!   filesystem and mounts it), NodePublishVolume (bind into the pod's directory), then
//!   NodeUnpublishVolume, NodeUnstageVolume and DeleteVolume (which zeroes the freed
//!   extents: lvm2's `lvremove` leaves the data on the PV).
//! - lvm2: the commands the peers run, one process each: `lvcreate -ay` (lvm2's
//!   defaults: first 4 KiB zeroed, signatures wiped), `mkfs.ext4 -q -F` or
//!   `mkfs.xfs -q -f`, `mount` on the staging path, `mount --bind` to the target, then
//!   two `umount` and `lvremove -f`.
//!
//! `csi_path_ext4` (64 MiB) and `csi_path_xfs` (320 MiB, xfsprogs' minimum is 300)
//! include mkfs; `csi_path_block` is the same path without a filesystem: a raw block
//! volume published as a device node on the pod's target file (lvm2's side: the LV's
//! node bound there). One iteration is the whole path, there and back.
//!
//! Needs device-mapper, so it runs in the test VM only (software-emulated: only the
//! ratio means anything):
//!
//! ```sh
//! cargo bench --bench csi_path --no-run
//! tests/vm/run-in-vm.sh target/release/deps/csi_path-<hash> --bench
//! ```
#![allow(clippy::result_large_err)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/csi_suite/mod.rs"]
#[allow(unused_imports)]
#[macro_use]
mod csi_suite;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use csi_suite::{block_cap, mount_cap, publish_req, req, stage_req, unpublish, unstage, Env, MIB};
use lvmd::csi::pb::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn run_ok(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// lvmd's side: every CSI call of one volume's life, through the plugin.
fn lvmd_path(e: &Env, fs: Option<&str>, mib: i64) {
    let cap = fs.map_or_else(block_cap, mount_cap);
    let v = e
        .create(CreateVolumeRequest {
            volume_capabilities: vec![cap.clone()],
            ..req("pvc-bench", mib * MIB, &[])
        })
        .unwrap_or_else(|s| panic!("CreateVolume: {s:?}\n{}", e.logs()));
    let stage = stage_req(e, &v.volume_id, cap.clone());
    let publish = publish_req(e, &v.volume_id, cap);
    let mut node = e.node();
    e.rt.block_on(async {
        node.node_stage_volume(stage.clone()).await.unwrap();
        node.node_publish_volume(publish.clone()).await.unwrap();
    });
    unpublish(e, &v.volume_id, &publish.target_path).unwrap();
    unstage(e, &v.volume_id, &stage.staging_target_path).unwrap();
    e.delete(&v.volume_id);
}

/// The peers' side on the other class's VG: lvm2's commands, mkfs and mount.
fn lvm2_path(e: &Env, config: &str, fs: Option<&str>, mib: i64) {
    let vg = &e.vgs[1];
    let size = format!("{mib}M");
    run_ok(
        "lvm",
        &[
            "lvcreate", "--config", config, "-y", "-ay", "-L", &size, "-n", "peer", vg,
        ],
    );
    let dev = format!("/dev/{vg}/peer");
    let staging = e.path("plugins/peer/globalmount");
    // A directory for a filesystem, a file for a block device, as kubelet makes them.
    let target = e.path(if fs.is_some() {
        "pods/peer/volumes/pv/mount"
    } else {
        "pods/peer/volumes/pv/block"
    });
    match fs {
        Some(fs) => {
            let force = if fs == "xfs" { "-f" } else { "-F" };
            run_ok(&format!("mkfs.{fs}"), &["-q", force, &dev]);
            std::fs::create_dir_all(&staging).unwrap();
            std::fs::create_dir_all(&target).unwrap();
            run_ok("mount", &["-o", "noatime", &dev, &staging]);
            run_ok("mount", &["--bind", &staging, &target]);
            run_ok("umount", &[&target]);
            run_ok("umount", &[&staging]);
        }
        None => {
            std::fs::write(&target, b"").unwrap();
            run_ok("mount", &["--bind", &dev, &target]);
            run_ok("umount", &[&target]);
        }
    }
    run_ok(
        "lvm",
        &["lvremove", "--config", config, "-f", &format!("{vg}/peer")],
    );
}

fn csi_path(c: &mut Criterion) {
    let e = Env::real();
    let config = e.lvm2_config(true);
    for (name, fs, mib) in [
        ("csi_path_ext4", Some("ext4"), 64),
        ("csi_path_xfs", Some("xfs"), 320),
        ("csi_path_block", None, 64),
    ] {
        let mut group = c.benchmark_group(name);
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(15));
        group.bench_function("lvmd_csi", |b| b.iter(|| lvmd_path(&e, fs, mib)));
        group.bench_function("lvm2_cli", |b| b.iter(|| lvm2_path(&e, &config, fs, mib)));
        group.finish();
    }
    assert!(
        !Path::new(&format!("/dev/{}/peer", e.vgs[1])).exists(),
        "lvm2's volume is gone"
    );
}

criterion_group!(benches, csi_path);
criterion_main!(benches);
