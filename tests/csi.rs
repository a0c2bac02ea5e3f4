//! The CSI suite (`tests/csi_suite`) on the host: `lvmd-csi` against `lvmd --simulate`,
//! both over their real unix sockets in a temp dir, no root. The simulated daemon's
//! mounts exist only in its memory, so the plugin runs with `--mount-check lvmd`; the
//! same cases run against the real daemon in the VM (`tests/vm_csi.rs`).
#![allow(clippy::result_large_err)]

mod common;
#[macro_use]
mod csi_suite;

use csi_suite::{code, req, Env, NODE};
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
        let ch = rt.block_on(lvmd::rpc::client::connect(&sock)).unwrap();
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
    use csi_suite::{eph_id, eph_publish, lvmd_lv, publish, unpublish, wait_ready};
    use lvmd::csi::volume_id::ephemeral_lv_name;
    let mut e = Env::simulated();
    let vid = eph_id(20);
    let r = eph_publish(&e, &vid, &[("size", "8Mi")]);
    publish(&e, &r).unwrap();
    e.crash_and_restart(true);
    wait_ready(&e);
    for _ in 0..2 {
        unpublish(&e, &vid, &r.target_path).unwrap();
    }
    publish(&e, &r).unwrap();
    assert!(lvmd_lv(&e, &ephemeral_lv_name(&vid)).is_some());
    unpublish(&e, &vid, &r.target_path).unwrap();
    assert!(lvmd_lv(&e, &ephemeral_lv_name(&vid)).is_none());
}

/// The CSI socket lets in only the peers its allow list names (SO_PEERCRED, as lvmd's
/// own socket): root by default (kubelet and the sidecars), others by `--allow-uid` or
/// `--allow-gid`. Self-contained: its own helpers, below.
mod csi_socket_peers {
    use lvmd::csi::pb::identity_client::IdentityClient;
    use lvmd::csi::pb::ProbeRequest;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    const REFUSED: &str = "refused a client not in the allow list";

    /// `lvmd-csi --controller-only` (ready without an lvmd), JSON logs in a file.
    struct Plugin {
        child: Child,
        sock: PathBuf,
        log: PathBuf,
    }

    impl Drop for Plugin {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Plugin {
        fn start(dir: &Path, name: &str, extra: &[String]) -> Plugin {
            let sock = dir.join(format!("{name}.sock"));
            let log = dir.join(format!("{name}.log"));
            let child = Command::new(env!("CARGO_BIN_EXE_lvmd-csi"))
                .arg(format!("--csi-endpoint=unix://{}", sock.display()))
                .arg("--lvmd-socket")
                .arg(dir.join("no-lvmd.sock"))
                .args(["--node-id=node-a", "--metrics-address="])
                .args(["--controller-only", "--log-format=json"])
                .args(extra)
                .env_remove("CSI_ALLOW_UIDS")
                .env_remove("CSI_ALLOW_GIDS")
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
                .spawn()
                .unwrap();
            let p = Plugin { child, sock, log };
            // Bound with mode 0600 first (umask), then chmod: wait for the final mode,
            // else a peer outside the owner could see EACCES instead of the allow list.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(m) = std::fs::metadata(&p.sock) {
                    if m.permissions().mode() & 0o777 == 0o660 {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "lvmd-csi did not come up (socket mode 0660): {}",
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            p
        }

        /// The refusals logged so far, as (uid, gid, pid).
        fn refusals(&self) -> Vec<(u64, u64, u64)> {
            let text = std::fs::read_to_string(&self.log).unwrap();
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["message"] == REFUSED)
                .map(|v| {
                    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
                    (n("uid"), n("gid"), n("pid"))
                })
                .collect()
        }

