//! The CSI plugin against the real `lvmd` on loop devices in the test VM, with the
//! plugin in its own mount namespace as in its pod: with the kubelet directory as a
//! slave of the host's (`mountPropagation: HostToContainer`) a filesystem volume goes
//! through create, stage, publish, write, unpublish, unstage and delete, checked with
//! lvm2; with no propagation, staging fails with FAILED_PRECONDITION and leaves nothing
//! mounted on the host. The default `--mount-check mountinfo` is what sees the
//! difference (`tests/csi.rs` covers the RPCs against `lvmd --simulate`).
//!
//! VM only, like `tests/vm_daemon.rs` (`test = false`; it fails outside the VM):
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo test --test vm_csi
//! ```
#![allow(clippy::result_large_err)]

mod common;

use common::{run_ok, Loops};
use lvmd::csi::pb::controller_client::ControllerClient;
use lvmd::csi::pb::node_client::NodeClient;
use lvmd::csi::pb::volume_capability::access_mode::Mode;
use lvmd::csi::pb::volume_capability::{AccessMode, AccessType, MountVolume};
use lvmd::csi::pb::*;
use lvmd_sys::dm;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

const NODE: &str = "vm-node";
const KEY: &str = "topology.lvmd.csi.local/node";
const MIB: i64 = 1 << 20;

/// The mount points this (the host's) namespace sees.
fn host_mounts() -> Vec<PathBuf> {
    lvmd::csi::mounts::mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
}

fn wait_for(path: &Path, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// lvmd on a loop device, the kubelet directory a shared mount of itself, and
/// `lvmd-csi` in a new mount namespace with `propagation` (unshare's word).
struct Bed {
    loops: Loops,
    vg: String,
    kubelet: PathBuf,
    lvmd: Child,
    csi: Child,
    csi_log: PathBuf,
    lvmd_log: PathBuf,
    rt: tokio::runtime::Runtime,
    ch: Channel,
}

impl Bed {
    fn new(vg: &str, propagation: &str) -> Bed {
        let loops = Loops::new(&[128]);
        let dir = loops.dir.path().to_owned();
        let kubelet = dir.join("kubelet");
        std::fs::create_dir_all(kubelet.join("pods")).unwrap();
        std::fs::create_dir_all(kubelet.join("plugins")).unwrap();
        let k = kubelet.to_str().unwrap();
        run_ok("mount", &["--bind", k, k]);
        run_ok("mount", &["--make-rshared", k]);
        let socket = dir.join("lvmd.sock");
        let config = dir.join("lvmd.toml");
        std::fs::write(
            &config,
            format!(
                r#"socket = "{socket}"
mount_roots = ["{root}"]
backup_dir = "{backup}"
archive_dir = "{archive}"

[device_classes.disks]
volume_group = "{vg}"
default = true
devices = ["{dev}"]
"#,
                socket = socket.display(),
                root = kubelet.display(),
                backup = loops.backup_dir().display(),
                archive = loops.archive_dir().display(),
                dev = loops.devs[0].display(),
            ),
        )
        .unwrap();
        let lvmd_log = dir.join("lvmd.log");
        let mut lvmd = Command::new(env!("CARGO_BIN_EXE_lvmd"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&lvmd_log).unwrap())
            .spawn()
            .expect("start lvmd");
        wait_for(&socket, "lvmd", &mut lvmd, &lvmd_log);
        let csi_sock = dir.join("csi/csi.sock");
        let csi_log = dir.join("csi.log");
        // unshare execs the plugin: the child's pid is the plugin's.
        let mut csi = Command::new("unshare")
            .args(["-m", "--propagation", propagation])
            .arg(env!("CARGO_BIN_EXE_lvmd-csi"))
            .arg(format!("--csi-endpoint=unix://{}", csi_sock.display()))
            .arg("--lvmd-socket")
            .arg(&socket)
            .args(["--node-id", NODE, "--metrics-address="])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&csi_log).unwrap())
            .spawn()
            .expect("start unshare lvmd-csi");
        wait_for(&csi_sock, "lvmd-csi", &mut csi, &csi_log);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ch = rt.block_on(lvmd::api::client::connect(&csi_sock)).unwrap();
        Bed {
            loops,
            vg: vg.into(),
            kubelet,
            lvmd,
            csi,
            csi_log,
            lvmd_log,
            rt,
            ch,
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- lvmd-csi log:\n{}\n--- lvmd log:\n{}",
            std::fs::read_to_string(&self.csi_log).unwrap_or_default(),
            std::fs::read_to_string(&self.lvmd_log).unwrap_or_default()
        )
    }

    fn path(&self, rel: &str) -> PathBuf {
        let p = self.kubelet.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    /// lvm2's LV names in the VG.
    fn lvm2_names(&self) -> Vec<String> {
        let config = self
            .loops
            .lvm_config()
            .replace("activation=0", "activation=1");
        let out = run_ok(
            "lvm",
            &[
                "lvs",
                "--config",
                &config,
                &self.vg,
                "--noheadings",
                "-o",
                "lv_name",
            ],
        );
        out.split_whitespace().map(str::to_owned).collect()
    }

    fn create(&self, name: &str) -> String {
        let r = CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 32 * MIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount_cap()],
            parameters: HashMap::from([("fsType".to_owned(), "ext4".to_owned())]),
            accessibility_requirements: Some(TopologyRequirement {
                requisite: vec![topo()],
                preferred: vec![topo()],
            }),
            ..Default::default()
        };
        let v = self
            .rt
            .block_on(ControllerClient::new(self.ch.clone()).create_volume(r))
            .unwrap_or_else(|s| panic!("CreateVolume: {s:?}\n{}", self.logs()))
            .into_inner()
            .volume
            .unwrap();
        v.volume_id
    }

    fn delete(&self, id: &str) {
        self.rt
            .block_on(
                ControllerClient::new(self.ch.clone()).delete_volume(DeleteVolumeRequest {
                    volume_id: id.into(),
                    secrets: Default::default(),
                }),
            )
            .unwrap_or_else(|s| panic!("DeleteVolume: {s:?}\n{}", self.logs()));
    }

    fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.ch.clone())
    }

    fn stage_req(&self, id: &str) -> NodeStageVolumeRequest {
        NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: self
                .path("plugins/kubernetes.io/csi/lvmd.csi.local/x/globalmount")
                .display()
                .to_string(),
            volume_capability: Some(mount_cap()),
            ..Default::default()
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = self.csi.kill();
        let _ = self.csi.wait();
        let _ = self.lvmd.kill();
        let _ = self.lvmd.wait();
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.kubelet)
            .output();
        let prefix = format!("{}-", self.vg.replace('-', "--"));
        if let Ok(o) = Command::new("dmsetup").arg("ls").output() {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                if let Some(n) = l
                    .split_whitespace()
                    .next()
                    .filter(|n| n.starts_with(&prefix))
                {
                    let _ = Command::new("dmsetup").args(["remove", n]).output();
                }
            }
        }
    }
}

