//! The activator's side of LVs made of several devices (raid1 legs, thin pools'
//! layers): checking that a device's planned references are resolved before it loads,
//! comparing every device of a plan with the kernel's, and finding raid legs again for
//! deactivation.

use super::nodes::{self, NodePaths};
use super::{Activator, DmDevice};
use crate::activate::dm::{kernel_table_text, table_is};
use crate::activate::error::{ActivateError, Result};
use crate::activate::plan::{self, DevicePlan, LvPlan};
use crate::activate::raid;
use crate::activate::target::{table_text, unresolved, DevRef};
use crate::model::LogicalVolume;
use crate::store::scan::VgOnDisk;
use crate::units::Sectors;
use std::io;

/// Whether dm device `name` is one of lvm2's integrity layers under a raid image
/// (`<vg>-<lv>_rimage_N_iorig`, `..._imeta`).
fn is_integrity_layer(name: &str) -> bool {
    name.ends_with("_iorig") || name.ends_with("_imeta")
}

impl Activator {
    /// `Ok` when every device `device` names has its number: the activation made or
    /// found the planned ones below it first, and resolved them.
    pub(super) fn resolved(device: &DevicePlan) -> Result<()> {
        match unresolved(&device.table).first() {
            None => Ok(()),
            Some(r) => Err(ActivateError::Dm {
                op: "find the active device",
                device: match r {
                    DevRef::Planned { name, .. } => name.clone(),
                    DevRef::Device(n) => n.to_string(),
                },
                source: io::Error::from_raw_os_error(libc::ENXIO),
            }),
        }
    }

    /// Brings the legs of an active raid LV to their planned tables, before the raid
    /// device above is reloaded (the caller's step), in lvm2's order: libdm's
    /// `dm_tree_preload_children` loads each changed leg's table and resumes it at
    /// once. A grown leg is safe to resume under the live raid device: dm-raid keeps
    /// using only the sectors of its old table until it is reloaded. A leg whose
    /// planned table is smaller than its live one is refused (lvmd never shrinks a
    /// mirror; someone else changed it) before anything is reloaded. Sub-LVs with no
    /// device yet (a leg added, or the integrity layers of a leg that was an error
    /// device: degraded, then repaired) are made, in plan order. Returns the legs
    /// active under another name (the legs after a removed one, renamed in the
    /// metadata): [`Activator::finish_raid_legs`] renames them once the raid device no
    /// longer holds the removed legs whose names they take.
    pub(super) fn reload_raid_legs(&self, plan: &mut LvPlan) -> Result<Vec<(usize, DmDevice)>> {
        enum Step {
            Make,
            Reload(crate::activate::target::DevNum, Sectors),
        }
        let top = plan.devices.len() - 1;
        let mut steps = Vec::new();
        let mut renames = Vec::new();
        for (i, device) in plan.devices[..top].iter().enumerate() {
            let unsupported = |why: String| ActivateError::Unsupported {
                vg: plan.vg.clone(),
                lv: plan.lv.clone(),
                why,
            };
            let Some(dev) = self.dm.info_by_uuid(&device.uuid)? else {
                steps.push((i, Step::Make));
                continue;
            };
            if dev.name != device.name {
                renames.push((i, dev.clone()));
            }
            let live = self.dm.table(&device.uuid)?;
            if table_is(&live, &device.table) {
                continue;
            }
            let from = Sectors(live.iter().map(|l| l.0 + l.1).max().unwrap_or(0));
            if device.size() < from {
                return Err(unsupported(format!(
                    "its raid leg {} would shrink from {from} to {} ({} active, {} in the \
                     metadata); lvmd does not shrink mirrors",
                    device.name,
                    device.size(),
                    kernel_table_text(&live),
                    table_text(&device.table)
                )));
            }
            steps.push((i, Step::Reload(dev.devnum, from)));
        }
        for (i, step) in steps {
            let device = plan.devices[i].clone();
            Self::resolved(&device)?;
            let devnum = match step {
                Step::Make => {
                    let (_, devnum) = self.ensure_device(plan, &device)?;
                    tracing::info!(vg = %plan.vg, lv = %plan.lv, device = %device.name,
                        "raid leg device made");
                    devnum
                }
                Step::Reload(devnum, from) => {
                    self.dm.reload(&device)?;
                    tracing::info!(vg = %plan.vg, lv = %plan.lv, device = %device.name,
                        from = %from, to = %device.size(), "raid leg reloaded");
                    devnum
                }
            };
            // The devices above name this one by number (a reload keeps it).
            plan.resolve(i, devnum);
        }
        Ok(renames)
    }

