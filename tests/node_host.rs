//! Node-side work for real: the host node (mkfs, blkid, mount(2), bind mounts, statvfs)
//! behind the gRPC API, on loop devices standing in for active volumes (an `Activation`
//! that hands out loop devices, since this host has no device-mapper). Needs root;
//! `LVMD_SKIP_HOST_TESTS=1` skips it.

mod common;
mod harness;

use common::{host_tests_enabled, Loops};
use harness::*;
use lvmd::daemon::activation::{Activation, ActivationError, ActiveVolume};
use lvmd::daemon::paths::{check_path, ConfinedPath};
use lvmd::daemon::volumes::VgRead;
use lvmd::daemon::{HostNode, Node, SimEngine};
use lvmd::rpc::pb;
use lvmd::socket::AccessPolicy;
use lvmd::units::Bytes;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tonic::Code;

/// "Activates" LV `n` of any VG as the n-th loop device, in order of first activation.
struct LoopActivation {
    devs: Vec<PathBuf>,
    active: Mutex<BTreeMap<(String, String), PathBuf>>,
}

impl Activation for LoopActivation {
    fn activate(&self, vg: &VgRead, lv: &str) -> Result<ActiveVolume, ActivationError> {
        let vg = &vg.vg;
        let mut a = self.active.lock().unwrap();
        let n = a.len();
        let dev = a
            .entry((vg.name.clone(), lv.into()))
            .or_insert_with(|| self.devs[n].clone())
            .clone();
        Ok(ActiveVolume {
            vg: vg.name.clone(),
            lv: lv.into(),
            device: dev,
            size: Bytes(64 * MIB),
            open_count: 0,
        })
    }
    fn refresh(&self, vg: &VgRead, lv: &str) -> Result<Option<ActiveVolume>, ActivationError> {
        Ok(Some(self.activate(vg, lv)?))
    }
    fn deactivate(&self, vg: &VgRead, lv: &str) -> Result<bool, ActivationError> {
        let vg = vg.vg.name.as_str();
        Ok(self
            .active
            .lock()
            .unwrap()
            .remove(&(vg.into(), lv.into()))
            .is_some())
    }
    fn active_volumes(&self, vg: &VgRead) -> Result<Vec<ActiveVolume>, ActivationError> {
        let vg = vg.vg.name.as_str();
        Ok(self
            .active
            .lock()
            .unwrap()
            .iter()
            .filter(|((v, _), _)| v == vg)
            .map(|((v, l), d)| ActiveVolume {
                vg: v.clone(),
                lv: l.clone(),
                device: d.clone(),
                size: Bytes(64 * MIB),
                open_count: 0,
            })
            .collect())
    }
}

/// The tests here attach loop devices, and one counts the loop devices attached while
/// it runs: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_mount_point(p: &Path) -> bool {
    lvmd::mountinfo::is_mount_point(p).unwrap()
}

