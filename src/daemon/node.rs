//! Node-side volume work as a trait: filesystems, mounts, stats. [`HostNode`] does it on
//! this machine (mount(2), libblkid, mkfs run as a program); [`SimNode`] remembers it.
//!
//! Policy (which paths, when to format) is not here but in `node_work`: these are the
//! bare operations.

use super::engine::PathStats;
use crate::probe::{Contents, Signature, Usage};
use crate::units::Bytes;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Filesystems lvmd makes.
pub const FILESYSTEMS: &[&str] = &["ext4", "xfs"];

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("path {path}: {why}")]
    BadPath { path: PathBuf, why: String },
    #[error("{path} not found")]
    NotFound { path: PathBuf },
    #[error("{path}: {why}")]
    Busy { path: PathBuf, why: String },
    #[error("filesystem type {fs_type:?} is not supported (only {})", FILESYSTEMS.join(", "))]
    UnsupportedFs { fs_type: String },
    #[error("mount option {option:?}: {why}")]
    BadOption { option: String, why: String },
    #[error("{device}: holds {what}; refusing to make a filesystem on it")]
    DeviceNotEmpty { device: PathBuf, what: String },
    #[error("{program} {device}: {why}")]
    Command {
        program: String,
        device: PathBuf,
        why: String,
    },
    #[error(transparent)]
    Probe(#[from] crate::probe::ProbeError),
    #[error("{path}: cannot {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, NodeError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A mount point for a filesystem or a bind-mounted directory.
    Directory,
    /// A file for a bind-mounted block device.
    File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Filesystem { fs_type: String },
    Bind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    pub source: PathBuf,
    pub target: PathBuf,
    pub kind: MountKind,
    pub read_only: bool,
    /// mount(8)-style options (already split at commas).
    pub options: Vec<String>,
}

/// What is mounted at a target, compared with what the caller wants there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    NotMounted,
    /// `source` is mounted there, read-only or not.
    Same {
        read_only: bool,
    },
    /// Something else is, described.
    Other(String),
}

/// What lvmd writes as the `lo_file_name` of a loop device it attaches for a read-only
/// block publish (followed by the device's path), so that it only ever detaches loop
/// devices it made for that.
pub const READ_ONLY_LOOP_LABEL: &str = "lvmd-ro";

/// A loop device over a block device, as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDev {
    /// `/dev/loopN`.
    pub path: PathBuf,
    /// The device it reads from (`/dev/dm-N` on the host).
    pub backing: PathBuf,
    pub read_only: bool,
    /// Attached by lvmd for a read-only publish (its label is [`READ_ONLY_LOOP_LABEL`]).
    pub lvmd: bool,
}

pub trait Node: Send + Sync + 'static {
    /// Every signature on `device`, and its size ([`crate::probe`]).
    fn probe(&self, device: &Path) -> Result<Contents>;
    /// Makes a filesystem. `again`: over what an interrupted mkfs of lvmd's left, which
    /// mkfs.xfs would otherwise refuse to overwrite.
    fn make_filesystem(&self, device: &Path, fs_type: &str, again: bool) -> Result<()>;
    fn mount(&self, req: &MountRequest) -> Result<()>;
    fn unmount(&self, target: &Path) -> Result<()>;
    /// Whether `source` (a device, or a directory for binds) is mounted at `target`.
    fn mount_state(&self, target: &Path, source: &Path) -> Result<MountState>;
    /// Whether anything is mounted at `target`.
    fn is_mount_point(&self, target: &Path) -> Result<bool>;
    /// Creates the target (and missing parents) unless it exists with the right kind.
    fn create_target(&self, target: &Path, kind: TargetKind) -> Result<()>;
    /// Removes an unmounted target (an empty directory or a file); missing is fine.
    fn remove_target(&self, target: &Path) -> Result<()>;
    fn stats(&self, path: &Path) -> Result<PathStats>;
    /// Grows the filesystem `fs_type` on `device`, mounted at `target`, to fill the
    /// device (online: ext4 with `resize2fs <device>`, xfs with `xfs_growfs <target>`).
    fn grow_filesystem(&self, device: &Path, target: &Path, fs_type: &str) -> Result<()>;

    /// Attaches a read-only loop device over the block device `device`, labelled as
    /// lvmd's ([`READ_ONLY_LOOP_LABEL`]); returns its path.
    fn attach_read_only_loop(&self, device: &Path) -> Result<PathBuf>;
    /// Detaches a loop device (lazily if something has it open); not attached is fine.
    fn detach_loop(&self, loop_dev: &Path) -> Result<()>;
    /// The attached loop device whose node is bind-mounted at `target`, if one is.
    fn loop_at(&self, target: &Path) -> Result<Option<LoopDev>>;
    /// The attached loop devices reading from `device`.
    fn loops_over(&self, device: &Path) -> Result<Vec<LoopDev>>;
    /// Who uses a loop device besides its open file descriptors (which the kernel does
    /// not show): mounts of it or of its node, and holders (another dm table), described.
    fn loop_users(&self, loop_dev: &Path) -> Result<Vec<String>>;
    /// Makes a loop device take its backing device's current size (after a grow).
    fn refresh_loop_size(&self, loop_dev: &Path) -> Result<()>;
    /// Whether two paths name the same device (or file).
    fn same_device(&self, a: &Path, b: &Path) -> Result<bool>;
}

