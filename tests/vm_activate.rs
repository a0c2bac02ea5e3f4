//! lvmd's native activation against a real device-mapper and Debian's lvm2, inside the
//! throw-away VM of `tests/vm/run-in-vm.sh` (one boot for all cases of this binary):
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo test --test vm_activate                  # guest with udev
//! VM_NO_UDEV=1 CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo test --test vm_activate                  # guest without udev
//! ```
//!
//! Like `vm_smoke`, every case fails (never skips) outside the VM. The cases run one at a
//! time (they share the kernel's module loader and udev), each on its own loop devices
//! and VG, and remove their devices even when they fail.

mod common;

use common::{run, run_ok, Loops};
use lvmd::activate::{ActivateError, Activator, ActiveLv, NodeMode};
use lvmd::lvm::{Layout, Lvm};
use lvmd::model::{LogicalVolume, Segment, SegmentKind};
use lvmd::store::scan::VgOnDisk;
use lvmd::units::{Bytes, ExtentSize, Extents, Sectors};
use lvmd::uuid::Uuid;
use lvmd_sys::dm;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn expected_node_mode() -> NodeMode {
    if std::env::var_os("VM_NO_UDEV").is_some_and(|v| v == "1") {
        NodeMode::Direct
    } else {
        NodeMode::Udev
    }
}

/// Loop devices with one VG on them, and lvm2 confined to those devices with
/// activation on. Drop removes whatever devices of the VG are still active.
struct Bed {
    loops: Loops,
    vg: String,
}

impl Bed {
    /// A VG made by lvmd's library.
    fn made_by_lvmd(vg: &str, sizes_mib: &[u64]) -> Bed {
        let bed = Bed {
            loops: Loops::new(sizes_mib),
            vg: vg.into(),
        };
        bed.lvm()
            .vg_create(vg, &bed.loops.devs, ExtentSize::DEFAULT)
            .unwrap();
        bed
    }

    /// A VG made by lvm2.
    fn made_by_lvm2(vg: &str, sizes_mib: &[u64]) -> Bed {
        let bed = Bed {
            loops: Loops::new(sizes_mib),
            vg: vg.into(),
        };
        let mut args = vec!["vgcreate", vg];
        let devs: Vec<String> = bed
            .loops
            .devs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        args.extend(devs.iter().map(String::as_str));
        bed.lvm2_ok(&args);
        bed
    }

    fn lvm(&self) -> Lvm {
        self.loops.lvmd()
    }

    fn found(&self) -> VgOnDisk {
        self.lvm().read_vg(&self.vg).unwrap()
    }

    fn lvm2_config(&self) -> String {
        self.loops.lvm_config_with(true)
    }

    fn lvm2(&self, args: &[&str]) -> (bool, String, String) {
        let (cmd, rest) = args.split_first().unwrap();
        let config = self.lvm2_config();
        let mut full = vec![*cmd, "--config", &config];
        full.extend_from_slice(rest);
        run("lvm", &full)
    }

    fn lvm2_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.lvm2(args);
        assert!(ok, "lvm {args:?} failed:\n{err}\n{out}");
        out
    }

    /// `lvs -o lv_active` for one LV: lvm2's own view of whether it is active.
    fn lvm2_active(&self, lv: &str) -> bool {
        let target = format!("{}/{lv}", self.vg);
        let out = self.lvm2_ok(&["lvs", "--noheadings", "-o", "lv_active", &target]);
        match out.trim() {
            "active" => true,
            "" => false,
            other => panic!("lvs says {other:?} for {target}"),
        }
    }

    fn uuid_prefix(&self) -> String {
        format!("LVM-{}", self.found().vg.id.compact())
    }

    /// What device-mapper holds for this VG, as dmsetup shows it: per device, its
    /// name, uuid, attributes and table, plus what its nodes look like.
    fn dm_snapshot(&self) -> Vec<String> {
        let prefix = self.uuid_prefix();
        // lvm2's uuid alphabet has '!', which dmsetup's default name mangling refuses
        // to print; lvm2 itself passes uuids unmangled, and so do we.
        let info = run_ok(
            "dmsetup",
            &[
                "--manglename",
                "none",
                "info",
                "-c",
                "--noheadings",
                "--separator",
                " ",
                "-o",
                "name,uuid,attr",
            ],
        );
        let mut out = Vec::new();
        for line in info.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 3 || !f[1].starts_with(&prefix) {
                continue;
            }
            let table = run_ok("dmsetup", &["--manglename", "none", "table", f[0]]);
            out.push(format!(
                "{} {} {}\n{}nodes: {}",
                f[0],
                f[1],
                f[2],
                table,
                node_facts(f[0], &self.vg)
            ));
        }
        out.sort();
        out
    }

    fn assert_nothing_active(&self) {
        let left = self.dm_snapshot();
        assert!(left.is_empty(), "devices left behind: {left:#?}");
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let Ok(found) = self.lvm().read_vg(&self.vg) else {
            return;
        };
        if let Ok(act) = Activator::new() {
            for lv in &found.vg.lvs {
                let _ = act.deactivate(&found, &lv.name);
            }
        }
    }
}

/// How the nodes of a device look, with names that differ between runs normalised:
/// the type of `/dev/mapper/NAME` (a udev symlink to `../dm-N` or a real block node,
/// with its mode and group) and where `/dev/VG/LV` points.
fn node_facts(dm_name: &str, vg: &str) -> String {
    let mapper = Path::new("/dev/mapper").join(dm_name);
    let mapper_fact = match std::fs::symlink_metadata(&mapper) {
        Err(_) => "absent".to_owned(),
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(&mapper).unwrap();
            let t = target.to_string_lossy();
            let t = if t.starts_with("../dm-") {
                "../dm-N"
            } else {
                &t
            };
            format!("symlink {t}")
        }
        Ok(m) if m.file_type().is_block_device() => {
            format!("block {:o} gid {}", m.mode() & 0o7777, m.gid())
        }
        Ok(_) => "other".to_owned(),
    };
    // The LV link: find the LV name by undoing the escaping of the dm name.
    let lv_fact = lvmd_lv_of(dm_name)
        .map(|lv| {
            let link = Path::new("/dev").join(vg).join(&lv);
            match std::fs::read_link(&link) {
                Ok(t) => {
                    let t = t.to_string_lossy().into_owned();
                    let t = if t.starts_with("../dm-") {
                        "../dm-N".into()
                    } else {
                        t
                    };
                    format!("{} -> {t}", link.display())
                }
                Err(_) => format!("{} absent", link.display()),
            }
        })
        .unwrap_or_default();
    let ra = run_ok("blockdev", &["--getra", &mapper.to_string_lossy()]);
    format!("{mapper_fact}; {lv_fact}; read-ahead {}", ra.trim())
}

fn lvmd_lv_of(dm_name: &str) -> Option<String> {
    lvmd::activate::split_dm_name(dm_name).map(|(_, lv)| lv)
}

fn activator() -> Activator {
    let act = Activator::new().expect("activator in the VM");
    assert_eq!(act.node_mode(), expected_node_mode());
    act
}

/// Checks the nodes of an active LV: `/dev/VG/LV` and `/dev/mapper/NAME` both reach the
/// device's number.
fn assert_nodes(active: &ActiveLv) {
    for path in [&active.dev_path, &active.mapper_path] {
        let meta = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{} for {}: {e}", path.display(), active.dm_name));
        assert!(meta.file_type().is_block_device(), "{}", path.display());
        let rdev = meta.rdev();
        assert_eq!(
            (libc::major(rdev), libc::minor(rdev)),
            (active.major(), active.minor()),
            "{}",
            path.display()
        );
    }
}

fn assert_no_nodes(vg: &str, lv: &str, dm_name: &str) {
    for path in [
        Path::new("/dev").join(vg).join(lv),
        Path::new("/dev/mapper").join(dm_name),
    ] {
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "{} still there",
            path.display()
        );
    }
}

fn size_of(path: &Path) -> u64 {
    lvmd_sys::blkdev::device_size_bytes(File::open(path).unwrap()).unwrap()
}

/// A reproducible pattern: byte `i` of the LV is a function of `i` and `seed`.
fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = (offset + i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            (x >> 29) as u8
        })
        .collect()
}

fn write_pattern(path: &Path, seed: u64, offset: u64, len: u64) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut at = offset;
    while at < offset + len {
        let n = MIB.min(offset + len - at);
        f.write_all(&pattern(seed, at, n as usize)).unwrap();
        at += n;
    }
    f.sync_all().unwrap();
}

fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
}

