//! What a plan is, and the parts every planner shares, without touching the kernel: the
//! devices an LV needs, their names and uuids exactly as lvm2 makes them, and the table
//! of an LV's own segments on its PVs ([`lv_table`]). Which LV goes to which planner is
//! [`super::planner`]'s.
//!
//! Pure: the caller passes the major:minor of every PV it found, so everything here is
//! testable without root, and comparable line for line with lvm2's `dmsetup table`.

use super::error::ActivateError;
use super::target::{
    table_size, DevNum, DevRef, Error, Linear, StripeArea, Striped, TableLine, Target, Zero,
};
use crate::model::{LogicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::units::{Extents, Sectors};
use crate::uuid::Uuid;
use std::collections::BTreeMap;

/// device-mapper's `DM_NAME_LEN` and `DM_UUID_LEN` count the terminating NUL.
pub const DM_NAME_MAX: usize = crate::model::name::DM_NAME_MAX;
pub const DM_UUID_MAX: usize = 128;

/// The prefix of every lvm2 device-mapper uuid; `lvs` and `lvchange` look devices up by it.
pub const LVM_UUID_PREFIX: &str = "LVM-";

/// One device-mapper device to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    pub name: String,
    pub uuid: String,
    pub table: Vec<TableLine>,
    pub read_only: bool,
    /// The LV's own top-level device, which gets `/dev/<VG>/<LV>`. Layer devices
    /// (`-real`, `-tpool`, ...) get only a `/dev/mapper` node, as with lvm2.
    pub visible: bool,
    /// Read-ahead to set, in sectors, when the LV's metadata names one (see
    /// [`read_ahead`]); `None` leaves the kernel's.
    pub read_ahead: Option<u32>,
}

/// The read-ahead lvm2 sets on an LV's device, from its `read_ahead` key: `-1`
/// ("None", which lvm2 writes on integrity metadata sub-LVs) is 0, a number is that
/// many sectors; absent ("auto") is `None`, the kernel's default, which is what lvm2's
/// auto comes to on these devices.
pub fn read_ahead(lv: &LogicalVolume) -> Option<u32> {
    match lv.extra.get_int("read_ahead")? {
        -1 => Some(0),
        n => u32::try_from(n).ok(),
    }
}

impl DevicePlan {
    pub fn size(&self) -> Sectors {
        table_size(&self.table)
    }
}

/// Everything one LV needs, devices in creation order (the ones used by others first);
/// the last one is the LV itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvPlan {
    pub vg: String,
    pub lv: String,
    pub devices: Vec<DevicePlan>,
}

impl LvPlan {
    /// The LV's own device, the one people open.
    pub fn top(&self) -> &DevicePlan {
        self.devices.last().expect("a plan has at least one device")
    }

    /// Puts the number device `index` got (made now, or found active) into every table
    /// naming it.
    pub fn resolve(&mut self, index: usize, devnum: DevNum) {
        for device in &mut self.devices {
            for line in &mut device.table {
                for r in line.target.refs_mut() {
                    if r.planned_index() == Some(index) {
                        *r = DevRef::Device(devnum);
                    }
                }
            }
        }
    }
}

/// Device `index` of the devices planned so far, for the tables of the devices above it.
pub fn planned(devices: &[DevicePlan], index: usize) -> DevRef {
    DevRef::planned(index, devices[index].name.clone())
}

/// lvm2's escaping in device-mapper names: a `-` inside a VG, LV or layer name is doubled,
/// so the single `-` between them is unambiguous (`dmsetup splitname` undoes it).
fn escape_dashes(s: &str) -> String {
    s.replace('-', "--")
}

/// The device-mapper name lvm2 gives an LV (`VG-LV`) or one of its layers (`VG-LV-real`).
pub fn dm_name(vg: &str, lv: &str, layer: Option<&str>) -> String {
    let mut name = format!("{}-{}", escape_dashes(vg), escape_dashes(lv));
    if let Some(layer) = layer {
        name.push('-');
        name.push_str(&escape_dashes(layer));
    }
    name
}

