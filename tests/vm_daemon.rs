//! The real `lvmd` binary on loop devices in the test VM, driven through `lvmd-ctl` and
//! the Rust gRPC client, and every change cross-checked with lvm2 (`vgs`, `lvs`,
//! `vgck`) and `dmsetup`: volumes end to end (create, activate, mount, write, grow
//! while mounted, remove), 32 parallel clients, lvm2 changing the same VG, `kill -9` at
//! each step of create, resize and remove (then restart, retry, nothing leaked), the
//! socket's SO_PEERCRED check, no data remanence (a removed volume's bytes never
//! readable through a new one, also across a kill -9 mid-wipe), and encrypted volumes
//! through `kill -9` at each LUKS step and a rekey, and over thin, striped and raid1.
//!
//! VM only, like `tests/vm_activate.rs` (`test = false`; it fails outside the VM):
//!
//! ```sh
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" \
//!     cargo test --test vm_daemon
//! ```

mod common;

use common::{daemon, num, run, run_ok, text, Loops};
use lvmd::rpc::client::connect;
use lvmd::rpc::pb;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Loop devices, a daemon configuration on them, and the daemon when running.
struct Bed {
    loops: Loops,
    vg: String,
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
    root: PathBuf,
    child: Option<Child>,
}

impl Bed {
    fn new(vg: &str, sizes_mib: &[u64]) -> Bed {
        let loops = Loops::new(sizes_mib);
        let dir = loops.dir.path().to_owned();
        // Other users must reach the socket (the permission case).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bed = Bed {
            vg: vg.into(),
            socket: dir.join("lvmd.sock"),
            config: dir.join("lvmd.toml"),
            log: dir.join("lvmd.log"),
            root: dir.join("kubelet"),
            loops,
            child: None,
        };
        bed.write_config("");
        bed
    }

    /// The configuration, with `extra` top-level keys.
    fn write_config(&self, extra: &str) {
        self.write_class_config(extra, "");
    }

    /// The configuration, with `extra` top-level keys and `class` keys of the class.
    fn write_class_config(&self, extra: &str, class: &str) {
        std::fs::write(
            &self.config,
            format!(
                "{}{extra}\n\n[device_classes.disks]\nvolume_group = \"{}\"\n\
                 default = true\ndevices = {}\n{class}",
                self.loops.daemon_config(&self.socket, &self.root),
                self.vg,
                self.loops.toml_devices(),
            ),
        )
        .unwrap();
    }

    /// Starts lvmd (with `crash_after` as its LVMD_TEST_CRASH_AFTER) and waits until
    /// it answers health checks.
    fn start(&mut self, crash_after: Option<&str>) {
        self.spawn(crash_after);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.ctl(&["health"]).status.success() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("lvmd exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "lvmd did not come up:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts lvmd (with `crash_after` as its LVMD_TEST_CRASH_AFTER), not waiting.
    fn spawn(&mut self, crash_after: Option<&str>) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = daemon::lvmd_command();
        cmd.arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .env_remove("LVMD_TEST_CRASH_AFTER");
        if let Some(p) = crash_after {
            cmd.env("LVMD_TEST_CRASH_AFTER", p);
        }
        self.child = Some(cmd.spawn().expect("start lvmd"));
    }

    fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "lvmd exited with {:?}:\n{}",
            out.status,
            self.log_text()
        );
    }

    /// Waits for a daemon that should have killed itself; panics if it did not.
    fn expect_killed(&mut self, point: &str) {
        use std::os::unix::process::ExitStatusExt;
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "lvmd at {point}: {status}\n{}",
                    self.log_text()
                );
                return;
            }
            if Instant::now() > deadline {
                daemon::kill9(&mut child);
                panic!("lvmd did not kill itself at {point}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> Output {
        daemon::ctl(&self.socket, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        daemon::json(&self.socket, args, || self.log_text())
    }

    /// lvmd-ctl must refuse with this gRPC code; returns its stderr.
    fn refused(&self, args: &[&str], code: &str) -> String {
        let out = self.ctl(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "lvmd-ctl {args:?}: {err}");
        assert!(err.contains(code), "lvmd-ctl {args:?}: {err}");
        err
    }

    /// `lv`'s row of `lvmd-ctl --json lv list`.
    fn listed(&self, lv: &str) -> Value {
        let list = self.json(&["lv", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == lv)
            .unwrap_or_else(|| panic!("{lv} not listed: {list}"))
            .clone()
    }

    fn lvmd_names(&self) -> BTreeSet<String> {
        self.json(&["lv", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn lvm2_config(&self) -> String {
        self.loops.lvm_config_with(true)
    }

    fn lvm2(&self, args: &[&str]) -> String {
        let (cmd, rest) = args.split_first().unwrap();
        let config = self.lvm2_config();
        let mut full = vec![*cmd, "--config", &config];
        full.extend_from_slice(rest);
        run_ok("lvm", &full)
    }

    /// lvm2's LV rows: name -> (size in bytes, stripes).
    fn lvs(&self) -> Vec<(String, u64, u64)> {
        let out = self.lvm2(&[
            "lvs",
            &self.vg,
            "-o",
            "lv_name,lv_size,stripes",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["report"][0]["lv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (text(r, "lv_name"), num(r, "lv_size"), num(r, "stripes")))
            .collect()
    }

    fn lvm2_names(&self) -> BTreeSet<String> {
        self.lvs().into_iter().map(|r| r.0).collect()
    }

    fn lvm2_size(&self, lv: &str) -> Option<u64> {
        self.lvs().into_iter().find(|r| r.0 == lv).map(|r| r.1)
    }

    fn vgck(&self) {
        let config = self.lvm2_config();
        let (ok, out, err) = run("lvm", &["vgck", "--config", &config, &self.vg]);
        let bad: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("leaked on lvm invocation"))
            .collect();
        assert!(ok && bad.is_empty(), "vgck {}:\n{err}\n{out}", self.vg);
    }

    /// lvmd and lvm2 list the same volumes, and vgck is clean.
    fn agree(&self) -> BTreeSet<String> {
        let names = self.lvm2_names();
        assert_eq!(self.lvmd_names(), names, "lvmd and lvm2 differ");
        self.vgck();
        names
    }

    fn dm_name(&self, lv: &str) -> String {
        format!("{}-{}", self.vg.replace('-', "--"), lv.replace('-', "--"))
    }

    /// `dmsetup table` of the LV's device; `None` when there is no such device.
    fn dm_table(&self, lv: &str) -> Option<String> {
        let (ok, out, _) = run("dmsetup", &["table", &self.dm_name(lv)]);
        ok.then_some(out)
    }

    /// Names of the dm devices of this VG.
    fn dm_devices(&self) -> BTreeSet<String> {
        let out = run_ok("dmsetup", &["ls"]);
        let prefix = format!("{}-", self.vg.replace('-', "--"));
        out.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    }

    /// Every dm device of this VG as `dmsetup` shows it: name, uuid, attributes, open
    /// count, device number and table, sorted by name. With `by_name`, device numbers
    /// (this device's, and in tables the dm devices it maps to) are replaced by names,
    /// so devices made again compare equal. Waits for udev's probes first.
    fn dm_capture(&self, by_name: bool) -> Vec<String> {
        if !no_udev() {
            let _ = run("udevadm", &["settle", "--timeout=10"]);
        }
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
                "name,uuid,attr,open,major,minor",
            ],
        );
        let rows: Vec<Vec<String>> = info
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .filter(|f: &Vec<String>| f.len() == 6)
            .collect();
        let names: std::collections::BTreeMap<String, String> = rows
            .iter()
            .map(|f| (format!("{}:{}", f[4], f[5]), f[0].clone()))
            .collect();
        let mut out = Vec::new();
        for f in rows.iter().filter(|f| self.dm_devices().contains(&f[0])) {
            let table = run_ok("dmsetup", &["--manglename", "none", "table", &f[0]]);
            let (devnum, table) = if by_name {
                let t = table
                    .split(' ')
                    .map(|w| {
                        names
                            .get(w.trim_end())
                            .map_or(w.to_owned(), |n| format!("<{n}>"))
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                ("-".to_owned(), t)
            } else {
                (format!("{}:{}", f[4], f[5]), table)
            };
            out.push(format!(
                "{} {} attr={} open={} dev={devnum}\n{}",
                f[0],
                f[1],
                f[2],
                f[3],
                table.trim_end()
            ));
        }
        out.sort();
        out
    }

    /// lvm2's view of the VG's visible LVs: name -> (size, active).
    fn lvm2_states(&self) -> std::collections::BTreeMap<String, (u64, bool)> {
        let out = self.lvm2(&[
            "lvs",
            &self.vg,
            "-o",
            "lv_name,lv_size,lv_active",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["report"][0]["lv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    text(r, "lv_name"),
                    (num(r, "lv_size"), text(r, "lv_active") == "active"),
                )
            })
            .collect()
    }

    /// lvmd's view of the same: name -> (size, active).
    fn lvmd_states(&self) -> std::collections::BTreeMap<String, (u64, bool)> {
        self.json(&["lv", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_owned(),
                    (v["size"].as_u64().unwrap(), v["active"] == true),
                )
            })
            .collect()
    }

    fn dm_size(&self, lv: &str) -> u64 {
        let dev = format!("/dev/mapper/{}", self.dm_name(lv));
        run_ok("blockdev", &["--getsize64", &dev])
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            daemon::kill9(&mut c);
        }
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.root)
            .output();
        // Layered devices (raid legs, thin pools) go only after the devices above them.
        for _ in 0..4 {
            for d in self.dm_devices() {
                let _ = Command::new("dmsetup").args(["remove", &d]).output();
            }
        }
    }
}

fn no_udev() -> bool {
    std::env::var_os("VM_NO_UDEV").is_some_and(|v| v == "1")
}

fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = (offset + i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            (x >> 29) as u8
        })
        .collect()
}

fn write_pattern(path: &Path, seed: u64, offset: u64, len: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&pattern(seed, offset, len as usize), offset)
        .unwrap();
    f.sync_all().unwrap();
}

fn assert_pattern(path: &Path, seed: u64, offset: u64, len: u64) {
    use std::os::unix::fs::FileExt;
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let mut buf = vec![0u8; len as usize];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    assert!(
        buf == pattern(seed, offset, len as usize),
        "{}: data differs",
        path.display()
    );
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn volume(name: &str) -> Option<pb::VolumeRef> {
    Some(pb::VolumeRef {
        device_class: String::new(),
        volume_group: String::new(),
        name: name.into(),
    })
}

#[test]
fn a_volume_through_the_daemon_end_to_end() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-e2e", &[256, 256]);
    bed.start(None);
    if daemon::sandboxed() {
        // Everything below then runs under lvmd.service's sandbox: check it applies.
        let pid = daemon::lvmd_pid(bed.child.as_ref().unwrap());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
        assert_eq!(field("Seccomp:"), "2", "{status}");
        // CAP_SYS_MODULE (16) and CAP_SYS_BOOT (22) are outside the bounding set.
        let bounding = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
        assert_eq!(bounding & (1 << 16 | 1 << 22), 0, "{status}");
    }

    // Create linear and striped through lvmd-ctl; lvm2 reads them the same.
    bed.json(&["lv", "create", "lin", "64MiB"]);
    bed.json(&["lv", "create", "str", "32MiB", "--stripes", "2"]);
    let rows = bed.lvs();
    assert!(rows.contains(&("lin".into(), 64 * MIB, 1)), "{rows:?}");
    assert!(rows.contains(&("str".into(), 32 * MIB, 2)), "{rows:?}");
    bed.agree();

    // Mount (mkfs), write, unmount. First: a client's activation hands the raw device
    // out, after which lvmd never formats it.
    let target = bed.root.join("pods/a/vol");
    let t = target.to_str().unwrap();
    let m = bed.json(&["lv", "mount", "lin", t]);
    assert_eq!(m["formatted"], true, "{m}");
    std::fs::write(target.join("hello"), b"written through lvmd\n").unwrap();
    assert_eq!(bed.json(&["lv", "unmount", t])["was_mounted"], true);
    assert!(!target.join("hello").exists());

    // Activate: the node exists, and the table is the one lvm2 makes for the same LV.
    for lv in ["lin", "str"] {
        let v = bed.json(&["lv", "activate", lv]);
        assert_eq!(v["active"], true, "{v}");
        let dev = PathBuf::from(v["device_path"].as_str().unwrap());
        assert!(dev.exists(), "{}", dev.display());
        let ours = bed.dm_table(lv).expect("active");
        bed.json(&["lv", "deactivate", lv]);
        assert_eq!(bed.dm_table(lv), None);
        let target = format!("{}/{lv}", bed.vg);
        bed.lvm2(&["lvchange", "-ay", &target]);
        let theirs = bed.dm_table(lv).expect("lvm2 activated it");
        bed.lvm2(&["lvchange", "-an", &target]);
        assert_eq!(ours, theirs, "{lv}: lvmd's table differs from lvm2's");
    }

    // Mount again, read back (marked formatted by lvmd: mounted, never formatted).
    let m = bed.json(&["lv", "mount", "lin", t]);
    assert_eq!(m["formatted"], false, "{m}");
    assert_eq!(
        std::fs::read(target.join("hello")).unwrap(),
        b"written through lvmd\n"
    );
    // "str" was handed out raw by the client's activation above, never formatted:
    // staging it is refused, not a mkfs over what a client may have written.
    let str_target = bed.root.join("pods/a/str");
    let err = bed.refused(
        &["lv", "mount", "str", str_target.to_str().unwrap()],
        "FailedPrecondition",
    );
    assert!(err.contains("may hold data"), "{err}");

    // Grow while mounted: the table follows, then the filesystem; the gRPC client sees
    // the new space.
    let rt = rt();
    let stats = |path: &Path| {
        rt.block_on(async {
            let ch = connect(&bed.socket).await.unwrap();
            let mut node = pb::node_service_client::NodeServiceClient::new(ch);
            node.get_path_stats(pb::GetPathStatsRequest {
                path: path.display().to_string(),
            })
            .await
            .unwrap()
            .into_inner()
        })
    };
    let before = stats(&target).total_bytes;
    rt.block_on(async {
        let ch = connect(&bed.socket).await.unwrap();
        let mut lvc = pb::logical_volume_service_client::LogicalVolumeServiceClient::new(ch);
        let v = lvc
            .resize_logical_volume(pb::ResizeLogicalVolumeRequest {
                volume: volume("lin"),
                size_bytes: 160 * MIB,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v.size_bytes, 160 * MIB);
    });
    assert_eq!(bed.dm_size("lin"), 160 * MIB);
    assert_eq!(bed.lvm2_size("lin"), Some(160 * MIB));
    run_ok("resize2fs", &[&format!("/dev/{}/lin", bed.vg)]);
    let after = stats(&target).total_bytes;
    assert!(after > before + 64 * MIB, "{before} -> {after}");
    assert_eq!(
        std::fs::read(target.join("hello")).unwrap(),
        b"written through lvmd\n"
    );

    // Remove: refused while mounted, done after the unmount; nothing left behind.
    bed.refused(&["lv", "remove", "lin"], "FailedPrecondition");
    let open = run_ok(
        "dmsetup",
        &[
            "info",
            "-c",
            "--noheadings",
            "-o",
            "open",
            &bed.dm_name("lin"),
        ],
    );
    assert!(
        open.trim().parse::<u32>().unwrap() >= 1,
        "open count {open}"
    );
    assert_eq!(bed.lvm2_size("lin"), Some(160 * MIB));
    bed.json(&["lv", "unmount", t, "--remove-target"]);
    assert!(!target.exists());
    assert_eq!(bed.json(&["lv", "remove", "lin"])["existed"], true);
    assert_eq!(bed.json(&["lv", "remove", "str"])["existed"], true);
    assert!(bed.dm_devices().is_empty(), "{:?}", bed.dm_devices());
    assert!(bed.agree().is_empty());
    bed.stop();
}

#[test]
fn thirty_two_parallel_clients() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-par", &[256, 256]);
    bed.start(None);
    const CLIENTS: usize = 32;
    const EACH: usize = 3;
    let rt = rt();
    let socket = bed.socket.clone();
    let started = Instant::now();
    let kept: Vec<String> = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let socket = socket.clone();
            tasks.push(tokio::spawn(async move {
                let ch = connect(&socket).await.unwrap();
                let mut lvc =
                    pb::logical_volume_service_client::LogicalVolumeServiceClient::new(ch);
                let names: Vec<String> = (0..EACH).map(|i| format!("c{c}-{i}")).collect();
                for n in &names {
                    lvc.create_logical_volume(pb::CreateLogicalVolumeRequest {
                        volume: volume(n),
                        size_bytes: 4 * MIB,
                        layout: pb::Layout::Linear as i32,
                        tags: vec![format!("client={c}")],
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("create {n}: {e}"));
                }
                // Keep the last one, remove the others.
                for n in &names[..EACH - 1] {
                    let r = lvc
                        .remove_logical_volume(pb::RemoveLogicalVolumeRequest { volume: volume(n) })
                        .await
                        .unwrap_or_else(|e| panic!("remove {n}: {e}"))
                        .into_inner();
                    assert!(r.existed, "{n}");
                }
                names[EACH - 1].clone()
            }));
        }
        let mut kept = Vec::new();
        for t in tasks {
            kept.push(t.await.unwrap());
        }
        kept
    });
    eprintln!(
        "{CLIENTS} clients x {EACH} creates + {} removes: {:?}",
        EACH - 1,
        started.elapsed()
    );
    let want: BTreeSet<String> = kept.into_iter().collect();
    assert_eq!(want.len(), CLIENTS);
    assert_eq!(bed.agree(), want);
    for (name, size, _) in bed.lvs() {
        assert_eq!(size, 4 * MIB, "{name}");
    }
    bed.stop();
}

#[test]
fn lvm2_changes_the_vg_while_lvmd_runs() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-both", &[128]);
    bed.start(None);
    bed.json(&["lv", "create", "first", "8MiB"]);
    bed.lvm2(&[
        "lvcreate", "-an", "-Zn", "-L", "12m", "-n", "bylvm", &bed.vg,
    ]);
    assert!(bed.lvmd_names().contains("bylvm"));
    bed.json(&["lv", "create", "after", "8MiB"]);
    let names = bed.agree();
    assert_eq!(names, ["after", "bylvm", "first"].map(String::from).into());
    // lvmd activates what lvm2 made, lvm2 sees it active.
    bed.json(&["lv", "activate", "bylvm"]);
    let target = format!("{}/bylvm", bed.vg);
    let attr = bed.lvm2(&["lvs", "--noheadings", "-o", "lv_active", &target]);
    assert_eq!(attr.trim(), "active");
    bed.lvm2(&["lvremove", "-y", &format!("{}/first", bed.vg)]);
    assert_eq!(bed.json(&["lv", "remove", "bylvm"])["existed"], true);
    assert_eq!(bed.agree(), ["after"].map(String::from).into());
    assert!(bed.dm_devices().is_empty());
    bed.stop();
}

