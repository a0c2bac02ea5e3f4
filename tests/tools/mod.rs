//! Tests that need a tool from outside the project (PyYAML, dpkg-deb, ldd,
//! systemd-analyze, systemd-socket-activate). `packaging/install-deps.sh` installs them
//! all. On a developer machine without one the test says so loudly on stderr and checks
//! nothing; under CI (the `CI` environment variable set, as `.ci/run` does) a missing
//! tool fails the test, so a CI run can never pass by checking nothing.
#![allow(dead_code)]

use std::io::Write as _;

/// Whether `tool` is there (`probe` succeeded); if not, fails under CI and otherwise
/// prints why `test` checked nothing. `package` is the Debian package to install.
pub fn require(test: &str, tool: &str, package: &str, probe: bool) -> bool {
    if probe {
        return true;
    }
    let why = format!("{test} needs {tool} (Debian: apt-get install {package}; packaging/install-deps.sh installs it)");
    if ci() {
        panic!("{why}; CI is set, so a missing tool is a failure");
    }
    // Straight to stderr, not eprintln!: the test harness captures that for passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {why}: this test checked NOTHING (under CI it fails) ***\n"
    );
    false
}

/// `CI` set to anything but empty, `0` or `false`.
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Whether `cmd args...` runs and exits 0.
pub fn runs(cmd: &str, args: &[&str]) -> bool {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}
