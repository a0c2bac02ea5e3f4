//! lvm2's device hints (`/run/lvm/hints`, lvm2 2.03 `lib/label/hints.c`).
//!
//! lvm2 commands that only read or change one VG scan just the devices listed in the
//! hints file. Commands that change which devices are PVs, or which VGs exist, empty the
//! hints file and create `newhints`, so the next command scans everything and writes
//! fresh hints. lvmd does the same after such changes; otherwise lvm2 would keep
//! ignoring a PV that lvmd created and report its VG with an `[unknown]` PV.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// lvm2's default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/lvm";

/// Empties the hints file (under its exclusive lock, as lvm2 does) and creates
/// `newhints`. Does nothing when the run directory does not exist: no lvm2 ran here.
pub fn invalidate(run_dir: &Path) -> std::io::Result<()> {
    if !run_dir.is_dir() {
        return Ok(());
    }
    let hints = run_dir.join("hints");
    let mut f: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&hints)?;
    // SAFETY: flock on a descriptor we own; released when `f` is closed.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    f.set_len(0)?;
    writeln!(f, "# Created empty by lvmd pid {}", std::process::id())?;
    File::create(run_dir.join("newhints"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empties_hints_and_asks_for_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hints"), "scan:/dev/loop0 pvid:x\n").unwrap();
        invalidate(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("hints")).unwrap();
        assert!(text.starts_with("# Created empty by lvmd"), "{text}");
        assert!(dir.path().join("newhints").exists());
        // No lvm2 run directory: nothing to do, nothing created.
        let missing = dir.path().join("absent");
        invalidate(&missing).unwrap();
        assert!(!missing.exists());
    }
}
