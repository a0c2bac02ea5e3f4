//! Loop devices: a regular file attached as a block device `/dev/loopN`.
//!
//! Used by the tests (PVs on sparse files) and later by the daemon for
//! file-backed demo volumes. Attaching follows what util-linux's losetup does:
//! ask `/dev/loop-control` for a free device, then bind the file to it with
//! `LOOP_CONFIGURE` (Linux 5.8+), or `LOOP_SET_FD` + `LOOP_SET_STATUS64` on
//! older kernels.
//!
//! Why not `loopdev-3` (nor `sys-mount`, whose loop support builds on it): it attaches
//! with `LOOP_SET_FD` and only then `LOOP_SET_STATUS64`, so for a moment the device
//! shows the whole file from offset 0, without its size limit and autoclear, and
//! udev's probe may read and announce signatures there (a crash in between leaks a
//! device that never clears itself); it does not retry when another process takes the
//! free device first (`EBUSY`), cannot set the logical block size or the
//! `lo_file_name` label lvmd marks its devices with, and reads no status back.
//! `LOOP_CONFIGURE` sets everything in one ioctl where the kernel has it, as
//! util-linux's losetup does.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{cvt, ioc, IOC_NONE};

/// The loop control node (`misc` 10:237).
pub const LOOP_CONTROL_PATH: &str = "/dev/loop-control";

/// Block major of loop devices.
pub const LOOP_MAJOR: u32 = 7;