        fn wait_for_refusal(&self) -> (u64, u64, u64) {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(r) = self.refusals().pop() {
                    return r;
                }
                assert!(
                    Instant::now() < deadline,
                    "no refusal logged: {}",
                    std::fs::read_to_string(&self.log).unwrap()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// CSI Probe on a thread of its own. With `creds` that thread first becomes
    /// (uid, gid), keeping the caller's primary gid as its one supplementary group (so
    /// it passes the socket's 0660 as a sidecar sharing the plugin's group would). Raw
    /// syscalls change only the calling thread's credentials, which is what
    /// SO_PEERCRED reports for a connect() (glibc's setuid() would change every thread
    /// of this test process; a fork of a threaded process may only exec).
    fn probe_as(sock: &Path, creds: Option<(u32, u32)>) -> Result<bool, String> {
        let sock = sock.to_owned();
        std::thread::spawn(move || {
            if let Some((uid, gid)) = creds {
                // SAFETY: getegid has no preconditions; the raw set*id syscalls take
                // plain integers and a pointer to one live gid.
                unsafe {
                    let groups = [libc::getegid()];
                    for (what, rc) in [
                        (
                            "setgroups",
                            libc::syscall(libc::SYS_setgroups, 1 as libc::c_long, groups.as_ptr()),
                        ),
                        (
                            "setresgid",
                            libc::syscall(
                                libc::SYS_setresgid,
                                gid as libc::c_long,
                                gid as libc::c_long,
                                gid as libc::c_long,
                            ),
                        ),
                        (
                            "setresuid",
                            libc::syscall(
                                libc::SYS_setresuid,
                                uid as libc::c_long,
                                uid as libc::c_long,
                                uid as libc::c_long,
                            ),
                        ),
                    ] {
                        assert_eq!(rc, 0, "{what}: {}", std::io::Error::last_os_error());
                    }
                    assert_eq!((libc::geteuid(), libc::getegid()), (uid, gid));
                }
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let probe = async {
                    let ch = lvmd::rpc::client::connect(&sock)
                        .await
                        .map_err(|e| format!("connect: {e:?}"))?;
                    IdentityClient::new(ch)
                        .probe(ProbeRequest {})
                        .await
                        .map(|r| r.into_inner().ready == Some(true))
                        .map_err(|s| format!("probe: {s:?}"))
                };
                tokio::time::timeout(Duration::from_secs(10), probe)
                    .await
                    .map_err(|_| "timed out".to_string())?
            })
        })
        .join()
        .unwrap()
    }

    #[test]
    fn csi_socket_refuses_peers_outside_the_allow_list() {
        // SAFETY: geteuid/getegid have no preconditions.
        let (me, my_gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        // As root: root is let in, and a thread become nobody (65534) is the outsider.
        // Otherwise this process is the outsider (the default lets in root only).
        let (outsider, as_outsider) = if me == 0 {
            ((65534, 65534), Some((65534, 65534)))
        } else {
            eprintln!("not root: checking this uid ({me}) only, not root's access");
            ((me, my_gid), None)
        };
        // In /tmp (not $TMPDIR, which nobody may not be able to enter), and enterable.
        let dir = tempfile::Builder::new()
            .prefix("lvmd-csi-peers")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

        // Default: root only.
        let p = Plugin::start(dir.path(), "default", &[]);
        if me == 0 {
            assert_eq!(probe_as(&p.sock, None), Ok(true), "root refused");
        }
        let e = probe_as(&p.sock, as_outsider).expect_err("outsider let in");
        eprintln!("refused as expected: {e}");
        let (uid, gid, pid) = p.wait_for_refusal();
        assert_eq!(
            (uid, gid, pid),
            (
                outsider.0.into(),
                outsider.1.into(),
                std::process::id().into()
            )
        );
        drop(p);

        // Let in by uid, then by gid; root still is.
        for (name, flag) in [
            ("uid", format!("--allow-uid={}", outsider.0)),
            ("gid", format!("--allow-gid=1,{}", outsider.1)),
        ] {
            let p = Plugin::start(dir.path(), name, std::slice::from_ref(&flag));
            assert_eq!(probe_as(&p.sock, as_outsider), Ok(true), "{flag}");
            if me == 0 {
                assert_eq!(probe_as(&p.sock, None), Ok(true), "{flag}: root refused");
            }
            assert_eq!(p.refusals(), [], "{flag}");
        }
    }
}

/// A device class with a thin pool: its StorageClasses (no layout, or `layout: thin`)
/// get thin volumes, GetCapacity answers what the pool's overprovision ratio still
/// allows (down with each volume, up again when one is deleted), a volume past it is
/// RESOURCE_EXHAUSTED, and `layout: thin` on a class without a pool offers nothing.
#[test]
fn a_thin_class_offers_what_its_ratio_allows() {
    let e = Env::simulated_with(
        ["vg-thin".into(), "vg-plain".into()],
        "[device_classes.thin]\nvolume_group = \"vg-thin\"\ndefault = true\n\
         loop_file = { path = \"/nonexistent/thin.img\", size = \"1GiB\" }\n\
         thin_pool = { name = \"pool\", size = \"512MiB\", overprovision_ratio = 2.0 }\n\
         [device_classes.plain]\nvolume_group = \"vg-plain\"\n\
         loop_file = { path = \"/nonexistent/plain.img\", size = \"1GiB\" }\n",
    );
    const MIB: i64 = 1 << 20;
    assert_eq!(e.capacity(&[]), (1024 * MIB, 1024 * MIB));
    assert_eq!(e.capacity(&[("layout", "thin")]), (1024 * MIB, 1024 * MIB));
    assert_eq!(
        e.capacity(&[("deviceClass", "plain"), ("layout", "thin")]),
        (0, 0)
    );
    let a = e.create(req("pvc-a", 300 * MIB, &[])).unwrap();
    assert_eq!(a.capacity_bytes, 300 * MIB);
    let b = e
        .create(req("pvc-b", 400 * MIB, &[("layout", "thin")]))
        .unwrap();
    assert_eq!(e.capacity(&[]), (324 * MIB, 324 * MIB));
    let s = code(e.create(req("pvc-c", 400 * MIB, &[])));
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains("overprovision ratio"), "{s:?}");
    let s = code(e.create(req(
        "pvc-d",
        4 * MIB,
        &[("deviceClass", "plain"), ("layout", "thin")],
    )));
    assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");
    // A thin volume's stats: healthy, its condition saying how full its pool is.
    {
        use csi_suite::{mount_cap, publish_req, stage_req};
        let mut node = e.node();
        let stage = NodeStageVolumeRequest {
            volume_context: a.volume_context.clone(),
            ..stage_req(&e, &a.volume_id, mount_cap(""))
        };
        let publish = NodePublishVolumeRequest {
            volume_context: a.volume_context.clone(),
            ..publish_req(&e, &a.volume_id, mount_cap(""))
        };
        e.rt.block_on(node.node_stage_volume(stage.clone()))
            .unwrap();
        e.rt.block_on(node.node_publish_volume(publish.clone()))
            .unwrap();
        let s =
            e.rt.block_on(node.node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: a.volume_id.clone(),
                volume_path: publish.target_path.clone(),
                staging_target_path: String::new(),
            }))
            .unwrap()
            .into_inner();
        let condition = s.volume_condition.unwrap();
        assert!(!condition.abnormal, "{condition:?}");
        assert!(
            condition
                .message
                .starts_with("thin pool vg-thin/pool: data 0.0% used (0 of 536870912 bytes)"),
            "{condition:?}"
        );
        e.rt.block_on(node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: a.volume_id.clone(),
            target_path: publish.target_path.clone(),
        }))
        .unwrap();
        e.rt.block_on(node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: a.volume_id.clone(),
            staging_target_path: stage.staging_target_path.clone(),
        }))
        .unwrap();
    }
    // The pool's metrics: what the guard counts, and the kernel's use while active.
    let m = e.metrics();
    let pool = [
        ("device_class", "thin"),
        ("volume_group", "vg-thin"),
        ("pool", "pool"),
    ];
    let gauge = |name: &str| m.value(&format!("lvmd_csi_thin_pool_{name}"), &pool);
    assert_eq!(gauge("data_bytes"), (512 * MIB) as f64);
    assert_eq!(gauge("provisioned_bytes"), (700 * MIB) as f64);
    assert_eq!(gauge("provisionable_bytes"), (324 * MIB) as f64);
    assert_eq!(gauge("active"), 1.0);
    assert_eq!(gauge("trouble"), 0.0);
    assert!(gauge("metadata_bytes") > 0.0);
    assert_eq!(gauge("data_used_bytes"), 0.0);
    // The plain class has no pool, so no series.
    assert!(!m
        .text
        .contains("device_class=\"plain\",volume_group=\"vg-plain\",pool"));
    e.delete(&a.volume_id);
    e.delete(&b.volume_id);
    assert_eq!(e.capacity(&[]), (1024 * MIB, 1024 * MIB));
}

