//! Old-style (copy-on-write) snapshots: the devices `lvchange -ay` makes for an origin
//! and its snapshots (checked against lvm2 2.03 in the VM, the `mixed` fixture):
//!
//! - `vg-orig-real` (uuid suffix `-real`): the origin's own table;
//! - `vg-orig`: `snapshot-origin <real>`, so every write first copies the chunk it
//!   overwrites into each snapshot's store;
//! - for each snapshot `snap` (the store LV, see [`crate::lvm::cow`]): `vg-snap-cow`
//!   (the store's own table, uuid of the store + `-cow`) and `vg-snap` (`snapshot
//!   <real> <cow> P <chunk>`, as long as the origin, the store's uuid).
//!
//! dm-snapshot copies only into snapshots that are active, so lvmd keeps them together
//! as lvm2 does: activating the origin or any of its snapshots activates all of them
//! (the activator's `activator_cow`), and a snapshot is not deactivated while its
//! origin stays active. Pure, like the other planners.

use super::error::{ActivateError, Result};
use super::plan::{check_lengths, dm_name, dm_uuid, lv_table, planned, DevicePlan, LvPlan};
use super::target::{DevNum, Snapshot, SnapshotOrigin, TableLine, Target};
use crate::lvm::cow::{self, CowInfo};
use crate::model::{LogicalVolume, VolumeGroup};
use crate::units::Sectors;
use crate::uuid::Uuid;
use std::collections::BTreeMap;

/// How `lv` takes part in COW snapshots.
pub enum Role {
    /// The origin of these snapshots.
    Origin(Vec<CowInfo>),
    /// The store (the LV users name) of this snapshot.
    Snapshot(CowInfo),
}

pub fn role(vg: &VolumeGroup, lv: &str) -> Option<Role> {
    if let Some(snap) = cow::by_cow(vg, lv) {
        return Some(Role::Snapshot(snap));
    }
    let snaps = cow::snapshots_of(vg, lv);
    (!snaps.is_empty()).then_some(Role::Origin(snaps))
}

fn lv<'a>(vg: &'a VolumeGroup, name: &str) -> Result<&'a LogicalVolume> {
    vg.lv(name).ok_or_else(|| ActivateError::InvalidMetadata {
        vg: vg.name.clone(),
        lv: name.to_owned(),
        why: "a snapshot segment names a volume that is not in the metadata".into(),
    })
}

fn device(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    layer: Option<&str>,
    uuid_layer: Option<&str>,
    table: Vec<TableLine>,
    visible: bool,
) -> Result<DevicePlan> {
    let name = dm_name(&vg.name, &lv.name, layer);
    let uuid = dm_uuid(&vg.id, &lv.id, uuid_layer);
    check_lengths(&name, &uuid)?;
    Ok(DevicePlan {
        name,
        uuid,
        table,
        read_only: !lv.status.iter().any(|s| s == "WRITE"),
        visible,
        read_ahead: super::plan::read_ahead(lv),
    })
}

/// The origin's `-real` layer: its own table.
fn real(
    vg: &VolumeGroup,
    origin: &LogicalVolume,
    pv_devices: &BTreeMap<Uuid, DevNum>,
) -> Result<DevicePlan> {
    let table = lv_table(vg, origin, pv_devices)?;
    let mut d = device(vg, origin, Some("real"), Some("real"), table, false)?;
    // Its writes come through the origin's device; lvm2 loads it read-write.
    d.read_ahead = None;
    Ok(d)
}

fn length(vg: &VolumeGroup, origin: &LogicalVolume) -> Sectors {
    vg.extent_size.span(origin.extents())
}

/// The store's `-cow` device and the snapshot over `real` (index `real_at` of
/// `devices`), appended to `devices`.
fn push_snapshot(
    vg: &VolumeGroup,
    snap: &CowInfo,
    origin: &LogicalVolume,
    pv_devices: &BTreeMap<Uuid, DevNum>,
    devices: &mut Vec<DevicePlan>,
) -> Result<()> {
    let store = lv(vg, &snap.cow)?;
    let table = lv_table(vg, store, pv_devices)?;
    let mut cow_dev = device(vg, store, Some("cow"), Some("cow"), table, false)?;
    cow_dev.read_ahead = None;
    cow_dev.read_only = false;
    devices.push(cow_dev);
    let target = Target::Snapshot(Snapshot {
        real: planned(devices, 0),
        cow: planned(devices, devices.len() - 1),
        chunk_size: snap.chunk_size,
    });
    let table = vec![TableLine {
        start: Sectors::ZERO,
        length: length(vg, origin),
        target,
    }];
    devices.push(device(vg, store, None, None, table, true)?);
    Ok(())
}

/// The plan of `lv` when it is a COW origin or snapshot; `None` otherwise.
/// - an origin: `-real`, every snapshot's `-cow` and snapshot device, the origin last;
/// - a snapshot: `-real`, its `-cow`, itself (the origin and the other snapshots are
///   the group's, see [`group`]).
pub(super) fn plan_cow(
    vg: &VolumeGroup,
    lv_model: &LogicalVolume,
    pv_devices: &BTreeMap<Uuid, DevNum>,
) -> Result<Option<LvPlan>> {
    let devices = match role(vg, &lv_model.name) {
        None => return Ok(None),
        Some(Role::Origin(_)) => group(vg, &lv_model.name, pv_devices)?,
        Some(Role::Snapshot(snap)) => {
            let origin = lv(vg, &snap.origin)?;
            let mut devices = vec![real(vg, origin, pv_devices)?];
            push_snapshot(vg, &snap, origin, pv_devices, &mut devices)?;
            devices
        }
    };
    Ok(Some(LvPlan {
        vg: vg.name.clone(),
        lv: lv_model.name.clone(),
        devices,
    }))
}

/// Every device of origin `origin` and its snapshots, in creation order: `-real`, each
/// snapshot's `-cow` and snapshot, the origin's `snapshot-origin` last.
pub fn group(
    vg: &VolumeGroup,
    origin_name: &str,
    pv_devices: &BTreeMap<Uuid, DevNum>,
) -> Result<Vec<DevicePlan>> {
    let origin = lv(vg, origin_name)?;
    if !origin.is_plain() || !origin.is_visible() {
        return Err(ActivateError::Unsupported {
            vg: vg.name.clone(),
            lv: origin_name.to_owned(),
            why: format!(
                "it is a {} volume with COW snapshots; lvmd activates COW snapshots of \
                 linear and striped volumes",
                origin.type_name()
            ),
        });
    }
    let mut devices = vec![real(vg, origin, pv_devices)?];
    for snap in cow::snapshots_of(vg, origin_name) {
        push_snapshot(vg, &snap, origin, pv_devices, &mut devices)?;
    }
    let table = vec![TableLine {
        start: Sectors::ZERO,
        length: length(vg, origin),
        target: Target::SnapshotOrigin(SnapshotOrigin {
            real: planned(&devices, 0),
        }),
    }];
    devices.push(device(vg, origin, None, None, table, true)?);
    Ok(devices)
}
