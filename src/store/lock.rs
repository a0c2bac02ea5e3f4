//! lvm2's file locks, taken the way lvm2 takes them, so lvm2 commands and lvmd can
//! change the same volume groups side by side.
//!
//! lvm2 (`lib/locking/file_locking.c`) locks `<dir>/V_<vg>` for a VG and `<dir>/P_global`
//! (`P_orphans` for PVs outside any VG) with `flock`. A releaser unlinks the file, so a
//! locker re-checks after `flock` that the path still names the inode it locked. With
//! `prioritise_write_locks` (lvm2's default) every locker first takes `<file>:aux`
//! exclusively, so a waiting writer is not starved by a stream of readers.
//!
//! The devices file (`/etc/lvm/devices/<name>`) has its own lock, `<dir>/D_<name>`
//! (`lib/device/device_id.c`): a plain `flock` on a file created with mode 0600, no aux
//! file, and never unlinked, since lvm2 does not re-check the inode after waiting.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// lvm2's default `global/locking_dir`.
pub const DEFAULT_LOCK_DIR: &str = "/run/lock/lvm";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// What is locked: lvm2's resource names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// Changes to the set of VGs or to PVs (`P_global`).
    Global,
    /// PVs that belong to no VG (`P_orphans`).
    Orphans,
    Vg(String),
}

impl Resource {
    fn file_name(&self) -> String {
        match self {
            Resource::Global => "P_global".into(),
            Resource::Orphans => "P_orphans".into(),
            Resource::Vg(name) => format!("V_{name}"),
        }
    }
}

/// A held lock; released (and its file removed when nobody else holds it) on drop.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    file: Option<File>,
    /// lvm2 removes VG and global lock files on release, but never `D_` ones.
    unlink: bool,
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Opens and locks `path`, retrying when the file was unlinked under us.
fn lock_file(path: &Path, op: libc::c_int) -> io::Result<File> {
    loop {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o777)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        flock(&file, op)?;
        match std::fs::metadata(path) {
            Ok(m) => {
                let mine = file.metadata()?;
                if m.ino() == mine.ino() && m.dev() == mine.dev() {
                    return Ok(file);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
}

/// Drops the lock and unlinks the file if nobody else holds or waits on it, as lvm2 does.
fn unlock_file(path: &Path, file: File) {
    // SAFETY: flock on a descriptor we own.
    let exclusive = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if exclusive {
        if let (Ok(m), Ok(mine)) = (std::fs::metadata(path), file.metadata()) {
            if m.ino() == mine.ino() && m.dev() == mine.dev() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    drop(file);
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            if self.unlink {
                unlock_file(&self.path, file);
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Locker {
    dir: PathBuf,
}

impl Locker {
    pub fn new(dir: impl Into<PathBuf>) -> Locker {
        Locker { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocks until the lock is held.
    pub fn lock(&self, resource: &Resource, mode: LockMode) -> io::Result<LockGuard> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(resource.file_name());
        let aux_path = self.dir.join(format!("{}:aux", resource.file_name()));
        let aux = lock_file(&aux_path, libc::LOCK_EX)?;
        let op = match mode {
            LockMode::Shared => libc::LOCK_SH,
            LockMode::Exclusive => libc::LOCK_EX,
        };
        // A reader lets go of the aux lock before waiting, a writer after: lvm2's order.
        let file = if mode == LockMode::Shared {
            unlock_file(&aux_path, aux);
            lock_file(&path, op)?
        } else {
            let f = lock_file(&path, op);
            unlock_file(&aux_path, aux);
            f?
        };
        Ok(LockGuard {
            path,
            file: Some(file),
            unlink: true,
        })
    }

    /// Blocks until lvm2's exclusive lock on the devices file `name` is held.
    pub fn lock_devices_file(&self, name: &str) -> io::Result<LockGuard> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("D_{name}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        flock(&file, libc::LOCK_EX)?;
        Ok(LockGuard {
            path,
            file: Some(file),
            unlink: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn exclusive_excludes_and_files_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let locker = Locker::new(dir.path());
        let vg = Resource::Vg("vg0".into());
        let guard = locker.lock(&vg, LockMode::Exclusive).unwrap();
        assert!(dir.path().join("V_vg0").exists());
        let entered = Arc::new(AtomicBool::new(false));
        let t = {
            let (locker, vg, entered) = (locker.clone(), vg.clone(), entered.clone());
            std::thread::spawn(move || {
                let _g = locker.lock(&vg, LockMode::Shared).unwrap();
                entered.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !entered.load(Ordering::SeqCst),
            "shared lock taken during exclusive"
        );
        drop(guard);
        t.join().unwrap();
        assert!(entered.load(Ordering::SeqCst));
        assert!(!dir.path().join("V_vg0").exists());
        assert!(!dir.path().join("V_vg0:aux").exists());
    }

    #[test]
    fn devices_file_lock_excludes_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let locker = Locker::new(dir.path());
        let guard = locker.lock_devices_file("system.devices").unwrap();
        let path = dir.path().join("D_system.devices");
        let other = File::open(&path).unwrap();
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        assert_eq!(rc, -1, "lvm2's shared lock must wait while we write");
        drop(guard);
        // SAFETY: as above.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        assert_eq!(rc, 0);
        assert!(path.exists(), "lvm2 never removes D_ files; neither do we");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!dir.path().join("D_system.devices:aux").exists());
    }

    #[test]
    fn readers_share() {
        let dir = tempfile::tempdir().unwrap();
        let locker = Locker::new(dir.path());
        let a = locker.lock(&Resource::Global, LockMode::Shared).unwrap();
        let b = locker.lock(&Resource::Global, LockMode::Shared).unwrap();
        assert!(dir.path().join("P_global").exists());
        drop((a, b));
    }
}