const LOOP_SET_FD: u32 = ioc(IOC_NONE, 0x4c, 0x00, 0);
const LOOP_CLR_FD: u32 = ioc(IOC_NONE, 0x4c, 0x01, 0);
const LOOP_SET_STATUS64: u32 = ioc(IOC_NONE, 0x4c, 0x04, 0);
const LOOP_GET_STATUS64: u32 = ioc(IOC_NONE, 0x4c, 0x05, 0);
const LOOP_SET_CAPACITY: u32 = ioc(IOC_NONE, 0x4c, 0x07, 0);
const LOOP_SET_DIRECT_IO: u32 = ioc(IOC_NONE, 0x4c, 0x08, 0);
const LOOP_SET_BLOCK_SIZE: u32 = ioc(IOC_NONE, 0x4c, 0x09, 0);
const LOOP_CONFIGURE: u32 = ioc(IOC_NONE, 0x4c, 0x0a, 0);
const LOOP_CTL_GET_FREE: u32 = ioc(IOC_NONE, 0x4c, 0x82, 0);

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// How often to ask for another free device when others keep winning the race.
const MAX_ATTACH_ATTEMPTS: u32 = 64;
/// How long to wait for devtmpfs to show a freshly created `/dev/loopN`.
const NODE_WAIT: Duration = Duration::from_secs(2);

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>`, the argument of `LOOP_CONFIGURE`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// How to attach a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoopOptions {
    /// Attach read-only (the file is opened read-only too).
    pub read_only: bool,
    /// Let the kernel detach the device on its last close. The returned
    /// [`LoopDevice`] holds the device open, so this happens when it is
    /// dropped, unless something else (a dm table, a mount) still uses it.
    pub autoclear: bool,
    /// Where in the file the device starts, in bytes.
    pub offset: u64,
    /// The device's size in bytes; 0 means up to the end of the file.
    pub size_limit: u64,
    /// Logical block size (512, 1024, 2048 or 4096); 0 keeps the default 512.
    pub block_size: u32,
    /// Ask for direct I/O to the backing file (`LO_FLAGS_DIRECT_IO`, as kubelet's
    /// `losetup --direct-io=on`): no second copy in the page cache. The kernel quietly
    /// falls back to buffered I/O where the backing file cannot do it.
    pub direct_io: bool,
    /// What `LOOP_GET_STATUS64` reports as the file name (`lo_file_name`, at most 63
    /// bytes); `None` puts the backing path there. The kernel keeps it as given and
    /// never looks at it, so it can mark who attached the device (sysfs's
    /// `backing_file`, which `losetup -l` shows, stays the real path).
    pub label: Option<String>,
}

impl LoopOptions {
    fn info(&self, backing: &Path) -> LoopInfo64 {
        let mut info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: self.offset,
            lo_sizelimit: self.size_limit,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; LO_KEY_SIZE],
            lo_init: [0; 2],
        };
        if self.read_only {
            info.lo_flags |= LO_FLAGS_READ_ONLY;
        }
        if self.autoclear {
            info.lo_flags |= LO_FLAGS_AUTOCLEAR;
        }
        if self.direct_io {
            info.lo_flags |= LO_FLAGS_DIRECT_IO;
        }
        // Informational only (sysfs shows the real path); keep the NUL.
        let name = match &self.label {
            Some(label) => label.as_bytes(),
            None => backing.as_os_str().as_bytes(),
        };
        let n = name.len().min(LO_NAME_SIZE - 1);
        info.lo_file_name[..n].copy_from_slice(&name[..n]);
        info
    }
}

/// An attached loop device, held open.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    number: u32,
    file: File,
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `N` of `/dev/loopN`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The open device, for I/O and ioctls.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Detach the backing file (`LOOP_CLR_FD`). If the device is still open
    /// elsewhere, the kernel detaches it lazily, on its last close; note that
    /// udev's probe (blkid) opens every new loop device for a moment, so right
    /// after an attach "elsewhere" is common. Poll [`backing_file`] if the
    /// device must be free before going on.
    pub fn detach(self) -> io::Result<()> {
        clear_fd(&self.file)
    }

    /// Close our handle and keep the attachment (unless `autoclear` was set,
    /// in which case the kernel detaches it when nothing else holds it).
    pub fn into_path(self) -> PathBuf {
        self.path
    }
}

/// Attach `backing` (a regular file) to a free loop device.
///
/// Another process may take the free device between our `LOOP_CTL_GET_FREE`
/// and the bind; the bind then fails with `EBUSY`, and we ask for another.
pub fn attach(backing: impl AsRef<Path>, options: &LoopOptions) -> io::Result<LoopDevice> {
    attach_with(backing.as_ref(), options, bind)
}

type BindFn = fn(&File, &File, &LoopInfo64, u32) -> io::Result<()>;

fn attach_with(backing: &Path, options: &LoopOptions, bind: BindFn) -> io::Result<LoopDevice> {
    let backing_file = OpenOptions::new()
        .read(true)
        .write(!options.read_only)
        .custom_flags(libc::O_CLOEXEC)
        .open(backing)?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(LOOP_CONTROL_PATH)?;
    let info = options.info(backing);

    for _ in 0..MAX_ATTACH_ATTEMPTS {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let number = cvt(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) })?;
        let number = number as u32;
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let file = match open_new_node(&path, options.read_only) {
            Ok(file) => file,
            // Removed by someone else (LOOP_CTL_REMOVE) since we asked.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => continue,
            Err(e) => return Err(e),
        };
        match bind(&file, &backing_file, &info, options.block_size) {
            Ok(()) => return Ok(LoopDevice { path, number, file }),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(e),
        }
    }
    // EBUSY's kind (ResourceBusy) with a message naming the file.
    Err(io::Error::new(
        io::Error::from_raw_os_error(libc::EBUSY).kind(),
        format!(
            "no free loop device for {} after {MAX_ATTACH_ATTEMPTS} attempts",
            backing.display()
        ),
    ))
}

/// Detach the loop device at `path` (`LOOP_CLR_FD`); lazily if it is open
/// elsewhere, as for [`LoopDevice::detach`]. `ENXIO` if it is not attached.
pub fn detach(path: impl AsRef<Path>) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path.as_ref())?;
    clear_fd(&file)
}

/// The file attached to the loop device at `path`, or `None` if it is free.
/// Read from sysfs, so it is the file's current path.
pub fn backing_file(path: impl AsRef<Path>) -> io::Result<Option<PathBuf>> {
    let path = path.as_ref();
    let rdev = std::fs::metadata(path)?.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    if major != LOOP_MAJOR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a loop device", path.display()),
        ));
    }
    let sys = format!("/sys/dev/block/{major}:{minor}/loop/backing_file");
    match std::fs::read(sys) {
        Ok(mut name) => {
            while name.last() == Some(&b'\n') {
                name.pop();
            }
            Ok(Some(PathBuf::from(OsString::from_vec(name))))
        }
        // The loop/ directory exists only while a file is attached; while the
        // kernel tears it down, reading it can fail with ENXIO.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the kernel says about an attached loop device (`LOOP_GET_STATUS64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopStatus {
    /// `N` of `/dev/loopN`.
    pub number: u32,
    /// `st_dev` and `st_ino` of the backing file.
    pub backing_dev: u64,
    pub backing_inode: u64,
    /// `st_rdev` of the backing file: the device number when it is a block device
    /// node, 0 for a regular file.
    pub backing_rdev: u64,
    pub read_only: bool,
    pub autoclear: bool,
    pub direct_io: bool,
    pub offset: u64,
    pub size_limit: u64,
    /// `lo_file_name`: the backing path as given at attach time, or the
    /// [`LoopOptions::label`] given then.
    pub file_name: String,
}

