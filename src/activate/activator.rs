//! The public operations: activate, deactivate, refresh (resize), and what is active.

use super::dm::{kernel_table_text, table_is, DmControl, DmDevice};
use super::error::{ActivateError, Result};
use super::nodes::{self, NodeMode, NodePaths};
use super::plan::{self, DevicePlan, LvPlan};
use super::planner;
use super::raid;
use super::target::{table_text, DevNum, RaidStatus};
use crate::model::VolumeGroup;
use crate::store::scan::VgOnDisk;
use crate::units::Sectors;
use crate::uuid::Uuid;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[path = "activator_cow.rs"]
mod cows;
#[path = "activator_layers.rs"]
mod layers;
#[path = "activator_thin.rs"]
mod pools;
pub use pools::PoolStatus;

/// How long an open device may stay open before we call it busy, when udev runs.
const UDEV_PROBE_GRACE: Duration = Duration::from_millis(1500);

/// An active device-mapper device of an LV, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveLv {
    pub vg: String,
    /// The LV the device belongs to; `None` when its uuid names no LV of the metadata
    /// given (an LV removed while active, or metadata older than the device).
    pub lv: Option<String>,
    /// `None` for the LV's own device; `real`, `tpool`, ... for a layer device.
    pub layer: Option<String>,
    pub dm_name: String,
    pub dm_uuid: String,
    pub devnum: DevNum,
    pub size: Sectors,
    pub open_count: u32,
    pub read_only: bool,
    pub suspended: bool,
    /// `/dev/<VG>/<LV>` for an LV's own device, the path people open;
    /// `/dev/mapper/<name>` for a layer.
    pub dev_path: PathBuf,
    pub mapper_path: PathBuf,
}

impl ActiveLv {
    /// Whether this is the device of its LV as lvm2 counts it active (what `status`
    /// finds): an LV's own device, or a thin pool's public device (uuid suffix `-pool`,
    /// or `-tpool` for a pool no thin LV ever used). Layers and hidden sub-LVs are not.
    pub fn is_own_device_of(&self, vg: &VolumeGroup) -> bool {
        let Some(model) = self.lv.as_deref().and_then(|lv| vg.lv(lv)) else {
            return false;
        };
        // A COW snapshot's device is its (hidden) store's own.
        if !model.is_visible() && crate::lvm::cow::by_cow(vg, &model.name).is_none() {
            return false;
        }
        match super::thin::own_uuid(vg, model) {
            Some(own) => own == self.dm_uuid,
            None => self.layer.is_none(),
        }
    }

    pub fn major(&self) -> u32 {
        self.devnum.major
    }
    pub fn minor(&self) -> u32 {
        self.devnum.minor
    }
}

/// Activates and deactivates LVs through device-mapper. Holds an open
/// `/dev/mapper/control` and knows who makes device nodes; nothing else.
pub struct Activator {
    dm: DmControl,
    node_mode: NodeMode,
    dev_dir: PathBuf,
}

impl std::fmt::Debug for Activator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activator")
            .field("node_mode", &self.node_mode)
            .field("dev_dir", &self.dev_dir)
            .finish()
    }
}

impl Activator {
    /// Checks that device-mapper answers (the `DM_VERSION` ioctl: a control node alone
    /// proves nothing) and finds out whether udev makes the device nodes.
    pub fn new() -> Result<Activator> {
        Ok(Activator {
            dm: DmControl::open()?,
            node_mode: nodes::detect()?,
            dev_dir: PathBuf::from("/dev"),
        })
    }

    pub fn node_mode(&self) -> NodeMode {
        self.node_mode
    }

    /// The device-mapper layer underneath, for reading the kernel's view directly.
    pub fn dm(&self) -> &DmControl {
        &self.dm
    }

