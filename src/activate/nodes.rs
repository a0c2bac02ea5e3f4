//! Device nodes: `/dev/mapper/<name>` and `/dev/<VG>/<LV>`.
//!
//! With udev running, udev's rules make them (dmsetup's `55-dm.rules` the mapper link,
//! lvm2's `56-lvm.rules` the VG/LV link) and the devicemapper crate waits for udev
//! through device-mapper's cookie protocol (`95-dm-notify.rules` releases it); here we
//! only check the result. Without udev we make them ourselves, exactly as lvm2 does with
//! `udev_rules = 0`: a real block node `/dev/mapper/<name>` (0660 root:disk) and an
//! absolute symlink `/dev/<VG>/<LV>` -> `/dev/mapper/<name>`.
//!
//! Whatever else is at those paths is not ours: a VG named `mapper` or `shm` puts its
//! LV links on `/dev/mapper/control` or a user's file in `/dev/shm`. Only what lvmd,
//! lvm2 or udev make for a device-mapper device (a block node of device-mapper's major,
//! a link to `/dev/mapper/<name>` or `../dm-N`) is ever replaced or removed; anything
//! else is refused, named.

use super::error::{ActivateError, Result};
use super::target::DevNum;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// udevd's control socket: it exists while udevd runs (libudev and libdm test the same).
///
/// Why not the `udev` crate here: libudev's own test (`udev_queue_get_udev_is_active`,
/// which libdm calls) is an access(2) on this same path, and the crate does not even
/// expose it; we go one step further and check that udevd answers on the socket, since a
/// stale socket would leave device-mapper's cookie wait hanging. Nor for the wait in
/// [`add`]: by then the devicemapper crate has waited out udev's cookie, which
/// `95-dm-notify.rules` completes after the link rules ran, so the nodes are normally
/// there at the first look; a udev monitor would have to be listening before the
/// resume ioctl, in the layer that makes it, to not miss the event, and would add a C
/// library (libudev) to the daemon and its image for what a stat answers.
pub const UDEV_CONTROL: &str = "/run/udev/control";

/// The rule file that completes device-mapper's udev cookies. Without it a resume or
/// remove would wait forever for udev.
const DM_NOTIFY_RULES: &str = "95-dm-notify.rules";
const RULE_DIRS: &[&str] = &[
    "/etc/udev/rules.d",
    "/run/udev/rules.d",
    "/usr/lib/udev/rules.d",
    "/lib/udev/rules.d",
];

/// How long udev may take to show or drop a node after the cookie completed.
const UDEV_SETTLE: Duration = Duration::from_secs(10);

/// Who makes the device nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    /// udevd runs with device-mapper's rules: it makes the nodes, we wait for it.
    Udev,
    /// No udev: we make the nodes ourselves.
    Direct,
}

/// Finds out at runtime who makes nodes here. A control socket nobody answers on is
/// an error, not "no udev": the devicemapper crate would still wait for udev on it.
pub fn detect() -> Result<NodeMode> {
    detect_at(Path::new(UDEV_CONTROL))
}

fn detect_at(control: &Path) -> Result<NodeMode> {
    if std::fs::symlink_metadata(control).is_err() {
        return Ok(NodeMode::Direct);
    }
    if let Err(e) = connect_seqpacket(control) {
        return Err(ActivateError::Udev {
            why: format!(
                "{} exists but udevd does not answer on it ({e}); device-mapper's udev \
                 sync would hang: start udevd or remove the stale socket",
                control.display()
            ),
        });
    }
    if !RULE_DIRS
        .iter()
        .any(|d| Path::new(d).join(DM_NOTIFY_RULES).exists())
    {
        return Err(ActivateError::Udev {
            why: format!(
                "udevd runs but device-mapper's {DM_NOTIFY_RULES} is in none of {RULE_DIRS:?} \
                 (install dmsetup); activation would wait for udev forever"
            ),
        });
    }
    Ok(NodeMode::Udev)
}

/// Connects to a SOCK_SEQPACKET unix socket (udevd's control socket type) and hangs up.
fn connect_seqpacket(path: &Path) -> io::Result<()> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(path)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &addr)?;
    Ok(())
}

/// The paths of one device's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// `/dev/mapper/<dm name>`
    pub mapper: PathBuf,
    /// `/dev/<VG>/<LV>`, for an LV's own (visible) device only.
    pub lv_link: Option<PathBuf>,
}

impl NodePaths {
    pub fn new(dev_dir: &Path, dm_name: &str, vg_lv: Option<(&str, &str)>) -> NodePaths {
        NodePaths {
            mapper: dev_dir.join("mapper").join(dm_name),
            lv_link: vg_lv.map(|(vg, lv)| dev_dir.join(vg).join(lv)),
        }
    }
}

