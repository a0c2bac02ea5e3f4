//! Reading the engine's answers off a typed VG: sizes, layouts, free space. Shared by
//! the real and the simulated engine, so both report the same numbers for the same VG.

use super::engine::{Health, LvInfo, MirrorSync, PvInfo, VgInfo, VgSpace};
use super::volumes::VgRead;
use crate::activate::target::{LegHealth, RaidStatus};
use crate::alloc::{FreeSpace, Shape};
pub use crate::lvm::pv_spaces;
use crate::model::layout::largest_integrity_data;
use crate::model::{Layout, LogicalVolume, PhysicalVolume, SegmentKind, VolumeGroup};
use crate::units::{Bytes, Extents};
use crate::uuid::Uuid;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn bytes(vg: &VolumeGroup, e: Extents) -> Bytes {
    vg.extent_size.span(e).to_bytes()
}

pub fn vg_space(read: &VgRead, stripes: u32) -> VgSpace {
    let vg = &read.vg;
    let free = FreeSpace::new(&pv_spaces(vg)).ok();
    let largest = |layout| {
        free.as_ref()
            .map_or(Extents::ZERO, |f| f.largest_allocation(layout))
    };
    let linear = largest(Shape::Linear);
    let striped = if stripes <= 1 {
        linear
    } else {
        largest(Shape::Striped { stripes })
    };
    // Each leg also holds its one-extent metadata sub-LV (and with integrity its
    // integrity metadata).
    let per_leg: Vec<Extents> = (2..=vg.pvs.len() as u32)
        .map(|legs| largest(Shape::Mirrored { legs }))
        .collect();
    let largest_raid1 = per_leg
        .iter()
        .map(|e| bytes(vg, e.checked_sub(Extents(1)).unwrap_or(Extents::ZERO)))
        .collect();
    let largest_raid1_integrity = per_leg
        .iter()
        .map(|&e| bytes(vg, largest_integrity_data(e, vg.extent_size)))
        .collect();
    VgSpace {
        extent_size: vg.extent_size.bytes(),
        largest_raid1,
        largest_raid1_integrity,
        metadata_used: read.metadata.used,
        metadata_capacity: read.metadata.capacity,
        total: bytes(vg, vg.total_extents()),
        free: bytes(vg, vg.free_extents()),
        largest_linear: bytes(vg, linear),
        largest_striped: bytes(vg, striped),
        wiping: super::wipe::wiping(vg),
    }
}

/// `devices`: where each PV was found (missing ones are absent).
pub fn vg_info(vg: &VolumeGroup, devices: &BTreeMap<Uuid, PathBuf>) -> VgInfo {
    let used = vg.used_extents();
    let pvs = vg
        .pvs
        .iter()
        .map(|pv| {
            let used = used.get(pv.name.as_str()).copied().unwrap_or(Extents::ZERO);
            PvInfo {
                device: devices
                    .get(&pv.id)
                    .cloned()
                    .or_else(|| pv.device.as_ref().map(PathBuf::from))
                    .unwrap_or_default(),
                uuid: pv.id.to_string(),
                size: pv.dev_size.to_bytes(),
                free: bytes(vg, pv.pe_count.checked_sub(used).unwrap_or(Extents::ZERO)),
                present: devices.contains_key(&pv.id),
            }
        })
        .collect();
    VgInfo {
        name: vg.name.clone(),
        uuid: vg.id.to_string(),
        seqno: vg.seqno,
        extent_size: vg.extent_size.bytes(),
        total: bytes(vg, vg.total_extents()),
        free: bytes(vg, vg.free_extents()),
        pvs,
        lv_count: visible_lvs(vg).count() as u32,
        tags: vg.tags.clone(),
    }
}

/// The LVs a user made and sees (lvm2's hidden sub-LVs and lvmd's wipe LVs left out).
pub fn visible_lvs(vg: &VolumeGroup) -> impl Iterator<Item = &LogicalVolume> {
    vg.lvs.iter().filter(|lv| is_client_visible(lv))
}

/// Whether clients see the LV as a volume: visible to lvm2, not one lvmd is wiping,
/// not a snapshot (those are listed as such: [`super::snapshots`]).
pub fn is_client_visible(lv: &LogicalVolume) -> bool {
    // A COW snapshot's `snapshotN` is lvm2's internal LV (VISIBLE-flagged all the same).
    lv.is_visible()
        && !crate::lvm::cow::is_segment_lv(lv)
        && !super::marks::is_wipe(&lv.name, &lv.tags)
        && super::marks::snapshot_of(&lv.tags).is_none()
}

/// The volume as clients see it; `status` is dm-raid's status when it is an active
/// mirror, which adds the legs the kernel failed to those on missing PVs.
pub fn lv_info(
    read: &VgRead,
    lv: &LogicalVolume,
    device: Option<PathBuf>,
    status: Option<&RaidStatus>,
) -> LvInfo {
    let vg = &read.vg;
    LvInfo {
        health: health(read, lv, status),
        sync: status.map(mirror_sync),
        vg: vg.name.clone(),
        name: lv.name.clone(),
        uuid: lv.id.to_string(),
        size: bytes(vg, lv.extents()),
        layout: Layout::of_in(vg, lv),
        tags: lv.tags.clone(),
        device,
    }
}

/// The PVs whose extents hold `lv`'s data, through its sub-LVs (raid legs, pool
/// layers, snapshot stores), by name.
fn pvs_under(vg: &VolumeGroup, lv: &LogicalVolume, out: &mut BTreeSet<String>, depth: u32) {
    if depth > 8 {
        return; // metadata that loops; the model check reports it elsewhere
    }
    for seg in &lv.segments {
        if let SegmentKind::Striped { stripes, .. } = &seg.kind {
            for a in stripes {
                if vg.pv(&a.name).is_some() {
                    out.insert(a.name.clone());
                } else if let Some(sub) = vg.lv(&a.name) {
                    pvs_under(vg, sub, out, depth + 1);
                }
            }
        }
        for name in seg.lv_references() {
            if let Some(sub) = vg.lv(name) {
                pvs_under(vg, sub, out, depth + 1);
            }
        }
    }
}