    /// The device numbers of the VG's PVs found on this host.
    fn pv_devices(found: &VgOnDisk) -> (BTreeMap<Uuid, DevNum>, BTreeMap<Uuid, String>) {
        let mut ok = BTreeMap::new();
        let mut bad = BTreeMap::new();
        for (uuid, path) in &found.devices {
            match nodes::block_devnum(path) {
                Ok(Some(devnum)) => {
                    ok.insert(*uuid, devnum);
                }
                Ok(None) => {
                    bad.insert(
                        *uuid,
                        "not a block device (attach it to a loop device)".into(),
                    );
                }
                Err(e) => {
                    bad.insert(*uuid, e.to_string());
                }
            }
        }
        (ok, bad)
    }

    /// The plan for `lv`, against the PV devices of this host.
    pub fn plan(&self, found: &VgOnDisk, lv: &str) -> Result<LvPlan> {
        let (devices, bad) = Self::pv_devices(found);
        let mut plan = planner::plan_lv(&found.vg, lv, &devices).map_err(|e| match e {
            // A PV we found but cannot map is a device problem, not a missing PV.
            ActivateError::MissingPv { vg, pv, uuid, .. } if bad.contains_key(&uuid) => {
                ActivateError::PvDevice {
                    vg,
                    pv,
                    path: found.devices[&uuid].clone(),
                    why: bad[&uuid].clone(),
                }
            }
            other => other,
        })?;
        // Devices of the plan that are active already: their numbers, for the devices
        // above that name them (raid legs, thin pools' layers).
        for i in 0..plan.devices.len().saturating_sub(1) {
            if let Some(dev) = self.dm.info_by_uuid(&plan.devices[i].uuid)? {
                plan.resolve(i, dev.devnum);
            }
        }
        Ok(plan)
    }

    fn paths(&self, vg: &str, lv: &str, device: &DevicePlan) -> NodePaths {
        NodePaths::new(
            &self.dev_dir,
            &device.name,
            device.visible.then_some((vg, lv)),
        )
    }

    /// Activates `lv`: creates its device(s), loads the tables, resumes them and makes
    /// the nodes. Already active with the same table: nothing changes (the nodes are
    /// checked; a device left suspended is resumed). On failure, everything this call
    /// created is removed again.
    pub fn activate(&self, found: &VgOnDisk, lv: &str) -> Result<ActiveLv> {
        // An origin and its COW snapshots go up together (activator_cow.rs).
        if let Some(role) = super::cow::role(&found.vg, lv) {
            let origin = match role {
                super::cow::Role::Origin(_) => lv.to_owned(),
                super::cow::Role::Snapshot(s) => s.origin,
            };
            self.activate_cow_group(found, &origin)?;
            let plan = self.plan(found, lv)?;
            info!(vg = %plan.vg, lv, device = %plan.top().name, "activated");
            return self.status_of(found, &plan.top().uuid)?.ok_or_else(|| {
                ActivateError::NotActive {
                    vg: plan.vg.clone(),
                    lv: plan.lv.clone(),
                }
            });
        }
        let mut plan = self.plan(found, lv)?;
        let mut created: Vec<DevicePlan> = Vec::new();
        for i in 0..plan.devices.len() {
            let step = Self::resolved(&plan.devices[i]).and_then(|()| {
                let device = plan.devices[i].clone();
                let (made, devnum) = self.ensure_device(&plan, &device)?;
                if made {
                    created.push(device.clone());
                }
                // Devices above name this one by its number (raid legs, pool layers).
                plan.resolve(i, devnum);
                pools::check_transaction(&self.dm, &found.vg, &plan, &device)
            });
            if let Err(e) = step {
                // Undo in reverse order; the failed device cleaned up after itself.
                for done in created.iter().rev() {
                    // The caller checks the kernel for what is left and names it; why the
                    // undo failed is said here.
                    if let Err(undo) = self.remove_device(&plan, done) {
                        warn!(vg = %plan.vg, lv = %plan.lv, device = %done.name,
                            "undoing a failed activation: cannot remove the device: {undo}");
                    }
                }
                return Err(e);
            }
        }
        let top = plan.top();
        info!(vg = %plan.vg, lv = %plan.lv, device = %top.name, "activated");
        self.status_of(found, &top.uuid)?
            .ok_or_else(|| ActivateError::NotActive {
                vg: plan.vg.clone(),
                lv: plan.lv.clone(),
            })
    }

