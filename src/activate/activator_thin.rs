//! The activator's side of thin provisioning (planned in [`crate::activate::thin`]):
//! checking a pool's transaction id in the kernel, and deactivating a thin LV or pool
//! with the pool's layers once nothing uses them.

use super::{Activator, DmControl};
use crate::activate::dm::{kernel_table_text, table_is};
use crate::activate::error::{ActivateError, Result};
use crate::activate::plan::{dm_uuid, DevicePlan, LvPlan};
use crate::activate::target::{table_text, Target};
use crate::activate::thin::{own_uuid, pool_layers, pool_of};
use crate::lvm::thin::{self, Catchup, KernelMessage};
use crate::model::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::store::scan::VgOnDisk;
use crate::units::{Bytes, Sectors};
use devicemapper::{ThinPoolStatus, ThinPoolStatusSummary};
use std::str::FromStr;
use tracing::{info, warn};

/// After the pool target is up (made now or found active), before any thin device of
/// it: its transaction id in the kernel must be the metadata's, or lvmd would present
/// thin volumes the pool does not have (lvm2 checks the same). One transaction behind
/// with its messages recorded in the metadata (lvmd's create/remove order, see
/// [`crate::lvm::thin`]): the messages are sent now, idempotently. `Ok` for devices
/// that are not a thin pool.
pub(super) fn check_transaction(
    dm: &DmControl,
    vg: &VolumeGroup,
    plan: &LvPlan,
    device: &DevicePlan,
) -> Result<()> {
    if !device
        .table
        .iter()
        .any(|l| matches!(l.target, Target::ThinPool(_)))
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
    match thin::catchup(vg, &pool.name, kernel) {
        Ok(Catchup::InStep) => Ok(()),
        // Sent before a kill -9 or by lvm2; the record is dropped by the next commit
        // (the daemon's Edit::ThinMessagesSent).
        Ok(Catchup::Sent { .. }) => Ok(()),
        Ok(Catchup::Send { messages, .. }) => {
            // Snapshots of active origins: every origin takes no writes while the pool
            // copies the mappings, and what their filesystems wrote is flushed first
            // (lvm2 suspends the origin around the same message). All are suspended
            // before the first message and resumed after the last, so a group's
            // snapshots are one instant's cut; in the order of their thin ids, so two
            // runs never hold them in different orders.
            let origins: std::collections::BTreeSet<u64> = messages
                .iter()
                .filter_map(|m| match m {
                    KernelMessage::CreateSnap { origin, .. } => Some(*origin),
                    _ => None,
                })
                .collect();
            let mut held = Vec::new();
            let sent = (|| {
                for origin in &origins {
                    held.extend(suspend_origin(dm, vg, &pool.name, *origin)?);
                }
                send_messages(dm, vg, &pool.name, device, &messages)
            })();
            // Resumed whatever happened: an origin left suspended hangs its writers.
            let mut resumed = Ok(());
            for dev in held.iter().rev() {
                if let Err(e) = dm.resume_suspended(dev, true) {
                    warn!(vg = %vg.name, device = %dev.name, "cannot resume a snapshot's origin: {e}");
                    resumed = resumed.and(Err(e));
                }
            }
            sent.and(resumed)
        }
        Err(_) => Err(ActivateError::ThinTransaction {
            vg: vg.name.clone(),
            pool: pool.name.clone(),
            kernel,
            metadata: *transaction_id,
        }),
    }
}

/// Sends a catch-up's messages to the pool target, in order.
fn send_messages(
    dm: &DmControl,
    vg: &VolumeGroup,
    pool: &str,
    device: &DevicePlan,
    messages: &[KernelMessage],
) -> Result<()> {
    for m in messages {
        let text = m.text();
        match dm.message(&device.uuid, &text)? {
            Ok(()) => {}
            // The id is gone already: a delete sent before a kill, or the first try
            // of a create that never ran.
            Err(libc::ENODATA) if matches!(m, KernelMessage::Delete(_)) => {}
            Err(errno) => {
                return Err(ActivateError::Dm {
                    op: "thin-pool message",
                    device: format!("{} ({text})", device.name),
                    source: std::io::Error::from_raw_os_error(errno),
                })
            }
        }
        info!(vg = %vg.name, pool, message = %text, "thin-pool message sent");
    }
    Ok(())
}

