//! The activator's side of LVs made of several devices (raid1: hidden leg devices under
//! the LV's own): resolving the planned legs to device numbers, and finding the legs
//! again for deactivation.

use super::{Activator, DmDevice};
use crate::activate::error::{ActivateError, Result};
use crate::activate::plan::{self, table_text, DevicePlan, LvPlan};
use crate::activate::raid;
use crate::model::LogicalVolume;
use crate::store::scan::VgOnDisk;
use std::io;

impl Activator {
    /// `device` with every planned leg replaced by the number of its active device
    /// (which the activation made, or found, before this one).
    pub(super) fn resolved(&self, device: &DevicePlan) -> Result<DevicePlan> {
        let mut device = device.clone();
        raid::resolve_table(&mut device.table, |uuid, name| {
            match self.dm.info_by_uuid(uuid)? {
                Some(dev) if dev.live => Ok(dev.devnum),
                _ => Err(ActivateError::Dm {
                    op: "find the active leg",
                    device: name.to_owned(),
                    source: io::Error::from_raw_os_error(libc::ENXIO),
                }),
            }
        })?;
        Ok(device)
    }

    /// Whether every device of a multi-device plan has its planned table (legs
    /// resolved); `false` also when one is not active.
    pub(super) fn layers_current(&self, plan: &LvPlan) -> Result<bool> {
        for device in &plan.devices {
            if self.dm.info_by_uuid(&device.uuid)?.is_none() {
                return Ok(false);
            }
            let Ok(resolved) = self.resolved(device) else {
                return Ok(false);
            };
            let live = super::kernel_table_text(&self.dm.table(&device.uuid)?);
            if live != table_text(&resolved.table) {
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
