//! raid1 LVs as lvm2 activates them: one hidden linear device per sub-LV (`<lv>_rmeta_N`,
//! `<lv>_rimage_N`), then the LV's own device with the kernel's `raid` target (dm-raid)
//! over them. The table text is lvm2's (`_raid_add_target_line` and libdm's
//! `_raid_emit_segment_line`, in the parameter order of dm-raid >= 1.11, which is also
//! the order the kernel prints back).
//!
//! The raid table names its legs by device number, which a plan cannot know before the
//! legs exist: a leg is [`LegDev::Planned`] until the activator resolves it
//! ([`resolve_table`]) against the devices it just created or found.

use super::plan::{
    check_lengths, dm_name, dm_uuid, lv_table, DevNum, DevicePlan, LvPlan, TableLine, Target,
};
use super::ActivateError;
use crate::format::text::Value;
use crate::model::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::units::Sectors;
use crate::uuid::Uuid;
use std::collections::BTreeMap;
use std::fmt;

/// One device of a raid leg in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegDev {
    /// A device this plan makes (or finds active), by device-mapper uuid and name.
    Planned { uuid: String, name: String },
    /// Resolved to its device number, as the kernel takes and prints it.
    Device(DevNum),
    /// `-`: no device (a leg without metadata area, or a missing one).
    Missing,
}

impl fmt::Display for LegDev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Only shown in errors: the activator resolves before loading.
            LegDev::Planned { name, .. } => write!(f, "/dev/mapper/{name}"),
            LegDev::Device(d) => write!(f, "{d}"),
            LegDev::Missing => f.write_str("-"),
        }
    }
}

/// One metadata/data pair of a raid set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaidLeg {
    pub meta: LegDev,
    pub data: LegDev,
}

/// The parameters of a `raid` table line (dm-raid), as far as lvm2 uses them for raid1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaidTarget {
    /// The kernel's raid type: `raid1`.
    pub level: String,
    /// The mandatory chunk size (lvm2 passes the segment's stripe_size: 0 for raid1).
    pub chunk: Sectors,
    /// Leg indexes to rebuild (sub-LVs flagged `REBUILD`).
    pub rebuild: Vec<usize>,
    pub min_recovery_rate: Option<u64>,
    pub max_recovery_rate: Option<u64>,
    /// Leg indexes flagged `WRITEMOSTLY`.
    pub write_mostly: Vec<usize>,
    pub max_write_behind: Option<u64>,
    pub region_size: Option<Sectors>,
    pub legs: Vec<RaidLeg>,
}

impl RaidTarget {
    /// `<level> <#params> <chunk> [rebuild N].. [min_recovery_rate R] [max_recovery_rate R]
    /// [write_mostly N].. [max_write_behind N] [region_size S] <#legs> <meta> <data>..`
    pub fn params(&self) -> String {
        let mut opts: Vec<String> = Vec::new();
        for i in &self.rebuild {
            opts.push(format!("rebuild {i}"));
        }
        if let Some(r) = self.min_recovery_rate {
            opts.push(format!("min_recovery_rate {r}"));
        }
        if let Some(r) = self.max_recovery_rate {
            opts.push(format!("max_recovery_rate {r}"));
        }
        for i in &self.write_mostly {
            opts.push(format!("write_mostly {i}"));
        }
        if let Some(w) = self.max_write_behind {
            opts.push(format!("max_write_behind {w}"));
        }
        if let Some(r) = self.region_size {
            opts.push(format!("region_size {}", r.0));
        }
        // Every option is a key and a value: the count is of words, the chunk included.
        let count = 1 + 2 * opts.len();
        let mut s = format!("{} {count} {}", self.level, self.chunk.0);
        for o in &opts {
            s.push(' ');
            s.push_str(o);
        }
        s.push_str(&format!(" {}", self.legs.len()));
        for leg in &self.legs {
            s.push_str(&format!(" {} {}", leg.meta, leg.data));
        }
        s
    }

    /// The resolved devices the raid set uses; the kernel checks each is big enough
    /// for its part, which the legs' own tables already are, so no end is claimed.
    pub fn devices(&self) -> Vec<DevNum> {
        self.legs
            .iter()
            .flat_map(|l| [&l.meta, &l.data])
            .filter_map(|d| match d {
                LegDev::Device(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// The planned devices not yet resolved.
    pub fn unresolved(&self) -> Vec<(&str, &str)> {
        self.legs
            .iter()
            .flat_map(|l| [&l.meta, &l.data])
            .filter_map(|d| match d {
                LegDev::Planned { uuid, name } => Some((uuid.as_str(), name.as_str())),
                _ => None,
            })
            .collect()
    }
}

/// Replaces every [`LegDev::Planned`] in `table` by the device number `lookup` gives
/// for its uuid.
pub fn resolve_table<E>(
    table: &mut [TableLine],
    mut lookup: impl FnMut(&str, &str) -> Result<DevNum, E>,
) -> Result<(), E> {
    for line in table {
        if let Target::Raid(raid) = &mut line.target {
            for leg in &mut raid.legs {
                for dev in [&mut leg.meta, &mut leg.data] {
                    if let LegDev::Planned { uuid, name } = dev {
                        *dev = LegDev::Device(lookup(uuid, name)?);
                    }
                }
            }
        }
    }
    Ok(())
}

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
    let extra_u64 = |key: &str| -> Result<Option<u64>, ActivateError> {
        match seg.extra.get(key) {
            None => Ok(None),
            Some(Value::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(_) => Err(invalid(format!(
                "its raid1 segment's {key} is not a number"
            ))),
        }
    };
    if seg.extra.get("data_offset").is_some() {
        return Err(unsupported(
            "its raid1 segment has a data_offset (a reshape); lvmd does not activate those".into(),
        ));
    }
    let nonzero = |v: Option<u64>| v.filter(|&x| x != 0);

    let mut devices = Vec::with_capacity(2 * legs.len() + 1);
    let mut raid_legs = Vec::with_capacity(legs.len());
    let mut rebuild = Vec::new();
    let mut write_mostly = Vec::new();
    for (i, (meta, image)) in legs.iter().enumerate() {
        let mut leg = Vec::with_capacity(2);
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
            let table = lv_table(vg, sub, pv_devices).map_err(|e| match e {
                // Name the LV the user asked for; the leg is in the PV's place.
                ActivateError::MissingPv { vg, pv, uuid, .. } => ActivateError::MissingPv {
                    vg,
                    lv: lv.name.clone(),
                    pv,
                    uuid,
                },
                other => other,
            })?;
            let name = dm_name(&vg.name, &sub.name, None);
            let uuid = dm_uuid(&vg.id, &sub.id, None);
            check_lengths(&name, &uuid)?;
            leg.push(LegDev::Planned {
                uuid: uuid.clone(),
                name: name.clone(),
            });
            devices.push(DevicePlan {
                name,
                uuid,
                table,
                read_only: !sub.status.iter().any(|s| s == "WRITE"),
                visible: false,
            });
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
    let raid = RaidTarget {
        level: "raid1".into(),
        chunk: Sectors(extra_u64("stripe_size")?.unwrap_or(0)),
        rebuild,
        min_recovery_rate: nonzero(extra_u64("min_recovery_rate")?),
        max_recovery_rate: nonzero(extra_u64("max_recovery_rate")?),
        write_mostly,
        max_write_behind: nonzero(extra_u64("writebehind")?),
        region_size: Some(region_size).filter(|r| r.0 != 0),
        legs: raid_legs,
    };
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
