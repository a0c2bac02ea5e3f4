//! Thin provisioning: activating the thin pools and thin LVs that lvm2 made, with the
//! devices `lvchange -ay` makes (checked against lvm2 2.03 in the VM):
//!
//! - a thin LV `vg/t1` of pool `vg/pool`: `vg-pool_tmeta` and `vg-pool_tdata` (linear
//!   over the hidden sub-LVs, uuid suffixes `-tmeta`, `-tdata`), `vg-pool-tpool` (the
//!   `thin-pool` target, uuid suffix `-tpool`) and `vg-t1` (`thin <tpool> <device id>`);
//! - the pool itself, once it has thin LVs (transaction id > 0): the same three layers
//!   and `vg-pool`, a read-only `linear` over the whole `-tpool` (uuid suffix `-pool`);
//! - a pool without any thin LV yet (transaction id 0): the layers and the thin-pool
//!   target itself as `vg-pool` (uuid suffix `-tpool`, with `/dev/vg/pool`).
//!
//! Only activation: lvmd sends no thin-pool messages (`create_thin`, `delete`, ...), so
//! it neither creates nor removes thin volumes, and refuses a pool whose metadata has
//! messages pending. Deactivating the last user of a pool removes the pool's layers too,
//! as lvm2 does; a pool active on its own (`vg-pool`) keeps them.
//!
//! The devices of one plan name each other by device number, which exists only once
//! the lower device is made: the planner writes [`DevNum::planned`] stand-ins, and the
//! activator puts the real numbers in ([`LvPlan::resolve`]) as it goes, bottom-up.

use super::activator::Activator;
use super::dm::DmControl;
use super::error::{ActivateError, Result};
use super::plan::{
    check_lengths, dm_name, dm_uuid, lv_table, DevNum, DevicePlan, LvPlan, TableLine, Target,
};
use crate::model::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::store::scan::VgOnDisk;
use crate::units::Sectors;
use crate::uuid::Uuid;
use std::collections::BTreeMap;
use tracing::info;

/// No real device has this major (Linux majors have 12 bits).
const PLANNED_MAJOR: u32 = u32::MAX;

impl DevNum {
    /// A stand-in for the number of device `index` of the same plan, not made yet.
    pub fn planned(index: usize) -> DevNum {
        DevNum {
            major: PLANNED_MAJOR,
            minor: index as u32,
        }
    }

    /// Which device of its plan a stand-in names; `None` for a real device number.
    pub fn planned_index(self) -> Option<usize> {
        (self.major == PLANNED_MAJOR).then_some(self.minor as usize)
    }
}

fn devices_mut(target: &mut Target) -> Vec<&mut DevNum> {
    match target {
        Target::Linear { device, .. } => vec![device],
        Target::Striped { stripes, .. } => stripes.iter_mut().map(|a| &mut a.device).collect(),
        // raid legs are resolved by their uuids instead (`raid::resolve_table`).
        Target::Zero | Target::Error | Target::Raid(_) => Vec::new(),
        Target::ThinPool { metadata, data, .. } => vec![metadata, data],
        Target::Thin { pool, .. } => vec![pool],
    }
}

impl LvPlan {
    /// Puts the device number that device `index` got into every table naming it.
    pub fn resolve(&mut self, index: usize, devnum: DevNum) {
        let stand_in = DevNum::planned(index);
        for device in &mut self.devices {
            for line in &mut device.table {
                for n in devices_mut(&mut line.target) {
                    if *n == stand_in {
                        *n = devnum;
                    }
                }
            }
        }
    }
}

