//! The activator's side of thin provisioning (planned in [`crate::activate::thin`]):
//! checking a pool's transaction id in the kernel, and deactivating a thin LV or pool
//! with the pool's layers once nothing uses them.

use super::{Activator, DmControl};
use crate::activate::error::{ActivateError, Result};
use crate::activate::plan::{dm_uuid, DevicePlan, LvPlan};
use crate::activate::target::Target;
use crate::activate::thin::{own_uuid, pool_of};
use crate::lvm::thin::{self, Catchup, KernelMessage};
use crate::model::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::store::scan::VgOnDisk;
use tracing::info;

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
            for m in &messages {
                let text = m.text();
                match dm.message(&device.uuid, &text)? {
                    Ok(()) => {}
                    // The id is gone already: a delete sent before a kill, or the
                    // first try of a create that never ran.
                    Err(libc::ENODATA) if matches!(m, KernelMessage::Delete(_)) => {}
                    Err(errno) => {
                        return Err(ActivateError::Dm {
                            op: "thin-pool message",
                            device: format!("{} ({text})", device.name),
                            source: std::io::Error::from_raw_os_error(errno),
                        })
                    }
                }
                info!(vg = %vg.name, pool = %pool.name, message = %text, "thin-pool message sent");
            }
            Ok(())
        }
        Err(_) => Err(ActivateError::ThinTransaction {
            vg: vg.name.clone(),
            pool: pool.name.clone(),
            kernel,
            metadata: *transaction_id,
        }),
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