/// Runs `args` against a daemon set to kill itself at `point`; the call fails, the
/// daemon dies by SIGKILL, and is started again (which reconciles).
fn crash_at(bed: &mut Bed, point: &str, args: &[&str]) {
    bed.start(Some(point));
    let out = bed.ctl(args);
    assert!(
        !out.status.success(),
        "lvmd-ctl {args:?} succeeded though lvmd was to die at {point}"
    );
    bed.expect_killed(point);
    bed.start(None);
}

#[test]
fn kill_9_at_every_step_then_retry_converges() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-kill", &[128, 128]);
    let commit_points = ["text", "synced", "header", "committed"];
    // The VG is made at the first start, which must not be a crashing one.
    bed.start(None);
    bed.stop();

    // Create: after the restart, the retry returns the volume (once), lvm2 agrees.
    for (i, point) in commit_points.iter().enumerate() {
        let name = format!("c{i}");
        crash_at(&mut bed, point, &["lv", "create", &name, "8MiB"]);
        bed.vgck();
        let v = bed.json(&["lv", "create", &name, "8MiB"]);
        assert_eq!(v["size"], 8 * MIB, "{point}: {v}");
        assert_eq!(bed.lvm2_size(&name), Some(8 * MIB), "{point}");
        bed.agree();
        bed.stop();
    }

    // Killed between the headers of the two PVs: the areas disagreed until the restart.
    assert!(
        bed.log_text()
            .contains("metadata areas held different versions"),
        "no rewrite logged after a crash between the headers"
    );

    // Resize of an active volume: the table reaches the target too (reconciliation at
    // start, or the retry), data before the old end intact.
    bed.start(None);
    bed.json(&["lv", "create", "r", "8MiB"]);
    bed.json(&["lv", "activate", "r"]);
    bed.stop();
    for (i, point) in commit_points.iter().enumerate() {
        let size = format!("{}MiB", 8 * (i + 2));
        crash_at(&mut bed, point, &["lv", "resize", "r", &size]);
        bed.vgck();
        let v = bed.json(&["lv", "resize", "r", &size]);
        let want = 8 * (i as u64 + 2) * MIB;
        assert_eq!(v["size"], want, "{point}: {v}");
        assert_eq!(bed.lvm2_size("r"), Some(want), "{point}");
        assert_eq!(bed.dm_size("r"), want, "{point}: table not refreshed");
        bed.agree();
        bed.stop();
    }
    assert!(
        bed.log_text().contains("reconciliation"),
        "no repair logged after a crash between commit and reload"
    );

    // Remove of active volumes: the retry removes; no device or LV is left.
    let remove_points = ["deactivated", "text", "synced", "header", "committed"];
    for (i, point) in remove_points.iter().enumerate() {
        let name = format!("c{i}");
        if i >= commit_points.len() {
            bed.start(None);
            bed.json(&["lv", "create", &name, "8MiB"]);
            bed.stop();
        }
        bed.start(None);
        bed.json(&["lv", "activate", &name]);
        bed.stop();
        crash_at(&mut bed, point, &["lv", "remove", &name]);
        bed.vgck();
        bed.json(&["lv", "remove", &name]);
        assert_eq!(bed.lvm2_size(&name), None, "{point}");
        assert_eq!(bed.dm_table(&name), None, "{point}: device leaked");
        bed.agree();
        bed.stop();
    }

    // A device whose LV vanished from the metadata (lvm2, or a crash of an older
    // order): reconciliation removes it at start.
    bed.start(None);
    bed.json(&["lv", "create", "ghost", "8MiB"]);
    bed.json(&["lv", "activate", "ghost"]);
    bed.stop();
    bed.loops.lvmd().lv_remove(&bed.vg, "ghost").unwrap();
    assert!(bed.dm_table("ghost").is_some());
    bed.start(None);
    assert_eq!(bed.dm_table("ghost"), None, "leftover device not removed");
    assert!(bed
        .log_text()
        .contains("removed the device of a logical volume"));
    let left = bed.agree();
    assert_eq!(left, ["r"].map(String::from).into());
    assert_eq!(bed.dm_devices(), [bed.dm_name("r")].into());
    bed.json(&["lv", "remove", "r"]);
    assert!(bed.dm_devices().is_empty());
    bed.stop();
}

