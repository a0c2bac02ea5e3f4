//! Shared fixture for tests against Debian's lvm2: sparse loop devices, and lvm2 run on
//! exactly those devices with activation off (this host's kernel has no device-mapper),
//! its backups in the test's own directory.
#![allow(dead_code)]

pub mod daemon;
pub mod race;

use lvmd::lvm::Lvm;
use lvmd::store::backup::BackupDirs;
use lvmd::store::lock::Locker;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Tests that need root, loop devices and lvm2 run by default and fail loudly when those
/// are missing; `LVMD_SKIP_HOST_TESTS=1` skips them on purpose (said on stderr).
pub fn host_tests_enabled(test: &str) -> bool {
    if std::env::var_os("LVMD_SKIP_HOST_TESTS").is_some() {
        eprintln!("SKIPPED {test}: LVMD_SKIP_HOST_TESTS is set");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "{test} needs root (loop devices, lvm2); set LVMD_SKIP_HOST_TESTS=1 to skip"
    );
    assert!(
        Command::new("lvm").arg("version").output().is_ok(),
        "{test} needs Debian's lvm2 (apt-get install lvm2)"
    );
    true
}

/// Sparse files attached as loop devices, detached on drop.
pub struct Loops {
    pub dir: tempfile::TempDir,
    pub devs: Vec<PathBuf>,
}

impl Loops {
    pub fn new(sizes_mib: &[u64]) -> Loops {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut devs = Vec::new();
        for (i, size) in sizes_mib.iter().enumerate() {
            let file = dir.path().join(format!("disk{i}.img"));
            let f = std::fs::File::create(&file).unwrap();
            f.set_len(size << 20).unwrap();
            devs.push(attach(&file));
        }
        Loops { dir, devs }
    }

    /// Attaches an existing image file too (detached on drop with the rest).
    pub fn add_image(&mut self, file: &Path) -> PathBuf {
        let dev = attach(file);
        self.devs.push(dev.clone());
        dev
    }

    pub fn backup_dir(&self) -> PathBuf {
        self.dir.path().join("backup")
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// lvmd's library, on exactly these devices, with backups beside the images.
    pub fn lvmd(&self) -> Lvm {
        let mut lvm = Lvm::new(self.devs.clone());
        lvm.backup = Some(BackupDirs {
            backup: self.backup_dir(),
            archive: Some(self.archive_dir()),
        });
        lvm.locker = Locker::new(lvmd::store::lock::DEFAULT_LOCK_DIR);
        // Never the machine's /etc/lvm/devices; a test that wants one sets its own.
        lvm.lvm2_devices_file.dir = self.dir.path().join("lvm2-devices");
        lvm
    }

    /// The top-level keys of an lvmd config for a daemon on these devices: its socket
    /// and mount root as given, backups, archives and lvm2's devices file in the
    /// fixture's directory. Device classes follow.
    pub fn daemon_config(&self, socket: &Path, mount_root: &Path) -> String {
        format!(
            "socket = \"{}\"\nmount_roots = [\"{}\"]\nbackup_dir = \"{}\"\n\
             archive_dir = \"{}\"\nlvm2_devices_file = \"{}\"\n",
            socket.display(),
            mount_root.display(),
            self.backup_dir().display(),
            self.archive_dir().display(),
            self.dir
                .path()
                .join("lvm2-devices/system.devices")
                .display(),
        )
    }

    /// Every device as a TOML string list, for a device class's `devices = [...]`.
    pub fn toml_devices(&self) -> String {
        let quoted: Vec<String> = self
            .devs
            .iter()
            .map(|d| format!("\"{}\"", d.display()))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// lvm2's `--config` that confines it to these devices, activation off.
    pub fn lvm_config(&self) -> String {
        self.lvm_config_with(false)
    }

    /// [`Loops::lvm_config`] with activation on or off (on: only where device-mapper
    /// answers, the VM).
    pub fn lvm_config_with(&self, activation: bool) -> String {
        let accept: Vec<String> = self
            .devs
            .iter()
            .map(|d| format!("\"a|^{}$|\"", d.display()))
            .collect();
        format!(
            "global {{ activation={} }} \
             devices {{ filter=[{}, \"r|.*|\"] global_filter=[{}, \"r|.*|\"] use_devicesfile=0 obtain_device_list_from_udev=0 }} \
             backup {{ backup_dir=\"{}\" archive_dir=\"{}\" }}",
            u8::from(activation),
            accept.join(", "),
            accept.join(", "),
            self.backup_dir().display(),
            self.archive_dir().display(),
        )
    }

    /// Runs `lvm <args>`; returns (success, stdout, stderr).
    pub fn lvm(&self, args: &[&str]) -> (bool, String, String) {
        let (cmd, rest) = args.split_first().expect("a command");
        let out = Command::new("lvm")
            .arg(cmd)
            .arg("--config")
            .arg(self.lvm_config())
            .args(rest)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .expect("run lvm");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn lvm_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.lvm(args);
        assert!(ok, "lvm {args:?} failed:\n{err}\n{out}");
        out
    }

    /// A `--reportformat json` report's rows: `lvm <cmd> ... ` of report `key`.
    pub fn report(&self, args: &[&str], key: &str) -> Vec<serde_json::Value> {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--reportformat", "json", "--units", "b", "--nosuffix"]);
        let out = self.lvm_ok(&full);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("lvm {args:?} gave bad JSON ({e}):\n{out}"));
        v["report"][0][key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .clone()
    }

    /// `vgck` must be clean: success and nothing on stderr but harmless notices.
    pub fn vgck(&self, vg: &str) {
        let (ok, out, err) = self.lvm(&["vgck", vg]);
        assert!(ok, "vgck {vg} failed:\n{err}\n{out}");
        let bad: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !l.contains("leaked on lvm invocation"))
            .filter(|l| !l.contains("Activation disabled"))
            .collect();
        assert!(bad.is_empty(), "vgck {vg} complained:\n{err}");
    }
}

fn attach(file: &Path) -> PathBuf {
    lvmd_sys::loopdev::attach(file, &lvmd_sys::loopdev::LoopOptions::default())
        .unwrap_or_else(|e| panic!("attach {} to a loop device: {e}", file.display()))
        .into_path()
}

impl Drop for Loops {
    fn drop(&mut self) {
        for d in &self.devs {
            let _ = lvmd_sys::loopdev::detach(d);
        }
    }
}

static VM_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
static NO_AUTOACTIVATION: std::sync::Once = std::sync::Once::new();

/// For test binaries that need device-mapper (`tests/vm_*.rs`, named by `binary`):
/// panics unless inside the test VM (or on a host with real DM, when
/// `LVMD_ALLOW_HOST_DM=1`), so they never pass silently without it; then holds the lock
/// that runs the binary's cases one at a time.
pub fn vm_case(binary: &str) -> std::sync::MutexGuard<'static, ()> {
    use lvmd_sys::dm;
    let in_vm = std::env::var_os("LVMD_VM").is_some_and(|v| v == "1");
    let host_ok = std::env::var_os("LVMD_ALLOW_HOST_DM").is_some_and(|v| v == "1");
    if !in_vm && !host_ok {
        panic!(
            "\n\n{binary} needs a kernel with device-mapper: run it inside the test VM:\n\n    \
             CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"$PWD/tests/vm/run-in-vm.sh\" \
             cargo test --test {binary}\n\n\
             (dm_version() here: {:?}; set LVMD_ALLOW_HOST_DM=1 to run on a host with real DM)\n",
            dm::dm_version()
        );
    }
    if let Err(e) = dm::dm_version() {
        panic!("device-mapper does not answer DM_VERSION: {e} (LVMD_VM={in_vm})");
    }
    if in_vm {
        NO_AUTOACTIVATION.call_once(disable_event_autoactivation);
    }
    VM_SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// With udev, lvm2's `69-lvm.rules` activates a whole VG by itself when a loop device
/// turns into a complete PV (the change event after a metadata write runs
/// `pvscan --autoactivation event`, then `vgchange -aay` directly, as there is no
/// systemd). That would race the tests, so the guest's lvm2 (the throw-away copy of
/// /etc/lvm in the VM, never a host's) is told not to.
fn disable_event_autoactivation() {
    let path = "/etc/lvm/lvmlocal.conf";
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    text.push_str("\nglobal {\n\tevent_activation = 0\n}\n");
    std::fs::write(path, text).unwrap();
}

/// Runs a program (lvm2's fd-leak warnings off); returns (success, stdout, stderr).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cmd)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run`] that must succeed; returns stdout.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(cmd, args);
    assert!(ok, "{cmd} {args:?} failed:\n{err}\n{out}");
    out
}

