//! lvmd's gRPC codes to CSI's, in one place.
//!
//! lvmd already answers in the codes CSI wants for the same situations (NOT_FOUND,
//! ALREADY_EXISTS, OUT_OF_RANGE, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ...), so most
//! pass through; what CSI gives another meaning to is translated here.

use tonic::{Code, Status};

/// `what` names the lvmd call and its object, for the message.
pub fn from_lvmd(s: Status, what: &str) -> Status {
    let code = match s.code() {
        Code::NotFound => Code::NotFound,
        Code::AlreadyExists => Code::AlreadyExists,
        Code::InvalidArgument => Code::InvalidArgument,
        Code::OutOfRange => Code::OutOfRange,
        Code::ResourceExhausted => Code::ResourceExhausted,
        Code::FailedPrecondition => Code::FailedPrecondition,
        // lvmd could not get a lock or the kernel, or is not reachable (tonic reports a
        // broken connection as UNKNOWN or UNAVAILABLE): the CO retries.
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            Code::Unavailable
        }
        // An encrypted volume's key that does not open it (lvmd's CryptError::WrongKey
        // text): the secret is wrong, said as such.
        Code::PermissionDenied if wrong_key(&s) => Code::PermissionDenied,
        // The plugin is not among lvmd's allowed peers: a deployment fault, not the
        // CO's; retrying does not help.
        Code::PermissionDenied | Code::Unauthenticated => Code::FailedPrecondition,
        _ => Code::Internal,
    };
    let hint = match s.code() {
        Code::PermissionDenied if wrong_key(&s) => {
            " (the secret's passphrase is not this volume's key)"
        }
        Code::PermissionDenied | Code::Unauthenticated => {
            " (add the plugin's uid/gid to allowed_uids/allowed_gids in lvmd.toml)"
        }
        _ => "",
    };
    Status::new(code, format!("lvmd {what}: {}{hint}", s.message()))
}

/// Whether lvmd refused a key (its only PERMISSION_DENIED besides refusing the peer).
fn wrong_key(s: &Status) -> bool {
    s.message().contains("no keyslot opens with the given key")
}

pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let m = |c| from_lvmd(Status::new(c, "x"), "op").code();
        assert_eq!(m(Code::NotFound), Code::NotFound);
        assert_eq!(m(Code::OutOfRange), Code::OutOfRange);
        assert_eq!(m(Code::Unknown), Code::Unavailable);
        assert_eq!(m(Code::PermissionDenied), Code::FailedPrecondition);
        let wrong = from_lvmd(
            Status::permission_denied("/dev/x: no keyslot opens with the given key"),
            "MountVolume",
        );
        assert_eq!(wrong.code(), Code::PermissionDenied);
        assert!(!wrong.message().contains("allowed_uids"), "{wrong:?}");
        assert_eq!(m(Code::DataLoss), Code::Internal);
        let s = from_lvmd(Status::not_found("no lv x"), "GetLogicalVolume ssd/x");
        assert_eq!(s.message(), "lvmd GetLogicalVolume ssd/x: no lv x");
    }
}
