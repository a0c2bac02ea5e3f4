//! Sizes of block devices, and of regular files that stand in for them.
//!
//! Tests and demo volumes use plain files where a real node would use a disk,
//! so the size helpers accept both and answer the same question: how many
//! bytes can be addressed; [`zero_range`] zeroes a range of either.

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
/// `BLKPBSZGET`: `_IO(0x12, 123)`, the physical block size, as an unsigned int.
const BLKPBSZGET: u32 = ioc(IOC_NONE, 0x12, 123, 0);
/// `BLKZEROOUT`: `_IO(0x12, 127)`, zero a byte range given as `u64[2]` (start, length).
const BLKZEROOUT: u32 = ioc(IOC_NONE, 0x12, 127, 0);
/// `BLKRASET`: `_IO(0x12, 98)`, the read-ahead in sectors, passed by value.
const BLKRASET: u32 = ioc(IOC_NONE, 0x12, 98, 0);

/// Sets an open block device's read-ahead to `sectors` (`BLKRASET`, as libdm does
/// for a device whose LV names its read-ahead).
pub fn set_read_ahead(fd: impl AsFd, sectors: u32) -> io::Result<()> {
    // SAFETY: BLKRASET takes its argument by value and writes nothing.
    cvt(unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            BLKRASET as _,
            libc::c_ulong::from(sectors),
        )
    })?;
    Ok(())
}

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

/// The physical block size in bytes of an open block device (`BLKPBSZGET`): the
/// unit it writes without a read-modify-write. A regular file answers 512, as
/// [`logical_block_size`] does.
pub fn physical_block_size(fd: impl AsFd) -> io::Result<u32> {
    let fd = fd.as_fd();
    let st = fstat(fd)?;
    if is_blk(&st) {
        let mut size: libc::c_uint = 0;
        // SAFETY: BLKPBSZGET writes one unsigned int through the pointer.
        cvt(unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                BLKPBSZGET as _,
                &mut size as *mut libc::c_uint,
            )
        })?;
        Ok(size)
    } else if is_reg(&st) {
        Ok(512)
    } else {
        Err(not_a_device("physical_block_size"))
    }
}

/// Makes `len` bytes at `offset` of an open block device or regular file read as zeros.
///
/// A block device gets the kernel's zero-out (`blkdev_issue_zeroout`), never a plain
/// discard, so the result never depends on what a discard happens to do. First as
/// `fallocate(PUNCH_HOLE | KEEP_SIZE)`: WRITE ZEROES that may unmap (thin and
/// SSD devices give the space back; a loop device punches a hole in its file), refused
/// with `EOPNOTSUPP` where the device has no such command; then as `BLKZEROOUT`, which
/// writes zero pages where the device has no WRITE ZEROES. The range must be aligned
/// to the logical block size. A regular file gets
/// `FALLOC_FL_ZERO_RANGE`, or a hole punched with its size kept where the filesystem
/// has no zero-range, or zeros written where it has neither. Nothing here flushes a
/// volatile cache: callers that need the zeros to survive a power cut `fsync` after.
pub fn zero_range(file: &fs::File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let st = fstat(file)?;
    if is_blk(&st) {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate on an open fd; the kernel checks the range.
        if unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
        let range: [u64; 2] = [offset, len];
        // SAFETY: BLKZEROOUT reads two u64 through the pointer.
        cvt(unsafe { libc::ioctl(file.as_raw_fd(), BLKZEROOUT as _, range.as_ptr()) })?;
        Ok(())
    } else if is_reg(&st) {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range past 2^64"))?;
        if end > st.st_size as u64 {
            // Zeroing must never grow an image file (lvm2 sized the PV from it).
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "range {offset}+{len} ends past the file's {} bytes",
                    st.st_size
                ),
            ));
        }
        let fd = file.as_raw_fd();
        for mode in [
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        ] {
            // SAFETY: fallocate on an open fd with in-range arguments.
            let r = unsafe { libc::fallocate(fd, mode, offset as i64, len as i64) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if !matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
            ) {
                return Err(e);
            }
        }
        write_zeros(file, offset, len)
    } else {
        Err(not_a_device("zero_range"))
    }
}

fn write_zeros(file: &fs::File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let buf = vec![0u8; (1 << 20).min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = buf.len().min((len - done) as usize);
        file.write_all_at(&buf[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
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
        assert_eq!(BLKZEROOUT, 0x127f);
        assert_eq!(BLKRASET, 0x1262);
    }

    #[test]
    fn zero_range_zeroes_exactly_the_range_of_a_file() {
        use std::os::unix::fs::FileExt;
        let (path, file) = temp_file_of(1 << 20);
        file.write_all_at(&vec![0xa5u8; 1 << 20], 0).unwrap();
        zero_range(&file, 4096, 8192).unwrap();
        let mut back = vec![0u8; 1 << 20];
        file.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 0xa5));
        assert!(back[4096..12288].iter().all(|&b| b == 0));
        assert!(back[12288..].iter().all(|&b| b == 0xa5));
        // Never past the end: the file keeps its size, the call is refused.
        let err = zero_range(&file, (1 << 20) - 512, 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(file.metadata().unwrap().len(), 1 << 20);
        fs::remove_file(path).unwrap();
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
