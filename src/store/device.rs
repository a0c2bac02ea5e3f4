//! A PV's block device (or a regular file standing in for one in tests): positioned
//! reads and writes, and flushes that reach the disk before the next commit step.

use super::StoreError;
use crate::units::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Device {
    path: PathBuf,
    file: File,
    size: Bytes,
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

impl Device {
    pub fn open(path: &Path, access: Access) -> Result<Device, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            what: "open",
            source,
        };
        let is_block = std::fs::metadata(path)
            .map_err(io)?
            .file_type()
            .is_block_device();
        let mut opts = OpenOptions::new();
        opts.read(true).custom_flags(libc::O_CLOEXEC);
        if access != Access::Read {
            opts.write(true);
        }
        // O_EXCL on a block device means "claim it"; on a regular file it means nothing
        // without O_CREAT, so only block devices get it.
        if access == Access::WriteExclusive && is_block {
            opts.custom_flags(libc::O_CLOEXEC | libc::O_EXCL);
        }
        let file = opts.open(path).map_err(io)?;
        // Seeking to the end gives the size of block devices and regular files alike.
        let size = (&file)
            .seek(SeekFrom::End(0))
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                what: "read the size of",
                source,
            })?;
        Ok(Device {
            path: path.to_owned(),
            file,
            size: Bytes(size),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> Bytes {
        self.size
    }

    /// Reads exactly `len` bytes at `offset`; a range past the end is an error.
    pub fn read_at(&self, offset: Bytes, len: u64) -> Result<Vec<u8>, StoreError> {
        self.check_range(offset, len)?;
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset.0)
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                what: "read",
                source,
            })?;
        Ok(buf)
    }

    pub fn write_at(&self, offset: Bytes, data: &[u8]) -> Result<(), StoreError> {
        self.check_range(offset, data.len() as u64)?;
        self.file
            .write_all_at(data, offset.0)
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                what: "write",
                source,
            })
    }

    /// Waits until everything written so far is on stable storage.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|source| StoreError::Io {
            path: self.path.clone(),
            what: "flush",
            source,
        })
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
