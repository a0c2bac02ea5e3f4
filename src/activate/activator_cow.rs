//! Activating COW snapshots with their origin (planned in `super::super::cow`).
//!
//! dm-snapshot copies an origin's overwritten chunks only into snapshots that are
//! active, so an origin and its snapshots go up together: activating either activates
//! the whole group. When the origin is active already (in use), the new snapshot
//! devices are made while it is suspended (its writes waited for and a filesystem on
//! it flushed: the snapshot holds what was written up to the suspend), and its table
//! switched to `snapshot-origin` in the same suspend. When its last snapshot is gone
//! from the metadata, the origin is switched back to its own table the same way and
//! its `-real` layer removed ([`Activator::release_cow`]).

use super::super::cow::{self as plan_cow, Role};
use super::super::dm::{kernel_table_text, table_is};
use super::super::error::{ActivateError, Result};
use super::super::plan::{dm_uuid, parse_dm_uuid, vg_uuid_prefix, DevicePlan, LvPlan};
use super::super::target::{SnapshotStatus, TableLine, Target};
use super::Activator;
use crate::lvm::cow;
use crate::model::LogicalVolume;
use crate::store::scan::VgOnDisk;
use tracing::{info, warn};

/// The plan as seen by one device of a group: its own LV's name, for its nodes
/// (`/dev/VG/<snapshot>` for a snapshot device of the origin's group).
fn member(plan: &LvPlan, device: &DevicePlan) -> LvPlan {
    let lv = super::split_dm_name(&device.name)
        .map(|(_, lv)| lv)
        .unwrap_or_else(|| plan.lv.clone());
    LvPlan {
        vg: plan.vg.clone(),
        lv,
        devices: Vec::new(),
    }
}

impl Activator {
    fn ensure_in_group(
        &self,
        plan: &LvPlan,
        device: &DevicePlan,
    ) -> Result<(bool, crate::activate::DevNum)> {
        self.ensure_device(&member(plan, device), device)
    }

    /// Activates origin `origin` and all its COW snapshots (see the module's doc).
    pub(super) fn activate_cow_group(&self, found: &VgOnDisk, origin: &str) -> Result<()> {
        let mut plan = self.plan(found, origin)?;
        let top = plan.devices.len() - 1;
        // -real at 0, then (cow, snapshot) pairs, the origin last.
        let is_snapshot = |i: usize| i > 0 && i < top && i % 2 == 0;
        let mut created: Vec<DevicePlan> = Vec::new();
        let result = self.cow_group_steps(&mut plan, &mut created, is_snapshot);
        if let Err(e) = result {
            for done in created.iter().rev() {
                if let Err(undo) = self.remove_device(&member(&plan, done), done) {
                    warn!(vg = %plan.vg, lv = %plan.lv, device = %done.name,
                        "undoing a failed activation: cannot remove the device: {undo}");
                }
            }
            return Err(e);
        }
        Ok(())
    }

