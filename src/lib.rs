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
//!   simulated), activation and node traits, configuration, socket, start-up.
//! - [`api`]: the gRPC front-end (`proto/lvmd.proto`): it translates, the engine decides.
//! - [`mountinfo`]: what this process's mount namespace has mounted where.
//! - [`peer`]: who may connect to a unix socket (SO_PEERCRED against an allow list);
//!   lvmd's API socket and lvmd-csi's CSI socket both check with it.

pub mod activate;
pub mod alloc;
pub mod api;
pub mod crypt;
pub mod csi;
pub mod daemon;
pub mod format;
pub mod inspect;
pub mod lvm;
pub mod model;
pub mod mountinfo;
pub mod peer;
pub mod probe;
pub mod store;
pub mod units;
pub mod uuid;