#[test]
fn socket_peers_are_checked_by_uid() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-perm", &[64]);
    // A copy of lvmd-ctl any user can run.
    let ctl = bed.loops.dir.path().join("lvmd-ctl");
    std::fs::copy(env!("CARGO_BIN_EXE_lvmd-ctl"), &ctl).unwrap();
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_1000 = |bed: &Bed| {
        Command::new("setpriv")
            .args(["--reuid", "1000", "--regid", "1000", "--clear-groups"])
            .arg(&ctl)
            .arg("--socket")
            .arg(&bed.socket)
            .args(["lv", "list"])
            .output()
            .unwrap()
    };
    // The socket's group lets uid 1000 connect; the daemon's allow list does not.
    bed.write_config("socket_group = \"1000\"");
    bed.start(None);
    let meta = std::fs::metadata(&bed.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let out = as_1000(&bed);
    assert!(
        !out.status.success(),
        "uid 1000 was let in: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        bed.log_text()
            .contains("refused a client not in the allow list"),
        "{}",
        bed.log_text()
    );
    bed.stop();
    bed.write_config("socket_group = \"1000\"\nallowed_uids = [1000]");
    bed.start(None);
    let out = as_1000(&bed);
    assert!(
        out.status.success(),
        "uid 1000 refused though allowed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bed.stop();
}

/// The attached loop devices reading from the block device `rdev`.
fn loops_over(rdev: u64) -> Vec<PathBuf> {
    lvmd_sys::loopdev::attached()
        .unwrap()
        .into_iter()
        .filter(|l| {
            lvmd_sys::loopdev::status(l)
                .ok()
                .flatten()
                .is_some_and(|s| s.backing_rdev == rdev)
        })
        .collect()
}

/// Waits for the (maybe lazy: udev probes new loop devices) detach of every loop
/// device over `rdev`.
fn wait_no_loops_over(rdev: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = loops_over(rdev);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still attached: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Detaches loop devices over the VG's LVs when the test failed half-way, so the
/// Bed's clean-up can remove the dm devices.
struct DetachLoopsOver(Vec<u64>);

impl Drop for DetachLoopsOver {
    fn drop(&mut self) {
        for &rdev in &self.0 {
            for l in loops_over(rdev) {
                let _ = lvmd_sys::loopdev::detach(&l);
            }
        }
    }
}

#[test]
fn read_only_raw_block_publish_refuses_writes() {
    use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-ro", &[256]);
    bed.start(None);
    bed.json(&["lv", "create", "raw", "64MiB"]);
    let rt = rt();
    let node = || async {
        pb::node_service_client::NodeServiceClient::new(connect(&bed.socket).await.unwrap())
    };
    let publish = |target: &Path, read_only: bool| {
        rt.block_on(async {
            node()
                .await
                .publish_block(pb::PublishBlockRequest {
                    volume: volume("raw"),
                    target_path: target.display().to_string(),
                    read_only,
                    passphrase: Vec::new(),
                })
                .await
                .map(|r| r.into_inner().device_path)
                .map_err(|s| s.code())
        })
    };
    let unpublish = |target: &Path| {
        rt.block_on(async {
            node()
                .await
                .unmount(pb::UnmountRequest {
                    target_path: target.display().to_string(),
                    remove_target: true,
                })
                .await
                .unwrap()
                .into_inner()
                .was_mounted
        })
    };

    // Data written through a read-write publish.
    let rw = bed.root.join("pods/w/volumeDevices/raw");
    let device = publish(&rw, false).unwrap();
    let dm_rdev = std::fs::metadata(&device).unwrap().rdev();
    let _cleanup = DetachLoopsOver(vec![dm_rdev]);
    {
        let f = std::fs::OpenOptions::new().write(true).open(&rw).unwrap();
        f.write_all_at(&[0x5a; 4096], MIB).unwrap();
        f.sync_all().unwrap();
    }
    assert!(unpublish(&rw));

    // Read-only: the target is a read-only loop device over the LV's dm device.
    let ro = bed.root.join("pods/r/volumeDevices/raw");
    assert_eq!(publish(&ro, true).unwrap(), device);
    let t = std::fs::metadata(&ro).unwrap();
    assert!(t.file_type().is_block_device());
    assert_eq!(libc::major(t.rdev()), lvmd_sys::loopdev::LOOP_MAJOR);
    let lo = PathBuf::from(format!("/dev/loop{}", libc::minor(t.rdev())));
    assert_eq!(loops_over(dm_rdev), std::slice::from_ref(&lo));
    let status = lvmd_sys::loopdev::status(&lo).unwrap().unwrap();
    assert!(status.read_only, "{status:?}");
    let backing = lvmd_sys::loopdev::backing_file(&lo).unwrap().unwrap();
    let backing = backing.display().to_string();
    assert!(
        backing.starts_with("/dev/dm-") || backing.starts_with("/dev/mapper/"),
        "{backing}"
    );
    // Reads see the data; writes fail, though the node may be opened for writing.
    let mut buf = [0u8; 4096];
    std::fs::File::open(&ro)
        .unwrap()
        .read_exact_at(&mut buf, MIB)
        .unwrap();
    assert_eq!(buf, [0x5a; 4096]);
    match std::fs::OpenOptions::new().write(true).open(&ro) {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}"),
        Ok(f) => {
            let e = f.write_at(&[0u8; 512], 0).unwrap_err();
            assert!(
                matches!(e.raw_os_error(), Some(libc::EPERM | libc::EROFS)),
                "{e}"
            );
        }
    }
    // Retried: the same loop device, no second one.
    publish(&ro, true).unwrap();
    assert_eq!(loops_over(dm_rdev), std::slice::from_ref(&lo));
    // Read-write at the read-only target: there already, incompatible.
    assert_eq!(publish(&ro, false).unwrap_err(), tonic::Code::AlreadyExists);

    // Grown while published read-only (ExpandVolume without a target): the
    // read-only view follows.
    rt.block_on(async {
        node()
            .await
            .expand_volume(pb::ExpandVolumeRequest {
                volume: volume("raw"),
                size_bytes: 96 * MIB,
                target_path: String::new(),
                passphrase: Vec::new(),
            })
            .await
            .unwrap()
    });
    let size = |p: &Path| lvmd_sys::blkdev::device_size_bytes(std::fs::File::open(p).unwrap());
    assert_eq!(size(Path::new(&device)).unwrap(), 96 * MIB);
    assert_eq!(size(&ro).unwrap(), 96 * MIB);

    // Deactivating or removing is refused while published, saying what holds it.
    for args in [&["lv", "deactivate", "raw"][..], &["lv", "remove", "raw"]] {
        let msg = bed.refused(args, "FailedPrecondition");
        assert!(
            msg.contains(&lo.display().to_string()) && msg.contains("unpublish"),
            "{msg}"
        );
    }

    // Unpublish: unmounted, and the loop device detached; then the LV goes.
    assert!(unpublish(&ro));
    assert!(!ro.exists());
    wait_no_loops_over(dm_rdev);
    assert_eq!(bed.json(&["lv", "deactivate", "raw"])["active"], false);

    // A crash between attaching and binding leaves lvmd's loop device behind:
    // start-up reconciliation detaches it; someone else's is left alone.
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "raw"])["device_path"]
            .as_str()
            .unwrap(),
    );
    let dm_rdev = std::fs::metadata(&dev).unwrap().rdev();
    let _cleanup2 = DetachLoopsOver(vec![dm_rdev]);
    let attach = |label: Option<String>| {
        lvmd_sys::loopdev::attach(
            &dev,
            &lvmd_sys::loopdev::LoopOptions {
                read_only: true,
                label,
                ..Default::default()
            },
        )
        .unwrap()
        .into_path()
    };
    let leftover = attach(Some(format!("lvmd-ro {}", dev.display())));
    let theirs = attach(None);
    bed.stop();
    bed.start(None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while loops_over(dm_rdev).contains(&leftover) {
        assert!(
            Instant::now() < deadline,
            "leftover not detached:\n{}",
            bed.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(loops_over(dm_rdev), std::slice::from_ref(&theirs));
    assert!(
        bed.log_text().contains("detached a read-only loop device"),
        "{}",
        bed.log_text()
    );
    lvmd_sys::loopdev::detach(&theirs).unwrap();
    wait_no_loops_over(dm_rdev);
    assert_eq!(bed.json(&["lv", "remove", "raw"])["existed"], true);
    assert!(bed.dm_devices().is_empty(), "{:?}", bed.dm_devices());
    bed.stop();
}

/// raid1 and thin LVs lvm2 made in the VG lvmd manages: start-up reconciliation (also
/// after a `kill -9`) leaves every one of their devices exactly as it was; lvmd lists
/// them as lvm2 does, deactivates and activates them with lvm2's tables, refuses to
/// remove or resize the pool or shrink the mirror before anything changes, and removes
/// the mirror and the thin volume so that lvm2 agrees (the pool's transaction id too).
#[test]
fn raid1_and_thin_lvs_lvm2_made_are_left_alone_and_served() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-layers", &[128, 128]);
    let vg = bed.vg.clone();
    // lvmd makes the VG on both devices, and a plain LV of its own.
    bed.start(None);
    bed.json(&["lv", "create", "plain", "8MiB"]);
    bed.json(&["lv", "activate", "plain"]);
    bed.stop();

    // lvm2 adds a raid1 LV, a thin pool and a thin LV, active, with data.
    bed.lvm2(&[
        "lvcreate", "--type", "raid1", "-m1", "-L", "8M", "-n", "r", &vg,
    ]);
    bed.lvm2(&[
        "lvcreate",
        "--type",
        "thin-pool",
        "-L",
        "32M",
        "-n",
        "pool",
        &vg,
    ]);
    bed.lvm2(&[
        "lvcreate",
        "-V",
        "24M",
        "-T",
        &format!("{vg}/pool"),
        "-n",
        "t1",
    ]);
    let r_path = PathBuf::from(format!("/dev/{vg}/r"));
    let t1_path = PathBuf::from(format!("/dev/{vg}/t1"));
    write_pattern(&r_path, 1, 0, 8 * MIB);
    write_pattern(&t1_path, 2, 0, 2 * MIB);
    write_pattern(&t1_path, 3, 20 * MIB, 2 * MIB);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sync = bed.lvm2(&[
            "lvs",
            "--noheadings",
            "-o",
            "sync_percent",
            &format!("{vg}/r"),
        ]);
        if sync.trim() == "100.00" {
            break;
        }
        assert!(Instant::now() < deadline, "r not in sync: {sync}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let before = bed.dm_capture(false);
    eprintln!("lvm2's devices:\n{}", before.join("\n"));
    let expected = ["r", "r_rimage_0", "r_rmeta_1", "t1", "pool_tmeta", "plain"]
        .map(|lv| bed.dm_name(lv))
        .into_iter()
        .chain([format!("{}-tpool", bed.dm_name("pool"))]);
    for name in expected {
        assert!(
            before.iter().any(|c| c.starts_with(&format!("{name} "))),
            "{name} not active: {before:#?}"
        );
    }
    let lvm2_before = bed.lvm2_states();
    assert_eq!(
        lvm2_before.keys().collect::<Vec<_>>(),
        ["plain", "pool", "r", "t1"]
    );

    // Start-up reconciliation: not one device touched, nothing logged.
    let log_at = bed.log_text().len();
    bed.start(None);
    assert_eq!(
        bed.dm_capture(false),
        before,
        "lvmd's start changed devices"
    );
    let log = bed.log_text()[log_at..].to_owned();
    assert!(!log.contains("reconciliation"), "{log}");

    // Listed as lvm2 lists them: the same LVs, sizes and active states.
    assert_eq!(bed.lvmd_states(), lvm2_before);
    bed.agree();

    // Removing or resizing the pool, and shrinking the mirror, is refused, saying why,
    // and changes nothing. (lvmd removes lvm2's mirror and thin volume: below.)
    let err = bed.refused(&["lv", "remove", "pool"], "FailedPrecondition");
    assert!(err.contains("thin pool"), "{err}");
    let err = bed.refused(&["lv", "resize", "pool", "64MiB"], "FailedPrecondition");
    assert!(err.contains("thin pool"), "{err}");
    // lvmd grows mirrors (a_mirror_grows_online_...) but never shrinks one.
    let err = bed.refused(&["lv", "resize", "r", "4MiB"], "FailedPrecondition");
    assert!(
        err.contains("raid1") && err.contains("does not shrink"),
        "{err}"
    );
    assert_eq!(
        bed.dm_capture(false),
        before,
        "a refused call changed devices"
    );
    assert_eq!(bed.lvm2_states(), lvm2_before);
    bed.vgck();

    // Deactivated and activated through lvmd: lvm2's devices again, data intact.
    let normalised = bed.dm_capture(true);
    for lv in ["r", "t1"] {
        let v = bed.json(&["lv", "deactivate", lv]);
        assert_eq!(v["active"], false, "{v}");
        assert_eq!(bed.dm_table(lv), None, "{lv} still active");
        assert!(!bed.lvm2_states()[lv].1, "lvm2 calls {lv} active");
        let v = bed.json(&["lv", "activate", lv]);
        assert_eq!(v["active"], true, "{v}");
        assert_eq!(
            bed.dm_capture(true),
            normalised,
            "{lv}: lvmd's devices differ from lvm2's"
        );
    }
    assert_pattern(&r_path, 1, 0, 8 * MIB);
    assert_pattern(&t1_path, 2, 0, 2 * MIB);
    assert_pattern(&t1_path, 3, 20 * MIB, 2 * MIB);
    assert_eq!(bed.lvm2_states(), lvm2_before);
    assert_eq!(bed.lvmd_states(), lvm2_before);

    // Killed while they are active: the next start leaves them alone again.
    let active = bed.dm_capture(false);
    let mut child = bed.child.take().unwrap();
    daemon::kill9(&mut child);
    let log_at = bed.log_text().len();
    bed.start(None);
    assert_eq!(
        bed.dm_capture(false),
        active,
        "restart after kill -9 changed devices"
    );
    let log = bed.log_text()[log_at..].to_owned();
    assert!(!log.contains("reconciliation"), "{log}");
    assert_eq!(bed.lvmd_states(), lvm2_before);
    bed.stop();

    // lvm2 takes them down; lvmd removes its own, and lvm2's mirror with its legs.
    bed.lvm2(&[
        "lvchange",
        "-an",
        &format!("{vg}/r"),
        &format!("{vg}/t1"),
        &format!("{vg}/pool"),
    ]);
    bed.start(None);
    assert_eq!(bed.json(&["lv", "remove", "plain"])["existed"], true);
    assert_eq!(bed.json(&["lv", "remove", "r"])["existed"], true);
    // lvm2's thin volume in lvm2's pool: its `delete` goes to the pool (brought up for
    // it and taken down again) and the transaction id lvm2 checks moves with it.
    assert_eq!(bed.json(&["lv", "remove", "t1"])["existed"], true);
    bed.lvm2(&["lvchange", "-ay", &format!("{vg}/pool")]);
    let lvs = bed.lvm2(&["lvs", "--noheadings", "-o", "lv_name", &vg]);
    assert!(!lvs.split_whitespace().any(|n| n == "t1"), "{lvs}");
    bed.lvm2(&["lvchange", "-an", &format!("{vg}/pool")]);
    let all = bed.lvm2(&["lvs", "-a", "--noheadings", "-o", "lv_name", &vg]);
    assert!(
        all.split_whitespace()
            .all(|n| !n.trim_matches(['[', ']']).starts_with("r_") && n != "r"),
        "{all}"
    );
    assert!(bed.dm_devices().is_empty(), "{:?}", bed.dm_devices());
    bed.agree();
    bed.stop();
}

fn device_hash(dev: &Path) -> u64 {
    use std::hash::Hasher;
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(&std::fs::read(dev).unwrap());
    h.finish()
}

fn read_head(dev: &Path, offset: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let mut b = vec![0u8; 4096];
    std::fs::File::open(dev)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    b
}

/// Staging through the real daemon decides from lvmd's marks, never from a probe
/// alone: a filesystem lvmd made and that was then damaged is refused, not formatted
/// again; an LV lvm2 made with a filesystem and a file is adopted and mounted; one with
/// raw data is refused and keeps it; the csi-sanity sequence (grow, delete, a smaller
/// volume on the same extents, stage) never mounts the old filesystem.
#[test]
fn staging_never_formats_what_lvmd_did_not_create_blank() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-fmt", &[256]);
    bed.start(None);
    let vg = bed.vg.clone();
    let tags = |bed: &Bed, lv: &str| {
        bed.lvm2(&[
            "lvs",
            "--noheadings",
            "-o",
            "lv_tags",
            &format!("{vg}/{lv}"),
        ])
        .trim()
        .to_owned()
    };
    let root = bed.root.clone();
    let target = move |n: &str| root.join(format!("staging/{n}"));

    // lvmd's own filesystem, then its superblock zeroed through the dm device.
    bed.json(&["lv", "create", "fs", "32MiB"]);
    let t = target("fs");
    let m = bed.json(&["lv", "mount", "fs", t.to_str().unwrap()]);
    assert_eq!(m["formatted"], true, "{m}");
    let dev = PathBuf::from(m["device"].as_str().unwrap());
    std::fs::write(t.join("f"), b"data").unwrap();
    bed.json(&["lv", "unmount", t.to_str().unwrap()]);
    assert_eq!(tags(&bed, "fs"), "lvmd.fs=ext4");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
        f.write_all_at(&[0u8; 1024], 1024).unwrap();
        f.sync_all().unwrap();
    }
    let h = device_hash(&dev);
    let err = bed.refused(
        &["lv", "mount", "fs", t.to_str().unwrap()],
        "FailedPrecondition",
    );
    assert!(err.contains("lvmd formatted it as ext4"), "{err}");
    assert_eq!(device_hash(&dev), h, "the damaged volume was written to");
    assert_eq!(tags(&bed, "fs"), "lvmd.fs=ext4");

    // An LV lvm2 made, with a filesystem and a file: mounted as it is, adopted.
    bed.lvm2(&["lvcreate", "-an", "-Zn", "-L", "32m", "-n", "bylvm", &vg]);
    let v = bed.json(&["lv", "activate", "bylvm"]);
    let dev = PathBuf::from(v["device_path"].as_str().unwrap());
    run_ok("mkfs.ext4", &["-q", "-F", dev.to_str().unwrap()]);
    let mnt = bed.loops.dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run_ok("mount", &[dev.to_str().unwrap(), mnt.to_str().unwrap()]);
    std::fs::write(mnt.join("theirs"), b"lvm2's data").unwrap();
    run_ok("umount", &[mnt.to_str().unwrap()]);
    let t = target("bylvm");
    let m = bed.json(&["lv", "mount", "bylvm", t.to_str().unwrap()]);
    assert_eq!(
        (m["formatted"].as_bool(), m["fs_type"].as_str()),
        (Some(false), Some("ext4")),
        "{m}"
    );
    assert_eq!(std::fs::read(t.join("theirs")).unwrap(), b"lvm2's data");
    assert_eq!(tags(&bed, "bylvm"), "lvmd.fs=ext4");
    bed.json(&["lv", "unmount", t.to_str().unwrap(), "--remove-target"]);

    // An LV lvm2 made, with raw data: refused, the data kept.
    bed.lvm2(&["lvcreate", "-an", "-Zn", "-L", "16m", "-n", "rawlvm", &vg]);
    let v = bed.json(&["lv", "activate", "rawlvm"]);
    let dev = PathBuf::from(v["device_path"].as_str().unwrap());
    write_pattern(&dev, 7, 0, 16 * MIB);
    let err = bed.refused(
        &["lv", "mount", "rawlvm", target("rawlvm").to_str().unwrap()],
        "FailedPrecondition",
    );
    assert!(err.contains("may hold data"), "{err}");
    assert_pattern(&dev, 7, 0, 16 * MIB);
    assert_eq!(tags(&bed, "rawlvm"), "");

    // Grow a volume and its filesystem, delete it, create a smaller one on the same
    // extents, stage it.
    bed.json(&["lv", "create", "g", "32MiB"]);
    let t = target("g");
    bed.json(&["lv", "mount", "g", t.to_str().unwrap()]);
    bed.json(&["lv", "resize", "g", "64MiB"]);
    run_ok("resize2fs", &[&format!("/dev/{vg}/g")]);
    bed.json(&["lv", "unmount", t.to_str().unwrap(), "--remove-target"]);
    let ranges = |bed: &Bed, lv: &str| {
        bed.lvm2(&[
            "lvs",
            "--noheadings",
            "-o",
            "seg_pe_ranges",
            &format!("{vg}/{lv}"),
        ])
        .trim()
        .to_owned()
    };
    let old = ranges(&bed, "g");
    assert_eq!(bed.json(&["lv", "remove", "g"])["existed"], true);
    bed.json(&["lv", "create", "small", "32MiB"]);
    let new = ranges(&bed, "small");
    // "loopN:a-b": the new LV starts on the old one's first extent.
    let start = |r: &str| r.split('-').next().unwrap().to_owned();
    assert_eq!(start(&new), start(&old), "{old} / {new}");
    // What the old filesystem left at the LV's start, read through the PV (an
    // activation would hand the LV out): 4 MiB extents after the 1 MiB data start.
    let (pv, pe) = new.split_once(':').unwrap();
    let pe: u64 = pe.split('-').next().unwrap().parse().unwrap();
    let head = read_head(Path::new(pv), MIB + pe * 4 * MIB);
    let old_ext4_there = head[1080..1082] == [0x53, 0xef];
    let t = target("small");
    if old_ext4_there {
        // Nothing cleared the extents at creation: the fresh LV holds the grown
        // filesystem (64 MiB on 32), refused instead of mounted with the wrong
        // geometry or failing INTERNAL.
        let err = bed.refused(
            &["lv", "mount", "small", t.to_str().unwrap()],
            "FailedPrecondition",
        );
        assert!(err.contains("written outside lvmd"), "{err}");
        assert_eq!(tags(&bed, "small"), "lvmd.fresh");
    } else {
        // Cleared at creation: formatted fresh, mounted, its own size.
        let m = bed.json(&["lv", "mount", "small", t.to_str().unwrap()]);
        assert_eq!(m["formatted"], true, "{m}");
        let dev = PathBuf::from(m["device"].as_str().unwrap());
        assert_eq!(
            lvmd::probe::filesystem_size("ext4", &read_head(&dev, 0)),
            Some(lvmd::units::Bytes(32 * MIB))
        );
        bed.json(&["lv", "unmount", t.to_str().unwrap(), "--remove-target"]);
    }
    eprintln!("grow/delete/create/stage: old ext4 left at the new LV's start: {old_ext4_there}");

    // kill -9 at each step of formatting, then the retry: formatted again while only
    // lvmd's own mkfs can be there, only mounted once it is marked done.
    bed.stop();
    for (i, (point, left)) in [
        ("mkfs-marked", "lvmd.mkfs=ext4"),
        ("formatted", "lvmd.mkfs=ext4"),
        ("fs-marked", "lvmd.fs=ext4"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("k{i}");
        bed.start(None);
        bed.json(&["lv", "create", &name, "16MiB"]);
        bed.stop();
        let t = target(&name);
        crash_at(
            &mut bed,
            point,
            &["lv", "mount", &name, t.to_str().unwrap()],
        );
        assert_eq!(tags(&bed, &name), left, "{point}");
        let m = bed.json(&["lv", "mount", &name, t.to_str().unwrap()]);
        assert_eq!(m["formatted"], point != "fs-marked", "{point}: {m}");
        assert_eq!(tags(&bed, &name), "lvmd.fs=ext4", "{point}");
        std::fs::write(t.join("f"), b"after the crash").unwrap();
        bed.json(&["lv", "unmount", t.to_str().unwrap(), "--remove-target"]);
        bed.stop();
    }
    bed.start(None);

    for lv in ["fs", "bylvm", "rawlvm", "small", "k0", "k1", "k2"] {
        assert_eq!(bed.json(&["lv", "remove", lv])["existed"], true, "{lv}");
    }
    assert!(bed.agree().is_empty());
    bed.stop();
}

/// lvm2's PV extent runs of `lv` (`seg_pe_ranges`, hidden LVs included), sorted.
fn pe_ranges(bed: &Bed, lv: &str) -> Vec<String> {
    let rows = bed.loops.report(
        &[
            "lvs",
            "-a",
            "--segments",
            &bed.vg,
            "-o",
            "lv_name,seg_pe_ranges",
        ],
        "seg",
    );
    let mut out: Vec<String> = rows
        .iter()
        .filter(|r| text(r, "lv_name") == lv)
        .flat_map(|r| {
            text(r, "seg_pe_ranges")
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

/// Bytes of the whole device that are not zero (page cache dropped first).
fn nonzero_bytes(dev: &Path) -> u64 {
    use std::io::Read;
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let mut f = std::fs::File::open(dev).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut count = 0;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return count;
        }
        count += buf[..n].iter().filter(|&&b| b != 0).count() as u64;
    }
}

/// How many 4 KiB blocks of `dev` hold a 4 KiB block of `pattern(seed, 0, len)`
/// (wherever a filesystem had put them).
fn pattern_blocks_on(dev: &Path, seed: u64, len: u64) -> usize {
    use std::io::Read;
    let blocks: std::collections::HashSet<Vec<u8>> = pattern(seed, 0, len as usize)
        .chunks(4096)
        .map(<[u8]>::to_vec)
        .collect();
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let mut f = std::fs::File::open(dev).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut found = 0;
    while f.read_exact(&mut buf).is_ok() {
        found += usize::from(blocks.contains(&buf));
    }
    found
}

fn wait_no_wipe_lv(bed: &Bed) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = bed
            .loops
            .report(&["lvs", "-a", &bed.vg, "-o", "lv_name"], "lv");
        if !rows
            .iter()
            .any(|r| text(r, "lv_name").starts_with("lvmd-wipe-"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "wipe LV still there:\n{}",
            bed.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The "zeroed" lines lvmd logged (size, what, seconds), for the report.
fn zeroed_lines(bed: &Bed) -> Vec<String> {
    bed.log_text()
        .lines()
        .filter(|l| l.contains("zeroed"))
        .map(String::from)
        .collect()
}

#[test]
fn a_new_volume_never_shows_a_removed_volumes_bytes() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-wipe", &[384, 384]);
    // 32 MiB and less inline, larger in the background: both paths below.
    bed.write_config("inline_wipe_limit = \"32MiB\"");
    bed.start(None);

    // A raw block volume (inline wipe) and a filesystem volume (background wipe), each
    // filled with a pattern through device-mapper.
    bed.json(&["lv", "create", "raw", "24MiB"]);
    bed.json(&["lv", "create", "fs", "96MiB", "--stripes", "2"]);
    let raw_pe = pe_ranges(&bed, "raw");
    let fs_pe = pe_ranges(&bed, "fs");
    let raw = PathBuf::from(
        bed.json(&["lv", "activate", "raw"])["device_path"]
            .as_str()
            .unwrap(),
    );
    write_pattern(&raw, 7, 0, 24 * MIB);
    assert_pattern(&raw, 7, 0, 24 * MIB);
    let target = bed.root.join("pods/w/fs");
    let t = target.to_str().unwrap();
    assert_eq!(bed.json(&["lv", "mount", "fs", t])["formatted"], true);
    std::fs::write(target.join("data"), pattern(9, 0, 60 * MIB as usize)).unwrap();
    bed.json(&["lv", "unmount", t, "--remove-target"]);
    let fs_dev = PathBuf::from(format!("/dev/{}/fs", bed.vg));
    // (The pattern has a zero byte in 256.)
    assert!(nonzero_bytes(&fs_dev) > 59 * MIB);

    assert_eq!(bed.json(&["lv", "remove", "raw"])["existed"], true);
    assert_eq!(bed.json(&["lv", "remove", "fs"])["existed"], true);
    assert!(bed.lvmd_names().is_empty());
    wait_no_wipe_lv(&bed);
    assert!(bed.agree().is_empty());

    // New volumes on exactly those extents (lvm2 says so): nothing but zeros.
    bed.json(&["lv", "create", "raw2", "24MiB"]);
    bed.json(&["lv", "create", "fs2", "96MiB", "--stripes", "2"]);
    assert_eq!(pe_ranges(&bed, "raw2"), raw_pe);
    assert_eq!(pe_ranges(&bed, "fs2"), fs_pe);
    // The raw volume, handed out raw: all zeros.
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "raw2"])["device_path"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(nonzero_bytes(&dev), 0, "raw2: old bytes readable");
    bed.json(&["lv", "deactivate", "raw2"]);
    // The new filesystem volume is staged first (a client's raw activation would hand it
    // out and end lvmd's right to format it): a fresh filesystem, and not one block of
    // the old file's pattern anywhere on the device.
    let target = bed.root.join("pods/w/fs2");
    let t = target.to_str().unwrap();
    assert_eq!(bed.json(&["lv", "mount", "fs2", t])["formatted"], true);
    assert!(!target.join("data").exists());
    bed.json(&["lv", "unmount", t, "--remove-target"]);
    let fs2_dev = PathBuf::from(format!("/dev/{}/fs2", bed.vg));
    assert_eq!(
        pattern_blocks_on(&fs2_dev, 9, 60 * MIB),
        0,
        "fs2: blocks of the old file readable"
    );
    for lv in ["raw2", "fs2"] {
        bed.json(&["lv", "remove", lv]);
    }
    wait_no_wipe_lv(&bed);

    // The csi-sanity sequence of issue 10: grow a filesystem volume, delete it, create
    // a smaller one on the same extents: no trace of the old filesystem, formatted
    // fresh, mounted at its own size.
    bed.json(&["lv", "create", "g", "64MiB"]);
    let g_pe = pe_ranges(&bed, "g");
    let target = bed.root.join("pods/w/g");
    let t = target.to_str().unwrap();
    assert_eq!(bed.json(&["lv", "mount", "g", t])["formatted"], true);
    bed.json(&["lv", "expand", "g", "128MiB", "--path", t]);
    std::fs::write(target.join("old"), b"previous tenant").unwrap();
    bed.json(&["lv", "unmount", t, "--remove-target"]);
    bed.json(&["lv", "remove", "g"]);
    wait_no_wipe_lv(&bed);
    bed.json(&["lv", "create", "s", "64MiB"]);
    assert!(pe_ranges(&bed, "s")[0].starts_with(g_pe[0].split('-').next().unwrap()));
    // Staged before anything activates it raw (that would end lvmd's right to format
    // it): formatted, which lvmd does only when the probe finds nothing on a fresh LV.
    let target = bed.root.join("pods/w/s");
    let t = target.to_str().unwrap();
    assert_eq!(bed.json(&["lv", "mount", "s", t])["formatted"], true);
    assert!(!target.join("old").exists());
    let df = run_ok("df", &["-B1", "--output=size", t]);
    let size: u64 = df.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(size <= 64 * MIB && size > 48 * MIB, "{size}");
    bed.json(&["lv", "unmount", t, "--remove-target"]);
    // And the old file's bytes are nowhere on the device.
    let dev = PathBuf::from(format!("/dev/{}/s", bed.vg));
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let bytes = std::fs::read(&dev).unwrap();
    assert!(
        !bytes.windows(15).any(|w| w == b"previous tenant"),
        "the previous tenant's file is readable on the new volume"
    );
    bed.json(&["lv", "remove", "s"]);

    // Cost on the VM's loop devices: a 256 MiB volume full of data, zeroed in the
    // background (logged with its time).
    bed.json(&["lv", "create", "m", "256MiB"]);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
        let chunk = vec![0xa5u8; MIB as usize];
        for i in 0..256 {
            f.write_all_at(&chunk, i * MIB).unwrap();
        }
        f.sync_all().unwrap();
    }
    bed.json(&["lv", "deactivate", "m"]);
    let started = Instant::now();
    bed.json(&["lv", "remove", "m"]);
    let answered = started.elapsed();
    wait_no_wipe_lv(&bed);
    eprintln!(
        "VM: removal of 256 MiB answered in {answered:?}; zeroing logged:\n{}",
        zeroed_lines(&bed).join("\n")
    );
    assert!(bed.agree().is_empty());
    assert!(bed.dm_devices().is_empty(), "{:?}", bed.dm_devices());
    bed.stop();

    // kill -9 after the first 64 MiB chunk of a background wipe: the wipe LV holds the
    // extents across the crash (lvm2 sees it, vgck clean); the restarted daemon
    // finishes it; the next volume there reads zeros.
    bed.start(None);
    bed.json(&["lv", "create", "k", "160MiB"]);
    let k_pe = pe_ranges(&bed, "k");
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "k"])["device_path"]
            .as_str()
            .unwrap(),
    );
    write_pattern(&dev, 5, 0, 160 * MIB);
    bed.json(&["lv", "deactivate", "k"]);
    bed.stop();
    bed.start(Some("wipe-chunk"));
    // The answer may or may not get out before the wipe thread dies.
    let _ = bed.ctl(&["lv", "remove", "k"]);
    bed.expect_killed("wipe-chunk");
    let wipe: Vec<String> = bed
        .loops
        .report(&["lvs", "-a", &bed.vg, "-o", "lv_name"], "lv")
        .iter()
        .map(|r| text(r, "lv_name"))
        .filter(|n| n.starts_with("lvmd-wipe-"))
        .collect();
    assert_eq!(wipe.len(), 1, "{wipe:?}");
    assert_eq!(pe_ranges(&bed, &wipe[0]), k_pe);
    bed.vgck();
    bed.start(None);
    wait_no_wipe_lv(&bed);
    bed.json(&["lv", "create", "k2", "160MiB"]);
    assert_eq!(pe_ranges(&bed, "k2"), k_pe);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "k2"])["device_path"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(nonzero_bytes(&dev), 0);
    bed.json(&["lv", "remove", "k2"]);
    assert!(bed.agree().is_empty());
    assert!(bed.dm_devices().is_empty(), "{:?}", bed.dm_devices());
    bed.stop();
}

/// The real daemon's MountVolume, BindMount and Unmount as [`common::race::Ops`].
struct DaemonOps<'a> {
    bed: &'a Bed,
    rt: tokio::runtime::Runtime,
}