fn topo() -> Topology {
    Topology {
        segments: HashMap::from([(KEY.to_owned(), NODE.to_owned())]),
    }
}

fn mount_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: String::new(),
            mount_flags: vec![],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

#[test]
fn host_to_container_propagation_volume_lifecycle() {
    let _serial = common::vm_case("vm_csi");
    let bed = Bed::new("vmcsi-slave", "slave");
    let id = bed.create("pvc-slave");
    assert_eq!(bed.lvm2_names().len(), 1, "{:?}", bed.lvm2_names());
    let stage = bed.stage_req(&id);
    let target = bed.path("pods/uid/volumes/kubernetes.io~csi/pv/mount");
    let publish = NodePublishVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: stage.staging_target_path.clone(),
        target_path: target.display().to_string(),
        volume_capability: Some(mount_cap()),
        ..Default::default()
    };
    let mut node = bed.node();
    bed.rt.block_on(async {
        node.node_stage_volume(stage.clone())
            .await
            .unwrap_or_else(|s| panic!("NodeStageVolume: {s:?}\n{}", bed.logs()));
        node.node_publish_volume(publish.clone())
            .await
            .unwrap_or_else(|s| panic!("NodePublishVolume: {s:?}\n{}", bed.logs()));
    });
    let mounts = host_mounts();
    assert!(mounts.contains(&target), "{mounts:?}");
    // Written through the host's path, read through the staging mount (same fs).
    std::fs::write(target.join("hello"), b"through csi\n").unwrap();
    let staged = PathBuf::from(&stage.staging_target_path);
    assert_eq!(
        std::fs::read(staged.join("hello")).unwrap(),
        b"through csi\n"
    );
    bed.rt.block_on(async {
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: publish.target_path.clone(),
        })
        .await
        .unwrap_or_else(|s| panic!("NodeUnpublishVolume: {s:?}\n{}", bed.logs()));
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: stage.staging_target_path.clone(),
        })
        .await
        .unwrap_or_else(|s| panic!("NodeUnstageVolume: {s:?}\n{}", bed.logs()));
    });
    let mounts = host_mounts();
    assert!(
        !mounts
            .iter()
            .any(|m| m.starts_with(&bed.kubelet) && *m != bed.kubelet),
        "{mounts:?}"
    );
    bed.delete(&id);
    assert!(bed.lvm2_names().is_empty(), "{:?}", bed.lvm2_names());
}

#[test]
fn no_propagation_fails_staging_and_leaves_nothing_mounted() {
    let _serial = common::vm_case("vm_csi");
    let bed = Bed::new("vmcsi-private", "private");
    let id = bed.create("pvc-private");
    let stage = bed.stage_req(&id);
    let mut node = bed.node();
    let err = bed
        .rt
        .block_on(node.node_stage_volume(stage.clone()))
        .expect_err("staging succeeded though the plugin cannot see the mount");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("mountPropagation") && err.message().contains("HostToContainer"),
        "{err:?}"
    );
    let mounts = host_mounts();
    assert!(
        !mounts
            .iter()
            .any(|m| m.starts_with(&bed.kubelet) && *m != bed.kubelet),
        "left mounted on the host: {mounts:?}"
    );
    assert_eq!(bed.lvm2_names().len(), 1, "{:?}", bed.lvm2_names());
    bed.delete(&id);
    assert!(bed.lvm2_names().is_empty(), "{:?}", bed.lvm2_names());
}