#[test]
fn mkfs_mount_bind_block_unmount_on_the_host() {
    if !host_tests_enabled("mkfs_mount_bind_block_unmount_on_the_host") {
        return;
    }
    let _serial = serial();
    // mkfs.xfs wants at least 300 MB.
    let loops = Loops::new(&[64, 320, 64]);
    let act = Arc::new(LoopActivation {
        devs: loops.devs.clone(),
        active: Mutex::new(BTreeMap::new()),
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("kubelet");
    std::fs::create_dir(&root).unwrap();
    let engine = SimEngine::simulated(
        &[(sim_dev("fast0"), Bytes(GIB))],
        act,
        Arc::new(HostNode),
        vec![root.clone()],
    );
    use lvmd::daemon::engine::Engine;
    engine
        .create_volume_group("vg-fast", &[sim_dev("fast0")])
        .unwrap();
    let d = Daemon::start_in(
        dir,
        root,
        Arc::new(engine),
        classes(),
        AccessPolicy::default(),
    );
    let (_, mut lv, _, mut node) = d.clients();
    let stage = d.target("plugins/lvmd/staging/fs");
    let publish = d.target("pods/p/volumes/fs");
    let xfs_target = d.target("plugins/lvmd/staging/xfs");
    let block = d.target("pods/p/volumeDevices/raw");
    let block_ro = d.target("pods/r/volumeDevices/raw");
    let cleanup_targets = [
        publish.clone(),
        stage.clone(),
        xfs_target.clone(),
        block.clone(),
        block_ro.clone(),
    ];
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.block_on(async {
            for n in ["fs", "xfs", "raw"] {
                lv.create_logical_volume(create_req("", n, 64 * MIB))
                    .await
                    .unwrap();
            }
            let req = |name: &str, target: &str, fs: &str| pb::MountVolumeRequest {
                volume: vref("", name),
                target_path: target.into(),
                fs_type: fs.into(),
                mount_options: vec!["noatime".into(), "nodev".into()],
                read_only: false,
                passphrase: Vec::new(),
            };
            let m = node
                .mount_volume(req("fs", &stage, ""))
                .await
                .unwrap()
                .into_inner();
            assert!(m.formatted);
            assert_eq!(m.fs_type, "ext4");
            assert!(is_mount_point(Path::new(&stage)));
            std::fs::write(Path::new(&stage).join("hello"), "data").unwrap();
            let again = node
                .mount_volume(req("fs", &stage, ""))
                .await
                .unwrap()
                .into_inner();
            assert!(!again.formatted, "formatted twice");
            // Something else is mounted there.
            let s = node
                .mount_volume(req("xfs", &stage, "xfs"))
                .await
                .unwrap_err();
            assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");

            let x = node
                .mount_volume(req("xfs", &xfs_target, "xfs"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!((x.fs_type.as_str(), x.formatted), ("xfs", true));

            let st = node
                .get_path_stats(pb::GetPathStatsRequest {
                    path: stage.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(!st.block);
            assert!(
                st.total_bytes > 40 * MIB && st.total_bytes <= 64 * MIB,
                "{st:?}"
            );
            assert!(st.used_inodes > 0 && st.free_inodes > 0, "{st:?}");

            // Read-only bind of the staged filesystem.
            node.bind_mount(pb::BindMountRequest {
                source_path: stage.clone(),
                target_path: publish.clone(),
                read_only: true,
            })
            .await
            .unwrap();
            assert_eq!(
                std::fs::read_to_string(Path::new(&publish).join("hello")).unwrap(),
                "data"
            );
            let e = std::fs::write(Path::new(&publish).join("x"), "x").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
            node.bind_mount(pb::BindMountRequest {
                source_path: stage.clone(),
                target_path: publish.clone(),
                read_only: true,
            })
            .await
            .expect("a repeated bind is success");

            // Raw block: the device node bound onto a file.
            let b = node
                .publish_block(pb::PublishBlockRequest {
                    volume: vref("", "raw"),
                    target_path: block.clone(),
                    read_only: false,
                    passphrase: Vec::new(),
                })
                .await
                .unwrap()
                .into_inner();
            let t = std::fs::metadata(&block).unwrap();
            assert!(t.file_type().is_block_device());
            assert_eq!(t.rdev(), std::fs::metadata(&b.device_path).unwrap().rdev());
            let st = node
                .get_path_stats(pb::GetPathStatsRequest {
                    path: block.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!((st.block, st.total_bytes), (true, 64 * MIB));
            // Written through the read-write publish, read through the read-only one.
            {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&block)
                    .unwrap();
                f.write_all_at(&[0xa5; 4096], 8192).unwrap();
                f.sync_all().unwrap();
            }

            // Read-only raw block: a read-only loop device over the volume, bound.
            let loops_before = lvmd_sys::loopdev::attached().unwrap();
            let ro = |read_only| pb::PublishBlockRequest {
                volume: vref("", "raw"),
                target_path: block_ro.clone(),
                read_only,
                passphrase: Vec::new(),
            };
            node.publish_block(ro(true)).await.unwrap();
            let t = std::fs::metadata(&block_ro).unwrap();
            assert!(t.file_type().is_block_device());
            assert_eq!(libc::major(t.rdev()), 7, "a loop device");
            let lo = PathBuf::from(format!("/dev/loop{}", libc::minor(t.rdev())));
            let status = lvmd_sys::loopdev::status(&lo).unwrap().expect("attached");
            assert!(status.read_only, "{status:?}");
            assert_eq!(
                status.backing_rdev,
                std::fs::metadata(&b.device_path).unwrap().rdev()
            );
            {
                use std::os::unix::fs::FileExt;
                let mut buf = [0u8; 4096];
                std::fs::File::open(&block_ro)
                    .unwrap()
                    .read_exact_at(&mut buf, 8192)
                    .unwrap();
                assert_eq!(buf, [0xa5; 4096]);
                // Even opened for writing through the node, every write fails.
                match std::fs::OpenOptions::new().write(true).open(&block_ro) {
                    Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}"),
                    Ok(f) => {
                        let e = f.write_at(&[0u8; 512], 0).unwrap_err();
                        assert!(
                            matches!(e.raw_os_error(), Some(libc::EPERM | libc::EROFS)),
                            "{e}"
                        );
                    }
                }
            }
            let st = node
                .get_path_stats(pb::GetPathStatsRequest {
                    path: block_ro.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!((st.block, st.total_bytes), (true, 64 * MIB));
            // A retry: the same loop device, no second one.
            node.publish_block(ro(true)).await.unwrap();
            assert_eq!(std::fs::metadata(&block_ro).unwrap().rdev(), t.rdev());
            let loops_now = lvmd_sys::loopdev::attached().unwrap();
            let new: Vec<_> = loops_now
                .iter()
                .filter(|l| !loops_before.contains(l))
                .collect();
            assert_eq!(new, [&lo], "one new loop device");
            // Read-write at the read-only target: there already, incompatible.
            let s = node.publish_block(ro(false)).await.unwrap_err();
            assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");
            // Unpublish: unmounted, removed, and the loop device detached.
            let u = node
                .unmount(pb::UnmountRequest {
                    target_path: block_ro.clone(),
                    remove_target: true,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(u.was_mounted);
            assert!(!Path::new(&block_ro).exists());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while lvmd_sys::loopdev::status(&lo)
                .unwrap()
                .is_some_and(|s| s.backing_rdev == status.backing_rdev)
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} not detached",
                    lo.display()
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }

            for t in [&publish, &stage, &xfs_target, &block] {
                let u = node
                    .unmount(pb::UnmountRequest {
                        target_path: t.clone(),
                        remove_target: true,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(u.was_mounted, "{t}");
                assert!(!Path::new(t).exists(), "{t} not removed");
            }
            // The filesystem survived: mounting again does not format.
            let m = node
                .mount_volume(req("fs", &stage, ""))
                .await
                .unwrap()
                .into_inner();
            assert!(!m.formatted);
            assert_eq!(
                std::fs::read_to_string(Path::new(&stage).join("hello")).unwrap(),
                "data"
            );
            node.unmount(pb::UnmountRequest {
                target_path: stage.clone(),
                remove_target: true,
            })
            .await
            .unwrap();
        })
    }));
    // Never leave mounts behind, even when an assertion failed.
    for t in cleanup_targets.iter().rev() {
        while is_mount_point(Path::new(t)) {
            let c = std::ffi::CString::new(t.as_str()).unwrap();
            // SAFETY: a NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                break;
            }
        }
    }
    drop(d);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Unmount(ConfinedPath);

impl Drop for Unmount {
    fn drop(&mut self) {
        use lvmd::daemon::Node;
        let _ = HostNode.unmount(&self.0);
    }
}

/// Whether this process may resize an ext4 online (EXT4_IOC_RESIZE_FS wants
/// CAP_SYS_RESOURCE, which some containers drop).
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    // CAP_SYS_RESOURCE is capability 24.
    eff & (1 << 24) != 0
}

/// Makes `fs_type` on a loop device of `from` MiB, mounts it, grows the device to `to`
/// MiB and the filesystem with `HostNode::grow_filesystem`: (size before, result).
fn grow_mounted(fs_type: &str, from: u64, to: u64) -> (u64, Result<u64, lvmd::daemon::NodeError>) {
    use lvmd::daemon::node::{MountKind, MountRequest, MountSource};
    use lvmd::daemon::Node;
    let loops = Loops::new(&[from]);
    let dev = loops.devs[0].clone();
    let node = HostNode;
    node.make_filesystem(&dev, fs_type, false).unwrap();
    let mnt_path = loops.dir.path().join("mnt");
    std::fs::create_dir(&mnt_path).unwrap();
    let mnt = check_path(&mnt_path, &[loops.dir.path().to_owned()]).unwrap();
    node.mount(&MountRequest {
        source: MountSource::Device(dev.clone()),
        target: mnt.clone(),
        kind: MountKind::Filesystem {
            fs_type: fs_type.into(),
        },
        read_only: false,
        options: vec![],
    })
    .unwrap();
    let _guard = Unmount(mnt.clone());
    let before = node.stats(&mnt).unwrap().total.0;
    std::fs::write(mnt_path.join("data"), b"kept").unwrap();

    // The "LV" grows: a longer backing file, and the loop device told so.
    let image = loops.dir.path().join("disk0.img");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(to << 20)
        .unwrap();
    let ok = std::process::Command::new("losetup")
        .arg("-c")
        .arg(&dev)
        .status()
        .unwrap()
        .success();
    assert!(ok, "losetup -c {}", dev.display());

    let r = node.grow_filesystem(&dev, &mnt, fs_type).and_then(|()| {
        // Again: nothing to do, still success.
        node.grow_filesystem(&dev, &mnt, fs_type)?;
        Ok(node.stats(&mnt).unwrap().total.0)
    });
    assert_eq!(std::fs::read(mnt_path.join("data")).unwrap(), b"kept");
    (before, r)
}

#[test]
fn grow_mounted_filesystems_online() {
    use lvmd::daemon::Node;
    if !host_tests_enabled("grow_mounted_filesystems_online") {
        return;
    }
    let _serial = serial();
    // mkfs.xfs wants at least 300 MB.
    let (before, after) = grow_mounted("xfs", 320, 480);
    let after = after.unwrap();
    assert!(
        after > before + (128 << 20),
        "xfs grew from {before} to {after}"
    );

    let (before, after) = grow_mounted("ext4", 32, 64);
    if has_cap_sys_resource() {
        let after = after.unwrap();
        assert!(
            after > before + (24 << 20),
            "ext4 grew from {before} to {after}"
        );
    } else {
        // resize2fs ran and its refusal came back whole.
        let e = after.unwrap_err().to_string();
        assert!(e.contains("resize2fs") && e.contains("ermission"), "{e}");
        eprintln!(
            "no CAP_SYS_RESOURCE here: ext4's online grow checked up to the kernel's refusal"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let somewhere = check_path(&dir.path().join("x"), &[dir.path().to_owned()]).unwrap();
    let e = HostNode
        .grow_filesystem(Path::new("/dev/null"), &somewhere, "btrfs")
        .unwrap_err();
    assert!(e.to_string().contains("btrfs"), "{e}");
}

fn hash_of(dev: &Path) -> u64 {
    use std::hash::Hasher;
    let bytes = std::fs::read(dev).unwrap();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(&bytes);
    h.finish()
}

fn write_at(dev: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

fn run_ok(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Staging on real devices with the real prober, mkfs and mount(2): formats only what
/// lvmd created blank, refuses (FAILED_PRECONDITION, saying why) and leaves every byte
/// of anything else.
#[test]
fn staging_formats_only_what_lvmd_created_blank() {
    use lvmd::daemon::engine::{Engine, EngineError, Layout, LvSpec, MountSpec};
    if !host_tests_enabled("staging_formats_only_what_lvmd_created_blank") {
        return;
    }
    let _serial = serial();
    let loops = Loops::new(&[64, 64, 64, 64, 64]);
    let act = Arc::new(LoopActivation {
        devs: loops.devs.clone(),
        active: Mutex::new(BTreeMap::new()),
    });
    let root = loops.dir.path().join("kubelet");
    std::fs::create_dir(&root).unwrap();
    let e = SimEngine::simulated(
        &[(sim_dev("d0"), Bytes(GIB))],
        act,
        Arc::new(HostNode),
        vec![root.clone()],
    );
    e.create_volume_group("vg", &[sim_dev("d0")]).unwrap();
    let target = root.join("stage");
    let _cleanup = Unmount(check_path(&target, std::slice::from_ref(&root)).unwrap());
    let spec = MountSpec {
        target: target.clone(),
        fs_type: String::new(),
        options: vec![],
        read_only: false,
    };
    let create = |n: &str| {
        e.create_logical_volume(
            "vg",
            &LvSpec {
                name: n.into(),
                size: Bytes(64 * MIB),
                layout: Layout::Linear,
                tags: vec![],
            },
        )
        .unwrap();
    };
    let refused = |n: &str, says: &[&str]| {
        let err = e.mount_volume("vg", n, &spec).unwrap_err();
        assert!(
            matches!(err, EngineError::FailedPrecondition { .. }),
            "{n}: {err:?}"
        );
        let msg = err.to_string();
        for s in says {
            assert!(msg.contains(s), "{n}: {msg}");
        }
        assert!(!is_mount_point(&target), "{n} mounted");
    };
    // Activated in this order, so each LV gets the loop device of its index.
    let dev = |i: usize| loops.devs[i].clone();

    // Fresh: formatted; then damaged at its superblock: refused, not formatted again.
    create("a");
    let m = e.mount_volume("vg", "a", &spec).unwrap();
    assert!(m.formatted);
    assert_eq!(m.device, dev(0));
    std::fs::write(target.join("f"), "kept").unwrap();
    e.unmount(&target, false).unwrap();
    write_at(&dev(0), 1024, &[0u8; 1024]);
    let h = hash_of(&dev(0));
    refused("a", &["lvmd formatted it as ext4", "finds no signature"]);
    assert_eq!(hash_of(&dev(0)), h, "a's bytes changed");

    // Handed out raw, an application made ext4 on it: adopted, mounted, its file there.
    create("b");
    let blk = root.join("blk");
    e.publish_block("vg", "b", &blk, false).unwrap();
    e.unmount(&blk, true).unwrap();
    run_ok("mkfs.ext4", &["-q", "-F", dev(1).to_str().unwrap()]);
    let m = e.mount_volume("vg", "b", &spec).unwrap();
    assert!(!m.formatted);
    assert_eq!(m.fs_type, "ext4");
    let tags = e.logical_volume("vg", "b").unwrap().tags;
    assert_eq!(tags, ["lvmd.fs=ext4"]);
    e.unmount(&target, false).unwrap();

    // Raw data an application wrote: refused, never formatted.
    create("c");
    e.publish_block("vg", "c", &blk, false).unwrap();
    e.unmount(&blk, true).unwrap();
    let data: Vec<u8> = (0..(4 << 20)).map(|i: u32| (i * 7 + 3) as u8).collect();
    write_at(&dev(2), 0, &data);
    let h = hash_of(&dev(2));
    refused("c", &["may hold data"]);
    assert_eq!(hash_of(&dev(2)), h, "c's bytes changed");

    // The csi-sanity case: a 128 MiB ext4's superblock on a 64 MiB device: both sizes.
    create("d");
    e.publish_block("vg", "d", &blk, false).unwrap();
    e.unmount(&blk, true).unwrap();
    let img = loops.dir.path().join("big.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    run_ok("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]);
    let head = std::fs::read(&img).unwrap()[..(4 << 20)].to_vec();
    write_at(&dev(3), 0, &head);
    refused("d", &["134217728 bytes", "67108864 bytes"]);

    // Fresh, but written to outside lvmd (a minix filesystem): refused, unchanged.
    create("e");
    run_ok("mkfs.minix", &[dev(4).to_str().unwrap()]);
    let h = hash_of(&dev(4));
    refused("e", &["a minix filesystem", "written outside lvmd"]);
    assert_eq!(hash_of(&dev(4)), h, "e's bytes changed");
}

/// Runs the test `name` of this binary again in a private mount namespace (its mounts,
/// even a wrong one, never reach the host's); `true` when already there.
fn in_private_mount_namespace(name: &str) -> bool {
    if std::env::var_os("LVMD_TEST_PRIVATE_NS").is_some() {
        return true;
    }
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("LVMD_TEST_PRIVATE_NS", "1")
        .output()
        .expect("run unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{name} in a private mount namespace failed"
    );
    assert!(text.contains("1 passed"), "{name} did not run: {text}");
    false
}

/// NodeWork on HostNode, mounting a loop device's ext4 (issue 15's race, on the host).
struct HostOps {
    work: lvmd::daemon::node_work::NodeWork,
    device: PathBuf,
}

impl common::race::Ops for HostOps {
    fn mount_fs(&self, target: &Path) -> Result<(), String> {
        let spec = lvmd::daemon::engine::MountSpec {
            target: target.to_owned(),
            fs_type: "ext4".into(),
            options: vec![],
            read_only: false,
        };
        let spec = self.work.check_mount(&spec).map_err(|e| e.to_string())?;
        // Formatted before the race; what is raced is the mount itself.
        if self
            .work
            .mounted_already(&self.device, &spec)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(());
        }
        self.work
            .mount_as(&self.device, &spec, "ext4", false)
            .map(drop)
            .map_err(|e| e.to_string())
    }
    fn bind(&self, source: &Path, target: &Path) -> Result<(), String> {
        self.work
            .bind(source, target, false)
            .map_err(|e| e.to_string())
    }
    fn unmount_remove(&self, target: &Path) -> Result<(), String> {
        self.work
            .unmount(target, true)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[test]
fn mounts_binds_and_removals_stay_below_the_root_while_a_pod_swaps_paths() {
    const NAME: &str = "mounts_binds_and_removals_stay_below_the_root_while_a_pod_swaps_paths";
    if !host_tests_enabled(NAME) || !in_private_mount_namespace(NAME) {
        return;
    }
    let loops = Loops::new(&[32]);
    let device = loops.devs[0].clone();
    HostNode.make_filesystem(&device, "ext4", false).unwrap();
    let root = loops.dir.path().join("kubelet");
    std::fs::create_dir(&root).unwrap();
    let ops = HostOps {
        work: lvmd::daemon::node_work::NodeWork::new(Arc::new(HostNode), vec![root.clone()]),
        device,
    };
    let started = std::time::Instant::now();
    let report = common::race::race(&ops, &root, 200);
    eprintln!(
        "{} exchanges in {:.1} s",
        report.swaps,
        started.elapsed().as_secs_f64()
    );
    // The race was on (some requests were refused as the path changed under them) and
    // lvmd still did its work when the path held still long enough.
    let (done, refused) = report.totals();
    assert!(report.swaps > 1000, "{} exchanges", report.swaps);
    assert!(refused > 0 && done > 0, "done {done}, refused {refused}");
}

/// What lvmd did before issue 15's fix: check the string, then use it (create_dir_all,
/// mount(2) by path). The race above must catch it, or its passing would mean nothing.
struct NaiveOps {
    device: PathBuf,
}

fn mount_by_path(
    source: &Path,
    target: &Path,
    fs: Option<&str>,
    flags: libc::c_ulong,
) -> Result<(), String> {
    use std::ffi::CString;
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let (src, dst) = (c(source), c(target));
    let fs = fs.map(|f| CString::new(f).unwrap());
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// The old code's work between check and use (blkid, mkfs, mountinfo reads), shortened.
fn between() {
    std::thread::sleep(std::time::Duration::from_micros(300));
}

impl common::race::Ops for NaiveOps {
    fn mount_fs(&self, target: &Path) -> Result<(), String> {
        std::fs::create_dir_all(target).map_err(|e| e.to_string())?;
        between();
        mount_by_path(&self.device, target, Some("ext4"), 0)
    }
    fn bind(&self, source: &Path, target: &Path) -> Result<(), String> {
        std::fs::create_dir_all(target).map_err(|e| e.to_string())?;
        between();
        mount_by_path(source, target, None, libc::MS_BIND)
    }
    fn unmount_remove(&self, target: &Path) -> Result<(), String> {
        let _ = std::process::Command::new("umount").arg(target).status();
        between();
        std::fs::remove_dir(target).map_err(|e| e.to_string())
    }
}

#[test]
fn the_race_catches_a_mounter_that_trusts_a_checked_path() {
    const NAME: &str = "the_race_catches_a_mounter_that_trusts_a_checked_path";
    if !host_tests_enabled(NAME) || !in_private_mount_namespace(NAME) {
        return;
    }
    let loops = Loops::new(&[32]);
    let device = loops.devs[0].clone();
    HostNode.make_filesystem(&device, "ext4", false).unwrap();
    let ops = NaiveOps { device };
    // Each kind of request on its own: each must be caught escaping.
    for (i, which) in common::race::SCENARIOS.iter().enumerate() {
        let root = loops.dir.path().join(format!("kubelet{i}"));
        std::fs::create_dir(&root).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            common::race::race_only(&ops, &root, 200, &[which])
        }));
        let msg = match r {
            Ok(_) => panic!("{which}: 200 rounds did not catch a mounter that follows symlinks"),
            Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        eprintln!("caught: {msg}");
        assert!(
            msg.contains("OUTSIDE the root")
                || msg.contains("was removed")
                || msg.contains("was taken away")
                || msg.contains("outside the root was bound"),
            "{which}: {msg}"
        );
    }
}