impl DaemonOps<'_> {
    fn node<T>(
        &self,
        call: impl AsyncFnOnce(
            pb::node_service_client::NodeServiceClient<tonic::transport::Channel>,
        ) -> Result<T, tonic::Status>,
    ) -> Result<(), String> {
        self.rt.block_on(async {
            let ch = connect(&self.bed.socket).await.unwrap();
            call(pb::node_service_client::NodeServiceClient::new(ch))
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    }
}

impl common::race::Ops for DaemonOps<'_> {
    fn mount_fs(&self, target: &Path) -> Result<(), String> {
        let target_path = target.display().to_string();
        self.node(async move |mut n| {
            n.mount_volume(pb::MountVolumeRequest {
                volume: volume("fs"),
                target_path,
                fs_type: "ext4".into(),
                mount_options: vec![],
                read_only: false,
                passphrase: Vec::new(),
            })
            .await
        })
    }
    fn bind(&self, source: &Path, target: &Path) -> Result<(), String> {
        let (source_path, target_path) =
            (source.display().to_string(), target.display().to_string());
        self.node(async move |mut n| {
            n.bind_mount(pb::BindMountRequest {
                source_path,
                target_path,
                read_only: false,
            })
            .await
        })
    }
    fn unmount_remove(&self, target: &Path) -> Result<(), String> {
        let target_path = target.display().to_string();
        self.node(async move |mut n| {
            n.unmount(pb::UnmountRequest {
                target_path,
                remove_target: true,
            })
            .await
        })
    }
}

/// Issue 15's race against the real daemon: a thread exchanges a directory below the
/// mount root with a symlink to a directory outside it while MountVolume (a real LV,
/// ext4), BindMount (swapped source, swapped target) and Unmount with remove_target
/// run, 200 rounds each: nothing mounted, bound, unmounted or removed outside the root.
#[test]
fn path_swaps_never_take_a_mount_out_of_the_root() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-race", &[256]);
    std::fs::create_dir_all(&bed.root).unwrap();
    bed.start(None);
    bed.json(&["lv", "create", "fs", "64MiB"]);
    let ops = DaemonOps {
        bed: &bed,
        rt: rt(),
    };
    // Formatted once, outside the race.
    let warm = bed.root.join("warm");
    common::race::Ops::mount_fs(&ops, &warm).unwrap();
    common::race::Ops::unmount_remove(&ops, &warm).unwrap();
    let started = Instant::now();
    let report = common::race::race(&ops, &bed.root, 200);
    eprintln!(
        "{} exchanges in {:.1} s",
        report.swaps,
        started.elapsed().as_secs_f64()
    );
    let (done, refused) = report.totals();
    assert!(refused > 0 && done > 0, "done {done}, refused {refused}");
    drop(ops);
    let log = bed.log_text();
    assert!(!log.contains("cannot undo"), "{log}");
    bed.stop();
}

/// The removed volume's pattern seed: its bits reach those `pattern` keeps (29 and up),
/// so its blocks differ from the mirror's own (small seeds give the same bytes).
const JUNK: u64 = 0x5a5a_5a5a_5a5a_5a5a;

/// lvm2's `sync_percent` of a raid LV, e.g. "100.00".
fn lvm2_sync_percent(bed: &Bed, lv: &str) -> String {
    bed.lvm2(&[
        "lvs",
        "--noheadings",
        "-o",
        "sync_percent",
        &format!("{}/{lv}", bed.vg),
    ])
    .trim()
    .to_owned()
}

