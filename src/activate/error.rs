//! The one error type of activation. Every variant names the LV or device and the value
//! at fault, so a message alone tells an operator what to look at.

use super::target::DevNum;
use crate::units::Sectors;
use crate::uuid::Uuid;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error(
        "device-mapper is not available: DM_VERSION on {control} failed: {source} \
         (is the dm_mod module loaded?)"
    )]
    DmUnavailable {
        control: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("device-mapper speaks ioctl interface {version}; lvmd needs 4.x")]
    DmVersion { version: String },
    #[error("logical volume {vg}/{lv} not found")]
    LvNotFound { vg: String, lv: String },
    #[error("logical volume {vg}/{lv} is hidden (a component of another LV); activate the LV that uses it")]
    HiddenLv { vg: String, lv: String },
    #[error("logical volume {vg}/{lv}: segment {segment} has type {type_name:?}, which lvmd cannot activate yet")]
    UnsupportedSegment {
        vg: String,
        lv: String,
        segment: usize,
        type_name: String,
    },
    #[error("logical volume {vg}/{lv} cannot be activated: {why}")]
    Unsupported { vg: String, lv: String, why: String },
    #[error("logical volume {vg}/{lv} needs PV {pv} (uuid {uuid}), which is missing")]
    MissingPv {
        vg: String,
        lv: String,
        pv: String,
        uuid: Uuid,
    },
    #[error("logical volume {vg}/{lv}: inconsistent metadata: {why}")]
    InvalidMetadata { vg: String, lv: String, why: String },
    #[error("device-mapper {what} {value:?} is longer than the kernel's {max} characters")]
    NameTooLong {
        what: &'static str,
        value: String,
        max: usize,
    },
    #[error("PV {pv} of volume group {vg} on {path}: {why}")]
    PvDevice {
        vg: String,
        pv: String,
        path: PathBuf,
        why: String,
    },
    #[error(
        "device-mapper device {device}: the kernel has no {target:?} target \
         (module dm-{target} missing or not loadable)"
    )]
    TargetMissing { device: String, target: String },
    #[error(
        "device-mapper device {device}: the table needs {needed} of device {pv_device} \
         but it has only {size}"
    )]
    DeviceTooSmall {
        device: String,
        pv_device: DevNum,
        needed: Sectors,
        size: Sectors,
    },
    #[error("device-mapper device {device}: the kernel rejected the table ({source}):\n{table}")]
    TableRejected {
        device: String,
        table: String,
        #[source]
        source: io::Error,
    },
    #[error("device-mapper device {device} is busy: open {open_count} time(s)")]
    Busy { device: String, open_count: u32 },
    #[error(
        "device-mapper device {device} is open {open_count} time(s); refusing to shrink it \
         from {from} to {to}"
    )]
    ShrinkWhileOpen {
        device: String,
        open_count: u32,
        from: Sectors,
        to: Sectors,
    },
    #[error("device-mapper name {name} is taken by a device with uuid {uuid:?}, not {wanted}")]
    NameTaken {
        name: String,
        uuid: String,
        wanted: String,
    },
    #[error(
        "logical volume {vg}/{lv} is already active ({device}) with a different table; \
         refresh it to load the new one.\nactive:\n{active}planned:\n{planned}"
    )]
    ActiveWithOtherTable {
        vg: String,
        lv: String,
        device: String,
        active: String,
        planned: String,
    },
    #[error(
        "logical volume {vg}/{lv} is active as {device}, not {expected} (renamed while \
         active?); deactivate it first"
    )]
    ActiveUnderOtherName {
        vg: String,
        lv: String,
        device: String,
        expected: String,
    },
    #[error("logical volume {vg}/{lv} is not active")]
    NotActive { vg: String, lv: String },
    #[error("device-mapper {op} of {device} failed: {source}")]
    Dm {
        op: &'static str,
        device: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot {what}: {source}")]
    Node {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} exists and is {what}, not a device node or link lvmd makes; refusing to \
         replace or remove it (does a VG or LV name collide with an entry of /dev?)"
    )]
    NodeInTheWay { path: PathBuf, what: String },
    #[error("udev: {why}")]
    Udev { why: String },
    #[error(
        "thin pool {vg}/{pool}: the kernel's transaction id is {kernel} but the metadata's \
         is {metadata}, and the metadata records no thin-pool messages that would bring \
         one to the other (lvmd replays only a recorded transaction, see docs/thin.md): \
         check the pool with thin_check and repair it with lvm2"
    )]
    ThinTransaction {
        vg: String,
        pool: String,
        kernel: u64,
        metadata: u64,
    },
}

pub type Result<T> = std::result::Result<T, ActivateError>;
