//! The one place where errors become gRPC status codes. The message is the error's own
//! text, which names the object and the value at fault.

use crate::alloc::AllocError;
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

pub fn engine_code(e: &EngineError) -> Code {
    match e {
        EngineError::Lvm(e) => lvm_code(e),
        EngineError::Activation(a) => match a {
            ActivationError::Unavailable(_) => Code::Unavailable,
            ActivationError::Busy { .. } | ActivationError::Unsupported { .. } => {
                Code::FailedPrecondition
            }
            ActivationError::Failed { .. } => Code::Internal,
        },
        EngineError::Node(n) => match n {
            NodeError::BadPath { .. }
            | NodeError::UnsupportedFs { .. }
            | NodeError::BadOption { .. } => Code::InvalidArgument,
            NodeError::NotFound { .. } => Code::NotFound,
            NodeError::Busy { .. } | NodeError::DeviceNotEmpty { .. } => Code::FailedPrecondition,
            NodeError::Command { .. } | NodeError::Probe(_) => Code::Internal,
            NodeError::Io { source, .. } => io_code(source),
        },
        EngineError::NotFound { .. } => Code::NotFound,
        EngineError::AlreadyExists { .. } => Code::AlreadyExists,
        EngineError::InvalidArgument { .. } => Code::InvalidArgument,
        EngineError::OutOfRange { .. } => Code::OutOfRange,
        EngineError::FailedPrecondition { .. } => Code::FailedPrecondition,
        EngineError::Zero { source, .. } => match io_code(source) {
            // A PV that went away, or an I/O error: the call may be retried.
            Code::Internal | Code::NotFound => Code::Unavailable,
            c => c,
        },
        EngineError::NoSpaceWhileWiping { .. } => Code::ResourceExhausted,
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
}
