//! The daemon's one interface to the machine: what lvmd can do, as a trait.
//!
//! Front-ends (the gRPC services) only translate requests into calls of [`Engine`].
//! [`RealEngine`](super::real::RealEngine) does the work with the `Lvm` library, an
//! [`Activation`](super::activation::Activation) and a [`Node`](super::node::Node);
//! [`SimEngine`](super::sim::SimEngine) keeps everything in memory, so the API and the
//! tools are testable in milliseconds without root.
//!
//! Engine calls block (disk I/O, lvm2's file locks): async callers run them on a
//! blocking thread.

use super::activation::ActivationError;
use super::node::NodeError;
pub use crate::lvm::LvSpec;
use crate::lvm::LvmError;
pub use crate::model::Layout;
use crate::units::{Bytes, ExtentSize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Errors of the metadata library, kept whole so the status mapping can see which.
    #[error(transparent)]
    Lvm(#[from] LvmError),
    #[error(transparent)]
    Activation(#[from] ActivationError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("{what} {name} already exists {why}")]
    AlreadyExists {
        what: &'static str,
        name: String,
        why: String,
    },
    #[error("invalid {what} {value:?}: {why}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        why: String,
    },
    /// A size no free space could ever satisfy: larger than the whole VG.
    #[error("{what} {value} is larger than volume group {vg} ({total})")]
    OutOfRange {
        what: &'static str,
        value: Bytes,
        vg: String,
        total: Bytes,
    },
    /// A volume made from a source is at least as large as it.
    #[error("size {} of {lv} is smaller than its source {from} ({} bytes)", size.0, source_size.0)]
    SmallerThanSource {
        lv: String,
        size: Bytes,
        from: String,
        source_size: Bytes,
    },
    #[error("{what} {name}: {why}")]
    FailedPrecondition {
        what: &'static str,
        name: String,
        why: String,
    },
    /// Zeroing extents a volume gave back, or the edges of a new one, failed.
    #[error("cannot zero {len} at offset {offset} of {device}: {source}", device = device.display())]
    Zero {
        device: PathBuf,
        offset: Bytes,
        len: Bytes,
        source: std::io::Error,
    },
    /// Copying a COW snapshot's bytes into the volume restored from it failed.
    #[error("cannot copy {from} onto {to}: {source}", from = from.display(), to = to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    /// No space now, while removed volumes are still being zeroed in the background.
    #[error("{source}; {wiping} more of volume group {vg} are being zeroed after removals and free up when that is done", wiping = crate::units::human_bytes(*wiping))]
    NoSpaceWhileWiping {
        source: LvmError,
        vg: String,
        wiping: Bytes,
    },
    /// A thin pool that cannot take the volume: past its overprovision ratio, at its
    /// usage limit, or out of space in the kernel's count.
    #[error("thin pool {pool}: {why}")]
    ThinPoolExhausted { pool: String, why: String },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvInfo {
    pub device: PathBuf,
    pub uuid: String,
    pub size: Bytes,
    pub free: Bytes,
    pub present: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgInfo {
    pub name: String,
    pub uuid: String,
    pub seqno: u64,
    pub extent_size: Bytes,
    pub total: Bytes,
    pub free: Bytes,
    pub pvs: Vec<PvInfo>,
    pub lv_count: u32,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvInfo {
    pub vg: String,
    pub name: String,
    pub uuid: String,
    pub size: Bytes,
    pub layout: Layout,
    pub tags: Vec<String>,
    /// The block device when the volume is active.
    pub device: Option<PathBuf>,
    pub health: Health,
    /// dm-raid's view of an active mirror; `None` when not a mirror or not active.
    pub sync: Option<MirrorSync>,
}

/// What the kernel says of an active mirror (dm-raid's status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSync {
    /// In sync, in hundredths of a percent (lvm2's `sync_percent` times 100).
    pub sync_basis_points: u32,
    /// dm-raid's sync_action: idle, resync, recover, check, repair, frozen, ...
    pub action: String,
    /// Mismatches the last check or repair counted.
    pub mismatches: u64,
    /// Each leg's state as dm-raid prints it: `A` in sync, `a` syncing, `D` failed,
    /// `-` absent.
    pub legs: String,
    /// With integrity: blocks dm-integrity found damaged under the legs since they
    /// were loaded (each read from another copy); `None` without integrity.
    pub integrity_mismatches: Option<u64>,
}

/// Whether all of a volume's data is reachable, read off the metadata and which PVs
/// are present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Ok,
    /// A mirror with legs on missing PVs and at least one whole copy left: it serves
    /// I/O from the rest; the message names the missing legs and PVs.
    Degraded(String),
    /// Extents on missing PVs and no copy of them elsewhere.
    Failed(String),
}

/// A snapshot lvmd took ([`Engine::create_snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub vg: String,
    pub name: String,
    pub uuid: String,
    /// The volume it was taken of (which may be gone since).
    pub source: String,
    pub size: Bytes,
    /// Seconds since the epoch (the LV's `creation_time`).
    pub creation_time: i64,
    pub read_only: bool,
    /// The group it was taken in ([`Engine::create_snapshot_group`]).
    pub group: Option<String>,
    /// A copy-on-write snapshot's store size; `None` for a thin snapshot.
    pub cow_size: Option<Bytes>,
}

/// Snapshots of several thin volumes of one pool taken at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotGroupInfo {
    pub vg: String,
    pub name: String,
    /// Its snapshots, by name.
    pub snapshots: Vec<SnapshotInfo>,
}

