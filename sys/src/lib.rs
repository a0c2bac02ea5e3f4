//! Raw Linux kernel interfaces for lvmd.
//!
//! Thin, typed wrappers around the ioctls lvmd needs, with no policy:
//! - [`dm`]: asking the kernel whether device-mapper is there (`DM_VERSION`, through the
//!   `devicemapper` crate), and the errno inside that crate's errors.
//! - [`blkdev`]: sizes and sector sizes of block devices, zeroing ranges of them (and of plain files
//!   standing in for them).
//! - [`loopdev`]: attaching files as loop devices, for tests and file-backed
//!   demo volumes.
//! - [`mount`]: mounting, binding and unmounting by file descriptor (the kernel's
//!   `fsopen`/`open_tree`/`move_mount` API), and which mount a descriptor is on.

pub mod blkdev;
pub mod dm;
pub mod loopdev;
pub mod mount;

/// Build an ioctl request number the way `<asm-generic/ioctl.h>` does
/// (`_IOC(dir, type, nr, size)`), so the numbers below read like the C headers.
pub(crate) const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

pub(crate) const IOC_NONE: u32 = 0;
pub(crate) const IOC_READ: u32 = 2;

/// Turn a `-1` return of a libc call into the thread's `errno` as an error.
pub(crate) fn cvt(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioc_matches_the_kernel_headers() {
        // Values from a C program including <linux/fs.h> and <linux/loop.h>.
        assert_eq!(ioc(IOC_READ, 0x12, 114, 8), 0x8008_1272); // BLKGETSIZE64
        assert_eq!(ioc(IOC_NONE, 0x12, 104, 0), 0x1268); // BLKSSZGET
        assert_eq!(ioc(IOC_NONE, 0x4c, 0x0a, 0), 0x4c0a); // LOOP_CONFIGURE
    }
}
