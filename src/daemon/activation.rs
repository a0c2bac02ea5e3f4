//! What the daemon needs from device-mapper activation, as a trait.
//!
//! [`DmActivation`] is the real one, over `crate::activate` (device-mapper ioctls);
//! [`SimActivation`] keeps active volumes in memory and creates no device, for tests and
//! `lvmd --simulate`. The contract:
//!
//! - [`activate`](Activation::activate) builds the tables from the VG metadata given
//!   (the caller has just read it under the VG lock) and creates or reloads the dm
//!   device `<vg>-<lv>` (lvm2's name mangling, uuid `LVM-<vg uuid><lv uuid>`); it is
//!   idempotent: an active volume with the same table is left alone.
//! - [`refresh`](Activation::refresh) reloads an active volume's table after its
//!   metadata changed (a resize); a volume that is not active is left inactive.
//! - [`deactivate`](Activation::deactivate) removes the device; not active is success;
//!   open (mounted, held by a process) is [`ActivationError::Busy`].
//! - [`active_volumes`](Activation::active_volumes) lists the active LVs of a VG, from
//!   the kernel (dm uuids starting `LVM-<vg uuid>`), so the daemon's view survives a
//!   restart.

use super::volumes::VgRead;
use crate::activate::target::RaidStatus;
pub use crate::activate::PoolStatus;
use crate::activate::{ActivateError, Activator, ActiveLv};
use crate::model::VolumeGroup;
use crate::store::scan::VgOnDisk;
use crate::units::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveVolume {
    pub vg: String,
    pub lv: String,
    /// The device node (`/dev/mapper/<vg>-<lv>` or `/dev/dm-N`).
    pub device: PathBuf,
    pub size: Bytes,
    /// How many openers the kernel counts (a mount, a process, another dm table).
    pub open_count: u32,
}

/// The activation layer's errors as the daemon sees them: the device-mapper layer's own
/// error kept whole (the status mapping gives each of its variants its code), with what
/// the daemon was doing to which volume.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// Device-mapper is not there or not usable (no kernel support, no permission),
    /// found once at start-up. The message says why (the device-mapper probe's error).
    #[error("{0}")]
    Unavailable(String),
    /// The volume's device is open. A variant of its own because the daemon adds who
    /// holds it (a loop device, a mount) before the client sees it.
    #[error("logical volume {vg}/{lv} is open ({by}); refusing to deactivate it")]
    Busy { vg: String, lv: String, by: String },
    #[error("{op} {object}: {source}")]
    Dm {
        op: Op,
        /// `vg/lv`, `vg`, or a leftover device's name.
        object: String,
        #[source]
        source: Box<ActivateError>,
    },
    /// A failed activation whose undo did not remove everything it had made: the
    /// devices left are named, so an operator (or the next start-up's reconciliation)
    /// can clean them up. The code is the failure's own.
    #[error("{source}; undoing it left device(s) {} active", left.join(", "))]
    Incomplete {
        #[source]
        source: Box<ActivationError>,
        left: Vec<String>,
    },
}

/// What the daemon asked of the activation layer, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Activate,
    Refresh,
    Deactivate,
    List,
    CheckTable,
    RemoveLeftover,
    Status,
    ThinPool,
    ThinPoolResize,
    ReleaseCow,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Activate => "activating",
            Op::Refresh => "refreshing",
            Op::Status => "reading the status of",
            Op::Deactivate => "deactivating",
            Op::List => "listing the active devices of",
            Op::CheckTable => "comparing the active table of",
            Op::RemoveLeftover => "removing the leftover device",
            Op::ThinPool => "sending the recorded messages of thin pool",
            Op::ThinPoolResize => "growing the devices of thin pool",
            Op::ReleaseCow => "releasing the removed COW snapshots of",
        })
    }
}

impl ActivationError {
    /// The device-mapper layer's error, with the daemon's context. A busy device keeps
    /// its own variant (see [`ActivationError::Busy`]), and so does device-mapper gone
    /// (the start-up probe's error), which reconciliation takes as "nothing to check".
    pub fn dm(op: Op, vg: &str, lv: Option<&str>, e: ActivateError) -> ActivationError {
        match e {
            e @ ActivateError::DmUnavailable { .. } => ActivationError::Unavailable(e.to_string()),
            ActivateError::Busy { device, open_count } => ActivationError::Busy {
                vg: vg.into(),
                lv: lv.unwrap_or(&device).into(),
                by: format!("{device} has {open_count} opener(s)"),
            },
            source => ActivationError::Dm {
                op,
                object: match lv {
                    Some(lv) => format!("{vg}/{lv}"),
                    None => vg.into(),
                },
                source: Box::new(source),
            },
        }
    }