fn wait_in_sync(bed: &Bed, lv: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let p = lvm2_sync_percent(bed, lv);
        if p == "100.00" {
            return;
        }
        assert!(Instant::now() < deadline, "{lv} not in sync: {p}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The PV device of a hidden sub-LV's first segment, from lvm2's `seg_pe_ranges`.
fn pv_of(bed: &Bed, sub: &str) -> String {
    let ranges = pe_ranges(bed, &format!("[{sub}]"));
    ranges[0].split(':').next().unwrap().to_owned()
}

/// A mirror grows online, a writer running: its data stays, lvm2 agrees (size, every
/// leg, the dm table, in sync again), and extents that held another volume's bytes
/// (lvm2's lvremove, which zeroes nothing, right after each leg) never read back
/// through the mirror or either leg: lvmd zeroes the grown part of every leg before
/// the commit, and dm-raid's resync of the grown region copies zeros.
#[test]
fn a_mirror_grows_online_with_data_intact_and_no_old_bytes() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-mgrow", &[96, 96]);
    bed.start(None);
    bed.json(&["lv", "create", "m", "16MiB", "--mirrors", "1"]);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    wait_in_sync(&bed, "m");
    write_pattern(&dev, 5, 0, 16 * MIB);
    // Another volume's bytes right after each leg, left there by lvm2's lvremove.
    for leg in 0..2 {
        let pv = pv_of(&bed, &format!("m_rimage_{leg}"));
        let junk = format!("junk{leg}");
        bed.lvm2(&[
            "lvcreate", "-y", "-Zn", "-Wn", "-L", "16M", "-n", &junk, &bed.vg, &pv,
        ]);
        write_pattern(
            &PathBuf::from(format!("/dev/{}/{junk}", bed.vg)),
            JUNK,
            0,
            16 * MIB,
        );
        bed.lvm2(&["lvremove", "-y", &format!("{}/{junk}", bed.vg)]);
    }
    let image_pvs: Vec<String> = (0..2)
        .map(|l| pv_of(&bed, &format!("m_rimage_{l}")))
        .collect();

    // The removed volume's bytes are there on each PV, all 16 MiB of them.
    for pv in &image_pvs {
        assert_eq!(
            pattern_blocks_on(Path::new(pv), JUNK, 16 * MIB),
            4096,
            "{pv}"
        );
    }

    // Grown while a writer rewrites the first half.
    let writer = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            for _ in 0..4 {
                write_pattern(&dev, 5, 0, 16 * MIB);
            }
        })
    };
    let grown = bed.json(&["lv", "resize", "m", "32MiB"]);
    writer.join().unwrap();
    assert_eq!(grown["size"].as_u64(), Some(32 * MIB), "{grown}");
    assert_eq!(bed.lvm2_size("m"), Some(32 * MIB));
    assert_eq!(bed.dm_size("m"), 32 * MIB);
    let table = bed.dm_table("m").unwrap();
    assert!(table.starts_with("0 65536 raid raid1 "), "{table}");
    for (l, pv) in image_pvs.iter().enumerate() {
        let leg = bed.dm_table(&format!("m_rimage_{l}")).unwrap();
        let sectors: u64 = leg
            .lines()
            .map(|line| {
                line.split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(sectors, 65536, "leg {l}: {leg}");
        // Each leg stayed on its PV.
        assert_eq!(&pv_of(&bed, &format!("m_rimage_{l}")), pv);
    }
    assert_pattern(&dev, 5, 0, 16 * MIB);
    // The grow took exactly the removed volume's extents, and zeroed them on each PV.
    for pv in &image_pvs {
        assert_eq!(pattern_blocks_on(Path::new(pv), JUNK, 16 * MIB), 0, "{pv}");
    }
    eprintln!("{}", zeroed_lines(&bed).join("\n"));
    // The grown half: zeros through the mirror and through each leg, before and after
    // the resync; not one block of the removed volume's bytes.
    let legs: Vec<PathBuf> = (0..2)
        .map(|l| Path::new("/dev/mapper").join(bed.dm_name(&format!("m_rimage_{l}"))))
        .collect();
    for d in std::iter::once(&dev).chain(&legs) {
        assert_eq!(
            pattern_blocks_on(d, JUNK, 16 * MIB),
            0,
            "{}: old bytes",
            d.display()
        );
    }
    let tail_zero = |d: &Path| {
        use std::os::unix::fs::FileExt;
        std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
        let mut buf = vec![0u8; 16 * MIB as usize];
        std::fs::File::open(d)
            .unwrap()
            .read_exact_at(&mut buf, 16 * MIB)
            .unwrap();
        buf.iter().all(|&b| b == 0)
    };
    assert!(tail_zero(&dev), "grown part of the mirror is not zeros");
    wait_in_sync(&bed, "m");
    for d in std::iter::once(&dev).chain(&legs) {
        assert!(
            tail_zero(d),
            "{}: grown part not zeros after the resync",
            d.display()
        );
    }
    // lvm2 reports the grown mirror with its legs and sync.
    let lvs = bed.lvm2(&["lvs", "-a", "-o+sync_percent,devices", &bed.vg]);
    assert!(
        lvs.contains("m_rimage_0(0)") && lvs.contains("100.00"),
        "{lvs}"
    );
    eprintln!("grown mirror, as lvm2 lists it:\n{lvs}\ntable: {table}");
    bed.agree();

    // The grown half takes data; after deactivating and activating again (lvmd's
    // tables from the metadata) both halves read back, and through lvm2's too.
    write_pattern(&dev, 6, 16 * MIB, 16 * MIB);
    bed.json(&["lv", "deactivate", "m"]);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    assert_pattern(&dev, 5, 0, 16 * MIB);
    assert_pattern(&dev, 6, 16 * MIB, 16 * MIB);
    bed.json(&["lv", "deactivate", "m"]);
    let target = format!("{}/m", bed.vg);
    bed.lvm2(&["lvchange", "-ay", &target]);
    let theirs = PathBuf::from(format!("/dev/{target}"));
    assert_pattern(&theirs, 5, 0, 16 * MIB);
    assert_pattern(&theirs, 6, 16 * MIB, 16 * MIB);
    bed.lvm2(&["lvchange", "-an", &target]);
    // Shrinking is refused; removing takes every leg.
    let err = bed.refused(&["lv", "resize", "m", "8MiB"], "FailedPrecondition");
    assert!(err.contains("does not shrink"), "{err}");
    assert_eq!(bed.json(&["lv", "remove", "m"])["existed"], true);
    wait_no_wipe_lv(&bed);
    assert!(bed.agree().is_empty());
    bed.stop();
}

/// A mirror's leg PV gone (its loop device detached while lvmd was down): after the
/// restart the mirror still activates, degraded as lvm2's `activation_mode = degraded`
/// (the gone leg's sub-LVs error devices), its data reads back and takes writes, and
/// lvmd says so: health degraded naming the leg and the PV, the kernel's leg `D`, the
/// sync figures, CSI's `VOLUME_CONDITION` through a real lvmd-csi; lvm2 calls it
/// partial. A linear volume on that PV is refused. Then repair, twice (a second leg PV
/// gone after the first repair), each time killed with SIGKILL at one of the repair's
/// crash points (`committed`: the legs moved in the metadata, no table reloaded;
/// `reloaded`: the rebuild running, its flags still in the metadata): after the
/// restart the same request finishes it, the mirror rebuilds onto a PV no leg used,
/// healthy everywhere, data intact, lvm2 agrees. Last, a third leg PV gone with the
/// class set to `auto_repair = true`: the daemon repairs it without a request.
#[test]
fn a_mirror_with_a_leg_pv_gone_activates_degraded_and_says_so() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-degr", &[40, 40, 40, 40, 40]);
    bed.start(None);
    bed.json(&["lv", "create", "m", "8MiB", "--mirrors", "1"]);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    wait_in_sync(&bed, "m");
    write_pattern(&dev, 21, 0, 8 * MIB);
    let gone = pv_of(&bed, "m_rimage_1");
    let kept = pv_of(&bed, "m_rimage_0");
    assert_ne!(gone, kept);
    assert_eq!(csi_condition(&bed, "m"), None, "healthy mirror abnormal");
    bed.json(&["lv", "create", "lin", "4MiB"]);
    let lin_pv = pv_of_lv(&bed, "lin");
    bed.json(&["lv", "deactivate", "m"]);
    bed.stop();
    run_ok("losetup", &["-d", &gone]);

    bed.start(None);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    let table = bed.dm_table("m_rimage_1").unwrap();
    assert!(table.contains(" error"), "{table}");
    assert_pattern(&dev, 21, 0, 8 * MIB);
    write_pattern(&dev, 22, 0, 2 * MIB);
    assert_pattern(&dev, 22, 0, 2 * MIB);
    assert_pattern(&dev, 21, 2 * MIB, 6 * MIB);
    let m = bed.listed("m");
    assert_eq!(m["health"], "degraded", "{m}");
    let why = m["health_message"].as_str().unwrap();
    assert!(
        why.contains("m_rimage_1") && !why.contains("m_rimage_0") && why.contains("missing PV"),
        "{why}"
    );
    assert_eq!(m["mirror_sync"]["leg_health"], "AD", "{m}");
    assert!(m["mirror_sync"]["sync_percent"].as_f64().is_some(), "{m}");
    let out = bed.ctl(&["lv", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("SYNC") && table.contains(" AD"), "{table}");
    // What kubelet hears: abnormal, naming the gone leg and not the other.
    let condition = csi_condition(&bed, "m").expect("degraded mirror reported normal");
    assert!(
        condition.contains("m_rimage_1")
            && !condition.contains("m_rimage_0")
            && condition.contains("legs AD"),
        "{condition}"
    );
    // lvm2 agrees: the mirror is partial, its gone leg on an unknown device.
    let lvs = bed.lvm2(&[
        "lvs",
        "-a",
        "-o",
        "lv_name,lv_health_status,sync_percent,devices",
        &bed.vg,
    ]);
    eprintln!("degraded, as lvm2 lists it:\n{lvs}");
    assert!(
        lvs.lines()
            .any(|l| l.contains(" m ") && l.contains("partial")),
        "{lvs}"
    );
    // A linear volume on the gone PV is still refused, naming it.
    if lin_pv == gone {
        let err = bed.refused(&["lv", "activate", "lin"], "");
        assert!(err.contains("missing"), "{err}");
    }

    // Repair, killed once the legs moved in the metadata, before any table reload:
    // the restart's reconciliation loads the mirror's tables from the metadata (the
    // rebuild starts), and the same request drops the rebuild flags.
    let mut used = vec![gone.clone(), kept.clone()];
    let first = repair_through_a_crash(&mut bed, "committed", &used);
    assert!(
        bed.log_text().contains("reconciliation"),
        "no table reload logged after a crash between the repair's commit and reload"
    );
    assert_pattern(&dev, 22, 0, 2 * MIB);
    assert_pattern(&dev, 21, 2 * MIB, 6 * MIB);
    assert_eq!(csi_condition(&bed, "m"), None, "repaired mirror abnormal");
    used.push(first.clone());

    // The new leg's PV gone too; repair killed after the reload, the rebuild running
    // and its flags still in the metadata.
    bed.json(&["lv", "deactivate", "m"]);
    bed.stop();
    run_ok("losetup", &["-d", &first]);
    bed.start(None);
    bed.json(&["lv", "activate", "m"]);
    assert_eq!(bed.listed("m")["health"], "degraded");
    let second = repair_through_a_crash(&mut bed, "reloaded", &used);
    assert_pattern(&dev, 22, 0, 2 * MIB);
    assert_pattern(&dev, 21, 2 * MIB, 6 * MIB);
    // Again: healthy, nothing to do.
    let again = bed.json(&["lv", "repair", "m"]);
    assert_eq!(again["health"], "ok", "{again}");
    used.push(second.clone());

    // The class set to `auto_repair = true`, and that leg's PV gone too: no request,
    // the daemon's next round (every 10 s) repairs it onto the last PV, and logs it.
    bed.json(&["lv", "deactivate", "m"]);
    bed.stop();
    run_ok("losetup", &["-d", &second]);
    bed.write_class_config("", "auto_repair = true\n");
    bed.start(None);
    bed.json(&["lv", "activate", "m"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = bed.listed("m");
        let s = &m["mirror_sync"];
        if m["health"] == "ok"
            && s["leg_health"] == "AA"
            && s["sync_percent"].as_f64() == Some(100.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "not repaired by itself: {m}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = bed.log_text();
    assert!(
        log.contains("automatic repair: degraded mirror repaired"),
        "{log}"
    );
    let third = pv_of(&bed, "m_rimage_1");
    assert!(!used.contains(&third), "leg 1 on {third}, one of {used:?}");
    assert_pattern(&dev, 22, 0, 2 * MIB);
    assert_pattern(&dev, 21, 2 * MIB, 6 * MIB);
    bed.json(&["lv", "deactivate", "m"]);
    bed.stop();
}

/// `lvmd-ctl lv repair m` with lvmd (running, stopped here) started again set to die
/// at `point`, then the same request
/// after the restart; waits for the rebuild to end: every leg alive, in sync, health
/// ok, no leg on a PV in `used`, the new leg holding the mirror's bytes, lvm2 calling
/// nothing partial. Returns the new leg's PV.
fn repair_through_a_crash(bed: &mut Bed, point: &str, used: &[String]) -> String {
    bed.stop();
    crash_at(bed, point, &["lv", "repair", "m"]);
    let new = pv_of(bed, "m_rimage_1");
    assert!(
        !used.contains(&new),
        "{point}: leg 1 on {new}, one of {used:?}"
    );
    assert_eq!(pv_of(bed, "m_rmeta_1"), new, "{point}");
    let repaired = bed.json(&["lv", "repair", "m"]);
    eprintln!("repair after the crash at {point} answered: {repaired}");
    assert_eq!(pv_of(bed, "m_rimage_1"), new, "{point}: moved again");
    wait_rebuilt(bed, point);
    // The new leg holds the copy itself.
    let leg = Path::new("/dev/mapper").join(bed.dm_name("m_rimage_1"));
    assert_pattern(&leg, 22, 0, 2 * MIB);
    assert_pattern(&leg, 21, 2 * MIB, 6 * MIB);
    let lvs = bed.lvm2(&[
        "lvs",
        "-a",
        "-o",
        "lv_name,lv_attr,lv_health_status,sync_percent,devices",
        &bed.vg,
    ]);
    eprintln!("repaired after the crash at {point}, as lvm2 lists it:\n{lvs}");
    for l in lvs
        .lines()
        .filter(|l| l.contains(" m ") || l.contains("[m_"))
    {
        assert!(!l.contains("partial") && !l.contains("unknown"), "{lvs}");
    }
    assert!(
        lvs.lines()
            .any(|l| l.contains(" m ") && l.contains("100.00")),
        "{lvs}"
    );
    new
}

/// Waits until mirror `m` has both legs in sync (`AA`, 100%) and is healthy again.
fn wait_rebuilt(bed: &Bed, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = bed.listed("m");
        let s = &m["mirror_sync"];
        if s["leg_health"] == "AA" && s["sync_percent"].as_f64() == Some(100.0) {
            assert_eq!(m["health"], "ok", "{what}: {m}");
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not rebuilt: {m}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The `VOLUME_CONDITION` kubelet would get for `lv` (of the bed's default class):
/// a real lvmd-csi beside the bed's lvmd, the volume staged and published as a raw
/// block device under the kubelet directory, then NodeGetVolumeStats on it, then
/// unpublished and unstaged. `None` when normal, else the condition's message.
fn csi_condition(bed: &Bed, lv: &str) -> Option<String> {
    use lvmd::csi::pb::{
        node_client::NodeClient, volume_capability::access_mode::Mode,
        volume_capability::AccessMode, volume_capability::AccessType,
        volume_capability::BlockVolume, NodeGetVolumeStatsRequest, NodePublishVolumeRequest,
        NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest,
        VolumeCapability,
    };
    let dir = bed.loops.dir.path();
    let sock = dir.join("csi.sock");
    let log = dir.join("lvmd-csi.log");
    let _ = std::fs::remove_file(&sock);
    let mut plugin = Command::new(env!("CARGO_BIN_EXE_lvmd-csi"))
        .arg(format!("--csi-endpoint=unix://{}", sock.display()))
        .arg("--lvmd-socket")
        .arg(&bed.socket)
        .args(["--node-id", "node-a", "--metrics-address="])
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .expect("start lvmd-csi");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if let Some(status) = plugin.try_wait().unwrap() {
            panic!(
                "lvmd-csi exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "lvmd-csi did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = format!("node-a#disks#{lv}");
    let staging = bed.root.join("plugins/csi/staging").display().to_string();
    let target = bed.root.join("pods/p/volumeDevices/v");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let target = target.display().to_string();
    let cap = VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    };
    let condition = rt().block_on(async {
        let mut node = NodeClient::new(connect(&sock).await.unwrap());
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.clone(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        node.node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.clone(),
            target_path: target.clone(),
            volume_capability: Some(cap),
            ..Default::default()
        })
        .await
        .unwrap();
        let stats = node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: id.clone(),
                volume_path: target.clone(),
                staging_target_path: staging.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: target.clone(),
        })
        .await
        .unwrap();
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.clone(),
        })
        .await
        .unwrap();
        stats.volume_condition.expect("a volume condition")
    });
    let _ = plugin.kill();
    let _ = plugin.wait();
    condition.abnormal.then_some(condition.message)
}

/// The PV device of a visible LV's first segment.
fn pv_of_lv(bed: &Bed, lv: &str) -> String {
    pe_ranges(bed, lv)[0].split(':').next().unwrap().to_owned()
}

/// lvm2's rows of the thin pool and its volumes: name -> (segtype, transaction id,
/// thin id, size).
fn thin_rows(bed: &Bed) -> std::collections::BTreeMap<String, (String, String, String, u64)> {
    bed.loops
        .report(
            &[
                "lvs",
                "-a",
                &bed.vg,
                "-o",
                "lv_name,segtype,transaction_id,thin_id,lv_size",
            ],
            "lv",
        )
        .iter()
        .map(|r| {
            (
                text(r, "lv_name"),
                (
                    text(r, "segtype"),
                    text(r, "transaction_id"),
                    text(r, "thin_id"),
                    num(r, "lv_size"),
                ),
            )
        })
        .collect()
}

/// A device class with a thin pool, through the real daemon: the pool made at start as
/// lvm2 makes one, thin volumes created (the default layout of the class), written,
/// removed, a new one reading zeroes where a removed one wrote; one grown online; the
/// overprovision ratio refusing a create and a grow; kill -9 between the commit and the message (create) and between the
/// message and the record's commit (remove), then restart: the kernel's transaction id
/// is the metadata's, `thin_check` is clean and the pool holds exactly the thin ids of
/// the LVs lvm2 lists.
#[test]
fn thin_volumes_through_the_daemon_stay_in_step_with_the_kernel_and_lvm2() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-thin", &[128]);
    bed.write_class_config(
        "",
        "thin_pool = { name = \"pool\", size = \"64MiB\", overprovision_ratio = 2.0 }\n",
    );
    // Killed at its first start right after the pool's commit, before its _tmeta was
    // zeroed, with old bytes there: the next start zeroes it, so dm-thin formats it
    // (the pool activates below, thin_check is clean at the end).
    bed.spawn(Some("pool-committed"));
    bed.expect_killed("pool-committed");
    // What another tenant could have left there: dm-thin would take it for a pool.
    let tmeta = pe_ranges(&bed, "[pool_tmeta]");
    let (dev, range) = tmeta[0].split_once(':').unwrap();
    let (first, last) = range.split_once('-').unwrap();
    let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
    let pe_start = num(
        &bed.loops
            .report(&["pvs", "-o", "pv_name,pe_start", dev], "pv")[0],
        "pe_start",
    );
    let extent = 4 * MIB;
    write_pattern(
        Path::new(dev),
        9,
        pe_start + first * extent,
        (last - first + 1) * extent,
    );
    bed.start(None);
    let rows = thin_rows(&bed);
    let pool = &rows["pool"];
    assert_eq!(
        (pool.0.as_str(), pool.1.as_str(), pool.3),
        ("thin-pool", "0", 64 * MIB),
        "{rows:?}"
    );
    for hidden in ["[pool_tdata]", "[pool_tmeta]", "[lvol0_pmspare]"] {
        assert!(rows.contains_key(hidden), "{hidden}: {rows:?}");
    }

    let a = bed.json(&["lv", "create", "a", "32MiB"]);
    assert_eq!(
        (a["layout"].as_str(), a["size"].as_u64()),
        (Some("thin"), Some(32 * MIB)),
        "{a}"
    );
    bed.json(&["lv", "create", "b", "32MiB"]);
    let dev = |v: Value| PathBuf::from(v["device_path"].as_str().unwrap());
    let dev_a = dev(bed.json(&["lv", "activate", "a"]));
    let dev_b = dev(bed.json(&["lv", "activate", "b"]));
    write_pattern(&dev_a, 1, 0, 4 * MIB);
    write_pattern(&dev_b, 2, 0, 4 * MIB);
    assert_eq!(common::kernel_transaction(&bed.vg, "pool"), 2);
    let rows = thin_rows(&bed);
    assert_eq!(
        (
            rows["pool"].1.as_str(),
            rows["a"].2.as_str(),
            rows["b"].2.as_str()
        ),
        ("2", "1", "2")
    );

    // A's blocks go back to the pool; c is provisioned from them and reads zeroes.
    bed.json(&["lv", "remove", "a"]);
    bed.json(&["lv", "create", "c", "32MiB"]);
    let dev_c = dev(bed.json(&["lv", "activate", "c"]));
    write_pattern(&dev_c, 3, 8 * MIB, 64 << 10);
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let mut head = vec![0u8; (4 * MIB) as usize];
    {
        use std::os::unix::fs::FileExt;
        std::fs::File::open(&dev_c)
            .unwrap()
            .read_exact_at(&mut head, 0)
            .unwrap();
    }
    assert!(
        head.iter().all(|b| *b == 0),
        "a new thin volume shows a removed one's bytes"
    );
    assert_pattern(&dev_b, 2, 0, 4 * MIB);

    // 64 MiB provisioned of 2 x 64 MiB: 80 MiB more is refused, naming the numbers.
    let err = bed.refused(&["lv", "create", "big", "80MiB"], "ResourceExhausted");
    assert!(err.contains("overprovision ratio 2.00"), "{err}");
    // Grown online (the table reloaded, the data kept), not past the ratio.
    let grown = bed.json(&["lv", "resize", "b", "48MiB"]);
    assert_eq!(grown["size"].as_u64(), Some(48 * MIB), "{grown}");
    assert_eq!(bed.dm_size("b"), 48 * MIB);
    assert_pattern(&dev_b, 2, 0, 4 * MIB);
    let err = bed.refused(&["lv", "resize", "b", "120MiB"], "ResourceExhausted");
    assert!(err.contains("growing b"), "{err}");
    let cap = bed.json(&["capacity"]);
    let t = &cap[0]["thin_pool"];
    assert_eq!(
        (t["provisioned"].as_u64(), t["active"].as_bool()),
        (Some(80 * MIB), Some(true)),
        "{cap}"
    );
    assert!(t["data_used"].as_u64().unwrap() >= 4 * MIB, "{cap}");
    assert_eq!(cap[0]["largest"].as_u64(), Some(48 * MIB), "{cap}");

    // Killed after the create's commit, before its message: the next start sends it.
    bed.stop();
    crash_at(&mut bed, "thin-committed", &["lv", "create", "d", "16MiB"]);
    assert_eq!(common::kernel_transaction(&bed.vg, "pool"), 5);
    let d = bed.json(&["lv", "create", "d", "16MiB"]);
    assert_eq!(d["size"].as_u64(), Some(16 * MIB), "{d}");
    // Killed after the removal's message, before the record's commit.
    bed.stop();
    crash_at(&mut bed, "thin-sent", &["lv", "remove", "c"]);
    assert_eq!(common::kernel_transaction(&bed.vg, "pool"), 6);
    bed.json(&["lv", "remove", "c"]);
    let rows = thin_rows(&bed);
    assert_eq!(rows["pool"].1, "6", "{rows:?}");
    assert_eq!(
        (rows["b"].2.as_str(), rows["d"].2.as_str()),
        ("2", "4"),
        "{rows:?}"
    );
    assert!(
        !rows.contains_key("a") && !rows.contains_key("c"),
        "{rows:?}"
    );
    bed.agree();
    assert_pattern(&dev_b, 2, 0, 4 * MIB);

    // Snapshots (lvmd.fresh-free LVs lvm2 lists, not volumes: `agree` is done above).
    // d written, snapshotted while active (suspended around create_snap), overwritten:
    // the snapshot holds what was written before it, as lvm2 reads it too (it
    // activates lvmd's snapshot, `-K` past its activation skip).
    let started = Instant::now();
    let dev_d = dev(bed.json(&["lv", "activate", "d"]));
    write_pattern(&dev_d, 4, 0, MIB);
    let s = bed.json(&["snapshot", "create", "s", "--of", "d"]);
    assert_eq!(
        (s["source_volume"].as_str(), s["read_only"].as_bool()),
        (Some("d"), Some(true)),
        "{s}"
    );
    write_pattern(&dev_d, 5, 0, MIB);
    bed.lvm2(&["lvchange", "-ay", "-K", &format!("{}/s", bed.vg)]);
    assert_pattern(
        &PathBuf::from(format!("/dev/mapper/{}", bed.dm_name("s"))),
        4,
        0,
        MIB,
    );
    bed.lvm2(&["lvchange", "-an", &format!("{}/s", bed.vg)]);
    // Restored into a larger volume; cloned from d, the clone diverging.
    let r = bed.json(&["lv", "create", "r", "32MiB", "--from", "s"]);
    assert_eq!(r["size"].as_u64(), Some(32 * MIB), "{r}");
    let dev_r = dev(bed.json(&["lv", "activate", "r"]));
    assert_eq!(bed.dm_size("r"), 32 * MIB);
    assert_pattern(&dev_r, 4, 0, MIB);
    bed.json(&["lv", "create", "k", "0", "--from", "d"]);
    let dev_k = dev(bed.json(&["lv", "activate", "k"]));
    assert_pattern(&dev_k, 5, 0, MIB);
    write_pattern(&dev_k, 6, 0, 64 << 10);
    assert_pattern(&dev_d, 5, 0, MIB);
    bed.json(&["lv", "remove", "k"]);
    // Killed after a snapshot's commit, before its message (the origin active): the
    // next start sends it (suspending the origin), the retry finds it made.
    bed.stop();
    crash_at(
        &mut bed,
        "snap-committed",
        &["snapshot", "create", "s2", "--of", "d"],
    );
    assert_eq!(common::kernel_transaction(&bed.vg, "pool"), 11);
    let s2 = bed.json(&["snapshot", "create", "s2", "--of", "d"]);
    assert_eq!(s2["name"].as_str(), Some("s2"), "{s2}");
    assert_pattern(&dev_d, 5, 0, MIB);
    // lvm2 lists them as thin snapshots with activation skip; the origin removed,
    // they stay, without one; one snapshot deleted.
    let origins = |bed: &Bed| -> Vec<(String, String, String)> {
        bed.loops
            .report(
                &[
                    "lvs",
                    &bed.vg,
                    "-o",
                    "lv_name,origin,lv_attr",
                    "-S",
                    "lv_name=~^s",
                ],
                "lv",
            )
            .iter()
            .map(|r| (text(r, "lv_name"), text(r, "origin"), text(r, "lv_attr")))
            .collect()
    };
    let o = origins(&bed);
    assert_eq!(o.len(), 2, "{o:?}");
    assert!(
        o.iter()
            .all(|(_, of, attr)| of == "d" && attr.starts_with("Vri") && attr.ends_with('k')),
        "{o:?}"
    );
    bed.json(&["lv", "remove", "d"]);
    assert!(origins(&bed).iter().all(|(_, of, _)| of.is_empty()));
    assert_eq!(
        bed.json(&["snapshot", "delete", "s2"])["existed"].as_bool(),
        Some(true)
    );
    assert_pattern(&dev_r, 4, 0, MIB);
    eprintln!("snapshot steps: {:.1}s", started.elapsed().as_secs_f64());

    // The pool inactive (its last user gone): its metadata checks clean and holds
    // exactly the ids of b, snapshot s and r.
    bed.json(&["lv", "deactivate", "b"]);
    bed.json(&["lv", "deactivate", "r"]);
    bed.stop();
    let ids = common::thin_ids_on_disk(&|a: &[&str]| bed.lvm2(a), &bed.vg, "pool");
    assert_eq!(ids, vec![2, 5, 6]);
}

/// The pool target's sizes as dm-thin counts them: (metadata blocks, data blocks).
fn pool_totals(vg: &str) -> (u64, u64) {
    let dev = format!("{}-pool-tpool", vg.replace('-', "--"));
    let status = run_ok("dmsetup", &["status", &dev]);
    let total = |field: &str| field.split_once('/').unwrap().1.parse::<u64>().unwrap();
    let fields: Vec<&str> = status.split_whitespace().collect();
    (total(fields[4]), total(fields[5]))
}

/// A device class's thin pool grown online through the daemon while one of its volumes
/// is written: dm-thin takes the new data and metadata sizes, the bytes written before
/// and during stay, lvm2 lists the new sizes. Killed after a grow's commit, before the
/// reload: the next start brings the active pool's devices in line (otherwise every
/// later thin operation would meet a pool whose tables differ from its metadata), and
/// lvm2 grows it further. With an autoextend threshold, written past it, the pool grows
/// by itself. `thin_check` is clean at the end.
#[test]
fn a_thin_pool_grows_online_under_a_writer_and_through_a_kill() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-tgrow", &[128]);
    bed.write_class_config(
        "",
        "thin_pool = { name = \"pool\", size = \"16MiB\", overprovision_ratio = 8.0 }\n",
    );
    bed.start(None);
    bed.json(&["lv", "create", "a", "64MiB"]);
    let dev_a = PathBuf::from(
        bed.json(&["lv", "activate", "a"])["device_path"]
            .as_str()
            .unwrap(),
    );
    write_pattern(&dev_a, 1, 0, 8 * MIB);
    // 64 KiB chunks: 16 MiB of data is 256 blocks.
    let (meta_before, data_before) = pool_totals(&bed.vg);
    assert_eq!(data_before, 256);
    let writer = {
        let dev = dev_a.clone();
        std::thread::spawn(move || {
            for i in 0..6 {
                write_pattern(&dev, 10 + i, (8 + i) * MIB, MIB);
            }
        })
    };
    let grown = bed.json(&[
        "pool",
        "grow",
        "disks",
        "--data",
        "32MiB",
        "--metadata",
        "8MiB",
    ]);
    writer.join().unwrap();
    let t = &grown["thin_pool"];
    assert_eq!(
        (t["data"].as_u64(), t["metadata"].as_u64()),
        (Some(32 * MIB), Some(8 * MIB)),
        "{grown}"
    );
    let (meta_after, data_after) = pool_totals(&bed.vg);
    assert_eq!(data_after, 512);
    assert_eq!(
        meta_after,
        2 * 1024,
        "metadata blocks of 4 KiB, was {meta_before}"
    );
    assert_pattern(&dev_a, 1, 0, 8 * MIB);
    for i in 0..6 {
        assert_pattern(&dev_a, 10 + i, (8 + i) * MIB, MIB);
    }
    let rows = thin_rows(&bed);
    assert_eq!(
        (
            rows["pool"].3,
            rows["[pool_tmeta]"].3,
            rows["[lvol0_pmspare]"].3
        ),
        (32 * MIB, 8 * MIB, 8 * MIB),
        "{rows:?}"
    );

    // Killed between the grow's commit and the reload: the kernel lags until the next
    // start, which brings it in line before anything else touches the pool.
    bed.stop();
    crash_at(
        &mut bed,
        "pool-grown",
        &["pool", "grow", "disks", "--data", "48MiB"],
    );
    assert_eq!(pool_totals(&bed.vg).1, 768);
    bed.json(&["lv", "create", "b", "16MiB"]);
    write_pattern(&dev_a, 20, 20 * MIB, 4 * MIB);
    assert_pattern(&dev_a, 1, 0, 8 * MIB);
    // lvm2 grows what lvmd grew.
    bed.lvm2(&["lvextend", "-L", "+8M", &format!("{}/pool", bed.vg)]);
    assert_eq!(pool_totals(&bed.vg).1, 896);
    bed.agree();

    // By itself: with autoextend_threshold_percent = 80, a pool written past 80 % of its
    // 56 MiB grows by half (to 84 MiB) within a round or two of the daemon's check.
    bed.stop();
    bed.write_class_config(
        "",
        "thin_pool = { name = \"pool\", size = \"16MiB\", overprovision_ratio = 8.0, \
         autoextend_threshold_percent = 80, autoextend_percent = 50 }\n",
    );
    bed.start(None);
    write_pattern(&dev_a, 30, 24 * MIB, 28 * MIB);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool_totals(&bed.vg).1 == 896 {
        assert!(
            Instant::now() < deadline,
            "the pool did not grow by itself:\n{}",
            bed.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(pool_totals(&bed.vg).1, 1344);
    assert_eq!(thin_rows(&bed)["pool"].3, 84 * MIB);
    assert_pattern(&dev_a, 30, 24 * MIB, 28 * MIB);
    assert_pattern(&dev_a, 1, 0, 8 * MIB);
    bed.agree();
    bed.json(&["lv", "deactivate", "a"]);
    bed.stop();
    let ids = common::thin_ids_on_disk(&|a: &[&str]| bed.lvm2(a), &bed.vg, "pool");
    assert_eq!(ids, vec![1, 2]);
}

/// lvm2's tags of `lv` (lvmd's marks among them), sorted.
fn lv_tags(bed: &Bed, lv: &str) -> Vec<String> {
    let out = bed.lvm2(&[
        "lvs",
        "--noheadings",
        "-o",
        "lv_tags",
        &format!("{}/{lv}", bed.vg),
    ]);
    let mut tags: Vec<String> = out
        .trim()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags
}

/// Whether Debian's cryptsetup opens `dev`'s header with the key in `key_file`
/// (nothing is opened: `--test-passphrase`).
fn cryptsetup_takes(dev: &str, key_file: &Path) -> bool {
    let key = key_file.to_str().unwrap();
    let (ok, _, _) = run(
        "cryptsetup",
        &["open", "--test-passphrase", "--key-file", key, dev],
    );
    ok
}

/// The keyslots in use in `dev`'s LUKS2 header, as `cryptsetup luksDump` lists them.
fn luks_keyslots(dev: &str) -> usize {
    let dump = run_ok("cryptsetup", &["luksDump", dev]);
    let slots = dump
        .split("Keyslots:")
        .nth(1)
        .and_then(|s| s.split("Tokens:").next())
        .unwrap_or_default();
    slots
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.split_once(": luks2")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        })
        .count()
}

/// The open lvmd crypt mappings, as dmsetup lists them.
fn crypt_mappings() -> BTreeSet<String> {
    run_ok("dmsetup", &["ls", "--target", "crypt"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("lvmd-crypt-"))
        .map(str::to_owned)
        .collect()
}

/// kill -9 of lvmd at each step of an encrypted volume's making and of a rekey
/// (issue 13): after the crash at `committed` of an encrypted create, at
/// `luks-marked` (`lvmd.mkluks=` committed, no header) and at `luks-formatted` (a
/// header, never opened) of its first stage, and at `rekey-added` (the new key added,
/// the old one not yet removed), the restarted daemon has nothing half-done (no mapping
/// open, no mark of a step left once the retry ran), the retry converges, the volume
/// opens with its key (after the rekey cut: with either), and no crypt mapping is left
/// without its LV. The class's `no_read_workqueue`/`no_write_workqueue` are on the
/// mapping (`dmsetup table`). And a volume Debian's `cryptsetup luksFormat` made, with
/// a filesystem inside, is opened and mounted by lvmd with its key and adopted, its file
/// intact. Debian's cryptsetup checks the header after each step.
#[test]
fn encrypted_volumes_survive_kill_9_at_each_luks_step() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-crypt", &[256]);
    bed.write_class_config(
        "",
        "encryption = { pbkdf = { type = \"pbkdf2\", iterations = 1000 }, \
         no_read_workqueue = true, no_write_workqueue = true }\n",
    );
    let dir = bed.loops.dir.path().to_owned();
    let k1 = dir.join("k1");
    let k2 = dir.join("k2");
    std::fs::write(&k1, b"first key of vmd-crypt\n").unwrap();
    std::fs::write(&k2, b"second key \x00\xff binary").unwrap();
    let (k1s, k2s) = (k1.to_str().unwrap(), k2.to_str().unwrap());
    let lv_dev = |bed: &Bed, lv: &str| format!("/dev/mapper/{}", bed.dm_name(lv));
    let mapping = |bed: &Bed, lv: &str| format!("lvmd-crypt-{}", bed.dm_name(lv));
    // No crypt mapping of this VG whose LV is gone.
    let no_orphans = |bed: &Bed, why: &str| {
        let names = bed.lvm2_names();
        for m in crypt_mappings() {
            assert!(
                names
                    .iter()
                    .any(|lv| m == format!("lvmd-crypt-{}", bed.dm_name(lv))),
                "{why}: mapping {m} without its LV ({names:?})"
            );
        }
    };
    bed.start(None);
    bed.stop();

    // Create, killed once committed: the retry returns it, encrypted, nothing formatted.
    crash_at(
        &mut bed,
        "committed",
        &["lv", "create", "a", "48MiB", "--encrypted"],
    );
    let v = bed.json(&["lv", "create", "a", "48MiB", "--encrypted"]);
    assert_eq!(
        (v["encrypted"].clone(), v["size"].clone()),
        (true.into(), (48 * MIB).into())
    );
    assert_eq!(lv_tags(&bed, "a"), ["lvmd.crypt", "lvmd.fresh"]);
    bed.agree();
    bed.stop();

    // The first stage, killed with the format marked but not done, then formatted but
    // never opened: each restart has no mapping open; the retry formats again (one
    // header, one keyslot), opens, makes the filesystem.
    let target = bed.root.join("pods/c/a");
    let t = target.to_str().unwrap();
    let mount = ["lv", "mount", "a", t, "--key-file", k1s];
    crash_at(&mut bed, "luks-marked", &mount);
    assert_eq!(lv_tags(&bed, "a"), ["lvmd.crypt", "lvmd.mkluks=ext4"]);
    assert!(crypt_mappings().is_empty(), "{:?}", crypt_mappings());
    bed.stop();
    crash_at(&mut bed, "luks-formatted", &mount);
    assert_eq!(lv_tags(&bed, "a"), ["lvmd.crypt", "lvmd.mkluks=ext4"]);
    assert!(crypt_mappings().is_empty(), "{:?}", crypt_mappings());
    // The kill left the LV active with lvmd's header on it (a client's activation here
    // would end formatting for good, so none).
    assert!(
        cryptsetup_takes(&lv_dev(&bed, "a"), &k1),
        "the cut-short format's header"
    );
    let m = bed.json(&mount);
    assert_eq!(m["formatted"], true, "{m}");
    assert_eq!(lv_tags(&bed, "a"), ["lvmd.crypt", "lvmd.fs=ext4"]);
    assert_eq!(luks_keyslots(&lv_dev(&bed, "a")), 1);
    assert_eq!(crypt_mappings(), [mapping(&bed, "a")].into());
    // The class's workqueue flags are the mapping's.
    let table = run_ok("dmsetup", &["table", &mapping(&bed, "a")]);
    assert!(
        table.contains("no_read_workqueue") && table.contains("no_write_workqueue"),
        "{table}"
    );
    std::fs::write(target.join("f"), b"kept through the rekey\n").unwrap();
    bed.json(&["lv", "unmount", t]);
    assert!(crypt_mappings().is_empty(), "unmount closes the mapping");

    // Rekey killed between its halves: either key opens; the retry finishes it (the
    // old key then refused), the data untouched.
    bed.stop();
    let rekey = ["lv", "rekey", "a", "--key-file", k1s, "--new-key-file", k2s];
    crash_at(&mut bed, "rekey-added", &rekey);
    no_orphans(&bed, "rekey-added");
    bed.json(&["lv", "activate", "a"]);
    let dev = lv_dev(&bed, "a");
    assert!(cryptsetup_takes(&dev, &k1) && cryptsetup_takes(&dev, &k2));
    assert_eq!(luks_keyslots(&dev), 2);
    for k in [k1s, k2s] {
        bed.json(&["lv", "mount", "a", t, "--key-file", k]);
        assert_eq!(
            std::fs::read(target.join("f")).unwrap(),
            b"kept through the rekey\n"
        );
        bed.json(&["lv", "unmount", t]);
    }
    bed.json(&rekey);
    assert!(!cryptsetup_takes(&dev, &k1) && cryptsetup_takes(&dev, &k2));
    assert_eq!(luks_keyslots(&dev), 1);
    bed.refused(
        &["lv", "mount", "a", t, "--key-file", k1s],
        "PermissionDenied",
    );
    let m = bed.json(&["lv", "mount", "a", t, "--key-file", k2s]);
    assert_eq!(m["formatted"], false, "{m}");
    assert_eq!(
        std::fs::read(target.join("f")).unwrap(),
        b"kept through the rekey\n"
    );
    bed.json(&["lv", "unmount", t]);

    // A volume cryptsetup made, with a filesystem and a file inside: lvmd opens it with
    // its key, mounts what is there (no mkfs) and marks it encrypted.
    bed.json(&["lv", "create", "theirs", "48MiB"]);
    bed.json(&["lv", "activate", "theirs"]);
    let theirs = lv_dev(&bed, "theirs");
    run_ok(
        "cryptsetup",
        &[
            "luksFormat",
            "--type",
            "luks2",
            "--batch-mode",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            k2s,
            &theirs,
        ],
    );
    run_ok(
        "cryptsetup",
        &["open", "--key-file", k2s, &theirs, "vmd-theirs"],
    );
    run_ok("mkfs.ext4", &["-q", "/dev/mapper/vmd-theirs"]);
    let made = dir.join("made");
    std::fs::create_dir_all(&made).unwrap();
    run_ok("mount", &["/dev/mapper/vmd-theirs", made.to_str().unwrap()]);
    std::fs::write(made.join("g"), b"cryptsetup's\n").unwrap();
    run_ok("umount", &[made.to_str().unwrap()]);
    run_ok("cryptsetup", &["close", "vmd-theirs"]);
    let t2 = bed.root.join("pods/c/theirs");
    let m = bed.json(&[
        "lv",
        "mount",
        "theirs",
        t2.to_str().unwrap(),
        "--key-file",
        k2s,
    ]);
    assert_eq!(m["formatted"], false, "{m}");
    assert_eq!(std::fs::read(t2.join("g")).unwrap(), b"cryptsetup's\n");
    assert!(lv_tags(&bed, "theirs").contains(&"lvmd.crypt".to_owned()));
    assert!(bed.listed("theirs")["encrypted"] == true);
    bed.json(&["lv", "unmount", t2.to_str().unwrap()]);

    // A mapping whose LV went away while lvmd was down (opened by hand, the LV then
    // dropped from the metadata): closed at start, then its device removed.
    bed.json(&["lv", "activate", "theirs"]);
    let ghost = mapping(&bed, "theirs");
    run_ok("cryptsetup", &["open", "--key-file", k2s, &theirs, &ghost]);
    bed.stop();
    bed.loops.lvmd().lv_remove(&bed.vg, "theirs").unwrap();
    bed.start(None);
    assert!(!crypt_mappings().contains(&ghost), "{:?}", crypt_mappings());
    assert_eq!(bed.dm_table("theirs"), None, "the LV's device left");
    no_orphans(&bed, "restart");

    // Removal closes and zeroes; nothing of the VG is left in device-mapper.
    bed.json(&["lv", "remove", "a"]);
    assert!(crypt_mappings().is_empty() && bed.dm_devices().is_empty());
    assert!(bed.agree().is_empty());
    bed.stop();
}

/// dm-integrity's status of an integrity device: (mismatches, data sectors, sectors
/// recalculated so far or `None` when no recalculation runs).
fn integrity_status(bed: &Bed, lv: &str) -> (u64, u64, Option<u64>) {
    let out = run_ok("dmsetup", &["status", &bed.dm_name(lv)]);
    // 0 <len> integrity <mismatches> <data sectors> <recalculated|->
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.get(2), Some(&"integrity"), "{out}");
    (
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
        f[5].parse().ok(),
    )
}

