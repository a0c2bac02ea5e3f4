//! Applying plans through device-mapper ioctls (the `devicemapper` crate): create, load,
//! resume; reload a live device; remove; and reading back what the kernel has.
//!
//! The kernel is the only record of what is active: nothing here keeps state between
//! calls. Every multi-step change undoes its own steps when a later one fails.

use super::error::{ActivateError, Result};
use super::plan::DevicePlan;
use super::target::{parse_table, table_text, DevNum, TableLine, Target};
use crate::units::Sectors;
use devicemapper::{
    DevId, DeviceInfo, DmError, DmFlags, DmName, DmOptions, DmUdevFlags, DmUuid, DM,
};
use lvmd_sys::dm::{DM_CONTROL_PATH, DM_VERSION_MAJOR};
use std::io;
use tracing::{debug, warn};

/// What the kernel says about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmDevice {
    pub name: String,
    pub uuid: String,
    pub devnum: DevNum,
    pub open_count: u32,
    pub suspended: bool,
    pub read_only: bool,
    /// Whether a table is live (false between create and the first resume).
    pub live: bool,
    /// Whether a table is loaded but not yet live (between a load and its resume).
    pub inactive_table: bool,
}

impl DmDevice {
    fn from_info(info: &DeviceInfo) -> DmDevice {
        let flags = info.flags();
        DmDevice {
            name: info.name().map(|n| n.to_string()).unwrap_or_default(),
            uuid: info.uuid().map(|u| u.to_string()).unwrap_or_default(),
            devnum: info.device().into(),
            open_count: info.open_count().max(0) as u32,
            suspended: flags.contains(DmFlags::DM_SUSPEND),
            read_only: flags.contains(DmFlags::DM_READONLY),
            live: flags.contains(DmFlags::DM_ACTIVE_PRESENT),
            inactive_table: flags.contains(DmFlags::DM_INACTIVE_PRESENT),
        }
    }
}

/// A table line as the kernel reports it: `(start, length, type, params)`.
pub type KernelLine = (u64, u64, String, String);

/// The text of a table read from the kernel, as `dmsetup table` prints it.
pub fn kernel_table_text(lines: &[KernelLine]) -> String {
    lines
        .iter()
        .map(|(start, len, ty, params)| {
            if params.is_empty() {
                format!("{start} {len} {ty}\n")
            } else {
                format!("{start} {len} {ty} {params}\n")
            }
        })
        .collect()
}

/// Whether the kernel's table is `planned`, compared as values: the kernel's text is
/// parsed into typed lines first. A table lvmd cannot parse is not one it planned.
///
/// One difference is no difference: a raid table loaded with `rebuild N` where the
/// metadata no longer flags leg N. `rebuild` is an order the kernel takes at load time
/// (it keeps the rebuild's progress in the leg's superblock, not in the table), and a
/// repair drops the flags from the metadata once a table with them runs, as lvm2's
/// `lvconvert --repair` does; the running table is then the metadata's. The other way
/// round (the metadata flags a leg the running table does not rebuild) the rebuild was
/// never ordered, and the tables differ.
pub fn table_is(kernel: &[KernelLine], planned: &[TableLine]) -> bool {
    let Ok(mut live) = parse_table(kernel) else {
        return false;
    };
    for (l, p) in live.iter_mut().zip(planned) {
        if let (Target::Raid(l), Target::Raid(p)) = (&mut l.target, &p.target) {
            if p.rebuild.iter().all(|i| l.rebuild.contains(i)) {
                l.rebuild.clone_from(&p.rebuild);
            }
        }
    }
    live == planned
}

/// The errno inside a devicemapper-crate error, as an `io::Error`.
fn dm_io_error(err: &DmError) -> io::Error {
    lvmd_sys::dm::io_error(err)
}

fn errno_of(err: &DmError) -> Option<i32> {
    dm_io_error(err).raw_os_error()
}

