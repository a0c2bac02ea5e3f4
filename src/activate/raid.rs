//! raid1 LVs as lvm2 activates them: one hidden linear device per sub-LV (`<lv>_rmeta_N`,
//! `<lv>_rimage_N`), then the LV's own device with the kernel's `raid` target (dm-raid,
//! [`super::target::Raid`]) over them.
//!
//! The raid table names its legs by device number, which a plan cannot know before the
//! legs exist: a leg is a planned device of the same plan ([`DevRef::Planned`]) until
//! the activator resolves it ([`LvPlan::resolve`]) as it makes or finds the legs.

use super::error::ActivateError;
use super::plan::{check_lengths, dm_name, dm_uuid, lv_table, planned, DevicePlan, LvPlan};
use super::seg_fields::Raid1Fields;
use super::target::{DevNum, Error, Raid, RaidLeg, TableLine, Target};
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

/// The sub-LVs of a raid LV (metadata and image of each leg, in leg order).
pub fn sub_lvs<'a>(vg: &'a VolumeGroup, lv: &LogicalVolume) -> Vec<&'a LogicalVolume> {
    let mut out = Vec::new();
    for seg in &lv.segments {
        if let SegmentKind::Raid1 { legs, .. } = &seg.kind {
            for (meta, image) in legs {
                out.extend(vg.lv(meta));
                out.extend(vg.lv(image));
            }
        }
    }
    out
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
        let mut tables = Vec::with_capacity(2);
        let mut leg_missing = None;
        for sub in &subs {
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
        if let Some(e) = leg_missing {
            // lvm2's degraded activation (activation_mode "degraded", its default):
            // each sub-LV of a leg on a missing PV becomes an `error` device of its
            // length (dev_manager's missing_stripe_filler), so dm-raid fails that leg
            // (status `D`) and serves the array from the others.
            for (sub, table) in subs.iter().zip(tables.iter_mut()) {
                *table = vec![TableLine {
                    start: Sectors(0),
                    length: vg.extent_size.span(sub.extents()),
                    target: Target::Error(Error),
                }];
            }
            first_missing.get_or_insert(e);
        } else {
            whole_legs += 1;
        }
        let mut leg = Vec::with_capacity(2);
        for (sub, table) in subs.iter().zip(tables) {
            let name = dm_name(&vg.name, &sub.name, None);
            let uuid = dm_uuid(&vg.id, &sub.id, None);
            check_lengths(&name, &uuid)?;
            devices.push(DevicePlan {
                name,
                uuid,
                table,
                read_only: !sub.status.iter().any(|s| s == "WRITE"),
                visible: false,
            });
            leg.push(Some(planned(&devices, devices.len() - 1)));
        }
        // lvm2 reads the per-leg flags off the image sub-LV.
        let image_lv = vg.lv(image).expect("checked above");
        if image_lv.status.iter().any(|s| s == "REBUILD") {
            rebuild.push(i);
        }
        if image_lv.status.iter().any(|s| s == "WRITEMOSTLY") {
            write_mostly.push(i);
        }
        let data = leg.pop().expect("two devices");
        let meta = leg.pop().expect("two devices");
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