    fn cow_group_steps(
        &self,
        plan: &mut LvPlan,
        created: &mut Vec<DevicePlan>,
        is_snapshot: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let top = plan.devices.len() - 1;
        // The layers nobody writes through yet: -real and each store.
        for i in (0..top).filter(|i| !is_snapshot(*i)) {
            Self::resolved(&plan.devices[i])?;
            let device = plan.devices[i].clone();
            let (made, devnum) = self.ensure_in_group(plan, &device)?;
            if made {
                created.push(device);
            }
            plan.resolve(i, devnum);
        }
        let missing: Vec<usize> = (0..top)
            .filter(|i| is_snapshot(*i))
            .map(|i| Ok((i, self.dm.info_by_uuid(&plan.devices[i].uuid)?)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|(_, d)| d.as_ref().is_none_or(|d| !d.live))
            .map(|(i, _)| i)
            .collect();
        let origin = plan.devices[top].clone();
        let Some(live_origin) = self.dm.info_by_uuid(&origin.uuid)?.filter(|d| d.live) else {
            // Nobody writes to the origin: snapshots first, the origin over them.
            for i in (0..top).filter(|i| is_snapshot(*i)) {
                let device = plan.devices[i].clone();
                let (made, _) = self.ensure_in_group(plan, &device)?;
                if made {
                    created.push(device);
                }
            }
            let (made, _) = self.ensure_in_group(plan, &origin)?;
            if made {
                created.push(origin);
            }
            return Ok(());
        };
        let live = self.dm.table(&origin.uuid)?;
        let layered = table_is(&live, &origin.table);
        // Snapshots already active are checked as any device.
        for i in (0..top).filter(|i| is_snapshot(*i) && !missing.contains(i)) {
            let device = plan.devices[i].clone();
            self.ensure_in_group(plan, &device)?;
        }
        if missing.is_empty() && layered {
            self.ensure_in_group(plan, &origin)?;
            return Ok(());
        }
        // An origin not yet layered must be running its own table (what -real maps now),
        // or its writes went somewhere this plan does not know.
        if !layered && !table_is(&live, &plan.devices[0].table) {
            return Err(ActivateError::ActiveWithOtherTable {
                vg: plan.vg.clone(),
                lv: plan.lv.clone(),
                device: live_origin.name,
                active: kernel_table_text(&live),
                planned: super::super::target::table_text(&plan.devices[0].table),
            });
        }
        self.dm.suspend(&live_origin)?;
        let under_suspend = (|| {
            for &i in &missing {
                let device = plan.devices[i].clone();
                let (made, _) = self.ensure_in_group(plan, &device)?;
                if made {
                    created.push(device);
                }
            }
            if !layered {
                // Loaded and resumed onto snapshot-origin; the suspend it does is a no-op.
                self.dm.reload(&origin)?;
                info!(vg = %plan.vg, lv = %plan.lv, "origin switched to snapshot-origin");
            }
            Ok(())
        })();
        // Resumed on whatever it runs now (its old table if the reload failed).
        if let Some(now) = self.dm.info_by_uuid(&origin.uuid)? {
            if now.suspended {
                self.dm.resume_suspended(&now, origin.visible)?;
            }
        }
        under_suspend
    }

    /// Deactivates a COW origin with its snapshots (its own device first, then each
    /// snapshot and store, then `-real`), or a snapshot whose origin is not active.
    /// `None` when `lv` takes no part in COW snapshots.
    pub(super) fn deactivate_cow(
        &self,
        found: &VgOnDisk,
        model: &LogicalVolume,
    ) -> Result<Option<bool>> {
        let vg = &found.vg;
        let (origin_name, only) = match plan_cow::role(vg, &model.name) {
            None => return Ok(None),
            Some(Role::Origin(_)) => (model.name.clone(), None),
            Some(Role::Snapshot(s)) => (s.origin.clone(), Some(model.clone())),
        };
        let origin = vg
            .lv(&origin_name)
            .ok_or_else(|| ActivateError::LvNotFound {
                vg: vg.name.clone(),
                lv: origin_name.clone(),
            })?;
        let origin_uuid = dm_uuid(&vg.id, &origin.id, None);
        if only.is_some() && self.dm.info_by_uuid(&origin_uuid)?.is_some() {
            return Err(ActivateError::Unsupported {
                vg: vg.name.clone(),
                lv: model.name.clone(),
                why: format!(
                    "its origin {origin_name} is active, and dm-snapshot copies the origin's \
                     overwritten data only into active snapshots; deactivating the origin \
                     deactivates its snapshots with it"
                ),
            });
        }
        let mut uuids = vec![(origin_uuid, origin.name.clone(), true)];
        for snap in cow::snapshots_of(vg, &origin_name) {
            let Some(store) = vg.lv(&snap.cow) else {
                continue;
            };
            if only.as_ref().is_some_and(|o| o.name != store.name) {
                continue;
            }
            uuids.push((dm_uuid(&vg.id, &store.id, None), store.name.clone(), true));
            uuids.push((
                dm_uuid(&vg.id, &store.id, Some("cow")),
                store.name.clone(),
                false,
            ));
        }
        uuids.push((
            dm_uuid(&vg.id, &origin.id, Some("real")),
            origin.name.clone(),
            false,
        ));
        let mut removed = false;
        let own = dm_uuid(&vg.id, &model.id, None);
        for (uuid, lv, visible) in uuids {
            let Some(dev) = self.dm.info_by_uuid(&uuid)? else {
                continue;
            };
            let dev = self.wait_closed(dev)?;
            // -real stays while other snapshots of an inactive origin hold it.
            if !visible && uuid.ends_with("-real") && dev.open_count > 0 && only.is_some() {
                continue;
            }
            self.remove_active(&vg.name, &lv, &dev, visible)?;
            removed |= uuid == own;
        }
        if removed {
            info!(vg = %vg.name, lv = %model.name, "deactivated");
        }
        Ok(Some(removed))
    }

    /// After a commit that removed COW snapshots of `origin` (as in `found`): their
    /// devices go (found as active `snapshot` devices over the origin's `-real` whose
    /// LV the metadata no longer has, and their `-cow`), with the origin suspended
    /// while they do; an origin left without snapshots is switched back to its own
    /// table in the same suspend and its `-real` removed. Safe to call again (after a
    /// crash at any step): what is already done is skipped.
    pub fn release_cow(&self, found: &VgOnDisk, origin: &str) -> Result<()> {
        let vg = &found.vg;
        let model = vg.lv(origin).ok_or_else(|| ActivateError::LvNotFound {
            vg: vg.name.clone(),
            lv: origin.to_owned(),
        })?;
        let Some(real) = self
            .dm
            .info_by_uuid(&dm_uuid(&vg.id, &model.id, Some("real")))?
        else {
            return Ok(());
        };
        // Snapshot devices of this origin the metadata no longer has.
        let mut orphans = Vec::new();
        for dev in self.dm.list_with_uuid_prefix(&vg_uuid_prefix(&vg.id))? {
            let Some((lv_id, None)) = parse_dm_uuid(&vg.id, &dev.uuid) else {
                continue;
            };
            if vg.lvs.iter().any(|l| l.id == lv_id) || !dev.live {
                continue;
            }
            let table = self.dm.table(&dev.uuid)?;
            let over_real = table.iter().any(|l| {
                TableLine::from_kernel(l).is_ok_and(|t| match t.target {
                    Target::Snapshot(s) => s.real.devnum() == Some(real.devnum),
                    _ => false,
                })
            });
            if over_real {
                orphans.push(dev);
            }
        }
        let still = !cow::snapshots_of(vg, origin).is_empty();
        let origin_uuid = dm_uuid(&vg.id, &model.id, None);
        let live_origin = self.dm.info_by_uuid(&origin_uuid)?.filter(|d| d.live);
        if orphans.is_empty() && still {
            return Ok(());
        }
        let plain = if still {
            None
        } else {
            Some(self.plan(found, origin)?.top().clone())
        };
        if let Some(dev) = &live_origin {
            self.dm.suspend(dev)?;
        }
        let steps = (|| {
            for dev in &orphans {
                let dev = self.wait_closed(dev.clone())?;
                let (vg_name, lv_name) = super::split_dm_name(&dev.name)
                    .unwrap_or_else(|| (vg.name.clone(), dev.name.clone()));
                self.remove_active(&vg_name, &lv_name, &dev, true)?;
                if let Some(c) = self.dm.info_by_uuid(&format!("{}-cow", dev.uuid))? {
                    self.remove_active(&vg_name, &lv_name, &c, false)?;
                }
            }
            if let (Some(plain), Some(_)) = (&plain, &live_origin) {
                if !table_is(&self.dm.table(&origin_uuid)?, &plain.table) {
                    self.dm.reload(plain)?;
                    info!(vg = %vg.name, lv = origin, "origin switched back to its own table");
                }
            }
            Ok(())
        })();
        if let Some(now) = self.dm.info_by_uuid(&origin_uuid)? {
            if now.suspended {
                self.dm.resume_suspended(&now, true)?;
            }
        }
        steps?;
        if plain.is_some() {
            if let Some(real) = self.dm.info_by_uuid(&real.uuid)? {
                let real = self.wait_closed(real)?;
                self.remove_active(&vg.name, origin, &real, false)?;
            }
        }
        Ok(())
    }

    /// What dm-snapshot says of COW snapshot `lv` (its store's name); `None` when it is
    /// not active or not a COW snapshot.
    pub fn cow_status(&self, found: &VgOnDisk, lv: &str) -> Result<Option<SnapshotStatus>> {
        let vg = &found.vg;
        let Some(store) = cow::by_cow(vg, lv).and_then(|s| vg.lv(&s.cow)) else {
            return Ok(None);
        };
        let uuid = dm_uuid(&vg.id, &store.id, None);
        if self.dm.info_by_uuid(&uuid)?.is_none() {
            return Ok(None);
        }
        let status = self.dm.status(&uuid)?;
        let Some((_, _, _, text)) = status.first() else {
            return Ok(None);
        };
        text.parse()
            .map(Some)
            .map_err(|e| ActivateError::InvalidMetadata {
                vg: vg.name.clone(),
                lv: lv.to_owned(),
                why: format!("dm-snapshot status {text:?}: {e}"),
            })
    }
}