fn assert_pattern(path: &Path, seed: u64, offset: u64, len: u64) {
    drop_caches();
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut at = offset;
    let mut buf = vec![0u8; MIB as usize];
    while at < offset + len {
        let n = MIB.min(offset + len - at) as usize;
        f.read_exact(&mut buf[..n]).unwrap();
        assert!(
            buf[..n] == pattern(seed, at, n)[..],
            "{}: data differs in the MiB at byte {at}",
            path.display()
        );
        at += n as u64;
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn dm_is_detected_by_ioctl_and_node_mode_by_udev() {
    let _serial = common::vm_case("vm_activate");
    assert!(dm::dm_available());
    let act = activator();
    eprintln!("node mode: {:?}", act.node_mode());
    // The mode follows udevd's control socket, which only a running udevd provides.
    assert_eq!(
        Path::new(lvmd::activate::nodes::UDEV_CONTROL).exists(),
        act.node_mode() == NodeMode::Udev
    );
}

/// Case 1: for the same metadata (written by lvmd), lvmd's activation and lvm2's give
/// identical names, uuids, attributes, tables and nodes.
#[test]
fn tables_names_and_nodes_equal_lvm2s() {
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvmd("act-tables", &[48, 48, 48]);
    let lvm = bed.lvm();
    lvm.lv_create(&bed.vg, "lin-1", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();
    // Three segments: every extension is blocked by a spacer LV.
    lvm.lv_create(&bed.vg, "multi", Bytes(4 * MIB), Layout::Linear, &[])
        .unwrap();
    for (i, size) in [8, 12].into_iter().enumerate() {
        lvm.lv_create(
            &bed.vg,
            &format!("spacer{i}"),
            Bytes(4 * MIB),
            Layout::Linear,
            &[],
        )
        .unwrap();
        lvm.lv_resize(&bed.vg, "multi", Bytes(size * MIB)).unwrap();
    }
    let striped = Layout::Striped {
        stripes: 2,
        stripe_size: Sectors(128),
    };
    lvm.lv_create(&bed.vg, "str-ipe", Bytes(16 * MIB), striped, &[])
        .unwrap();
    let found = bed.found();
    assert!(found.vg.lv("multi").unwrap().segments.len() >= 3);
    bed.assert_nothing_active();
    // lvm2 adds a zero and an error LV to the same VG: the other targets we plan.
    bed.lvm2_ok(&[
        "lvcreate", "--type", "zero", "-an", "-Zn", "-L", "8M", "-n", "nothing", &bed.vg,
    ]);
    bed.assert_nothing_active();
    bed.lvm2_ok(&[
        "lvcreate", "--type", "error", "-an", "-Zn", "-L", "4M", "-n", "broken", &bed.vg,
    ]);
    let found = bed.found();
    let lvs = ["lin-1", "multi", "str-ipe", "nothing", "broken", "spacer0"];

    let act = activator();
    for lv in lvs {
        let active = act.activate(&found, lv).unwrap();
        assert_eq!(active.lv.as_deref(), Some(lv));
        assert_nodes(&active);
        // What the kernel holds is exactly the plan.
        let plan = act.plan(&found, lv).unwrap();
        let table = run_ok(
            "dmsetup",
            &["--manglename", "none", "table", &active.dm_name],
        );
        assert_eq!(
            table.lines().map(str::trim_end).collect::<Vec<_>>(),
            lvmd::activate::target::table_text(&plan.top().table)
                .lines()
                .collect::<Vec<_>>(),
            "{lv}"
        );
        assert_eq!(active.size, plan.top().size());
        assert!(bed.lvm2_active(lv), "lvs does not see {lv} active");
    }
    let listed = act.list_active(&found).unwrap();
    let names: Vec<&str> = listed.iter().map(|a| a.dm_name.as_str()).collect();
    assert_eq!(listed.len(), lvs.len(), "{names:?}");
    let ours = bed.dm_snapshot();
    for lv in lvs {
        assert!(act.deactivate(&found, lv).unwrap());
        assert!(
            !act.deactivate(&found, lv).unwrap(),
            "second deactivate of {lv}"
        );
    }
    bed.assert_nothing_active();
    assert!(act.list_active(&found).unwrap().is_empty());

    for lv in lvs {
        bed.lvm2_ok(&["lvchange", "-ay", &format!("{}/{lv}", bed.vg)]);
    }
    let theirs = bed.dm_snapshot();
    bed.lvm2_ok(&["vgchange", "-an", &bed.vg]);
    bed.assert_nothing_active();
    assert_eq!(ours, theirs);
    for lv in lvs {
        assert_no_nodes(
            &bed.vg,
            lv,
            &lvmd::activate::plan::dm_name(&bed.vg, lv, None),
        );
    }
}

/// Case 2: lvm2 and lvmd activate and deactivate each other's devices, and agree on
/// what is active.
#[test]
fn lvm2_and_lvmd_take_over_each_others_devices() {
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvm2("act-mix", &[32, 32]);
    // lvcreate activates (and wipes the start of) the new LVs.
    bed.lvm2_ok(&["lvcreate", "-L", "8M", "-n", "lin", &bed.vg]);
    bed.lvm2_ok(&["lvcreate", "-i2", "-I64k", "-L", "8M", "-n", "str", &bed.vg]);
    let found = bed.found();
    let act = activator();
    let listed: Vec<String> = act
        .list_active(&found)
        .unwrap()
        .into_iter()
        .map(|a| a.lv.unwrap())
        .collect();
    assert_eq!(listed, ["lin", "str"], "list from device-mapper");
    let before = act
        .status(&found, "str")
        .unwrap()
        .expect("lvm2 activated str");
    let theirs = bed.dm_snapshot();

    // Active by lvm2, deactivated by us.
    assert!(act.deactivate(&found, "lin").unwrap());
    assert!(!bed.lvm2_active("lin"));
    assert_no_nodes(&bed.vg, "lin", "act--mix-lin");
    // Activating what lvm2 already activated changes nothing.
    let again = act.activate(&found, "str").unwrap();
    assert_eq!(again.devnum, before.devnum);
    assert!(act.deactivate(&found, "str").unwrap());
    assert!(!bed.lvm2_active("str"));
    bed.assert_nothing_active();

    // Active by us, deactivated by lvm2.
    for lv in ["lin", "str"] {
        let active = act.activate(&found, lv).unwrap();
        assert_nodes(&active);
        assert!(bed.lvm2_active(lv));
    }
    assert_eq!(bed.dm_snapshot(), theirs, "our devices differ from lvm2's");
    bed.lvm2_ok(&["lvchange", "-an", &format!("{}/lin", bed.vg)]);
    assert!(!act.is_active(&found, "lin").unwrap());
    assert!(act.is_active(&found, "str").unwrap());
    assert_no_nodes(&bed.vg, "lin", "act--mix-lin");
    bed.lvm2_ok(&["vgchange", "-an", &bed.vg]);
    assert!(act.list_active(&found).unwrap().is_empty());
    assert_no_nodes(&bed.vg, "str", "act--mix-str");
}

/// Case 3: data written through an active striped LV survives online extension and
/// reduction (lvmd's metadata change, then our refresh).
#[test]
fn online_resize_of_a_striped_lv_keeps_the_data() {
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvmd("act-resize", &[48, 48]);
    let lvm = bed.lvm();
    let striped = Layout::Striped {
        stripes: 2,
        stripe_size: Sectors(128),
    };
    lvm.lv_create(&bed.vg, "data", Bytes(8 * MIB), striped, &[])
        .unwrap();
    let act = activator();
    let active = act.activate(&bed.found(), "data").unwrap();
    assert_eq!(size_of(&active.dev_path), 8 * MIB);
    write_pattern(&active.dev_path, 1, 0, 8 * MIB);

    // Extend while open: allowed.
    let holder = File::open(&active.dev_path).unwrap();
    lvm.lv_resize(&bed.vg, "data", Bytes(24 * MIB)).unwrap();
    let grown = act.refresh(&bed.found(), "data").unwrap();
    assert_eq!(grown.devnum, active.devnum, "same device, new table");
    assert_eq!(grown.size, Sectors(24 * MIB / 512));
    assert_eq!(size_of(&active.dev_path), 24 * MIB);
    assert_nodes(&grown);
    write_pattern(&active.dev_path, 2, 8 * MIB, 16 * MIB);
    assert_pattern(&active.dev_path, 1, 0, 8 * MIB);
    assert_pattern(&active.dev_path, 2, 8 * MIB, 16 * MIB);
    // A refresh with nothing to change is a no-op.
    act.refresh(&bed.found(), "data").unwrap();

    // Reduce: refused while open, done once closed.
    lvm.lv_resize(&bed.vg, "data", Bytes(16 * MIB)).unwrap();
    match act.refresh(&bed.found(), "data") {
        Err(e @ ActivateError::ShrinkWhileOpen { .. }) => {
            let text = e.to_string();
            assert!(text.contains("act--resize-data"), "{text}");
        }
        other => panic!("expected ShrinkWhileOpen, got {other:?}"),
    }
    assert_eq!(
        size_of(&active.dev_path),
        24 * MIB,
        "a refused shrink changed the size"
    );
    drop(holder);
    let shrunk = act.refresh(&bed.found(), "data").unwrap();
    assert_eq!(shrunk.size, Sectors(16 * MIB / 512));
    assert_eq!(size_of(&active.dev_path), 16 * MIB);
    assert_pattern(&active.dev_path, 1, 0, 8 * MIB);
    assert_pattern(&active.dev_path, 2, 8 * MIB, 8 * MIB);
    let lvs = bed.lvm2_ok(&[
        "lvs",
        "--noheadings",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "lv_size",
        &format!("{}/data", bed.vg),
    ]);
    assert_eq!(lvs.trim(), (16 * MIB).to_string());

    // And the resized table is the one lvm2 makes for the new metadata.
    let ours = bed.dm_snapshot();
    act.deactivate(&bed.found(), "data").unwrap();
    bed.lvm2_ok(&["lvchange", "-ay", &format!("{}/data", bed.vg)]);
    assert_eq!(bed.dm_snapshot(), ours);
    assert_pattern(Path::new(&format!("/dev/{}/data", bed.vg)), 1, 0, 8 * MIB);
    bed.lvm2_ok(&["vgchange", "-an", &bed.vg]);
}

/// Restores `/proc/sys/kernel/modprobe` on drop.
struct ModprobePath(String);

impl ModprobePath {
    fn break_it() -> ModprobePath {
        let old = std::fs::read_to_string("/proc/sys/kernel/modprobe").unwrap();
        std::fs::write("/proc/sys/kernel/modprobe", "/nonexistent/modprobe").unwrap();
        ModprobePath(old.trim().to_owned())
    }
}

impl Drop for ModprobePath {
    fn drop(&mut self) {
        std::fs::write("/proc/sys/kernel/modprobe", &self.0).unwrap();
    }
}

fn zero_lv(name: &str, extents: u64) -> LogicalVolume {
    LogicalVolume {
        name: name.into(),
        id: Uuid::random(),
        status: vec!["READ".into(), "WRITE".into(), "VISIBLE".into()],
        flags: vec![],
        tags: vec![],
        creation_time: None,
        creation_host: None,
        segments: vec![Segment {
            start_extent: Extents(0),
            extent_count: Extents(extents),
            kind: SegmentKind::Other {
                type_name: "zero".into(),
                body: Default::default(),
            },
            tags: vec![],
            extra: Default::default(),
        }],
        extra: Default::default(),
    }
}

fn assert_no_device(act: &Activator, name: &str) {
    assert!(
        act.dm().info_by_name(name).unwrap().is_none(),
        "{name} was left behind"
    );
    let (ok, _, _) = run("dmsetup", &["--manglename", "none", "info", name]);
    assert!(!ok, "dmsetup still sees {name}");
}

/// Case 4: busy devices, tables the kernel refuses, missing targets and PVs, taken
/// names: clear errors, and nothing left half-made.
#[test]
fn failures_are_named_and_leave_nothing_behind() {
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvmd("act-fail", &[32, 32]);
    let lvm = bed.lvm();
    lvm.lv_create(&bed.vg, "lin", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();
    let act = activator();
    let found = bed.found();

    // Busy: an open device is not deactivated, and stays usable.
    let active = act.activate(&found, "lin").unwrap();
    let holder = File::open(&active.dev_path).unwrap();
    match act.deactivate(&found, "lin") {
        Err(e @ ActivateError::Busy { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("act--fail-lin") && text.contains("busy"),
                "{text}"
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(act.is_active(&found, "lin").unwrap());
    assert!(bed.lvm2_active("lin"));
    assert_nodes(&active);
    drop(holder);

    // Left suspended with a table loaded but never resumed (a crash in the middle of
    // a reload): activation resumes it on its live table and drops the other.
    let dmsetup = |args: &[&str]| {
        let mut full = vec!["--manglename", "none"];
        full.extend_from_slice(args);
        run_ok("dmsetup", &full)
    };
    dmsetup(&["suspend", "act--fail-lin"]);
    dmsetup(&["load", "act--fail-lin", "--table", "0 8 error"]);
    let before = act.dm().info_by_name("act--fail-lin").unwrap().unwrap();
    assert!(before.suspended && before.inactive_table);
    let resumed = act.activate(&found, "lin").unwrap();
    assert!(!resumed.suspended);
    let after = act.dm().info_by_name("act--fail-lin").unwrap().unwrap();
    assert!(!after.suspended && !after.inactive_table, "{after:?}");
    assert_eq!(resumed.size, Sectors(8 * MIB / 512));

    assert!(act.deactivate(&found, "lin").unwrap());
    assert_no_device(&act, "act--fail-lin");

    // A missing PV: refused by name before anything reaches the kernel; an LV on the
    // PVs that are there still activates.
    lvm.lv_create(&bed.vg, "far", Bytes(28 * MIB), Layout::Linear, &[])
        .unwrap();
    let found = bed.found();
    let far = found.vg.lv("far").unwrap();
    let far_pvs: Vec<&str> = far
        .segments
        .iter()
        .flat_map(|s| match &s.kind {
            SegmentKind::Striped { stripes, .. } => {
                stripes.iter().map(|a| a.name.as_str()).collect()
            }
            _ => vec![],
        })
        .collect();
    let lin_pv = match &found.vg.lv("lin").unwrap().segments[0].kind {
        SegmentKind::Striped { stripes, .. } => stripes[0].name.clone(),
        _ => unreachable!(),
    };
    let gone = found
        .vg
        .pvs
        .iter()
        .find(|p| p.name != lin_pv && far_pvs.contains(&p.name.as_str()))
        .expect("far spans the PV that lin is not on");
    let mut partial = found.clone();
    partial.devices.remove(&gone.id);
    match act.activate(&partial, "far") {
        Err(e @ ActivateError::MissingPv { .. }) => {
            let text = e.to_string();
            assert!(text.contains("far") && text.contains(&gone.name), "{text}");
        }
        other => panic!("expected MissingPv, got {other:?}"),
    }
    assert_no_device(&act, "act--fail-far");
    act.activate(&partial, "lin").unwrap();
    act.deactivate(&partial, "lin").unwrap();

    // A name taken by a foreign device.
    run_ok(
        "dmsetup",
        &["create", "act--fail-lin", "--table", "0 8 error"],
    );
    match act.activate(&found, "lin") {
        Err(ActivateError::NameTaken { name, .. }) => assert_eq!(name, "act--fail-lin"),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    run_ok("dmsetup", &["remove", "act--fail-lin"]);

    // A target the kernel does not have (module autoload broken): named, nothing left.
    let mut with_zero = found.clone();
    std::sync::Arc::make_mut(&mut with_zero.vg)
        .lvs
        .push(zero_lv("void", 2));
    let _ = run("rmmod", &["dm_zero"]);
    assert!(
        !act.dm().target_types().unwrap().iter().any(|t| t == "zero"),
        "dm-zero is loaded and cannot be unloaded"
    );
    {
        let _broken = ModprobePath::break_it();
        match act.activate(&with_zero, "void") {
            Err(e @ ActivateError::TargetMissing { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("\"zero\"") && text.contains("act--fail-void"),
                    "{text}"
                );
            }
            other => panic!("expected TargetMissing, got {other:?}"),
        }
        assert_no_device(&act, "act--fail-void");
        assert_no_nodes(&bed.vg, "void", "act--fail-void");
    }
    // With the loader back, the kernel loads dm-zero itself and the same plan works.
    let void = act.activate(&with_zero, "void").unwrap();
    let mut head = vec![1u8; 4096];
    File::open(&void.dev_path)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert!(head.iter().all(|b| *b == 0));
    act.deactivate(&with_zero, "void").unwrap();

    // A table the kernel rejects: the PV's device shrank under the metadata.
    let far_plan = act.plan(&found, "far").unwrap();
    let image = bed.loops.dir.path().join(format!(
        "disk{}.img",
        bed.loops
            .devs
            .iter()
            .position(|d| *d == found.devices[&gone.id])
            .unwrap()
    ));
    OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(4 * MIB)
        .unwrap();
    let gone_dev: PathBuf = found.devices[&gone.id].clone();
    run_ok("losetup", &["-c", gone_dev.to_str().unwrap()]);
    assert_eq!(size_of(&gone_dev), 4 * MIB);
    match act.activate(&found, "far") {
        Err(e @ ActivateError::DeviceTooSmall { .. }) => {
            let text = e.to_string();
            assert!(text.contains("act--fail-far"), "{text}");
        }
        other => panic!(
            "expected DeviceTooSmall, got {other:?}\nplan:\n{}",
            lvmd::activate::target::table_text(&far_plan.top().table)
        ),
    }
    assert_no_device(&act, "act--fail-far");
    assert_no_nodes(&bed.vg, "far", "act--fail-far");
    assert!(!bed.lvm2_active("lin"));
    bed.assert_nothing_active();
}

/// lvm2's view of a raid LV: (`lv_active`, `lv_health_status`, `sync_percent`).
fn lvm2_raid_state(bed: &Bed, lv: &str) -> (String, String, String) {
    let target = format!("{}/{lv}", bed.vg);
    let out = bed.lvm2_ok(&[
        "lvs",
        "--noheadings",
        "--separator",
        "|",
        "-o",
        "lv_active,lv_health_status,sync_percent",
        &target,
    ]);
    let f: Vec<String> = out.trim().split('|').map(|s| s.trim().to_owned()).collect();
    assert_eq!(f.len(), 3, "{out:?}");
    (f[0].clone(), f[1].clone(), f[2].clone())
}

/// Waits until lvm2 reports the raid LV fully in sync and healthy.
fn wait_raid_healthy(bed: &Bed, lv: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let state = lvm2_raid_state(bed, lv);
        if state == ("active".into(), String::new(), "100.00".into()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{lv} not in sync and healthy: {state:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Case 5: a raid1 LV made by lvm2: lvmd activates the same five devices (two metadata
/// and two image legs, hidden, under the LV's dm-raid device) with the same names,
/// uuids, tables and nodes; the data reads back; lvm2 calls it active and healthy;
/// either side deactivates what the other activated; failures leave nothing behind.
#[test]
fn raid1_made_by_lvm2_activates_as_lvm2_does() {
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvm2("act-raid", &[32, 32]);
    bed.lvm2_ok(&[
        "lvcreate", "--type", "raid1", "-m1", "-L", "8M", "-n", "r", &bed.vg,
    ]);
    wait_raid_healthy(&bed, "r");
    let lv_path = Path::new("/dev").join(&bed.vg).join("r");
    write_pattern(&lv_path, 0x5eed, 0, 8 * MIB);
    let theirs = bed.dm_snapshot();
    eprintln!("lvm2's devices:\n{}", theirs.join("\n"));
    assert_eq!(theirs.len(), 5, "{theirs:#?}");
    assert!(
        theirs
            .iter()
            .any(|d| d.contains("raid raid1 3 0 region_size 4096 2 ")),
        "{theirs:#?}"
    );
    bed.lvm2_ok(&["lvchange", "-an", &format!("{}/r", bed.vg)]);
    bed.assert_nothing_active();

    let found = bed.found();
    let act = activator();
    let legs = ["r_rmeta_0", "r_rimage_0", "r_rmeta_1", "r_rimage_1"];

    // A missing leg PV: activated degraded, as lvm2's activation_mode "degraded" does
    // (the leg's sub-LVs error devices of their length); dm-raid fails that leg and
    // serves reads and writes from the other.
    let leg_pv = found.vg.pvs[1].clone();
    let mut partial = found.clone();
    partial.devices.remove(&leg_pv.id);
    // The leg on that PV (lvm2 put leg N on the Nth PV; checked, not assumed).
    let gone = (0..2)
        .find(|i| {
            let image = found.vg.lv(&format!("r_rimage_{i}")).unwrap();
            matches!(&image.segments[0].kind, SegmentKind::Striped { stripes, .. }
                if stripes[0].name == leg_pv.name)
        })
        .unwrap();
    let degraded = act.activate(&partial, "r").unwrap();
    let tables = bed.dm_snapshot();
    for leg in [format!("r_rmeta_{gone}"), format!("r_rimage_{gone}")] {
        assert!(
            tables
                .iter()
                .any(|d| d.contains(&format!("act--raid-{leg}")) && d.contains(" error")),
            "{tables:#?}"
        );
    }
    let status = act.raid_status(&partial, "r").unwrap().unwrap();
    assert_eq!(status.dead_legs(), vec![gone], "{status:?}");
    assert_pattern(&degraded.dev_path, 0x5eed, 0, 8 * MIB);
    // Writable: the same pattern again over the first MiB, read back past the cache.
    write_pattern(&degraded.dev_path, 0x5eed, 0, MIB);
    assert_pattern(&degraded.dev_path, 0x5eed, 0, 8 * MIB);
    assert_eq!(act.table_current(&partial, "r").unwrap(), Some(true));
    assert!(act.deactivate(&partial, "r").unwrap());
    bed.assert_nothing_active();
    // No copy left: refused by name before anything reaches the kernel.
    let mut none_left = partial.clone();
    none_left.devices.remove(&found.vg.pvs[0].id);
    match act.activate(&none_left, "r") {
        Err(e @ ActivateError::MissingPv { .. }) => {
            // Named: the mirror, and a PV that is missing.
            let text = e.to_string();
            assert!(
                text.contains("act-raid/r")
                    && [&leg_pv.name, &found.vg.pvs[0].name]
                        .iter()
                        .any(|pv| text.contains(pv.as_str())),
                "{text}"
            );
        }
        other => panic!("expected MissingPv, got {other:?}"),
    }
    bed.assert_nothing_active();

    // No raid target (module unloaded, loader broken): the legs made first are removed.
    let _ = run("rmmod", &["dm_raid"]);
    if !act.dm().target_types().unwrap().iter().any(|t| t == "raid") {
        let _broken = ModprobePath::break_it();
        match act.activate(&found, "r") {
            Err(e @ ActivateError::TargetMissing { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("\"raid\"") && text.contains("act--raid-r"),
                    "{text}"
                );
            }
            other => panic!("expected TargetMissing, got {other:?}"),
        }
        bed.assert_nothing_active();
        for leg in legs {
            assert_no_nodes(&bed.vg, leg, &format!("act--raid-{leg}"));
        }
    } else {
        eprintln!("dm-raid cannot be unloaded here: rollback case skipped");
    }

    // lvmd activates: the same devices as lvm2's.
    let active = act.activate(&found, "r").unwrap();
    assert_eq!(active.lv.as_deref(), Some("r"));
    assert_eq!(active.size, Sectors(8 * MIB / 512));
    assert_nodes(&active);
    let ours = bed.dm_snapshot();
    assert_eq!(ours, theirs, "our devices differ from lvm2's");
    assert_pattern(&active.dev_path, 0x5eed, 0, 8 * MIB);
    wait_raid_healthy(&bed, "r");
    for leg in legs {
        assert!(bed
            .lvm2_ok(&[
                "lvs",
                "-a",
                "--noheadings",
                "-o",
                "lv_name,lv_active",
                &bed.vg
            ])
            .lines()
            .any(|l| l.contains(&format!("[{leg}]")) && l.contains("active")));
    }
    let listed = act.list_active(&found).unwrap();
    assert_eq!(listed.len(), 5, "{listed:#?}");
    for a in &listed {
        if a.lv.as_deref() != Some("r") {
            // Legs: only /dev/mapper, as lvm2 has them.
            assert_eq!(a.dev_path, a.mapper_path, "{a:?}");
            assert!(a.layer.is_none());
        }
    }
    assert_eq!(act.table_current(&found, "r").unwrap(), Some(true));
    assert_eq!(act.refresh(&found, "r").unwrap().devnum, active.devnum);
    // Activating again changes nothing.
    assert_eq!(act.activate(&found, "r").unwrap().devnum, active.devnum);
    assert_eq!(bed.dm_snapshot(), theirs);

    // Busy: the LV open, or a leg open by someone else: nothing is removed.
    {
        let _holder = File::open(&active.dev_path).unwrap();
        assert!(matches!(
            act.deactivate(&found, "r"),
            Err(ActivateError::Busy { .. })
        ));
    }
    {
        let leg = Path::new("/dev/mapper").join("act--raid-r_rimage_1");
        let _holder = File::open(&leg).unwrap();
        match act.deactivate(&found, "r") {
            Err(e @ ActivateError::Busy { .. }) => {
                assert!(e.to_string().contains("act--raid-r_rimage_1"), "{e}");
            }
            other => panic!("expected Busy for the leg, got {other:?}"),
        }
    }
    assert_eq!(
        bed.dm_snapshot(),
        theirs,
        "a refused deactivation changed something"
    );

    // Ours, deactivated by lvm2.
    bed.lvm2_ok(&["lvchange", "-an", &format!("{}/r", bed.vg)]);
    bed.assert_nothing_active();
    assert!(!act.is_active(&found, "r").unwrap());
    assert_no_nodes(&bed.vg, "r", "act--raid-r");

    // lvm2's, deactivated by us.
    bed.lvm2_ok(&["lvchange", "-ay", &format!("{}/r", bed.vg)]);
    wait_raid_healthy(&bed, "r");
    assert_eq!(bed.dm_snapshot(), theirs);
    let again = act.activate(&found, "r").unwrap();
    assert_eq!(bed.dm_snapshot(), theirs);
    assert_pattern(&again.dev_path, 0x5eed, 0, 8 * MIB);
    assert!(act.deactivate(&found, "r").unwrap());
    assert!(!act.deactivate(&found, "r").unwrap(), "second deactivate");
    bed.assert_nothing_active();
    assert!(!bed.lvm2_active("r"));
    assert!(matches!(
        act.refresh(&found, "r"),
        Err(ActivateError::NotActive { .. })
    ));
    assert_eq!(act.table_current(&found, "r").unwrap(), None);
    assert_no_nodes(&bed.vg, "r", "act--raid-r");
    for leg in legs {
        assert_no_nodes(&bed.vg, leg, &format!("act--raid-{leg}"));
    }
}

/// dm-integrity's status of a device: (mismatches, data sectors, recalculated up to
/// or `-`).
fn integrity_status(dm_name: &str) -> (u64, u64, String) {
    let out = run_ok("dmsetup", &["status", dm_name]);
    // 0 <len> integrity <mismatches> <data sectors> <recalculated>
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.get(2), Some(&"integrity"), "{dm_name}: {out}");
    (
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
        f[5].to_owned(),
    )
}

/// Case 5b: a raid1 mirror lvm2 made with dm-integrity under each copy
/// (`--raidintegrity y`): lvmd activates lvm2's nine devices (per leg rmeta, imeta,
/// iorig and the image's integrity device over the last two) with the same names,
/// uuids, tables (as the kernel reports them) and nodes; blocks corrupted on each
/// copy's data sub-LV, straight on the PV, are caught by dm-integrity (mismatches
/// counted on both legs by a scrub), and the mirror reads the right data throughout.
#[test]
fn raid1_with_integrity_lvm2_made_activates_and_serves_the_good_copy() {
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvm2("act-rint", &[40, 40]);
    bed.lvm2_ok(&[
        "lvcreate",
        "--type",
        "raid1",
        "-m1",
        "--raidintegrity",
        "y",
        "-L",
        "8M",
        "-n",
        "r",
        &bed.vg,
    ]);
    wait_raid_healthy(&bed, "r");
    // The kernel computes the tags of what lvcreate left (recalculate) in the
    // background: done when it reached the data's end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for leg in 0..2 {
        let name = format!("act--rint-r_rimage_{leg}");
        loop {
            let (_, data, recalc) = integrity_status(&name);
            if recalc == "-" || recalc == data.to_string() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{name}: {recalc}");
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    let lv_path = Path::new("/dev").join(&bed.vg).join("r");
    write_pattern(&lv_path, 0x1e9, 0, 8 * MIB);
    let theirs = bed.dm_snapshot();
    assert_eq!(theirs.len(), 9, "{theirs:#?}");
    bed.lvm2_ok(&["lvchange", "-an", &format!("{}/r", bed.vg)]);
    bed.assert_nothing_active();

    let found = bed.found();
    let act = activator();
    let active = act.activate(&found, "r").unwrap();
    assert_nodes(&active);
    assert_eq!(bed.dm_snapshot(), theirs, "our devices differ from lvm2's");
    assert_eq!(act.table_current(&found, "r").unwrap(), Some(true));
    assert_eq!(act.activate(&found, "r").unwrap().devnum, active.devnum);
    assert_pattern(&active.dev_path, 0x1e9, 0, 8 * MIB);

    // 4 KiB of junk on copy 0 at every even MiB of the data, on copy 1 at every odd
    // one, written to the PVs under the integrity layer (where a failing disk would).
    for leg in 0..2u64 {
        let iorig = found.vg.lv(&format!("r_rimage_{leg}_iorig")).unwrap();
        let SegmentKind::Striped { stripes, .. } = &iorig.segments[0].kind else {
            panic!("{iorig:?}")
        };
        let pv = found
            .vg
            .pvs
            .iter()
            .find(|p| p.name == stripes[0].name)
            .unwrap();
        let start = (pv.pe_start + found.vg.extent_size.span(stripes[0].start)).0 * 512;
        let mut disk = OpenOptions::new()
            .write(true)
            .open(&found.devices[&pv.id])
            .unwrap();
        for mib in (leg..8).step_by(2) {
            disk.seek(SeekFrom::Start(start + mib * MIB)).unwrap();
            disk.write_all(&[0xa5; 4096]).unwrap();
        }
        disk.sync_all().unwrap();
    }
    // Read through the mirror: the right data, whichever copy serves each block.
    assert_pattern(&active.dev_path, 0x1e9, 0, 8 * MIB);
    // A scrub reads both copies: each one's corruption is counted, and repaired from
    // the other copy.
    bed.lvm2_ok(&[
        "lvchange",
        "--syncaction",
        "check",
        &format!("{}/r", bed.vg),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        // 0 <len> raid raid1 2 <health> <synced>/<total> <action> <mismatches> ...
        let status = run_ok("dmsetup", &["status", "act--rint-r"]);
        let f: Vec<&str> = status.split_whitespace().collect();
        let (done, all) = f[6].split_once('/').unwrap();
        if f[5] == "AA" && done == all && f[7] == "idle" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "scrub did not end: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let mismatches: Vec<u64> = (0..2)
        .map(|leg| integrity_status(&format!("act--rint-r_rimage_{leg}")).0)
        .collect();
    eprintln!("integrity mismatches per leg: {mismatches:?}");
    assert!(mismatches.iter().all(|&m| m >= 1), "{mismatches:?}");
    let lvs = bed.lvm2_ok(&[
        "lvs",
        "-a",
        "-o",
        "lv_name,segtype,lv_health_status,integritymismatches,devices",
        &bed.vg,
    ]);
    eprintln!("lvm2's view:\n{lvs}");
    assert_pattern(&active.dev_path, 0x1e9, 0, 8 * MIB);
    assert!(act.deactivate(&found, "r").unwrap());
    bed.assert_nothing_active();
}

/// Case 6: a thin pool and thin LVs that lvm2 made: lvmd activates a thin LV (and the
/// pool) with the very devices lvm2 makes (names, uuids, attributes, tables, nodes),
/// the data lvm2 wrote reads back, and each side deactivates what the other activated.
#[test]
fn thin_lvs_lvm2_made_activate_with_lvm2s_devices() {
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvm2("act-thin", &[64, 32]);
    let vg = bed.vg.clone();
    let pool = format!("{vg}/pool");
    bed.lvm2_ok(&[
        "lvcreate",
        "--type",
        "thin-pool",
        "-L",
        "32M",
        "-n",
        "pool",
        &vg,
    ]);
    bed.lvm2_ok(&["lvcreate", "-V", "24M", "-T", &pool, "-n", "t1"]);
    bed.lvm2_ok(&["lvcreate", "-V", "8M", "-T", &pool, "-n", "t2"]);
    let t1_path = PathBuf::from(format!("/dev/{vg}/t1"));
    let t2_path = PathBuf::from(format!("/dev/{vg}/t2"));
    write_pattern(&t1_path, 11, 0, 4 * MIB);
    write_pattern(&t1_path, 12, 20 * MIB, 2 * MIB);
    write_pattern(&t2_path, 13, 0, 2 * MIB);
    bed.lvm2_ok(&["vgchange", "-an", &vg]);
    bed.assert_nothing_active();

    // What lvm2 makes for t1 alone, and for the pool and both thin LVs.
    bed.lvm2_ok(&["lvchange", "-ay", &format!("{vg}/t1")]);
    let theirs_t1 = bed.dm_snapshot();
    assert_eq!(theirs_t1.len(), 4, "{theirs_t1:#?}");
    bed.lvm2_ok(&["lvchange", "-an", &format!("{vg}/t1")]);
    bed.assert_nothing_active();
    bed.lvm2_ok(&["vgchange", "-ay", &vg]);
    let theirs_all = bed.dm_snapshot();
    assert_eq!(theirs_all.len(), 6, "{theirs_all:#?}");
    bed.lvm2_ok(&["vgchange", "-an", &vg]);
    bed.assert_nothing_active();

    let act = activator();
    let found = bed.found();
    let t1 = act.activate(&found, "t1").unwrap();
    assert_eq!(t1.lv.as_deref(), Some("t1"));
    assert_nodes(&t1);
    assert_eq!(
        bed.dm_snapshot(),
        theirs_t1,
        "lvmd's t1 differs from lvm2's"
    );
    assert_pattern(&t1.dev_path, 11, 0, 4 * MIB);
    assert_pattern(&t1.dev_path, 12, 20 * MIB, 2 * MIB);
    assert!(bed.lvm2_active("t1"));
    assert!(!bed.lvm2_active("t2"));
    // Again: nothing changes.
    assert_eq!(act.activate(&found, "t1").unwrap().devnum, t1.devnum);
    assert_eq!(bed.dm_snapshot(), theirs_t1);

    // Open: refused, and the pool under it stays.
    let holder = File::open(&t1.dev_path).unwrap();
    match act.deactivate(&found, "t1") {
        Err(e @ ActivateError::Busy { .. }) => {
            assert!(e.to_string().contains("act--thin-t1"), "{e}")
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(holder);
    assert_eq!(bed.dm_snapshot(), theirs_t1);
    // The last thin LV takes its pool's devices along, as with lvm2.
    assert!(act.deactivate(&found, "t1").unwrap());
    assert!(!act.deactivate(&found, "t1").unwrap());
    bed.assert_nothing_active();
    assert_no_nodes(&vg, "t1", "act--thin-t1");

    // A pool that only thin LVs hold is not active as itself (lvm2's `lvs` agrees),
    // and deactivating it leaves the thin LVs alone.
    act.activate(&found, "t1").unwrap();
    assert!(!act.is_active(&found, "pool").unwrap());
    assert!(!bed.lvm2_active("pool"));
    assert!(!act.deactivate(&found, "pool").unwrap());
    assert_eq!(bed.dm_snapshot(), theirs_t1);

    // The pool and both thin LVs: what vgchange -ay makes.
    for lv in ["pool", "t1", "t2"] {
        act.activate(&found, lv).unwrap();
    }
    assert!(act.is_active(&found, "pool").unwrap());
    assert!(bed.lvm2_active("pool"));
    eprintln!(
        "lvmd's devices for pool, t1, t2:\n{}",
        bed.dm_snapshot().join("\n")
    );
    assert_eq!(
        bed.dm_snapshot(),
        theirs_all,
        "lvmd's pool differs from lvm2's"
    );
    assert_pattern(&t2_path, 13, 0, 2 * MIB);
    write_pattern(&t2_path, 14, 4 * MIB, 2 * MIB);
    // lvm2 deactivates what lvmd activated.
    bed.lvm2_ok(&["vgchange", "-an", &vg]);
    bed.assert_nothing_active();
    assert!(act.list_active(&found).unwrap().is_empty());

    // lvmd deactivates what lvm2 activated: the pool's layers stay while a thin LV
    // or the pool itself still uses them.
    bed.lvm2_ok(&["vgchange", "-ay", &vg]);
    assert!(act.deactivate(&found, "pool").unwrap());
    assert!(act.deactivate(&found, "t1").unwrap());
    assert!(act.is_active(&found, "t2").unwrap());
    assert!(bed.lvm2_active("t2"));
    assert_eq!(bed.dm_snapshot().len(), 4);
    assert_pattern(&t2_path, 14, 4 * MIB, 2 * MIB);
    assert!(act.deactivate(&found, "t2").unwrap());
    bed.assert_nothing_active();

    // Both at once: lvmd's thin LV on the pool lvm2 activated, and lvm2 keeps the
    // pool for it when it deactivates its own thin LV.
    bed.lvm2_ok(&["lvchange", "-ay", &format!("{vg}/t1")]);
    let t2 = act.activate(&found, "t2").unwrap();
    assert_nodes(&t2);
    assert_pattern(&t2.dev_path, 14, 4 * MIB, 2 * MIB);
    assert!(bed.lvm2_active("t2"));
    bed.lvm2_ok(&["lvchange", "-an", &format!("{vg}/t1")]);
    assert!(act.is_active(&found, "t2").unwrap());
    assert_eq!(bed.dm_snapshot().len(), 4);
    assert!(act.deactivate(&found, "t2").unwrap());
    bed.assert_nothing_active();

    // Metadata whose transaction id is not the pool's: refused, nothing left behind.
    let mut skewed = found.clone();
    let pool_lv = std::sync::Arc::make_mut(&mut skewed.vg)
        .lvs
        .iter_mut()
        .find(|l| l.name == "pool")
        .unwrap();
    if let SegmentKind::ThinPool { transaction_id, .. } = &mut pool_lv.segments[0].kind {
        *transaction_id += 1;
    }
    match act.activate(&skewed, "t1") {
        Err(e @ ActivateError::ThinTransaction { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("pool") && text.contains("transaction"),
                "{text}"
            );
        }
        other => panic!("expected ThinTransaction, got {other:?}"),
    }
    bed.assert_nothing_active();
    // And lvm2 still activates it as before.
    bed.lvm2_ok(&["lvchange", "-ay", &format!("{vg}/t1")]);
    assert_eq!(bed.dm_snapshot(), theirs_t1);
    bed.lvm2_ok(&["vgchange", "-an", &vg]);

    // A pool no thin LV used yet (transaction id 0): lvm2 maps the pool target as
    // the pool's own device, with the -tpool uuid.
    bed.lvm2_ok(&[
        "lvcreate",
        "--type",
        "thin-pool",
        "-L",
        "8M",
        "-n",
        "pool2",
        &vg,
    ]);
    let theirs_pool2 = bed.dm_snapshot();
    assert_eq!(theirs_pool2.len(), 3, "{theirs_pool2:#?}");
    bed.lvm2_ok(&["vgchange", "-an", &vg]);
    let found = bed.found();
    act.activate(&found, "pool2").unwrap();
    assert_eq!(bed.dm_snapshot(), theirs_pool2, "lvmd's new pool differs");
    assert!(act.is_active(&found, "pool2").unwrap());
    assert!(bed.lvm2_active("pool2"));
    assert!(act.deactivate(&found, "pool2").unwrap());
    bed.assert_nothing_active();

    // A pool that runs out of data space (lvm2's --errorwhenfull y: writes past it fail
    // at once instead of queueing): dm-thin's status says so and lvmd reads it as the
    // pool's trouble, which fails the health of its active volumes (src/daemon/thin.rs).
    bed.lvm2_ok(&[
        "lvcreate",
        "--type",
        "thin-pool",
        "-L",
        "8M",
        "-n",
        "full",
        &vg,
    ]);
    bed.lvm2_ok(&["lvchange", "--errorwhenfull", "y", &format!("{vg}/full")]);
    bed.lvm2_ok(&[
        "lvcreate",
        "-V",
        "32M",
        "-T",
        &format!("{vg}/full"),
        "-n",
        "t3",
    ]);
    bed.lvm2_ok(&["vgchange", "-an", &vg]);
    let found = bed.found();
    let t3 = act.activate(&found, "t3").unwrap();
    let status = act.thin_pool_status(&found, "full").unwrap().unwrap();
    assert_eq!(status.trouble, None, "{status:?}");
    let mut f = OpenOptions::new().write(true).open(&t3.dev_path).unwrap();
    let chunk = vec![0x5a; MIB as usize];
    let wrote = (0..16)
        .try_for_each(|_| f.write_all(&chunk))
        .and_then(|()| f.sync_all());
    assert!(wrote.is_err(), "16 MiB went into an 8 MiB pool");
    drop(f);
    let status = act.thin_pool_status(&found, "full").unwrap().unwrap();
    assert_eq!(
        status.trouble.as_deref(),
        Some("out of data space"),
        "{status:?}"
    );
    assert_eq!(status.data_used, status.data_total, "{status:?}");
    assert!(act.deactivate(&found, "t3").unwrap());
    bed.assert_nothing_active();
}

/// Issue 15: VG names that are entries of /dev. lvmd's vgcreate refuses them, as lvm2's
/// does; a VG made anyway (here by lvmd's library told of another /dev) activates
/// without touching what is there: its LV links would be `/dev/mapper/control` and a
/// user's file in `/dev/shm`. Both stay, activation is refused naming them, and no
/// device is left behind. (With udev, udev makes the links and this is its business:
/// the case is about lvmd making them itself, VM_NO_UDEV=1.)
#[test]
fn names_colliding_with_dev_entries_leave_them_alone() {
    let _serial = common::vm_case("vm_activate");
    let loops = Loops::new(&[32, 32]);
    let lvm = loops.lvmd();
    let e = lvm
        .vg_create("mapper", &loops.devs[..1], ExtentSize::DEFAULT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/dev/mapper already exists"), "{e}");
    if expected_node_mode() == NodeMode::Udev {
        eprintln!("with udev, udev makes the links: the rest of this case runs with VM_NO_UDEV=1");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut anyway = loops.lvmd();
    anyway.dev_dir = scratch.path().to_owned();
    let control = std::fs::metadata("/dev/mapper/control").unwrap();
    assert!(control.file_type().is_char_device());
    let victim = Path::new("/dev/shm/victim");
    std::fs::write(victim, b"someone's data").unwrap();
    let act = activator();
    for (dev, vg, lv, what) in [
        (
            &loops.devs[0],
            "mapper",
            "control",
            "character device 10:236",
        ),
        (&loops.devs[1], "shm", "victim", "a file"),
    ] {
        anyway
            .vg_create(vg, std::slice::from_ref(dev), ExtentSize::DEFAULT)
            .unwrap();
        anyway
            .lv_create(vg, lv, Bytes(4 * MIB), Layout::Linear, &[])
            .unwrap();
        let found = lvm.read_vg(vg).unwrap();
        let e = act.activate(&found, lv).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, ActivateError::NodeInTheWay { .. })
                && text.contains(&format!("/dev/{vg}/{lv}"))
                && text.contains(what),
            "{vg}/{lv}: {text}"
        );
        assert_no_device(&act, &format!("{vg}-{lv}"));
        assert!(!act.deactivate(&found, lv).unwrap());
    }
    let now = std::fs::metadata("/dev/mapper/control").unwrap();
    assert!(now.file_type().is_char_device() && now.rdev() == control.rdev());
    dm::dm_version().expect("/dev/mapper/control still answers");
    assert_eq!(std::fs::read(victim).unwrap(), b"someone's data");
    std::fs::remove_file(victim).unwrap();
}

/// Case 9: a raid1 LV made by lvmd (`Lvm::lv_create` with `Layout::Raid1`) is lvm2's
/// too: lvm2 activates it and dm-raid brings it in sync and healthy; lvmd's activation
/// of it makes exactly the devices lvm2 makes; data written through one side's
/// activation reads back through the other's; lvmd removes it and one lvm2 made, and
/// lvm2's `vgck` is clean after each.
#[test]
fn raid1_made_by_lvmd_is_one_lvm2_syncs_and_activates() {
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvmd("act-lraid", &[32, 32]);
    let lvm = bed.lvm();
    let mirror = Layout::Raid1 {
        mirrors: 1,
        region_size: lvmd::model::layout::DEFAULT_REGION_SIZE,
        integrity: false,
    };
    lvm.lv_create(&bed.vg, "m", Bytes(8 * MIB), mirror, &[])
        .unwrap();
    bed.loops.vgck(&bed.vg);
    let target = format!("{}/m", bed.vg);
    bed.lvm2_ok(&["lvchange", "-ay", &target]);
    wait_raid_healthy(&bed, "m");
    let theirs = bed.dm_snapshot();
    assert_eq!(theirs.len(), 5, "{theirs:#?}");
    bed.lvm2_ok(&["lvchange", "-an", &target]);
    bed.assert_nothing_active();

    let found = bed.found();
    let act = activator();
    let active = act.activate(&found, "m").unwrap();
    assert_eq!(
        bed.dm_snapshot(),
        theirs,
        "lvmd's devices differ from lvm2's"
    );
    write_pattern(&active.dev_path, 0x1a1d, 0, 8 * MIB);
    wait_raid_healthy(&bed, "m");
    // dm-raid's own status, typed, agrees with lvm2's 100.00 and health.
    let status = act.raid_status(&found, "m").unwrap().expect("active raid");
    assert_eq!(
        status.legs,
        vec![lvmd::activate::target::LegHealth::InSync; 2],
        "{status:?}"
    );
    assert_eq!(
        status.action,
        lvmd::activate::target::SyncAction::Idle,
        "{status:?}"
    );
    assert_eq!(status.sync_basis_points(), Some(10_000), "{status:?}");
    assert_eq!(status.total, Sectors(8 * MIB / 512), "{status:?}");
    assert!(act.deactivate(&found, "m").unwrap());
    assert_eq!(act.raid_status(&found, "m").unwrap(), None, "inactive");
    bed.assert_nothing_active();

    bed.lvm2_ok(&["lvchange", "-ay", &target]);
    wait_raid_healthy(&bed, "m");
    let dev = Path::new("/dev").join(&bed.vg).join("m");
    assert_pattern(&dev, 0x1a1d, 0, 8 * MIB);
    // lvm2 converts lvmd's mirror online: down to one copy (linear), then a mirror
    // again, synced, the data intact; lvmd then activates and removes what lvm2 made.
    bed.lvm2_ok(&["lvconvert", "-y", "-m", "0", &target]);
    assert_pattern(&dev, 0x1a1d, 0, 8 * MIB);
    bed.lvm2_ok(&["lvconvert", "-y", "-m", "1", &target]);
    wait_raid_healthy(&bed, "m");
    assert_pattern(&dev, 0x1a1d, 0, 8 * MIB);
    bed.loops.vgck(&bed.vg);
    bed.lvm2_ok(&["lvchange", "-an", &target]);
    bed.assert_nothing_active();
    let found = bed.found();
    let again = act.activate(&found, "m").unwrap();
    assert_pattern(&again.dev_path, 0x1a1d, 0, 8 * MIB);
    assert!(act.deactivate(&found, "m").unwrap());
    bed.assert_nothing_active();

    lvm.lv_remove(&bed.vg, "m").unwrap();
    bed.loops.vgck(&bed.vg);
    bed.lvm2_ok(&[
        "lvcreate", "--type", "raid1", "-m1", "-L", "8M", "-n", "r", "-an", &bed.vg,
    ]);
    lvm.lv_remove(&bed.vg, "r").unwrap();
    bed.loops.vgck(&bed.vg);
    let left = bed.lvm2_ok(&["lvs", "-a", "--noheadings", "-o", "lv_name", &bed.vg]);
    assert!(left.trim().is_empty(), "left behind: {left}");
    let found = bed.found();
    assert_eq!(found.vg.free_extents(), found.vg.total_extents());
}

/// The thin pool's transaction id as the kernel has it (`dmsetup status` of the pool
/// target, first field).
fn thin_ids_on_disk(bed: &Bed, pool: &str) -> Vec<u64> {
    common::thin_ids_on_disk(&|a: &[&str]| bed.lvm2_ok(a), &bed.vg, pool)
}

/// Case 7: a thin pool and thin LVs lvmd made (metadata commits recording the pool
/// messages, `_tmeta` cleared as the daemon clears it): lvmd's activation sends the
/// messages (the kernel's transaction id follows the metadata's), data reads back
/// through lvm2, `thin_check` is clean, lvm2 adds a thin LV to lvmd's pool and lvmd
/// removes it (its id gone from the pool's metadata), and a catch-up repeated after
/// the messages reached the kernel (a kill -9 before the second commit) changes nothing.
#[test]
fn thin_pools_lvmd_makes_activate_and_agree_with_lvm2() {
    use lvmd::lvm::thin::{PoolDiscards, ThinPoolSpec};
    use lvmd::lvm::Edit;
    use lvmd::model::placement;
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvmd("act-lthin", &[64, 32]);
    let vg = bed.vg.clone();
    let lvm = bed.lvm();
    // The PV space the pool's metadata gets held something before.
    let dev0 = bed.loops.devs[0].clone();
    write_pattern(&dev0, 77, MIB, 32 * MIB);
    let spec = ThinPoolSpec {
        name: "pool".into(),
        data_size: Bytes(32 * MIB),
        chunk_size: None,
        metadata_size: None,
        zero_new_blocks: true,
        discards: PoolDiscards::Passdown,
        tags: vec![],
    };
    lvm.edit(&vg, &Edit::CreateThinPool(spec)).unwrap();
    let found = bed.found();
    let spans =
        placement::clear_on_create(&found.vg, found.vg.lv("pool").unwrap(), Sectors(0)).unwrap();
    assert_eq!(spans.len(), 1);
    for s in &spans {
        let pv = found.vg.pv(&s.pv).unwrap();
        let path = &found.devices[&pv.id];
        let mut f = OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(s.offset.to_bytes().0)).unwrap();
        f.write_all(&vec![0u8; s.len.to_bytes().0 as usize])
            .unwrap();
        f.sync_all().unwrap();
    }
    let thin = |name: &str| Edit::CreateThin {
        name: name.into(),
        pool: "pool".into(),
        size: Bytes(24 * MIB),
        tags: vec![],
    };
    let sent = |tid| Edit::ThinMessagesSent {
        pool: "pool".into(),
        transaction_id: tid,
    };
    lvm.edit(&vg, &thin("t1")).unwrap();

    let act = activator();
    let t1 = act.activate(&bed.found(), "t1").unwrap();
    assert_eq!(common::kernel_transaction(&vg, "pool"), 1);
    write_pattern(&t1.dev_path, 21, 0, 4 * MIB);
    // Activating again with the record still there (killed before the second commit):
    // nothing is sent twice.
    act.activate(&bed.found(), "t1").unwrap();
    assert_eq!(common::kernel_transaction(&vg, "pool"), 1);
    lvm.edit(&vg, &sent(1)).unwrap();
    lvm.edit(&vg, &thin("t2")).unwrap();
    let t2 = act.activate(&bed.found(), "t2").unwrap();
    assert_eq!(common::kernel_transaction(&vg, "pool"), 2);
    write_pattern(&t2.dev_path, 22, 0, 2 * MIB);
    lvm.edit(&vg, &sent(2)).unwrap();
    let found = bed.found();
    for lv in ["t2", "t1"] {
        assert!(act.deactivate(&found, lv).unwrap());
    }
    bed.assert_nothing_active();
    assert_eq!(thin_ids_on_disk(&bed, "pool"), vec![1, 2]);

    // lvm2 activates lvmd's thin LV and reads its data, then adds one of its own.
    bed.lvm2_ok(&["lvchange", "-ay", &format!("{vg}/t1")]);
    assert_pattern(&PathBuf::from(format!("/dev/{vg}/t1")), 21, 0, 4 * MIB);
    bed.lvm2_ok(&[
        "lvcreate",
        "-V",
        "8M",
        "-T",
        &format!("{vg}/pool"),
        "-n",
        "t3",
    ]);
    bed.lvm2_ok(&["vgchange", "-an", &vg]);
    bed.assert_nothing_active();
    assert_eq!(thin_ids_on_disk(&bed, "pool"), vec![1, 2, 3]);

    // lvmd removes lvm2's thin LV: the delete reaches the pool at its next activation.
    lvm.edit(&vg, &Edit::RemoveThin { lv: "t3".into() })
        .unwrap();
    act.activate(&bed.found(), "t1").unwrap();
    assert_eq!(common::kernel_transaction(&vg, "pool"), 4);
    lvm.edit(&vg, &sent(4)).unwrap();
    assert!(act.deactivate(&bed.found(), "t1").unwrap());
    bed.assert_nothing_active();
    assert_eq!(thin_ids_on_disk(&bed, "pool"), vec![1, 2]);
    // And lvm2 agrees with all of it: lvs, activation, its own removal.
    let lvs = bed.lvm2_ok(&[
        "lvs",
        "--noheadings",
        "-o",
        "lv_name,thin_id,transaction_id",
        &vg,
    ]);
    assert!(!lvs.contains("t3"), "{lvs}");
    bed.lvm2_ok(&["lvchange", "-ay", &format!("{vg}/t2")]);
    assert_pattern(&PathBuf::from(format!("/dev/{vg}/t2")), 22, 0, 2 * MIB);
    bed.lvm2_ok(&["lvremove", "-f", &format!("{vg}/t2")]);
    bed.lvm2_ok(&["vgchange", "-an", &vg]);
    bed.assert_nothing_active();
    assert_eq!(thin_ids_on_disk(&bed, "pool"), vec![1]);
}

/// Issue 12's integrity on 4 KiB-sector PVs: on two loop devices of 4096-byte logical
/// blocks (`losetup -b 4096`), lvmd's integrity mirror takes lvm2's block size, 4096,
/// in its metadata and in its tables (512 could not address such a device); lvmd's
/// activation writes and reads it, and lvm2 activates it with the same tables, reads
/// the data, and `vgck` is clean.
#[test]
fn an_integrity_mirror_on_4k_sector_pvs_uses_4096_byte_blocks() {
    let _serial = common::vm_case("vm_activate");
    run_ok("modprobe", &["dm_integrity"]);
    let mut loops = Loops::new(&[]);
    for i in 0..2 {
        let file = loops.dir.path().join(format!("k{i}.img"));
        File::create(&file).unwrap().set_len(40 * MIB).unwrap();
        let options = lvmd_sys::loopdev::LoopOptions {
            block_size: 4096,
            ..Default::default()
        };
        let dev = lvmd_sys::loopdev::attach(&file, &options)
            .unwrap()
            .into_path();
        loops.devs.push(dev);
    }
    let bed = Bed {
        loops,
        vg: "act-r4k".into(),
    };
    let lvm = bed.lvm();
    lvm.vg_create(&bed.vg, &bed.loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let mirror = Layout::Raid1 {
        mirrors: 1,
        region_size: lvmd::model::layout::DEFAULT_REGION_SIZE,
        integrity: true,
    };
    lvm.lv_create(&bed.vg, "k", Bytes(8 * MIB), mirror, &[])
        .unwrap();
    let found = bed.found();
    for leg in 0..2 {
        let image = found.vg.lv(&format!("k_rimage_{leg}")).unwrap();
        let SegmentKind::Other { body, .. } = &image.segments[0].kind else {
            panic!("{image:?}")
        };
        assert_eq!(body.get_int("block_size"), Some(4096), "{body:?}");
    }
    let act = activator();
    let active = act.activate(&found, "k").unwrap();
    lvm.edit(
        &bed.vg,
        &lvmd::lvm::Edit::RaidRebuildLoaded { lv: "k".into() },
    )
    .unwrap();
    let ours = bed.dm_snapshot();
    for leg in 0..2 {
        let table = run_ok("dmsetup", &["table", &format!("act--r4k-k_rimage_{leg}")]);
        assert!(table.contains(" block_size:4096 "), "{table}");
    }
    write_pattern(&active.dev_path, 0x4b4b, 0, 8 * MIB);
    assert_pattern(&active.dev_path, 0x4b4b, 0, 8 * MIB);
    wait_raid_healthy(&bed, "k");
    assert!(act.deactivate(&bed.found(), "k").unwrap());
    bed.assert_nothing_active();

    bed.loops.vgck(&bed.vg);
    let target = format!("{}/k", bed.vg);
    bed.lvm2_ok(&["lvchange", "-ay", &target]);
    // lvm2's devices are lvmd's (its first load had `recalculate`, as lvmd's did;
    // this one has not).
    let theirs = bed.dm_snapshot();
    let strip =
        |v: &[String]| -> Vec<String> { v.iter().map(|s| s.replace(" recalculate", "")).collect() };
    assert_eq!(
        strip(&theirs),
        strip(&ours),
        "lvm2's devices differ from lvmd's"
    );
    assert_pattern(&Path::new("/dev").join(&target), 0x4b4b, 0, 8 * MIB);
    bed.lvm2_ok(&["lvchange", "-an", &target]);
    bed.assert_nothing_active();
}

/// Zeroes the header chunk of COW snapshot `cow`'s new store on its PVs, as the daemon
/// clears a new LV's edges (`lvmd::lvm::cow::header_spans`).
fn clear_cow_header(bed: &Bed, cow: &str) {
    let found = bed.found();
    for span in lvmd::lvm::cow::header_spans(&found.vg, cow).unwrap() {
        let pv = found.vg.pv(&span.pv).unwrap();
        let mut f = OpenOptions::new()
            .write(true)
            .open(&found.devices[&pv.id])
            .unwrap();
        f.seek(SeekFrom::Start(span.offset.0 * 512)).unwrap();
        f.write_all(&vec![0u8; (span.len.0 * 512) as usize])
            .unwrap();
        f.sync_all().unwrap();
    }
}

/// [`Bed::dm_snapshot`] with each device-mapper device a table names by number named
/// by its name instead: minors follow creation order, which differs between lvm2 and
/// lvmd without meaning anything.
fn dm_snapshot_by_name(bed: &Bed) -> Vec<String> {
    // Each device-mapper device's number and name, from sysfs.
    let numbers: Vec<(String, String)> = std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let name = std::fs::read_to_string(dir.join("dm/name")).ok()?;
            let dev = std::fs::read_to_string(dir.join("dev")).ok()?;
            Some((dev.trim().to_owned(), name.trim().to_owned()))
        })
        .collect();
    let word = |w: &str| {
        numbers
            .iter()
            .find(|(n, _)| n == w)
            .map_or(w.to_owned(), |(_, name)| format!("<{name}>"))
    };
    bed.dm_snapshot()
        .into_iter()
        .map(|d| {
            d.lines()
                .map(|l| l.split(' ').map(word).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

fn cow_snapshot(name: &str, cow_mib: u64) -> lvmd::lvm::Edit {
    lvmd::lvm::Edit::CreateCowSnapshot {
        name: name.into(),
        origin: "o".into(),
        cow_size: Bytes(cow_mib * MIB),
        chunk_size: lvmd::lvm::cow::DEFAULT_CHUNK_SIZE,
        tags: vec![],
    }
}

/// COW snapshots of a linear LV, lvmd's and lvm2's: made while the origin is active
/// and open (switched to snapshot-origin online), the snapshot holds the bytes written
/// before it while the origin is overwritten; lvmd's devices are lvm2's (names, uuids,
/// tables, nodes), lvm2 reads lvmd's snapshot and lvmd lvm2's; a store that runs full
/// leaves that snapshot invalid (reported, reads fail) and the rest working; removal
/// brings the origin back to its own table, online.
#[test]
fn cow_snapshots_of_a_linear_lv_hold_the_old_data_as_lvm2s_do() {
    use lvmd::activate::target::SnapshotStatus;
    let _serial = common::vm_case("vm_activate");
    let bed = Bed::made_by_lvmd("act-cow", &[64]);
    let lvm = bed.lvm();
    lvm.lv_create(&bed.vg, "o", Bytes(16 * MIB), Layout::Linear, &[])
        .unwrap();
    let act = activator();
    let origin = act.activate(&bed.found(), "o").unwrap();
    // Held open across the switch: the origin stays in use the whole time.
    let mut writer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&origin.dev_path)
        .unwrap();
    write_pattern(&origin.dev_path, 0xa, 0, 16 * MIB);
    lvm.edit(&bed.vg, &cow_snapshot("s", 12)).unwrap();
    clear_cow_header(&bed, "s");
    bed.loops.vgck(&bed.vg);
    let found = bed.found();
    let snap = act.activate(&found, "s").unwrap();
    assert_nodes(&snap);
    let live = run_ok("dmsetup", &["table", &origin.dm_name]);
    assert!(live.contains("snapshot-origin"), "{live}");
    assert_eq!(act.table_current(&found, "o").unwrap(), Some(true));
    // Overwrite the first 4 MiB through the descriptor opened before the snapshot.
    writer.seek(SeekFrom::Start(0)).unwrap();
    writer
        .write_all(&pattern(0xb, 0, (4 * MIB) as usize))
        .unwrap();
    writer.sync_all().unwrap();
    assert_pattern(&snap.dev_path, 0xa, 0, 16 * MIB);
    assert_pattern(&origin.dev_path, 0xb, 0, 4 * MIB);
    assert_pattern(&origin.dev_path, 0xa, 4 * MIB, 12 * MIB);
    match act.cow_status(&found, "s").unwrap() {
        Some(SnapshotStatus::Valid { used, total, .. }) => {
            assert!(used >= Sectors(4 * MIB / 512), "{used:?}");
            assert_eq!(total, Sectors(12 * MIB / 512));
        }
        other => panic!("{other:?}"),
    }
    // A snapshot stays active while its origin is.
    assert!(matches!(
        act.deactivate(&found, "s"),
        Err(ActivateError::Unsupported { .. })
    ));
    drop(writer);
    assert!(act.deactivate(&found, "o").unwrap());
    bed.assert_nothing_active();
    // lvm2 activates lvmd's snapshot: the same devices, the same old bytes.
    bed.lvm2_ok(&["lvchange", "-ay", &format!("{}/o", bed.vg)]);
    let theirs = dm_snapshot_by_name(&bed);
    assert_eq!(theirs.len(), 4, "{theirs:#?}");
    assert!(
        theirs
            .iter()
            .any(|d| d.contains("snapshot <act--cow-o-real> <act--cow-s-cow> P 8")),
        "{theirs:#?}"
    );
    let dev_s = Path::new("/dev").join(&bed.vg).join("s");
    assert_pattern(&dev_s, 0xa, 0, 16 * MIB);
    bed.lvm2_ok(&["lvchange", "-an", &format!("{}/o", bed.vg)]);
    bed.assert_nothing_active();
    act.activate(&found, "s").unwrap();
    assert_eq!(
        dm_snapshot_by_name(&bed),
        theirs,
        "lvmd's devices differ from lvm2's"
    );
    assert!(act.deactivate(&found, "o").unwrap());
    // lvm2's snapshot of lvmd's origin, 2 MiB of store: lvmd activates the group of two.
    bed.lvm2_ok(&[
        "lvcreate",
        "-s",
        "-L",
        "2M",
        "-n",
        "s2",
        &format!("{}/o", bed.vg),
    ]);
    bed.lvm2_ok(&["lvchange", "-an", &format!("{}/o", bed.vg)]);
    bed.assert_nothing_active();
    let found = bed.found();
    let s2 = act.activate(&found, "s2").unwrap();
    assert_eq!(bed.dm_snapshot().len(), 6);
    assert_pattern(&s2.dev_path, 0xb, 0, 4 * MIB);
    assert_pattern(&s2.dev_path, 0xa, 4 * MIB, 12 * MIB);
    // 8 MiB overwritten: s2's store runs full, s's holds it.
    write_pattern(&origin.dev_path, 0xc, 0, 8 * MIB);
    assert_eq!(
        act.cow_status(&found, "s2").unwrap(),
        Some(SnapshotStatus::Invalid)
    );
    assert!(File::open(&s2.dev_path)
        .and_then(|mut f| f.read_exact(&mut [0u8; 4096]))
        .is_err());
    let attr = bed.lvm2_ok(&[
        "lvs",
        "--noheadings",
        "-o",
        "lv_attr",
        &format!("{}/s2", bed.vg),
    ]);
    assert_eq!(attr.trim().as_bytes()[4], b'I', "{attr}");
    assert_pattern(&snap.dev_path, 0xa, 0, 16 * MIB);
    assert!(matches!(
        act.cow_status(&found, "s").unwrap(),
        Some(SnapshotStatus::Valid { .. })
    ));
    // Removal, the origin open: s2's devices go, the origin stays layered for s; then
    // s, and the origin runs its own table again with its data.
    let writer = File::open(&origin.dev_path).unwrap();
    lvm.edit(
        &bed.vg,
        &lvmd::lvm::Edit::RemoveCowSnapshot { lv: "s2".into() },
    )
    .unwrap();
    act.release_cow(&bed.found(), "o").unwrap();
    assert_eq!(bed.dm_snapshot().len(), 4);
    lvm.edit(
        &bed.vg,
        &lvmd::lvm::Edit::RemoveCowSnapshot { lv: "s".into() },
    )
    .unwrap();
    let found = bed.found();
    act.release_cow(&found, "o").unwrap();
    // Again: nothing left to do.
    act.release_cow(&found, "o").unwrap();
    let left = bed.dm_snapshot();
    assert_eq!(left.len(), 1, "{left:#?}");
    assert!(left[0].contains(" linear "), "{left:#?}");
    assert_eq!(act.table_current(&found, "o").unwrap(), Some(true));
    assert_pattern(&origin.dev_path, 0xc, 0, 8 * MIB);
    assert_pattern(&origin.dev_path, 0xa, 8 * MIB, 8 * MIB);
    drop(writer);
    bed.loops.vgck(&bed.vg);
    assert!(act.deactivate(&found, "o").unwrap());
    bed.assert_nothing_active();
    lvm.lv_remove(&bed.vg, "o").unwrap();
    let found = bed.found();
    assert_eq!(found.vg.free_extents(), found.vg.total_extents());
}
