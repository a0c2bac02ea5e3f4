//! raid1 LVs as lvm2 activates them: one hidden linear device per sub-LV (`<lv>_rmeta_N`,
//! `<lv>_rimage_N`), then the LV's own device with the kernel's `raid` target (dm-raid,
//! [`super::target::Raid`]) over them.
//!
//! The raid table names its legs by device number, which a plan cannot know before the
//! legs exist: a leg is a planned device of the same plan ([`DevRef::Planned`]) until
//! the activator resolves it ([`LvPlan::resolve`]) as it makes or finds the legs.

use super::error::ActivateError;
use super::plan::{check_lengths, dm_name, dm_uuid, lv_table, planned, DevicePlan, LvPlan};
use super::seg_fields::{IntegrityFields, Raid1Fields};
use super::target::{DevNum, Error, Integrity, Raid, RaidLeg, TableLine, Target};
use crate::model::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::units::Sectors;
use crate::uuid::Uuid;
use std::collections::BTreeMap;

/// Whether `lv` is a raid LV this module plans (its segments are raid1).
pub fn is_raid(lv: &LogicalVolume) -> bool {
    lv.segments
        .iter()
        .any(|s| matches!(s.kind, SegmentKind::Raid1 { .. }))
}

/// The sub-LVs of a raid LV in the order their devices are made (metadata and image of
/// each leg, in leg order; an image's integrity data and metadata sub-LVs before it).
pub fn sub_lvs<'a>(vg: &'a VolumeGroup, lv: &LogicalVolume) -> Vec<&'a LogicalVolume> {
    let mut out = Vec::new();
    for seg in &lv.segments {
        if let SegmentKind::Raid1 { legs, .. } = &seg.kind {
            for (meta, image) in legs {
                out.extend(vg.lv(meta));
                let Some(image) = vg.lv(image) else { continue };
                if let Ok(Some((_, origin, imeta))) = integrity_layer(vg, image) {
                    out.extend([imeta, origin]);
                }
                out.push(image);
            }
        }
    }
    out
}

/// The integrity layer of raid image `image` (lvm2's `--raidintegrity`): its fields,
/// data sub-LV (`_iorig`) and metadata sub-LV (`_imeta`); `None` for a plain image.
fn integrity_layer<'a>(
    vg: &'a VolumeGroup,
    image: &LogicalVolume,
) -> Result<Option<(IntegrityFields, &'a LogicalVolume, &'a LogicalVolume)>, String> {
    let body = match image.segments.as_slice() {
        [seg] => match &seg.kind {
            SegmentKind::Other { type_name, body } if type_name == "integrity" => body,
            _ => return Ok(None),
        },
        segs if segs.iter().any(|s| s.kind.type_name() == "integrity") => {
            return Err(format!(
                "its raid image {} has {} segments, one of them integrity; lvm2 makes one",
                image.name,
                segs.len()
            ))
        }
        _ => return Ok(None),
    };
    let f = IntegrityFields::of(body).map_err(|e| format!("raid image {}: {e}", image.name))?;
    let sub = |name: &str| {
        vg.lv(name).filter(|l| l.is_plain()).ok_or_else(|| {
            format!(
                "raid image {}: its integrity sub-LV {name} is not a linear LV of the VG",
                image.name
            )
        })
    };
    let (origin, meta) = (sub(&f.origin)?, sub(&f.meta_dev)?);
    Ok(Some((f, origin, meta)))
}

