//! Sizes of block devices, and of regular files that stand in for them.
//!
//! Tests and demo volumes use plain files where a real node would use a disk,
//! so the size helpers accept both and answer the same question: how many
//! bytes can be addressed.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::{cvt, ioc, IOC_NONE, IOC_READ};

/// `BLKGETSIZE64`: `_IOR(0x12, 114, size_t)`, the device size in bytes.
const BLKGETSIZE64: u32 = ioc(IOC_READ, 0x12, 114, std::mem::size_of::<u64>());
/// `BLKSSZGET`: `_IO(0x12, 104)`, the logical block (sector) size, as an int.
const BLKSSZGET: u32 = ioc(IOC_NONE, 0x12, 104, 0);

fn fstat(fd: impl AsFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the whole struct on success.
    cvt(unsafe { libc::fstat(fd.as_fd().as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so `st` is initialised.
    Ok(unsafe { st.assume_init() })
}

fn is_blk(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFBLK
}

fn is_reg(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn not_a_device(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}: neither a block device nor a regular file"),
    )
}

/// The size in bytes of an open block device (`BLKGETSIZE64`) or regular file
/// (`st_size`). Anything else (a directory, a char device) is `InvalidInput`.
pub fn device_size_bytes(fd: impl AsFd) -> io::Result<u64> {
    let fd = fd.as_fd();
    let st = fstat(fd)?;
    if is_blk(&st) {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) })?;
        Ok(size)
    } else if is_reg(&st) {
        Ok(st.st_size as u64)
    } else {
        Err(not_a_device("device_size_bytes"))
    }
}

/// The logical block size in bytes of an open block device (`BLKSSZGET`):
/// the smallest unit it can address, 512 or 4096 in practice. A regular file
/// answers 512, the sector size lvm2 assumes for files behind loop devices.
pub fn logical_block_size(fd: impl AsFd) -> io::Result<u32> {
    let fd = fd.as_fd();
    let st = fstat(fd)?;
    if is_blk(&st) {
        let mut size: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer.
        cvt(unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                BLKSSZGET as _,
                &mut size as *mut libc::c_int,
            )
        })?;
        Ok(size as u32)
    } else if is_reg(&st) {
        Ok(512)
    } else {
        Err(not_a_device("logical_block_size"))
    }
}

/// Whether `path` (after following symlinks, as `/dev/VG/LV` needs) is a
/// block device node.
pub fn is_block_device(path: impl AsRef<Path>) -> io::Result<bool> {
    Ok(fs::metadata(path)?.file_type().is_block_device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn temp_file_of(len: u64) -> (std::path::PathBuf, File) {
        let path =
            std::env::temp_dir().join(format!("lvmd-sys-blkdev-{}-{len}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(len).unwrap();
        (path, file)
    }

    #[test]
    fn ioctl_numbers_match_linux_fs_h() {
        assert_eq!(BLKGETSIZE64, 0x8008_1272);
        assert_eq!(BLKSSZGET, 0x1268);
    }

    #[test]
    fn regular_file_size_is_its_length() {
        let (path, file) = temp_file_of(3 << 20);
        assert_eq!(device_size_bytes(&file).unwrap(), 3 << 20);
        assert_eq!(logical_block_size(&file).unwrap(), 512);
        assert!(!is_block_device(&path).unwrap());
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn directories_and_char_devices_are_refused() {
        let dir = File::open("/").unwrap();
        let err = device_size_bytes(&dir).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let null = File::open("/dev/null").unwrap();
        assert_eq!(
            logical_block_size(&null).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(!is_block_device("/dev/null").unwrap());
    }

    #[test]
    fn missing_path_is_an_error() {
        assert_eq!(
            is_block_device("/nonexistent/dev").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
