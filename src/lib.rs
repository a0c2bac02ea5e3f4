//! lvmd: LVM for Kubernetes nodes, done natively.
//!
//! Layers, bottom up:
//! - [`format`](mod@format): LVM2's on-disk structures as bytes and text (pure, no I/O).
//! - [`model`]: the typed volume group on top of the metadata text (pure).
//! - [`alloc`]: extent allocation (pure).
//! - [`store`]: devices, scanning, crash-safe commits, lvm2's locks and backups.
//! - [`probe`]: what libblkid finds on a device (signatures, partition tables).
//! - [`lvm`]: the operations (create a PV, a VG, an LV, ...) as a library.
//! - [`activate`]: LVs as block devices, through device-mapper ioctls.
//! - [`crypt`]: LUKS2 encryption of a volume's block device (libcryptsetup).
//! - [`daemon`]: the engine (the daemon's one interface to the machine: real or
//!   simulated), activation and node traits, configuration, start-up.
//! - [`rpc`]: the contract with lvmd's clients (`proto/lvmd.proto`'s generated types)
//!   and a connector to its socket; the server, lvmd-ctl and lvmd-csi all use it.
//! - [`api`]: the gRPC server over the engine: it translates, the engine decides.
//! - [`csi`]: the CSI plugin, an lvmd client.
//! - [`socket`]: serving on a unix socket (bound here or passed by systemd; peers
//!   checked by SO_PEERCRED against an allow list), for lvmd and lvmd-csi alike.
//! - [`logging`]: both binaries' log set-up.
//! - [`mountinfo`]: what this process's mount namespace has mounted where.
//!
//! The binaries wire them: `lvmd` serves [`api`] over a [`daemon`] engine on a
//! [`socket`]; `lvmd-csi` serves [`csi`] and calls lvmd through [`rpc`].

pub mod activate;
pub mod alloc;
pub mod api;
pub mod crypt;
pub mod csi;
pub mod daemon;
pub mod format;
pub mod inspect;
pub mod logging;
pub mod lvm;
pub mod model;
pub mod mountinfo;
pub mod probe;
pub mod rpc;
pub mod socket;
pub mod store;
pub mod units;
pub mod uuid;