/// The plan for a thin pool or thin LV; `None` when `lv` is neither.
pub(super) fn plan_thin(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    pv_devices: &BTreeMap<Uuid, DevNum>,
) -> Result<Option<LvPlan>> {
    let Some(first) = lv.segments.first() else {
        return Ok(None);
    };
    if !matches!(
        first.kind,
        SegmentKind::ThinPool { .. } | SegmentKind::Thin { .. }
    ) {
        return Ok(None);
    }
    if lv.segments.len() != 1 {
        return Err(invalid(
            vg,
            lv,
            "a thin pool or thin LV has exactly one segment",
        ));
    }
    if !lv.is_visible() {
        return Err(ActivateError::HiddenLv {
            vg: vg.name.clone(),
            lv: lv.name.clone(),
        });
    }
    let size = vg.extent_size.span(first.extent_count);
    let devices = match &first.kind {
        SegmentKind::ThinPool { transaction_id, .. } => {
            if *transaction_id == 0 {
                // A pool no thin LV ever used: lvm2 maps the pool target itself, as a
                // visible LV (with /dev/VG/LV).
                let mut devices = pool_layers(vg, lv, pv_devices, None)?;
                devices[2].visible = true;
                devices
            } else {
                let mut devices = pool_layers(vg, lv, pv_devices, Some("tpool"))?;
                devices.push(DevicePlan {
                    name: dm_name(&vg.name, &lv.name, None),
                    uuid: dm_uuid(&vg.id, &lv.id, Some("pool")),
                    table: vec![TableLine {
                        start: Sectors::ZERO,
                        length: size,
                        target: Target::Linear {
                            device: DevNum::planned(2),
                            offset: Sectors::ZERO,
                        },
                    }],
                    read_only: true,
                    visible: false,
                });
                devices
            }
        }
        SegmentKind::Thin {
            thin_pool,
            device_id,
            ..
        } => {
            for key in ["external_origin", "merge"] {
                if first.extra.get(key).is_some() {
                    return Err(ActivateError::Unsupported {
                        vg: vg.name.clone(),
                        lv: lv.name.clone(),
                        why: format!("its thin segment has {key}, which lvmd does not map"),
                    });
                }
            }
            let pool = vg
                .lv(thin_pool)
                .filter(|p| {
                    p.segments
                        .first()
                        .is_some_and(|s| matches!(s.kind, SegmentKind::ThinPool { .. }))
                })
                .ok_or_else(|| {
                    invalid(vg, lv, &format!("its pool {thin_pool} is not a thin pool"))
                })?;
            let mut devices = pool_layers(vg, pool, pv_devices, Some("tpool"))?;
            devices.push(DevicePlan {
                name: dm_name(&vg.name, &lv.name, None),
                uuid: dm_uuid(&vg.id, &lv.id, None),
                table: vec![TableLine {
                    start: Sectors::ZERO,
                    length: size,
                    target: Target::Thin {
                        pool: DevNum::planned(2),
                        device_id: *device_id,
                    },
                }],
                read_only: !lv.status.iter().any(|s| s == "WRITE"),
                visible: true,
            });
            devices
        }
        _ => unreachable!("checked above"),
    };
    for d in &devices {
        check_lengths(&d.name, &d.uuid)?;
    }
    Ok(Some(LvPlan {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        devices,
    }))
}

fn invalid(vg: &VolumeGroup, lv: &LogicalVolume, why: &str) -> ActivateError {
    ActivateError::InvalidMetadata {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        why: why.to_owned(),
    }
}

