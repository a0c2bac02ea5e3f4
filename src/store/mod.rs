//! Everything that touches disks below the operations: opening devices, finding PVs and
//! VGs on them, committing new metadata crash-safely, lvm2's locks and backup files.

pub mod backup;
pub mod backup_writer;
pub mod commit;
pub mod device;
pub mod devices_file;
pub mod hints;
pub mod lock;
mod mda_io;
pub mod scan;

use crate::format::label::LabelError;
use crate::format::mda::MdaError;
use crate::format::text::ParseError;
use crate::model::ModelError;
use crate::units::Bytes;
use std::path::PathBuf;

pub use commit::{commit, CommitStep};
pub use device::{Access, Device};
pub use scan::{scan_devices, PvOnDisk, Scan, VgOnDisk};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {len} bytes at offset {offset} lie past the end of the device ({size})")]
    OutOfRange {
        path: PathBuf,
        offset: Bytes,
        len: Bytes,
        size: Bytes,
    },
    #[error("{path}: bad PV label: {source}")]
    Label {
        path: PathBuf,
        #[source]
        source: LabelError,
    },
    #[error("{path}: metadata area at byte {mda_start}: {source}")]
    Mda {
        path: PathBuf,
        mda_start: Bytes,
        #[source]
        source: MdaError,
    },
    #[error("{path}: metadata text in the area at byte {mda_start}: {source}")]
    Text {
        path: PathBuf,
        mda_start: Bytes,
        #[source]
        source: ParseError,
    },
    #[error("{path}: the label says the metadata area at byte {mda_start} has {label} but its header says {header}")]
    MdaSizeMismatch {
        path: PathBuf,
        mda_start: Bytes,
        label: Bytes,
        header: Bytes,
    },
    #[error("{path}: the metadata text in the area at byte {mda_start} is not UTF-8")]
    TextNotUtf8 { path: PathBuf, mda_start: Bytes },
    #[error("{path}: {source}")]
    Model {
        path: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("volume group {vg}: {why}")]
    Inconsistent { vg: String, why: String },
    #[error("locking {what}: {source}")]
    Lock {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("commit stopped at {0:?} (fault injection)")]
    Injected(CommitStep),
}