    /// Makes one planned device active: whether this call created it, and its number.
    fn ensure_device(&self, plan: &LvPlan, device: &DevicePlan) -> Result<(bool, DevNum)> {
        let paths = self.paths(&plan.vg, &plan.lv, device);
        if let Some(existing) = self.dm.info_by_uuid(&device.uuid)? {
            if existing.name != device.name {
                return Err(ActivateError::ActiveUnderOtherName {
                    vg: plan.vg.clone(),
                    lv: plan.lv.clone(),
                    device: existing.name,
                    expected: device.name.clone(),
                });
            }
            if existing.live && existing.suspended {
                self.dm.resume_suspended(&existing, device.visible)?;
            }
            if existing.live {
                let live = self.dm.table(&device.uuid)?;
                if !table_is(&live, &device.table) {
                    return Err(ActivateError::ActiveWithOtherTable {
                        vg: plan.vg.clone(),
                        lv: plan.lv.clone(),
                        device: existing.name,
                        active: kernel_table_text(&live),
                        planned: table_text(&device.table),
                    });
                }
                nodes::add(self.node_mode, &paths, existing.devnum)?;
                return Ok((false, existing.devnum));
            }
            // Created but never resumed: left over from a crash between the steps.
            self.dm.remove(&existing, device.visible)?;
        }
        if let Some(other) = self.dm.info_by_name(&device.name)? {
            return Err(ActivateError::NameTaken {
                name: device.name.clone(),
                uuid: other.uuid,
                wanted: device.uuid.clone(),
            });
        }
        let dev = self.dm.create(device)?;
        if let Err(e) = nodes::add(self.node_mode, &paths, dev.devnum) {
            if let Err(undo) = self.remove_device(plan, device) {
                warn!(vg = %plan.vg, lv = %plan.lv, device = %device.name,
                    "its nodes failed ({e}); removing the device failed too: {undo}");
            }
            return Err(e);
        }
        if let Some(sectors) = device.read_ahead {
            // A hint, as with libdm: a failure is logged, the device stays.
            let set = File::open(&paths.mapper)
                .and_then(|f| lvmd_sys::blkdev::set_read_ahead(&f, sectors));
            if let Err(e) = set {
                warn!(vg = %plan.vg, lv = %plan.lv, device = %device.name, sectors,
                    "cannot set the read-ahead its LV names: {e}");
            }
        }
        Ok((true, dev.devnum))
    }

    fn remove_device(&self, plan: &LvPlan, device: &DevicePlan) -> Result<bool> {
        let Some(dev) = self.dm.info_by_uuid(&device.uuid)? else {
            return Ok(false);
        };
        self.remove_active(&plan.vg, &plan.lv, &dev, device.visible)?;
        Ok(true)
    }

    pub(super) fn remove_active(
        &self,
        vg: &str,
        lv: &str,
        dev: &DmDevice,
        visible: bool,
    ) -> Result<()> {
        self.dm.remove(dev, visible)?;
        let paths = NodePaths::new(&self.dev_dir, &dev.name, visible.then_some((vg, lv)));
        nodes::remove(self.node_mode, &paths)
    }