/// Suspends the active thin device of id `id` in `pool`, if there is one (`None`:
/// inactive, nothing to hold). The snapshot's message is sent with the pool's layers
/// made for it, so an inactive origin takes no writes anyway.
fn suspend_origin(
    dm: &DmControl,
    vg: &VolumeGroup,
    pool: &str,
    id: u64,
) -> Result<Option<crate::activate::dm::DmDevice>> {
    let Some((lv, _)) = thin::thin_lvs(vg, pool).into_iter().find(|(_, i)| *i == id) else {
        return Ok(None);
    };
    let Some(dev) = dm.info_by_uuid(&dm_uuid(&vg.id, &lv.id, None))? else {
        return Ok(None);
    };
    if !dev.live {
        return Ok(None);
    }
    // Left suspended by a run killed here: resumed after the message all the same.
    if !dev.suspended {
        dm.suspend(&dev)?;
    }
    info!(vg = %vg.name, lv = %lv.name, "origin suspended for its thin snapshot");
    Ok(Some(dev))
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

/// What dm-thin says of an active pool (its status line), in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    pub transaction_id: u64,
    pub data_used: Bytes,
    pub data_total: Bytes,
    pub metadata_used: Bytes,
    pub metadata_total: Bytes,
    /// Why the pool does not take writes as it should (`read-only`, `out of data
    /// space`, `needs_check`, failed); `None`: working normally.
    pub trouble: Option<String>,
}

/// dm-thin's metadata block (`THIN_METADATA_BLOCK_SIZE`, 4 KiB).
const META_BLOCK: u64 = 4096;

fn parse_status(vg: &VolumeGroup, pool: &LogicalVolume, params: &str) -> Result<PoolStatus> {
    let SegmentKind::ThinPool { chunk_size, .. } = &pool.segments[0].kind else {
        unreachable!("callers pass pools")
    };
    let unreadable = |why: String| ActivateError::Unsupported {
        vg: vg.name.clone(),
        lv: pool.name.clone(),
        why: format!("its pool status {params:?}: {why}"),
    };
    let status = ThinPoolStatus::from_str(params).map_err(|e| unreadable(e.to_string()))?;
    let w = match status {
        ThinPoolStatus::Working(w) => w,
        ThinPoolStatus::Error | ThinPoolStatus::Fail => {
            return Err(unreadable("the pool has failed".into()))
        }
    };
    let trouble = match w.summary {
        _ if w.needs_check => Some("needs_check: its metadata must be repaired".into()),
        ThinPoolStatusSummary::Good => None,
        ThinPoolStatusSummary::ReadOnly => Some("read-only (metadata trouble)".into()),
        ThinPoolStatusSummary::OutOfSpace => Some("out of data space".into()),
    };
    let data_block = chunk_size.to_bytes().0;
    Ok(PoolStatus {
        transaction_id: w.transaction_id,
        data_used: Bytes(w.usage.used_data.0 * data_block),
        data_total: Bytes(w.usage.total_data.0 * data_block),
        metadata_used: Bytes(w.usage.used_meta.0 * META_BLOCK),
        metadata_total: Bytes(w.usage.total_meta.0 * META_BLOCK),
        trouble,
    })
}

fn the_pool<'a>(vg: &'a VolumeGroup, pool: &str) -> Result<&'a LogicalVolume> {
    vg.lv(pool)
        .filter(|l| {
            matches!(l.segments.as_slice(), [s] if matches!(s.kind, SegmentKind::ThinPool { .. }))
        })
        .ok_or_else(|| ActivateError::LvNotFound {
            vg: vg.name.clone(),
            lv: pool.to_owned(),
        })
}

impl Activator {
    /// The pool's status if its pool target is active (`None`: it is not).
    pub fn thin_pool_status(&self, found: &VgOnDisk, pool: &str) -> Result<Option<PoolStatus>> {
        let vg = &found.vg;
        let lv = the_pool(vg, pool)?;
        let uuid = dm_uuid(&vg.id, &lv.id, Some("tpool"));
        if self.dm.info_by_uuid(&uuid)?.is_none() {
            return Ok(None);
        }
        let lines = self.dm.status(&uuid)?;
        let params = lines.first().map(|l| l.3.as_str()).unwrap_or("");
        parse_status(vg, lv, params).map(Some)
    }