/// lvm2 asks udev rules not to have libdm make nodes behind their back; we do the same
/// so `dmsetup udevflags` reads alike for its devices and ours.
fn udev_flags(plan_visible: bool, uuid: &str) -> DmUdevFlags {
    let mut flags = DmUdevFlags::DM_UDEV_DISABLE_LIBRARY_FALLBACK;
    if plan_visible && uuid.ends_with("-tpool") {
        // A thin pool no thin LV used yet is the pool target itself: lvm2 gives it
        // /dev/VG/LV but no blkid or other rules.
        flags |= DmUdevFlags::DM_UDEV_DISABLE_DISK_RULES_FLAG
            | DmUdevFlags::DM_UDEV_DISABLE_OTHER_RULES_FLAG;
    } else if !plan_visible {
        // Layers: no /dev/VG/LV link, no blkid or other rules on them (lvm2 does this).
        flags |= DmUdevFlags::DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG
            | DmUdevFlags::DM_UDEV_DISABLE_DISK_RULES_FLAG
            | DmUdevFlags::DM_UDEV_DISABLE_OTHER_RULES_FLAG;
    }
    flags
}

/// An open `/dev/mapper/control`.
pub struct DmControl {
    dm: DM,
}

impl DmControl {
    /// Opens the control node and checks that device-mapper answers `DM_VERSION` in
    /// the interface lvmd speaks (a control node alone proves nothing).
    pub fn open() -> Result<DmControl> {
        let unavailable = |source| ActivateError::DmUnavailable {
            control: DM_CONTROL_PATH.into(),
            source,
        };
        let dm = lvmd_sys::dm::open().map_err(unavailable)?;
        let (major, minor, patch) = lvmd_sys::dm::version(&dm).map_err(unavailable)?;
        if major != DM_VERSION_MAJOR {
            return Err(ActivateError::DmVersion {
                version: format!("{major}.{minor}.{patch}"),
            });
        }
        Ok(DmControl { dm })
    }

    fn uuid_id(uuid: &str) -> Result<&DmUuid> {
        DmUuid::new(uuid).map_err(|e| ActivateError::Dm {
            op: "uuid check",
            device: uuid.to_owned(),
            source: dm_io_error(&e),
        })
    }

    /// The device with this uuid, if there is one.
    pub fn info_by_uuid(&self, uuid: &str) -> Result<Option<DmDevice>> {
        self.info(&DevId::Uuid(Self::uuid_id(uuid)?), uuid)
    }

    /// The device with this name, if there is one.
    pub fn info_by_name(&self, name: &str) -> Result<Option<DmDevice>> {
        let id = DmName::new(name).map_err(|e| ActivateError::Dm {
            op: "name check",
            device: name.to_owned(),
            source: dm_io_error(&e),
        })?;
        self.info(&DevId::Name(id), name)
    }

    fn info(&self, id: &DevId<'_>, what: &str) -> Result<Option<DmDevice>> {
        match self.dm.device_info(id) {
            Ok(info) => Ok(Some(DmDevice::from_info(&info))),
            Err(e) if errno_of(&e) == Some(libc::ENXIO) => Ok(None),
            Err(e) => Err(ActivateError::Dm {
                op: "info",
                device: what.to_owned(),
                source: dm_io_error(&e),
            }),
        }
    }

    /// The live table of the device with this uuid.
    pub fn table(&self, uuid: &str) -> Result<Vec<KernelLine>> {
        let id = DevId::Uuid(Self::uuid_id(uuid)?);
        let (_, lines) = self
            .dm
            .table_status(
                &id,
                DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
            )
            .map_err(|e| ActivateError::Dm {
                op: "table status",
                device: uuid.to_owned(),
                source: dm_io_error(&e),
            })?;
        Ok(lines)
    }

    /// The status lines of the device with this uuid (`dmsetup status`).
    pub fn status(&self, uuid: &str) -> Result<Vec<KernelLine>> {
        let id = DevId::Uuid(Self::uuid_id(uuid)?);
        let (_, lines) = self
            .dm
            .table_status(&id, DmOptions::default())
            .map_err(|e| ActivateError::Dm {
                op: "status",
                device: uuid.to_owned(),
                source: dm_io_error(&e),
            })?;
        Ok(lines)
    }

