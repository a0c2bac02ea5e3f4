//! The one place where errors become gRPC status codes. The message is the error's own
//! text, which names the object and the value at fault.

use crate::activate::ActivateError;
use crate::alloc::AllocError;
use crate::crypt::CryptError;
use crate::daemon::activation::ActivationError;
use crate::daemon::engine::EngineError;
use crate::daemon::node::NodeError;
use crate::format::mda::MdaError;
use crate::lvm::LvmError;
use crate::store::StoreError;
use std::io::ErrorKind;
use tonic::{Code, Status};

fn io_code(e: &std::io::Error) -> Code {
    match e.kind() {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::ResourceBusy => Code::FailedPrecondition,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => Code::Unavailable,
        _ => match e.raw_os_error() {
            Some(libc::EBUSY) => Code::FailedPrecondition,
            Some(libc::ENOSPC) => Code::ResourceExhausted,
            // A path or name the kernel will not take: the request's fault.
            Some(libc::ENAMETOOLONG) => Code::InvalidArgument,
            _ => Code::Internal,
        },
    }
}

/// An error of lvmd's own access to the host (a device-mapper ioctl, a node under /dev).
/// No permission is lvmd's lack of privilege, a deployment fault (the caller may: CSI
/// keeps PERMISSION_DENIED for the caller's identity), so FAILED_PRECONDITION; a device
/// that vanished during the call was changed concurrently, and a retry sees the new
/// state.
fn host_io_code(e: &std::io::Error) -> Code {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => Code::FailedPrecondition,
        Some(libc::ENXIO | libc::ENODEV | libc::ENOENT) => Code::Unavailable,
        Some(libc::ENOMEM) => Code::ResourceExhausted,
        _ => io_code(e),
    }
}

/// The code for each error of the device-mapper layer, by what the caller can do about
/// it (gRPC's guide: FAILED_PRECONDITION when the system must be fixed before a retry,
/// UNAVAILABLE when a retry may do). No catch-all: a new variant must be placed here.
pub fn activate_code(e: &ActivateError) -> Code {
    match e {
        // The kernel cannot do it until someone loads a module or fixes the host.
        ActivateError::DmUnavailable { .. }
        | ActivateError::DmVersion { .. }
        | ActivateError::TargetMissing { .. } => Code::FailedPrecondition,
        ActivateError::LvNotFound { .. } => Code::NotFound,
        // Volumes lvmd does not activate: their state (kind, role, a missing PV, metadata
        // lvmd will not act on) has to change first; the request itself is well-formed.
        ActivateError::HiddenLv { .. }
        | ActivateError::UnsupportedSegment { .. }
        | ActivateError::Unsupported { .. }
        | ActivateError::MissingPv { .. }
        | ActivateError::InvalidMetadata { .. }
        | ActivateError::PvDevice { .. }
        | ActivateError::DeviceTooSmall { .. }
        | ActivateError::ThinTransaction { .. } => Code::FailedPrecondition,
        // The VG or LV name makes a device-mapper name the kernel will not take,
        // whatever the system's state (the same as ENAMETOOLONG from a path).
        ActivateError::NameTooLong { .. } => Code::InvalidArgument,
        // In use, or in the way: CSI's FAILED_PRECONDITION ("wait for the volume to be
        // unpublished"). A name taken by a foreign device is not the volume existing
        // (ALREADY_EXISTS would read as "done" to an idempotent caller): someone must
        // remove that device first.
        ActivateError::Busy { .. }
        | ActivateError::ShrinkWhileOpen { .. }
        | ActivateError::NameTaken { .. }
        | ActivateError::ActiveWithOtherTable { .. }
        | ActivateError::ActiveUnderOtherName { .. }
        | ActivateError::NotActive { .. }
        | ActivateError::NodeInTheWay { .. } => Code::FailedPrecondition,
        // udev did not make the nodes in time: it may be slow, a retry may do.
        ActivateError::Udev { .. } => Code::Unavailable,
        ActivateError::TableRejected { source, .. }
        | ActivateError::Dm { source, .. }
        | ActivateError::Node { source, .. } => host_io_code(source),
    }
}

