//! `systemd-analyze verify` on systemd/lvmd.service and lvmd.socket (through
//! systemd/verify.sh, which CI can also run alone). Where systemd-analyze is missing:
//! skipped, said loudly on stderr, and a failure under CI (tests/tools).

mod tools;

use std::process::Command;

#[test]
fn units_verify() {
    if !tools::require(
        "units_verify",
        "systemd-analyze",
        "systemd",
        tools::runs("systemd-analyze", &["--version"]),
    ) {
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