    /// Brings the pool's kernel metadata in step with the VG metadata: the pool's
    /// layers (`_tmeta`, `_tdata`, `-tpool`) made if they are not up, the recorded
    /// messages sent ([`check_transaction`]), the status read, and the layers this call
    /// made removed again (the pool is left as active as it was). The daemon calls it
    /// right after a commit that recorded messages, and before one that would record
    /// more. Errors when kernel and metadata cannot be brought in step
    /// ([`ActivateError::ThinTransaction`]).
    pub fn sync_thin_pool(&self, found: &VgOnDisk, pool: &str) -> Result<PoolStatus> {
        let vg = &found.vg;
        let lv = the_pool(vg, pool)?;
        let (devices, _) = Self::pv_devices(found);
        let mut plan = LvPlan {
            vg: vg.name.clone(),
            lv: pool.to_owned(),
            devices: pool_layers(vg, lv, &devices, Some("tpool"))?,
        };
        for i in 0..plan.devices.len() {
            if let Some(dev) = self.dm.info_by_uuid(&plan.devices[i].uuid)? {
                plan.resolve(i, dev.devnum);
            }
        }
        let mut created: Vec<DevicePlan> = Vec::new();
        let mut run = || -> Result<PoolStatus> {
            for i in 0..plan.devices.len() {
                Self::resolved(&plan.devices[i])?;
                let device = plan.devices[i].clone();
                let (made, devnum) = self.ensure_device(&plan, &device)?;
                if made {
                    created.push(device.clone());
                }
                plan.resolve(i, devnum);
                check_transaction(&self.dm, vg, &plan, &device)?;
            }
            let tpool = &plan.devices[2];
            let lines = self.dm.status(&tpool.uuid)?;
            let params = lines.first().map(|l| l.3.as_str()).unwrap_or("");
            parse_status(vg, lv, params)
        };
        let result = run();
        // Made only for this call: taken down again, the pool target first (dm-thin
        // commits its metadata when the pool target goes).
        for d in created.iter().rev() {
            if let Err(e) = self.remove_device(&plan, d) {
                warn!(vg = %vg.name, pool, device = %d.name,
                    "cannot remove a pool layer made to send its messages: {e}");
            }
        }
        result
    }

    /// Brings an active pool's devices to its grown metadata (after
    /// [`crate::lvm::Edit::ResizeThinPool`]), bottom-up as lvm2 does: each grown layer
    /// (`_tmeta`, `_tdata`) reloaded, then the pool target (its new length; with the
    /// same length, the reload still has dm-thin look at its metadata device's new size
    /// as it resumes), then the pool's own device when it is active. Each reload
    /// suspends one device for as long as its in-flight I/O takes; the thin volumes
    /// above keep their devices (their I/O waits while the pool target is suspended).
    /// `Ok(None)`: the pool target is not active, and its next activation loads the new
    /// sizes. A layer that would shrink is refused before anything is reloaded.
    pub fn refresh_thin_pool(&self, found: &VgOnDisk, pool: &str) -> Result<Option<PoolStatus>> {
        let vg = &found.vg;
        let lv = the_pool(vg, pool)?;
        let tpool = dm_uuid(&vg.id, &lv.id, Some("tpool"));
        if self.dm.info_by_uuid(&tpool)?.is_none() {
            return Ok(None);
        }
        let mut plan = self.plan(found, pool)?;
        // Checked whole first: (its number, live size, whether its table differs) for
        // each active device of the plan; `None` for one that is not active.
        let mut live = Vec::new();
        for device in &plan.devices {
            let Some(dev) = self.dm.info_by_uuid(&device.uuid)? else {
                live.push(None); // the pool's own device, when only its thin volumes are up
                continue;
            };
            let table = self.dm.table(&device.uuid)?;
            let from = Sectors(table.iter().map(|l| l.0 + l.1).max().unwrap_or(0));
            if device.size() < from {
                return Err(ActivateError::Unsupported {
                    vg: vg.name.clone(),
                    lv: pool.to_owned(),
                    why: format!(
                        "its device {} would shrink from {from} to {} ({} active, {} in \
                         the metadata); lvmd only grows thin pools",
                        device.name,
                        device.size(),
                        kernel_table_text(&table),
                        table_text(&device.table)
                    ),
                });
            }
            live.push(Some((dev.devnum, from, !table_is(&table, &device.table))));
        }
        let mut below_grew = false;
        for (i, state) in live.into_iter().enumerate() {
            let Some((devnum, from, differs)) = state else {
                continue;
            };
            let device = plan.devices[i].clone();
            if differs || (device.uuid == tpool && below_grew) {
                Self::resolved(&device)?;
                self.dm.reload(&device)?;
                info!(vg = %vg.name, pool, device = %device.name, from = %from,
                    to = %device.size(), "thin pool device reloaded");
                below_grew = true;
            }
            // A reload keeps the device's number, which the devices above name.
            plan.resolve(i, devnum);
        }
        self.thin_pool_status(found, pool)
    }
}
