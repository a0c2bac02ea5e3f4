//! lvm2's checksum. (Placeholder: being written.)