/// A unique VG name per test, so tests can run in parallel.
pub fn vg_name(test: &str) -> String {
    format!("lvmdt_{test}_{}", std::process::id())
}

/// A field of an lvm2 JSON report row as a u64.
pub fn num(row: &serde_json::Value, key: &str) -> u64 {
    row[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {row}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} not a number in {row}"))
}

pub fn text(row: &serde_json::Value, key: &str) -> String {
    row[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {row}"))
        .to_owned()
}

/// The transaction id of thin pool `vg/pool`'s kernel metadata (its `-tpool` device's
/// status; the pool target must be up).
pub fn kernel_transaction(vg: &str, pool: &str) -> u64 {
    let dev = format!(
        "{}-{}-tpool",
        vg.replace('-', "--"),
        pool.replace('-', "--")
    );
    let out = run_ok("dmsetup", &["status", &dev]);
    out.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// The thin device ids in a pool's kernel metadata, by `thin_dump` of its `_tmeta`
/// (the pool inactive, the metadata LV activated alone by lvm2 through `lvm2_ok`), and
/// `thin_check` clean on it.
pub fn thin_ids_on_disk(lvm2_ok: &dyn Fn(&[&str]) -> String, vg: &str, pool: &str) -> Vec<u64> {
    let tmeta = format!("{vg}/{pool}_tmeta");
    lvm2_ok(&["lvchange", "-ay", "-y", &tmeta]);
    let dev = format!("/dev/mapper/{}-{pool}_tmeta", vg.replace('-', "--"));
    let (ok, out, err) = run("thin_check", &[&dev]);
    let dump = run_ok("thin_dump", &[&dev]);
    lvm2_ok(&["lvchange", "-an", &tmeta]);
    assert!(ok, "thin_check {dev}:\n{err}\n{out}");
    dump.lines()
        .filter_map(|l| l.trim().strip_prefix("<device dev_id=\""))
        .map(|r| r.split('"').next().unwrap().parse().unwrap())
        .collect()
}