/// A mirror with dm-integrity made by lvmd (`lvmd-ctl lv create --integrity`): lvm2
/// lists it as its own `--raidintegrity y` mirror; its first activation computes the
/// tags of every block (`recalculate`, gone from the metadata after it); a pattern
/// written through it, then one block of each leg's data flipped on the PV itself:
/// the mirror reads back the pattern (dm-integrity fails the damaged block, dm-raid
/// reads the other copy) and dm-integrity counts the mismatch, as lvm2 reports it
/// (`integritymismatches`) and lvmd does (`mirror_sync.integrity_mismatches`). Grown online before that (data kept, the grown part zeros
/// and writable). lvm2 removes it (active), and lvmd agrees nothing is left. Lean for
/// CI: a volume of one extent, then two; one activation.
#[test]
fn an_integrity_mirror_serves_the_good_copy_of_a_damaged_block() {
    let _serial = common::vm_case("vm_daemon");
    run_ok("modprobe", &["dm_integrity"]);
    let mut bed = Bed::new("vmd-integ", &[40, 40]);
    bed.start(None);
    let made = bed.json(&["lv", "create", "m", "4MiB", "--mirrors", "1", "--integrity"]);
    assert_eq!(made["integrity"], true, "{made}");
    let lvs = bed.lvm2(&["lvs", "-a", "-o", "lv_name,segtype,devices", &bed.vg]);
    for i in 0..2 {
        assert!(
            lvs.contains(&format!("[m_rimage_{i}]"))
                && lvs.contains(&format!("m_rimage_{i}_iorig(0)"))
                && lvs.contains(&format!("[m_rimage_{i}_imeta]")),
            "{lvs}"
        );
    }
    assert_eq!(lvs.matches("integrity").count(), 2, "{lvs}");
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    // The first load took `recalculate`; the metadata no longer asks for it.
    let backup = bed.loops.dir.path().join("meta.txt");
    let backup = backup.to_str().unwrap();
    bed.lvm2(&["vgcfgbackup", "-f", backup, &bed.vg]);
    let meta = std::fs::read_to_string(backup).unwrap();
    assert!(meta.contains("type = \"integrity\""), "{meta}");
    assert!(!meta.contains("recalculate"), "{meta}");
    wait_in_sync(&bed, "m");
    let images: Vec<String> = (0..2)
        .map(|i| bed.dm_name(&format!("m_rimage_{i}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..2 {
        loop {
            let (_, data, done) = integrity_status(&bed, &format!("m_rimage_{i}"));
            if done.is_none_or(|d| d >= data) {
                break;
            }
            assert!(Instant::now() < deadline, "tags of leg {i} not computed");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    write_pattern(&dev, 9, 0, 4 * MIB);
    // Grown online (as lvm2's lvextend: each `_iorig`, then each integrity image, then
    // the raid device reloaded): the data stays, the grown part reads zeros and takes
    // the pattern's continuation.
    let grown = bed.json(&["lv", "resize", "m", "8MiB"]);
    assert_eq!(grown["size"].as_u64(), Some(8 * MIB), "{grown}");
    assert_eq!(bed.dm_size("m"), 8 * MIB);
    for i in 0..2 {
        assert_eq!(integrity_status(&bed, &format!("m_rimage_{i}")).1, 16384);
    }
    assert_pattern(&dev, 9, 0, 4 * MIB);
    {
        use std::os::unix::fs::FileExt;
        let mut tail = vec![1u8; 4 * MIB as usize];
        std::fs::File::open(&dev)
            .unwrap()
            .read_exact_at(&mut tail, 4 * MIB)
            .unwrap();
        assert!(tail.iter().all(|&b| b == 0), "grown part is not zeros");
    }
    write_pattern(&dev, 9, 4 * MIB, 4 * MIB);
    wait_in_sync(&bed, "m");
    // Suspended, dm-integrity writes its journal out to the data sub-LVs: what is on
    // the PV is then what a read of the leg checks.
    for image in &images {
        run_ok("dmsetup", &["suspend", image]);
    }
    // One 4 KiB block of each leg's data, bytes flipped on the PV: leg 0 at 1 MiB,
    // leg 1 at 3 MiB (whichever leg dm-raid reads a region from, one is damaged).
    for (leg, at) in [(0, MIB), (1, 3 * MIB)] {
        use std::os::unix::fs::FileExt;
        let ranges = pe_ranges(&bed, &format!("[m_rimage_{leg}_iorig]"));
        let (pv, range) = ranges[0].rsplit_once(':').unwrap();
        let first: u64 = range.split_once('-').unwrap().0.parse().unwrap();
        let pe_start: u64 = bed
            .lvm2(&[
                "pvs",
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "pe_start",
                pv,
            ])
            .trim()
            .parse()
            .unwrap();
        let offset = pe_start + first * 4 * MIB + at;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pv)
            .unwrap();
        let mut block = vec![0u8; 4096];
        f.read_exact_at(&mut block, offset).unwrap();
        assert_eq!(
            block,
            pattern(9, at, 4096),
            "leg {leg} holds the pattern at {at}"
        );
        for b in &mut block {
            *b ^= 0xff;
        }
        f.write_all_at(&block, offset).unwrap();
        f.sync_all().unwrap();
    }
    for image in &images {
        run_ok("dmsetup", &["resume", image]);
    }
    assert_pattern(&dev, 9, 0, 8 * MIB);
    let mismatches: u64 = (0..2)
        .map(|i| integrity_status(&bed, &format!("m_rimage_{i}")).0)
        .sum();
    assert!(mismatches >= 1, "no mismatch counted");
    let by_lvm2 = bed.lvm2(&[
        "lvs",
        "--noheadings",
        "-o",
        "integritymismatches",
        &format!("{}/m", bed.vg),
    ]);
    assert_eq!(
        by_lvm2.trim().parse::<u64>().unwrap(),
        mismatches,
        "{by_lvm2}"
    );
    eprintln!("mismatches counted: {mismatches}");
    // lvmd says so too (gRPC, lvmd-ctl).
    let listed = bed.listed("m");
    assert_eq!(
        listed["mirror_sync"]["integrity_mismatches"].as_u64(),
        Some(mismatches),
        "{listed}"
    );
    // lvm2 takes lvmd's mirror down and removes it, every sub-LV along.
    bed.lvm2(&["lvremove", "-y", &format!("{}/m", bed.vg)]);
    assert!(bed.agree().is_empty());
    let left = bed.lvm2(&["lvs", "-a", "--noheadings", "-o", "lv_name", &bed.vg]);
    assert!(left.trim().is_empty(), "left behind: {left}");
    assert!(bed.dm_devices().is_empty(), "{:?}", bed.dm_devices());
    bed.stop();
}

/// Whether `sector` (512 bytes) is one of the sectors of the device `dev`: a file's
/// data starts at a filesystem block, a whole number of sectors (ext4 on a small
/// volume has 1 KiB blocks), and dm-crypt keeps the offsets within its data area.
fn device_holds(dev: &str, sector: &[u8]) -> bool {
    use std::io::Read;
    assert_eq!(sector.len(), 512);
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let mut data = Vec::new();
    std::fs::File::open(dev)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    data.chunks_exact(512).any(|c| c == sector)
}

/// Encryption over every layout lvmd makes (issue 13): an encrypted thin volume (LUKS
/// above the thin LV), an encrypted striped one and an encrypted raid1 one, each staged
/// (LUKS2 format, mkfs inside), written, unstaged (mapping closed), staged again (not
/// formatted again) and read back; each mapping is a crypt target over the layout's own
/// device, the LV starts with a LUKS2 header, and what was written is nowhere on the LV
/// in the clear. Removal leaves no mapping and no device.
#[test]
fn encrypted_thin_striped_and_raid1_volumes_keep_their_data() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-layouts", &[256, 256]);
    bed.write_class_config(
        "",
        "thin_pool = { name = \"pool\", size = \"64MiB\", overprovision_ratio = 2.0 }\n\
         encryption = { pbkdf = { type = \"pbkdf2\", iterations = 1000 } }\n",
    );
    let key = bed.loops.dir.path().join("key");
    std::fs::write(&key, b"one key for three layouts").unwrap();
    let k = key.to_str().unwrap();
    bed.start(None);
    let volumes: [(&str, &[&str], &str); 3] = [
        ("t", &["--thin"], "thin"),
        ("s", &["--stripes", "2"], "striped"),
        ("m", &["--mirrors", "1"], "raid"),
    ];
    // A 1 MiB block no filesystem or header holds by chance.
    let block: Vec<u8> = pattern(77, 0, MIB as usize);
    for (lv, how, target_type) in volumes {
        // 16 MiB of LUKS2 header, 16 MiB of ext4.
        let mut args = vec!["lv", "create", lv, "32MiB", "--encrypted"];
        args.extend_from_slice(how);
        let v = bed.json(&args);
        assert_eq!(v["encrypted"], true, "{v}");
        let target = bed.root.join(format!("pods/l/{lv}"));
        let t = target.to_str().unwrap();
        let m = bed.json(&["lv", "mount", lv, t, "--key-file", k]);
        assert_eq!(m["formatted"], true, "{lv}: {m}");
        let mapping = format!("lvmd-crypt-{}", bed.dm_name(lv));
        let table = run_ok("dmsetup", &["table", &mapping]);
        let lv_table = bed.dm_table(lv).expect("active");
        assert!(
            table.split_whitespace().nth(2) == Some("crypt"),
            "{lv}: {table}"
        );
        assert!(
            lv_table.split_whitespace().nth(2) == Some(target_type),
            "{lv}: {lv_table}"
        );
        let lv_dev = format!("/dev/mapper/{}", bed.dm_name(lv));
        let deps = run_ok("dmsetup", &["deps", "-o", "devname", &mapping]);
        assert!(
            deps.contains(&format!("({})", bed.dm_name(lv))),
            "{lv}: {deps}"
        );
        assert_eq!(&read_head(Path::new(&lv_dev), 0)[..6], b"LUKS\xba\xbe");
        std::fs::write(target.join("data"), &block).unwrap();
        run_ok("sync", &[]);
        // The check sees it where it is: on the mapping the filesystem is on.
        assert!(device_holds(
            &format!("/dev/mapper/{mapping}"),
            &block[..512]
        ));
        assert!(
            !device_holds(&lv_dev, &block[..512]),
            "{lv}: plaintext on the LV"
        );
        bed.json(&["lv", "unmount", t]);
        assert!(!crypt_mappings().contains(&mapping), "{lv}: left open");
        let m = bed.json(&["lv", "mount", lv, t, "--key-file", k]);
        assert_eq!(m["formatted"], false, "{lv}: {m}");
        std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
        assert!(
            std::fs::read(target.join("data")).unwrap() == block,
            "{lv}: data differs"
        );
        bed.json(&["lv", "unmount", t]);
    }
    // lvm2 reads the same volumes; then they go, with their mappings and devices.
    bed.agree();
    for (lv, _, _) in volumes {
        bed.json(&["lv", "remove", lv]);
    }
    assert!(crypt_mappings().is_empty(), "{:?}", crypt_mappings());
    assert_eq!(bed.agree(), ["pool".to_owned()].into());
    bed.stop();
}

/// A mirror killed (kill -9) at a step of its creation (after the commit), growth
/// (between the commit and the reload) and removal (devices gone, metadata whole), and
/// an integrity mirror between its first activation and the commit after it: after each
/// restart lvm2 lists the mirror with every sub-LV or none of them, the kernel has a
/// device for each sub-LV of an active mirror and none left over of a removed one,
/// lvmd and lvm2 agree (vgck clean), and the retry converges. (Repair's crash points
/// are `a_mirror_with_a_leg_pv_gone_activates_degraded_and_says_so`'s.) Lean for CI:
/// one restart per point, no data written.
#[test]
fn a_mirror_killed_at_each_step_leaves_no_sub_lv_behind() {
    let _serial = common::vm_case("vm_daemon");
    run_ok("modprobe", &["dm_integrity"]);
    let mut bed = Bed::new("vmd-mkill", &[48, 48]);
    bed.start(None);
    bed.stop();
    // lvm2's names of `lv`'s sub-LVs, and the dm devices of it active.
    let subs = |lv: &str, integrity: bool| -> BTreeSet<String> {
        let mut v = BTreeSet::new();
        for i in 0..2 {
            v.insert(format!("{lv}_rmeta_{i}"));
            v.insert(format!("{lv}_rimage_{i}"));
            if integrity {
                v.insert(format!("{lv}_rimage_{i}_iorig"));
                v.insert(format!("{lv}_rimage_{i}_imeta"));
            }
        }
        v
    };
    let all_lvs = |bed: &Bed| -> BTreeSet<String> {
        bed.lvm2(&["lvs", "-a", "--noheadings", "-o", "lv_name", &bed.vg])
            .split_whitespace()
            .map(|n| n.trim_matches(['[', ']']).to_owned())
            .collect()
    };
    let whole = |bed: &Bed, lv: &str, integrity: bool, active: bool| {
        let mut want = subs(lv, integrity);
        want.insert(lv.to_owned());
        assert_eq!(all_lvs(bed), want, "lvm2's LVs");
        let devices: BTreeSet<String> = if active {
            want.iter().map(|n| bed.dm_name(n)).collect()
        } else {
            BTreeSet::new()
        };
        assert_eq!(bed.dm_devices(), devices, "dm devices of {lv}");
        bed.agree();
    };
    let started = Instant::now();

    // Create: killed after its commit, the legs' metadata areas not cleared yet.
    crash_at(
        &mut bed,
        "committed",
        &["lv", "create", "m", "8MiB", "--mirrors", "1"],
    );
    whole(&bed, "m", false, false);
    let v = bed.json(&["lv", "create", "m", "8MiB", "--mirrors", "1"]);
    assert_eq!(v["size"], 8 * MIB, "{v}");
    whole(&bed, "m", false, false);
    bed.json(&["lv", "activate", "m"]);
    bed.stop();
    // Grow, active: killed between the commit and the reload; the restart (or the
    // retry) brings every leg's table and the raid's to the new size.
    crash_at(&mut bed, "committed", &["lv", "resize", "m", "16MiB"]);
    whole(&bed, "m", false, true);
    let v = bed.json(&["lv", "resize", "m", "16MiB"]);
    assert_eq!(v["size"], 16 * MIB, "{v}");
    assert_eq!(bed.dm_size("m"), 16 * MIB);
    assert_eq!(bed.dm_size("m_rimage_1"), 16 * MIB);
    bed.stop();
    // Remove, active: killed with its devices gone but its metadata whole; nothing of
    // it is left after the retry.
    crash_at(&mut bed, "deactivated", &["lv", "remove", "m"]);
    whole(&bed, "m", false, false);
    bed.json(&["lv", "remove", "m"]);
    assert!(all_lvs(&bed).is_empty(), "{:?}", all_lvs(&bed));
    assert!(bed.dm_devices().is_empty(), "{:?}", bed.dm_devices());
    bed.agree();
    // Integrity: killed between the first activation (which asked for the tags'
    // recalculation) and the commit that drops `recalculate`; the restart finds the
    // mirror active and whole, the next activation drops it.
    bed.json(&["lv", "create", "i", "4MiB", "--mirrors", "1", "--integrity"]);
    bed.stop();
    crash_at(&mut bed, "activated", &["lv", "activate", "i"]);
    whole(&bed, "i", true, true);
    let backup = bed.loops.dir.path().join("meta.txt");
    let backup = backup.to_str().unwrap();
    let recalculate = |bed: &Bed| {
        bed.lvm2(&["vgcfgbackup", "-f", backup, &bed.vg]);
        std::fs::read_to_string(backup)
            .unwrap()
            .contains("recalculate")
    };
    assert!(
        recalculate(&bed),
        "the commit after the first activation ran"
    );
    bed.json(&["lv", "activate", "i"]);
    assert!(!recalculate(&bed));
    assert_eq!(bed.json(&["lv", "remove", "i"])["existed"], true);
    assert!(all_lvs(&bed).is_empty() && bed.dm_devices().is_empty());
    bed.agree();
    bed.stop();
    eprintln!("mirror crash points: {:?}", started.elapsed());
}

/// A mirror with integrity, one leg's PV gone: it activates degraded (that leg an error
/// device, the pattern read from the other), and the repair moves the leg whole onto
/// the spare PV (`_rmeta`, `_iorig` and a new zeroed `_imeta` together), makes the new
/// layers, dm-integrity computes the new leg's tags and dm-raid rebuilds it: healthy,
/// the pattern read through the new leg's integrity device itself, no `REBUILD` or
/// `recalculate` left in the metadata, lvm2 no longer calls it partial.
#[test]
fn an_integrity_mirror_with_a_leg_pv_gone_is_repaired_whole() {
    let _serial = common::vm_case("vm_daemon");
    run_ok("modprobe", &["dm_integrity"]);
    let mut bed = Bed::new("vmd-irep", &[40, 40, 40]);
    bed.start(None);
    bed.json(&["lv", "create", "m", "4MiB", "--mirrors", "1", "--integrity"]);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    wait_in_sync(&bed, "m");
    write_pattern(&dev, 31, 0, 4 * MIB);
    let gone = pv_of(&bed, "m_rimage_1_iorig");
    let kept = pv_of(&bed, "m_rimage_0_iorig");
    assert_ne!(gone, kept);
    bed.json(&["lv", "deactivate", "m"]);
    bed.stop();
    run_ok("losetup", &["-d", &gone]);

    bed.start(None);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    let table = bed.dm_table("m_rimage_1").unwrap();
    assert!(table.contains(" error"), "{table}");
    assert_pattern(&dev, 31, 0, 4 * MIB);
    assert_eq!(bed.listed("m")["health"], "degraded");

    let repaired = bed.json(&["lv", "repair", "m"]);
    eprintln!("repair answered: {repaired}");
    let new = pv_of(&bed, "m_rimage_1_iorig");
    assert!(new != gone && new != kept, "leg 1 on {new}");
    assert_eq!(pv_of(&bed, "m_rimage_1_imeta"), new);
    assert_eq!(pv_of(&bed, "m_rmeta_1"), new);
    wait_rebuilt(&bed, "the integrity repair");
    let table = bed.dm_table("m_rimage_1").unwrap();
    assert!(table.contains(" integrity "), "{table}");
    let leg = Path::new("/dev/mapper").join(bed.dm_name("m_rimage_1"));
    assert_pattern(&leg, 31, 0, 4 * MIB);
    assert_pattern(&dev, 31, 0, 4 * MIB);
    assert_eq!(
        integrity_status(&bed, "m_rimage_1").0,
        0,
        "mismatches on the new leg"
    );
    let backup = bed.loops.dir.path().join("meta.txt");
    let backup = backup.to_str().unwrap();
    bed.lvm2(&["vgcfgbackup", "-f", backup, &bed.vg]);
    let meta = std::fs::read_to_string(backup).unwrap();
    assert!(
        !meta.contains("recalculate") && !meta.contains("REBUILD"),
        "{meta}"
    );
    let lvs = bed.lvm2(&[
        "lvs",
        "-a",
        "-o",
        "lv_name,lv_health_status,sync_percent,devices",
        &bed.vg,
    ]);
    eprintln!("repaired, as lvm2 lists it:\n{lvs}");
    for l in lvs
        .lines()
        .filter(|l| l.contains(" m ") || l.contains("[m_"))
    {
        assert!(!l.contains("partial") && !l.contains("unknown"), "{lvs}");
    }
    bed.json(&["lv", "deactivate", "m"]);
    bed.stop();
}

// --- Group snapshots (issue 11) ---

/// Blocks of the group case's writer ring (4 KiB each, 4 MiB in all).
const RING: u64 = 1024;

/// The highest sequence number in `dev`'s ring (0: none written).
fn last_record(dev: &Path) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut ring = vec![0u8; (RING * 4096) as usize];
    std::fs::File::open(dev)
        .unwrap()
        .read_exact_at(&mut ring, 0)
        .unwrap();
    ring.chunks(4096)
        .filter(|b| b[8..16] == *b"lvmd-seq")
        .map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
        .max()
        .unwrap_or(0)
}

/// Writes records 1, 2, ... to `a` then `b` in turn (record i to both, a first), each
/// written through (O_SYNC) before the next begins, until `stop`; returns the last
/// record written to both.
fn ring_writer(
    a: PathBuf,
    b: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    std::thread::spawn(move || {
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_SYNC)
                .open(p)
                .unwrap()
        };
        let (fa, fb) = (open(&a), open(&b));
        let mut block = vec![0u8; 4096];
        block[8..16].copy_from_slice(b"lvmd-seq");
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            block[..8].copy_from_slice(&i.to_le_bytes());
            let at = (i % RING) * 4096;
            fa.write_all_at(&block, at).unwrap();
            fb.write_all_at(&block, at).unwrap();
        }
        i
    })
}

