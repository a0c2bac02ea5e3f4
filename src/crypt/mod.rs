//! Encryption at rest: LUKS2 volumes through libcryptsetup (`libcryptsetup-rs`), no
//! `cryptsetup` process.
//!
//! - [`key`]: [`Passphrase`], the key, only in zeroized memory and never printable.
//! - [`config`]: [`LuksConfig`], cipher and PBKDF per device class, checked up front.
//! - [`name`]: [`CryptName`], the dm-crypt mapping name derived from the volume.
//! - [`luks`]: the operations on a block device: format, header, open, close, status,
//!   resize, rekey (in two crash-safe halves).
//! - `log`: libcryptsetup's messages into `tracing`, its last error into ours.
//!
//! The layer knows block device paths and mapping names, not LVs or the daemon: the
//! daemon decides when a volume is formatted, opened or closed.

pub mod config;
mod error;
pub mod key;
mod log;
pub mod luks;
pub mod name;

pub use config::{LuksConfig, Pbkdf};
pub use error::{CryptError, Result};
pub use key::Passphrase;
pub use luks::{LuksHeader, Mapping, OpenOptions, Opened, Rekeyed};
pub use name::CryptName;
