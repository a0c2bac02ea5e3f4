//! LVM2's on-disk structures, parsed from and rendered to bytes. Nothing here does I/O.

pub mod crc;
pub mod label;
pub mod mda;
pub mod text;