/// The status of the loop device at `path`, or `None` if no file is attached
/// (`ENXIO`). Opens the device read-only, which changes nothing.
pub fn status(path: impl AsRef<Path>) -> io::Result<Option<LoopStatus>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path.as_ref())?;
    // SAFETY: LoopInfo64 is plain data; all zeroes is a valid value.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: LOOP_GET_STATUS64 writes one `struct loop_info64`.
    let ret = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            LOOP_GET_STATUS64 as _,
            &mut info as *mut LoopInfo64,
        )
    };
    match cvt(ret) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
        Err(e) => return Err(e),
    }
    let name_len = info
        .lo_file_name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(LO_NAME_SIZE);
    Ok(Some(LoopStatus {
        number: info.lo_number,
        backing_dev: info.lo_device,
        backing_inode: info.lo_inode,
        backing_rdev: info.lo_rdevice,
        read_only: info.lo_flags & LO_FLAGS_READ_ONLY != 0,
        autoclear: info.lo_flags & LO_FLAGS_AUTOCLEAR != 0,
        direct_io: info.lo_flags & LO_FLAGS_DIRECT_IO != 0,
        offset: info.lo_offset,
        size_limit: info.lo_sizelimit,
        file_name: String::from_utf8_lossy(&info.lo_file_name[..name_len]).into_owned(),
    }))
}

/// Makes the loop device at `path` take the current size of its backing file
/// (`LOOP_SET_CAPACITY`), after the file or device behind it grew.
pub fn set_capacity(path: impl AsRef<Path>) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path.as_ref())?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), LOOP_SET_CAPACITY as _) }).map(drop)
}

/// The loop devices that have a file attached, as `/dev/loopN`, in order of `N`
/// (from sysfs: `/sys/block/loopN/loop/` exists only while attached).
pub fn attached() -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<u32> = Vec::new();
    for entry in std::fs::read_dir("/sys/block")? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("loop"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if entry.path().join("loop").exists() {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found
        .into_iter()
        .map(|n| PathBuf::from(format!("/dev/loop{n}")))
        .collect())
}