    /// Sends `msg` to the (first) target of the device with this uuid, as
    /// `dmsetup message <dev> 0 <msg>`. Returns the errno the target refused it with
    /// apart from other errors, for callers to whom one refusal means "already done".
    pub fn message(&self, uuid: &str, msg: &str) -> Result<std::result::Result<(), i32>> {
        let id = DevId::Uuid(Self::uuid_id(uuid)?);
        match self.dm.target_msg(&id, Some(0), msg) {
            Ok(_) => Ok(Ok(())),
            Err(e) => match errno_of(&e) {
                Some(errno) if errno != libc::ENXIO => Ok(Err(errno)),
                _ => Err(ActivateError::Dm {
                    op: "message",
                    device: uuid.to_owned(),
                    source: dm_io_error(&e),
                }),
            },
        }
    }

    /// Every device whose uuid starts with `prefix`, sorted by name.
    pub fn list_with_uuid_prefix(&self, prefix: &str) -> Result<Vec<DmDevice>> {
        let all = self.dm.list_devices().map_err(|e| ActivateError::Dm {
            op: "list",
            device: "(all devices)".into(),
            source: dm_io_error(&e),
        })?;
        let mut out = Vec::new();
        for (name, _, _) in all {
            // A device may vanish between the list and the info: that is not an error.
            if let Some(dev) = self.info(&DevId::Name(&name), &name.to_string())? {
                if dev.uuid.starts_with(prefix) {
                    out.push(dev);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The kernel's loaded target types (after any module autoloading it did).
    pub fn target_types(&self) -> Result<Vec<String>> {
        let list = self.dm.list_versions().map_err(|e| ActivateError::Dm {
            op: "list versions",
            device: "(targets)".into(),
            source: dm_io_error(&e),
        })?;
        Ok(list.into_iter().map(|(name, ..)| name).collect())
    }

    /// Creates the device, loads its table and resumes it. On any failure the device is
    /// removed again, so nothing is left half-made.
    pub fn create(&self, plan: &DevicePlan) -> Result<DmDevice> {
        let name = DmName::new(&plan.name).map_err(|e| ActivateError::Dm {
            op: "name check",
            device: plan.name.clone(),
            source: dm_io_error(&e),
        })?;
        let uuid = Self::uuid_id(&plan.uuid)?;
        debug!(device = %plan.name, uuid = %plan.uuid, "creating device-mapper device");
        self.dm
            .device_create(name, Some(uuid), DmOptions::default())
            .map_err(|e| ActivateError::Dm {
                op: "create",
                device: plan.name.clone(),
                source: dm_io_error(&e),
            })?;
        let id = DevId::Uuid(uuid);
        let result = self
            .load(&id, plan)
            .and_then(|()| self.resume(&id, plan))
            .and_then(|()| {
                self.info(&id, &plan.name)?
                    .ok_or_else(|| ActivateError::Dm {
                        op: "info after resume",
                        device: plan.name.clone(),
                        source: io::Error::from_raw_os_error(libc::ENXIO),
                    })
            });
        if result.is_err() {
            if let Err(e) = self.dm.device_remove(&id, DmOptions::default()) {
                warn!(device = %plan.name, error = %dm_io_error(&e), "cannot remove a half-created device");
            }
        }
        result
    }

    fn load(&self, id: &DevId<'_>, plan: &DevicePlan) -> Result<()> {
        let lines: Vec<KernelLine> = plan.table.iter().map(TableLine::to_ioctl).collect();
        let flags = if plan.read_only {
            DmFlags::DM_READONLY
        } else {
            DmFlags::empty()
        };
        self.dm
            .table_load(id, &lines, DmOptions::default().set_flags(flags))
            .map(|_| ())
            .map_err(|e| self.explain_load_failure(plan, dm_io_error(&e)))
    }

    /// The kernel answers a bad table with a bare EINVAL (the reason goes to its log):
    /// find the likely reason ourselves, so the error says what to fix.
    fn explain_load_failure(&self, plan: &DevicePlan, source: io::Error) -> ActivateError {
        if source.raw_os_error() == Some(libc::EINVAL) {
            if let Ok(loaded) = self.target_types() {
                if let Some(line) = plan
                    .table
                    .iter()
                    .find(|l| !loaded.iter().any(|t| t == l.target.type_name()))
                {
                    return ActivateError::TargetMissing {
                        device: plan.name.clone(),
                        target: line.target.type_name().to_owned(),
                    };
                }
            }
            for line in &plan.table {
                for (dev, end) in line.target.device_ends(line.length) {
                    if let Some(size) = block_device_size(dev) {
                        if size < end {
                            return ActivateError::DeviceTooSmall {
                                device: plan.name.clone(),
                                pv_device: dev,
                                needed: end,
                                size,
                            };
                        }
                    }
                }
            }
        }
        ActivateError::TableRejected {
            device: plan.name.clone(),
            table: table_text(&plan.table),
            source,
        }
    }

    fn resume(&self, id: &DevId<'_>, plan: &DevicePlan) -> Result<()> {
        let options = DmOptions::default().set_udev_flags(udev_flags(plan.visible, &plan.uuid));
        self.dm
            .device_suspend(id, options)
            .map(|_| ())
            .map_err(|e| ActivateError::Dm {
                op: "resume",
                device: plan.name.clone(),
                source: dm_io_error(&e),
            })
    }

    /// Replaces the table of a live device: load into the inactive slot, suspend (which
    /// waits for in-flight I/O), resume onto the new table. A failed load or suspend
    /// leaves the device as it was.
    pub fn reload(&self, plan: &DevicePlan) -> Result<()> {
        let id = DevId::Uuid(Self::uuid_id(&plan.uuid)?);
        self.load(&id, plan)?;
        let suspend = DmOptions::default().set_flags(DmFlags::DM_SUSPEND);
        if let Err(e) = self.dm.device_suspend(&id, suspend) {
            if let Err(clear) = self.dm.table_clear(&id) {
                warn!(device = %plan.name, error = %dm_io_error(&clear), "cannot clear the inactive table");
            }
            return Err(ActivateError::Dm {
                op: "suspend",
                device: plan.name.clone(),
                source: dm_io_error(&e),
            });
        }
        self.resume(&id, plan)
    }

    /// Suspends a live device on its table: in-flight I/O is waited for and a
    /// filesystem on it is frozen (flushed), as lvm2 suspends a thin origin around its
    /// `create_snap`. [`resume_suspended`](Self::resume_suspended) undoes it.
    pub fn suspend(&self, dev: &DmDevice) -> Result<()> {
        let id = DevId::Uuid(Self::uuid_id(&dev.uuid)?);
        let options = DmOptions::default().set_flags(DmFlags::DM_SUSPEND);
        self.dm
            .device_suspend(&id, options)
            .map(|_| ())
            .map_err(|e| ActivateError::Dm {
                op: "suspend",
                device: dev.name.clone(),
                source: dm_io_error(&e),
            })
    }

    /// Resumes a device left suspended (by a crash between the suspend and the resume of
    /// a reload, or by hand) on its live table: a table loaded but never made live is
    /// dropped first, so what resumes is what was running.
    pub fn resume_suspended(&self, dev: &DmDevice, visible: bool) -> Result<()> {
        let id = DevId::Uuid(Self::uuid_id(&dev.uuid)?);
        if dev.inactive_table {
            self.dm.table_clear(&id).map_err(|e| ActivateError::Dm {
                op: "clear inactive table",
                device: dev.name.clone(),
                source: dm_io_error(&e),
            })?;
        }
        let options = DmOptions::default().set_udev_flags(udev_flags(visible, &dev.uuid));
        self.dm
            .device_suspend(&id, options)
            .map(|_| ())
            .map_err(|e| ActivateError::Dm {
                op: "resume",
                device: dev.name.clone(),
                source: dm_io_error(&e),
            })
    }

    /// Renames a device (a raid leg whose sub-LV a leg removal renamed, as lvm2 shifts
    /// the legs after a removed one); its uuid, table and users stay.
    pub fn rename(&self, dev: &DmDevice, to: &str) -> Result<()> {
        let name_err = |name: &str, e: DmError| ActivateError::Dm {
            op: "name check",
            device: name.to_owned(),
            source: dm_io_error(&e),
        };
        let old = DmName::new(&dev.name).map_err(|e| name_err(&dev.name, e))?;
        let new = DmName::new(to).map_err(|e| name_err(to, e))?;
        self.dm
            .device_rename(old, &DevId::Name(new))
            .map(|_| ())
            .map_err(|e| ActivateError::Dm {
                op: "rename",
                device: dev.name.clone(),
                source: dm_io_error(&e),
            })
    }

    /// Removes the device with this uuid; refuses while it is open.
    pub fn remove(&self, dev: &DmDevice, visible: bool) -> Result<()> {
        if dev.open_count > 0 {
            return Err(ActivateError::Busy {
                device: dev.name.clone(),
                open_count: dev.open_count,
            });
        }
        let id = DevId::Uuid(Self::uuid_id(&dev.uuid)?);
        let options = DmOptions::default().set_udev_flags(udev_flags(visible, &dev.uuid));
        match self.dm.device_remove(&id, options) {
            Ok(_) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::EBUSY) => {
                // Opened between our check and the ioctl (the crate retried for a while).
                let open_count = self
                    .info(&id, &dev.name)
                    .ok()
                    .flatten()
                    .map_or(dev.open_count, |d| d.open_count);
                Err(ActivateError::Busy {
                    device: dev.name.clone(),
                    open_count,
                })
            }
            Err(e) => Err(ActivateError::Dm {
                op: "remove",
                device: dev.name.clone(),
                source: dm_io_error(&e),
            }),
        }
    }
}

/// The size of the block device `dev`, from sysfs; `None` when it cannot be read.
fn block_device_size(dev: DevNum) -> Option<Sectors> {
    let text = std::fs::read_to_string(format!("/sys/dev/block/{dev}/size")).ok()?;
    text.trim().parse().ok().map(Sectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(params: &str) -> Vec<KernelLine> {
        vec![(0, 16384, "raid".into(), params.into())]
    }

    fn planned(params: &str) -> Vec<TableLine> {
        parse_table(&kernel(params)).unwrap()
    }

    const LEGS: &str = "region_size 4096 2 253:0 253:1 253:2 253:3";

    /// The tables a repair leaves (the kernel's text as seen after a repair in the VM).
    #[test]
    fn a_rebuild_the_metadata_no_longer_flags_is_the_same_table() {
        let rebuilding = kernel(&format!("raid1 5 0 rebuild 1 {LEGS}"));
        let done = planned(&format!("raid1 3 0 {LEGS}"));
        assert!(table_is(&rebuilding, &done));
        assert!(table_is(
            &rebuilding,
            &planned(&format!("raid1 5 0 rebuild 1 {LEGS}"))
        ));
        // A rebuild the metadata asks for and the running table never ordered.
        assert!(!table_is(
            &kernel(&format!("raid1 3 0 {LEGS}")),
            &planned(&format!("raid1 5 0 rebuild 1 {LEGS}"))
        ));
        // Another leg's rebuild is another table.
        assert!(!table_is(
            &rebuilding,
            &planned(&format!("raid1 5 0 rebuild 0 {LEGS}"))
        ));
        // Anything else still counts.
        assert!(!table_is(
            &rebuilding,
            &planned("raid1 3 0 region_size 4096 2 253:0 253:1 253:2 253:4")
        ));
    }
}