    /// A volume or device lvmd does not make or manage (its kind, a hidden component, a
    /// missing PV, a foreign entry in /dev): reconciliation leaves such ones alone.
    pub fn is_unsupported(&self) -> bool {
        let ActivationError::Dm { source, .. } = self else {
            return false;
        };
        matches!(
            **source,
            ActivateError::Unsupported { .. }
                | ActivateError::UnsupportedSegment { .. }
                | ActivateError::HiddenLv { .. }
                | ActivateError::NodeInTheWay { .. }
                | ActivateError::MissingPv { .. }
        )
    }
}

/// Every call gets the VG as just read (metadata and the device of each PV): tables are
/// built from it, and active devices are found by its uuid.
pub trait Activation: Send + Sync + 'static {
    /// Makes `lv` of `vg` active; returns where its device is.
    fn activate(&self, vg: &VgRead, lv: &str) -> Result<ActiveVolume, ActivationError>;
    /// Reloads an active volume's table from `vg`; `Ok(None)` when it is not active.
    fn refresh(&self, vg: &VgRead, lv: &str) -> Result<Option<ActiveVolume>, ActivationError>;
    /// Removes the volume's device; not active is success (`Ok(false)`).
    fn deactivate(&self, vg: &VgRead, lv: &str) -> Result<bool, ActivationError>;
    /// The active volumes of `vg`.
    fn active_volumes(&self, vg: &VgRead) -> Result<Vec<ActiveVolume>, ActivationError>;
    /// Whether an active `lv` runs the table its metadata in `vg` makes (`Ok(true)`
    /// when it is not active: nothing to bring in line).
    fn table_current(&self, _vg: &VgRead, _lv: &str) -> Result<bool, ActivationError> {
        Ok(true)
    }
    /// Devices of `vg` (found by its uuid) whose LV the metadata given does not have.
    /// (Default: an activation layer that cannot leave devices behind has none.)
    fn leftovers(&self, _vg: &VgRead) -> Result<Vec<Leftover>, ActivationError> {
        Ok(Vec::new())
    }
    /// Removes such a device; open is [`ActivationError::Busy`], gone is `Ok(false)`.
    fn remove_leftover(&self, _vg: &VgRead, _: &Leftover) -> Result<bool, ActivationError> {
        Ok(false)
    }
    /// dm-raid's status of `lv` when it is an active mirror; `Ok(None)` otherwise.
    fn raid_status(&self, _vg: &VgRead, _lv: &str) -> Result<Option<RaidStatus>, ActivationError> {
        Ok(None)
    }
    /// An active mirror with integrity: the damaged blocks its images' dm-integrity
    /// counted since loaded; `None` without (the default: no kernel to ask).
    fn integrity_mismatches(
        &self,
        _vg: &VgRead,
        _lv: &str,
    ) -> Result<Option<u64>, ActivationError> {
        Ok(None)
    }
    /// After a commit that removed COW snapshots: their devices go (those of `origin`'s,
    /// or of every origin with `None`), and an origin left without any runs its own
    /// table again (`Activator::release_cow`). Default: nothing layered to undo.
    fn release_cow(&self, _vg: &VgRead, _origin: Option<&str>) -> Result<(), ActivationError> {
        Ok(())
    }
    /// Brings thin pool `pool`'s kernel metadata in step with `vg`'s: its recorded
    /// messages sent (the pool's layers made for it when they are not up, and taken
    /// down again), and its status read. The default: no kernel to send them to.
    fn thin_pool_sync(&self, vg: &VgRead, pool: &str) -> Result<PoolStatus, ActivationError> {
        Err(ActivationError::Unavailable(format!(
            "thin pool {}/{pool}: thin volumes need device-mapper (its messages go to the kernel)",
            vg.vg.name
        )))
    }
    /// The status of thin pool `pool` when its pool target is active; `Ok(None)` when
    /// it is not.
    fn thin_pool_status(
        &self,
        _vg: &VgRead,
        _pool: &str,
    ) -> Result<Option<PoolStatus>, ActivationError> {
        Ok(None)
    }
    /// Brings an active thin pool's devices to the (grown) sizes of `vg`'s metadata and
    /// returns its status; `Ok(None)` when its pool target is not active.
    fn thin_pool_refresh(
        &self,
        _vg: &VgRead,
        _pool: &str,
    ) -> Result<Option<PoolStatus>, ActivationError> {
        Ok(None)
    }
}

/// An active device of a VG whose LV is not in its metadata (see
/// [`Activation::leftovers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub vg: String,
    /// The device-mapper name (`<vg>-<lv>`, maybe with a layer suffix).
    pub dm_name: String,
    pub dm_uuid: String,
    /// A layer device (`-real`, `-tpool`) rather than an LV's own.
    pub layer: Option<String>,
    pub open_count: u32,
}

/// A host without device-mapper: nothing can be active there, so listing, refreshing
/// and deactivating have nothing to do, and activating says why it cannot.
#[derive(Debug)]
pub struct NoDeviceMapper {
    pub why: String,
}