/// Open a node that `LOOP_CTL_GET_FREE` may have just created: devtmpfs adds
/// it asynchronously from our point of view, so wait a little for it.
fn open_new_node(path: &Path, read_only: bool) -> io::Result<File> {
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        match OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
        {
            Err(e) if e.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn bind(dev: &File, backing: &File, info: &LoopInfo64, block_size: u32) -> io::Result<()> {
    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size,
        // SAFETY: LoopInfo64 is plain data (integers and byte arrays).
        info: unsafe { std::ptr::read(info) },
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`.
    let ret = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &config as *const LoopConfig,
        )
    };
    match cvt(ret) {
        Ok(_) => Ok(()),
        // Kernels before 5.8 do not know LOOP_CONFIGURE: EINVAL (or ENOTTY).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => {
            bind_legacy(dev, backing, info, block_size)
        }
        Err(e) => Err(e),
    }
}

/// The pre-5.8 way, in three steps; undone if a later step fails so the
/// device is not left half-configured.
fn bind_legacy(dev: &File, backing: &File, info: &LoopInfo64, block_size: u32) -> io::Result<()> {
    let fd = dev.as_raw_fd();
    // SAFETY: LOOP_SET_FD takes the backing file descriptor by value.
    cvt(unsafe { libc::ioctl(fd, LOOP_SET_FD as _, backing.as_raw_fd() as libc::c_ulong) })?;
    let configure = || -> io::Result<()> {
        // SAFETY: LOOP_SET_STATUS64 reads one `struct loop_info64`.
        cvt(unsafe { libc::ioctl(fd, LOOP_SET_STATUS64 as _, info as *const LoopInfo64) })?;
        if block_size != 0 {
            // SAFETY: LOOP_SET_BLOCK_SIZE takes the size by value.
            cvt(unsafe { libc::ioctl(fd, LOOP_SET_BLOCK_SIZE as _, block_size as libc::c_ulong) })?;
        }
        if info.lo_flags & LO_FLAGS_DIRECT_IO != 0 {
            // LOOP_SET_STATUS64 ignores the flag. Best effort, as with LOOP_CONFIGURE:
            // a backing file that cannot do direct I/O keeps buffered I/O.
            // SAFETY: LOOP_SET_DIRECT_IO takes 0 or 1 by value.
            let _ = unsafe { libc::ioctl(fd, LOOP_SET_DIRECT_IO as _, 1 as libc::c_ulong) };
        }
        Ok(())
    };
    configure().inspect_err(|_| {
        let _ = clear_fd(dev);
    })
}

fn clear_fd(dev: &File) -> io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument.
    cvt(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blkdev;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn ioctl_numbers_match_linux_loop_h() {
        assert_eq!(LOOP_SET_FD, 0x4c00);
        assert_eq!(LOOP_CLR_FD, 0x4c01);
        assert_eq!(LOOP_SET_STATUS64, 0x4c04);
        assert_eq!(LOOP_GET_STATUS64, 0x4c05);
        assert_eq!(LOOP_SET_CAPACITY, 0x4c07);
        assert_eq!(LOOP_SET_DIRECT_IO, 0x4c08);
        assert_eq!(LOOP_CONFIGURE, 0x4c0a);
        assert_eq!(LOOP_CTL_GET_FREE, 0x4c82);
    }

    #[test]
    fn info_carries_flags_offset_and_a_terminated_name() {
        let long = "/x".repeat(100);
        let opts = LoopOptions {
            read_only: true,
            autoclear: true,
            offset: 4096,
            size_limit: 1 << 20,
            block_size: 0,
            direct_io: true,
            label: None,
        };
        let info = opts.info(Path::new(&long));
        assert_eq!(
            info.lo_flags,
            LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO
        );
        assert_eq!((info.lo_offset, info.lo_sizelimit), (4096, 1 << 20));
        assert_eq!(info.lo_file_name[LO_NAME_SIZE - 1], 0);
        assert_eq!(&info.lo_file_name[..4], b"/x/x");
    }

    #[test]
    fn attaching_a_missing_file_fails_before_touching_loop_devices() {
        let err = attach("/nonexistent/backing.img", &LoopOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn backing_file_refuses_other_devices() {
        assert!(backing_file("/dev/null").is_err());
    }

    // The tests below attach real loop devices: they need root and a kernel
    // with loop support (the dev machines and CI have both).

    /// A sparse file removed on drop.
    struct TempImage(PathBuf);

    impl TempImage {
        fn new(len: u64) -> TempImage {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "lvmd-sys-loop-{}-{}.img",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            File::create(&path).unwrap().set_len(len).unwrap();
            TempImage(path)
        }
    }

    impl Drop for TempImage {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Whether this process may attach loop devices; tests that need it
    /// say so loudly when they cannot run, rather than pass quietly.
    fn can_attach() -> bool {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: loop device tests need root");
            return false;
        }
        assert!(
            Path::new(LOOP_CONTROL_PATH).exists(),
            "running as root but {LOOP_CONTROL_PATH} is missing (modprobe loop?)"
        );
        true
    }

    /// Our device goes away: free, or (other processes share this host's
    /// loop devices) already reused for some other file. Detach may be lazy
    /// (udev in the test VM probes new devices), so give it some time.
    fn assert_detached(dev: &Path, ours: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while backing_file(dev).unwrap().as_deref() == Some(ours) {
            assert!(
                Instant::now() < deadline,
                "{} still attached to {}",
                dev.display(),
                ours.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn attach_gives_a_block_device_of_the_file_size() {
        if !can_attach() {
            return;
        }
        let image = TempImage::new(5 << 20);
        let dev = attach(&image.0, &LoopOptions::default()).unwrap();
        let path = dev.path().to_owned();
        assert_eq!(path, PathBuf::from(format!("/dev/loop{}", dev.number())));
        assert!(blkdev::is_block_device(&path).unwrap());
        assert_eq!(blkdev::device_size_bytes(dev.file()).unwrap(), 5 << 20);
        assert_eq!(blkdev::logical_block_size(dev.file()).unwrap(), 512);
        assert_eq!(
            backing_file(&path).unwrap().as_deref(),
            Some(image.0.as_path())
        );

        // Writes through the device land in the file.
        let mut f = dev.file();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"LABELONE").unwrap();
        f.sync_all().unwrap();
        let mut back = [0u8; 8];
        let mut img = File::open(&image.0).unwrap();
        img.seek(SeekFrom::Start(1 << 20)).unwrap();
        img.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"LABELONE");

        dev.detach().unwrap();
        assert_detached(&path, &image.0);
    }

    #[test]
    fn detach_by_path() {
        if !can_attach() {
            return;
        }
        let image = TempImage::new(1 << 20);
        let path = attach(&image.0, &LoopOptions::default())
            .unwrap()
            .into_path();
        // Still attached after our handle is closed (no autoclear).
        assert_eq!(
            backing_file(&path).unwrap().as_deref(),
            Some(image.0.as_path())
        );
        detach(&path).unwrap();
        assert_detached(&path, &image.0);
    }

    #[test]
    fn offset_size_limit_read_only_and_block_size() {
        if !can_attach() {
            return;
        }
        let image = TempImage::new(8 << 20);
        let opts = LoopOptions {
            read_only: true,
            offset: 1 << 20,
            size_limit: 4 << 20,
            block_size: 4096,
            ..LoopOptions::default()
        };
        let dev = attach(&image.0, &opts).unwrap();
        assert_eq!(blkdev::device_size_bytes(dev.file()).unwrap(), 4 << 20);
        assert_eq!(blkdev::logical_block_size(dev.file()).unwrap(), 4096);
        let ro = std::fs::read_to_string(format!("/sys/block/loop{}/ro", dev.number())).unwrap();
        assert_eq!(ro.trim(), "1");
        let path = dev.path().to_owned();
        dev.detach().unwrap();
        assert_detached(&path, &image.0);
    }

    #[test]
    fn read_only_loop_over_a_block_device_refuses_writes_and_follows_growth() {
        if !can_attach() {
            return;
        }
        use std::os::unix::fs::FileExt;
        // A loop device over a file stands in for an LV's dm device.
        let image = TempImage::new(2 << 20);
        let lower = attach(&image.0, &LoopOptions::default()).unwrap();
        lower.file().write_all_at(b"lower data", 4096).unwrap();
        lower.file().sync_all().unwrap();
        let lower_rdev = std::fs::metadata(lower.path()).unwrap().rdev();

        let opts = LoopOptions {
            read_only: true,
            direct_io: true,
            label: Some("lvmd-test-ro".into()),
            ..LoopOptions::default()
        };
        let upper = attach(lower.path(), &opts).unwrap().into_path();
        let st = status(&upper).unwrap().expect("attached");
        assert!(st.read_only);
        assert_eq!(st.backing_rdev, lower_rdev);
        assert_eq!(st.file_name, "lvmd-test-ro");
        assert_eq!(backing_file(&upper).unwrap().as_deref(), Some(lower.path()));
        assert!(attached().unwrap().contains(&upper));

        // Writing is refused (the open itself may succeed: Linux checks a block
        // device's read-only flag on each write, EPERM); reading shows the lower
        // device's data.
        match OpenOptions::new().write(true).open(&upper) {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}"),
            Ok(f) => {
                let e = f.write_at(&[0u8; 512], 0).unwrap_err();
                assert!(
                    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EROFS)),
                    "{e}"
                );
            }
        }
        let mut buf = [0u8; 10];
        File::open(&upper)
            .unwrap()
            .read_exact_at(&mut buf, 4096)
            .unwrap();
        assert_eq!(&buf, b"lower data");

        // The lower device grows: the read-only view follows after LOOP_SET_CAPACITY.
        File::options()
            .write(true)
            .open(&image.0)
            .unwrap()
            .set_len(3 << 20)
            .unwrap();
        set_capacity(lower.path()).unwrap();
        set_capacity(&upper).unwrap();
        let size = |p: &Path| blkdev::device_size_bytes(File::open(p).unwrap()).unwrap();
        assert_eq!(size(lower.path()), 3 << 20);
        assert_eq!(size(&upper), 3 << 20);

        detach(&upper).unwrap();
        assert_detached(&upper, lower.path());
        let lower_path = lower.path().to_owned();
        lower.detach().unwrap();
        assert_detached(&lower_path, &image.0);
    }

    #[test]
    fn status_of_a_free_device_is_none() {
        if !can_attach() {
            return;
        }
        let image = TempImage::new(1 << 20);
        let path = attach(&image.0, &LoopOptions::default())
            .unwrap()
            .into_path();
        assert!(status(&path).unwrap().is_some());
        detach(&path).unwrap();
        assert_detached(&path, &image.0);
        // Free, or already reused by another process on this host.
        if let Some(st) = status(&path).unwrap() {
            assert_ne!(st.file_name, image.0.display().to_string());
        }
    }

    #[test]
    fn legacy_bind_for_kernels_before_5_8() {
        if !can_attach() {
            return;
        }
        let image = TempImage::new(3 << 20);
        let opts = LoopOptions {
            size_limit: 2 << 20,
            block_size: 4096,
            ..LoopOptions::default()
        };
        let dev = attach_with(&image.0, &opts, bind_legacy).unwrap();
        assert_eq!(blkdev::device_size_bytes(dev.file()).unwrap(), 2 << 20);
        assert_eq!(blkdev::logical_block_size(dev.file()).unwrap(), 4096);
        let path = dev.path().to_owned();
        dev.detach().unwrap();
        assert_detached(&path, &image.0);
    }

    #[test]
    fn autoclear_detaches_when_the_handle_is_dropped() {
        if !can_attach() {
            return;
        }
        let image = TempImage::new(1 << 20);
        let opts = LoopOptions {
            autoclear: true,
            ..LoopOptions::default()
        };
        let dev = attach(&image.0, &opts).unwrap();
        let path = dev.path().to_owned();
        drop(dev);
        // The kernel clears it after the last close (ours, or udev's probe).
        assert_detached(&path, &image.0);
    }

    #[test]
    fn parallel_attaches_get_distinct_devices() {
        if !can_attach() {
            return;
        }
        let images: Vec<TempImage> = (0..6).map(|_| TempImage::new(1 << 20)).collect();
        let devices: Vec<LoopDevice> = std::thread::scope(|s| {
            let handles: Vec<_> = images
                .iter()
                .map(|img| s.spawn(|| attach(&img.0, &LoopOptions::default())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        let mut numbers: Vec<u32> = devices.iter().map(LoopDevice::number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), images.len());
        for (dev, img) in devices.iter().zip(&images) {
            assert_eq!(
                backing_file(dev.path()).unwrap().as_deref(),
                Some(img.0.as_path())
            );
        }
        for dev in devices {
            dev.detach().unwrap();
        }
    }
}
