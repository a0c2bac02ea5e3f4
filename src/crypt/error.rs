//! The one error type of the crypt layer. Each variant names the device or mapping at
//! fault; none ever holds key material (the keys' type cannot be formatted). The
//! daemon maps [`CryptError::WrongKey`] to a PERMISSION_DENIED-class status and
//! `InvalidKey`/`InvalidConfig`/`InvalidName` to INVALID_ARGUMENT.

use crate::probe::ProbeError;
use crate::units::Bytes;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("{device}: no keyslot opens with the given key")]
    WrongKey { device: PathBuf },
    #[error("invalid key: {why}")]
    InvalidKey { why: String },
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid encryption settings: {why}")]
    InvalidConfig { why: String },
    #[error("invalid crypt mapping for {name}: {why}")]
    InvalidName { name: String, why: String },
    #[error("{device} already has a LUKS header: lvmd never formats an encrypted volume again")]
    AlreadyLuks { device: PathBuf },
    #[error("{device} is not blank ({found}): lvmd formats LUKS2 only on an empty volume")]
    NotBlank { device: PathBuf, found: String },
    #[error("{device} has {size}; a LUKS2 volume needs more than its {header} header")]
    TooSmall {
        device: PathBuf,
        size: Bytes,
        header: Bytes,
    },
    #[error("{device} has no LUKS header")]
    NotLuks { device: PathBuf },
    #[error("{device} has LUKS version {version}; lvmd opens only LUKS2")]
    NotLuks2 { device: PathBuf, version: String },
    #[error("crypt mapping {name} is open on {open_on}, not on {wanted}")]
    NameInUse {
        name: String,
        open_on: PathBuf,
        wanted: PathBuf,
    },
    #[error("crypt mapping {name} is not open")]
    NotOpen { name: String },
    #[error("crypt mapping {name} is in use (mounted or held open) and cannot be closed")]
    Busy { name: String },
    #[error("{device}: every keyslot is taken; remove one before adding a key")]
    KeyslotsFull { device: PathBuf },
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// Anything else libcryptsetup refused; `detail` is its own last error message.
    #[error("{op} on {target}: {source}{}", detail_suffix(.detail))]
    Libcryptsetup {
        op: &'static str,
        target: String,
        #[source]
        source: io::Error,
        detail: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" (libcryptsetup: {detail})")
    }
}

impl CryptError {
    /// The errno behind a libcryptsetup failure, for callers that tell cases apart.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CryptError::Libcryptsetup { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T, E = CryptError> = std::result::Result<T, E>;