/// `_tmeta`, `_tdata` and the pool target of `pool`, in that order (indexes 0, 1, 2),
/// the pool target named with `layer` (`-tpool`) or as the pool itself.
fn pool_layers(
    vg: &VolumeGroup,
    pool: &LogicalVolume,
    pv_devices: &BTreeMap<Uuid, DevNum>,
    layer: Option<&str>,
) -> Result<Vec<DevicePlan>> {
    let seg = &pool.segments[0];
    let SegmentKind::ThinPool {
        metadata,
        pool: data,
        chunk_size,
        ..
    } = &seg.kind
    else {
        return Err(invalid(vg, pool, "not a thin pool"));
    };
    if seg.extra.sections().next().is_some() {
        return Err(ActivateError::Unsupported {
            vg: vg.name.clone(),
            lv: pool.name.clone(),
            why: "its metadata has thin-pool messages pending (a thin LV being created or \
                  removed); lvmd sends no messages: activate it once with lvm2"
                .into(),
        });
    }
    if chunk_size.0 == 0 {
        return Err(invalid(vg, pool, "chunk_size 0"));
    }
    let sub = |name: &str, suffix: &str| -> Result<DevicePlan> {
        let sub_lv = vg
            .lv(name)
            .ok_or_else(|| invalid(vg, pool, &format!("its {suffix} LV {name} is missing")))?;
        Ok(DevicePlan {
            name: dm_name(&vg.name, &sub_lv.name, None),
            uuid: dm_uuid(&vg.id, &sub_lv.id, Some(suffix)),
            table: lv_table(vg, sub_lv, pv_devices)?,
            read_only: false,
            visible: false,
        })
    };
    let tmeta = sub(metadata, "tmeta")?;
    let tdata = sub(data, "tdata")?;
    let features = pool_features(vg, pool)?;
    let tpool = DevicePlan {
        name: dm_name(&vg.name, &pool.name, layer),
        uuid: dm_uuid(&vg.id, &pool.id, Some("tpool")),
        table: vec![TableLine {
            start: Sectors::ZERO,
            length: vg.extent_size.span(seg.extent_count),
            target: Target::ThinPool {
                metadata: DevNum::planned(0),
                data: DevNum::planned(1),
                block_size: *chunk_size,
                // lvm2 sets a low water mark only when thin_pool_autoextend_threshold
                // is below 100; its default (100) gives 0, which is what lvmd loads.
                low_water_mark: 0,
                features,
            },
        }],
        read_only: false,
        visible: false,
    };
    Ok(vec![tmeta, tdata, tpool])
}

/// The thin-pool feature arguments lvm2 loads for the pool's metadata, in the kernel's
/// order (the order `dmsetup table` prints them).
fn pool_features(vg: &VolumeGroup, pool: &LogicalVolume) -> Result<Vec<String>> {
    let seg = &pool.segments[0];
    let mut features = Vec::new();
    // lvm2: zero_new_blocks absent means 0; discards absent means "ignore".
    if seg.extra.get_int("zero_new_blocks").unwrap_or(0) == 0 {
        features.push("skip_block_zeroing".to_owned());
    }
    match seg.extra.get_str("discards").unwrap_or("ignore") {
        "ignore" => features.push("ignore_discard".to_owned()),
        "nopassdown" => features.push("no_discard_passdown".to_owned()),
        "passdown" => {}
        other => return Err(invalid(vg, pool, &format!("unknown discards {other:?}"))),
    }
    if pool.flags.iter().any(|f| f == "ERROR_WHEN_FULL") {
        features.push("error_if_no_space".to_owned());
    }
    Ok(features)
}

/// After the pool target is up (made now or found active): its transaction id in the
/// kernel must be the metadata's, or lvmd would present thin volumes the pool does not
/// have (lvm2 checks the same). `Ok` for devices that are not a thin pool.
pub(super) fn check_transaction(
    dm: &DmControl,
    vg: &VolumeGroup,
    plan: &LvPlan,
    device: &DevicePlan,
) -> Result<()> {
    if !device
        .table
        .iter()
        .any(|l| matches!(l.target, Target::ThinPool { .. }))
    {
        return Ok(());
    }
    let Some(pool) = pool_of(vg, &plan.lv) else {
        return Ok(());
    };
    let SegmentKind::ThinPool { transaction_id, .. } = &pool.segments[0].kind else {
        return Ok(());
    };
    let status = dm.status(&device.uuid)?;
    let params = status.first().map(|l| l.3.as_str()).unwrap_or("");
    let kernel = params
        .split_whitespace()
        .next()
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| ActivateError::Unsupported {
            vg: vg.name.clone(),
            lv: pool.name.clone(),
            why: format!("its pool device {} reports {params:?}", device.name),
        })?;
    if kernel != *transaction_id {
        return Err(ActivateError::ThinTransaction {
            vg: vg.name.clone(),
            pool: pool.name.clone(),
            kernel,
            metadata: *transaction_id,
        });
    }
    Ok(())
}