/// The snapshot RPCs and volume sources as the spec has them (`csi_suite::snapshots`),
/// on a thin default class and a thick one.
#[test]
fn snapshots_and_volume_sources_follow_the_spec() {
    let e = Env::simulated_with(
        ["vg-thin".into(), "vg-plain".into()],
        "[device_classes.thin]\nvolume_group = \"vg-thin\"\ndefault = true\n\
         loop_file = { path = \"/nonexistent/thin.img\", size = \"1GiB\" }\n\
         thin_pool = { name = \"pool\", size = \"512MiB\", overprovision_ratio = 4.0 }\n\
         [device_classes.plain]\nvolume_group = \"vg-plain\"\n\
         loop_file = { path = \"/nonexistent/plain.img\", size = \"1GiB\" }\n",
    );
    csi_suite::snapshots::snapshot_rules(&e);
}

/// The GroupController's RPCs as the spec has them (`csi_suite::group_snapshots`), on
/// the same classes.
#[test]
fn group_snapshots_follow_the_spec() {
    let e = Env::simulated_with(
        ["vg-thin".into(), "vg-plain".into()],
        "[device_classes.thin]\nvolume_group = \"vg-thin\"\ndefault = true\n\
         loop_file = { path = \"/nonexistent/thin.img\", size = \"1GiB\" }\n\
         thin_pool = { name = \"pool\", size = \"512MiB\", overprovision_ratio = 4.0 }\n\
         [device_classes.plain]\nvolume_group = \"vg-plain\"\n\
         loop_file = { path = \"/nonexistent/plain.img\", size = \"1GiB\" }\n",
    );
    csi_suite::group_snapshots::group_snapshot_rules(&e);
}

