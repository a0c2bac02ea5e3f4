//! Provision latency as a Kubernetes driver sees it: the real `lvmd` daemon answering
//! gRPC on its unix socket, against the lvm2 CLI that peer drivers run for each PVC
//! (`lvcreate` + `lvremove -f`, one process each), same loop devices, same run.
//!
//! - `provision_one`: one 64 MiB LV created and removed.
//! - `provision_burst32`: 32 volumes created concurrently, then removed concurrently
//!   (a StatefulSet scaling up and down): 32 concurrent calls on one daemon channel,
//!   against 32 concurrent `lvcreate` processes then 32 `lvremove` processes. One
//!   iteration is the whole burst's wall time.
//!
//! On a host without device-mapper both sides are metadata only (`lvcreate -an -Zn`;
//! the daemon runs with its `NoDeviceMapper` activation). Where device-mapper answers
//! (the test VM, see tests/vm/README.md), `provision_one_activated` adds activation:
//! create + activate + deactivate + remove through the daemon against
//! `lvcreate -ay -Zn` + `lvremove -f` (lvm2 with udev when the guest has it):
//!
//! ```sh
//! cargo bench --bench provision
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo bench --bench provision -- activated
//! ```
//!
//! Needs root, loop devices, lvm2 and the `lvmd` binary (built by `cargo bench`; or
//! set `LVMD_BIN`).

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use lvmd::rpc::client::connect;
use lvmd::rpc::pb;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

type LvClient = pb::logical_volume_service_client::LogicalVolumeServiceClient<Channel>;
type VgClient = pb::volume_group_service_client::VolumeGroupServiceClient<Channel>;

const LV_SIZE: u64 = 64 << 20;
const BURST: usize = 32;

