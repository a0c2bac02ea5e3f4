//! The lvmd daemon binary on a test's config, driven by lvmd-ctl.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `lvmd-ctl ARGS` against the daemon on `socket`.
pub fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvmd-ctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run lvmd-ctl")
}

/// `lvmd-ctl --json ARGS`, parsed. A refusal panics with lvmd-ctl's stderr and `log`
/// (the daemon's log, where the caller keeps one).
pub fn json(socket: &Path, args: &[&str], log: impl FnOnce() -> String) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = ctl(socket, &a);
    if !out.status.success() {
        let log = log();
        let log = if log.is_empty() {
            String::new()
        } else {
            format!("\n--- lvmd log:\n{log}")
        };
        panic!(
            "lvmd-ctl {args:?}: {}{log}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether lvmd runs under its unit's sandbox: in a VM booted with systemd as PID 1
/// (`run-in-vm.sh --systemd`), which says so with LVMD_VM_SYSTEMD=1.
pub fn sandboxed() -> bool {
    std::env::var_os("LVMD_VM_SYSTEMD").is_some_and(|v| v == "1")
}

/// The command that starts lvmd. Sandboxed, lvmd runs as a transient service with the
/// `[Service]` settings of `systemd/lvmd.service`, through `tests/vm/sandboxed.sh`,
/// which stays the caller's child and ends as lvmd ends (see the script).
pub fn lvmd_command() -> Command {
    if sandboxed() {
        let mut cmd = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vm/sandboxed.sh"
        ));
        cmd.arg(env!("CARGO_BIN_EXE_lvmd"));
        cmd
    } else {
        Command::new(env!("CARGO_BIN_EXE_lvmd"))
    }
}

/// The transient service `tests/vm/sandboxed.sh` (the child) runs lvmd as.
fn sandbox_unit(child: &Child) -> String {
    format!("lvmd-sandboxed-{}.service", child.id())
}

/// kill -9 of an lvmd started by [`lvmd_command`], reaped. Sandboxed, SIGKILL goes to
/// the service's main process (it cannot be passed on by the script standing in for it).
pub fn kill9(child: &mut Child) {
    if sandboxed() {
        let unit = sandbox_unit(child);
        let _ = Command::new("systemctl")
            .args(["kill", "--kill-whom=main", "--signal=KILL", &unit])
            .status();
    } else {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// lvmd's own pid (sandboxed, the service's main process rather than the script's).
pub fn lvmd_pid(child: &Child) -> u32 {
    if !sandboxed() {
        return child.id();
    }
    let unit = sandbox_unit(child);
    let out = Command::new("systemctl")
        .args(["show", "--property=MainPID", "--value", &unit])
        .output()
        .expect("systemctl show");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("MainPID")
}

pub struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, socket: &Path) -> Daemon {
        Daemon::start_with(config, socket, &[])
    }

    /// With these environment variables (crash points, test holds).
    pub fn start_with(config: &Path, socket: &Path, env: &[(&str, &str)]) -> Daemon {
        let child = lvmd_command()
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lvmd");
        let d = Daemon {
            child: Some(child),
            socket: socket.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.ctl(&["health"]).status.success() {
            assert!(Instant::now() < deadline, "lvmd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl(&self.socket, args)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        json(&self.socket, args, String::new)
    }

    /// Stops the daemon (SIGTERM) and returns its log.
    pub fn stop(&mut self) -> String {
        let Some(child) = self.child.take() else {
            return String::new();
        };
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "lvmd exited with {:?}", out.status);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Daemon {
    /// Waits for the daemon to die of SIGKILL (a crash point) and returns its log.
    pub fn wait_killed(&mut self) -> String {
        use std::os::unix::process::ExitStatusExt;
        let child = self.child.take().expect("running");
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "lvmd exited with {:?}",
            out.status
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }
}