/// The devices lvm2 makes for the raid1 LV `lv`: each sub-LV's linear device (in the
/// order of the `raids` list), then the LV's own raid device.
pub fn plan_raid_lv(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    pv_devices: &BTreeMap<Uuid, DevNum>,
) -> Result<LvPlan, ActivateError> {
    let invalid = |why: String| ActivateError::InvalidMetadata {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        why,
    };
    let unsupported = |why: String| ActivateError::Unsupported {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        why,
    };
    let [seg] = lv.segments.as_slice() else {
        return Err(unsupported(format!(
            "it is a raid1 LV of {} segments; lvm2 makes them with one",
            lv.segments.len()
        )));
    };
    let SegmentKind::Raid1 { region_size, legs } = &seg.kind else {
        return Err(unsupported(format!(
            "it mixes raid1 with {} segments",
            seg.kind.type_name()
        )));
    };
    let region_size =
        region_size.ok_or_else(|| invalid("its raid1 segment has no region_size".into()))?;
    if legs.is_empty() {
        return Err(invalid("its raid1 segment has no legs".into()));
    }
    let fields = Raid1Fields::of(seg).map_err(invalid)?;
    if fields.reshaping {
        return Err(unsupported(
            "its raid1 segment has a data_offset (a reshape); lvmd does not activate those".into(),
        ));
    }
    let nonzero = |v: Option<u64>| v.filter(|&x| x != 0);

    let mut devices = Vec::with_capacity(2 * legs.len() + 1);
    let mut raid_legs = Vec::with_capacity(legs.len());
    let mut rebuild = Vec::new();
    let mut write_mostly = Vec::new();
    // The first leg found on a missing PV: the error when no leg is whole.
    let mut first_missing = None;
    let mut whole_legs = 0;
    for (i, (meta, image)) in legs.iter().enumerate() {
        let mut subs = Vec::with_capacity(2);
        for sub_name in [meta, image] {
            let sub = vg.lv(sub_name).ok_or_else(|| {
                invalid(format!("its raid leg {sub_name} is not an LV of the VG"))
            })?;
            if sub
                .status
                .iter()
                .any(|s| s.starts_with("RESHAPE") || s.starts_with("LV_RESHAPE"))
            {
                return Err(unsupported(format!(
                    "its leg {sub_name} is being reshaped; lvmd does not activate those"
                )));
            }
            subs.push(sub);
        }
        // lvm2's --raidintegrity: the image is dm-integrity over two sub-LVs of its own.
        let layer = integrity_layer(vg, subs[1]).map_err(invalid)?;
        // The sub-LVs with tables of their own: rmeta and rimage, or rmeta and the
        // integrity layer's metadata and data (the image's table made from them below).
        let mut linear = vec![subs[0]];
        match &layer {
            // lvm2's order (its device numbers then come out the same).
            Some((_, origin, imeta)) => linear.extend([*imeta, *origin]),
            None => linear.push(subs[1]),
        }
        let mut tables = Vec::with_capacity(linear.len());
        let mut leg_missing = None;
        for sub in &linear {
            match lv_table(vg, sub, pv_devices) {
                Ok(t) => tables.push(t),
                // Name the LV the user asked for; the leg is in the PV's place.
                Err(ActivateError::MissingPv { vg, pv, uuid, .. }) => {
                    leg_missing.get_or_insert(ActivateError::MissingPv {
                        vg,
                        lv: lv.name.clone(),
                        pv,
                        uuid,
                    });
                    tables.push(Vec::new());
                }
                Err(other) => return Err(other),
            }
        }
        let error_table = |sub: &LogicalVolume| {
            vec![TableLine {
                start: Sectors(0),
                length: vg.extent_size.span(sub.extents()),
                target: Target::Error(Error),
            }]
        };
        let push = |devices: &mut Vec<DevicePlan>, sub: &LogicalVolume, table| {
            let name = dm_name(&vg.name, &sub.name, None);
            let uuid = dm_uuid(&vg.id, &sub.id, None);
            check_lengths(&name, &uuid)?;
            devices.push(DevicePlan {
                name,
                uuid,
                table,
                read_only: !sub.status.iter().any(|s| s == "WRITE"),
                visible: false,
                read_ahead: super::plan::read_ahead(sub),
            });
            Ok::<_, ActivateError>(planned(devices, devices.len() - 1))
        };
        let (meta_ref, data_ref) = if let Some(e) = leg_missing {
            // lvm2's degraded activation (activation_mode "degraded", its default):
            // each sub-LV of a leg on a missing PV becomes an `error` device of its
            // length (dev_manager's missing_stripe_filler), so dm-raid fails that leg
            // (status `D`) and serves the array from the others. An integrity layer
            // over error devices could not even read its superblock: the image itself
            // is the error device.
            first_missing.get_or_insert(e);
            (
                push(&mut devices, subs[0], error_table(subs[0]))?,
                push(&mut devices, subs[1], error_table(subs[1]))?,
            )
        } else {
            whole_legs += 1;
            let mut tables = tables.into_iter();
            let meta_ref = push(&mut devices, subs[0], tables.next().expect("rmeta"))?;
            let data_ref = match &layer {
                None => push(&mut devices, subs[1], tables.next().expect("rimage"))?,
                Some((f, origin, imeta)) => {
                    let meta = push(&mut devices, imeta, tables.next().expect("imeta"))?;
                    let data = push(&mut devices, origin, tables.next().expect("iorig"))?;
                    let table = vec![TableLine {
                        start: Sectors(0),
                        length: Sectors(f.data_sectors),
                        target: Target::Integrity(Integrity {
                            device: data,
                            offset: Sectors(0),
                            tag_size: f.tag_size,
                            mode: f.mode,
                            block_size: f.block_size,
                            internal_hash: f.internal_hash.clone(),
                            meta_device: Some(meta),
                            recalculate: f.recalculate,
                            // libdm always passes it (the kernel then keeps it in the
                            // superblock it formats).
                            fix_padding: true,
                            allow_discards: f.allow_discards,
                            tuning: f.tuning.clone(),
                        }),
                    }];
                    push(&mut devices, subs[1], table)?
                }
            };
            (meta_ref, data_ref)
        };
        let leg = [Some(meta_ref), Some(data_ref)];
        // lvm2 reads the per-leg flags off the image sub-LV.
        let image_lv = vg.lv(image).expect("checked above");
        if image_lv.status.iter().any(|s| s == "REBUILD") {
            rebuild.push(i);
        }
        if image_lv.status.iter().any(|s| s == "WRITEMOSTLY") {
            write_mostly.push(i);
        }
        let [meta, data] = leg;
        raid_legs.push(RaidLeg { meta, data });
    }
    let raid = Raid {
        level: "raid1".into(),
        chunk: Sectors(fields.stripe_size),
        rebuild,
        min_recovery_rate: nonzero(fields.min_recovery_rate),
        max_recovery_rate: nonzero(fields.max_recovery_rate),
        write_mostly,
        max_write_behind: nonzero(fields.writebehind),
        region_size: Some(region_size).filter(|r| r.0 != 0),
        legs: raid_legs,
    };
    if whole_legs == 0 {
        // No copy left: lvm2 refuses it too (only `--activationmode partial` would
        // make an LV that fails all I/O).
        return Err(first_missing.expect("a leg is missing when none is whole"));
    }
    if raid.region_size.is_none() {
        return Err(invalid("its raid1 segment has region_size 0".into()));
    }
    let extent = vg.extent_size;
    let name = dm_name(&vg.name, &lv.name, None);
    let uuid = dm_uuid(&vg.id, &lv.id, None);
    check_lengths(&name, &uuid)?;
    devices.push(DevicePlan {
        name,
        uuid,
        table: vec![TableLine {
            start: extent.span(seg.start_extent),
            length: extent.span(seg.extent_count),
            target: Target::Raid(raid),
        }],
        read_only: !lv.status.iter().any(|s| s == "WRITE"),
        visible: true,
        read_ahead: super::plan::read_ahead(lv),
    });
    Ok(LvPlan {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        devices,
    })
}

#[cfg(test)]
#[path = "raid_tests.rs"]
mod tests;