/// The `lvmd` binary: `LVMD_BIN`, else the one cargo built next to this bench (cargo
/// sets `CARGO_BIN_EXE_lvmd` for benches and builds it first), else the bench
/// executable's profile directory (`target/<profile>/deps/provision-* -> ../lvmd`).
fn lvmd_bin() -> PathBuf {
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
struct Bed {
    loops: common::Loops,
    vg: String,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    channel: Channel,
}

impl Bed {
    /// `lvmd --config` on two sparse loop devices of 2 GiB (room for a burst of 32
    /// volumes of 64 MiB); the daemon creates the class's VG at start.
    fn start(vg: &str) -> Bed {
        let loops = common::Loops::new(&[2048, 2048]);
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

    fn lv(&self) -> LvClient {
        LvClient::new(self.channel.clone())
    }

    /// lvm2 confined to the bed's loop devices, activation on or off.
    fn lvm2_config(&self, activate: bool) -> String {
        let c = self.loops.lvm_config();
        if activate {
            c.replace("activation=0", "activation=1")
        } else {
            c
        }
    }

    /// Spawns `lvm <cmd> --config ... <rest>` without waiting.
    fn lvm2_spawn(&self, activate: bool, args: &[&str]) -> Child {
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

    fn lvm2_wait(child: Child, what: &str) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "lvm {what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn lvm2_create(&self, activate: bool, name: &str) -> Child {
        let vg = self.vg.as_str();
        let a = if activate { "-ay" } else { "-an" };
        self.lvm2_spawn(
            activate,
            &["lvcreate", a, "-Zn", "-L", "64M", "-n", name, vg],
        )
    }

    fn lvm2_remove(&self, activate: bool, name: &str) -> Child {
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

fn vref(name: &str) -> Option<pb::VolumeRef> {
    Some(pb::VolumeRef {
        device_class: String::new(),
        volume_group: String::new(),
        name: name.into(),
    })
}

async fn grpc_create(mut lv: LvClient, name: String) {
    lv.create_logical_volume(pb::CreateLogicalVolumeRequest {
        volume: vref(&name),
        size_bytes: LV_SIZE,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("create {name}: {s:?}"));
}

async fn grpc_remove(mut lv: LvClient, name: String) {
    let r = lv
        .remove_logical_volume(pb::RemoveLogicalVolumeRequest {
            volume: vref(&name),
        })
        .await
        .unwrap_or_else(|s| panic!("remove {name}: {s:?}"))
        .into_inner();
    assert!(r.existed, "{name} was gone before its remove");
}

async fn grpc_activate(mut lv: LvClient, name: String) {
    lv.activate_logical_volume(pb::ActivateLogicalVolumeRequest {
        volume: vref(&name),
    })
    .await
    .unwrap_or_else(|s| panic!("activate {name}: {s:?}"));
}

async fn grpc_deactivate(mut lv: LvClient, name: String) {
    lv.deactivate_logical_volume(pb::DeactivateLogicalVolumeRequest {
        volume: vref(&name),
    })
    .await
    .unwrap_or_else(|s| panic!("deactivate {name}: {s:?}"));
}

fn burst_names() -> Vec<String> {
    (0..BURST).map(|i| format!("pvc-{i:02}")).collect()
}

fn provision(c: &mut Criterion) {
    // In the VM: lvm2's udev rules must not activate the VG behind both tools' backs
    // (common::vm_case turns event autoactivation off in the guest's lvm.conf).
    let _serial = (std::env::var_os("LVMD_VM").is_some_and(|v| v == "1"))
        .then(|| common::vm_case("provision"));
    // Both tools on the same VG on the same loop devices, one after the other.
    let bed = Bed::start(&format!("bench_prov_{}", std::process::id()));

    let mut group = c.benchmark_group("provision_one");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("lvmd_grpc", |b| {
        let lv = bed.lv();
        b.iter(|| {
            bed.rt.block_on(async {
                grpc_create(lv.clone(), "vol".into()).await;
                grpc_remove(lv.clone(), "vol".into()).await;
            })
        })
    });
    group.bench_function("lvm2_cli", |b| {
        b.iter(|| {
            Bed::lvm2_wait(bed.lvm2_create(false, "vol"), "lvcreate");
            Bed::lvm2_wait(bed.lvm2_remove(false, "vol"), "lvremove");
        })
    });
    group.finish();

    let mut group = c.benchmark_group("provision_burst32");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let names = burst_names();
    group.bench_function("lvmd_grpc", |b| {
        let lv = bed.lv();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                bed.rt.block_on(async {
                    let creates: Vec<_> = names
                        .iter()
                        .map(|n| tokio::spawn(grpc_create(lv.clone(), n.clone())))
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
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("lvm2_cli", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let creates: Vec<_> = names.iter().map(|n| bed.lvm2_create(false, n)).collect();
                for c in creates {
                    Bed::lvm2_wait(c, "lvcreate");
                }
                let removes: Vec<_> = names.iter().map(|n| bed.lvm2_remove(false, n)).collect();
                for c in removes {
                    Bed::lvm2_wait(c, "lvremove");
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();

    if lvmd_sys::dm::dm_available() {
        activated(c, &bed);
    } else {
        eprintln!(
            "provision_one_activated: skipped, no device-mapper here (run it in the VM: \
             tests/vm/README.md)"
        );
    }
}

/// Activation included (a kernel with device-mapper: the test VM).
fn activated(c: &mut Criterion, bed: &Bed) {
    let mut group = c.benchmark_group("provision_one_activated");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("lvmd_grpc", |b| {
        let lv = bed.lv();
        b.iter(|| {
            bed.rt.block_on(async {
                grpc_create(lv.clone(), "vol".into()).await;
                grpc_activate(lv.clone(), "vol".into()).await;
                grpc_deactivate(lv.clone(), "vol".into()).await;
                grpc_remove(lv.clone(), "vol".into()).await;
            })
        })
    });
    group.bench_function("lvm2_cli", |b| {
        b.iter(|| {
            Bed::lvm2_wait(bed.lvm2_create(true, "vol"), "lvcreate -ay");
            Bed::lvm2_wait(bed.lvm2_remove(true, "vol"), "lvremove -f");
        })
    });
    group.finish();
}

criterion_group!(benches, provision);
criterion_main!(benches);
