//! A PV's block device (or a regular file standing in for one in tests): positioned
//! reads and writes, and flushes that reach the disk before the next commit step.
//!
//! Block devices are opened with O_DIRECT, as lvm2 opens them: lvm2 writes metadata
//! around the page cache, so a cached read could show lvmd a VG that lvm2 has already
//! replaced. Direct I/O must be aligned to the logical block size; unaligned requests
//! go through an aligned bounce buffer (read-modify-write for writes).

use super::StoreError;
use crate::units::Bytes;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Device {
    path: PathBuf,
    file: File,
    size: Bytes,
    /// Alignment for direct I/O; `None` for buffered files.
    direct_align: Option<usize>,
}

/// How a device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// Write, and fail with EBUSY if anything else holds the device open exclusively
    /// (a mounted filesystem, a device-mapper table): for making a new PV.
    WriteExclusive,
}

/// A zeroed heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

impl AlignedBuf {
    fn new(len: usize, align: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(align), align).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory for a {len}-byte I/O buffer");
        AlignedBuf { ptr, layout }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes, zero-initialised, owned by us.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

impl Device {
    pub fn open(path: &Path, access: Access) -> Result<Device, StoreError> {
        let io = |what| {
            move |source| StoreError::Io {
                path: path.to_owned(),
                what,
                source,
            }
        };
        let is_block = std::fs::metadata(path)
            .map_err(io("open"))?
            .file_type()
            .is_block_device();
        let mut flags = libc::O_CLOEXEC;
        if is_block {
            flags |= libc::O_DIRECT;
            // O_EXCL on a block device means "claim it"; on a regular file it means
            // nothing without O_CREAT.
            if access == Access::WriteExclusive {
                flags |= libc::O_EXCL;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(access != Access::Read)
            .custom_flags(flags)
            .open(path)
            .map_err(io("open"))?;
        let size = lvmd_sys::blkdev::device_size_bytes(&file).map_err(io("read the size of"))?;
        let direct_align = if is_block {
            let lbs = lvmd_sys::blkdev::logical_block_size(&file)
                .map_err(io("read the block size of"))?;
            Some((lbs as usize).max(512))
        } else {
            None
        };
        Ok(Device {
            path: path.to_owned(),
            file,
            size: Bytes(size),
            direct_align,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> Bytes {
        self.size
    }

    fn io_err(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// The aligned span covering `offset..offset+len`.
    fn aligned_span(offset: u64, len: u64, align: u64) -> (u64, u64) {
        let start = offset / align * align;
        let end = (offset + len).div_ceil(align) * align;
        (start, end - start)
    }

    /// Reads exactly `len` bytes at `offset`; a range past the end is an error.
    pub fn read_at(&self, offset: Bytes, len: u64) -> Result<Vec<u8>, StoreError> {
        self.check_range(offset, len)?;
        let Some(align) = self.direct_align else {
            let mut buf = vec![0u8; len as usize];
            self.file
                .read_exact_at(&mut buf, offset.0)
                .map_err(self.io_err("read"))?;
            return Ok(buf);
        };
        let (start, span) = Self::aligned_span(offset.0, len, align as u64);
        let mut buf = AlignedBuf::new(span as usize, align);
        let slice = &mut buf.as_mut_slice()[..span as usize];
        self.file
            .read_exact_at(slice, start)
            .map_err(self.io_err("read"))?;
        let from = (offset.0 - start) as usize;
        Ok(slice[from..from + len as usize].to_vec())
    }

    pub fn write_at(&self, offset: Bytes, data: &[u8]) -> Result<(), StoreError> {
        self.check_range(offset, data.len() as u64)?;
        let Some(align) = self.direct_align else {
            return self
                .file
                .write_all_at(data, offset.0)
                .map_err(self.io_err("write"));
        };
        let (start, span) = Self::aligned_span(offset.0, data.len() as u64, align as u64);
        let mut buf = AlignedBuf::new(span as usize, align);
        let slice = &mut buf.as_mut_slice()[..span as usize];
        let from = (offset.0 - start) as usize;
        if from != 0 || data.len() != span as usize {
            // Keep the bytes around the write that share its blocks.
            self.file
                .read_exact_at(slice, start)
                .map_err(self.io_err("read"))?;
        }
        slice[from..from + data.len()].copy_from_slice(data);
        self.file
            .write_all_at(slice, start)
            .map_err(self.io_err("write"))
    }

    /// Waits until everything written so far is on stable storage.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(self.io_err("flush"))
    }

    fn check_range(&self, offset: Bytes, len: u64) -> Result<(), StoreError> {
        match offset.0.checked_add(len) {
            Some(end) if end <= self.size.0 => Ok(()),
            _ => Err(StoreError::OutOfRange {
                path: self.path.clone(),
                offset,
                len: Bytes(len),
                size: self.size,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_io_on_a_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::File::create(&p).unwrap().set_len(8192).unwrap();
        let d = Device::open(&p, Access::Write).unwrap();
        d.write_at(Bytes(700), b"hello").unwrap();
        assert_eq!(d.read_at(Bytes(699), 7).unwrap(), b"\0hello\0");
        let e = d.read_at(Bytes(8190), 4).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
    }

    #[test]
    fn aligned_span_covers_the_request() {
        assert_eq!(Device::aligned_span(700, 5, 512), (512, 512));
        assert_eq!(Device::aligned_span(510, 5, 512), (0, 1024));
        assert_eq!(Device::aligned_span(4096, 512, 4096), (4096, 4096));
    }
}
