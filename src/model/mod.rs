//! The typed volume group on top of the metadata text tree.
//!
//! Each object keeps what lvmd does not interpret in an `extra` section, and segments of
//! types lvmd does not know stay as their raw section (`SegmentKind::Other`), so a
//! read-modify-write carries them through. Operations that would have to understand such
//! parts refuse (see `crate::lvm`).

mod check;
mod fields;
pub mod layout;
mod lv;
pub mod name;
pub mod placement;
pub mod render;
mod vg;

pub use check::{Problem, PvUsage};
pub use layout::{Layout, LayoutError};
pub use lv::{Area, LogicalVolume, Segment, SegmentKind};
pub use vg::{PhysicalVolume, TextHeader, VolumeGroup, CONTENTS};

/// Where in the metadata a problem sits, e.g. `vg0/logical_volumes/lv1/segment2`.
pub type Path = String;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("metadata {path}: required key {key:?} is missing")]
    Missing { path: Path, key: &'static str },
    #[error("metadata {path}: {key:?} should be {expected}")]
    WrongType {
        path: Path,
        key: String,
        expected: &'static str,
    },
    #[error("metadata {path}: {why}")]
    Invalid { path: Path, why: String },
    #[error("metadata {path}: {why} (lvmd does not support this)")]
    Unsupported { path: Path, why: String },
}

#[cfg(test)]
mod tests;