/// Splits options at commas and sorts them into mount(2) flags and filesystem data.
pub fn parse_mount_options(options: &[String]) -> Result<(libc::c_ulong, String)> {
    let mut flags: libc::c_ulong = 0;
    let mut data: Vec<&str> = Vec::new();
    for opt in options.iter().flat_map(|o| o.split(',')) {
        let opt = opt.trim();
        let flag = match opt {
            "" | "defaults" | "rw" | "async" | "atime" | "dev" | "exec" | "suid" => 0,
            "ro" => libc::MS_RDONLY,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "relatime" => libc::MS_RELATIME,
            "strictatime" => libc::MS_STRICTATIME,
            "lazytime" => libc::MS_LAZYTIME,
            "nodev" => libc::MS_NODEV,
            "nosuid" => libc::MS_NOSUID,
            "noexec" => libc::MS_NOEXEC,
            "sync" => libc::MS_SYNCHRONOUS,
            "dirsync" => libc::MS_DIRSYNC,
            "bind" | "rbind" | "remount" | "move" | "shared" | "rshared" | "private"
            | "rprivate" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                return Err(NodeError::BadOption {
                    option: opt.into(),
                    why: "changes what kind of mount this is; not accepted".into(),
                })
            }
            other => {
                if other.chars().any(|c| c.is_control()) {
                    return Err(NodeError::BadOption {
                        option: other.into(),
                        why: "contains a control character".into(),
                    });
                }
                data.push(other);
                0
            }
        };
        flags |= flag;
    }
    Ok((flags, data.join(",")))
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| NodeError::BadPath {
        path: p.to_owned(),
        why: "contains a NUL byte".into(),
    })
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> NodeError + 'a {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            NodeError::NotFound {
                path: path.to_owned(),
            }
        } else {
            NodeError::Io {
                path: path.to_owned(),
                what,
                source,
            }
        }
    }
}

/// Undoes the octal escapes of `/proc/self/mountinfo` (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&out),
    ))
}

/// One line of mountinfo, the fields a mount point is judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    point: PathBuf,
    fs: String,
    source: String,
    /// The mount's own `ro` flag (a bind can be read-only on a read-write filesystem).
    read_only: bool,
}

fn mountinfo_entries(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                point: unescape_mountinfo(fields.get(4)?),
                read_only: fields.get(5)?.split(',').any(|o| o == "ro"),
                fs: fields.get(dash + 1)?.to_string(),
                source: fields.get(dash + 2)?.to_string(),
            })
        })
        .collect()
}

/// One line of mountinfo, the fields loop devices are found by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountLine {
    /// `major:minor` of the mounted filesystem.
    dev: String,
    /// The path inside that filesystem mounted there (`/loop3` for a bind of
    /// `/dev/loop3`).
    root: PathBuf,
    mount_point: PathBuf,
    source: String,
}

fn mountinfo_lines(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some(MountLine {
                dev: fields.get(2)?.to_string(),
                root: unescape_mountinfo(fields.get(3)?),
                mount_point: unescape_mountinfo(fields.get(4)?),
                source: fields.get(dash + 2)?.to_string(),
            })
        })
        .collect()
}

