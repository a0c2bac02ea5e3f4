//! The activator's side of LVs made of several devices (raid1 legs, thin pools'
//! layers): checking that a device's planned references are resolved before it loads,
//! comparing every device of a plan with the kernel's, and finding raid legs again for
//! deactivation.

use super::{Activator, DmDevice};
use crate::activate::dm::table_is;
use crate::activate::error::{ActivateError, Result};
use crate::activate::plan::{self, DevicePlan, LvPlan};
use crate::activate::raid;
use crate::activate::target::{unresolved, DevRef};
use crate::model::LogicalVolume;
use crate::store::scan::VgOnDisk;
use std::io;

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