impl Activation for NoDeviceMapper {
    fn activate(&self, _: &VgRead, _: &str) -> Result<ActiveVolume, ActivationError> {
        Err(ActivationError::Unavailable(self.why.clone()))
    }
    fn refresh(&self, _: &VgRead, _: &str) -> Result<Option<ActiveVolume>, ActivationError> {
        Ok(None)
    }
    fn deactivate(&self, _: &VgRead, _: &str) -> Result<bool, ActivationError> {
        Ok(false)
    }
    fn active_volumes(&self, _: &VgRead) -> Result<Vec<ActiveVolume>, ActivationError> {
        Ok(Vec::new())
    }
    fn leftovers(&self, _: &VgRead) -> Result<Vec<Leftover>, ActivationError> {
        Ok(Vec::new())
    }
    fn remove_leftover(&self, _: &VgRead, _: &Leftover) -> Result<bool, ActivationError> {
        Ok(false)
    }
}

/// Activation through device-mapper ioctls ([`crate::activate::Activator`]).
#[derive(Debug)]
pub struct DmActivation {
    activator: Activator,
}

impl DmActivation {
    /// Fails when device-mapper is not usable here (asked through its version ioctl).
    pub fn new() -> Result<DmActivation, ActivationError> {
        Activator::new()
            .map(|activator| DmActivation { activator })
            .map_err(|e| ActivationError::Unavailable(e.to_string()))
    }
}

fn on_disk(read: &VgRead) -> VgOnDisk {
    VgOnDisk {
        vg: read.vg.clone(),
        header: Default::default(),
        text: String::new(),
        lv_spans: Vec::new(),
        checked: false,
        devices: read.devices.clone(),
        stale: Vec::new(),
        damaged: Vec::new(),
        unwritable: None,
        metadata_capacity: read.metadata.capacity,
        fingerprint: None,
    }
}

fn active_volume(vg: &str, lv: &str, a: ActiveLv) -> ActiveVolume {
    ActiveVolume {
        vg: vg.to_owned(),
        lv: lv.to_owned(),
        device: a.dev_path,
        size: a.size.to_bytes(),
        open_count: a.open_count,
    }
}

/// Devices of the VG active now that were not before a failed activation: what its
/// undo left behind. (The caller holds the VG's lock, so lvmd made no other device of
/// it meanwhile.)
fn left_behind(before: &BTreeSet<String>, now: Vec<ActiveLv>) -> Vec<String> {
    now.into_iter()
        .filter(|a| !before.contains(&a.dm_uuid))
        .map(|a| a.dm_name)
        .collect()
}

impl DmActivation {
    /// The active devices of `lv`'s activation plan: the kernel is asked about those few,
    /// never every device of the VG (that made each activation cost O(active volumes)).
    fn uuids(&self, found: &VgOnDisk, lv: &str) -> Result<BTreeSet<String>, ActivateError> {
        Ok(self
            .activator
            .active_of_plan(found, lv)?
            .into_iter()
            .map(|a| a.dm_uuid)
            .collect())
    }

    /// A failed activation, with what its undo left active if it left anything. The
    /// activation layer undoes what it made on failure; this checks the kernel's view
    /// afterwards rather than trusting the undo, and says so loudly when it fell short.
    fn failed_activation(
        &self,
        found: &VgOnDisk,
        lv: &str,
        before: Option<BTreeSet<String>>,
        error: ActivationError,
    ) -> ActivationError {
        let vg = &found.vg.name;
        let Some(before) = before else {
            return error;
        };
        let left = match self.activator.active_of_plan(found, lv) {
            Ok(now) => left_behind(&before, now),
            Err(e) => {
                tracing::error!(
                    vg,
                    lv,
                    "activation failed ({error}); cannot check what its undo left: {e}"
                );
                return error;
            }
        };
        if left.is_empty() {
            return error;
        }
        tracing::error!(
            vg,
            lv,
            left = left.join(", "),
            "activation failed and its undo left devices active: {error}"
        );
        ActivationError::Incomplete {
            source: Box::new(error),
            left,
        }
    }
}

impl Activation for DmActivation {
    fn activate(&self, vg: &VgRead, lv: &str) -> Result<ActiveVolume, ActivationError> {
        let name = &vg.vg.name;
        let found = on_disk(vg);
        // What was active before, to tell afterwards what a failed attempt left.
        let before = self.uuids(&found, lv).ok();
        self.activator
            .activate(&found, lv)
            .map(|a| active_volume(name, lv, a))
            .map_err(|e| {
                let error = ActivationError::dm(Op::Activate, name, Some(lv), e);
                self.failed_activation(&found, lv, before, error)
            })
    }

    fn refresh(&self, vg: &VgRead, lv: &str) -> Result<Option<ActiveVolume>, ActivationError> {
        let name = &vg.vg.name;
        let found = on_disk(vg);
        let err = |e| ActivationError::dm(Op::Refresh, name, Some(lv), e);
        if !self.activator.is_active(&found, lv).map_err(err)? {
            return Ok(None);
        }
        self.activator
            .refresh(&found, lv)
            .map(|a| Some(active_volume(name, lv, a)))
            .map_err(err)
    }