/// The code for each error of the daemon's activation layer.
pub fn activation_code(e: &ActivationError) -> Code {
    match e {
        // No device-mapper on this host is not transient: a module or the host must
        // change before activating can work.
        ActivationError::Unavailable(_) => Code::FailedPrecondition,
        ActivationError::Busy { .. } => Code::FailedPrecondition,
        ActivationError::Dm { source, .. } => activate_code(source),
        // What was left is in the message; what the caller can do depends on the
        // failure itself.
        ActivationError::Incomplete { source, .. } => activation_code(source),
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::Io { source, .. } => io_code(source),
        // Another holder of lvm2's lock, or the lock directory: worth a retry.
        StoreError::Lock { .. } => Code::Unavailable,
        // Disks that say something lvmd will not act on.
        StoreError::Inconsistent { .. } | StoreError::Model { .. } => Code::FailedPrecondition,
        // No room for another version of the metadata: more volumes cannot be described
        // in this VG, whatever its free space.
        StoreError::Mda {
            source: MdaError::MetadataAreaFull { .. } | MdaError::TextWouldOverlap { .. },
            ..
        } => Code::ResourceExhausted,
        StoreError::OutOfRange { .. }
        | StoreError::Label { .. }
        | StoreError::Mda { .. }
        | StoreError::Text { .. }
        | StoreError::MdaSizeMismatch { .. }
        | StoreError::TextNotUtf8 { .. }
        | StoreError::Injected(_) => Code::Internal,
    }
}

/// The code for each error of the metadata library.
pub fn lvm_code(e: &LvmError) -> Code {
    match e {
        LvmError::Name(_)
        | LvmError::Tag(_)
        | LvmError::InvalidArgument { .. }
        | LvmError::DeviceTooSmall { .. }
        | LvmError::PvNotInVg { .. } => Code::InvalidArgument,
        LvmError::VgNotFound(_) | LvmError::LvNotFound { .. } => Code::NotFound,
        LvmError::VgExists(_) | LvmError::LvExists { .. } | LvmError::PvExists { .. } => {
            Code::AlreadyExists
        }
        LvmError::DeviceNotEmpty { .. }
        | LvmError::LvmTraces { .. }
        | LvmError::PvInUse { .. }
        | LvmError::PvHasExtents { .. }
        | LvmError::VgNotEmpty { .. }
        | LvmError::VgNotWritable { .. }
        | LvmError::LvUnsupported { .. }
        | LvmError::LvInUse { .. } => Code::FailedPrecondition,
        LvmError::Alloc { source, .. } => match source {
            AllocError::NoSpace { .. }
            | AllocError::NotEnoughPvs { .. }
            | AllocError::NoStripeSpace { .. }
            | AllocError::NoMirrorSpace { .. } => Code::ResourceExhausted,
            AllocError::ZeroSize
            | AllocError::ZeroStripes
            | AllocError::ZeroLegs
            | AllocError::StripesDoNotDivide { .. } => Code::InvalidArgument,
            AllocError::UsedPastEnd { .. } | AllocError::DuplicatePv { .. } => Code::Internal,
        },
        LvmError::Store(s) => store_code(s),
        LvmError::Model(_) => Code::FailedPrecondition,
    }
}

fn node_code(n: &NodeError) -> Code {
    match n {
        NodeError::BadPath { .. }
        | NodeError::UnsupportedFs { .. }
        | NodeError::BadOption { .. } => Code::InvalidArgument,
        NodeError::NotFound { .. } => Code::NotFound,
        NodeError::Busy { .. } | NodeError::DeviceNotEmpty { .. } => Code::FailedPrecondition,
        NodeError::Command { .. } | NodeError::Probe(_) => Code::Internal,
        NodeError::Io { source, .. } => io_code(source),
        // What is left is in the message; the code is the failure's own.
        NodeError::MountLeft { source, .. } => node_code(source),
        NodeError::Crypt(c) => crypt_code(c),
    }
}