/// What kubelet does with a pod's volumes, in its order, against `lvmd --simulate` (as
/// `docs/csi.md` offers for trying the chart without a disk): a filesystem PVC staged
/// and published, its target then given to the pod's fsGroup as kubelet's applyFSGroup
/// does (lstat, chown to the group, setgid and group-writable), the pod writing there;
/// a block PVC published and opened read-write at its path (MapVolume); stats with
/// inodes for the filesystem and the size for the block volume; both expanded; then
/// lvmd restarted under the running pod (its simulated mounts outlive it, as kernel
/// mounts do), and the pod's teardown completing: targets removed, staging directories
/// left empty for kubelet to remove.
#[test]
fn pod_flow_against_the_simulated_daemon() {
    use csi_suite::{block_cap, mount_cap, publish_req, req, stage_req, unpublish, unstage, MIB};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;
    let mut e = Env::simulated();
    let mut node = e.node();
    let fs = e
        .create(req("pvc-data", 64 * MIB, &[("fsType", "ext4")]))
        .unwrap();
    let mut r = req("pvc-raw", 16 * MIB, &[]);
    r.volume_capabilities = vec![block_cap()];
    let raw = e.create(r).unwrap();

    // The filesystem volume: stage, publish.
    let stage = NodeStageVolumeRequest {
        volume_context: fs.volume_context.clone(),
        ..stage_req(&e, &fs.volume_id, mount_cap(""))
    };
    let publish = NodePublishVolumeRequest {
        volume_context: fs.volume_context.clone(),
        ..publish_req(&e, &fs.volume_id, mount_cap(""))
    };
    e.rt.block_on(node.node_stage_volume(stage.clone()))
        .unwrap();
    assert!(Path::new(&stage.staging_target_path).is_dir());
    e.rt.block_on(node.node_publish_volume(publish.clone()))
        .unwrap();
    let target = Path::new(&publish.target_path);
    // applyFSGroup: kubelet lstats the target, then chowns it to the fsGroup and makes
    // it group-writable with setgid, so files the pod makes belong to the group.
    let meta = std::fs::symlink_metadata(target).unwrap();
    assert!(meta.is_dir(), "{meta:?}");
    // SAFETY: getegid has no preconditions.
    let fs_group = if meta.uid() == 0 {
        2000
    } else {
        unsafe { libc::getegid() }
    };
    std::os::unix::fs::chown(target, None, Some(fs_group)).unwrap();
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o2775)).unwrap();
    std::fs::write(target.join("index.html"), b"hello from the pod").unwrap();
    let written = std::fs::metadata(target.join("index.html")).unwrap();
    assert_eq!(
        written.gid(),
        fs_group,
        "setgid: the pod's file is the group's"
    );
    assert_eq!(std::fs::metadata(target).unwrap().mode() & 0o7777, 0o2775);

    // The block volume: kubelet's MapVolume evaluates the path and opens it.
    let block_target = e.path("plugins/kubernetes.io/csi/volumeDevices/publish/pvc-raw/pod-uid");
    let block_stage = stage_req(&e, &raw.volume_id, block_cap());
    let block_stage = NodeStageVolumeRequest {
        staging_target_path: e.path("plugins/kubernetes.io/csi/volumeDevices/staging/pvc-raw"),
        ..block_stage
    };
    let block_publish = NodePublishVolumeRequest {
        staging_target_path: block_stage.staging_target_path.clone(),
        target_path: block_target.clone(),
        ..publish_req(&e, &raw.volume_id, block_cap())
    };
    e.rt.block_on(node.node_stage_volume(block_stage.clone()))
        .unwrap();
    e.rt.block_on(node.node_publish_volume(block_publish.clone()))
        .unwrap();
    let resolved = std::fs::canonicalize(&block_target).unwrap();
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&resolved)
        .unwrap();
    assert_eq!(dev.metadata().unwrap().len(), 16 * MIB as u64);
    drop(dev);

    // Stats, as kubelet's volume manager polls them.
    let stats = |id: &str, path: &str| {
        e.rt.block_on(e.node().node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            staging_target_path: String::new(),
        }))
        .unwrap()
        .into_inner()
    };
    let s = stats(&fs.volume_id, &publish.target_path);
    assert_eq!(s.usage.len(), 2, "bytes and inodes: {s:?}");
    assert_eq!(s.usage[0].unit, volume_usage::Unit::Bytes as i32);
    assert_eq!(s.usage[1].unit, volume_usage::Unit::Inodes as i32);
    assert!(s.usage[0].total > 0 && s.usage[1].total > 0, "{s:?}");
    assert!(s.usage[1].used >= 1, "the pod's file counts: {s:?}");
    let s = stats(&raw.volume_id, &block_target);
    assert_eq!(s.usage.len(), 1, "{s:?}");
    assert_eq!(s.usage[0].total, 16 * MIB, "{s:?}");

    // Expansion: the resizer's ControllerExpandVolume, then kubelet's NodeExpandVolume.
    for (v, path, cap, mib) in [
        (&fs, &publish.target_path, mount_cap(""), 96),
        (&raw, &block_target, block_cap(), 32),
    ] {
        let grown =
            e.rt.block_on(
                e.ctl()
                    .controller_expand_volume(ControllerExpandVolumeRequest {
                        volume_id: v.volume_id.clone(),
                        capacity_range: Some(CapacityRange {
                            required_bytes: mib * MIB,
                            limit_bytes: 0,
                        }),
                        volume_capability: Some(cap.clone()),
                        ..Default::default()
                    }),
            )
            .unwrap()
            .into_inner();
        assert!(grown.capacity_bytes >= mib * MIB, "{grown:?}");
        let n =
            e.rt.block_on(e.node().node_expand_volume(NodeExpandVolumeRequest {
                volume_id: v.volume_id.clone(),
                volume_path: path.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: mib * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(cap),
                ..Default::default()
            }))
            .unwrap()
            .into_inner();
        assert!(n.capacity_bytes >= mib * MIB, "{n:?}");
    }
    let s = stats(&raw.volume_id, &block_target);
    assert_eq!(
        s.usage[0].total,
        32 * MIB,
        "the block volume's new size: {s:?}"
    );

    // lvmd restarts (an upgrade, a crash) while the pod runs; then the pod is deleted:
    // kubelet unpublishes and unstages, and must not loop on "directory not empty".
    e.crash_and_restart(true);
    for (id, target) in [
        (&fs.volume_id, &publish.target_path),
        (&raw.volume_id, &block_target),
    ] {
        for _ in 0..2 {
            unpublish(&e, id, target).unwrap();
        }
        assert!(!Path::new(target).exists(), "{target} left behind");
    }
    for (id, staging) in [
        (&fs.volume_id, &stage.staging_target_path),
        (&raw.volume_id, &block_stage.staging_target_path),
    ] {
        for _ in 0..2 {
            unstage(&e, id, staging).unwrap();
        }
        // The staging directory is kubelet's to remove: it must be empty, and no longer
        // noted as the simulated mount.
        if Path::new(staging).exists() {
            let noted = xattr::get(staging, "user.lvmd.simulated-mount").unwrap();
            assert_eq!(noted, None, "{staging} still noted as mounted");
            std::fs::remove_dir(staging).unwrap();
        }
    }
}