    fn deactivate(&self, vg: &VgRead, lv: &str) -> Result<bool, ActivationError> {
        self.activator
            .deactivate(&on_disk(vg), lv)
            .map_err(|e| ActivationError::dm(Op::Deactivate, &vg.vg.name, Some(lv), e))
    }

    fn release_cow(&self, vg: &VgRead, origin: Option<&str>) -> Result<(), ActivationError> {
        let name = &vg.vg.name;
        let found = on_disk(vg);
        let err = |lv: Option<&str>, e| ActivationError::dm(Op::ReleaseCow, name, lv, e);
        let origins: Vec<String> = match origin {
            Some(o) => vec![o.to_owned()],
            // Every LV with an active `-real` layer.
            None => self
                .activator
                .list_active(&found)
                .map_err(|e| err(None, e))?
                .into_iter()
                .filter(|a| a.layer.as_deref() == Some("real"))
                .filter_map(|a| a.lv)
                .collect(),
        };
        for o in origins {
            self.activator
                .release_cow(&found, &o)
                .map_err(|e| err(Some(&o), e))?;
        }
        Ok(())
    }

    fn active_volumes(&self, vg: &VgRead) -> Result<Vec<ActiveVolume>, ActivationError> {
        let name = &vg.vg.name;
        let list = self
            .activator
            .list_active(&on_disk(vg))
            .map_err(|e| ActivationError::dm(Op::List, name, None, e))?;
        // Layer devices (`-real`, `-tpool`, a pool's `_tmeta`) and hidden sub-LVs (raid
        // legs) are not volumes of their own; a thin pool's public device (`-pool`) is
        // the pool's. Devices whose LV is gone are leftovers, not volumes.
        Ok(list
            .into_iter()
            .filter(|a| a.is_own_device_of(&vg.vg))
            .filter_map(|a| {
                let lv = a.lv.clone()?;
                Some(active_volume(name, &lv, a))
            })
            .collect())
    }

    fn raid_status(&self, vg: &VgRead, lv: &str) -> Result<Option<RaidStatus>, ActivationError> {
        self.activator
            .raid_status(&on_disk(vg), lv)
            .map_err(|e| ActivationError::dm(Op::Status, &vg.vg.name, Some(lv), e))
    }

    fn integrity_mismatches(&self, vg: &VgRead, lv: &str) -> Result<Option<u64>, ActivationError> {
        self.activator
            .integrity_mismatches(&on_disk(vg), lv)
            .map_err(|e| ActivationError::dm(Op::Status, &vg.vg.name, Some(lv), e))
    }

    fn thin_pool_sync(&self, vg: &VgRead, pool: &str) -> Result<PoolStatus, ActivationError> {
        self.activator
            .sync_thin_pool(&on_disk(vg), pool)
            .map_err(|e| ActivationError::dm(Op::ThinPool, &vg.vg.name, Some(pool), e))
    }

    fn thin_pool_status(
        &self,
        vg: &VgRead,
        pool: &str,
    ) -> Result<Option<PoolStatus>, ActivationError> {
        self.activator
            .thin_pool_status(&on_disk(vg), pool)
            .map_err(|e| ActivationError::dm(Op::Status, &vg.vg.name, Some(pool), e))
    }

    fn thin_pool_refresh(
        &self,
        vg: &VgRead,
        pool: &str,
    ) -> Result<Option<PoolStatus>, ActivationError> {
        self.activator
            .refresh_thin_pool(&on_disk(vg), pool)
            .map_err(|e| ActivationError::dm(Op::ThinPoolResize, &vg.vg.name, Some(pool), e))
    }

    fn table_current(&self, vg: &VgRead, lv: &str) -> Result<bool, ActivationError> {
        let name = &vg.vg.name;
        self.activator
            .table_current(&on_disk(vg), lv)
            .map(|c| c.unwrap_or(true))
            .map_err(|e| ActivationError::dm(Op::CheckTable, name, Some(lv), e))
    }

    fn leftovers(&self, vg: &VgRead) -> Result<Vec<Leftover>, ActivationError> {
        let name = &vg.vg.name;
        let mut list: Vec<Leftover> = self
            .activator
            .list_active(&on_disk(vg))
            .map_err(|e| ActivationError::dm(Op::List, name, None, e))?
            .into_iter()
            .filter(|a| a.lv.is_none())
            .map(|a| Leftover {
                vg: name.clone(),
                dm_name: a.dm_name,
                dm_uuid: a.dm_uuid,
                layer: a.layer,
                open_count: a.open_count,
            })
            .collect();
        // An LV's own device holds its layers open: remove it first.
        list.sort_by_key(|l| l.layer.is_some());
        Ok(list)
    }

