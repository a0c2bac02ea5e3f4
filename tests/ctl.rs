//! lvmd-ctl (the built binary) against a daemon serving the simulated engine in this
//! process; and the lvmd binary's refusal of a bad configuration. No root needed.

mod harness;
mod tools;

use harness::*;
use lvmd::socket::AccessPolicy;
use serde_json::Value;
use std::process::{Command, Output};

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvmd-ctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .output()
        .expect("run lvmd-ctl")
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let out = ctl(d, args);
    assert!(
        out.status.success(),
        "lvmd-ctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(d: &Daemon, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = ok(d, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// `lvmd-ctl snapshot create|list|delete` and `lv create --from` on a thin class: the
/// snapshot is listed as one and not as a volume, a restore and a clone are volumes,
/// the source's removal keeps its snapshot, and refusals carry the daemon's code.
#[test]
fn snapshots_and_volumes_made_from_them() {
    let (d, _sim) = thin_sim_daemon();
    json(&d, &["lv", "create", "a", "64MiB"]);
    let s = json(&d, &["snapshot", "create", "s1", "--of", "a"]);
    assert_eq!(
        (&s["name"], &s["source_volume"], &s["size"], &s["read_only"]),
        (
            &Value::from("s1"),
            &Value::from("a"),
            &Value::from(64 * MIB),
            &Value::from(true)
        )
    );
    // The same again: the same snapshot.
    assert_eq!(
        json(&d, &["snapshot", "create", "s1", "--of", "a"])["uuid"],
        s["uuid"]
    );
    let table = ok(&d, &["snapshot", "list"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["VG", "SNAPSHOT", "SOURCE", "SIZE", "CREATED", "MODE"]
    );
    assert!(table.contains("s1") && table.contains("ro"), "{table}");
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(json(&d, &["lv", "list"])), ["pool", "a"]);
    let r = json(&d, &["lv", "create", "r", "128MiB", "--from", "s1"]);
    assert_eq!(
        (&r["layout"], &r["size"]),
        (&Value::from("thin"), &Value::from(128 * MIB))
    );
    let c = json(&d, &["lv", "create", "c", "0", "--from", "a"]);
    assert_eq!(c["size"], 64 * MIB);
    for (args, code) in [
        (
            &["snapshot", "create", "s1", "--of", "c"][..],
            "AlreadyExists",
        ),
        (
            &["snapshot", "create", "s2", "--of", "nope"][..],
            "NotFound",
        ),
        (
            &["lv", "create", "r2", "8MiB", "--from", "s1"][..],
            "OutOfRange",
        ),
        (&["snapshot", "delete", "r"][..], "FailedPrecondition"),
    ] {
        let out = ctl(&d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(code),
            "{args:?}: {err}"
        );
    }
    // The source goes; the snapshot stays, and goes when asked (twice: no error).
    json(&d, &["lv", "remove", "a"]);
    assert_eq!(names(json(&d, &["snapshot", "list"])), ["s1"]);
    assert_eq!(json(&d, &["snapshot", "delete", "s1"])["existed"], true);
    assert_eq!(json(&d, &["snapshot", "delete", "s1"])["existed"], false);
    assert_eq!(names(json(&d, &["lv", "list"])), ["pool", "r", "c"]);
}

#[test]
fn snapshot_groups_through_the_api() {
    let (d, _sim) = thin_sim_daemon();
    for v in ["a", "b"] {
        json(&d, &["lv", "create", v, "64MiB"]);
    }
    let g = json(
        &d,
        &[
            "snapshot", "group", "create", "g", "--of", "a", "--of", "b:snap-b",
        ],
    );
    let members: Vec<(String, String, String)> = g["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["source_volume"].as_str().unwrap().to_owned(),
                s["group"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [("g-a", "a", "g"), ("snap-b", "b", "g")]
        .map(|(n, s, g)| (n.to_owned(), s.to_owned(), g.to_owned()));
    assert_eq!(members, want);
    // The same again: the same group; other members: ALREADY_EXISTS.
    let again = json(
        &d,
        &[
            "snapshot", "group", "create", "g", "--of", "b:snap-b", "--of", "a",
        ],
    );
    assert_eq!(again["snapshots"], g["snapshots"]);
    assert_eq!(
        json(&d, &["snapshot", "group", "get", "g"])["snapshots"],
        g["snapshots"]
    );
    for (args, code) in [
        (
            &["snapshot", "group", "create", "g", "--of", "a"][..],
            "AlreadyExists",
        ),
        (
            &["snapshot", "group", "create", "h", "--of", "nope"][..],
            "NotFound",
        ),
        (
            &[
                "snapshot", "group", "create", "h", "--of", "a", "--of", "a:x",
            ][..],
            "InvalidArgument",
        ),
        (&["snapshot", "group", "get", "h"][..], "NotFound"),
    ] {
        let out = ctl(&d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(code),
            "{args:?}: {err}"
        );
    }
    // Snapshots like others: listed; the group deleted whole, twice without error.
    let table = ok(&d, &["snapshot", "list"]);
    assert!(table.contains("g-a") && table.contains("snap-b"), "{table}");
    assert_eq!(
        json(&d, &["snapshot", "group", "delete", "g"])["existed"],
        true
    );
    assert_eq!(
        json(&d, &["snapshot", "group", "delete", "g"])["existed"],
        false
    );
    assert_eq!(json(&d, &["snapshot", "list"]), serde_json::json!([]));
}

#[test]
fn tables_and_json() {
    let (d, _sim) = sim_daemon(AccessPolicy::default());
    assert_eq!(ok(&d, &["health"]).trim(), "SERVING");
    assert_eq!(json(&d, &["health"])["status"], "SERVING");

    let vgs = ok(&d, &["vg", "list"]);
    let mut lines = vgs.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["VG", "CLASS", "PVS", "LVS", "SIZE", "FREE", "EXTENT"]
    );
    assert!(lines.next().unwrap().starts_with("vg-fast  fast"), "{vgs}");

    let v = json(&d, &["lv", "create", "a", "64MiB", "--tag", "pvc=x"]);
    assert_eq!(v["name"], "a");
    assert_eq!(v["size"], 64 * MIB);
    assert_eq!(v["layout"], "linear");
    assert_eq!(v["volume_group"], "vg-fast");
    assert_eq!(v["tags"][0], "pvc=x");
    let w = json(&d, &["lv", "create", "w", "1G", "--class", "wide"]);
    assert_eq!(
        (w["layout"].as_str(), w["stripes"].as_u64()),
        (Some("striped"), Some(2))
    );
    let s = json(
        &d,
        &[
            "lv",
            "create",
            "s",
            "8M",
            "--vg",
            "vg-wide",
            "--stripes",
            "2",
            "--stripe-size",
            "128KiB",
        ],
    );
    assert_eq!(s["stripe_size"], 128 << 10);
    let bytes = json(
        &d,
        &[
            "lv", "create", "b", "4194304", "--linear", "--class", "wide",
        ],
    );
    assert_eq!(
        (bytes["size"].as_u64(), bytes["layout"].as_str()),
        (Some(4 * MIB), Some("linear"))
    );

    // A mirror with dm-integrity under its copies; --integrity alone is no layout.
    let m = json(
        &d,
        &[
            "lv",
            "create",
            "m",
            "8M",
            "--class",
            "wide",
            "--mirrors",
            "1",
            "--integrity",
        ],
    );
    assert_eq!(
        (m["layout"].as_str(), m["integrity"].as_bool()),
        (Some("raid1"), Some(true))
    );
    let p = json(
        &d,
        &[
            "lv",
            "create",
            "p",
            "8M",
            "--class",
            "wide",
            "--mirrors",
            "1",
        ],
    );
    assert_eq!(p["integrity"], false);
    let out = ctl(&d, &["lv", "create", "q", "8M", "--integrity"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--mirrors"),
        "{out:?}"
    );

    let table = ok(&d, &["lv", "list"]);
    assert!(table.starts_with("VG "), "{table}");
    assert!(table.contains("raid1 2 legs+integrity"), "{table}");
    for lv in ["m", "p"] {
        let gone = json(&d, &["lv", "remove", lv, "--class", "wide"]);
        assert_eq!(gone["existed"], true);
    }
    assert!(
        table.contains("vg-wide  w   1GiB   striped 2x64KiB"),
        "{table}"
    );
    let list = json(&d, &["lv", "list", "--class", "fast"]);
    assert_eq!(list.as_array().unwrap().len(), 1);

    let r = json(&d, &["lv", "resize", "a", "128M"]);
    assert_eq!(r["size"], 128 * MIB);
    let act = json(&d, &["lv", "activate", "a"]);
    assert_eq!(
        (act["active"].as_bool(), act["device_path"].as_str()),
        (Some(true), Some("/dev/lvmd-sim/vg-fast-a"))
    );
    let x = json(&d, &["lv", "expand", "a", "160M"]);
    assert_eq!(
        (x["size"].as_u64(), x["active"].as_bool()),
        (Some(160 << 20), Some(true))
    );
    assert_eq!(x["filesystem_size_bytes"], 0);
    let de = json(&d, &["lv", "deactivate", "a"]);
    assert_eq!(de["active"], false);

    let cap = json(&d, &["capacity"]);
    let fast = &cap.as_array().unwrap()[0];
    assert_eq!(fast["device_class"], "fast");
    assert_eq!(fast["free"], (1020 - 160) * MIB);
    assert!(ok(&d, &["capacity", "--class", "wide"]).contains("vg-wide"));

    // One line of JSON per update.
    let watched = ok(&d, &["--json", "watch", "--class", "fast", "--count", "1"]);
    let first: Value = serde_json::from_str(watched.lines().next().unwrap()).unwrap();
    assert_eq!(first[0]["free"], (1020 - 160) * MIB);

    assert_eq!(json(&d, &["lv", "remove", "a"])["existed"], true);
    assert_eq!(ok(&d, &["lv", "remove", "a"]).trim(), "a did not exist");

    let created = json(&d, &["vg", "create", "vg-x", "/dev/sim/spare0"]);
    assert_eq!(created["physical_volumes"][0]["device"], "/dev/sim/spare0");
    let extended = json(&d, &["vg", "extend", "vg-x", "/dev/sim/spare1"]);
    assert_eq!(extended["physical_volumes"].as_array().unwrap().len(), 2);
}

/// `lvmd-ctl pool grow`: a thin class's pool grows online (data and metadata), the
/// capacity shows it at once, the same size again changes nothing, and smaller, a
/// class without a pool, or no size at all are refused with the server's reason.
#[test]
fn a_thin_pool_grows_through_lvmd_ctl() {
    let (d, _sim) = thin_sim_daemon();
    let before = json(&d, &["capacity", "--class", "thin"]);
    assert_eq!(before[0]["thin_pool"]["data"], 512 * MIB, "{before}");
    let grown = json(
        &d,
        &[
            "pool",
            "grow",
            "thin",
            "--data",
            "640MiB",
            "--metadata",
            "8MiB",
        ],
    );
    assert_eq!(grown["thin_pool"]["data"], 640 * MIB, "{grown}");
    assert_eq!(grown["thin_pool"]["metadata"], 8 * MIB, "{grown}");
    assert_eq!(grown["thin_pool"]["provisionable"], 1280 * MIB, "{grown}");
    assert_eq!(
        json(&d, &["capacity", "--class", "thin"])[0]["thin_pool"]["data"],
        640 * MIB
    );
    // The same again: success, nothing changes.
    let again = json(&d, &["pool", "grow", "thin", "--data", "640MiB"]);
    assert_eq!(again["free"], grown["free"]);
    // Refusals, each with the server's reason.
    for (args, why) in [
        (
            &["pool", "grow", "thin", "--data", "256MiB"][..],
            "never shrink",
        ),
        (&["pool", "grow", "nope", "--data", "1GiB"][..], "nope"),
        (&["pool", "grow", "thin", "--data", "64GiB"][..], "vg-thin"),
    ] {
        let out = ctl(&d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{args:?}: {err}"
        );
    }
    // No size at all: refused by lvmd-ctl itself.
    assert!(!ctl(&d, &["pool", "grow", "thin"]).status.success());
    // A class without a pool.
    let (plain, _sim) = sim_daemon(AccessPolicy::default());
    let out = ctl(&plain, &["pool", "grow", "fast", "--data", "1GiB"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no thin pool"),
        "{err}"
    );
}

#[test]
fn errors_exit_non_zero_with_the_servers_message() {
    let (d, _sim) = sim_daemon(AccessPolicy::default());
    ok(&d, &["lv", "create", "a", "8M"]);
    for (args, words) in [
        (
            vec!["lv", "create", "a", "16M"],
            vec!["AlreadyExists", "vg-fast/a"],
        ),
        (
            vec!["lv", "create", "z", "0"],
            vec!["InvalidArgument", "size"],
        ),
        (
            vec!["lv", "create", "big", "5G"],
            vec!["OutOfRange", "vg-fast"],
        ),
        (
            vec!["lv", "create", "n", "8M", "--class", "nvme"],
            vec!["NotFound", "nvme"],
        ),
        (
            vec!["lv", "resize", "ghost", "8M"],
            vec!["NotFound", "ghost"],
        ),
        (
            vec!["vg", "create", "vg-y", "/dev/sim/fast0"],
            vec!["FailedPrecondition", "vg-fast"],
        ),
    ] {
        let out = ctl(&d, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in words {
            assert!(err.contains(w), "{args:?}: {err}");
        }
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A size lvmd-ctl cannot parse never reaches the daemon.
    let out = ctl(&d, &["lv", "create", "q", "12Q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("12Q"));
    // No daemon.
    let out = Command::new(env!("CARGO_BIN_EXE_lvmd-ctl"))
        .args(["--socket", "/nonexistent/lvmd.sock", "vg", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/lvmd.sock"));
}

#[test]
fn inspect_still_works_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("blank.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lvmd-ctl"))
        .args(["--socket", "/nonexistent/lvmd.sock", "inspect", "--json"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.is_object(), "{v}");
}

#[test]
fn the_daemon_refuses_a_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        (
            "[device_classes.ssd]\nvolume_group = \"vg\"\nstripes = 0\n",
            "device_classes.ssd.stripes",
        ),
        ("sockett = \"/x\"\n", "sockett"),
        ("allowed_uids = \"root\"\n", "allowed_uids"),
    ] {
        let cfg = dir.path().join("lvmd.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_lvmd"))
            .arg("--config")
            .arg(&cfg)
            .arg("--simulate")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key) && err.contains("lvmd.toml"),
            "{text}: {err}"
        );
    }
}

#[test]
fn the_daemon_binary_serves_a_simulated_engine() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/lvmd.sock");
    let cfg = dir.path().join("lvmd.toml");
    std::fs::write(
        &cfg,
        format!(
            "mount_roots = [\"{}\"]\n[device_classes.ssd]\nvolume_group = \"vg-ssd\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_lvmd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(&socket)
        .args(["--simulate", "--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lvmd-ctl"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ctl(&["health"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let m = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
        0o660
    );
    assert!(ctl(&["lv", "create", "a", "1G"]).status.success());
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!socket.exists(), "the socket is removed on exit");
    // JSON logs, one object per line.
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("created logical volume"))
        .expect(&log);
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["lv"], "a");
}

/// systemd's side of the protocol: `systemd-socket-activate` binds the socket and starts
/// lvmd on the first connection with it as fd 3 (LISTEN_FDS/LISTEN_PID); lvmd reports
/// READY=1 on NOTIFY_SOCKET. Skipped (said loudly on stderr) where systemd's tools are
/// missing, and a failure then under CI (tests/tools).
#[test]
fn socket_activation_and_readiness() {
    let tool = which("systemd-socket-activate");
    if !tools::require(
        "socket_activation_and_readiness",
        "systemd-socket-activate",
        "systemd",
        tool.is_ok(),
    ) {
        return;
    }
    let tool = tool.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("activated.sock");
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let cfg = dir.path().join("lvmd.toml");
    // The config names another path: the socket systemd passes wins.
    std::fs::write(
        &cfg,
        format!(
            "socket = \"{}\"\nmount_roots = [\"{}\"]\n[device_classes.ssd]\nvolume_group = \"vg-ssd\"\n",
            dir.path().join("unused.sock").display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut activator = Command::new(tool)
        .arg("--listen")
        .arg(&socket)
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        .arg(env!("CARGO_BIN_EXE_lvmd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--simulate")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no socket from the activator"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The first connection starts lvmd, which then serves it.
    let out = Command::new(env!("CARGO_BIN_EXE_lvmd-ctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("health")
        .output()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 from lvmd");
    assert_eq!(&buf[..n], b"READY=1\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("unused.sock").exists());
    // SAFETY: the activator exec'd lvmd in place, so this pid is lvmd's.
    unsafe { libc::kill(activator.id() as i32, libc::SIGTERM) };
    assert!(activator.wait().unwrap().success());
    let n = notify.recv(&mut buf).expect("STOPPING=1 from lvmd");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(())
}