    /// After the raid device of `plan` is reloaded: removes the devices of legs it no
    /// longer has (a leg removed: its sub-LVs' devices, which dm-raid let go with the
    /// reload), then renames the legs `renames` lists to their planned names, each once
    /// its new name is free (lvm2 shifts `_rimage_2` to `_rimage_1` after removing leg
    /// 1: the old leg 1 goes first). A removed leg's device still open is refused
    /// ([`ActivateError::Busy`]); nothing but dm-raid should have held it.
    pub(super) fn finish_raid_legs(
        &self,
        found: &VgOnDisk,
        plan: &LvPlan,
        renames: Vec<(usize, DmDevice)>,
    ) -> Result<()> {
        let planned: Vec<&str> = plan.devices.iter().map(|d| d.uuid.as_str()).collect();
        let prefixes = [
            format!("{}_rmeta_", plan.lv),
            format!("{}_rimage_", plan.lv),
        ];
        let mut gone: Vec<(DmDevice, String)> = Vec::new();
        for dev in self
            .dm
            .list_with_uuid_prefix(&plan::vg_uuid_prefix(&found.vg.id))?
        {
            if planned.contains(&dev.uuid.as_str()) {
                continue;
            }
            let Some((vg, lv)) = super::split_dm_name(&dev.name) else {
                continue;
            };
            if vg == plan.vg && prefixes.iter().any(|p| lv.starts_with(p.as_str())) {
                gone.push((dev, lv));
            }
        }
        // An integrity image before the layers it holds open.
        gone.sort_by_key(|(_, lv)| is_integrity_layer(lv));
        for (dev, lv) in gone {
            let Some(dev) = self.dm.info_by_uuid(&dev.uuid)? else {
                continue;
            };
            let dev = self.wait_closed(dev)?;
            self.remove_active(&plan.vg, &lv, &dev, false)?;
            tracing::info!(vg = %plan.vg, lv = %plan.lv, device = %dev.name,
                "removed leg's device removed");
        }
        let mut pending = renames;
        while !pending.is_empty() {
            let before = pending.len();
            let mut left = Vec::new();
            for (i, dev) in pending {
                let device = &plan.devices[i];
                if self.dm.info_by_name(&device.name)?.is_some() {
                    left.push((i, dev));
                    continue;
                }
                self.dm.rename(&dev, &device.name)?;
                let old = NodePaths::new(&self.dev_dir, &dev.name, None);
                nodes::remove(self.node_mode, &old)?;
                nodes::add(
                    self.node_mode,
                    &self.paths(&plan.vg, &plan.lv, device),
                    dev.devnum,
                )?;
                tracing::info!(vg = %plan.vg, lv = %plan.lv, from = %dev.name,
                    to = %device.name, "raid leg renamed");
            }
            if left.len() == before {
                let names: Vec<String> = left
                    .iter()
                    .map(|(i, d)| format!("{} (for {})", d.name, plan.devices[*i].name))
                    .collect();
                return Err(ActivateError::Unsupported {
                    vg: plan.vg.clone(),
                    lv: plan.lv.clone(),
                    why: format!(
                        "its legs {} cannot take their names: other devices hold them",
                        names.join(", ")
                    ),
                });
            }
            pending = left;
        }
        Ok(())
    }

    /// Whether every device of a multi-device plan (from [`Activator::plan`], which
    /// resolves what is active) has its planned table; `false` also when one is not
    /// active.
    pub(super) fn layers_current(&self, plan: &LvPlan) -> Result<bool> {
        for device in &plan.devices {
            if self.dm.info_by_uuid(&device.uuid)?.is_none() {
                return Ok(false);
            }
            if Self::resolved(device).is_err() {
                return Ok(false);
            }
            if !table_is(&self.dm.table(&device.uuid)?, &device.table) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The active devices of the sub-LVs of `lv` (the legs of a raid LV), in the order
    /// to remove them, after the LV's own device. Refuses ([`ActivateError::Busy`])
    /// when a leg is open by anything but the LV's own device, before anything is
    /// removed.
    pub(super) fn sub_lv_devices(
        &self,
        found: &VgOnDisk,
        lv: &LogicalVolume,
        top_active: bool,
    ) -> Result<Vec<DmDevice>> {
        let mut out = Vec::new();
        for sub in raid::sub_lvs(&found.vg, lv) {
            let uuid = plan::dm_uuid(&found.vg.id, &sub.id, None);
            if let Some(dev) = self.dm.info_by_uuid(&uuid)? {
                // The raid device holds each leg open once. Legs have udev's rules
                // disabled, so only a leg alone can be udev's probe to wait out.
                let held = u32::from(top_active);
                let dev = if held == 0 {
                    self.wait_closed(dev)?
                } else {
                    dev
                };
                if dev.open_count > held {
                    return Err(ActivateError::Busy {
                        device: dev.name.clone(),
                        open_count: dev.open_count - held,
                    });
                }
                out.push(dev);
            }
        }
        // Legs in reverse creation order, as lvm2 removes them.
        out.reverse();
        Ok(out)
    }
}