/// One snapshot of a group to take: its name and the volume it is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub name: String,
    pub source: String,
}

/// How large a copy-on-write snapshot's store is: bytes, or percent of its source's
/// size (rounded up to extents either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CowSize {
    Bytes(Bytes),
    Percent(u32),
}

impl CowSize {
    /// The store's size for a source of `source` bytes; a share is at least one byte
    /// (one extent, once rounded).
    pub fn for_source(self, source: Bytes) -> Bytes {
        match self {
            CowSize::Bytes(b) => b,
            CowSize::Percent(p) => {
                Bytes((u128::from(source.0) * u128::from(p) / 100).max(1) as u64)
            }
        }
    }
}

/// Free space of a VG, for capacity reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgSpace {
    pub extent_size: Bytes,
    pub total: Bytes,
    pub free: Bytes,
    pub largest_linear: Bytes,
    /// The largest volume with `stripes` stripes (as asked); equals `largest_linear`
    /// when asked for 1 stripe.
    pub largest_striped: Bytes,
    /// `[i]`: the largest raid1 volume with `i + 1` mirrors (each copy on its own PV,
    /// with an extent for its metadata).
    pub largest_raid1: Vec<Bytes>,
    /// The same with dm-integrity under each copy (each leg also holds its integrity
    /// metadata, [`crate::model::layout::integrity_meta_extents`]).
    pub largest_raid1_integrity: Vec<Bytes>,
    /// The metadata text and the longest one the VG's areas take.
    pub metadata_used: Bytes,
    pub metadata_capacity: Bytes,
    /// Held by removed volumes still being zeroed in the background (not in `free`
    /// yet; it will be when they are done).
    pub wiping: Bytes,
}

/// Whether a create made something or found it there already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created<T> {
    pub value: T,
    pub created: bool,
}

/// A filesystem mount of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub target: PathBuf,
    /// `ext4` or `xfs`.
    pub fs_type: String,
    pub options: Vec<String>,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    pub device: PathBuf,
    pub fs_type: String,
    pub formatted: bool,
}

/// A volume grown, with the filesystem on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub lv: LvInfo,
    /// The filesystem's size after growing it; 0 when no filesystem was named.
    pub filesystem_size: Bytes,
}

