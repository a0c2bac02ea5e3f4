//! The lvmd daemon binary with the real engine on this host's loop devices, driven by
//! lvmd-ctl and cross-checked with lvm2's `lvs` and `vgck`. Needs root and lvm2 (see
//! `tests/common`); `LVMD_SKIP_HOST_TESTS=1` skips it.
//!
//! Metadata only: this host has no device-mapper, so activation is refused with the
//! reason; the VM tests activate for real.

mod common;

use common::daemon::Daemon;
use common::{host_tests_enabled, num, text, vg_name, Loops};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn lv_rows(loops: &Loops, vg: &str) -> Vec<Value> {
    loops.report(&["lvs", vg, "-o", "lv_name,lv_size,stripes,lv_tags"], "lv")
}

#[test]
fn daemon_on_loop_devices_agrees_with_lvm2() {
    if !host_tests_enabled("daemon_on_loop_devices_agrees_with_lvm2") {
        return;
    }
    let loops = Loops::new(&[128, 128]);
    let vg = vg_name("daemon");
    let dir = loops.dir.path();
    let socket = dir.join("lvmd.sock");
    let trial_img = dir.join("trial.img");
    let config = dir.join("lvmd.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}
[device_classes.disks]
volume_group = "{vg}"
default = true
devices = {devices}

[device_classes.trial]
volume_group = "{vg}_trial"
loop_file = {{ path = "{trial}", size = "64MiB" }}
"#,
            head = loops.daemon_config(&socket, &dir.join("kubelet")),
            devices = loops.toml_devices(),
            trial = trial_img.display(),
        ),
    )
    .unwrap();
    let _trial = DetachTrial(trial_img.clone());
    let mut d = Daemon::start(&config, &socket);

    // The daemon made both classes' VGs at start.
    let vgs = d.json(&["vg", "list"]);
    let names: Vec<&str> = vgs
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&vg.as_str()), "{vgs}");
    assert!(names.contains(&format!("{vg}_trial").as_str()), "{vgs}");
    let vg_row = &loops.report(&["vgs", &vg, "-o", "vg_name,pv_count,vg_size"], "vg")[0];
    assert_eq!(num(vg_row, "pv_count"), 2);

    // Create through lvmd-ctl, read back with lvm2.
    d.json(&["lv", "create", "lin", "20MiB", "--tag", "pvc=one"]);
    d.json(&["lv", "create", "str", "16M", "--stripes", "2"]);
    // Idempotent retry; a conflicting one refused.
    d.json(&["lv", "create", "lin", "20MiB", "--tag", "pvc=one"]);
    let clash = d.ctl(&["lv", "create", "lin", "40MiB", "--tag", "pvc=one"]);
    assert_eq!(clash.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&clash.stderr).contains("AlreadyExists"));
    let rows = lv_rows(&loops, &vg);
    let by_name = |n: &str| {
        rows.iter()
            .find(|r| text(r, "lv_name") == n)
            .unwrap_or_else(|| panic!("{n} not in lvs: {rows:?}"))
            .clone()
    };
    assert_eq!(num(&by_name("lin"), "lv_size"), 20 << 20);
    // The client's tag, and lvmd's mark of a volume never handed out (lvm2 sorts them).
    assert_eq!(text(&by_name("lin"), "lv_tags"), "lvmd.fresh,pvc=one");
    assert_eq!(num(&by_name("str"), "lv_size"), 16 << 20);
    assert_eq!(num(&by_name("str"), "stripes"), 2);
    loops.vgck(&vg);

    // An LV lvm2 makes is seen by the daemon (its cache notices the new seqno).
    loops.lvm_ok(&["lvcreate", "-an", "-Zn", "-L", "8m", "-n", "bylvm", &vg]);
    let listed = d.json(&["lv", "list", "--class", "disks"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lin", "str", "bylvm"]);

    // Resize, activate, remove; lvm2 agrees after each.
    d.json(&["lv", "resize", "lin", "36MiB"]);
    let lin = lv_rows(&loops, &vg)
        .into_iter()
        .find(|r| text(r, "lv_name") == "lin")
        .unwrap();
    assert_eq!(num(&lin, "lv_size"), 36 << 20);
    // This host's kernel has no device-mapper: activation is refused with the reason
    // (tests/vm_daemon.rs activates for real in the VM).
    let out = d.ctl(&["lv", "activate", "lin"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("device-mapper is not available"), "{err}");
    for n in ["lin", "str", "bylvm"] {
        assert_eq!(d.json(&["lv", "remove", n])["existed"], true);
    }
    assert_eq!(d.json(&["lv", "remove", "lin"])["existed"], false);
    assert!(lv_rows(&loops, &vg).is_empty());
    loops.vgck(&vg);

    let cap = d.json(&["capacity", "--class", "disks"]);
    assert_eq!(cap[0]["free"], cap[0]["total"]);

    let log = d.stop();
    assert!(log.contains("created volume group"), "{log}");
    assert!(!socket.exists());

    // A restart finds the VGs and does not recreate them.
    let mut d = Daemon::start(&config, &socket);
    assert_eq!(d.json(&["vg", "list"]).as_array().unwrap().len(), 2);
    let log = d.stop();
    assert!(!log.contains("created volume group"), "{log}");

    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// The daemon attaches the trial class's file itself; detach it when the test ends.
struct DetachTrial(PathBuf);

impl Drop for DetachTrial {
    fn drop(&mut self) {
        let Ok(out) = Command::new("losetup").arg("-j").arg(&self.0).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(dev) = line.split(':').next() {
                let _ = Command::new("losetup").arg("-d").arg(dev).status();
            }
        }
    }
}

/// A VG lvm2 made on a device lvmd scans, which no device class names: lvmd lists it
/// and its LVs, and changes nothing in it (remove, resize, create all refused, lvm2's
/// view unchanged) unless `manage_other_volume_groups` says otherwise.
#[test]
fn volume_groups_of_no_class_are_read_only_unless_configured() {
    if !host_tests_enabled("volume_groups_of_no_class_are_read_only_unless_configured") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let (ours, theirs) = (vg_name("ours"), vg_name("theirs"));
    loops.lvm_ok(&["vgcreate", &theirs, loops.devs[1].to_str().unwrap()]);
    loops.lvm_ok(&["lvcreate", "-an", "-Zn", "-L", "8m", "-n", "data", &theirs]);
    let dir = loops.dir.path();
    let socket = dir.join("lvmd.sock");
    let write_config = |extra: &str| {
        let config = dir.join("lvmd.toml");
        std::fs::write(
            &config,
            format!(
                r#"{head}{extra}
scan_devices = ["{scan}"]
[device_classes.disks]
volume_group = "{ours}"
default = true
devices = ["{dev}"]
"#,
                head = loops.daemon_config(&socket, &dir.join("kubelet")),
                scan = loops.devs[1].display(),
                dev = loops.devs[0].display(),
            ),
        )
        .unwrap();
        config
    };
    let mut d = Daemon::start(&write_config(""), &socket);
    let listed = d.json(&["lv", "list", "--vg", &theirs]);
    assert_eq!(listed[0]["name"], "data", "{listed}");
    let before = lv_rows(&loops, &theirs);
    for args in [
        vec!["lv", "remove", "data", "--vg", &theirs],
        vec!["lv", "resize", "data", "16MiB", "--vg", &theirs],
        vec!["lv", "create", "new", "8MiB", "--vg", &theirs],
        vec!["lv", "activate", "data", "--vg", &theirs],
    ] {
        let out = d.ctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("FailedPrecondition") && err.contains("no device class"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(lv_rows(&loops, &theirs), before);
    // A VG that does not exist is still NOT_FOUND, not refused for its name.
    let out = d.ctl(&["lv", "remove", "x", "--vg", "nosuchvg"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    // The class's own VG is changed as always.
    d.json(&["lv", "create", "mine", "8MiB"]);
    // Every change and every refusal has an audit line naming the peer (this test,
    // root) and the RPC; the engine's own line carries the peer too.
    let log = d.stop();
    let line = |rpc: &str, word: &str| {
        log.lines().any(|l| {
            l.contains(rpc) && l.contains(word) && l.contains("uid=0") && l.contains("pid=")
        })
    };
    assert!(line("RemoveLogicalVolume", "refused"), "{log}");
    assert!(line("ResizeLogicalVolume", "refused"), "{log}");
    assert!(line("CreateLogicalVolume", "done"), "{log}");
    assert!(
        line("CreateLogicalVolume", "created logical volume"),
        "{log}"
    );
    // Reads that succeed are not audited.
    assert!(!line("ListLogicalVolumes", "done"), "{log}");

    // Configured to manage other VGs: the same remove goes through.
    let mut d = Daemon::start(&write_config("manage_other_volume_groups = true"), &socket);
    assert_eq!(
        d.json(&["lv", "remove", "data", "--vg", &theirs])["existed"],
        true
    );
    assert!(lv_rows(&loops, &theirs).is_empty());
    d.stop();
    loops.vgck(&theirs);
    loops.lvm_ok(&["vgremove", "-f", &theirs]);
    loops.lvm_ok(&["vgremove", "-f", &ours]);
}

/// A whole device's bytes, hashed.
fn device_hash(dev: &Path) -> u64 {
    use std::hash::Hasher;
    use std::io::Read;
    let mut f = std::fs::File::open(dev).unwrap();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    h.finish()
}

fn zero(dev: &Path, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.write_all_at(&vec![0u8; len], offset).unwrap();
    f.sync_all().unwrap();
}

fn size_of(dev: &Path) -> u64 {
    use std::io::Seek;
    let mut f = std::fs::File::open(dev).unwrap();
    f.seek(std::io::SeekFrom::End(0)).unwrap()
}

/// An md 1.2 member superblock at 4 KiB, checksummed as md does (the host's kernel has
/// no md driver for mdadm to create an array with).
fn write_md_superblock(dev: &Path) {
    use std::os::unix::fs::FileExt;
    let mut sb = [0u8; 256];
    sb[0..4].copy_from_slice(&0xa92b4efcu32.to_le_bytes()); // magic
    sb[4..8].copy_from_slice(&1u32.to_le_bytes()); // major_version
    sb[16..32].copy_from_slice(&[0x5a; 16]); // set_uuid
    sb[32..36].copy_from_slice(b"test"); // set_name
    sb[72..76].copy_from_slice(&1u32.to_le_bytes()); // level: raid1
    sb[92..96].copy_from_slice(&2u32.to_le_bytes()); // raid_disks
    sb[128..136].copy_from_slice(&2048u64.to_le_bytes()); // data_offset (sectors)
    sb[144..152].copy_from_slice(&8u64.to_le_bytes()); // super_offset: 4 KiB
    sb[168..184].copy_from_slice(&[0xa5; 16]); // device_uuid
                                               // max_dev 0: the checksum covers the 256 bytes, sb_csum (at 216) counted as 0.
    let sum: u64 = sb
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64)
        .sum();
    let csum = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    sb[216..220].copy_from_slice(&csum.to_le_bytes());
    let f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.write_all_at(&sb, 4096).unwrap();
    f.sync_all().unwrap();
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gpt(dev: &Path) {
    let mut c = Command::new("sfdisk")
        .args(["-q", "--wipe", "never"])
        .arg(dev)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk (apt-get install fdisk)");
    use std::io::Write;
    c.stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\n,\n")
        .unwrap();
    assert!(c.wait().unwrap().success());
}

#[test]
fn class_devices_holding_anything_are_refused_and_left_unchanged() {
    if !host_tests_enabled("class_devices_holding_anything_are_refused_and_left_unchanged") {
        return;
    }
    // The last one is blank: the class's VG is made of it alone.
    let loops = Loops::new(&[16, 16, 128, 32, 16, 16, 16, 16, 16, 16, 16]);
    let dir = loops.dir.path();
    let dev = |i: usize| loops.devs[i].to_str().unwrap().to_owned();
    sh("mkfs.minix", &[&dev(0)]);
    sh("mkfs.bfs", &[&dev(1)]);
    sh("mkfs.btrfs", &["-q", "-f", &dev(2)]);
    let key = dir.join("key");
    std::fs::write(&key, "secret").unwrap();
    #[rustfmt::skip]
    sh("cryptsetup", &["luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
        "--pbkdf-force-iterations", "1000", "--key-file", key.to_str().unwrap(), &dev(3)]);
    write_md_superblock(&loops.devs[4]);
    // A GPT with its backup gone, and one with only its backup (PMBR, header and
    // entries at the front zeroed).
    gpt(&loops.devs[5]);
    zero(&loops.devs[5], size_of(&loops.devs[5]) - 33 * 512, 33 * 512);
    gpt(&loops.devs[6]);
    zero(&loops.devs[6], 0, 34 * 512);
    // lvm2's VGs, damaged: the label's checksum; the label gone (the metadata area
    // header and text left); label and header gone (the text left).
    for (i, n) in [(7, "crc"), (8, "nolabel"), (9, "textonly")] {
        loops.lvm_ok(&["vgcreate", &format!("{}_{n}", vg_name("refuse")), &dev(i)]);
    }
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&loops.devs[7])
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 512 + 40).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], 512 + 40).unwrap();
        f.sync_all().unwrap();
    }
    zero(&loops.devs[8], 0, 4096);
    zero(&loops.devs[9], 0, 4096 + 512);
    let says = [
        "minix",
        "bfs",
        "btrfs",
        "crypto_LUKS",
        "linux_raid_member",
        "gpt partition table at byte 512",
        "gpt partition table at byte",
        "traces of LVM (label in sector 1 has checksum",
        "traces of LVM (an LVM metadata area header at byte 4096)",
        "traces of LVM (LVM metadata text at byte",
    ];
    let before: Vec<u64> = loops.devs.iter().map(|d| device_hash(d)).collect();

    let vg = vg_name("refused");
    let socket = dir.join("lvmd.sock");
    let config = dir.join("lvmd.toml");
    std::fs::write(
        &config,
        format!(
            "{head}\n[device_classes.disks]\nvolume_group = \"{vg}\"\ndefault = true\ndevices = {devices}\n",
            head = loops.daemon_config(&socket, &dir.join("kubelet")),
            devices = loops.toml_devices(),
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&config, &socket);
    let pvs_of = |d: &Daemon| -> Vec<String> {
        let vgs = d.json(&["vg", "list"]);
        let ours = vgs
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == vg.as_str())
            .unwrap_or_else(|| panic!("{vg} not made of the blank device: {vgs}"))
            .clone();
        ours["physical_volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["device"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(pvs_of(&d), [dev(10)]);
    // Through the API too (CreateVolumeGroup, ExtendVolumeGroup): each refused,
    // FAILED_PRECONDITION, saying why.
    let other = vg_name("other");
    for (i, why) in says.iter().enumerate() {
        for (verb, name) in [("create", &other), ("extend", &vg)] {
            let out = d.ctl(&["vg", verb, name, &dev(i)]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{verb} {}: {err}", dev(i));
            assert!(err.contains(why), "{verb} {}: {err}", dev(i));
            assert!(err.contains("FailedPrecondition"), "{}: {err}", dev(i));
        }
    }
    assert_eq!(pvs_of(&d), [dev(10)]);
    let log = d.stop();
    for (i, why) in says.iter().enumerate() {
        let line = log
            .lines()
            .find(|l| l.contains("refusing the device") && l.contains(&dev(i)))
            .unwrap_or_else(|| panic!("{}: no refusal logged:\n{log}", dev(i)));
        assert!(line.contains(why), "{}: {line}", dev(i));
        assert!(line.contains("lvmd-ctl inspect"), "{line}");
    }
    let after: Vec<u64> = loops.devs.iter().map(|d| device_hash(d)).collect();
    for i in 0..says.len() {
        assert_eq!(before[i], after[i], "{} ({}) changed", dev(i), says[i]);
    }
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// A config with one device class on `loops`, and its socket.
fn one_class(loops: &Loops, vg: &str) -> (PathBuf, PathBuf) {
    let dir = loops.dir.path();
    let socket = dir.join("lvmd.sock");
    let config = dir.join("lvmd.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[device_classes.disks]\nvolume_group = \"{vg}\"\ndefault = true\ndevices = {}\n",
            loops.daemon_config(&socket, &dir.join("kubelet")),
            loops.toml_devices(),
        ),
    )
    .unwrap();
    (config, socket)
}

fn vg_seqno(loops: &Loops, vg: &str) -> u64 {
    num(
        &loops.report(&["vgs", vg, "-o", "vg_seqno"], "vg")[0],
        "vg_seqno",
    )
}

/// The VG in an lvm2 backup or archive file.
fn backed_up(path: &Path) -> lvmd::model::VolumeGroup {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = lvmd::format::text::parse(&text).unwrap();
    lvmd::model::VolumeGroup::from_document(&doc).unwrap().0
}

/// lvm2's backup files are written after lvmd answers. A kill -9 between an answer
/// and its backup leaves the backup behind the VG; the next start rewrites it before
/// serving (the older one archived), so `vgcfgrestore` finds the VG as it is; a clean
/// stop writes every pending backup first.
#[test]
fn a_backup_cut_by_a_kill_after_the_answer_is_rewritten_at_start() {
    if !host_tests_enabled("a_backup_cut_by_a_kill_after_the_answer_is_rewritten_at_start") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let vg = vg_name("bkup");
    let (config, socket) = one_class(&loops, &vg);
    let backup = loops.backup_dir().join(&vg);
    let mut d = Daemon::start(&config, &socket);
    d.json(&["lv", "create", "first", "8MiB"]);
    d.stop();
    assert_eq!(backed_up(&backup).seqno, vg_seqno(&loops, &vg));
    assert!(backed_up(&backup).lv("first").is_some());

    let hold = loops.dir.path().join("hold-backups");
    std::fs::write(&hold, "").unwrap();
    let d = Daemon::start_with(
        &config,
        &socket,
        &[("LVMD_TEST_HOLD_BACKUPS", hold.to_str().unwrap())],
    );
    d.json(&["lv", "create", "second", "8MiB"]);
    d.json(&["lv", "create", "third", "8MiB"]);
    // Answered and on disk; the backup is still the version before.
    let before = backed_up(&backup);
    assert!(before.lv("second").is_none());
    assert!(before.seqno < vg_seqno(&loops, &vg));
    drop(d); // kill -9
    std::fs::remove_file(&hold).unwrap();

    let mut d = Daemon::start(&config, &socket);
    let now = backed_up(&backup);
    assert_eq!(now.seqno, vg_seqno(&loops, &vg));
    let on_disk = loops.lvmd().read_vg(&vg).unwrap();
    assert_eq!(&now, on_disk.vg.as_ref(), "the backup is the VG on disk");
    // lvm2 accepts it for a restore, and lists the version it replaced as archived.
    loops.lvm_ok(&[
        "vgcfgrestore",
        "--test",
        "-f",
        backup.to_str().unwrap(),
        &vg,
    ]);
    let listed = loops.lvm_ok(&["vgcfgrestore", "--list", &vg]);
    let archived: Vec<u64> = std::fs::read_dir(loops.archive_dir())
        .unwrap()
        .map(|e| backed_up(&e.unwrap().path()).seqno)
        .collect();
    assert!(archived.contains(&before.seqno), "{archived:?}\n{listed}");
    d.stop();
    loops.vgck(&vg);
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// Concurrent creates go in group commits; the daemon killed in the middle of one (its
/// first PV's header written, the second's not): after a restart every create that was
/// answered is there, whole, and every volume on disk is one that was asked for, whole;
/// lvm2's vgck is clean once the next commit wrote every copy.
#[test]
fn a_group_commit_cut_by_a_kill_leaves_every_answered_create_whole() {
    if !host_tests_enabled("a_group_commit_cut_by_a_kill_leaves_every_answered_create_whole") {
        return;
    }
    let loops = Loops::new(&[128, 128]);
    let vg = vg_name("grpkill");
    let (config, socket) = one_class(&loops, &vg);
    let mut d = Daemon::start(&config, &socket);
    d.stop();
    // Two PVs, one area each: two headers per commit. Two creates one after the other
    // (answered for sure), then N at once: the first of those commits alone (headers
    // 5 and 6) while the others queue, and the group of those that queued meanwhile
    // is the 4th commit, killed after its first header (the 7th).
    let mut d = Daemon::start_with(&config, &socket, &[("LVMD_TEST_CRASH_AFTER", "header@7")]);
    d.json(&["lv", "create", "before0", "8MiB"]);
    d.json(&["lv", "create", "before1", "8MiB"]);
    const N: usize = 12;
    let mut answered: Vec<(String, bool)> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..N)
            .map(|i| {
                let socket = socket.clone();
                s.spawn(move || {
                    let name = format!("vol{i:02}");
                    let out = common::daemon::ctl(&socket, &["lv", "create", &name, "8MiB"]);
                    (name, out.status.success())
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let log = d.wait_killed();
    assert!(log.contains("killing myself"), "{log}");
    answered.extend(["before0", "before1"].map(|n| (n.to_owned(), true)));
    let ok: Vec<&str> = answered
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(ok.len() < N + 2, "the kill stopped some: {answered:?}");

    let mut d = Daemon::start(&config, &socket);
    let listed = d.json(&["lv", "list", "--class", "disks"]);
    let on_disk: Vec<(String, u64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_owned(),
                v["size"].as_u64().unwrap(),
            )
        })
        .collect();
    for name in &ok {
        assert!(
            on_disk.iter().any(|(n, _)| n == name),
            "{name} was answered but is gone: {on_disk:?}"
        );
    }
    for (name, size) in &on_disk {
        assert!(
            answered.iter().any(|(n, _)| n == name),
            "{name} never asked for"
        );
        assert_eq!(*size, 8 << 20, "{name}");
    }
    // The cut commit's first header landed, so its version (the highest seqno) won:
    // creates never answered are there too, whole.
    assert!(
        on_disk.len() > ok.len(),
        "answered {ok:?}, on disk {on_disk:?}"
    );
    // A retry of every create succeeds (idempotent for those there), and one commit
    // rewrites both copies.
    for (name, _) in &answered {
        d.json(&["lv", "create", name, "8MiB"]);
    }
    assert_eq!(lv_rows(&loops, &vg).len(), N + 2);
    d.stop();
    loops.vgck(&vg);
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}