/// The encryption layer's errors. A wrong key is PERMISSION_DENIED: the caller holds
/// the wrong secret (nothing changed, retrying with the same one never helps).
pub fn crypt_code(e: &CryptError) -> Code {
    match e {
        CryptError::WrongKey { .. } => Code::PermissionDenied,
        CryptError::InvalidKey { .. }
        | CryptError::InvalidConfig { .. }
        | CryptError::InvalidName { .. } => Code::InvalidArgument,
        CryptError::KeyFile { source, .. } => io_code(source),
        CryptError::AlreadyLuks { .. }
        | CryptError::NotBlank { .. }
        | CryptError::TooSmall { .. }
        | CryptError::NotLuks { .. }
        | CryptError::NotLuks2 { .. }
        | CryptError::NameInUse { .. }
        | CryptError::NotOpen { .. }
        | CryptError::Busy { .. }
        | CryptError::KeyslotsFull { .. } => Code::FailedPrecondition,
        CryptError::Probe(_) => Code::Internal,
        CryptError::Libcryptsetup { source, .. } => match source.raw_os_error() {
            Some(libc::EBUSY) => Code::FailedPrecondition,
            _ => io_code(source),
        },
    }
}

pub fn engine_code(e: &EngineError) -> Code {
    match e {
        EngineError::Lvm(e) => lvm_code(e),
        EngineError::Activation(a) => activation_code(a),
        EngineError::Node(n) => node_code(n),
        EngineError::NotFound { .. } => Code::NotFound,
        EngineError::AlreadyExists { .. } => Code::AlreadyExists,
        EngineError::InvalidArgument { .. } => Code::InvalidArgument,
        EngineError::OutOfRange { .. } => Code::OutOfRange,
        EngineError::SmallerThanSource { .. } => Code::OutOfRange,
        EngineError::FailedPrecondition { .. } => Code::FailedPrecondition,
        EngineError::Zero { source, .. } | EngineError::Copy { source, .. } => {
            match io_code(source) {
                // A PV that went away, or an I/O error: the call may be retried.
                Code::Internal | Code::NotFound => Code::Unavailable,
                c => c,
            }
        }
        EngineError::NoSpaceWhileWiping { .. } => Code::ResourceExhausted,
        EngineError::ThinPoolExhausted { .. } => Code::ResourceExhausted,
        EngineError::Internal(_) => Code::Internal,
    }
}

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Status {
        let code = engine_code(&e);
        // The full chain: an I/O error's cause is worth having in the message.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let t = s.to_string();
            if !msg.contains(&t) {
                msg.push_str(": ");
                msg.push_str(&t);
            }
            src = s.source();
        }
        if code == Code::Internal {
            tracing::error!("internal error: {msg}");
        }
        Status::new(code, msg)
    }
}