/// The device-mapper uuid lvm2 gives an LV: `LVM-` + VG uuid + LV uuid (no dashes), and
/// `-<layer>` for a layer device.
pub fn dm_uuid(vg: &Uuid, lv: &Uuid, layer: Option<&str>) -> String {
    let mut uuid = format!("{LVM_UUID_PREFIX}{}{}", vg.compact(), lv.compact());
    if let Some(layer) = layer {
        uuid.push('-');
        uuid.push_str(layer);
    }
    uuid
}

/// The uuid prefix shared by every device of a VG.
pub fn vg_uuid_prefix(vg: &Uuid) -> String {
    format!("{LVM_UUID_PREFIX}{}", vg.compact())
}

/// Splits an lvm2 device-mapper uuid of the VG `vg` into (LV uuid, layer).
pub fn parse_dm_uuid(vg: &Uuid, dm_uuid: &str) -> Option<(Uuid, Option<String>)> {
    let rest = dm_uuid.strip_prefix(&vg_uuid_prefix(vg))?;
    let lv = rest.get(..crate::uuid::UUID_LEN)?;
    let lv = Uuid::from_raw(lv.as_bytes()).ok()?;
    match &rest[crate::uuid::UUID_LEN..] {
        "" => Some((lv, None)),
        tail => Some((lv, Some(tail.strip_prefix('-')?.to_owned()))),
    }
}

pub(super) fn check_lengths(name: &str, uuid: &str) -> Result<(), ActivateError> {
    if name.len() > DM_NAME_MAX {
        return Err(ActivateError::NameTooLong {
            what: "name",
            value: name.to_owned(),
            max: DM_NAME_MAX,
        });
    }
    if uuid.len() > DM_UUID_MAX {
        return Err(ActivateError::NameTooLong {
            what: "uuid",
            value: uuid.to_owned(),
            max: DM_UUID_MAX,
        });
    }
    Ok(())
}

/// The table mapping an LV's own segments straight onto its PVs, one line per segment
/// (what lvm2 loads into an LV, or into its `-real` layer when the LV is an origin).
///
/// Adjacent segments that continue each other are one line, as with lvm2: it merges
/// them when it reads metadata (see [`merged_segments`]), so its tables never show the
/// seam.
pub fn lv_table(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    pv_devices: &BTreeMap<Uuid, DevNum>,
) -> Result<Vec<TableLine>, ActivateError> {
    let invalid = |why: String| ActivateError::InvalidMetadata {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        why,
    };
    if lv.segments.is_empty() {
        return Err(invalid("it has no segments".into()));
    }
    let extent = vg.extent_size;
    let mut table = Vec::with_capacity(lv.segments.len());
    for seg in &merged_segments(vg, lv) {
        // Errors name the segment as the metadata numbers it (segment1, ...).
        let i = lv
            .segments
            .iter()
            .position(|s| s.start_extent == seg.start_extent)
            .unwrap_or(0);
        let start = extent.span(seg.start_extent);
        let length = extent.span(seg.extent_count);
        let target = match &seg.kind {
            SegmentKind::Striped {
                stripe_size,
                stripes,
            } => {
                if stripes.is_empty() || seg.extent_count.0 % stripes.len() as u64 != 0 {
                    return Err(invalid(format!(
                        "segment {} has {} extents in {} stripes",
                        i + 1,
                        seg.extent_count.0,
                        stripes.len()
                    )));
                }
                let per_stripe = Extents(seg.extent_count.0 / stripes.len() as u64);
                let mut areas = Vec::with_capacity(stripes.len());
                for area in stripes {
                    areas.push(pv_area(
                        vg, lv, &area.name, area.start, per_stripe, pv_devices,
                    )?);
                }
                if areas.len() == 1 {
                    let a = areas.remove(0);
                    Target::Linear(Linear {
                        device: a.device,
                        offset: a.offset,
                    })
                } else {
                    let chunk = stripe_size
                        .ok_or_else(|| invalid(format!("segment {} has no stripe_size", i + 1)))?;
                    if chunk.0 == 0 {
                        return Err(invalid(format!("segment {} has stripe_size 0", i + 1)));
                    }
                    Target::Striped(Striped {
                        chunk,
                        stripes: areas,
                    })
                }
            }
            SegmentKind::Other { type_name, .. } if type_name == "zero" => Target::Zero(Zero),
            SegmentKind::Other { type_name, .. } if type_name == "error" => Target::Error(Error),
            other => {
                return Err(ActivateError::UnsupportedSegment {
                    vg: vg.name.clone(),
                    lv: lv.name.clone(),
                    segment: i + 1,
                    type_name: other.type_name().to_owned(),
                })
            }
        };
        table.push(TableLine {
            start,
            length,
            target,
        });
    }
    Ok(table)
}