/// The uuid of the device that makes a thin pool active as itself (what `lvs` reports
/// as the pool's state): `-pool`, or `-tpool` for a pool no thin LV used yet. `None`
/// for other LVs, whose own device has the LV's plain uuid.
pub(super) fn own_uuid(vg: &VolumeGroup, lv: &LogicalVolume) -> Option<String> {
    match &lv.segments.first()?.kind {
        SegmentKind::ThinPool { transaction_id, .. } => Some(dm_uuid(
            &vg.id,
            &lv.id,
            Some(if *transaction_id == 0 {
                "tpool"
            } else {
                "pool"
            }),
        )),
        _ => None,
    }
}

/// The pool `lv` is or uses.
fn pool_of<'a>(vg: &'a VolumeGroup, lv: &str) -> Option<&'a LogicalVolume> {
    let model = vg.lv(lv)?;
    match &model.segments.first()?.kind {
        SegmentKind::ThinPool { .. } => Some(model),
        SegmentKind::Thin { thin_pool, .. } => vg.lv(thin_pool),
        _ => None,
    }
}

/// Deactivates a thin LV or thin pool: its own device, then the pool's layers if nothing
/// holds the pool target open any more (no other thin LV, no `vg-pool`), as lvm2 does.
/// `None` when `lv` is neither a thin LV nor a pool.
pub(super) fn deactivate(
    act: &Activator,
    found: &VgOnDisk,
    lv: &LogicalVolume,
) -> Result<Option<bool>> {
    let vg = &found.vg;
    let Some(pool) = pool_of(vg, &lv.name) else {
        return Ok(None);
    };
    let is_pool = pool.name == lv.name;
    let dm = act.dm();
    let mut removed = false;
    // The LV's own device: the thin volume, or the pool's public device.
    let own = own_uuid(vg, lv).unwrap_or_else(|| dm_uuid(&vg.id, &lv.id, None));
    if let Some(dev) = dm.info_by_uuid(&own)? {
        let dev = act.wait_closed(dev)?;
        let visible = !is_pool || own.ends_with("-tpool");
        act.remove_active(&vg.name, &lv.name, &dev, visible)?;
        removed = true;
    }
    let own_removed = removed;
    // The pool target, unless someone still uses it.
    let tpool = dm_uuid(&vg.id, &pool.id, Some("tpool"));
    if let Some(dev) = dm.info_by_uuid(&tpool)? {
        if dev.open_count > 0 {
            // Thin LVs still use it. A pool held only by thin LVs is not active as
            // itself (lvm2's `lvs` says so, and `lvchange -an` of it does nothing).
            return Ok(Some(removed));
        }
        act.remove_active(&vg.name, &pool.name, &dev, false)?;
        removed = true;
    }
    let SegmentKind::ThinPool {
        metadata,
        pool: data,
        ..
    } = &pool.segments[0].kind
    else {
        return Ok(Some(removed));
    };
    for (name, suffix) in [(metadata, "tmeta"), (data, "tdata")] {
        let Some(sub) = vg.lv(name) else { continue };
        if let Some(dev) = dm.info_by_uuid(&dm_uuid(&vg.id, &sub.id, Some(suffix)))? {
            if dev.open_count == 0 {
                act.remove_active(&vg.name, &sub.name, &dev, false)?;
            }
        }
    }
    if removed {
        info!(vg = %vg.name, lv = %lv.name, "deactivated");
    }
    // A thin LV counts as deactivated only if its own device was there.
    Ok(Some(if is_pool { removed } else { own_removed }))
}

#[cfg(test)]
#[path = "thin_tests.rs"]
mod tests;