    /// The device once its opener is gone, or as it is after a short wait. With udev,
    /// an open can be udev's own: its rules probe a device (blkid) after every change
    /// event, including the one a writer's close raises through its inotify watch.
    pub(super) fn wait_closed(&self, dev: DmDevice) -> Result<DmDevice> {
        if dev.open_count == 0 || self.node_mode != NodeMode::Udev {
            return Ok(dev);
        }
        let deadline = Instant::now() + UDEV_PROBE_GRACE;
        let mut dev = dev;
        while dev.open_count > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            match self.dm.info_by_uuid(&dev.uuid)? {
                Some(now) => dev = now,
                None => break,
            }
        }
        Ok(dev)
    }

    /// Deactivates `lv`: removes its device(s) and nodes. Refuses while the device is
    /// open ([`ActivateError::Busy`]). `Ok(false)`: it was not active.
    pub fn deactivate(&self, found: &VgOnDisk, lv: &str) -> Result<bool> {
        let model = found.vg.lv(lv).ok_or_else(|| ActivateError::LvNotFound {
            vg: found.vg.name.clone(),
            lv: lv.to_owned(),
        })?;
        if let Some(done) = pools::deactivate(self, found, model)? {
            return Ok(done);
        }
        if let Some(done) = self.deactivate_cow(found, model)? {
            return Ok(done);
        }
        let prefix = plan::dm_uuid(&found.vg.id, &model.id, None);
        // The LV's own device first, then its layers: each is held open by the one above.
        let mut devices = self.dm.list_with_uuid_prefix(&prefix)?;
        devices.sort_by_key(|d| d.uuid != prefix);
        let top_active = devices.iter().any(|d| d.uuid == prefix);
        devices.extend(self.sub_lv_devices(found, model, top_active)?);
        if devices.is_empty() {
            return Ok(false);
        }
        for dev in &devices {
            // Read again: removing the device above closed this one.
            let Some(dev) = self.dm.info_by_uuid(&dev.uuid)? else {
                continue;
            };
            let dev = &self.wait_closed(dev)?;
            let visible = dev.uuid == prefix;
            // A device may be active under an older name (renamed LV): the nodes to drop
            // are the ones of the name it has.
            let (vg_name, lv_name) =
                split_dm_name(&dev.name).unwrap_or_else(|| (found.vg.name.clone(), lv.to_owned()));
            self.remove_active(&vg_name, &lv_name, dev, visible)?;
        }
        info!(vg = %found.vg.name, lv, "deactivated");
        Ok(true)
    }

    /// Brings an active LV's table in line with `found` (after a resize): loads the new
    /// table, suspends, resumes. Growing is always allowed; shrinking an open device is
    /// refused ([`ActivateError::ShrinkWhileOpen`]). An unchanged table is left alone.
    pub fn refresh(&self, found: &VgOnDisk, lv: &str) -> Result<ActiveLv> {
        let mut plan = self.plan(found, lv)?;
        let top_active = self.dm.info_by_uuid(&plan.top().uuid)?.is_some();
        let is_raid = found.vg.lv(lv).is_some_and(raid::is_raid);
        let mut renames = None;
        if top_active && is_raid {
            // The legs first, then the raid device over them (below).
            renames = Some(self.reload_raid_legs(&mut plan)?);
        } else if top_active && plan.devices.len() > 1 {
            // The layers below must be as planned; the top's own table is what this
            // reloads (a grown thin LV: its thin device only, the pool untouched).
            let layers = LvPlan {
                devices: plan.devices[..plan.devices.len() - 1].to_vec(),
                ..plan.clone()
            };
            if !self.layers_current(&layers)? {
                return Err(ActivateError::Unsupported {
                    vg: plan.vg.clone(),
                    lv: plan.lv.clone(),
                    why: "the devices below it differ from its metadata (a pool or leg \
                          resized?); lvmd reloads only linear, striped, raid1 and thin LVs"
                        .into(),
                });
            }
        }
        let top = plan.top();
        let Some(dev) = self.dm.info_by_uuid(&top.uuid)? else {
            return Err(ActivateError::NotActive {
                vg: plan.vg.clone(),
                lv: plan.lv.clone(),
            });
        };
        let live = self.dm.table(&top.uuid)?;
        // A mirror made linear (`lvconvert -m 0`): its legs' devices go once the raid
        // device above them is gone.
        let was_raid = !is_raid && live.iter().any(|l| l.2 == "raid");
        if !table_is(&live, &top.table) {
            let from = Sectors(live.iter().map(|l| l.0 + l.1).max().unwrap_or(0));
            let to = top.size();
            let dev = if to < from {
                self.wait_closed(dev)?
            } else {
                dev
            };
            if to < from && dev.open_count > 0 {
                return Err(ActivateError::ShrinkWhileOpen {
                    device: dev.name,
                    open_count: dev.open_count,
                    from,
                    to,
                });
            }
            self.dm.reload(top)?;
            info!(vg = %plan.vg, lv = %plan.lv, from = %from, to = %to, "reloaded");
        }
        if let Some(renames) = renames {
            self.finish_raid_legs(found, &plan, renames)?;
        } else if was_raid {
            self.finish_raid_legs(found, &plan, Vec::new())?;
        }
        self.status_of(found, &top.uuid)?
            .ok_or_else(|| ActivateError::NotActive {
                vg: plan.vg.clone(),
                lv: plan.lv.clone(),
            })
    }

    /// The blocks dm-integrity found damaged (a checksum that did not match) under
    /// raid LV `lv`'s active images since they were loaded, summed over its legs, as
    /// lvm2's `integritymismatches`; `None` when no image of it has an active
    /// integrity device (no integrity, or not active).
    pub fn integrity_mismatches(&self, found: &VgOnDisk, lv: &str) -> Result<Option<u64>> {
        let Some(model) = found.vg.lv(lv) else {
            return Ok(None);
        };
        let mut total = None;
        for sub in raid::sub_lvs(&found.vg, model) {
            if sub.integrity_layer().is_none() {
                continue;
            }
            let uuid = plan::dm_uuid(&found.vg.id, &sub.id, None);
            if self.dm.info_by_uuid(&uuid)?.is_none() {
                continue;
            }
            let lines = self.dm.status(&uuid)?;
            // A degraded leg's image is an error device: no count of its own.
            let Some((_, _, _, params)) = lines.iter().find(|l| l.2 == "integrity") else {
                continue;
            };
            let status: crate::activate::target::IntegrityStatus =
                params.parse().map_err(|e| ActivateError::InvalidMetadata {
                    vg: found.vg.name.clone(),
                    lv: lv.to_owned(),
                    why: format!("dm-integrity status of {}: {e}", sub.name),
                })?;
            *total.get_or_insert(0) += status.mismatches;
        }
        Ok(total)
    }

    /// dm-raid's own view of an active raid LV (legs' health, how far a sync is, what
    /// it is doing), from the raid device's status. `None`: not a raid LV, or not
    /// active.
    pub fn raid_status(&self, found: &VgOnDisk, lv: &str) -> Result<Option<RaidStatus>> {
        let model = found.vg.lv(lv).ok_or_else(|| ActivateError::LvNotFound {
            vg: found.vg.name.clone(),
            lv: lv.to_owned(),
        })?;
        if !raid::is_raid(model) {
            return Ok(None);
        }
        let uuid = plan::dm_uuid(&found.vg.id, &model.id, None);
        if self.dm.info_by_uuid(&uuid)?.is_none() {
            return Ok(None);
        }
        let lines = self.dm.status(&uuid)?;
        let Some((_, _, _, params)) = lines.iter().find(|l| l.2 == "raid") else {
            return Ok(None);
        };
        params
            .parse()
            .map(Some)
            .map_err(
                |e: super::target::ParseError| ActivateError::InvalidMetadata {
                    vg: found.vg.name.clone(),
                    lv: lv.to_owned(),
                    why: format!("the kernel's raid status {params:?} does not parse: {e}"),
                },
            )
    }

    /// Removes one device of [`list_active`](Self::list_active)'s answer whose LV the
    /// metadata no longer has (a crash or another tool left it), with its nodes.
    /// Refuses while it is open ([`ActivateError::Busy`]). `Ok(false)`: already gone.
    ///
    /// Only a device lvmd could have made for a plain LV: an LV's own device (no layer
    /// suffix) mapping `linear`, `striped`, `zero` or `error` targets. Anything else (a
    /// raid, thin, thin-pool, cache or snapshot device, or a layer such as `-tpool` or
    /// `-real`) belongs to a stack lvmd does not manage, maybe one lvm2 is changing
    /// right now: [`ActivateError::Unsupported`], and it stays.
    pub fn remove_leftover(&self, found: &VgOnDisk, leftover: &ActiveLv) -> Result<bool> {
        let Some(dev) = self.dm.info_by_uuid(&leftover.dm_uuid)? else {
            return Ok(false);
        };
        let unsupported = |why: String| ActivateError::Unsupported {
            vg: found.vg.name.clone(),
            lv: dev.name.clone(),
            why,
        };
        if let Some(layer) = &leftover.layer {
            return Err(unsupported(format!(
                "a leftover `-{layer}` layer device; lvmd removes only the devices of plain \
                 volumes"
            )));
        }
        if dev.live {
            let table = self.dm.table(&dev.uuid)?;
            if let Some((_, _, ty, _)) = table
                .iter()
                .find(|l| !matches!(l.2.as_str(), "linear" | "striped" | "zero" | "error"))
            {
                return Err(unsupported(format!(
                    "a leftover device with a {ty} target; lvmd removes only the devices \
                     of plain volumes"
                )));
            }
        }
        let dev = self.wait_closed(dev)?;
        if dev.open_count > 0 {
            return Err(ActivateError::Busy {
                device: dev.name.clone(),
                open_count: dev.open_count,
            });
        }
        let visible = leftover.layer.is_none();
        let (vg_name, lv_name) =
            split_dm_name(&dev.name).unwrap_or_else(|| (found.vg.name.clone(), dev.name.clone()));
        self.remove_active(&vg_name, &lv_name, &dev, visible)?;
        info!(vg = %found.vg.name, device = %dev.name, "removed leftover device");
        Ok(true)
    }

    /// Whether the active table of `lv` is the one its metadata in `found` makes;
    /// `None` when it is not active.
    pub fn table_current(&self, found: &VgOnDisk, lv: &str) -> Result<Option<bool>> {
        let plan = self.plan(found, lv)?;
        let top = plan.top();
        if self.dm.info_by_uuid(&top.uuid)?.is_none() {
            return Ok(None);
        }
        if plan.devices.len() > 1 {
            return Ok(Some(self.layers_current(&plan)?));
        }
        let live = self.dm.table(&top.uuid)?;
        Ok(Some(table_is(&live, &top.table)))
    }

    /// Every active device of the VG, found by device-mapper uuid (`LVM-<VG uuid>...`),
    /// whoever activated it.
    pub fn list_active(&self, found: &VgOnDisk) -> Result<Vec<ActiveLv>> {
        let prefix = plan::vg_uuid_prefix(&found.vg.id);
        let mut out = Vec::new();
        for dev in self.dm.list_with_uuid_prefix(&prefix)? {
            out.push(self.describe(found, dev)?);
        }
        Ok(out)
    }

    /// The active devices among those an activation of `lv` would make (its own and its
    /// layers, raid legs, a thin LV's pool). Read before and after an activation to tell
    /// what a failed attempt left: it asks the kernel about these few devices only, not
    /// every device of the VG, so it costs the same however many volumes are active.
    pub fn active_of_plan(&self, found: &VgOnDisk, lv: &str) -> Result<Vec<ActiveLv>> {
        let (devices, _) = Self::pv_devices(found);
        let plan = planner::plan_lv(&found.vg, lv, &devices)?;
        let mut out = Vec::new();
        for device in &plan.devices {
            if let Some(dev) = self.dm.info_by_uuid(&device.uuid)? {
                out.push(self.describe(found, dev)?);
            }
        }
        Ok(out)
    }

    /// The LV's own active device, if it is active.
    pub fn status(&self, found: &VgOnDisk, lv: &str) -> Result<Option<ActiveLv>> {
        let model = found.vg.lv(lv).ok_or_else(|| ActivateError::LvNotFound {
            vg: found.vg.name.clone(),
            lv: lv.to_owned(),
        })?;
        let uuid = super::thin::own_uuid(&found.vg, model)
            .unwrap_or_else(|| plan::dm_uuid(&found.vg.id, &model.id, None));
        self.status_of(found, &uuid)
    }

    pub fn is_active(&self, found: &VgOnDisk, lv: &str) -> Result<bool> {
        Ok(self.status(found, lv)?.is_some())
    }

    fn status_of(&self, found: &VgOnDisk, uuid: &str) -> Result<Option<ActiveLv>> {
        match self.dm.info_by_uuid(uuid)? {
            Some(dev) => Ok(Some(self.describe(found, dev)?)),
            None => Ok(None),
        }
    }

    fn describe(&self, found: &VgOnDisk, dev: DmDevice) -> Result<ActiveLv> {
        let (lv, layer) = match plan::parse_dm_uuid(&found.vg.id, &dev.uuid) {
            Some((lv_id, layer)) => (
                found
                    .vg
                    .lvs
                    .iter()
                    .find(|l| l.id == lv_id)
                    .map(|l| l.name.clone()),
                layer,
            ),
            None => (None, None),
        };
        let size = if dev.live {
            Sectors(
                self.dm
                    .table(&dev.uuid)?
                    .iter()
                    .map(|l| l.0 + l.1)
                    .max()
                    .unwrap_or(0),
            )
        } else {
            Sectors::ZERO
        };
        let mapper_path = self.dev_dir.join("mapper").join(&dev.name);
        let visible = |lv: &str| found.vg.lv(lv).is_some_and(|l| l.is_visible());
        let dev_path = match (&lv, &layer) {
            (Some(lv), None) if visible(lv) => self.dev_dir.join(&found.vg.name).join(lv),
            _ => mapper_path.clone(),
        };
        Ok(ActiveLv {
            vg: found.vg.name.clone(),
            lv,
            layer,
            dm_name: dev.name,
            dm_uuid: dev.uuid,
            devnum: dev.devnum,
            size,
            open_count: dev.open_count,
            read_only: dev.read_only,
            suspended: dev.suspended,
            dev_path,
            mapper_path,
        })
    }
}