/// The LV's segments as lvm2 holds them after reading metadata: it merges a striped
/// (or linear) segment into the one before when both have the same stripe count, stripe
/// size and tags, and every stripe continues on the same PV right where the previous
/// segment's stripe ended (lvm2's `lv_merge_segments` at import). Other types are never
/// merged. Without this, metadata that lvmd's resize leaves as two segments would give
/// two table lines where lvm2 loads one.
pub fn merged_segments(vg: &VolumeGroup, lv: &LogicalVolume) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(lv.segments.len());
    for seg in &lv.segments {
        if let Some(prev) = out.last_mut() {
            if continues(vg, prev, seg) {
                prev.extent_count += seg.extent_count;
                continue;
            }
        }
        out.push(seg.clone());
    }
    out
}

fn continues(vg: &VolumeGroup, prev: &Segment, next: &Segment) -> bool {
    let (
        SegmentKind::Striped {
            stripe_size: size_a,
            stripes: a,
        },
        SegmentKind::Striped {
            stripe_size: size_b,
            stripes: b,
        },
    ) = (&prev.kind, &next.kind)
    else {
        return false;
    };
    if a.is_empty() || a.len() != b.len() || prev.tags != next.tags {
        return false;
    }
    // lvm2 compares stripe sizes as numbers, where "not written" is 0.
    if size_a.unwrap_or(Sectors::ZERO) != size_b.unwrap_or(Sectors::ZERO) {
        return false;
    }
    if prev.extent_count.0 % a.len() as u64 != 0 {
        return false;
    }
    let width = prev.extent_count.0 / a.len() as u64;
    a.iter().zip(b).all(|(x, y)| {
        // Areas on sub-LVs are never merged, only areas on PVs.
        x.name == y.name && vg.pv(&x.name).is_some() && x.start.0 + width == y.start.0
    })
}

/// Where `count` extents from extent `start` of the PV named `pv_name` are on its device.
fn pv_area(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    pv_name: &str,
    start: Extents,
    count: Extents,
    pv_devices: &BTreeMap<Uuid, DevNum>,
) -> Result<StripeArea, ActivateError> {
    let Some(pv) = vg.pv(pv_name) else {
        let why = if vg.lv(pv_name).is_some() {
            format!("it is stacked on the LV {pv_name}, which lvmd does not map yet")
        } else {
            format!("it maps onto {pv_name:?}, which is neither a PV nor an LV of the VG")
        };
        return Err(ActivateError::Unsupported {
            vg: vg.name.clone(),
            lv: lv.name.clone(),
            why,
        });
    };
    let missing = || ActivateError::MissingPv {
        vg: vg.name.clone(),
        lv: lv.name.clone(),
        pv: pv.name.clone(),
        uuid: pv.id,
    };
    if pv.is_missing() {
        return Err(missing());
    }
    let device = *pv_devices.get(&pv.id).ok_or_else(missing)?;
    if start
        .0
        .checked_add(count.0)
        .is_none_or(|end| end > pv.pe_count.0)
    {
        return Err(ActivateError::InvalidMetadata {
            vg: vg.name.clone(),
            lv: lv.name.clone(),
            why: format!(
                "extents {}..{} of {} lie past its {} extents",
                start.0,
                start.0.saturating_add(count.0),
                pv.name,
                pv.pe_count.0
            ),
        });
    }
    Ok(StripeArea {
        device: device.into(),
        offset: pv.pe_start + vg.extent_size.span(start),
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