    fn remove_leftover(&self, vg: &VgRead, leftover: &Leftover) -> Result<bool, ActivationError> {
        let name = &vg.vg.name;
        let found = on_disk(vg);
        let err = |e| ActivationError::dm(Op::RemoveLeftover, name, Some(&leftover.dm_name), e);
        let Some(active) = self
            .activator
            .list_active(&found)
            .map_err(err)?
            .into_iter()
            .find(|a| a.dm_uuid == leftover.dm_uuid)
        else {
            return Ok(false);
        };
        self.activator.remove_leftover(&found, &active).map_err(err)
    }
}

/// Activation in memory: devices are names under `dev_dir` that do not exist. For tests
/// and for running the daemon before the device-mapper layer lands.
#[derive(Debug)]
pub struct SimActivation {
    dev_dir: PathBuf,
    active: Mutex<BTreeMap<(String, String), ActiveVolume>>,
    unavailable: Mutex<Option<String>>,
    fault: Mutex<Option<ActivateError>>,
    raid: Mutex<BTreeMap<(String, String), RaidStatus>>,
    thin: Mutex<BTreeMap<(String, String), SimPool>>,
    /// Active COW snapshots (by VG and store name), which `release_cow` drops once the
    /// metadata no longer has them.
    cow: Mutex<BTreeSet<(String, String)>>,
}

/// A simulated pool's kernel metadata: what its messages did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimPool {
    pub transaction_id: u64,
    /// The thin device ids the pool has.
    pub devices: BTreeSet<u64>,
    /// What the pool's status says is written (tests set it).
    pub data_used: Bytes,
    pub metadata_used: Bytes,
    /// What the pool's status says is wrong with it (tests set it); `None`: working.
    pub trouble: Option<String>,
}

impl SimPool {
    /// A pool first seen (made by lvm2, or before this process): its kernel metadata
    /// as the VG metadata says it is, its recorded messages not yet sent.
    fn as_recorded(vg: &VolumeGroup, pool: &str) -> SimPool {
        use crate::lvm::thin::{pending_messages, thin_lvs, PoolMessage};
        let Some([seg]) = vg.lv(pool).map(|l| &l.segments[..]) else {
            return SimPool::default();
        };
        let crate::model::SegmentKind::ThinPool { transaction_id, .. } = &seg.kind else {
            return SimPool::default();
        };
        let pending = pending_messages(seg);
        let mut devices: BTreeSet<u64> = thin_lvs(vg, pool)
            .into_iter()
            .filter(|(l, _)| !pending.contains(&PoolMessage::Create(l.name.clone())))
            .map(|(_, id)| id)
            .collect();
        for m in &pending {
            if let PoolMessage::Delete(id) = m {
                devices.insert(*id);
            }
        }
        SimPool {
            transaction_id: transaction_id - u64::from(!pending.is_empty()),
            devices,
            ..SimPool::default()
        }
    }
}

impl Default for SimActivation {
    fn default() -> Self {
        SimActivation::new("/dev/lvmd-sim")
    }
}

impl SimActivation {
    pub fn new(dev_dir: impl Into<PathBuf>) -> SimActivation {
        SimActivation {
            dev_dir: dev_dir.into(),
            active: Mutex::new(BTreeMap::new()),
            unavailable: Mutex::new(None),
            fault: Mutex::new(None),
            raid: Mutex::new(BTreeMap::new()),
            cow: Mutex::new(BTreeSet::new()),
            thin: Mutex::new(BTreeMap::new()),
        }
    }