/// `/dev/<kernel name>` of the block device `major:minor` (devtmpfs makes that node
/// whether or not udev runs).
fn block_node(major: u32, minor: u32) -> std::io::Result<PathBuf> {
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}"))?;
    let name = link.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "odd /sys/dev/block link")
    })?;
    Ok(Path::new("/dev").join(name))
}

/// This machine.
#[derive(Debug, Default)]
pub struct HostNode;

impl HostNode {
    fn run(program: &str, args: &[&str], device: &Path) -> Result<std::process::Output> {
        Command::new(program)
            .args(args)
            .arg(device)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| NodeError::Command {
                program: program.into(),
                device: device.to_owned(),
                why: format!("cannot run it: {e}"),
            })
    }

    fn mount_entry(target: &Path) -> Result<Option<MountEntry>> {
        let p = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(p).map_err(io(p, "read"))?;
        // The last entry for a mount point is the one on top.
        Ok(mountinfo_entries(&text)
            .into_iter()
            .rev()
            .find(|m| m.point == target))
    }

    fn loop_dev(path: &Path) -> Result<Option<LoopDev>> {
        let Some(st) = lvmd_sys::loopdev::status(path).map_err(io(path, "inspect"))? else {
            return Ok(None);
        };
        let backing = if st.backing_rdev != 0 {
            let rdev = st.backing_rdev as libc::dev_t;
            block_node(libc::major(rdev), libc::minor(rdev)).map_err(io(path, "inspect"))?
        } else {
            lvmd_sys::loopdev::backing_file(path)
                .map_err(io(path, "inspect"))?
                .unwrap_or_default()
        };
        Ok(Some(LoopDev {
            path: path.to_owned(),
            backing,
            read_only: st.read_only,
            lvmd: st.file_name.starts_with(READ_ONLY_LOOP_LABEL),
        }))
    }
}

impl Node for HostNode {
    fn probe(&self, device: &Path) -> Result<Contents> {
        Ok(crate::probe::probe(device)?)
    }

