//! Node-side volume work as a trait: filesystems, mounts, stats. [`HostNode`] does it on
//! this machine (mount(2), libblkid, mkfs run as a program); [`SimNode`] remembers it.
//!
//! Policy (which paths, when to format) is not here but in `node_work`: these are the
//! bare operations.

use super::activation::SimActivation;
use super::engine::PathStats;
use super::paths::ConfinedPath;
use crate::crypt::luks::LUKS2_HEADER;
use crate::crypt::{CryptError, CryptName, LuksConfig, OpenOptions, Passphrase, Pbkdf};
use crate::probe::{Contents, Signature, Usage};
use crate::units::Bytes;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

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
    /// The encryption layer's errors, kept whole (a wrong key is PERMISSION_DENIED).
    #[error(transparent)]
    Crypt(#[from] CryptError),
    #[error("{path}: cannot {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A mount that failed its check and could not be undone: it stays where it landed.
    #[error("{source}; undoing the mount failed ({undo}): it is left on {target}")]
    MountLeft {
        target: PathBuf,
        #[source]
        source: Box<NodeError>,
        undo: std::io::Error,
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

/// What a mount or bind comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A device node lvmd chose (an LV's, a loop device's): used as it is.
    Device(PathBuf),
    /// A client's path (a bind's source), resolved beneath its root like a target.
    Confined(ConfinedPath),
}

impl MountSource {
    pub fn path(&self) -> &Path {
        match self {
            MountSource::Device(p) => p,
            MountSource::Confined(c) => c.path(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    pub source: MountSource,
    pub target: ConfinedPath,
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
    /// Mounts `req.source` exactly at `req.target` (never where a swapped path points).
    fn mount(&self, req: &MountRequest) -> Result<()>;
    /// Unmounts the mount at `target` (the top one, if several are stacked).
    fn unmount(&self, target: &ConfinedPath) -> Result<()>;
    /// Whether `source` (a device, or a directory for binds) is mounted at `target`.
    fn mount_state(&self, target: &ConfinedPath, source: &MountSource) -> Result<MountState>;
    /// Whether anything is mounted at `target`.
    fn is_mount_point(&self, target: &ConfinedPath) -> Result<bool>;
    /// Creates the target (and missing parents) unless it exists with the right kind.
    fn create_target(&self, target: &ConfinedPath, kind: TargetKind) -> Result<()>;
    /// Removes an unmounted target (an empty directory or a file); missing is fine.
    fn remove_target(&self, target: &ConfinedPath) -> Result<()>;
    fn stats(&self, path: &ConfinedPath) -> Result<PathStats>;
    /// Grows the filesystem `fs_type` on `device`, mounted at `target`, to fill the
    /// device (online: ext4 with `resize2fs <device>`, xfs with `xfs_growfs <target>`).
    fn grow_filesystem(&self, device: &Path, target: &ConfinedPath, fs_type: &str) -> Result<()>;

    /// Attaches a read-only loop device over the block device `device`, labelled as
    /// lvmd's ([`READ_ONLY_LOOP_LABEL`]); returns its path.
    fn attach_read_only_loop(&self, device: &Path) -> Result<PathBuf>;
    /// Detaches a loop device (lazily if something has it open); not attached is fine.
    fn detach_loop(&self, loop_dev: &Path) -> Result<()>;
    /// The attached loop device whose node is bind-mounted at `target`, if one is.
    fn loop_at(&self, target: &ConfinedPath) -> Result<Option<LoopDev>>;
    /// The attached loop devices reading from `device`.
    fn loops_over(&self, device: &Path) -> Result<Vec<LoopDev>>;
    /// Who uses a loop device besides its open file descriptors (which the kernel does
    /// not show): mounts of it or of its node, and holders (another dm table), described.
    fn loop_users(&self, loop_dev: &Path) -> Result<Vec<String>>;
    /// Makes a loop device take its backing device's current size (after a grow).
    fn refresh_loop_size(&self, loop_dev: &Path) -> Result<()>;
    /// Whether two paths name the same device (or file).
    fn same_device(&self, a: &Path, b: &Path) -> Result<bool>;

    // Encryption ([`crate::crypt`]; the policy, when to format, is the engine's).

    /// LUKS2-formats `device`. `again`: over what an lvmd format that was cut short
    /// left (a header, maybe without a keyslot), which is cleared first; the caller
    /// knows the device was never opened, so it holds no data.
    fn luks_format(
        &self,
        device: &Path,
        config: &LuksConfig,
        key: &Passphrase,
        again: bool,
    ) -> Result<()>;
    /// Opens `device` as the dm-crypt mapping `name` (one open on that device already is
    /// kept, the key still checked); returns the mapping's device node. A wrong key is
    /// [`CryptError::WrongKey`] and changes nothing.
    fn luks_open(
        &self,
        device: &Path,
        name: &CryptName,
        key: &Passphrase,
        options: &OpenOptions,
    ) -> Result<PathBuf>;
    /// `Ok(false)`: it was not open; `Busy` while mounted or held.
    fn luks_close(&self, name: &CryptName) -> Result<bool>;
    /// Whether the mapping `name` is open.
    fn luks_is_open(&self, name: &CryptName) -> Result<bool>;
    /// Grows the open mapping to its grown backing device.
    fn luks_resize(&self, name: &CryptName, key: &Passphrase) -> Result<()>;
    /// The first half of a rekey: `new` added in a free keyslot of `device` (with
    /// `pbkdf`), `old` kept; `new` opening a keyslot already, that one, nothing written.
    /// Returns the keyslot. A wrong `old` is [`CryptError::WrongKey`], nothing changed.
    fn luks_add_key(
        &self,
        device: &Path,
        pbkdf: &Pbkdf,
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<u32>;
    /// The second half: every keyslot `old` opens destroyed, once `new` is shown to
    /// open another. Returns the destroyed keyslots.
    fn luks_remove_key(
        &self,
        device: &Path,
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<Vec<u32>>;
    /// The keyslot `key` opens on `device` (nothing opened), or `WrongKey`.
    fn luks_check_key(&self, device: &Path, key: &Passphrase) -> Result<u32>;
    /// The open lvmd crypt mappings (`lvmd-crypt-*`).
    fn crypt_mappings(&self) -> Result<Vec<CryptName>>;
    /// The lvmd crypt mapping `device` is (a mapping's node, or a loop device's backing
    /// device), if it is one.
    fn crypt_mapping_of(&self, device: &Path) -> Result<Option<CryptName>>;
    /// The lvmd crypt mapping whose filesystem is mounted at `target`, or whose device
    /// node is bound there; `None` when nothing or something else is.
    fn crypt_mapping_at(&self, target: &ConfinedPath) -> Result<Option<CryptName>>;
}

/// The lvmd crypt mapping that the block device `major:minor` is, read from sysfs.
fn crypt_name_of_dev(dev: u64) -> Option<CryptName> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let name = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/dm/name")).ok()?;
    CryptName::parse(name.trim())
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

fn errno<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(Errno) -> NodeError + 'a {
    move |e| io(path, what)(e.into())
}

/// The mount attributes (`MOUNT_ATTR_*`) for mount(2)-style flags.
fn mount_attributes(flags: libc::c_ulong) -> u64 {
    use lvmd_sys::mount::attr;
    [
        (libc::MS_RDONLY, attr::RDONLY),
        (libc::MS_NOSUID, attr::NOSUID),
        (libc::MS_NODEV, attr::NODEV),
        (libc::MS_NOEXEC, attr::NOEXEC),
        (libc::MS_NOATIME, attr::NOATIME),
        (libc::MS_STRICTATIME, attr::STRICTATIME),
        (libc::MS_RELATIME, attr::RELATIME),
        (libc::MS_NODIRATIME, attr::NODIRATIME),
    ]
    .iter()
    .filter(|(f, _)| flags & f != 0)
    .fold(0, |a, (_, m)| a | m)
}

/// What a device or file is, to compare two of them.
#[derive(Debug, Clone, Copy)]
struct Ident {
    block: bool,
    rdev: u64,
    dev: u64,
    ino: u64,
}

impl Ident {
    fn of_fd(fd: &OwnedFd, path: &Path) -> Result<Ident> {
        let st = nix::sys::stat::fstat(fd).map_err(errno(path, "inspect"))?;
        Ok(Ident {
            block: st.st_mode & libc::S_IFMT == libc::S_IFBLK,
            rdev: st.st_rdev,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    fn of_source(source: &MountSource) -> Result<Ident> {
        match source {
            MountSource::Device(p) => {
                let m = std::fs::metadata(p).map_err(io(p, "inspect"))?;
                Ok(Ident {
                    block: m.file_type().is_block_device(),
                    rdev: m.rdev(),
                    dev: m.dev(),
                    ino: m.ino(),
                })
            }
            MountSource::Confined(c) => Ident::of_fd(&c.open(OFlag::O_PATH)?, c.path()),
        }
    }
}

/// The target as a descriptor on the top mount there, and whether something is
/// mounted exactly there (`None`: it does not exist).
fn open_mount_point(target: &ConfinedPath) -> Result<Option<(OwnedFd, lvmd_sys::mount::MountOf)>> {
    let fd = match target.open(OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(NodeError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let m = lvmd_sys::mount::mount_of(&fd).map_err(io(target.path(), "inspect"))?;
    Ok(Some((fd, m)))
}

/// The mountinfo entry of mount `id`.
fn mount_entry(id: u64, target: &ConfinedPath) -> Result<Option<crate::mountinfo::Mount>> {
    let p = Path::new("/proc/self/mountinfo");
    crate::mountinfo::by_id(id)
        .map_err(io(p, "read"))
        .map_err(|e| {
            tracing::warn!(target = %target, "cannot read mountinfo: {e}");
            e
        })
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

    /// Makes the detached mount a request asks for (not attached anywhere yet).
    fn detached_mount(req: &MountRequest) -> Result<OwnedFd> {
        use lvmd_sys::mount::{attr, clone_tree, set_attributes, FsContext};
        let (mut flags, data) = parse_mount_options(&req.options)?;
        if req.read_only {
            flags |= libc::MS_RDONLY;
        }
        let attributes = mount_attributes(flags);
        let target = req.target.path();
        match &req.kind {
            MountKind::Filesystem { fs_type } => {
                let device = req.source.path();
                let fail = |e: std::io::Error| NodeError::Io {
                    path: device.to_owned(),
                    what: "mount",
                    source: e,
                };
                let fs = FsContext::new(fs_type).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENODEV) => NodeError::UnsupportedFs {
                        fs_type: fs_type.clone(),
                    },
                    _ => fail(e),
                })?;
                let source = device.to_str().ok_or_else(|| NodeError::BadPath {
                    path: device.to_owned(),
                    why: "is not valid UTF-8".into(),
                })?;
                fs.set_string("source", source).map_err(fail)?;
                // Superblock flags, which are options of the filesystem here.
                for (flag, name) in [
                    (libc::MS_RDONLY, "ro"),
                    (libc::MS_SYNCHRONOUS, "sync"),
                    (libc::MS_DIRSYNC, "dirsync"),
                    (libc::MS_LAZYTIME, "lazytime"),
                ] {
                    if flags & flag != 0 {
                        fs.set_flag(name).map_err(fail)?;
                    }
                }
                for opt in data.split(',').filter(|o| !o.is_empty()) {
                    let r = match opt.split_once('=') {
                        Some((k, v)) => fs.set_string(k, v),
                        None => fs.set_flag(opt),
                    };
                    r.map_err(|e| NodeError::BadOption {
                        option: opt.into(),
                        why: e.to_string(),
                    })?;
                }
                fs.mount(attributes).map_err(fail)
            }
            MountKind::Bind => {
                let src = match &req.source {
                    // lvmd's own device path (`/dev/vg/lv` is a symlink): followed.
                    // O_PATH: pointed at, not opened (no open count on the device).
                    MountSource::Device(p) => {
                        nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                            .map_err(errno(p, "open"))?
                    }
                    MountSource::Confined(c) => c.open(OFlag::O_PATH)?,
                };
                let tree = clone_tree(&src).map_err(io(req.source.path(), "bind"))?;
                if attributes != 0 {
                    let clear = if flags
                        & (libc::MS_NOATIME | libc::MS_STRICTATIME | libc::MS_RELATIME)
                        != 0
                    {
                        attr::ATIME_MASK
                    } else {
                        0
                    };
                    set_attributes(&tree, attributes, clear).map_err(io(target, "bind"))?;
                }
                Ok(tree)
            }
        }
    }

    /// Checks that the attached mount `mount` sits on `target`: a child of `under`
    /// (the mount the target's descriptor was on) at the target's place.
    fn check_landed(mount: &OwnedFd, target: &ConfinedPath, under: u64) -> Result<()> {
        let id = lvmd_sys::mount::mount_of(mount)
            .map_err(io(target.path(), "inspect"))?
            .mount_id;
        let want = target.real_path()?;
        match mount_entry(id, target)? {
            Some(m) if m.parent == under && m.point == want => Ok(()),
            Some(m) => Err(NodeError::BadPath {
                path: target.path().to_owned(),
                why: format!(
                    "changed while being mounted on: the mount landed at {} (under mount {}), \
                     not at {} (under mount {under})",
                    m.point.display(),
                    m.parent,
                    want.display()
                ),
            }),
            None => Err(NodeError::BadPath {
                path: target.path().to_owned(),
                why: "the new mount is not in this namespace's mountinfo".into(),
            }),
        }
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

    // The kernel's descriptor-based mount API rather than mount(2) (and so not the
    // sys-mount crate, which wraps mount(2) and takes paths): the mount is made
    // detached, attached onto the descriptor of the confined target, and stays known
    // by its own descriptor, so where it landed can be checked and the exact mount
    // undone. A bind is read-only before it is attached, never writable for a moment.
    fn mount(&self, req: &MountRequest) -> Result<()> {
        let target = &req.target;
        let kind = match req.kind {
            MountKind::Filesystem { .. } => OFlag::O_DIRECTORY,
            MountKind::Bind => OFlag::empty(),
        };
        let at = target.open(OFlag::O_PATH | kind)?;
        let under = lvmd_sys::mount::mount_of(&at)
            .map_err(io(target.path(), "inspect"))?
            .mount_id;
        let mount = Self::detached_mount(req)?;
        lvmd_sys::mount::attach(&mount, &at).map_err(io(target.path(), "mount on"))?;
        if let Err(e) = Self::check_landed(&mount, target, under) {
            tracing::error!(target = %target, "{e}");
            return Err(match lvmd_sys::mount::detach(&mount) {
                Ok(()) => match e {
                    NodeError::BadPath { path, why } => NodeError::BadPath {
                        path,
                        why: format!("{why}; undone"),
                    },
                    other => other,
                },
                Err(undo) => {
                    tracing::error!(target = %target, "cannot undo the mount: {undo}");
                    NodeError::MountLeft {
                        target: target.path().to_owned(),
                        source: Box::new(e),
                        undo,
                    }
                }
            });
        }
        Ok(())
    }

    fn unmount(&self, target: &ConfinedPath) -> Result<()> {
        let not_mounted = || NodeError::Io {
            path: target.path().to_owned(),
            what: "unmount",
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        };
        let parent = target.open_parent()?;
        let fd = target.open_in(&parent, OFlag::O_PATH)?;
        let m = lvmd_sys::mount::mount_of(&fd).map_err(io(target.path(), "inspect"))?;
        if !m.is_root {
            return Err(not_mounted());
        }
        // The descriptors came through a confined resolution; that the mount is at the
        // target's place (not moved there and back by a rename meanwhile) is checked
        // once more against the kernel's own record.
        let want = target.real_path()?;
        match mount_entry(m.mount_id, target)? {
            Some(e) if e.point == want => {}
            Some(e) => {
                return Err(NodeError::BadPath {
                    path: target.path().to_owned(),
                    why: format!(
                        "changed while being unmounted: the mount found is at {}",
                        e.point.display()
                    ),
                })
            }
            None => return Err(not_mounted()),
        }
        // The descriptor on the mount would make it busy; the unmount goes by name
        // through the confined parent.
        drop(fd);
        match lvmd_sys::mount::unmount_at(&parent, target.file_name()) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(NodeError::Busy {
                path: target.path().to_owned(),
                why: "the mount is busy (files open on it, or mounts below it)".into(),
            }),
            Err(e) => Err(io(target.path(), "unmount")(e)),
        }
    }

    fn mount_state(&self, target: &ConfinedPath, source: &MountSource) -> Result<MountState> {
        let Some((fd, m)) = open_mount_point(target)? else {
            return Ok(MountState::NotMounted);
        };
        if !m.is_root {
            return Ok(MountState::NotMounted);
        }
        let Some(entry) = mount_entry(m.mount_id, target)? else {
            return Ok(MountState::NotMounted);
        };
        let s = Ident::of_source(source)?;
        let t = Ident::of_fd(&fd, target.path())?;
        let same = if s.block {
            if t.block {
                // A block device bind-mounted onto a file shows the device node itself.
                t.rdev == s.rdev
            } else {
                // A filesystem's root lives on the device it was mounted from.
                t.dev == s.rdev
            }
        } else {
            t.dev == s.dev && t.ino == s.ino
        };
        Ok(if same {
            MountState::Same {
                read_only: entry.read_only,
            }
        } else {
            MountState::Other(format!("{} ({}) is mounted there", entry.source, entry.fs))
        })
    }

    fn is_mount_point(&self, target: &ConfinedPath) -> Result<bool> {
        Ok(open_mount_point(target)?.is_some_and(|(_, m)| m.is_root))
    }

    fn create_target(&self, target: &ConfinedPath, kind: TargetKind) -> Result<()> {
        make_target(target, kind)
    }

    fn remove_target(&self, target: &ConfinedPath) -> Result<()> {
        unlink_target(target)
    }

    fn stats(&self, path: &ConfinedPath) -> Result<PathStats> {
        let p = path.path();
        let fd = path.open(OFlag::O_PATH)?;
        if Ident::of_fd(&fd, p)?.block {
            // Opened again through the descriptor: the very node resolved above.
            let f = std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map_err(io(p, "open"))?;
            let size = lvmd_sys::blkdev::device_size_bytes(&f).map_err(io(p, "size"))?;
            return Ok(PathStats {
                block: true,
                total: Bytes(size),
                ..PathStats::default()
            });
        }
        fs_stats(&fd, p)
    }

    fn grow_filesystem(&self, device: &Path, target: &ConfinedPath, fs_type: &str) -> Result<()> {
        // resize2fs takes the device (and finds the mount); xfs_growfs the mount point.
        let (program, arg) = match fs_type {
            "ext4" => ("resize2fs", device),
            "xfs" => ("xfs_growfs", target.path()),
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

    fn loop_at(&self, target: &ConfinedPath) -> Result<Option<LoopDev>> {
        let Some((fd, m)) = open_mount_point(target)? else {
            return Ok(None);
        };
        let t = Ident::of_fd(&fd, target.path())?;
        let rdev = t.rdev as libc::dev_t;
        if !m.is_root || !t.block || libc::major(rdev) != lvmd_sys::loopdev::LOOP_MAJOR {
            return Ok(None);
        }
        let node = block_node(libc::major(rdev), libc::minor(rdev))
            .map_err(io(target.path(), "inspect"))?;
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
        let mut users = Vec::new();
        for l in crate::mountinfo::read().map_err(io(p, "read"))? {
            if l.dev == format!("{major}:{minor}") || Path::new(&l.source) == loop_dev {
                users.push(format!("mounted at {}", l.point.display()));
            } else if l.root.file_name() == Some(name) {
                // A bind of a node named like it: the same device if the node there is.
                let same = std::fs::metadata(&l.point)
                    .is_ok_and(|t| t.file_type().is_block_device() && t.rdev() == m.rdev());
                if same {
                    users.push(format!("bound at {}", l.point.display()));
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

    fn luks_format(
        &self,
        device: &Path,
        config: &LuksConfig,
        key: &Passphrase,
        again: bool,
    ) -> Result<()> {
        if again {
            use std::os::unix::fs::OpenOptionsExt;
            // What lvmd's own format left on a volume never opened: its header area
            // (the data offset of a header that can still be read, or lvmd's 16 MiB).
            let area = match crate::crypt::luks::read_header(device) {
                Ok(Some(h)) => h.data_offset.to_bytes().0.max(LUKS2_HEADER.0),
                // What lvmd's format writes: what a cut-short one can have written.
                _ => LUKS2_HEADER.0,
            };
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_EXCL)
                .open(device)
                .map_err(io(device, "open"))?;
            let size = lvmd_sys::blkdev::device_size_bytes(&f).map_err(io(device, "inspect"))?;
            lvmd_sys::blkdev::zero_range(&f, 0, area.min(size))
                .map_err(io(device, "clear the cut-short LUKS header of"))?;
            f.sync_all().map_err(io(device, "flush"))?;
            tracing::warn!(device = %device.display(), bytes = area.min(size),
                "cleared the header of an lvmd LUKS format that was cut short");
        }
        crate::crypt::luks::format(device, config, key)?;
        Ok(())
    }

    fn luks_open(
        &self,
        device: &Path,
        name: &CryptName,
        key: &Passphrase,
        options: &OpenOptions,
    ) -> Result<PathBuf> {
        crate::crypt::luks::open(device, name, key, options)?;
        Ok(name.device_path())
    }

    fn luks_close(&self, name: &CryptName) -> Result<bool> {
        Ok(crate::crypt::luks::close(name)?)
    }

    fn luks_is_open(&self, name: &CryptName) -> Result<bool> {
        Ok(crate::crypt::luks::status(name)?.is_some())
    }

    fn luks_resize(&self, name: &CryptName, key: &Passphrase) -> Result<()> {
        crate::crypt::luks::resize(name, key)?;
        Ok(())
    }

    fn luks_add_key(
        &self,
        device: &Path,
        pbkdf: &Pbkdf,
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<u32> {
        Ok(crate::crypt::luks::add_key(device, pbkdf, old, new)?)
    }

    fn luks_remove_key(
        &self,
        device: &Path,
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<Vec<u32>> {
        Ok(crate::crypt::luks::remove_key(device, old, new)?)
    }

    fn luks_check_key(&self, device: &Path, key: &Passphrase) -> Result<u32> {
        Ok(crate::crypt::luks::check_key(device, key)?)
    }

    fn crypt_mappings(&self) -> Result<Vec<CryptName>> {
        Ok(crate::crypt::luks::open_mappings()?)
    }

    fn crypt_mapping_of(&self, device: &Path) -> Result<Option<CryptName>> {
        let m = match std::fs::metadata(device) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(device, "inspect")(e)),
        };
        if !m.file_type().is_block_device() {
            return Ok(None);
        }
        Ok(crypt_name_of_dev(m.rdev()))
    }

    fn crypt_mapping_at(&self, target: &ConfinedPath) -> Result<Option<CryptName>> {
        let Some((fd, m)) = open_mount_point(target)? else {
            return Ok(None);
        };
        if !m.is_root {
            return Ok(None);
        }
        // A filesystem's root is on its device; a bound device node is the device.
        let id = Ident::of_fd(&fd, target.path())?;
        Ok(crypt_name_of_dev(if id.block { id.rdev } else { id.dev }))
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

/// Makes the directory or file `kind` at `target` (and its parents), beneath its root
/// through descriptors; one that is there already of that kind is fine.
fn make_target(target: &ConfinedPath, kind: TargetKind) -> Result<()> {
    let path = target.path();
    let not = |what: &str| NodeError::BadPath {
        path: path.to_owned(),
        why: format!("exists and is not a {what}"),
    };
    match kind {
        TargetKind::Directory => match target.make_dirs(true) {
            Ok(_) => Ok(()),
            // The last component is there but not a directory.
            Err(NodeError::BadPath { .. })
                if target
                    .open_parent()
                    .ok()
                    .and_then(|p| {
                        nix::sys::stat::fstatat(
                            &p,
                            target.file_name(),
                            AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .ok()
                    })
                    .is_some_and(|st| st.st_mode & libc::S_IFMT != libc::S_IFDIR) =>
            {
                Err(not("directory"))
            }
            Err(e) => Err(e),
        },
        TargetKind::File => {
            let parent = target.make_dirs(false)?;
            let name = target.file_name();
            let is_file =
                |m: u32| m & libc::S_IFMT != libc::S_IFDIR && m & libc::S_IFMT != libc::S_IFLNK;
            match nix::sys::stat::fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if is_file(st.st_mode) => return Ok(()),
                Ok(_) => return Err(not("file")),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(errno(path, "inspect")(e)),
            }
            // O_EXCL|O_NOFOLLOW: a file made here, never one a symlink points to.
            match nix::fcntl::openat(
                &parent,
                name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_WRONLY
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(_) => Ok(()),
                Err(Errno::EEXIST) => {
                    match nix::sys::stat::fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(st) if is_file(st.st_mode) => Ok(()),
                        _ => Err(not("file")),
                    }
                }
                Err(e) => Err(errno(path, "create")(e)),
            }
        }
    }
}

/// Removes the entry at `target` (a directory only when empty); a missing one is fine.
fn unlink_target(target: &ConfinedPath) -> Result<()> {
    let path = target.path();
    let parent = match target.open_parent() {
        Ok(p) => p,
        Err(NodeError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let name = target.file_name();
    // The entry in the confined parent, whatever it is now: a symlink swapped in
    // is removed itself (unlinkat follows nothing), a directory only when empty.
    let how = match nix::sys::stat::fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(errno(path, "inspect")(e)),
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            nix::unistd::UnlinkatFlags::RemoveDir
        }
        Ok(_) => nix::unistd::UnlinkatFlags::NoRemoveDir,
    };
    match nix::unistd::unlinkat(&parent, name, how) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(errno(path, "remove")(e)),
    }
}

/// Bytes and inodes of the filesystem holding `fd` (at `p`), as statvfs counts them.
fn fs_stats(fd: &OwnedFd, p: &Path) -> Result<PathStats> {
    // SAFETY: fstatvfs writes into the zeroed struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io(p, "statvfs")(std::io::Error::last_os_error()));
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

#[derive(Debug, Clone)]
struct SimMount {
    source: PathBuf,
    kind: MountKind,
    read_only: bool,
}

/// Node work in memory: filesystems and mounts are remembered. By default nothing is
/// touched; [`SimNode::on_disk`] (what `lvmd --simulate` runs) also makes the targets
/// real, for kubelet: see there.
#[derive(Debug, Default)]
pub struct SimNode {
    /// Targets are real directories and files, stats are measured: see [`SimNode::on_disk`].
    disk: Option<Arc<SimActivation>>,
    /// What each device "holds".
    disks: Mutex<BTreeMap<PathBuf, Contents>>,
    /// Every mkfs asked for: (device, type).
    formats: Mutex<Vec<(PathBuf, String)>>,
    mounts: Mutex<BTreeMap<PathBuf, SimMount>>,
    targets: Mutex<BTreeMap<PathBuf, TargetKind>>,
    grows: Mutex<Vec<FsGrow>>,
    loops: Mutex<SimLoops>,
    fail_mounts: std::sync::atomic::AtomicBool,
    /// LUKS "headers": device -> its keyslots (`None`: free).
    luks: Mutex<BTreeMap<PathBuf, Vec<Option<Passphrase>>>>,
    /// Open crypt mappings: name -> backing device.
    crypt_open: Mutex<BTreeMap<String, PathBuf>>,
    /// The flags each mapping was made with, last open first.
    crypt_options: Mutex<BTreeMap<String, OpenOptions>>,
    /// Every LUKS format asked for: (device, again).
    luks_formats: Mutex<Vec<(PathBuf, bool)>>,
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
    /// A simulated node whose targets exist, so that a real kubelet can use it: staging
    /// and publish targets are directories, a raw-block target a regular file standing
    /// for the device (sparse, the volume's size), all made and removed beneath the mount
    /// root through the same confined code as [`HostNode`]'s. Nothing is mounted: what a
    /// pod writes lands in the publish directory itself, and an unmount takes it away as
    /// a real one would (the volume's contents are not kept between publishes). Bounding
    /// those writes per volume would take a mount (a tmpfs, a loop device over a sparse
    /// file, a bind), which needs root, and no mount keeps the simulator harmless; so
    /// the directory's filesystem holds them, and stats report that filesystem
    /// (statvfs of the target), block volumes their size from `sizes`.
    pub fn on_disk(sizes: Arc<SimActivation>) -> SimNode {
        SimNode {
            disk: Some(sizes),
            ..SimNode::default()
        }
    }

    /// The filesystem "on" a device, as the sim remembers it.
    pub fn filesystem_on(&self, device: &Path) -> Option<String> {
        let disks = self.disks.lock().unwrap();
        let c = disks.get(device)?;
        c.signatures
            .iter()
            .find(|s| s.usage == Usage::Filesystem)
            .map(|s| s.name.clone())
    }
    /// Every LUKS format asked for, in order: (device, again).
    pub fn luks_formats(&self) -> Vec<(PathBuf, bool)> {
        self.luks_formats.lock().unwrap().clone()
    }
    /// The flags the mapping `name` was last made with.
    pub fn crypt_open_options(&self, name: &str) -> Option<OpenOptions> {
        self.crypt_options.lock().unwrap().get(name).copied()
    }
    /// The open crypt mappings' names.
    pub fn open_crypt_names(&self) -> Vec<String> {
        self.crypt_open.lock().unwrap().keys().cloned().collect()
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

impl SimNode {
    /// A mount noted on `target` before lvmd restarted, taken back into memory.
    fn recall(&self, target: &ConfinedPath) {
        use xattr::FileExt;
        if self.disk.is_none() || self.mounts.lock().unwrap().contains_key(target.path()) {
            return;
        }
        let Ok(Some(f)) = target_file(target) else {
            return;
        };
        let Ok(Some(value)) = f.get_xattr(SIM_MOUNT_XATTR) else {
            return;
        };
        let noted: NotedMount = match serde_json::from_slice(&value) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(target = %target, "{SIM_MOUNT_XATTR} unreadable, ignored: {e}");
                return;
            }
        };
        tracing::info!(target = %target, source = %noted.source.display(), "simulated mount from before lvmd started");
        self.mounts
            .lock()
            .unwrap()
            .entry(target.path().to_owned())
            .or_insert(SimMount {
                source: noted.source,
                kind: match noted.fs_type {
                    Some(fs_type) => MountKind::Filesystem { fs_type },
                    None => MountKind::Bind,
                },
                read_only: noted.read_only,
            });
    }

    /// The size of `device` (an LV's, or a sim loop device's over one): the size this
    /// sim was given for it, else the active volume's.
    fn device_size(&self, sizes: &SimActivation, device: &Path) -> Bytes {
        let backing = self
            .loops
            .lock()
            .unwrap()
            .attached
            .get(device)
            .map_or_else(|| device.to_owned(), |l| l.backing.clone());
        let given = self
            .disks
            .lock()
            .unwrap()
            .get(&backing)
            .and_then(|c| c.device_size);
        given
            .or_else(|| sizes.size_of(&backing))
            .unwrap_or(Bytes(0))
    }
}

/// What an unmount takes away from the simulated node's target: a directory's contents
/// (what a pod wrote there), removed beneath it through descriptors without following a
/// symlink, or a stand-in file's length.
fn clear_target(target: &ConfinedPath) -> Result<()> {
    let path = target.path();
    let fd = match target.open(OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(NodeError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(errno(path, "inspect"))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let dir = target.open(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW)?;
        return clear_dir(dir, path);
    }
    let f = target.open(OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)?;
    nix::unistd::ftruncate(&f, 0).map_err(errno(path, "truncate"))
}

/// Where the simulated node notes a mount on its target itself, so that the mount
/// outlives an lvmd restart as a kernel mount does: without it, a pod's teardown after a
/// restart found a "not mounted" target still holding what the pod wrote, and kubelet
/// looped on "directory not empty".
const SIM_MOUNT_XATTR: &str = "user.lvmd.simulated-mount";

/// A [`SimMount`] as noted on its target.
#[derive(serde::Serialize, serde::Deserialize)]
struct NotedMount {
    source: PathBuf,
    /// `None`: a bind.
    fs_type: Option<String>,
    read_only: bool,
}

/// The target opened for its extended attributes (`O_PATH` descriptors have none);
/// `None` when nothing is there.
fn target_file(target: &ConfinedPath) -> Result<Option<std::fs::File>> {
    match target.open(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC) {
        Ok(fd) => Ok(Some(std::fs::File::from(fd))),
        Err(NodeError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn note_mount(target: &ConfinedPath, m: &SimMount) -> Result<()> {
    use xattr::FileExt;
    let Some(f) = target_file(target)? else {
        return Ok(());
    };
    let noted = NotedMount {
        source: m.source.clone(),
        fs_type: match &m.kind {
            MountKind::Filesystem { fs_type } => Some(fs_type.clone()),
            MountKind::Bind => None,
        },
        read_only: m.read_only,
    };
    let value = serde_json::to_vec(&noted).expect("plain data serializes");
    if let Err(e) = f.set_xattr(SIM_MOUNT_XATTR, &value) {
        // A filesystem without user xattrs (tmpfs before Linux 6.6): the sim still works,
        // only a restart forgets this mount.
        tracing::warn!(target = %target, "cannot note the simulated mount on its target, an lvmd restart will forget it: {e}");
    }
    Ok(())
}

fn forget_mount(target: &ConfinedPath) -> Result<()> {
    use xattr::FileExt;
    if let Some(f) = target_file(target)? {
        match f.remove_xattr(SIM_MOUNT_XATTR) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                    Errno::ENODATA | Errno::EOPNOTSUPP
                ) => {}
            Err(e) => {
                return Err(NodeError::Io {
                    path: target.path().to_owned(),
                    what: "forget the simulated mount of",
                    source: e,
                })
            }
        }
    }
    Ok(())
}

fn clear_dir(dir: OwnedFd, path: &Path) -> Result<()> {
    let mut entries = nix::dir::Dir::from_fd(dir).map_err(errno(path, "read"))?;
    let fd = entries.as_raw_fd();
    // SAFETY: `fd` stays open while `entries` lives, and the borrow ends before it does.
    let parent = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let names: Vec<std::ffi::CString> = entries
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let os = std::ffi::OsStr::from_bytes(name.as_bytes());
        let at = path.join(os);
        let st = nix::sys::stat::fstatat(parent, os, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(errno(&at, "inspect"))?;
        let how = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let sub = nix::fcntl::openat(
                parent,
                os,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno(&at, "open"))?;
            clear_dir(sub, &at)?;
            nix::unistd::UnlinkatFlags::RemoveDir
        } else {
            nix::unistd::UnlinkatFlags::NoRemoveDir
        };
        match nix::unistd::unlinkat(parent, os, how) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(errno(&at, "remove")(e)),
        }
    }
    Ok(())
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
                path: req.target.path().to_owned(),
                what: "mount on",
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        let mut mounts = self.mounts.lock().unwrap();
        if mounts.contains_key(req.target.path()) {
            return Err(NodeError::Busy {
                path: req.target.path().to_owned(),
                why: "already a mount point".into(),
            });
        }
        if let Some(sizes) = &self.disk {
            // As mount(2): the target must be there.
            let fd = req.target.open(OFlag::O_PATH)?;
            let st = nix::sys::stat::fstat(&fd).map_err(errno(req.target.path(), "inspect"))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                let size = self.device_size(sizes, req.source.path());
                let f = req
                    .target
                    .open(OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)?;
                nix::unistd::ftruncate(&f, size.0 as libc::off_t)
                    .map_err(errno(req.target.path(), "size"))?;
            }
        }
        let m = SimMount {
            source: req.source.path().to_owned(),
            kind: req.kind.clone(),
            read_only: req.read_only || flags & libc::MS_RDONLY != 0,
        };
        if self.disk.is_some() {
            note_mount(&req.target, &m)?;
        }
        mounts.insert(req.target.path().to_owned(), m);
        Ok(())
    }
    fn unmount(&self, target: &ConfinedPath) -> Result<()> {
        self.recall(target);
        let removed = self.mounts.lock().unwrap().remove(target.path());
        match removed {
            Some(_) if self.disk.is_some() => {
                clear_target(target)?;
                forget_mount(target)
            }
            Some(_) => Ok(()),
            None => Err(NodeError::Io {
                path: target.path().to_owned(),
                what: "unmount",
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            }),
        }
    }
    fn mount_state(&self, target: &ConfinedPath, source: &MountSource) -> Result<MountState> {
        self.recall(target);
        let (target, source) = (target.path(), source.path());
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
    fn is_mount_point(&self, target: &ConfinedPath) -> Result<bool> {
        self.recall(target);
        Ok(self.mounts.lock().unwrap().contains_key(target.path()))
    }
    fn create_target(&self, target: &ConfinedPath, kind: TargetKind) -> Result<()> {
        if self.disk.is_some() {
            return make_target(target, kind);
        }
        let target = target.path();
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
    fn remove_target(&self, target: &ConfinedPath) -> Result<()> {
        if self.disk.is_some() {
            return unlink_target(target);
        }
        self.targets.lock().unwrap().remove(target.path());
        Ok(())
    }
    fn stats(&self, confined: &ConfinedPath) -> Result<PathStats> {
        self.recall(confined);
        let path = confined.path();
        let mounts = self.mounts.lock().unwrap();
        let m = mounts.get(path).ok_or_else(|| NodeError::NotFound {
            path: path.to_owned(),
        })?;
        if let Some(sizes) = &self.disk {
            let fd = confined.open(OFlag::O_PATH)?;
            let st = nix::sys::stat::fstat(&fd).map_err(errno(path, "inspect"))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Ok(PathStats {
                    block: true,
                    total: self.device_size(sizes, &m.source),
                    ..PathStats::default()
                });
            }
            return fs_stats(&fd, path);
        }
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
    fn grow_filesystem(&self, device: &Path, target: &ConfinedPath, fs_type: &str) -> Result<()> {
        let target = target.path();
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
    fn loop_at(&self, target: &ConfinedPath) -> Result<Option<LoopDev>> {
        let Some(source) = self
            .mounts
            .lock()
            .unwrap()
            .get(target.path())
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
    fn luks_format(
        &self,
        device: &Path,
        _config: &LuksConfig,
        key: &Passphrase,
        again: bool,
    ) -> Result<()> {
        let mut disks = self.disks.lock().unwrap();
        let c = disks.entry(device.to_owned()).or_default();
        if !again {
            if let Some(s) = c.signatures.first() {
                return Err(CryptError::NotBlank {
                    device: device.to_owned(),
                    found: s.name.clone(),
                }
                .into());
            }
        }
        c.signatures = vec![Signature {
            name: "crypto_LUKS".into(),
            usage: Usage::Crypto,
            offset: Some(Bytes(0)),
            size: None,
            bad_checksum: false,
        }];
        self.luks
            .lock()
            .unwrap()
            .insert(device.to_owned(), vec![Some(key.duplicate())]);
        self.luks_formats
            .lock()
            .unwrap()
            .push((device.to_owned(), again));
        Ok(())
    }
    fn luks_open(
        &self,
        device: &Path,
        name: &CryptName,
        key: &Passphrase,
        options: &OpenOptions,
    ) -> Result<PathBuf> {
        self.luks_check_key(device, key)?;
        let mut open = self.crypt_open.lock().unwrap();
        if let Some(on) = open.get(name.as_str()) {
            if on != device {
                return Err(CryptError::NameInUse {
                    name: name.to_string(),
                    open_on: on.clone(),
                    wanted: device.to_owned(),
                }
                .into());
            }
        }
        if open
            .insert(name.as_str().to_owned(), device.to_owned())
            .is_none()
        {
            // As dm-crypt: flags are set when the mapping is made, kept while it is open.
            self.crypt_options
                .lock()
                .unwrap()
                .insert(name.as_str().to_owned(), *options);
        }
        Ok(name.device_path())
    }
    fn luks_close(&self, name: &CryptName) -> Result<bool> {
        let dev = name.device_path();
        let in_use = self
            .mounts
            .lock()
            .unwrap()
            .values()
            .any(|m| m.source == dev)
            || self
                .loops
                .lock()
                .unwrap()
                .attached
                .values()
                .any(|l| l.backing == dev);
        if in_use {
            return Err(CryptError::Busy {
                name: name.to_string(),
            }
            .into());
        }
        Ok(self
            .crypt_open
            .lock()
            .unwrap()
            .remove(name.as_str())
            .is_some())
    }
    fn luks_is_open(&self, name: &CryptName) -> Result<bool> {
        Ok(self.crypt_open.lock().unwrap().contains_key(name.as_str()))
    }
    fn luks_resize(&self, name: &CryptName, key: &Passphrase) -> Result<()> {
        let open = self.crypt_open.lock().unwrap();
        let Some(device) = open.get(name.as_str()) else {
            return Err(CryptError::NotOpen {
                name: name.to_string(),
            }
            .into());
        };
        let device = device.clone();
        drop(open);
        self.luks_check_key(&device, key).map(drop)
    }
    fn luks_add_key(
        &self,
        device: &Path,
        _pbkdf: &Pbkdf,
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<u32> {
        self.luks_check_key(device, old)?;
        if let Ok(slot) = self.luks_check_key(device, new) {
            return Ok(slot);
        }
        let mut luks = self.luks.lock().unwrap();
        let slots = luks.get_mut(device).expect("checked above");
        let free = slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(slots.len());
        if free >= 32 {
            return Err(CryptError::KeyslotsFull {
                device: device.to_owned(),
            }
            .into());
        }
        if free == slots.len() {
            slots.push(None);
        }
        slots[free] = Some(new.duplicate());
        Ok(free as u32)
    }
    fn luks_remove_key(
        &self,
        device: &Path,
        old: &Passphrase,
        new: &Passphrase,
    ) -> Result<Vec<u32>> {
        let keep = self.luks_check_key(device, new)?;
        let mut luks = self.luks.lock().unwrap();
        let slots = luks.get_mut(device).expect("checked above");
        let mut removed = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            if i as u32 != keep && slot.as_ref().is_some_and(|k| k.matches(old)) {
                *slot = None;
                removed.push(i as u32);
            }
        }
        Ok(removed)
    }
    fn luks_check_key(&self, device: &Path, key: &Passphrase) -> Result<u32> {
        match self.luks.lock().unwrap().get(device) {
            None => Err(CryptError::NotLuks {
                device: device.to_owned(),
            }
            .into()),
            Some(slots) => slots
                .iter()
                .position(|s| s.as_ref().is_some_and(|k| k.matches(key)))
                .map(|i| i as u32)
                .ok_or_else(|| {
                    CryptError::WrongKey {
                        device: device.to_owned(),
                    }
                    .into()
                }),
        }
    }
    fn crypt_mappings(&self) -> Result<Vec<CryptName>> {
        Ok(self
            .crypt_open
            .lock()
            .unwrap()
            .keys()
            .filter_map(|n| CryptName::parse(n))
            .collect())
    }
    fn crypt_mapping_of(&self, device: &Path) -> Result<Option<CryptName>> {
        Ok(device
            .strip_prefix("/dev/mapper")
            .ok()
            .and_then(|n| n.to_str())
            .and_then(CryptName::parse)
            .filter(|n| self.crypt_open.lock().unwrap().contains_key(n.as_str())))
    }
    fn crypt_mapping_at(&self, target: &ConfinedPath) -> Result<Option<CryptName>> {
        let source = match self.mounts.lock().unwrap().get(target.path()) {
            Some(m) => m.source.clone(),
            None => return Ok(None),
        };
        self.crypt_mapping_of(&source)
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
}