impl From<LvmError> for Status {
    fn from(e: LvmError) -> Status {
        EngineError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::activation::Op;
    use crate::units::Extents;

    #[test]
    fn codes() {
        let s: Status = LvmError::LvNotFound {
            vg: "vg".into(),
            lv: "x".into(),
        }
        .into();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("vg/x"));
        let s: Status = LvmError::Alloc {
            vg: "vg".into(),
            source: AllocError::NoSpace {
                needed: Extents(9),
                free: Extents(1),
            },
        }
        .into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        let s: Status = EngineError::from(NodeError::BadPath {
            path: "/x/../y".into(),
            why: "contains '..'".into(),
        })
        .into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("/x/../y"));
        let s: Status = LvmError::Store(StoreError::Io {
            path: "/dev/nope".into(),
            what: "open",
            source: std::io::Error::from(ErrorKind::NotFound),
        })
        .into();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("/dev/nope"));
        // A full metadata area: no room for more volumes, not an internal fault.
        let s: Status = LvmError::Store(StoreError::Mda {
            path: "/dev/sdb".into(),
            mda_start: crate::units::Bytes(4096),
            source: MdaError::MetadataAreaFull {
                needed: 2 << 20,
                available: 1 << 20,
            },
        })
        .into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("full"), "{s:?}");
        // An over-long path from a request.
        let s: Status = EngineError::from(NodeError::Io {
            path: "/k/xxx".into(),
            what: "create",
            source: std::io::Error::from_raw_os_error(libc::ENAMETOOLONG),
        })
        .into();
        assert_eq!(s.code(), Code::InvalidArgument);
    }

    fn errno(n: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(n)
    }

    fn names(vg: &str, lv: &str) -> (String, String) {
        (vg.into(), lv.into())
    }

    /// Every variant of the device-mapper layer's error, with the code its meaning
    /// calls for (gRPC's guide and CSI's NodeStage/NodePublish tables), and a word its
    /// message must carry to the client.
    fn every_activate_error() -> Vec<(ActivateError, Code, &'static str)> {
        use crate::activate::DevNum;
        use crate::units::Sectors;
        let (vg, lv) = names("vg", "lv");
        let dev = DevNum {
            major: 8,
            minor: 16,
        };
        vec![
            // No dm_mod: nothing to retry until the module is there; the message says
            // which module.
            (
                ActivateError::DmUnavailable {
                    control: "/dev/mapper/control".into(),
                    source: errno(libc::ENODEV),
                },
                Code::FailedPrecondition,
                "dm_mod",
            ),
            (
                ActivateError::DmVersion {
                    version: "5.0.0".into(),
                },
                Code::FailedPrecondition,
                "5.0.0",
            ),
            (
                ActivateError::LvNotFound {
                    vg: vg.clone(),
                    lv: lv.clone(),
                },
                Code::NotFound,
                "vg/lv",
            ),
            (
                ActivateError::HiddenLv {
                    vg: vg.clone(),
                    lv: "lv_rimage_0".into(),
                },
                Code::FailedPrecondition,
                "lv_rimage_0",
            ),
            (
                ActivateError::UnsupportedSegment {
                    vg: vg.clone(),
                    lv: lv.clone(),
                    segment: 0,
                    type_name: "cache".into(),
                },
                Code::FailedPrecondition,
                "cache",
            ),
            (
                ActivateError::Unsupported {
                    vg: vg.clone(),
                    lv: lv.clone(),
                    why: "a snapshot origin".into(),
                },
                Code::FailedPrecondition,
                "snapshot origin",
            ),
            // A missing disk needs an operator, not a retry.
            (
                ActivateError::MissingPv {
                    vg: vg.clone(),
                    lv: lv.clone(),
                    pv: "pv1".into(),
                    uuid: crate::uuid::Uuid::random(),
                },
                Code::FailedPrecondition,
                "pv1",
            ),
            (
                ActivateError::InvalidMetadata {
                    vg: vg.clone(),
                    lv: lv.clone(),
                    why: "segments overlap".into(),
                },
                Code::FailedPrecondition,
                "overlap",
            ),
            // A name the kernel never takes: the request's fault, whatever the state.
            (
                ActivateError::NameTooLong {
                    what: "name",
                    value: "x".repeat(130),
                    max: 127,
                },
                Code::InvalidArgument,
                "127",
            ),
            (
                ActivateError::PvDevice {
                    vg: vg.clone(),
                    pv: "pv0".into(),
                    path: "/srv/disk.img".into(),
                    why: "not a block device".into(),
                },
                Code::FailedPrecondition,
                "/srv/disk.img",
            ),
            // A target module missing: FAILED_PRECONDITION naming the module.
            (
                ActivateError::TargetMissing {
                    device: "vg-lv".into(),
                    target: "raid".into(),
                },
                Code::FailedPrecondition,
                "dm-raid",
            ),
            (
                ActivateError::DeviceTooSmall {
                    device: "vg-lv".into(),
                    pv_device: dev,
                    needed: Sectors(2048),
                    size: Sectors(1024),
                },
                Code::FailedPrecondition,
                "8:16",
            ),
            // A table the kernel refuses for no reason lvmd could find: lvmd's fault.
            (
                ActivateError::TableRejected {
                    device: "vg-lv".into(),
                    table: "0 8 linear 8:16 2048".into(),
                    source: errno(libc::EINVAL),
                },
                Code::Internal,
                "linear 8:16",
            ),
            // A PV another holder opened exclusively: in use.
            (
                ActivateError::TableRejected {
                    device: "vg-lv".into(),
                    table: "0 8 linear 8:16 2048".into(),
                    source: errno(libc::EBUSY),
                },
                Code::FailedPrecondition,
                "vg-lv",
            ),
            (
                ActivateError::Busy {
                    device: "vg-lv".into(),
                    open_count: 2,
                },
                Code::FailedPrecondition,
                "2 opener",
            ),
            (
                ActivateError::ShrinkWhileOpen {
                    device: "vg-lv".into(),
                    open_count: 1,
                    from: Sectors(4096),
                    to: Sectors(2048),
                },
                Code::FailedPrecondition,
                "shrink",
            ),
            // A name held by a device that is not this volume's: someone must remove it;
            // ALREADY_EXISTS would read as "the volume is there".
            (
                ActivateError::NameTaken {
                    name: "vg-lv".into(),
                    uuid: "CRYPT-foreign".into(),
                    wanted: "LVM-x".into(),
                },
                Code::FailedPrecondition,
                "CRYPT-foreign",
            ),
            (
                ActivateError::ActiveWithOtherTable {
                    vg: vg.clone(),
                    lv: lv.clone(),
                    device: "vg-lv".into(),
                    active: "0 8 linear 8:16 0\n".into(),
                    planned: "0 16 linear 8:16 0\n".into(),
                },
                Code::FailedPrecondition,
                "refresh",
            ),
            (
                ActivateError::ActiveUnderOtherName {
                    vg: vg.clone(),
                    lv: lv.clone(),
                    device: "vg-old".into(),
                    expected: "vg-lv".into(),
                },
                Code::FailedPrecondition,
                "vg-old",
            ),
            (
                ActivateError::NotActive {
                    vg: vg.clone(),
                    lv: lv.clone(),
                },
                Code::FailedPrecondition,
                "not active",
            ),
            // An ioctl refused for lack of privilege: lvmd's deployment, not the caller's
            // identity (CSI's PERMISSION_DENIED).
            (
                ActivateError::Dm {
                    op: "create",
                    device: "vg-lv".into(),
                    source: errno(libc::EPERM),
                },
                Code::FailedPrecondition,
                "create",
            ),
            // The device went away between two calls: changed concurrently, retry.
            (
                ActivateError::Dm {
                    op: "suspend",
                    device: "vg-lv".into(),
                    source: errno(libc::ENXIO),
                },
                Code::Unavailable,
                "suspend",
            ),
            (
                ActivateError::Dm {
                    op: "remove",
                    device: "vg-lv".into(),
                    source: errno(libc::EBUSY),
                },
                Code::FailedPrecondition,
                "remove",
            ),
            (
                ActivateError::Dm {
                    op: "create",
                    device: "vg-lv".into(),
                    source: errno(libc::ENOMEM),
                },
                Code::ResourceExhausted,
                "create",
            ),
            (
                ActivateError::Dm {
                    op: "create",
                    device: "vg-lv".into(),
                    source: errno(libc::EIO),
                },
                Code::Internal,
                "create",
            ),
            (
                ActivateError::Node {
                    path: "/dev/vg/lv".into(),
                    what: "create the link",
                    source: errno(libc::EACCES),
                },
                Code::FailedPrecondition,
                "/dev/vg/lv",
            ),
            (
                ActivateError::NodeInTheWay {
                    path: "/dev/vg".into(),
                    what: "a regular file".into(),
                },
                Code::FailedPrecondition,
                "/dev/vg",
            ),
            // udev slow to make the nodes: a retry may find them.
            (
                ActivateError::Udev {
                    why: "/dev/vg/lv did not appear".into(),
                },
                Code::Unavailable,
                "did not appear",
            ),
            (
                ActivateError::ThinTransaction {
                    vg: vg.clone(),
                    pool: "pool".into(),
                    kernel: 3,
                    metadata: 2,
                },
                Code::FailedPrecondition,
                "thin_check",
            ),
        ]
    }

    /// Which variant, so the test can tell that it has a case for each: a new variant
    /// stops this from compiling until it is counted here and given a case above.
    fn variant(e: &ActivateError) -> usize {
        use ActivateError as E;
        match e {
            E::DmUnavailable { .. } => 0,
            E::DmVersion { .. } => 1,
            E::LvNotFound { .. } => 2,
            E::HiddenLv { .. } => 3,
            E::UnsupportedSegment { .. } => 4,
            E::Unsupported { .. } => 5,
            E::MissingPv { .. } => 6,
            E::InvalidMetadata { .. } => 7,
            E::NameTooLong { .. } => 8,
            E::PvDevice { .. } => 9,
            E::TargetMissing { .. } => 10,
            E::DeviceTooSmall { .. } => 11,
            E::TableRejected { .. } => 12,
            E::Busy { .. } => 13,
            E::ShrinkWhileOpen { .. } => 14,
            E::NameTaken { .. } => 15,
            E::ActiveWithOtherTable { .. } => 16,
            E::ActiveUnderOtherName { .. } => 17,
            E::NotActive { .. } => 18,
            E::Dm { .. } => 19,
            E::Node { .. } => 20,
            E::NodeInTheWay { .. } => 21,
            E::Udev { .. } => 22,
            E::ThinTransaction { .. } => 23,
        }
    }
    const VARIANTS: usize = 24;

    #[test]
    fn every_activation_error_has_its_code() {
        let cases = every_activate_error();
        let covered: std::collections::BTreeSet<usize> =
            cases.iter().map(|(e, ..)| variant(e)).collect();
        assert_eq!(
            covered.len(),
            VARIANTS,
            "a variant without a case: {covered:?}"
        );
        for (e, want, word) in cases {
            let what = format!("{e:?}");
            let s: Status =
                EngineError::from(ActivationError::dm(Op::Activate, "vg", Some("lv"), e)).into();
            assert_eq!(s.code(), want, "{what}: {s:?}");
            assert!(s.message().contains(word), "{what}: {s:?}");
        }
    }

    #[test]
    fn daemon_activation_errors() {
        // No device-mapper on this host: not transient.
        let s: Status = EngineError::from(ActivationError::Unavailable(
            "device-mapper is not available (is the dm_mod module loaded?)".into(),
        ))
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("dm_mod"), "{s:?}");
        // The probe's error keeps the variant reconciliation looks for.
        let gone = ActivationError::dm(
            Op::List,
            "vg",
            None,
            ActivateError::DmUnavailable {
                control: "/dev/mapper/control".into(),
                source: errno(libc::ENODEV),
            },
        );
        assert!(matches!(gone, ActivationError::Unavailable(_)), "{gone:?}");
        // Busy keeps the volume's name and who holds it.
        let s: Status = EngineError::from(ActivationError::dm(
            Op::Deactivate,
            "vg",
            Some("lv"),
            ActivateError::Busy {
                device: "vg-lv".into(),
                open_count: 1,
            },
        ))
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(
            s.message().contains("vg/lv") && s.message().contains("vg-lv"),
            "{s:?}"
        );
        // A failed activation whose undo left devices: the failure's own code, and the
        // devices left named in what the client reads.
        let failed = ActivationError::dm(
            Op::Activate,
            "vg",
            Some("lv"),
            ActivateError::TargetMissing {
                device: "vg-lv".into(),
                target: "raid".into(),
            },
        );
        let s: Status = EngineError::from(ActivationError::Incomplete {
            source: Box::new(failed),
            left: vec!["vg-lv_rimage_0".into(), "vg-lv_rmeta_0".into()],
        })
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("dm-raid"), "{s:?}");
        assert!(
            s.message().contains("vg-lv_rimage_0, vg-lv_rmeta_0"),
            "{s:?}"
        );
        let left_busy = ActivationError::Incomplete {
            source: Box::new(ActivationError::dm(
                Op::Activate,
                "vg",
                Some("lv"),
                ActivateError::Udev {
                    why: "timed out".into(),
                },
            )),
            left: vec!["vg-lv".into()],
        };
        assert_eq!(activation_code(&left_busy), Code::Unavailable);
    }

    #[test]
    fn a_mount_left_behind_is_named_with_the_failure_s_code() {
        let s: Status = EngineError::from(NodeError::MountLeft {
            target: "/k/pods/x".into(),
            source: Box::new(NodeError::BadPath {
                path: "/k/pods/x".into(),
                why: "changed while being mounted on".into(),
            }),
            undo: errno(libc::EBUSY),
        })
        .into();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(
            s.message().contains("changed while being mounted on")
                && s.message().contains("left on /k/pods/x"),
            "{s:?}"
        );
    }

    #[test]
    fn no_space_while_wiping_is_resource_exhausted() {
        let e = EngineError::NoSpaceWhileWiping {
            source: LvmError::Alloc {
                vg: "vg".into(),
                source: AllocError::NoSpace {
                    needed: Extents(100),
                    free: Extents(1),
                },
            },
            vg: "vg".into(),
            wiping: crate::units::Bytes(200 << 20),
        };
        assert_eq!(engine_code(&e), Code::ResourceExhausted);
    }
}