/// The names of the PVs a raid leg's sub-LVs (metadata, image) sit on.
pub fn leg_pv_names(vg: &VolumeGroup, leg: &(String, String)) -> BTreeSet<String> {
    let mut pvs = BTreeSet::new();
    for sub in [&leg.0, &leg.1].into_iter().filter_map(|n| vg.lv(n)) {
        pvs_under(vg, sub, &mut pvs, 1);
    }
    pvs
}

/// Whether `pv`'s device is gone: flagged MISSING in the metadata, or not found.
pub fn pv_absent(read: &VgRead, pv: &PhysicalVolume) -> bool {
    pv.is_missing() || !read.devices.contains_key(&pv.id)
}

/// The missing PVs among `names`, each as `pvN (uuid)`.
fn missing_of(read: &VgRead, names: &BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| read.vg.pv(n))
        .filter(|pv| pv_absent(read, pv))
        .map(|pv| format!("{} ({})", pv.name, pv.id))
        .collect()
}

/// Why a mirror's leg cannot serve I/O.
pub enum LegFault {
    /// Its sub-LVs sit on these missing PVs (`pvN (uuid)`).
    OnMissingPvs(Vec<String>),
    /// The kernel failed it (`D` or `-` in dm-raid's status); it sits on these PVs.
    FailedInKernel(BTreeSet<String>),
}

/// Leg `i` (metadata, image sub-LV names) of a raid1 LV: what keeps it from serving
/// I/O, from the metadata and the PVs present and, for an active mirror, `status`.
/// The one rule behind both the volume's health and which legs a repair moves.
pub fn leg_fault(
    read: &VgRead,
    i: usize,
    leg: &(String, String),
    status: Option<&RaidStatus>,
) -> Option<LegFault> {
    let pvs = leg_pv_names(&read.vg, leg);
    let missing = missing_of(read, &pvs);
    if !missing.is_empty() {
        return Some(LegFault::OnMissingPvs(missing));
    }
    let dead =
        status.is_some_and(|s| matches!(s.legs.get(i), Some(LegHealth::Dead | LegHealth::Absent)));
    dead.then_some(LegFault::FailedInKernel(pvs))
}

fn mirror_sync(s: &RaidStatus) -> MirrorSync {
    MirrorSync {
        // An empty array has nothing to sync.
        sync_basis_points: s.sync_basis_points().unwrap_or(10_000),
        action: s.action.as_str().to_owned(),
        mismatches: s.mismatches,
        legs: s
            .legs
            .iter()
            .map(|l| match l {
                LegHealth::InSync => 'A',
                LegHealth::Syncing => 'a',
                LegHealth::Dead => 'D',
                LegHealth::Absent => '-',
            })
            .collect(),
        integrity_mismatches: None,
    }
}

/// A thin volume's health once its pool (`vg/pool`) is in `trouble` (out of data
/// space, read-only, needing a check, failed): writes to it fail or stall, so the
/// volume has failed, whatever else its health already said.
pub fn with_pool_trouble(health: Health, vg: &str, pool: &str, trouble: &str) -> Health {
    let pool = format!("its thin pool {vg}/{pool} is {trouble}");
    match health {
        Health::Ok => Health::Failed(pool),
        Health::Degraded(why) | Health::Failed(why) => Health::Failed(format!("{why}; {pool}")),
    }
}

/// A volume's health: a mirror with a leg on a missing PV, or one the kernel failed
/// (`D` in `status`, dm-raid's status of the active mirror), is degraded while one leg
/// is whole; anything else with extents on a missing PV has failed.
pub fn health(read: &VgRead, lv: &LogicalVolume, status: Option<&RaidStatus>) -> Health {
    let vg = &read.vg;
    // Every PV there and no kernel status to fail a leg: nothing below can be at fault,
    // so a listing of thousands skips walking each volume's extents.
    if status.is_none() && !vg.pvs.iter().any(|pv| pv_absent(read, pv)) {
        return Health::Ok;
    }
    if let [seg] = lv.segments.as_slice() {
        if let SegmentKind::Raid1 { legs, .. } = &seg.kind {
            let mut broken = Vec::new();
            for (i, leg) in legs.iter().enumerate() {
                let image = &leg.1;
                match leg_fault(read, i, leg, status) {
                    Some(LegFault::OnMissingPvs(missing)) => {
                        broken.push(format!("leg {image} on missing PV {}", missing.join(", ")));
                    }
                    Some(LegFault::FailedInKernel(pvs)) => {
                        let on: Vec<String> = pvs.into_iter().collect();
                        broken.push(format!(
                            "leg {image} (on PV {}) failed in the kernel",
                            on.join(", ")
                        ));
                    }
                    None => {}
                }
            }
            return match broken.len() {
                0 => Health::Ok,
                n if n < legs.len() => Health::Degraded(format!(
                    "{} of {} copies left: {}",
                    legs.len() - n,
                    legs.len(),
                    broken.join("; ")
                )),
                _ => Health::Failed(format!("no copy left: {}", broken.join("; "))),
            };
        }
    }
    let mut pvs = BTreeSet::new();
    pvs_under(vg, lv, &mut pvs, 0);
    let missing = missing_of(read, &pvs);
    if missing.is_empty() {
        Health::Ok
    } else {
        Health::Failed(format!("extents on missing PV {}", missing.join(", ")))
    }
}
