//! Device-mapper detection by asking the kernel.
//!
//! A `/dev/mapper/control` node proves nothing: lvm2's and dmsetup's package
//! scripts create it even on kernels without device-mapper, where opening it
//! fails with `ENODEV`. The only reliable test is a `DM_VERSION` ioctl.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{cvt, ioc, IOC_READ, IOC_WRITE};

/// The control node libdm and lvm2 use.
pub const DM_CONTROL_PATH: &str = "/dev/mapper/control";

/// The ioctl interface major version this code speaks (`DM_VERSION_MAJOR`).
const DM_VERSION_MAJOR: u32 = 4;

/// `struct dm_ioctl` from `<linux/dm-ioctl.h>`: the header of every
/// device-mapper ioctl. Its size (312 bytes) is part of the ioctl number.
#[repr(C)]
struct DmIoctl {
    /// In: the interface version we speak; out: the kernel's.
    version: [u32; 3],
    /// Total size of the buffer passed, this header included.
    data_size: u32,
    /// Offset of the command's payload from the start of this struct.
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; 128],
    uuid: [u8; 129],
    data: [u8; 7],
}

const _: () = assert!(std::mem::size_of::<DmIoctl>() == 312);

/// `DM_VERSION_CMD`, the first command of the interface.
const DM_VERSION_CMD: u8 = 0;
/// `DM_IOCTL`, the ioctl type byte of device-mapper.
const DM_IOCTL_TYPE: u8 = 0xfd;
/// `_IOWR(DM_IOCTL, DM_VERSION_CMD, struct dm_ioctl)`.
const DM_VERSION: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DM_IOCTL_TYPE,
    DM_VERSION_CMD,
    std::mem::size_of::<DmIoctl>(),
);

impl DmIoctl {
    fn new() -> Self {
        let size = std::mem::size_of::<Self>() as u32;
        DmIoctl {
            // Minor 0: the kernel refuses a minor newer than its own, and
            // DM_VERSION needs nothing newer than 4.0.
            version: [DM_VERSION_MAJOR, 0, 0],
            data_size: size,
            data_start: size,
            target_count: 0,
            open_count: 0,
            flags: 0,
            event_nr: 0,
            padding: 0,
            dev: 0,
            name: [0; 128],
            uuid: [0; 129],
            data: [0; 7],
        }
    }
}

/// The device-mapper ioctl interface version of the running kernel, as
/// `(major, minor, patch)`, e.g. `(4, 47, 0)` on Linux 6.1.
///
/// Fails with the kernel's error when device-mapper is missing: `ENOENT` if
/// there is no control node, `ENODEV` if the node is stale (no dm driver).
pub fn dm_version() -> io::Result<(u32, u32, u32)> {
    dm_version_at(Path::new(DM_CONTROL_PATH))
}

/// [`dm_version`] through another control node (for tests and odd /dev layouts).
pub fn dm_version_at(control: &Path) -> io::Result<(u32, u32, u32)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(control)?;
    let mut header = DmIoctl::new();
    // SAFETY: DM_VERSION reads and writes one `struct dm_ioctl`, whose exact
    // layout and size `DmIoctl` has; `data_size` tells the kernel it is no larger.
    cvt(unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            DM_VERSION as _,
            &mut header as *mut DmIoctl,
        )
    })?;
    let [major, minor, patch] = header.version;
    Ok((major, minor, patch))
}

/// Whether the running kernel has a working device-mapper we can talk to.
pub fn dm_available() -> bool {
    matches!(dm_version(), Ok((DM_VERSION_MAJOR, _, _)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ioctl_number_matches_libdm() {
        // DM_VERSION as libdm and strace print it.
        assert_eq!(DM_VERSION, 0xc138_fd00);
    }

    #[test]
    fn header_layout_matches_dm_ioctl_h() {
        assert_eq!(std::mem::offset_of!(DmIoctl, data_size), 12);
        assert_eq!(std::mem::offset_of!(DmIoctl, dev), 40);
        assert_eq!(std::mem::offset_of!(DmIoctl, name), 48);
        assert_eq!(std::mem::offset_of!(DmIoctl, uuid), 176);
        assert_eq!(std::mem::offset_of!(DmIoctl, data), 305);
    }

    #[test]
    fn missing_control_node_is_an_error_not_a_panic() {
        let err = dm_version_at(Path::new("/nonexistent/mapper/control")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_non_dm_node_is_refused() {
        // /dev/null accepts the open but not the ioctl.
        assert!(dm_version_at(Path::new("/dev/null")).is_err());
    }

    #[test]
    fn available_agrees_with_version() {
        assert_eq!(
            dm_available(),
            dm_version().map(|v| v.0 == 4).unwrap_or(false)
        );
    }
}