/// Undoes lvm2's name escaping: `my--vg-data--1` -> (`my-vg`, `data-1`); a layer
/// suffix (`-real`) is dropped. `None` if the name is not of that form.
pub fn split_dm_name(name: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '-' {
            if chars.peek() == Some(&'-') {
                chars.next();
                cur.push('-');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    match parts.as_slice() {
        [vg, lv] | [vg, lv, _] if !vg.is_empty() && !lv.is_empty() => {
            Some((vg.clone(), lv.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn split_undoes_dm_name() {
        for (vg, lv) in [
            ("vg", "lv"),
            ("my-vg", "data-1"),
            ("a--b", "x"),
            ("v", "l-"),
        ] {
            let name = plan::dm_name(vg, lv, None);
            assert_eq!(split_dm_name(&name), Some((vg.into(), lv.into())), "{name}");
            let layered = plan::dm_name(vg, lv, Some("real"));
            assert_eq!(split_dm_name(&layered), Some((vg.into(), lv.into())));
        }
        assert_eq!(split_dm_name("nodash"), None);
    }

    #[test]
    fn without_device_mapper_new_says_so() {
        // The dev and CI hosts have no device-mapper (and a stale control node); there
        // the activator must refuse by the DM_VERSION ioctl, naming the control node.
        // On a host with device-mapper, it must agree with lvmd-sys instead.
        match Activator::new() {
            Err(ActivateError::DmUnavailable { control, .. }) => {
                assert!(!lvmd_sys::dm::dm_available());
                assert_eq!(control, Path::new(lvmd_sys::dm::DM_CONTROL_PATH));
            }
            Ok(_) => assert!(lvmd_sys::dm::dm_available()),
            Err(other) => {
                // DM answers but nodes or udev are unusable here: still DM is there.
                assert!(lvmd_sys::dm::dm_available(), "{other}");
            }
        }
        if std::env::var_os("LVMD_VM").is_none() && std::env::var_os("LVMD_ALLOW_HOST_DM").is_none()
        {
            assert!(
                !lvmd_sys::dm::dm_available(),
                "this host has device-mapper: set LVMD_ALLOW_HOST_DM=1 if that is intended"
            );
        }
    }
}