    /// The simulated kernel's view of thin pool `vg/pool`, for tests.
    pub fn thin_pool(&self, vg: &str, pool: &str) -> SimPool {
        let key = (vg.to_owned(), pool.to_owned());
        self.thin
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets how full the simulated pool `vg/pool` is, for tests.
    pub fn set_thin_usage(&self, vg: &str, pool: &str, data: Bytes, metadata: Bytes) {
        let key = (vg.to_owned(), pool.to_owned());
        let mut all = self.thin.lock().unwrap();
        let p = all.entry(key).or_default();
        p.data_used = data;
        p.metadata_used = metadata;
    }

    /// Sets what the simulated pool `vg/pool`'s status says is wrong with it (dm-thin's
    /// `out_of_data_space`, `ro`, `needs_check`), for tests; `None` clears it.
    pub fn set_thin_trouble(&self, vg: &str, pool: &str, trouble: Option<&str>) {
        let key = (vg.to_owned(), pool.to_owned());
        let mut all = self.thin.lock().unwrap();
        all.entry(key).or_default().trouble = trouble.map(str::to_owned);
    }

    /// What the real activator does with a pool's recorded messages, on the simulated
    /// kernel metadata: [`crate::lvm::thin::catchup`] from its transaction id, each
    /// message applied as dm-thin would (a `create_thin` of an id it has fails, a
    /// `delete` of one it has not is ENODATA, taken as done).
    fn sync_pool(&self, vg: &VolumeGroup, pool: &str) -> Result<PoolStatus, ActivationError> {
        use crate::lvm::thin::{catchup, Catchup, KernelMessage};
        let key = (vg.name.clone(), pool.to_owned());
        let mut all = self.thin.lock().unwrap();
        let p = all
            .entry(key)
            .or_insert_with(|| SimPool::as_recorded(vg, pool));
        let err = |e| ActivationError::dm(Op::ThinPool, &vg.name, Some(pool), e);
        let metadata = match vg.lv(pool).map(|l| &l.segments[..]) {
            Some([s]) => match &s.kind {
                crate::model::SegmentKind::ThinPool { transaction_id, .. } => *transaction_id,
                _ => 0,
            },
            _ => {
                return Err(err(ActivateError::LvNotFound {
                    vg: vg.name.clone(),
                    lv: pool.into(),
                }))
            }
        };
        match catchup(vg, pool, p.transaction_id) {
            Ok(Catchup::InStep | Catchup::Sent { .. }) => {}
            Ok(Catchup::Send { messages, .. }) => {
                for m in messages {
                    match m {
                        KernelMessage::Delete(id) => {
                            p.devices.remove(&id);
                        }
                        KernelMessage::CreateThin(id) => {
                            if !p.devices.insert(id) {
                                return Err(err(ActivateError::Unsupported {
                                    vg: vg.name.clone(),
                                    lv: pool.into(),
                                    why: format!("create_thin {id}: the pool has it (EEXIST)"),
                                }));
                            }
                        }
                        KernelMessage::CreateSnap { id, origin } => {
                            let why = if !p.devices.contains(&origin) {
                                format!("create_snap {id} {origin}: no origin {origin} (ENODATA)")
                            } else if p.devices.contains(&id) {
                                format!("create_snap {id} {origin}: the pool has {id} (EEXIST)")
                            } else {
                                p.devices.insert(id);
                                continue;
                            };
                            return Err(err(ActivateError::Unsupported {
                                vg: vg.name.clone(),
                                lv: pool.into(),
                                why,
                            }));
                        }
                        KernelMessage::SetTransactionId { new, .. } => p.transaction_id = new,
                    }
                }
            }
            Err(_) => {
                return Err(err(ActivateError::ThinTransaction {
                    vg: vg.name.clone(),
                    pool: pool.into(),
                    kernel: p.transaction_id,
                    metadata,
                }))
            }
        }
        Ok(self.pool_status(vg, pool, p))
    }

    fn pool_status(&self, vg: &VolumeGroup, pool: &str, p: &SimPool) -> PoolStatus {
        let size = |name: Option<String>| {
            name.and_then(|n| {
                vg.lv(&n)
                    .map(|l| vg.extent_size.span(l.extents()).to_bytes())
            })
            .unwrap_or_default()
        };
        let (meta, data) = match vg.lv(pool).map(|l| &l.segments[..]) {
            Some([s]) => match &s.kind {
                crate::model::SegmentKind::ThinPool { metadata, pool, .. } => {
                    (Some(metadata.clone()), Some(pool.clone()))
                }
                _ => (None, None),
            },
            _ => (None, None),
        };
        PoolStatus {
            transaction_id: p.transaction_id,
            data_used: p.data_used,
            data_total: size(data),
            metadata_used: p.metadata_used,
            metadata_total: size(meta),
            trouble: p.trouble.clone(),
        }
    }

    /// What the simulated kernel reports for the active mirror `vg/lv`, for tests.
    pub fn set_raid_status(&self, vg: &str, lv: &str, status: RaidStatus) {
        let key = (vg.to_owned(), lv.to_owned());
        self.raid.lock().unwrap().insert(key, status);
    }

    /// Pretends something holds the volume open (a mount elsewhere), for tests.
    pub fn set_open_count(&self, vg: &str, lv: &str, count: u32) {
        if let Some(a) = self
            .active
            .lock()
            .unwrap()
            .get_mut(&(vg.to_owned(), lv.to_owned()))
        {
            a.open_count = count;
        }
    }

    /// The volumes of `vg` this simulation holds active, for tests.
    pub fn active_in(&self, vg: &str) -> Vec<ActiveVolume> {
        self.active
            .lock()
            .unwrap()
            .values()
            .filter(|a| a.vg == vg)
            .cloned()
            .collect()
    }

    /// The size of the active volume whose device is `device`.
    pub fn size_of(&self, device: &std::path::Path) -> Option<Bytes> {
        self.active
            .lock()
            .unwrap()
            .values()
            .find(|a| a.device == device)
            .map(|a| a.size)
    }

    /// Makes every call fail as if device-mapper were missing (`None`: works again).
    pub fn set_unavailable(&self, why: Option<&str>) {
        *self.unavailable.lock().unwrap() = why.map(str::to_owned);
    }

    /// Makes the next activation fail with `e`, as device-mapper would have (a taken
    /// name, a missing target module, ...), for tests of what clients see.
    pub fn fail_next_activation(&self, e: ActivateError) {
        *self.fault.lock().unwrap() = Some(e);
    }

    fn check(&self) -> Result<(), ActivationError> {
        match &*self.unavailable.lock().unwrap() {
            Some(why) => Err(ActivationError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    fn volume(&self, vg: &VolumeGroup, lv: &str) -> Result<ActiveVolume, ActivationError> {
        let model = vg.lv(lv).ok_or_else(|| {
            let e = ActivateError::LvNotFound {
                vg: vg.name.clone(),
                lv: lv.into(),
            };
            ActivationError::dm(Op::Activate, &vg.name, Some(lv), e)
        })?;
        Ok(ActiveVolume {
            vg: vg.name.clone(),
            lv: lv.into(),
            device: self.dev_dir.join(format!("{}-{}", vg.name, lv)),
            size: vg.extent_size.span(model.extents()).to_bytes(),
            open_count: 0,
        })
    }
}

impl Activation for SimActivation {
    /// The devices of COW snapshots gone from the metadata go; the simulation has no
    /// layers to switch back.
    fn release_cow(&self, vg: &VgRead, _origin: Option<&str>) -> Result<(), ActivationError> {
        self.check()?;
        let vg = &vg.vg;
        let mut cow = self.cow.lock().unwrap();
        let gone: Vec<(String, String)> = cow
            .iter()
            .filter(|(v, lv)| *v == vg.name && vg.lv(lv).is_none())
            .cloned()
            .collect();
        let mut active = self.active.lock().unwrap();
        for key in gone {
            active.remove(&key);
            cow.remove(&key);
        }
        Ok(())
    }

    fn activate(&self, vg: &VgRead, lv: &str) -> Result<ActiveVolume, ActivationError> {
        let vg = &vg.vg;
        self.check()?;
        if let Some(e) = self.fault.lock().unwrap().take() {
            return Err(ActivationError::dm(Op::Activate, &vg.name, Some(lv), e));
        }
        // As the real activator: a thin LV's pool is brought in step before it.
        if let Some(crate::model::SegmentKind::Thin { thin_pool, .. }) =
            vg.lv(lv).and_then(|l| l.segments.first()).map(|s| &s.kind)
        {
            self.sync_pool(vg, thin_pool)?;
        }
        let mut active = self.active.lock().unwrap();
        let key = (vg.name.clone(), lv.to_owned());
        if let Some(a) = active.get(&key) {
            return Ok(a.clone());
        }
        if crate::lvm::cow::by_cow(vg, lv).is_some() {
            self.cow.lock().unwrap().insert(key.clone());
        }
        let a = self.volume(vg, lv)?;
        active.insert(key, a.clone());
        Ok(a)
    }

    fn refresh(&self, vg: &VgRead, lv: &str) -> Result<Option<ActiveVolume>, ActivationError> {
        let vg = &vg.vg;
        self.check()?;
        let mut active = self.active.lock().unwrap();
        let key = (vg.name.clone(), lv.to_owned());
        let Some(old) = active.get(&key).cloned() else {
            return Ok(None);
        };
        let a = ActiveVolume {
            open_count: old.open_count,
            ..self.volume(vg, lv)?
        };
        active.insert(key, a.clone());
        Ok(Some(a))
    }

    fn deactivate(&self, vg: &VgRead, lv: &str) -> Result<bool, ActivationError> {
        let vg = vg.vg.name.as_str();
        self.check()?;
        let mut active = self.active.lock().unwrap();
        let key = (vg.to_owned(), lv.to_owned());
        match active.get(&key) {
            None => Ok(false),
            Some(a) if a.open_count > 0 => Err(ActivationError::Busy {
                vg: vg.into(),
                lv: lv.into(),
                by: format!("open count {}", a.open_count),
            }),
            Some(_) => {
                active.remove(&key);
                Ok(true)
            }
        }
    }

    fn active_volumes(&self, vg: &VgRead) -> Result<Vec<ActiveVolume>, ActivationError> {
        self.check()?;
        Ok(self.active_in(&vg.vg.name))
    }

    fn raid_status(&self, vg: &VgRead, lv: &str) -> Result<Option<RaidStatus>, ActivationError> {
        self.check()?;
        let key = (vg.vg.name.clone(), lv.to_owned());
        if !self.active.lock().unwrap().contains_key(&key) {
            return Ok(None);
        }
        Ok(self.raid.lock().unwrap().get(&key).cloned())
    }

    fn table_current(&self, vg: &VgRead, lv: &str) -> Result<bool, ActivationError> {
        self.check()?;
        let key = (vg.vg.name.clone(), lv.to_owned());
        let Some(a) = self.active.lock().unwrap().get(&key).cloned() else {
            return Ok(true);
        };
        Ok(self.volume(&vg.vg, lv)?.size == a.size)
    }

    fn leftovers(&self, vg: &VgRead) -> Result<Vec<Leftover>, ActivationError> {
        self.check()?;
        Ok(self
            .active_in(&vg.vg.name)
            .into_iter()
            .filter(|a| vg.vg.lv(&a.lv).is_none())
            .map(|a| Leftover {
                vg: a.vg.clone(),
                dm_name: format!("{}-{}", a.vg, a.lv),
                // The simulation keys devices by LV name.
                dm_uuid: a.lv,
                layer: None,
                open_count: a.open_count,
            })
            .collect())
    }

    fn thin_pool_sync(&self, vg: &VgRead, pool: &str) -> Result<PoolStatus, ActivationError> {
        self.check()?;
        if let Some(e) = self.fault.lock().unwrap().take() {
            return Err(ActivationError::dm(
                Op::ThinPool,
                &vg.vg.name,
                Some(pool),
                e,
            ));
        }
        self.sync_pool(&vg.vg, pool)
    }

    fn thin_pool_status(
        &self,
        vg: &VgRead,
        pool: &str,
    ) -> Result<Option<PoolStatus>, ActivationError> {
        self.check()?;
        let key = (vg.vg.name.clone(), pool.to_owned());
        let all = self.thin.lock().unwrap();
        Ok(all.get(&key).map(|p| self.pool_status(&vg.vg, pool, p)))
    }

    /// The simulated pool's sizes are the metadata's: its status after a grow says so.
    fn thin_pool_refresh(
        &self,
        vg: &VgRead,
        pool: &str,
    ) -> Result<Option<PoolStatus>, ActivationError> {
        self.thin_pool_status(vg, pool)
    }

    fn remove_leftover(&self, vg: &VgRead, leftover: &Leftover) -> Result<bool, ActivationError> {
        self.check()?;
        let mut active = self.active.lock().unwrap();
        let key = (vg.vg.name.clone(), leftover.dm_uuid.clone());
        match active.get(&key) {
            None => Ok(false),
            Some(a) if a.open_count > 0 => Err(ActivationError::Busy {
                vg: key.0.clone(),
                lv: key.1.clone(),
                by: format!("open count {}", a.open_count),
            }),
            Some(_) => {
                active.remove(&key);
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activate::DevNum;
    use crate::units::Sectors;

    fn device(name: &str, uuid: &str) -> ActiveLv {
        ActiveLv {
            vg: "vg".into(),
            lv: Some("lv".into()),
            layer: None,
            dm_name: name.into(),
            dm_uuid: uuid.into(),
            devnum: DevNum {
                major: 253,
                minor: 0,
            },
            size: Sectors(8),
            open_count: 0,
            read_only: false,
            suspended: false,
            dev_path: format!("/dev/mapper/{name}").into(),
            mapper_path: format!("/dev/mapper/{name}").into(),
        }
    }

    #[test]
    fn an_undo_that_fell_short_names_what_it_left() {
        let before: BTreeSet<String> = ["LVM-a".to_owned()].into();
        // Only what was not active before the attempt counts as left by it.
        let now = vec![
            device("vg-other", "LVM-a"),
            device("vg-lv_rimage_0", "LVM-b"),
        ];
        assert_eq!(left_behind(&before, now), ["vg-lv_rimage_0"]);
        assert!(left_behind(&before, vec![device("vg-other", "LVM-a")]).is_empty());
    }

    #[test]
    fn errors_keep_the_layer_s_own_and_say_what_was_done() {
        let e = ActivationError::dm(
            Op::Activate,
            "vg",
            Some("lv"),
            ActivateError::TargetMissing {
                device: "vg-lv".into(),
                target: "raid".into(),
            },
        );
        assert!(
            matches!(&e, ActivationError::Dm { source, .. }
                if matches!(&**source, ActivateError::TargetMissing { target, .. } if target == "raid")),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("activating vg/lv: "), "{e}");
        // Busy keeps its own variant, the volume's name and the device's openers.
        let e = ActivationError::dm(
            Op::Deactivate,
            "vg",
            Some("lv"),
            ActivateError::Busy {
                device: "vg-lv".into(),
                open_count: 2,
            },
        );
        assert!(
            matches!(&e, ActivationError::Busy { vg, lv, by } if vg == "vg" && lv == "lv" && by.contains("2 opener")),
            "{e:?}"
        );
        // Reconciliation leaves alone what lvmd does not make.
        let hidden = ActivationError::dm(
            Op::CheckTable,
            "vg",
            Some("lv_rimage_0"),
            ActivateError::HiddenLv {
                vg: "vg".into(),
                lv: "lv_rimage_0".into(),
            },
        );
        assert!(hidden.is_unsupported());
        let udev = ActivationError::dm(
            Op::Activate,
            "vg",
            Some("lv"),
            ActivateError::Udev { why: "slow".into() },
        );
        assert!(!udev.is_unsupported());
    }
}
