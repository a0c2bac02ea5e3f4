//! Which planner an LV goes to: plain LVs ([`super::plan::lv_table`]), raid1
//! ([`super::raid`]), thin ([`super::thin`]) or COW snapshots and their origins
//! ([`super::cow`]). Pure, like the planners.

use super::error::ActivateError;
use super::plan::{check_lengths, dm_name, dm_uuid, lv_table, DevicePlan, LvPlan};
use super::target::DevNum;
use crate::model::{LogicalVolume, VolumeGroup};
use crate::uuid::Uuid;
use std::collections::BTreeMap;

/// Plans the devices that activate `lv_name`. `pv_devices` gives, for each PV uuid found
/// on this host, its device number; a PV the LV needs that is not in it is missing.
pub fn plan_lv(
    vg: &VolumeGroup,
    lv_name: &str,
    pv_devices: &BTreeMap<Uuid, DevNum>,
) -> Result<LvPlan, ActivateError> {
    let lv = find_lv(vg, lv_name)?;
    // Old-style snapshots and their origins: layered (see `super::cow`).
    if let Some(plan) = super::cow::plan_cow(vg, lv, pv_devices)? {
        return Ok(plan);
    }
    if let Some(plan) = super::thin::plan_thin(vg, lv, pv_devices)? {
        return Ok(plan);
    }
    if !lv.is_visible() {
        return Err(ActivateError::HiddenLv {
            vg: vg.name.clone(),
            lv: lv.name.clone(),
        });
    }
    if super::raid::is_raid(lv) {
        return super::raid::plan_raid_lv(vg, lv, pv_devices);
    }
    let table = lv_table(vg, lv, pv_devices)?;
    let name = dm_name(&vg.name, &lv.name, None);
    let uuid = dm_uuid(&vg.id, &lv.id, None);
    check_lengths(&name, &uuid)?;
    let read_only = !lv.status.iter().any(|s| s == "WRITE");
    Ok(LvPlan {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        devices: vec![DevicePlan {
            name,
            uuid,
            table,
            read_only,
            visible: true,
            read_ahead: super::plan::read_ahead(lv),
        }],
    })
}

fn find_lv<'a>(vg: &'a VolumeGroup, lv_name: &str) -> Result<&'a LogicalVolume, ActivateError> {
    vg.lv(lv_name).ok_or_else(|| ActivateError::LvNotFound {
        vg: vg.name.clone(),
        lv: lv_name.to_owned(),
    })
}
