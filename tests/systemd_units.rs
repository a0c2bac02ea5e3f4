//! `systemd-analyze verify` on systemd/lvmd.service and lvmd.socket (through
//! systemd/verify.sh, which CI can also run alone). Skipped, said on stderr, where
//! systemd-analyze is missing.

use std::process::Command;

#[test]
fn units_verify() {
    let found = Command::new("systemd-analyze").arg("--version").output();
    if found.is_err() {
        eprintln!("SKIPPED units_verify: systemd-analyze not installed");
        return;
    }
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/verify.sh"))
        .arg(env!("CARGO_BIN_EXE_lvmd"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