/// An encrypted volume's key replaced ([`Engine::rekey_volume`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekeyed {
    pub lv: LvInfo,
    /// The keyslot that holds the new key.
    pub keyslot: u32,
    /// The keyslots of the old key this call destroyed: none when an earlier call had
    /// done it already (or the two keys are the same).
    pub removed: Vec<u32>,
}

/// Space of a mounted filesystem or size of a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathStats {
    pub block: bool,
    pub total: Bytes,
    pub available: Bytes,
    pub used: Bytes,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub used_inodes: u64,
}

/// An encrypted volume's key, with the settings of its device class for a first format.
/// The key lives in zeroized memory and prints as `<redacted>`.
#[derive(Debug)]
pub struct VolumeKey {
    pub key: crate::crypt::Passphrase,
    pub luks: crate::crypt::LuksConfig,
}

pub trait Engine: Send + Sync + 'static {
    /// Waits until what the engine writes after answering is written (lvm2's backup
    /// files, see `store::backup_writer`): at shutdown. Default: nothing is deferred.
    fn flush_background_writes(&self) {}
    /// VGs on the devices the engine knows, by name.
    fn volume_groups(&self) -> Result<Vec<VgInfo>>;
    fn volume_group(&self, vg: &str) -> Result<VgInfo>;
    fn create_volume_group(&self, vg: &str, devices: &[PathBuf]) -> Result<VgInfo>;
    fn extend_volume_group(&self, vg: &str, devices: &[PathBuf]) -> Result<VgInfo>;
    /// The VG's space, and the largest volume with `stripes` stripes (1: linear).
    fn space(&self, vg: &str, stripes: u32) -> Result<VgSpace>;

    fn logical_volumes(&self, vg: &str) -> Result<Vec<LvInfo>>;
    fn logical_volume(&self, vg: &str, lv: &str) -> Result<LvInfo>;
    /// Idempotent: an LV of this name with the same size (after rounding), layout and
    /// tags is returned as it is (`created: false`); any difference is `AlreadyExists`.
    fn create_logical_volume(&self, vg: &str, spec: &LvSpec) -> Result<Created<LvInfo>> {
        self.create_volume(vg, spec, false)
    }
    /// As [`create_logical_volume`](Self::create_logical_volume); `encrypted`: the LV is
    /// marked `lvmd.crypt` in its creating commit (LUKS2-formatted on its first stage
    /// or block publish). Idempotent the same way, encryption compared too.
    fn create_volume(&self, vg: &str, spec: &LvSpec, encrypted: bool) -> Result<Created<LvInfo>>;
    /// Deactivates first if active. `Ok(false)`: there was no such LV.
    fn remove_logical_volume(&self, vg: &str, lv: &str) -> Result<bool>;
    fn resize_logical_volume(&self, vg: &str, lv: &str, size: Bytes) -> Result<LvInfo>;
    /// An active raid1 LV's legs on missing PVs or failed by the kernel are moved to
    /// PVs no other leg uses and rebuilt (lvm2's `lvconvert --repair`); a healthy
    /// mirror is returned as it is.
    fn repair_logical_volume(&self, vg: &str, lv: &str) -> Result<LvInfo>;
    /// An active, in-sync raid1 LV gets `mirrors + 1` legs (lvm2's `lvconvert -m`):
    /// new legs on PVs no leg uses (of `pvs`, PV devices, when given), rebuilt from the
    /// others; legs removed from the end (or those on `pvs`), their extents zeroed
    /// before they go free; `mirrors` 0 leaves it linear on the leg left. Already so:
    /// returned as it is.
    fn convert_logical_volume(
        &self,
        vg: &str,
        lv: &str,
        mirrors: u32,
        pvs: &[std::path::PathBuf],
    ) -> Result<LvInfo>;
    fn activate(&self, vg: &str, lv: &str) -> Result<LvInfo>;
    fn deactivate(&self, vg: &str, lv: &str) -> Result<LvInfo>;

    /// Activates the LV, makes a filesystem if it holds none, mounts it.
    fn mount_volume(&self, vg: &str, lv: &str, spec: &MountSpec) -> Result<Mounted> {
        self.mount_volume_keyed(vg, lv, spec, None)
    }
    /// As [`mount_volume`](Self::mount_volume); an encrypted LV (`lvmd.crypt`) needs
    /// `key`: LUKS-formatted first if lvmd made it blank, opened, and the filesystem
    /// is on the opened mapping. A wrong key changes nothing.
    fn mount_volume_keyed(
        &self,
        vg: &str,
        lv: &str,
        spec: &MountSpec,
        key: Option<&VolumeKey>,
    ) -> Result<Mounted>;
    fn bind_mount(&self, source: &Path, target: &Path, read_only: bool) -> Result<()>;
    /// Activates the LV and bind-mounts its device node onto the file `target`.
    fn publish_block(&self, vg: &str, lv: &str, target: &Path, read_only: bool) -> Result<PathBuf> {
        self.publish_block_keyed(vg, lv, target, read_only, None)
    }
    /// As [`publish_block`](Self::publish_block); an encrypted LV's opened mapping is
    /// what is bound (LUKS-formatted first if lvmd made it blank).
    fn publish_block_keyed(
        &self,
        vg: &str,
        lv: &str,
        target: &Path,
        read_only: bool,
        key: Option<&VolumeKey>,
    ) -> Result<PathBuf>;
    /// `Ok(false)`: nothing was mounted there.
    fn unmount(&self, target: &Path, remove_target: bool) -> Result<bool>;
    fn path_stats(&self, path: &Path) -> Result<PathStats>;
    /// Grows the LV to `size` (never shrinks; the same size is a no-op) and, given a
    /// `target` where the LV's filesystem is mounted, grows that filesystem online.
    fn expand_volume(
        &self,
        vg: &str,
        lv: &str,
        size: Bytes,
        target: Option<&Path>,
    ) -> Result<Expanded> {
        self.expand_volume_keyed(vg, lv, size, target, None)
    }
    /// As [`expand_volume`](Self::expand_volume); an encrypted LV open as a mapping
    /// needs its key: the LV grows, then the mapping, then the filesystem on it.
    fn expand_volume_keyed(
        &self,
        vg: &str,
        lv: &str,
        size: Bytes,
        target: Option<&Path>,
        key: Option<&VolumeKey>,
    ) -> Result<Expanded>;
    /// Replaces the key of an encrypted (LUKS-formatted) volume: `new` is added in a
    /// keyslot of its own (with the PBKDF of `old.luks`), then every keyslot `old.key`
    /// opens is destroyed; the data and the volume key are not touched, an open mapping
    /// stays open. Idempotent: after a crash between the two halves the volume opens
    /// with either key and the same call finishes the job; once done, the same call
    /// (old no longer opens, new does) succeeds changing nothing. A key that opens
    /// nothing is `WrongKey` and changes nothing.
    fn rekey_volume(
        &self,
        vg: &str,
        lv: &str,
        old: &VolumeKey,
        new: &crate::crypt::Passphrase,
    ) -> Result<Rekeyed>;
    /// A read-only thin snapshot `name` of thin volume `source` (`docs/thin.md`), or a
    /// copy-on-write snapshot of linear or striped volume `source` with a store of
    /// `cow_size` (`None`: [`super::snapshots::DEFAULT_COW_SHARE`] of the source;
    /// `docs/snapshots.md`). Idempotent: a snapshot of this name of `source` is
    /// returned as it is (`created: false`); of another source, or a volume of that
    /// name, is `AlreadyExists`.
    fn create_snapshot(
        &self,
        vg: &str,
        name: &str,
        source: &str,
        cow_size: Option<CowSize>,
    ) -> Result<Created<SnapshotInfo>>;
    /// `Ok(false)`: there was no such LV. A volume's name is refused.
    fn delete_snapshot(&self, vg: &str, name: &str) -> Result<bool>;
    fn snapshots(&self, vg: &str) -> Result<Vec<SnapshotInfo>>;
    /// Read-only thin snapshots of several thin volumes of the class's pool at one
    /// instant, group `group` (`docs/thin.md`): every active source suspended, one
    /// commit, one pool transaction, all resumed. Idempotent: a group of this name with
    /// the same members is returned as it is; with other members, or a member's name
    /// taken, `AlreadyExists`. Nothing is made unless every member can be.
    fn create_snapshot_group(
        &self,
        vg: &str,
        group: &str,
        members: &[GroupMember],
    ) -> Result<Created<SnapshotGroupInfo>>;
    /// Deletes every snapshot of group `group`; `Ok(false)`: there was none.
    fn delete_snapshot_group(&self, vg: &str, group: &str) -> Result<bool>;
    /// Group `group` as it is (its snapshots deleted one by one are gone from it);
    /// `NotFound` when no snapshot of it is left.
    fn snapshot_group(&self, vg: &str, group: &str) -> Result<SnapshotGroupInfo>;
    /// A thin volume made from snapshot or thin volume `source` of the same pool
    /// (restore, clone): its contents, at `spec.size` (at least the source's; grown
    /// in the same commit). Idempotent as [`create_volume`](Self::create_volume), the
    /// source compared too.
    fn create_volume_from(
        &self,
        vg: &str,
        spec: &LvSpec,
        source: &str,
        encrypted: bool,
    ) -> Result<Created<LvInfo>>;
    /// `vg`'s configured thin pool with its use; `None` when its class has none (or
    /// the pool is not made yet).
    fn thin_pool(&self, _vg: &str) -> Result<Option<super::thin::ThinPoolInfo>> {
        Ok(None)
    }
    /// Grows `vg`'s configured thin pool online (see
    /// [`super::volumes::VolumeEngine::grow_thin_pool`]).
    fn grow_thin_pool(
        &self,
        vg: &str,
        data: Option<Bytes>,
        metadata: Option<Bytes>,
    ) -> Result<super::thin::ThinPoolInfo>;
}

