//! Device-mapper detection by asking the kernel, through the `devicemapper` crate.
//!
//! A `/dev/mapper/control` node proves nothing: lvm2's and dmsetup's package
//! scripts create it even on kernels without device-mapper, where opening it
//! fails with `ENODEV`. The only reliable test is a `DM_VERSION` ioctl.

use devicemapper::{DmError, DM};
use std::io;

/// The control node libdm, lvm2 and the `devicemapper` crate open.
pub const DM_CONTROL_PATH: &str = "/dev/mapper/control";

/// The ioctl interface major version lvmd speaks (`DM_VERSION_MAJOR`).
pub const DM_VERSION_MAJOR: u32 = 4;

/// Opens the control node, failing with the kernel's errno: `ENOENT` if there is
/// no node, `ENODEV` if the node is stale (no dm driver).
pub fn open() -> io::Result<DM> {
    DM::new().map_err(|e| match e {
        // The crate keeps only the text of the open's error: the same open again
        // gives back the errno, so callers can tell a missing node from a stale one.
        DmError::Core(devicemapper::errors::Error::ContextInit(text)) => {
            match std::fs::File::open(DM_CONTROL_PATH) {
                Err(errno) => errno,
                Ok(_) => io::Error::other(text),
            }
        }
        other => io_error(&other),
    })
}

/// The errno inside a `devicemapper` error, as an `io::Error` (its text otherwise).
pub fn io_error(err: &DmError) -> io::Error {
    match err {
        DmError::Core(devicemapper::errors::Error::Ioctl(_, _, _, errno)) => {
            io::Error::from_raw_os_error(**errno as i32)
        }
        other => io::Error::other(other.to_string()),
    }
}

/// The ioctl interface version `dm` answers `DM_VERSION` with, as
/// `(major, minor, patch)`, e.g. `(4, 47, 0)` on Linux 6.1.
pub fn version(dm: &DM) -> io::Result<(u32, u32, u32)> {
    dm.version().map_err(|e| io_error(&e))
}

/// The device-mapper ioctl interface version of the running kernel.
///
/// Fails with the kernel's error when device-mapper is missing: `ENOENT` if there
/// is no control node, `ENODEV` if the node is stale (no dm driver).
pub fn dm_version() -> io::Result<(u32, u32, u32)> {
    version(&open()?)
}

/// Whether the running kernel has a working device-mapper we can talk to.
pub fn dm_available() -> bool {
    matches!(dm_version(), Ok((DM_VERSION_MAJOR, _, _)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_agrees_with_version() {
        assert_eq!(
            dm_available(),
            dm_version()
                .map(|v| v.0 == DM_VERSION_MAJOR)
                .unwrap_or(false)
        );
    }

    #[test]
    fn without_device_mapper_the_error_is_the_kernels() {
        // The dev and CI hosts have no device-mapper: either no control node, or the
        // stale one lvm2's package scripts leave (ENODEV). Elsewhere it must answer.
        match dm_version() {
            Ok((major, _, _)) => assert_eq!(major, DM_VERSION_MAJOR),
            Err(e) => {
                let node = std::path::Path::new(DM_CONTROL_PATH);
                let expected = if node.exists() {
                    libc::ENODEV
                } else {
                    libc::ENOENT
                };
                assert_eq!(e.raw_os_error(), Some(expected), "{e}");
            }
        }
    }

    #[test]
    fn ioctl_errors_keep_their_errno() {
        let err = DmError::Core(devicemapper::errors::Error::Ioctl(
            0,
            None,
            None,
            Box::new(nix::errno::Errno::ENXIO),
        ));
        assert_eq!(io_error(&err).raw_os_error(), Some(libc::ENXIO));
        let other = io_error(&DmError::Dm(devicemapper::ErrorEnum::Invalid, "x".into()));
        assert_eq!(other.raw_os_error(), None);
    }
}
