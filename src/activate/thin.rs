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
//! Thin-pool messages (`create_thin`, `delete`, `set_transaction_id`) that the metadata
//! records for a thin LV being created or removed are planned nowhere here: the
//! activator sends them once the pool target is up, before any thin device of it
//! (`activator_thin::check_transaction`, [`crate::lvm::thin::catchup`]). Deactivating the last user of a pool removes the pool's layers too,
//! as lvm2 does; a pool active on its own (`vg-pool`) keeps them.
//!
//! The devices of one plan name each other by device number, which exists only once
//! the lower device is made: the planner names them as planned devices of the plan
//! ([`super::target::DevRef::Planned`]), and the activator puts the real numbers in
//! ([`LvPlan::resolve`]) as it goes, bottom-up. Pure: what needs the kernel (the
//! transaction check, deactivation) is the activator's (`activator_thin.rs`).

use super::error::{ActivateError, Result};
use super::plan::{check_lengths, dm_name, dm_uuid, lv_table, planned, DevicePlan, LvPlan};
use super::seg_fields::{thin_unmapped_key, ThinPoolFields};
use super::target::{DevNum, Linear, TableLine, Target, Thin, ThinPool, ThinPoolFeatures};
use crate::model::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::units::Sectors;
use crate::uuid::Uuid;
use devicemapper::{DataBlocks, ThinDevId};
use std::collections::BTreeMap;

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
                        target: Target::Linear(Linear {
                            device: planned(&devices, 2),
                            offset: Sectors::ZERO,
                        }),
                    }],
                    read_only: true,
                    visible: false,
                    read_ahead: super::plan::read_ahead(lv),
                });
                devices
            }
        }
        SegmentKind::Thin {
            thin_pool,
            device_id,
            ..
        } => {
            if let Some(key) = thin_unmapped_key(first) {
                return Err(ActivateError::Unsupported {
                    vg: vg.name.clone(),
                    lv: lv.name.clone(),
                    why: format!("its thin segment has {key}, which lvmd does not map"),
                });
            }
            let device_id = ThinDevId::new_u64(*device_id).map_err(|_| {
                invalid(
                    vg,
                    lv,
                    &format!("its device_id {device_id} is past the kernel's 24 bits"),
                )
            })?;
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
                    target: Target::Thin(Thin {
                        pool: planned(&devices, 2),
                        device_id,
                        external_origin: None,
                    }),
                }],
                read_only: !lv.status.iter().any(|s| s == "WRITE"),
                visible: true,
                read_ahead: super::plan::read_ahead(lv),
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
pub(super) fn pool_layers(
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
    let fields = ThinPoolFields::of(seg).map_err(|why| invalid(vg, pool, &why))?;
    // Messages recorded (a thin LV being created or removed) are sent once the pool
    // target is up, before any thin device of it (activator_thin::check_transaction).
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
            read_ahead: super::plan::read_ahead(sub_lv),
        })
    };
    let mut devices = vec![sub(metadata, "tmeta")?, sub(data, "tdata")?];
    let features = ThinPoolFeatures {
        zero_new_blocks: fields.zero_new_blocks,
        discards: fields.discards,
        read_only: false,
        error_if_no_space: pool.flags.iter().any(|f| f == "ERROR_WHEN_FULL"),
    };
    let tpool = DevicePlan {
        name: dm_name(&vg.name, &pool.name, layer),
        uuid: dm_uuid(&vg.id, &pool.id, Some("tpool")),
        table: vec![TableLine {
            start: Sectors::ZERO,
            length: vg.extent_size.span(seg.extent_count),
            target: Target::ThinPool(ThinPool {
                metadata: planned(&devices, 0),
                data: planned(&devices, 1),
                block_size: *chunk_size,
                // lvm2 sets a low water mark only when thin_pool_autoextend_threshold
                // is below 100; its default (100) gives 0, which is what lvmd loads.
                low_water_mark: DataBlocks(0),
                features,
            }),
        }],
        read_only: false,
        visible: false,
        read_ahead: None,
    };
    devices.push(tpool);
    Ok(devices)
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
pub(super) fn pool_of<'a>(vg: &'a VolumeGroup, lv: &str) -> Option<&'a LogicalVolume> {
    let model = vg.lv(lv)?;
    match &model.segments.first()?.kind {
        SegmentKind::ThinPool { .. } => Some(model),
        SegmentKind::Thin { thin_pool, .. } => vg.lv(thin_pool),
        _ => None,
    }
}

#[cfg(test)]
#[path = "thin_tests.rs"]
mod tests;