fn node_err<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(io::Error) -> ActivateError + 'a {
    move |source| ActivateError::Node {
        path: path.to_owned(),
        what,
        source,
    }
}

/// The device number of the block device at `path` (following symlinks).
pub fn block_devnum(path: &Path) -> io::Result<Option<DevNum>> {
    let meta = std::fs::metadata(path)?;
    if !meta.file_type().is_block_device() {
        return Ok(None);
    }
    let rdev = meta.rdev();
    Ok(Some(DevNum {
        major: libc::major(rdev),
        minor: libc::minor(rdev),
    }))
}

/// Makes the nodes for a device that has just become active.
pub fn add(mode: NodeMode, paths: &NodePaths, devnum: DevNum) -> Result<()> {
    match mode {
        NodeMode::Udev => wait_until(paths, |p| block_devnum(p).ok().flatten() == Some(devnum))
            .map_err(|missing| ActivateError::Udev {
                why: format!(
                    "{} did not appear for device {devnum} within {UDEV_SETTLE:?} \
                 (are lvm2's and dmsetup's udev rules installed?)",
                    missing.display()
                ),
            }),
        NodeMode::Direct => {
            make_block_node(&paths.mapper, devnum)?;
            if let Some(link) = &paths.lv_link {
                make_link(link, &paths.mapper)?;
            }
            Ok(())
        }
    }
}

/// Drops the nodes of a device that has just been removed. In udev mode udev drops
/// them; a link still dangling after a while is removed here, so that `/dev/VG/LV`
/// never points at nothing. Entries that are not a device-mapper node or link stay
/// (logged): they were never ours.
pub fn remove(mode: NodeMode, paths: &NodePaths) -> Result<()> {
    if mode == NodeMode::Udev && wait_until(paths, |p| !exists_no_follow(p)).is_ok() {
        return Ok(());
    }
    let dm = dm_major();
    if let Some(link) = &paths.lv_link {
        if remove_ours(link, &paths.mapper, dm)? {
            if let Some(dir) = link.parent() {
                // lvm2 drops /dev/VG with its last LV; ENOTEMPTY just means others
                // remain. A mount point (/dev/shm, /dev/pts) is never a VG's directory.
                if !is_mount_point(dir) {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
    }
    remove_ours(&paths.mapper, &paths.mapper, dm).map(drop)
}

/// What is at `path` (not followed), judged: `Ok(None)` when nothing is; `Ok(Some(true))`
/// for a device-mapper node or link (to `mapper`, to `/dev/mapper/...` or `../dm-N`);
/// `Ok(Some(false))` with what it is otherwise.
fn judge(path: &Path, mapper: &Path, dm_major: Option<u32>) -> io::Result<Option<(bool, String)>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    Ok(Some(if ft.is_symlink() {
        let to = std::fs::read_link(path)?;
        let ours = to == mapper || is_dm_link_target(&to, mapper);
        (ours, format!("a symlink to {}", to.display()))
    } else if ft.is_block_device() {
        let major = libc::major(meta.rdev());
        let ours = dm_major == Some(major);
        (
            ours,
            format!("block device {major}:{}", libc::minor(meta.rdev())),
        )
    } else if ft.is_char_device() {
        let r = meta.rdev();
        (
            false,
            format!("character device {}:{}", libc::major(r), libc::minor(r)),
        )
    } else if ft.is_dir() {
        (false, "a directory".into())
    } else {
        (false, "a file".into())
    }))
}

/// The link targets lvmd, lvm2 and udev give a device-mapper device's links:
/// `<dev>/mapper/<name>` (lvm2 without udev, and lvmd) or `../dm-N` (udev).
fn is_dm_link_target(to: &Path, mapper: &Path) -> bool {
    let under_mapper =
        to.parent() == mapper.parent() && to.file_name().is_some_and(|n| !n.is_empty());
    let dm_n = to
        .to_str()
        .and_then(|t| t.strip_prefix("../dm-"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    under_mapper || dm_n
}

/// Removes `path` if it is a device-mapper node or link; `Ok(true)` if it was removed
/// (or gone already).
fn remove_ours(path: &Path, mapper: &Path, dm_major: Option<u32>) -> Result<bool> {
    match judge(path, mapper, dm_major).map_err(node_err(path, "inspect"))? {
        None => Ok(true),
        Some((true, _)) => remove_if_present(path).map(|()| true),
        Some((false, what)) => {
            tracing::warn!(path = %path.display(), what,
                "not a device-mapper node or link; left in place");
            Ok(false)
        }
    }
}

/// Device-mapper's block major, from /proc/devices.
fn dm_major() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/devices").ok()?;
    text.lines()
        .skip_while(|l| !l.starts_with("Block devices"))
        .find_map(|l| {
            let (num, name) = l.trim().split_once(' ')?;
            (name == "device-mapper")
                .then(|| num.parse().ok())
                .flatten()
        })
}

fn is_mount_point(dir: &Path) -> bool {
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}

/// Waits until `ok` holds for every path; on timeout returns the first that fails it.
fn wait_until(paths: &NodePaths, ok: impl Fn(&Path) -> bool) -> std::result::Result<(), PathBuf> {
    let all = || std::iter::once(&paths.mapper).chain(paths.lv_link.iter());
    let deadline = Instant::now() + UDEV_SETTLE;
    loop {
        match all().find(|p| !ok(p)) {
            None => return Ok(()),
            Some(p) if Instant::now() >= deadline => return Err(p.clone()),
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn exists_no_follow(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(node_err(path, "remove")(e)),
    }
}

fn make_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(node_err(dir, "create directory"))
}

/// The group lvm2's nodes get: `disk`, or root's when there is no such group.
fn disk_gid() -> libc::gid_t {
    let name = CString::new("disk").expect("no NUL");
    // SAFETY: getgrnam returns NULL or a pointer to static storage we only read at once.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if gr.is_null() {
        0
    } else {
        // SAFETY: non-null pointer from getgrnam.
        unsafe { (*gr).gr_gid }
    }
}

/// A block node at `path` for `devnum` (a device-mapper device), replacing a stale
/// device-mapper node or link there, nothing else.
fn make_block_node(path: &Path, devnum: DevNum) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let same = meta.file_type().is_block_device()
            && meta.rdev() == libc::makedev(devnum.major, devnum.minor);
        if same {
            return Ok(());
        }
        match judge(path, path, Some(devnum.major)).map_err(node_err(path, "inspect"))? {
            Some((false, what)) => {
                return Err(ActivateError::NodeInTheWay {
                    path: path.to_owned(),
                    what,
                })
            }
            _ => remove_if_present(path)?,
        }
    }
    if let Some(dir) = path.parent() {
        make_dir(dir)?;
    }
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| node_err(path, "encode")(io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: c_path is a valid NUL-terminated path.
    let rc = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            libc::S_IFBLK | 0o660,
            libc::makedev(devnum.major, devnum.minor),
        )
    };
    if rc != 0 {
        return Err(node_err(path, "create block node")(
            io::Error::last_os_error(),
        ));
    }
    // mknod's mode went through the umask; set it exactly, as lvm2's nodes are.
    // SAFETY: valid path; chown/chmod have no other preconditions.
    let rc = unsafe {
        let mut rc = libc::chown(c_path.as_ptr(), 0, disk_gid());
        if rc == 0 {
            rc = libc::chmod(c_path.as_ptr(), 0o660);
        }
        rc
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        let _ = std::fs::remove_file(path);
        return Err(node_err(path, "set owner and mode of")(e));
    }
    Ok(())
}

