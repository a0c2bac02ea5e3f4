//! The activator's side of LVs made of several devices (raid1 legs, thin pools'
//! layers): checking that a device's planned references are resolved before it loads,
//! comparing every device of a plan with the kernel's, and finding raid legs again for
//! deactivation.

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

    /// Grows the legs of an active raid LV to their planned tables (after a grow), in
    /// lvm2's order: libdm's `dm_tree_preload_children` loads each grown leg's table
    /// and resumes it at once, before the raid device above is loaded, suspended and
    /// resumed with the new size (the caller's step). A grown leg is safe to resume
    /// under the live raid device: dm-raid keeps using only the sectors of its old
    /// table until it is reloaded. A leg whose planned table is smaller than its live
    /// one is refused (lvmd never shrinks a mirror; someone else changed it), and so is
    /// a leg that is not active, before anything is reloaded, but for the integrity
    /// layers (`_iorig`, `_imeta`) of a leg that was an error device (degraded, then
    /// repaired): those are made, in plan order, before the image over them is loaded.
    pub(super) fn reload_raid_legs(&self, plan: &mut LvPlan) -> Result<()> {
        enum Step {
            Make,
            Reload(crate::activate::target::DevNum, Sectors),
        }
        let top = plan.devices.len() - 1;
        let mut steps = Vec::new();
        for (i, device) in plan.devices[..top].iter().enumerate() {
            let unsupported = |why: String| ActivateError::Unsupported {
                vg: plan.vg.clone(),
                lv: plan.lv.clone(),
                why,
            };
            let Some(dev) = self.dm.info_by_uuid(&device.uuid)? else {
                if is_integrity_layer(&device.name) {
                    steps.push((i, Step::Make));
                    continue;
                }
                return Err(unsupported(format!(
                    "its raid leg {} is not active; lvmd reloads only whole mirrors \
                     (deactivate and activate it)",
                    device.name
                )));
            };
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
                        "raid leg layer made");
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