/// Why an existing LV does not match a create request, or `None` when it does.
pub fn spec_mismatch(existing: &LvInfo, spec: &LvSpec, extent_size: ExtentSize) -> Option<String> {
    if existing.layout != spec.layout {
        return Some(format!(
            "with layout {} (asked for {})",
            existing.layout, spec.layout
        ));
    }
    let want = spec.layout.rounded_size(spec.size, extent_size);
    if existing.size != want {
        return Some(format!(
            "with size {} (asked for {}, which rounds to {})",
            existing.size.0, spec.size.0, want.0
        ));
    }
    // lvmd's own marks are not the client's to ask for.
    let mut a = super::marks::client_tags(&existing.tags);
    let mut b = spec.tags.clone();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    if a != b {
        return Some(format!("with tags {a:?} (asked for {b:?})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_the_difference() {
        let lv = LvInfo {
            vg: "vg".into(),
            name: "a".into(),
            uuid: String::new(),
            size: Bytes(8 << 20),
            layout: Layout::Linear,
            tags: vec!["x".into()],
            device: None,
            health: Health::Ok,
            sync: None,
        };
        let spec = LvSpec {
            name: "a".into(),
            size: Bytes(5 << 20),
            layout: Layout::Linear,
            tags: vec!["x".into()],
        };
        assert_eq!(spec_mismatch(&lv, &spec, ExtentSize::DEFAULT), None);
        let bigger = LvSpec {
            size: Bytes(9 << 20),
            ..spec.clone()
        };
        assert!(spec_mismatch(&lv, &bigger, ExtentSize::DEFAULT)
            .unwrap()
            .contains("size"));
        let tagged = LvSpec {
            tags: vec![],
            ..spec
        };
        assert!(spec_mismatch(&lv, &tagged, ExtentSize::DEFAULT)
            .unwrap()
            .contains("tags"));
    }
}
