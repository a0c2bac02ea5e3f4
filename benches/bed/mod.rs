//! The benches' test bed: the real `lvmd` daemon on loop devices, answering gRPC on its
//! unix socket, with lvm2 confined to the same devices, and the gRPC calls the benches
//! time. Shared by `provision` and `scale` (each declares `mod common` for the loop
//! device fixture).
#![allow(dead_code)]

use crate::common;
use lvmd::rpc::client::connect;
use lvmd::rpc::pb;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub type LvClient = pb::logical_volume_service_client::LogicalVolumeServiceClient<Channel>;
pub type VgClient = pb::volume_group_service_client::VolumeGroupServiceClient<Channel>;

/// The `lvmd` binary: `LVMD_BIN`, else the one cargo built next to this bench (cargo
/// sets `CARGO_BIN_EXE_lvmd` for benches and builds it first), else the bench
/// executable's profile directory (`target/<profile>/deps/provision-* -> ../lvmd`).
pub fn lvmd_bin() -> PathBuf {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("LVMD_BIN") {
        tried.push(PathBuf::from(p));
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_lvmd") {
        tried.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            tried.push(profile_dir.join("lvmd"));
        }
    }
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    panic!(
        "the lvmd binary is not built (looked at {tried:?}): run `cargo build --release \
         --bin lvmd` or set LVMD_BIN=/path/to/lvmd"
    );
}

/// Loop devices, the real daemon with one device class on them, and a client channel.
pub struct Bed {
    pub loops: common::Loops,
    pub vg: String,
    child: Option<Child>,
    pub rt: tokio::runtime::Runtime,
    pub channel: Channel,
}

impl Bed {
    /// `lvmd --config` on sparse loop devices of these sizes (MiB); the daemon creates
    /// the class's VG on them at start.
    pub fn start(vg: &str, sizes_mib: &[u64]) -> Bed {
        let loops = common::Loops::new(sizes_mib);
        let dir = loops.dir.path().to_owned();
        let socket = dir.join("lvmd.sock");
        let config = dir.join("lvmd.toml");
        let log = dir.join("lvmd.log");
        std::fs::write(
            &config,
            format!(
                "{}\n[device_classes.bench]\nvolume_group = \"{vg}\"\ndefault = true\n\
                 devices = {}\n",
                loops.daemon_config(&socket, &dir.join("kubelet")),
                loops.toml_devices(),
            ),
        )
        .unwrap();
        let bin = lvmd_bin();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let channel = loop {
            if let Some(status) = child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "lvmd exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // Up when the class's VG is listed (the daemon made it at start).
            let up = rt.block_on(async {
                let channel = connect(&socket).await.ok()?;
                let vgs = VgClient::new(channel.clone())
                    .list_volume_groups(pb::ListVolumeGroupsRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                vgs.volume_groups
                    .iter()
                    .any(|g| g.name == vg)
                    .then_some(channel)
            });
            if let Some(channel) = up {
                break channel;
            }
            assert!(
                Instant::now() < deadline,
                "lvmd did not come up:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        Bed {
            loops,
            vg: vg.into(),
            child,
            rt,
            channel,
        }
    }

    /// The daemon's process id (for its memory use).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn lv(&self) -> LvClient {
        LvClient::new(self.channel.clone())
    }

    /// lvm2 confined to the bed's loop devices, activation on or off.
    pub fn lvm2_config(&self, activate: bool) -> String {
        self.loops.lvm_config_with(activate)
    }

    /// Spawns `lvm <cmd> --config ... <rest>` without waiting.
    pub fn lvm2_spawn(&self, activate: bool, args: &[&str]) -> Child {
        let (cmd, rest) = args.split_first().unwrap();
        Command::new("lvm")
            .arg(cmd)
            .arg("--config")
            .arg(self.lvm2_config(activate))
            .args(rest)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run lvm")
    }

    pub fn lvm2_wait(child: Child, what: &str) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "lvm {what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn lvm2_create(&self, activate: bool, name: &str) -> Child {
        let vg = self.vg.as_str();
        let a = if activate { "-ay" } else { "-an" };
        self.lvm2_spawn(
            activate,
            &["lvcreate", a, "-Zn", "-L", "64M", "-n", name, vg],
        )
    }

    pub fn lvm2_remove(&self, activate: bool, name: &str) -> Child {
        self.lvm2_spawn(
            activate,
            &["lvremove", "-f", &format!("{}/{name}", self.vg)],
        )
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        let _ = self.loops.lvm(&["vgremove", "-f", &self.vg]);
    }
}

pub fn vref(name: &str) -> Option<pb::VolumeRef> {
    Some(pb::VolumeRef {
        device_class: String::new(),
        volume_group: String::new(),
        name: name.into(),
    })
}

pub async fn grpc_create(mut lv: LvClient, name: String, size: u64) {
    lv.create_logical_volume(pb::CreateLogicalVolumeRequest {
        volume: vref(&name),
        size_bytes: size,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("create {name}: {s:?}"));
}

pub async fn grpc_remove(mut lv: LvClient, name: String) {
    let r = lv
        .remove_logical_volume(pb::RemoveLogicalVolumeRequest {
            volume: vref(&name),
        })
        .await
        .unwrap_or_else(|s| panic!("remove {name}: {s:?}"))
        .into_inner();
    assert!(r.existed, "{name} was gone before its remove");
}

/// All of `names` created at once (each its own request, as clients in parallel would
/// send them), then all removed at once; every answer checked.
pub async fn grpc_burst(lv: &LvClient, names: &[String], size: u64) {
    let creates: Vec<_> = names
        .iter()
        .map(|n| tokio::spawn(grpc_create(lv.clone(), n.clone(), size)))
        .collect();
    for t in creates {
        t.await.unwrap();
    }
    let removes: Vec<_> = names
        .iter()
        .map(|n| tokio::spawn(grpc_remove(lv.clone(), n.clone())))
        .collect();
    for t in removes {
        t.await.unwrap();
    }
}

pub async fn grpc_activate(mut lv: LvClient, name: String) {
    lv.activate_logical_volume(pb::ActivateLogicalVolumeRequest {
        volume: vref(&name),
    })
    .await
    .unwrap_or_else(|s| panic!("activate {name}: {s:?}"));
}

pub async fn grpc_deactivate(mut lv: LvClient, name: String) {
    lv.deactivate_logical_volume(pb::DeactivateLogicalVolumeRequest {
        volume: vref(&name),
    })
    .await
    .unwrap_or_else(|s| panic!("deactivate {name}: {s:?}"));
}
