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
use std::path::PathBuf;
use std::process::Command;

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
