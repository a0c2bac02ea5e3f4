//! Smoke tests of the real-kernel test VM: device-mapper is there, lvmd-sys
//! talks to it, and loop devices work.
//!
//! These need a kernel with device-mapper, which the dev and CI machines do
//! not have. They run inside the throw-away VM of `tests/vm/run-in-vm.sh`,
//! used as cargo's runner (all tests of this binary share one VM boot):
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo test --test vm_smoke
//! ```
//!
//! Contract: the VM's stage2 exports `LVMD_VM=1`. Without it every test here
//! fails (never skips) with instructions, so a DM test can not pass by not
//! running. `LVMD_ALLOW_HOST_DM=1` lets them run on a host that really has
//! device-mapper (they only attach and detach loop devices of their own).
//! The target is `test = false` in Cargo.toml, so a plain `cargo test` on the
//! host leaves it out; `--test vm_smoke` selects it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lvmd_sys::{blkdev, dm, loopdev};

/// Panics unless we are where DM tests may run and device-mapper answers.
fn require_real_dm() {
    let in_vm = std::env::var_os("LVMD_VM").is_some_and(|v| v == "1");
    let host_ok = std::env::var_os("LVMD_ALLOW_HOST_DM").is_some_and(|v| v == "1");
    if !in_vm && !host_ok {
        panic!(
            "\n\nvm_smoke needs a kernel with device-mapper: run it inside the test VM:\n\n    \
             CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"$PWD/tests/vm/run-in-vm.sh\" \
             cargo test --test vm_smoke\n\n\
             (dm_version() here: {:?}; set LVMD_ALLOW_HOST_DM=1 to run on a host with real DM)\n",
            dm::dm_version()
        );
    }
    if let Err(e) = dm::dm_version() {
        panic!(
            "device-mapper does not answer DM_VERSION on {}: {e} (LVMD_VM={in_vm})",
            dm::DM_CONTROL_PATH
        );
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dm_version_is_4_x() {
    require_real_dm();
    let (major, minor, patch) = dm::dm_version().unwrap();
    eprintln!("device-mapper ioctl interface {major}.{minor}.{patch}");
    assert_eq!(major, 4);
    // Linux 3.x already had 4.2x; anything lower means a garbled reply.
    assert!(minor >= 20, "implausible DM minor version {minor}");
    assert!(dm::dm_available());
}

#[test]
fn dmsetup_version_agrees_with_the_ioctl() {
    require_real_dm();
    let (major, minor, patch) = dm::dm_version().unwrap();
    // "Library version:  1.02.185 (2022-05-18)\nDriver version:   4.47.0\n"
    let text = run("dmsetup", &["version"]);
    let driver = text
        .lines()
        .find_map(|l| l.strip_prefix("Driver version:"))
        .unwrap_or_else(|| panic!("no driver version in dmsetup output:\n{text}"))
        .trim();
    assert_eq!(driver, format!("{major}.{minor}.{patch}"));
}

#[test]
fn kernel_has_the_targets_lvm_needs() {
    require_real_dm();
    // Loading the modules is lvm2's and libdm's job on a real host; here we
    // load the ones our activation code will rely on, then ask dmsetup.
    run(
        "modprobe",
        &["-a", "dm-snapshot", "dm-thin-pool", "dm-raid", "dm-mirror"],
    );
    let targets = run("dmsetup", &["targets"]);
    let names: Vec<&str> = targets
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for want in ["linear", "striped", "snapshot", "thin-pool", "thin", "raid"] {
        assert!(names.contains(&want), "no {want} target in:\n{targets}");
    }
}

/// A sparse file in the guest's scratch space, removed on drop.
struct Image(PathBuf);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn loop_device_through_lvmd_sys_has_the_file_size() {
    require_real_dm();
    let image = Image(std::env::temp_dir().join(format!("vm-smoke-{}.img", std::process::id())));
    let len: u64 = 48 << 20;
    File::create(&image.0).unwrap().set_len(len).unwrap();

    let dev = loopdev::attach(&image.0, &loopdev::LoopOptions::default()).unwrap();
    let path = dev.path().to_owned();
    assert!(blkdev::is_block_device(&path).unwrap());
    assert_eq!(blkdev::device_size_bytes(dev.file()).unwrap(), len);
    assert_eq!(blkdev::logical_block_size(dev.file()).unwrap(), 512);
    // The kernel's own view, in 512-byte sectors.
    let sectors = std::fs::read_to_string(format!("/sys/block/loop{}/size", dev.number())).unwrap();
    assert_eq!(sectors.trim().parse::<u64>().unwrap() * 512, len);
    // And util-linux agrees on which file is behind it.
    let listed = run(
        "losetup",
        &["--noheadings", "-O", "BACK-FILE", path.to_str().unwrap()],
    );
    assert_eq!(Path::new(listed.trim()), image.0);

    dev.detach().unwrap();
    // Lazy if udev's probe still holds the new device open: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while loopdev::backing_file(&path).unwrap().is_some() {
        assert!(Instant::now() < deadline, "{} not detached", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}
