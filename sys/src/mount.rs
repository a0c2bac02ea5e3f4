//! The kernel's file-descriptor mount API (Linux ≥ 5.2; `mount_setattr` ≥ 5.12) and the
//! `statx` fields that say which mount a file descriptor is on.
//!
//! Every call works on file descriptors, never on a path the kernel would look up
//! again: a mount is made as a detached mount object (`fsmount`, `open_tree`), set up
//! while detached, and attached onto a descriptor of the target (`move_mount`), so it
//! lands exactly where that descriptor points, whatever happens to the path meanwhile.
//!
//! Why by hand: neither `nix` (0.31) nor `sys-mount` wraps `fsopen`/`fsconfig`/
//! `fsmount`/`open_tree`/`move_mount`/`mount_setattr` or `statx`'s mount id; both offer
//! only `mount(2)` by path, which looks the target up again and so would undo the
//! confinement of the daemon's paths (`daemon::paths`, openat2 `RESOLVE_BENEATH`). What
//! the crates do offer is used: `umount2` is nix's.

use crate::cvt;
use nix::mount::{umount2, MntFlags};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

// uapi/linux/mount.h; spelled out here rather than taken from libc, whose export of
// these has moved between releases.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// Mount attributes (`MOUNT_ATTR_*`), for [`fsmount`] and [`set_attributes`].
pub mod attr {
    pub const RDONLY: u64 = 0x01;
    pub const NOSUID: u64 = 0x02;
    pub const NODEV: u64 = 0x04;
    pub const NOEXEC: u64 = 0x08;
    /// The mask of the three atime modes below (relatime is 0).
    pub const ATIME_MASK: u64 = 0x70;
    pub const RELATIME: u64 = 0x00;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) })
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

const EMPTY: &CStr = c"";

/// A detached copy (not recursive) of the mount tree at `fd`, for a bind mount.
pub fn clone_tree(fd: impl AsFd) -> io::Result<OwnedFd> {
    // SAFETY: a valid descriptor and a NUL-terminated empty path.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_fd().as_raw_fd(),
            EMPTY.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    })
}

/// Sets (`set`) and clears (`clear`) mount attributes of the mount `fd` (not recursive).
pub fn set_attributes(fd: impl AsFd, set: u64, clear: u64) -> io::Result<()> {
    let a = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid descriptor, an empty path and a struct of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_fd().as_raw_fd(),
            EMPTY.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &a as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(rc as libc::c_int).map(drop)
}

/// Attaches the detached mount `mount` onto the file or directory `target`.
pub fn attach(mount: impl AsFd, target: impl AsFd) -> io::Result<()> {
    // SAFETY: valid descriptors and NUL-terminated empty paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_fd().as_raw_fd(),
            EMPTY.as_ptr(),
            target.as_fd().as_raw_fd(),
            EMPTY.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    cvt(rc as libc::c_int).map(drop)
}

/// A filesystem context being configured (`fsopen`): source and options go in one by
/// one, then [`FsContext::mount`] makes the superblock and a detached mount of it.
/// The kernel explains a refused option in the context's log, which errors carry.
pub struct FsContext(OwnedFd);

impl FsContext {
    pub fn new(fs_type: &str) -> io::Result<FsContext> {
        let t = cstr(fs_type)?;
        // SAFETY: a NUL-terminated name.
        owned(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) }).map(FsContext)
    }

    fn config(
        &self,
        cmd: libc::c_uint,
        key: Option<&CStr>,
        value: Option<&CStr>,
    ) -> io::Result<()> {
        // SAFETY: a valid descriptor; key and value are NUL-terminated or null.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                cmd,
                key.map_or(std::ptr::null(), CStr::as_ptr),
                value.map_or(std::ptr::null(), CStr::as_ptr),
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(self.explained(e));
        }
        Ok(())
    }

    /// `key=value` (`source`, `errors`, ...).
    pub fn set_string(&self, key: &str, value: &str) -> io::Result<()> {
        let (k, v) = (cstr(key)?, cstr(value)?);
        self.config(FSCONFIG_SET_STRING, Some(&k), Some(&v))
    }

    /// A flag option (`ro`, `discard`, ...).
    pub fn set_flag(&self, key: &str) -> io::Result<()> {
        let k = cstr(key)?;
        self.config(FSCONFIG_SET_FLAG, Some(&k), None)
    }

    /// Makes the superblock and returns a detached mount of it with `attributes`.
    pub fn mount(self, attributes: u64) -> io::Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, None)?;
        // SAFETY: a valid, configured context descriptor.
        owned(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attributes as libc::c_uint,
            )
        })
        .map_err(|e| self.explained(e))
    }

    /// `e` with the kernel's messages about it, read from the context's log.
    fn explained(&self, e: io::Error) -> io::Error {
        let mut msgs = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            // SAFETY: reading into a buffer we own; the log is read one message a call.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let m = String::from_utf8_lossy(&buf[..n as usize]);
            // "e ext4: Unrecognized mount option ..." (e/w/i: error, warning, info).
            msgs.push(m.get(2..).unwrap_or(&m).trim().to_owned());
        }
        if msgs.is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{e}: {}", msgs.join("; ")))
        }
    }
}

/// Which mount a file descriptor is on, from `statx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOf {
    /// The mount's id, as in the first field of `/proc/self/mountinfo`.
    pub mount_id: u64,
    /// Whether the descriptor is the root of that mount (something is mounted exactly
    /// there).
    pub is_root: bool,
}

pub fn mount_of(fd: impl AsFd) -> io::Result<MountOf> {
    // SAFETY: statx writes into the zeroed struct we own.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            fd.as_fd().as_raw_fd(),
            EMPTY.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    cvt(rc)?;
    let root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if st.stx_mask & libc::STATX_MNT_ID == 0 || st.stx_attributes_mask & root == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel does not report mount ids (Linux 5.8 or later needed)",
        ));
    }
    Ok(MountOf {
        mount_id: st.stx_mnt_id,
        is_root: st.stx_attributes & root != 0,
    })
}

/// Unmounts what is mounted on `name` in the directory `dir` (not lazily; a symlink
/// there is not followed). The path goes through `dir`'s `/proc/self/fd` link, so the
/// lookup starts exactly at that directory. (A descriptor on the mount itself cannot
/// serve: it holds the mount, which the kernel then finds busy.)
pub fn unmount_at(dir: impl AsFd, name: &std::ffi::OsStr) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if name.as_bytes().contains(&b'/') || name.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ));
    }
    let mut p = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    let p = CString::new(p).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))?;
    umount2(p.as_c_str(), MntFlags::UMOUNT_NOFOLLOW).map_err(io::Error::from)
}

/// Detaches the mount `fd` is (lazily: it goes from the tree at once, and away when
/// its last user, this descriptor included, lets go). For undoing a mount just made.
pub fn detach(fd: impl AsFd) -> io::Result<()> {
    let p = cstr(&format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))?;
    // No UMOUNT_NOFOLLOW: the magic link must be followed, to the descriptor's mount.
    umount2(p.as_c_str(), MntFlags::MNT_DETACH).map_err(io::Error::from)
}
