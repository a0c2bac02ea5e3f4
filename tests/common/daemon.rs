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
        let child = Command::new(env!("CARGO_BIN_EXE_lvmd"))
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
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