    fn make_filesystem(&self, device: &Path, fs_type: &str, again: bool) -> Result<()> {
        let (program, args): (&str, &[&str]) = match fs_type {
            // -F: mkfs.ext4 would otherwise ask on a terminal about a whole device.
            "ext4" => ("mkfs.ext4", &["-q", "-F"]),
            // Not forced the first time: mkfs.xfs refusing a signature is one more guard.
            "xfs" if again => ("mkfs.xfs", &["-q", "-f"]),
            "xfs" => ("mkfs.xfs", &["-q"]),
            other => {
                return Err(NodeError::UnsupportedFs {
                    fs_type: other.into(),
                })
            }
        };
        let out = Self::run(program, args, device)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            tracing::error!(program, device = %device.display(), "failed: {stderr}");
            // The first line says why; the rest is often a usage text.
            let why = stderr.trim().lines().next().unwrap_or("failed").to_owned();
            return Err(NodeError::Command {
                program: program.into(),
                device: device.to_owned(),
                why: format!("{why} ({})", out.status),
            });
        }
        Ok(())
    }

    fn mount(&self, req: &MountRequest) -> Result<()> {
        let (mut flags, data) = parse_mount_options(&req.options)?;
        if req.read_only {
            flags |= libc::MS_RDONLY;
        }
        let src = cstring(&req.source)?;
        let dst = cstring(&req.target)?;
        let mount = |src: &CString, fs: Option<&CString>, flags, data: Option<&CString>| {
            // SAFETY: all pointers are NUL-terminated strings that outlive the call.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    fs.map_or(std::ptr::null(), |f| f.as_ptr()),
                    flags,
                    data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io(&req.target, "mount on")(std::io::Error::last_os_error()))
            }
        };
        match &req.kind {
            MountKind::Filesystem { fs_type } => {
                let fs = CString::new(fs_type.as_str()).map_err(|_| NodeError::UnsupportedFs {
                    fs_type: fs_type.clone(),
                })?;
                let data = CString::new(data).expect("options checked for control characters");
                mount(&src, Some(&fs), flags, Some(&data))
            }
            MountKind::Bind => {
                mount(&src, None, libc::MS_BIND, None)?;
                // A bind mount takes other flags only on a remount.
                let extra = flags & !libc::MS_BIND;
                if extra != 0 {
                    if let Err(e) =
                        mount(&src, None, libc::MS_REMOUNT | libc::MS_BIND | extra, None)
                    {
                        let _ = self.unmount(&req.target);
                        return Err(e);
                    }
                }
                Ok(())
            }
        }
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        let dst = cstring(target)?;
        // SAFETY: a NUL-terminated path; UMOUNT_NOFOLLOW so a swapped-in symlink is not
        // followed.
        let rc = unsafe { libc::umount2(dst.as_ptr(), libc::UMOUNT_NOFOLLOW) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EBUSY) {
            return Err(NodeError::Busy {
                path: target.to_owned(),
                why: "the mount is busy (files open on it)".into(),
            });
        }
        Err(io(target, "unmount")(e))
    }

    fn mount_state(&self, target: &Path, source: &Path) -> Result<MountState> {
        let Some(entry) = Self::mount_entry(target)? else {
            return Ok(MountState::NotMounted);
        };
        let s = std::fs::metadata(source).map_err(io(source, "inspect"))?;
        let t = std::fs::metadata(target).map_err(io(target, "inspect"))?;
        let same = if s.file_type().is_block_device() {
            if t.file_type().is_block_device() {
                // A block device bind-mounted onto a file shows the device node itself.
                t.rdev() == s.rdev()
            } else {
                // A filesystem's root lives on the device it was mounted from.
                t.dev() == s.rdev()
            }
        } else {
            t.dev() == s.dev() && t.ino() == s.ino()
        };
        Ok(if same {
            MountState::Same {
                read_only: entry.read_only,
            }
        } else {
            MountState::Other(format!("{} ({}) is mounted there", entry.source, entry.fs))
        })
    }

    fn is_mount_point(&self, target: &Path) -> Result<bool> {
        Ok(Self::mount_entry(target)?.is_some())
    }

    fn create_target(&self, target: &Path, kind: TargetKind) -> Result<()> {
        match (std::fs::symlink_metadata(target), kind) {
            (Ok(m), TargetKind::Directory) if m.is_dir() => Ok(()),
            (Ok(m), TargetKind::File) if !m.is_dir() && !m.file_type().is_symlink() => Ok(()),
            (Ok(_), _) => Err(NodeError::BadPath {
                path: target.to_owned(),
                why: format!(
                    "exists and is not a {}",
                    match kind {
                        TargetKind::Directory => "directory",
                        TargetKind::File => "file",
                    }
                ),
            }),
            (Err(_), TargetKind::Directory) => {
                std::fs::create_dir_all(target).map_err(io(target, "create"))
            }
            (Err(_), TargetKind::File) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent, "create"))?;
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(target)
                    .map(drop)
                    .map_err(io(target, "create"))
            }
        }
    }

    fn remove_target(&self, target: &Path) -> Result<()> {
        let r = match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => std::fs::remove_dir(target),
            Ok(_) => std::fs::remove_file(target),
        };
        r.map_err(io(target, "remove"))
    }

    fn stats(&self, path: &Path) -> Result<PathStats> {
        let m = std::fs::metadata(path).map_err(io(path, "inspect"))?;
        if m.file_type().is_block_device() {
            let f = std::fs::File::open(path).map_err(io(path, "open"))?;
            let size = lvmd_sys::blkdev::device_size_bytes(&f).map_err(io(path, "size"))?;
            return Ok(PathStats {
                block: true,
                total: Bytes(size),
                ..PathStats::default()
            });
        }
        let c = cstring(path)?;
        // SAFETY: statvfs writes into the zeroed struct we own.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io(path, "statvfs")(std::io::Error::last_os_error()));
        }
        let frsize = st.f_frsize as u64;
        let total = st.f_blocks as u64 * frsize;
        let free = st.f_bfree as u64 * frsize;
        Ok(PathStats {
            block: false,
            total: Bytes(total),
            available: Bytes(st.f_bavail as u64 * frsize),
            used: Bytes(total.saturating_sub(free)),
            total_inodes: st.f_files as u64,
            free_inodes: st.f_ffree as u64,
            used_inodes: (st.f_files as u64).saturating_sub(st.f_ffree as u64),
        })
    }

    fn grow_filesystem(&self, device: &Path, target: &Path, fs_type: &str) -> Result<()> {
        // resize2fs takes the device (and finds the mount); xfs_growfs the mount point.
        let (program, arg) = match fs_type {
            "ext4" => ("resize2fs", device),
            "xfs" => ("xfs_growfs", target),
            other => {
                return Err(NodeError::UnsupportedFs {
                    fs_type: other.into(),
                })
            }
        };
        let out = Self::run(program, &[], arg)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            tracing::error!(program, path = %arg.display(), "failed: {stderr}");
            let why = stderr
                .trim()
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("failed")
                .to_owned();
            return Err(NodeError::Command {
                program: program.into(),
                device: arg.to_owned(),
                why: format!("{why} ({})", out.status),
            });
        }
        Ok(())
    }

    fn attach_read_only_loop(&self, device: &Path) -> Result<PathBuf> {
        use lvmd_sys::{blkdev, loopdev};
        let f = std::fs::File::open(device).map_err(io(device, "open"))?;
        // The same logical block size as the volume, so the read-only view looks like
        // it (and direct I/O to it stays aligned).
        let block_size = blkdev::logical_block_size(&f).map_err(io(device, "inspect"))?;
        drop(f);
        let opts = loopdev::LoopOptions {
            read_only: true,
            direct_io: true,
            block_size,
            label: Some(format!("{READ_ONLY_LOOP_LABEL} {}", device.display())),
            ..Default::default()
        };
        let dev = loopdev::attach(device, &opts).map_err(io(device, "attach a loop device to"))?;
        Ok(dev.into_path())
    }

    fn detach_loop(&self, loop_dev: &Path) -> Result<()> {
        match lvmd_sys::loopdev::detach(loop_dev) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO)) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(loop_dev, "detach")(e)),
        }
        // Opened elsewhere (udev's probe of a new device, a process), the kernel
        // detaches on the last close; until then the device still holds the volume
        // open, and deactivating it would fail. Wait a little for that, not forever.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while matches!(lvmd_sys::loopdev::status(loop_dev), Ok(Some(_)))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    fn loop_at(&self, target: &Path) -> Result<Option<LoopDev>> {
        if !self.is_mount_point(target)? {
            return Ok(None);
        }
        let m = match std::fs::metadata(target) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(target, "inspect")(e)),
        };
        let rdev = m.rdev() as libc::dev_t;
        if !m.file_type().is_block_device() || libc::major(rdev) != lvmd_sys::loopdev::LOOP_MAJOR {
            return Ok(None);
        }
        let node =
            block_node(libc::major(rdev), libc::minor(rdev)).map_err(io(target, "inspect"))?;
        Self::loop_dev(&node)
    }

    fn loops_over(&self, device: &Path) -> Result<Vec<LoopDev>> {
        let mut out = Vec::new();
        let p = Path::new("/sys/block");
        for l in lvmd_sys::loopdev::attached().map_err(io(p, "list loop devices in"))? {
            // One detached since the listing is no error.
            match Self::loop_dev(&l) {
                Ok(Some(d)) if self.same_device(&d.backing, device).unwrap_or(false) => out.push(d),
                Ok(_) | Err(NodeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn loop_users(&self, loop_dev: &Path) -> Result<Vec<String>> {
        let m = std::fs::metadata(loop_dev).map_err(io(loop_dev, "inspect"))?;
        let rdev = m.rdev() as libc::dev_t;
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        let name = loop_dev.file_name().unwrap_or_default();
        let p = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(p).map_err(io(p, "read"))?;
        let mut users = Vec::new();
        for l in mountinfo_lines(&text) {
            if l.dev == format!("{major}:{minor}") || Path::new(&l.source) == loop_dev {
                users.push(format!("mounted at {}", l.mount_point.display()));
            } else if l.root.file_name() == Some(name) {
                // A bind of a node named like it: the same device if the node there is.
                let same = std::fs::metadata(&l.mount_point)
                    .is_ok_and(|t| t.file_type().is_block_device() && t.rdev() == m.rdev());
                if same {
                    users.push(format!("bound at {}", l.mount_point.display()));
                }
            }
        }
        let holders = format!("/sys/dev/block/{major}:{minor}/holders");
        if let Ok(dir) = std::fs::read_dir(&holders) {
            for h in dir.flatten() {
                users.push(format!("held by {}", h.file_name().to_string_lossy()));
            }
        }
        Ok(users)
    }

    fn refresh_loop_size(&self, loop_dev: &Path) -> Result<()> {
        lvmd_sys::loopdev::set_capacity(loop_dev).map_err(io(loop_dev, "resize"))
    }

    fn same_device(&self, a: &Path, b: &Path) -> Result<bool> {
        let ma = std::fs::metadata(a).map_err(io(a, "inspect"))?;
        let mb = std::fs::metadata(b).map_err(io(b, "inspect"))?;
        Ok(
            match (
                ma.file_type().is_block_device(),
                mb.file_type().is_block_device(),
            ) {
                (true, true) => ma.rdev() == mb.rdev(),
                (false, false) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
                _ => false,
            },
        )
    }
}

#[derive(Debug, Clone)]
struct SimMount {
    source: PathBuf,
    kind: MountKind,
    read_only: bool,
}

/// Node work in memory: filesystems and mounts are remembered, nothing is touched.
#[derive(Debug, Default)]
pub struct SimNode {
    /// What each device "holds".
    disks: Mutex<BTreeMap<PathBuf, Contents>>,
    /// Every mkfs asked for: (device, type).
    formats: Mutex<Vec<(PathBuf, String)>>,
    mounts: Mutex<BTreeMap<PathBuf, SimMount>>,
    targets: Mutex<BTreeMap<PathBuf, TargetKind>>,
    grows: Mutex<Vec<FsGrow>>,
    loops: Mutex<SimLoops>,
    fail_mounts: std::sync::atomic::AtomicBool,
}

/// The sim's loop devices: `/dev/sim-loopN`.
#[derive(Debug, Default)]
struct SimLoops {
    next: u32,
    attached: BTreeMap<PathBuf, SimLoop>,
}

#[derive(Debug, Clone)]
struct SimLoop {
    backing: PathBuf,
    read_only: bool,
    lvmd: bool,
    size_refreshes: u32,
}

impl SimLoop {
    fn view(&self, path: &Path) -> LoopDev {
        LoopDev {
            path: path.to_owned(),
            backing: self.backing.clone(),
            read_only: self.read_only,
            lvmd: self.lvmd,
        }
    }
}

/// A filesystem grow the sim was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsGrow {
    pub device: PathBuf,
    pub target: PathBuf,
    pub fs_type: String,
}

impl SimNode {
    /// The filesystem "on" a device, as the sim remembers it.
    pub fn filesystem_on(&self, device: &Path) -> Option<String> {
        let disks = self.disks.lock().unwrap();
        let c = disks.get(device)?;
        c.signatures
            .iter()
            .find(|s| s.usage == Usage::Filesystem)
            .map(|s| s.name.clone())
    }
    /// Every mkfs asked for, in order: (device, type).
    pub fn formats(&self) -> Vec<(PathBuf, String)> {
        self.formats.lock().unwrap().clone()
    }
    /// Puts a signature on a device, as something other than lvmd would write it.
    pub fn write_signature(&self, device: &Path, sig: Signature) {
        let mut disks = self.disks.lock().unwrap();
        disks
            .entry(device.to_owned())
            .or_default()
            .signatures
            .push(sig);
    }
    /// Clears every signature on a device (a damaged superblock, or a wipe).
    pub fn clear_signatures(&self, device: &Path) {
        if let Some(c) = self.disks.lock().unwrap().get_mut(device) {
            c.signatures.clear();
        }
    }
    /// Gives a device a size; a filesystem made on it then has that size too.
    pub fn set_device_size(&self, device: &Path, size: Bytes) {
        let mut disks = self.disks.lock().unwrap();
        disks.entry(device.to_owned()).or_default().device_size = Some(size);
    }
    /// What is mounted at `target`: (source, read-only).
    pub fn mounted(&self, target: &Path) -> Option<(PathBuf, bool)> {
        self.mounts
            .lock()
            .unwrap()
            .get(target)
            .map(|m| (m.source.clone(), m.read_only))
    }
    pub fn mount_count(&self) -> usize {
        self.mounts.lock().unwrap().len()
    }
    /// Every filesystem grow asked for, in order.
    pub fn grows(&self) -> Vec<FsGrow> {
        self.grows.lock().unwrap().clone()
    }
    /// The loop devices attached, in order of attachment.
    pub fn loops(&self) -> Vec<LoopDev> {
        let loops = self.loops.lock().unwrap();
        let mut v: Vec<(u32, LoopDev)> = loops
            .attached
            .iter()
            .map(|(p, l)| (sim_loop_number(p), l.view(p)))
            .collect();
        v.sort_by_key(|(n, _)| *n);
        v.into_iter().map(|(_, l)| l).collect()
    }
    /// How often a loop device was told its backing device's size changed.
    pub fn loop_size_refreshes(&self, loop_dev: &Path) -> u32 {
        self.loops
            .lock()
            .unwrap()
            .attached
            .get(loop_dev)
            .map_or(0, |l| l.size_refreshes)
    }
    /// Attaches a loop device as something other than lvmd would (a user's `losetup`).
    pub fn attach_foreign_loop(&self, backing: &Path, read_only: bool) -> PathBuf {
        self.attach(backing, read_only, false)
    }
    /// Makes every mount fail (`true`) or work again, for tests of undoing.
    pub fn set_fail_mounts(&self, fail: bool) {
        self.fail_mounts
            .store(fail, std::sync::atomic::Ordering::Relaxed);
    }

    fn attach(&self, backing: &Path, read_only: bool, lvmd: bool) -> PathBuf {
        let mut loops = self.loops.lock().unwrap();
        let path = PathBuf::from(format!("/dev/sim-loop{}", loops.next));
        loops.next += 1;
        loops.attached.insert(
            path.clone(),
            SimLoop {
                backing: backing.to_owned(),
                read_only,
                lvmd,
                size_refreshes: 0,
            },
        );
        path
    }
}

fn sim_loop_number(p: &Path) -> u32 {
    p.to_str()
        .and_then(|s| s.strip_prefix("/dev/sim-loop"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

impl Node for SimNode {
    fn probe(&self, device: &Path) -> Result<Contents> {
        Ok(self
            .disks
            .lock()
            .unwrap()
            .get(device)
            .cloned()
            .unwrap_or_default())
    }
    fn make_filesystem(&self, device: &Path, fs_type: &str, _again: bool) -> Result<()> {
        if !FILESYSTEMS.contains(&fs_type) {
            return Err(NodeError::UnsupportedFs {
                fs_type: fs_type.into(),
            });
        }
        self.formats
            .lock()
            .unwrap()
            .push((device.to_owned(), fs_type.into()));
        let mut disks = self.disks.lock().unwrap();
        let c = disks.entry(device.to_owned()).or_default();
        // mkfs overwrites what was there.
        c.signatures = vec![Signature {
            name: fs_type.into(),
            usage: Usage::Filesystem,
            offset: Some(Bytes(if fs_type == "xfs" { 0 } else { 1080 })),
            size: c.device_size,
            bad_checksum: false,
        }];
        Ok(())
    }
    fn mount(&self, req: &MountRequest) -> Result<()> {
        let (flags, _) = parse_mount_options(&req.options)?;
        if self.fail_mounts.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(NodeError::Io {
                path: req.target.clone(),
                what: "mount on",
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        let mut mounts = self.mounts.lock().unwrap();
        if mounts.contains_key(&req.target) {
            return Err(NodeError::Busy {
                path: req.target.clone(),
                why: "already a mount point".into(),
            });
        }
        mounts.insert(
            req.target.clone(),
            SimMount {
                source: req.source.clone(),
                kind: req.kind.clone(),
                read_only: req.read_only || flags & libc::MS_RDONLY != 0,
            },
        );
        Ok(())
    }
    fn unmount(&self, target: &Path) -> Result<()> {
        match self.mounts.lock().unwrap().remove(target) {
            Some(_) => Ok(()),
            None => Err(NodeError::Io {
                path: target.to_owned(),
                what: "unmount",
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            }),
        }
    }
    fn mount_state(&self, target: &Path, source: &Path) -> Result<MountState> {
        let mounts = self.mounts.lock().unwrap();
        Ok(match mounts.get(target) {
            None => MountState::NotMounted,
            Some(m) if m.source == source => MountState::Same {
                read_only: m.read_only,
            },
            // A bind of a directory where `source` is mounted (a CSI publish of a staged
            // volume): the host sees the same filesystem there too.
            Some(m)
                if m.kind == MountKind::Bind
                    && mounts.get(&m.source).is_some_and(|s| s.source == source) =>
            {
                MountState::Same {
                    read_only: m.read_only,
                }
            }
            Some(m) => MountState::Other(format!("{} is mounted there", m.source.display())),
        })
    }
    fn is_mount_point(&self, target: &Path) -> Result<bool> {
        Ok(self.mounts.lock().unwrap().contains_key(target))
    }
    fn create_target(&self, target: &Path, kind: TargetKind) -> Result<()> {
        let mut targets = self.targets.lock().unwrap();
        match targets.get(target) {
            Some(k) if *k != kind => Err(NodeError::BadPath {
                path: target.to_owned(),
                why: format!("exists as a {k:?}"),
            }),
            _ => {
                targets.insert(target.to_owned(), kind);
                Ok(())
            }
        }
    }
    fn remove_target(&self, target: &Path) -> Result<()> {
        self.targets.lock().unwrap().remove(target);
        Ok(())
    }
    fn stats(&self, path: &Path) -> Result<PathStats> {
        let mounts = self.mounts.lock().unwrap();
        let m = mounts.get(path).ok_or_else(|| NodeError::NotFound {
            path: path.to_owned(),
        })?;
        Ok(match m.kind {
            MountKind::Bind if self.filesystem_on(&m.source).is_none() => PathStats {
                block: true,
                total: Bytes(1 << 30),
                ..PathStats::default()
            },
            _ => PathStats {
                block: false,
                total: Bytes(1 << 30),
                available: Bytes(3 << 28),
                used: Bytes(1 << 28),
                total_inodes: 65536,
                free_inodes: 65000,
                used_inodes: 536,
            },
        })
    }
    fn grow_filesystem(&self, device: &Path, target: &Path, fs_type: &str) -> Result<()> {
        if !FILESYSTEMS.contains(&fs_type) {
            return Err(NodeError::UnsupportedFs {
                fs_type: fs_type.into(),
            });
        }
        self.grows.lock().unwrap().push(FsGrow {
            device: device.to_owned(),
            target: target.to_owned(),
            fs_type: fs_type.into(),
        });
        Ok(())
    }

    fn attach_read_only_loop(&self, device: &Path) -> Result<PathBuf> {
        Ok(self.attach(device, true, true))
    }
    fn detach_loop(&self, loop_dev: &Path) -> Result<()> {
        self.loops.lock().unwrap().attached.remove(loop_dev);
        Ok(())
    }
    fn loop_at(&self, target: &Path) -> Result<Option<LoopDev>> {
        let Some(source) = self
            .mounts
            .lock()
            .unwrap()
            .get(target)
            .map(|m| m.source.clone())
        else {
            return Ok(None);
        };
        let loops = self.loops.lock().unwrap();
        Ok(loops.attached.get(&source).map(|l| l.view(&source)))
    }
    fn loops_over(&self, device: &Path) -> Result<Vec<LoopDev>> {
        Ok(self
            .loops()
            .into_iter()
            .filter(|l| l.backing == device)
            .collect())
    }
    fn loop_users(&self, loop_dev: &Path) -> Result<Vec<String>> {
        Ok(self
            .mounts
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.source == loop_dev)
            .map(|(t, _)| format!("bound at {}", t.display()))
            .collect())
    }
    fn refresh_loop_size(&self, loop_dev: &Path) -> Result<()> {
        match self.loops.lock().unwrap().attached.get_mut(loop_dev) {
            Some(l) => {
                l.size_refreshes += 1;
                Ok(())
            }
            None => Err(NodeError::NotFound {
                path: loop_dev.to_owned(),
            }),
        }
    }
    fn same_device(&self, a: &Path, b: &Path) -> Result<bool> {
        Ok(a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) =
            parse_mount_options(&["noatime,nodev".into(), "discard".into(), "ro".into()]).unwrap();
        assert_eq!(flags, libc::MS_NOATIME | libc::MS_NODEV | libc::MS_RDONLY);
        assert_eq!(data, "discard");
        let e = parse_mount_options(&["bind".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"bind\""), "{e}");
    }

    #[test]
    fn mountinfo_lines() {
        let text = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext4 /dev/dm-0 rw\n\
                    37 36 98:0 /mnt1 /pod ro,relatime master:1 - ext4 /dev/dm-0 rw\n";
        let e = mountinfo_entries(text);
        let entry = |point: &str, read_only| MountEntry {
            point: PathBuf::from(point),
            fs: "ext4".into(),
            source: "/dev/dm-0".into(),
            read_only,
        };
        assert_eq!(e, vec![entry("/mnt/a b", false), entry("/pod", true)]);
    }
}