/// Whether dm-thin device `name` is suspended (`dmsetup info`'s state).
fn dm_suspended(name: &str) -> bool {
    run_ok(
        "dmsetup",
        &["info", "-c", "--noheadings", "-o", "suspended", name],
    )
    .trim()
        == "Suspended"
}

/// Group snapshots through the real daemon, and kill -9 at the snapshot steps.
///
/// Two thin volumes of the class's pool, active, a writer writing record i to a, then
/// to b, in turn; the group taken while it runs is one instant's cut (in the snapshots
/// b's last record is a's or one behind it, never newer), in one pool transaction;
/// both volumes are resumed (the writer goes on); lvm2 lists the snapshots with their
/// origins and group marks, activates them and reads the same cut; the group deleted.
///
/// Then kill -9 at every snapshot step the thin case does not kill (`snap-sent`,
/// `snap-recorded`, `clone-committed`, `clone-sent`, `clone-recorded`) and at each of
/// a group's (`group-committed`, `group-sent`, `group-recorded`), the origins active, each followed by a restart: the kernel's transaction id is the metadata's,
/// the same request again answers what was made, no origin is left suspended; at the
/// end the pool, taken down (the daemon running), checks clean (`thin_check`) and
/// holds exactly the thin ids of the LVs lvm2 lists (nothing leaked), and activates
/// again for a volume whose data is intact.
#[test]
fn a_group_snapshot_is_one_instant_and_snapshots_survive_kill_9() {
    let _serial = common::vm_case("vm_daemon");
    let started = Instant::now();
    let mut bed = Bed::new("vmd-grp", &[128]);
    bed.write_class_config("", "thin_pool = { name = \"pool\", size = \"64MiB\" }\n");
    bed.start(None);
    let dev = |v: Value| PathBuf::from(v["device_path"].as_str().unwrap());
    bed.json(&["lv", "create", "a", "16MiB"]);
    bed.json(&["lv", "create", "b", "16MiB"]);
    let (dev_a, dev_b) = (
        dev(bed.json(&["lv", "activate", "a"])),
        dev(bed.json(&["lv", "activate", "b"])),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = ring_writer(dev_a.clone(), dev_b.clone(), stop.clone());
    // Running before the group is taken.
    let deadline = Instant::now() + Duration::from_secs(30);
    while last_record(&dev_b) < 50 {
        assert!(Instant::now() < deadline, "the writer does not progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = common::kernel_transaction(&bed.vg, "pool");
    let g = bed.json(&["snapshot", "group", "create", "g", "--of", "a", "--of", "b"]);
    let names: Vec<&str> = g["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["g-a", "g-b"], "{g}");
    // One transaction for both snapshots.
    assert_eq!(common::kernel_transaction(&bed.vg, "pool"), before + 1);
    // Resumed: not suspended, and the writer goes on past the cut.
    for lv in ["a", "b"] {
        assert!(!dm_suspended(&bed.dm_name(lv)), "{lv} left suspended");
    }
    let at_cut = last_record(&dev_b);
    let deadline = Instant::now() + Duration::from_secs(30);
    while last_record(&dev_b) < at_cut + 20 {
        assert!(
            Instant::now() < deadline,
            "the writer hangs after the group"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();

    // lvm2 lists both as read-only thin snapshots of their origins, with the group
    // mark, activates them (-K: activation skip) and reads one cut.
    let rows = bed.loops.report(
        &[
            "lvs",
            &bed.vg,
            "-o",
            "lv_name,origin,lv_attr,lv_tags",
            "-S",
            "lv_name=~^g-",
        ],
        "lv",
    );
    let listed: Vec<(String, String)> = rows
        .iter()
        .map(|r| (text(r, "lv_name"), text(r, "origin")))
        .collect();
    assert_eq!(
        listed,
        [("g-a", "a"), ("g-b", "b")].map(|(n, o)| (n.to_owned(), o.to_owned())),
        "{rows:?}"
    );
    for r in &rows {
        let (attr, tags) = (text(r, "lv_attr"), text(r, "lv_tags"));
        assert!(attr.starts_with("Vri") && attr.ends_with('k'), "{rows:?}");
        assert!(tags.contains("lvmd.group=g"), "{rows:?}");
    }
    let mut cut = Vec::new();
    for s in ["g-a", "g-b"] {
        bed.lvm2(&["lvchange", "-ay", "-K", &format!("{}/{s}", bed.vg)]);
        cut.push(last_record(&PathBuf::from(format!(
            "/dev/mapper/{}",
            bed.dm_name(s)
        ))));
        bed.lvm2(&["lvchange", "-an", &format!("{}/{s}", bed.vg)]);
    }
    let (in_a, in_b) = (cut[0], cut[1]);
    eprintln!("group cut: a at record {in_a}, b at {in_b}; {written} written in all");
    assert!(
        in_b >= 50 && (in_a == in_b || in_a == in_b + 1),
        "not one instant: a's snapshot has record {in_a}, b's {in_b}"
    );
    assert!(written > in_a, "the writer stopped at the cut");

    // Deleted whole; the kernel at the metadata's transaction, the pool holds a and b.
    assert_eq!(
        bed.json(&["snapshot", "group", "delete", "g"])["existed"].as_bool(),
        Some(true)
    );
    let rows = thin_rows(&bed);
    assert!(
        !rows.contains_key("g-a") && !rows.contains_key("g-b"),
        "{rows:?}"
    );
    assert_eq!(
        rows["pool"].1,
        common::kernel_transaction(&bed.vg, "pool").to_string()
    );
    bed.agree();
    eprintln!(
        "group snapshot: done at {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // kill -9 at the snapshot steps the thin case does not kill, and at a group's
    // commit, the origins active; each followed by a restart.
    write_pattern(&dev_a, 7, 0, MIB);
    let steps: [(&str, &[&str]); 8] = [
        ("snap-sent", &["snapshot", "create", "s1", "--of", "a"]),
        ("snap-recorded", &["snapshot", "create", "s2", "--of", "a"]),
        (
            "clone-committed",
            &["lv", "create", "c2", "0", "--from", "s2"],
        ),
        ("clone-sent", &["lv", "create", "c", "0", "--from", "s1"]),
        (
            "clone-recorded",
            &["lv", "create", "c3", "0", "--from", "a"],
        ),
        (
            "group-committed",
            &[
                "snapshot", "group", "create", "g2", "--of", "a", "--of", "b",
            ],
        ),
        (
            "group-sent",
            &[
                "snapshot", "group", "create", "g3", "--of", "a", "--of", "b",
            ],
        ),
        (
            "group-recorded",
            &[
                "snapshot", "group", "create", "g4", "--of", "a", "--of", "b",
            ],
        ),
    ];
    for (point, args) in steps {
        bed.stop();
        crash_at(&mut bed, point, args);
        let rows = thin_rows(&bed);
        assert_eq!(
            rows["pool"].1,
            common::kernel_transaction(&bed.vg, "pool").to_string(),
            "after a kill at {point}: {rows:?}"
        );
        // The retry finds it made (and, after `group-committed`, the restart sent
        // both snapshots with both origins suspended and resumed).
        let again = bed.json(args);
        assert!(again["name"].is_string(), "{point}: {again}");
        for lv in ["a", "b"] {
            assert!(
                !dm_suspended(&bed.dm_name(lv)),
                "{lv} suspended after {point}"
            );
        }
        eprintln!("{point}: done at {:.1}s", started.elapsed().as_secs_f64());
    }
    let g = bed.json(&["snapshot", "group", "get", "g2"]);
    assert_eq!(g["snapshots"].as_array().map(Vec::len), Some(2), "{g}");
    let dev_c = dev(bed.json(&["lv", "activate", "c"]));
    assert_pattern(&dev_c, 7, 0, MIB);
    assert_pattern(&dev_a, 7, 0, MIB);
    bed.vgck();

    // Nothing leaked: the pool's kernel ids are exactly the thin LVs lvm2 lists.
    let want: Vec<u64> = thin_rows(&bed)
        .values()
        .filter(|(segtype, ..)| segtype == "thin")
        .map(|(_, _, id, _)| id.parse().unwrap())
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    assert_eq!(
        want.len(),
        13,
        "a, b, s1, s2, c, c2, c3 and g2's, g3's, g4's two"
    );
    for lv in ["a", "b", "c"] {
        bed.json(&["lv", "deactivate", lv]);
    }
    let ids = common::thin_ids_on_disk(&|a: &[&str]| bed.lvm2(a), &bed.vg, "pool");
    assert_eq!(ids, want);
    // The pool activates again, in step, the data there.
    let dev_a = dev(bed.json(&["lv", "activate", "a"]));
    assert_eq!(
        thin_rows(&bed)["pool"].1,
        common::kernel_transaction(&bed.vg, "pool").to_string()
    );
    assert_pattern(&dev_a, 7, 0, MIB);
    bed.json(&["lv", "deactivate", "a"]);
    bed.stop();
    eprintln!(
        "group and kill case: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// The seed of the data a mirror's legs carry in the conversion case: high bits set,
/// so its blocks are not those of any small seed's pattern.
const LEGS: u64 = 0x6c65_6773_2d6c_6567;

/// Issue 12's `lvconvert -m`: a mirror with data gets a third leg (`lv convert
/// --mirrors 2`) on the PV no leg used, rebuilt from the others; then its old leg 0
/// goes by its PV (`--mirrors 1 --pv`): the legs after it renamed into its place as
/// lvm2 renames them (their devices too), the raid table without it, and the wiper
/// zeroes its extents before they go free (the data's blocks gone from that PV). The
/// data reads back through the mirror and each leg; lvm2 lists the two legs in sync
/// on the other PVs, `vgck` is clean, and lvm2's own activation reads the data.
#[test]
fn a_mirror_gains_a_leg_and_loses_its_old_one_with_data_intact() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-mconv", &[40, 40, 40]);
    bed.start(None);
    bed.json(&["lv", "create", "m", "4MiB", "--mirrors", "1"]);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    wait_in_sync(&bed, "m");
    write_pattern(&dev, LEGS, 0, 4 * MIB);
    let old = [pv_of(&bed, "m_rimage_0"), pv_of(&bed, "m_rimage_1")];
    assert_eq!(pattern_blocks_on(Path::new(&old[0]), LEGS, 4 * MIB), 1024);

    let added = bed.json(&["lv", "convert", "m", "--mirrors", "2"]);
    eprintln!("added a leg: {added}");
    let third = pv_of(&bed, "m_rimage_2");
    assert!(!old.contains(&third), "leg 2 on {third}, beside {old:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = bed.listed("m")["mirror_sync"].clone();
        if s["leg_health"] == "AAA" && s["sync_percent"].as_f64() == Some(100.0) {
            break;
        }
        assert!(Instant::now() < deadline, "leg 2 not rebuilt: {s}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let leg = |i: usize| Path::new("/dev/mapper").join(bed.dm_name(&format!("m_rimage_{i}")));
    assert_pattern(&leg(2), LEGS, 0, 4 * MIB);

    let removed = bed.json(&["lv", "convert", "m", "--mirrors", "1", "--pv", &old[0]]);
    eprintln!("removed leg 0: {removed}");
    assert_eq!(removed["mirror_sync"]["leg_health"], "AA", "{removed}");
    assert_eq!(pv_of(&bed, "m_rimage_0"), old[1]);
    assert_eq!(pv_of(&bed, "m_rimage_1"), third);
    assert!(bed.dm_table("m_rimage_2").is_none(), "leg 2's device left");
    assert!(
        bed.dm_table("m_rmeta_2").is_none(),
        "leg 2's metadata device left"
    );
    for i in 0..2 {
        assert_pattern(&leg(i), LEGS, 0, 4 * MIB);
    }
    assert_pattern(&dev, LEGS, 0, 4 * MIB);
    wait_no_wipe_lv(&bed);
    assert_eq!(
        pattern_blocks_on(Path::new(&old[0]), LEGS, 4 * MIB),
        0,
        "the removed leg's data is still on {}",
        old[0]
    );
    let lvs = bed.lvm2(&["lvs", "-a", "-o+devices,sync_percent", &bed.vg]);
    eprintln!("after the conversions, as lvm2 lists it:\n{lvs}");
    assert!(lvs.contains("m_rimage_0(0),m_rimage_1(0)"), "{lvs}");
    assert!(
        lvs.contains("100.00") && !lvs.contains("_rimage_2"),
        "{lvs}"
    );
    bed.agree();
    // Down to one copy (lvm2's -m 0): linear on leg 0's extents, the legs' devices
    // gone, the other leg wiped; the data is still there, and lvm2 reads it.
    let linear = bed.json(&["lv", "convert", "m", "--mirrors", "0"]);
    assert_eq!(linear["layout"], "linear", "{linear}");
    assert_eq!(bed.dm_devices(), BTreeSet::from([bed.dm_name("m")]));
    assert!(bed.dm_table("m").unwrap().contains(" linear "));
    wait_no_wipe_lv(&bed);
    assert_eq!(pattern_blocks_on(Path::new(&third), LEGS, 4 * MIB), 0);
    assert_pattern(&dev, LEGS, 0, 4 * MIB);
    bed.agree();
    bed.json(&["lv", "deactivate", "m"]);
    let target = format!("{}/m", bed.vg);
    bed.lvm2(&["lvchange", "-ay", &target]);
    assert_pattern(&PathBuf::from(format!("/dev/{target}")), LEGS, 0, 4 * MIB);
    bed.lvm2(&["lvchange", "-an", &target]);
    bed.stop();
}

/// Issue 12: the repair of an integrity mirror killed with SIGKILL at each of its steps
/// (`committed`: the leg moved in the metadata with a new `_imeta`, no table reloaded;
/// `reloaded`: the new layers made and the raid table reloaded with the rebuild, the
/// flags still in the metadata), a leg's PV gone before each: after the restart the
/// same request finishes it, the leg on a PV no leg used. Each time nothing is left
/// over (lvm2's LVs and the dm devices are the mirror and its eight sub-LVs), no
/// `REBUILD` or `recalculate` stays in the metadata, the data reads back through the
/// mirror and through the new leg's integrity device, and once lvm2's `vgreduce
/// --removemissing` dropped the gone PV, lvm2 and lvmd agree and `vgck` is clean.
#[test]
fn an_integrity_mirror_repair_killed_at_each_step_finishes_whole() {
    let _serial = common::vm_case("vm_daemon");
    run_ok("modprobe", &["dm_integrity"]);
    let mut bed = Bed::new("vmd-ikill", &[40, 40, 40, 40]);
    bed.start(None);
    bed.json(&["lv", "create", "m", "4MiB", "--mirrors", "1", "--integrity"]);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    wait_in_sync(&bed, "m");
    write_pattern(&dev, LEGS ^ 0xff, 0, 4 * MIB);
    let mut used = vec![
        pv_of(&bed, "m_rimage_0_iorig"),
        pv_of(&bed, "m_rimage_1_iorig"),
    ];
    let mut want: BTreeSet<String> = BTreeSet::from(["m".to_owned()]);
    for leg in 0..2 {
        for sub in ["rmeta_", "rimage_"] {
            want.insert(format!("m_{sub}{leg}"));
        }
        want.insert(format!("m_rimage_{leg}_iorig"));
        want.insert(format!("m_rimage_{leg}_imeta"));
    }
    let backup = bed.loops.dir.path().join("meta.txt");
    for point in ["committed", "reloaded"] {
        let gone = pv_of(&bed, "m_rimage_1_iorig");
        bed.json(&["lv", "deactivate", "m"]);
        bed.stop();
        run_ok("losetup", &["-d", &gone]);
        bed.start(None);
        bed.json(&["lv", "activate", "m"]);
        assert_eq!(bed.listed("m")["health"], "degraded", "{point}");
        bed.stop();
        crash_at(&mut bed, point, &["lv", "repair", "m"]);
        let new = pv_of(&bed, "m_rimage_1_iorig");
        assert!(
            !used.contains(&new),
            "{point}: leg 1 on {new}, one of {used:?}"
        );
        for sub in ["m_rmeta_1", "m_rimage_1_imeta"] {
            assert_eq!(pv_of(&bed, sub), new, "{point}: {sub}");
        }
        let repaired = bed.json(&["lv", "repair", "m"]);
        eprintln!("repair after the crash at {point} answered: {repaired}");
        wait_rebuilt(&bed, point);
        let lvs: BTreeSet<String> = bed
            .lvm2(&["lvs", "-a", "--noheadings", "-o", "lv_name", &bed.vg])
            .split_whitespace()
            .map(|n| n.trim_matches(['[', ']']).to_owned())
            .collect();
        assert_eq!(lvs, want, "{point}: lvm2's LVs");
        let devices: BTreeSet<String> = want.iter().map(|n| bed.dm_name(n)).collect();
        assert_eq!(bed.dm_devices(), devices, "{point}: dm devices");
        bed.lvm2(&["vgcfgbackup", "-f", backup.to_str().unwrap(), &bed.vg]);
        let meta = std::fs::read_to_string(&backup).unwrap();
        assert!(
            !meta.contains("recalculate") && !meta.contains("REBUILD"),
            "{point}: {meta}"
        );
        let leg = Path::new("/dev/mapper").join(bed.dm_name("m_rimage_1"));
        assert_pattern(&leg, LEGS ^ 0xff, 0, 4 * MIB);
        assert_pattern(&dev, LEGS ^ 0xff, 0, 4 * MIB);
        bed.lvm2(&["vgreduce", "--removemissing", &bed.vg]);
        bed.agree();
        used.push(new);
    }
    bed.json(&["lv", "deactivate", "m"]);
    bed.stop();
}

/// A mirror's conversions killed with SIGKILL right after their commit (`converted`:
/// the legs added, or removed and kept as wipe LVs, no table reloaded), then the same
/// request after the restart. Added: the restart's reconciliation makes the new leg
/// and reloads the raid table with its rebuild, the retry drops the flags, the leg
/// syncs. Removed: the reconciliation reloads the raid table without the old leg,
/// removes its devices and renames the others' as the metadata names them; the wiper
/// zeroes the old leg's extents (never while its devices were up) and frees them.
/// Each time: no device or LV left over, data intact, lvm2 and lvmd agree.
#[test]
fn a_mirror_conversion_killed_after_its_commit_converges() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-ckill", &[40, 40, 40]);
    bed.start(None);
    bed.json(&["lv", "create", "m", "4MiB", "--mirrors", "1"]);
    let dev = PathBuf::from(
        bed.json(&["lv", "activate", "m"])["device_path"]
            .as_str()
            .unwrap(),
    );
    wait_in_sync(&bed, "m");
    write_pattern(&dev, LEGS ^ 0xf0, 0, 4 * MIB);
    let old0 = pv_of(&bed, "m_rimage_0");
    let names = |legs: usize| -> BTreeSet<String> {
        let mut v = BTreeSet::from(["m".to_owned()]);
        for i in 0..legs {
            v.insert(format!("m_rmeta_{i}"));
            v.insert(format!("m_rimage_{i}"));
        }
        v
    };
    let settled = |bed: &Bed, legs: usize, health: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = bed.listed("m")["mirror_sync"].clone();
            if s["leg_health"] == health && s["sync_percent"].as_f64() == Some(100.0) {
                break;
            }
            assert!(Instant::now() < deadline, "not in sync: {s}");
            std::thread::sleep(Duration::from_millis(250));
        }
        let devices: BTreeSet<String> = names(legs).iter().map(|n| bed.dm_name(n)).collect();
        assert_eq!(bed.dm_devices(), devices, "dm devices");
    };
    bed.stop();
    crash_at(
        &mut bed,
        "converted",
        &["lv", "convert", "m", "--mirrors", "2"],
    );
    assert!(
        bed.log_text().contains("reconciliation"),
        "no reload logged"
    );
    let v = bed.json(&["lv", "convert", "m", "--mirrors", "2"]);
    assert_eq!(v["mirrors"], 2, "{v}");
    settled(&bed, 3, "AAA");
    let backup = bed.loops.dir.path().join("meta.txt");
    bed.lvm2(&["vgcfgbackup", "-f", backup.to_str().unwrap(), &bed.vg]);
    assert!(!std::fs::read_to_string(&backup)
        .unwrap()
        .contains("REBUILD"));
    assert_pattern(
        &Path::new("/dev/mapper").join(bed.dm_name("m_rimage_2")),
        LEGS ^ 0xf0,
        0,
        4 * MIB,
    );
    bed.agree();

    bed.stop();
    crash_at(
        &mut bed,
        "converted",
        &["lv", "convert", "m", "--mirrors", "1", "--pv", &old0],
    );
    let v = bed.json(&["lv", "convert", "m", "--mirrors", "1", "--pv", &old0]);
    assert_eq!(v["mirrors"], 1, "{v}");
    settled(&bed, 2, "AA");
    wait_no_wipe_lv(&bed);
    assert_ne!(pv_of(&bed, "m_rimage_0"), old0);
    assert_eq!(pattern_blocks_on(Path::new(&old0), LEGS ^ 0xf0, 4 * MIB), 0);
    assert_pattern(&dev, LEGS ^ 0xf0, 0, 4 * MIB);
    for i in 0..2 {
        let leg = Path::new("/dev/mapper").join(bed.dm_name(&format!("m_rimage_{i}")));
        assert_pattern(&leg, LEGS ^ 0xf0, 0, 4 * MIB);
    }
    let all: BTreeSet<String> = bed
        .lvm2(&["lvs", "-a", "--noheadings", "-o", "lv_name", &bed.vg])
        .split_whitespace()
        .map(|n| n.trim_matches(['[', ']']).to_owned())
        .collect();
    assert_eq!(all, names(2), "lvm2's LVs");
    bed.agree();
    bed.json(&["lv", "deactivate", "m"]);
    bed.stop();
}

/// A COW snapshot of an active linear volume through the daemon, and a volume restored
/// from it by copying, killed once mid-restore: the snapshot is taken while the volume
/// is active (switched to snapshot-origin online), holds the bytes written before it
/// while the volume is overwritten; the restore killed after its copy (`restore-copied`)
/// is never handed out (activation refused while marked), its retry copies again and
/// the restored volume reads the snapshot's bytes (so do restores killed at
/// `restore-committed` and `restore-recorded`); a second snapshot killed at
/// `cow-activated` is made again by its retry; the snapshot's deletion killed after
/// its commit is finished by the restart (its devices released, the origin back on its
/// own table while it stays active).
#[test]
fn a_cow_snapshot_of_an_active_volume_restores_its_bytes_through_a_kill() {
    let _serial = common::vm_case("vm_daemon");
    let mut bed = Bed::new("vmd-cow", &[128]);
    bed.start(None);
    bed.json(&["lv", "create", "o", "16MiB"]);
    let v = bed.json(&["lv", "activate", "o"]);
    let dev = PathBuf::from(v["device_path"].as_str().unwrap());
    write_pattern(&dev, 0x51, 0, 16 * MIB);
    let s = bed.json(&["snapshot", "create", "s", "--of", "o", "--cow-size", "50%"]);
    assert_eq!(
        (&s["size"], &s["cow_size"]),
        (&Value::from(16 * MIB), &Value::from(8 * MIB))
    );
    let table = bed.dm_table("o").expect("active");
    assert!(table.contains("snapshot-origin"), "{table}");
    write_pattern(&dev, 0x52, 0, 4 * MIB);
    assert_pattern(&dev, 0x52, 0, 4 * MIB);
    // Restore killed after the copy, before its mark is dropped.
    bed.stop();
    crash_at(
        &mut bed,
        "restore-copied",
        &["lv", "create", "r", "16MiB", "--linear", "--from", "s"],
    );
    bed.vgck();
    let out = bed.ctl(&["lv", "activate", "r"]);
    assert!(!out.status.success(), "a restore cut short was handed out");
    let r = bed.json(&["lv", "create", "r", "16MiB", "--linear", "--from", "s"]);
    assert_eq!(r["size"], 16 * MIB, "{r}");
    let rv = bed.json(&["lv", "activate", "r"]);
    let rdev = PathBuf::from(rv["device_path"].as_str().unwrap());
    assert_pattern(&rdev, 0x51, 0, 16 * MIB);
    bed.json(&["lv", "deactivate", "r"]);
    // A restore killed after its commit (nothing copied) and after its mark is dropped:
    // the retry answers a volume holding the snapshot's bytes.
    for (point, name) in [("restore-committed", "r2"), ("restore-recorded", "r3")] {
        bed.stop();
        let restore = ["lv", "create", name, "16MiB", "--linear", "--from", "s"];
        crash_at(&mut bed, point, &restore);
        assert_eq!(bed.json(&restore)["size"], 16 * MIB, "{point}");
        let rv = bed.json(&["lv", "activate", name]);
        let rdev = PathBuf::from(rv["device_path"].as_str().unwrap());
        assert_pattern(&rdev, 0x51, 0, 16 * MIB);
        bed.json(&["lv", "deactivate", name]);
        bed.json(&["lv", "remove", name]);
    }
    // A snapshot killed once active with its origin, still marked pending: the retry
    // makes it again, holding what the origin holds then.
    bed.stop();
    let snap = ["snapshot", "create", "s2", "--of", "o", "--cow-size", "50%"];
    crash_at(&mut bed, "cow-activated", &snap);
    assert_eq!(bed.json(&snap)["cow_size"], 8 * MIB);
    write_pattern(&dev, 0x53, 0, MIB);
    let s2 = PathBuf::from(format!("/dev/{}/s2", bed.vg));
    assert_pattern(&s2, 0x52, 0, 4 * MIB);
    assert_pattern(&s2, 0x51, 4 * MIB, 12 * MIB);
    write_pattern(&dev, 0x52, 0, MIB);
    bed.json(&["snapshot", "delete", "s2"]);
    bed.vgck();
    // The snapshot's deletion killed after its commit: the restart's reconciliation
    // releases its devices; the origin, still active, runs its own table with its data.
    bed.stop();
    crash_at(&mut bed, "cow-removed", &["snapshot", "delete", "s"]);
    let log = bed.log_text();
    let left: Vec<String> = bed
        .dm_devices()
        .into_iter()
        .filter(|d| d.contains("-s") || d.ends_with("-real"))
        .collect();
    assert!(
        left.is_empty(),
        "not released at the restart: {left:?}\n{log}"
    );
    assert_eq!(bed.json(&["snapshot", "delete", "s"])["existed"], false);
    let left: Vec<String> = bed
        .dm_devices()
        .into_iter()
        .filter(|d| d.contains("-s") || d.ends_with("-real"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let table = bed.dm_table("o").expect("still active");
    assert!(table.contains(" linear "), "{table}");
    assert_pattern(&dev, 0x52, 0, 4 * MIB);
    assert_pattern(&dev, 0x51, 4 * MIB, 12 * MIB);
    bed.vgck();
    bed.json(&["lv", "deactivate", "o"]);
    bed.json(&["lv", "remove", "r"]);
    bed.json(&["lv", "remove", "o"]);
    bed.stop();
}