/// `link` -> `target` (absolute, as lvm2 makes it), replacing a stale link of a
/// device-mapper device, nothing else.
fn make_link(link: &Path, target: &Path) -> Result<()> {
    if let Ok(current) = std::fs::read_link(link) {
        if current == target {
            return Ok(());
        }
    }
    // A block node is never an LV's link, so no device-mapper major is "ours" here.
    match judge(link, target, None).map_err(node_err(link, "inspect"))? {
        None => {}
        Some((true, _)) => remove_if_present(link)?,
        Some((false, what)) => {
            return Err(ActivateError::NodeInTheWay {
                path: link.to_owned(),
                what,
            })
        }
    }
    if let Some(dir) = link.parent() {
        make_dir(dir)?;
    }
    std::os::unix::fs::symlink(target, link).map_err(node_err(link, "create symlink"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_control_socket_means_direct_mode() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            detect_at(&dir.path().join("control")).unwrap(),
            NodeMode::Direct
        );
    }

    #[test]
    fn a_dead_control_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        std::fs::write(&path, b"").unwrap();
        let e = detect_at(&path).unwrap_err().to_string();
        assert!(e.contains("does not answer"), "{e}");
    }

    #[test]
    fn a_listening_seqpacket_socket_answers_and_a_stream_one_does_not() {
        use nix::sys::socket::{
            bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
        };
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, ty| {
            let path = dir.path().join(name);
            let fd = socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None).unwrap();
            bind(fd.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
            listen(&fd, Backlog::new(1).unwrap()).unwrap();
            (path, fd)
        };
        let (seq, _a) = make("seq", SockType::SeqPacket);
        connect_seqpacket(&seq).unwrap();
        // udevd's socket is a seqpacket one: anything else listening there is not udevd.
        let (stream, _b) = make("stream", SockType::Stream);
        let e = connect_seqpacket(&stream).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPROTOTYPE), "{e}");
    }

    #[test]
    fn paths_follow_lvm2() {
        let p = NodePaths::new(Path::new("/dev"), "my--vg-lv", Some(("my-vg", "lv")));
        assert_eq!(p.mapper, Path::new("/dev/mapper/my--vg-lv"));
        assert_eq!(p.lv_link.as_deref(), Some(Path::new("/dev/my-vg/lv")));
    }

    #[test]
    fn what_is_not_ours_is_neither_replaced_nor_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path();
        // VG "shm", LV "victim": a user's file in /dev/shm.
        let p = NodePaths::new(dev, "shm-victim", Some(("shm", "victim")));
        let victim = dev.join("shm/victim");
        std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
        std::fs::write(&victim, b"someone's data").unwrap();
        let e = make_link(&victim, &p.mapper).unwrap_err().to_string();
        assert!(
            e.contains(&victim.display().to_string())
                && e.contains("a file")
                && e.contains("refusing"),
            "{e}"
        );
        // A symlink someone else made, to something else.
        let other = dev.join("vg/other");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &other).unwrap();
        let e = make_link(&other, &dev.join("mapper/vg-other"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a symlink to /etc/passwd"), "{e}");
        // Removal (a deactivation, or the undo of a failed activation) leaves both.
        remove(NodeMode::Direct, &p).unwrap();
        let q = NodePaths::new(dev, "vg-other", Some(("vg", "other")));
        remove(NodeMode::Direct, &q).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"someone's data");
        assert_eq!(
            std::fs::read_link(&other).unwrap(),
            Path::new("/etc/passwd")
        );
        // A file where the mapper node goes is not removed either.
        std::fs::create_dir_all(dev.join("mapper")).unwrap();
        std::fs::write(&q.mapper, b"x").unwrap();
        remove(NodeMode::Direct, &q).unwrap();
        assert!(q.mapper.exists());
    }

    #[test]
    fn stale_links_of_dm_devices_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path();
        let p = NodePaths::new(dev, "vg-lv", Some(("vg", "lv")));
        let link = p.lv_link.clone().unwrap();
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        // udev's shape, and lvm2's for another (renamed) device.
        for stale in ["../dm-7", &dev.join("mapper/vg-old").display().to_string()] {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(stale, &link).unwrap();
            make_link(&link, &p.mapper).unwrap();
            assert_eq!(std::fs::read_link(&link).unwrap(), p.mapper, "{stale}");
        }
        // Look-alikes are not ours.
        for odd in ["../dm-7x", "../../dm-7", "/dev/mapper/../shm/x"] {
            assert!(!is_dm_link_target(Path::new(odd), &p.mapper), "{odd}");
        }
    }

    #[test]
    fn a_character_device_is_never_replaced() {
        // /dev/mapper/control (VG "mapper", LV "control"): /dev/null stands in for a
        // character device node (mknod needs a real /dev).
        let e = make_link(Path::new("/dev/null"), Path::new("/dev/mapper/mapper-null"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device 1:3"), "{e}");
        let e = make_block_node(
            Path::new("/dev/null"),
            DevNum {
                major: 253,
                minor: 0,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("character device"), "{e}");
        assert!(Path::new("/dev/null").exists());
    }

    #[test]
    fn direct_links_and_removal_in_a_scratch_dev_dir() {
        // Symlinks and directories only (mknod needs root and a real /dev): the link
        // is made, replaced when stale, and removed with its then-empty VG directory.
        let dir = tempfile::tempdir().unwrap();
        let p = NodePaths::new(dir.path(), "vg-lv", Some(("vg", "lv")));
        make_link(p.lv_link.as_ref().unwrap(), &p.mapper).unwrap();
        make_link(p.lv_link.as_ref().unwrap(), &p.mapper).unwrap();
        assert_eq!(
            std::fs::read_link(p.lv_link.as_ref().unwrap()).unwrap(),
            p.mapper
        );
        // A mapper entry as udev leaves it (mknod needs a real /dev).
        std::fs::create_dir_all(p.mapper.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("../dm-3", &p.mapper).unwrap();
        remove(NodeMode::Direct, &p).unwrap();
        assert!(!dir.path().join("vg").exists());
        assert!(!exists_no_follow(&p.mapper));
        // Removing again is fine.
        remove(NodeMode::Direct, &p).unwrap();
    }
}
