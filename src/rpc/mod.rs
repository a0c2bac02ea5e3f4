//! The contract between lvmd and its clients (`proto/lvmd.proto`): the generated types
//! and a connector to lvmd's unix socket. The server (`api`), lvmd-ctl and
//! lvmd-csi all speak it; none of them reaches into another for it.

pub mod client;

pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("lvmd.v1");
}

/// `Debug` for a generated message that carries a key or secrets (build.rs skips
/// prost's derived one): the listed fields as they are, the secret ones only as
/// `<redacted>`, so no log line, error or panic message can show them.
macro_rules! redacted_debug {
    ($ty:ty { $($field:ident),* } secret { $($secret:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct(stringify!($ty));
                $(d.field(stringify!($field), &self.$field);)*
                $(d.field(stringify!($secret), &"<redacted>");)*
                d.finish()
            }
        }
    };
}

/// A `Drop` that zeroes a message's secret fields, so a key moved into a request
/// (lvmd-ctl's key file, the CSI plugin's secret) or decoded from one is not left in
/// freed memory. (What tonic and h2 copy into their own buffers for the wire is beyond
/// this.) Such a message is built field by field: Rust has no `..Default` for it.
macro_rules! zeroed_on_drop {
    ($ty:ty { $($secret:ident),* }) => {
        impl Drop for $ty {
            fn drop(&mut self) {
                $($crate::rpc::WipeSecret::wipe(&mut self.$secret);)*
            }
        }
    };
}
pub(crate) use redacted_debug;

/// A secret field zeroed in place (its whole allocation, spare capacity included).
pub trait WipeSecret {
    fn wipe(&mut self);
}

impl WipeSecret for Vec<u8> {
    fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(self);
    }
}

/// CSI's `secrets`: every value (the keys are names like `passphrase`).
impl WipeSecret for std::collections::HashMap<String, String> {
    fn wipe(&mut self) {
        self.values_mut().for_each(zeroize::Zeroize::zeroize);
    }
}

redacted_debug!(pb::MountVolumeRequest {
    volume, target_path, fs_type, mount_options, read_only
} secret { passphrase });
redacted_debug!(pb::PublishBlockRequest { volume, target_path, read_only } secret { passphrase });
redacted_debug!(pb::ExpandVolumeRequest { volume, size_bytes, target_path } secret { passphrase });
redacted_debug!(pb::RekeyVolumeRequest { volume } secret { passphrase, new_passphrase });
zeroed_on_drop!(pb::MountVolumeRequest { passphrase });
zeroed_on_drop!(pb::PublishBlockRequest { passphrase });
zeroed_on_drop!(pb::ExpandVolumeRequest { passphrase });
zeroed_on_drop!(pb::RekeyVolumeRequest {
    passphrase,
    new_passphrase
});

#[cfg(test)]
mod tests {
    use super::pb;

    #[test]
    fn requests_with_a_key_never_print_it() {
        // Built field by field: a message with a zeroing Drop has no `..Default`.
        let mut r = pb::MountVolumeRequest::default();
        r.target_path = "/t".into();
        r.passphrase = b"hunter2-secret".to_vec();
        let shown = format!("{r:?} {r:#?}");
        assert!(
            shown.contains("/t") && shown.contains("<redacted>"),
            "{shown}"
        );
        // Neither the text nor its bytes as prost would print them (104 = 'h').
        assert!(
            !shown.contains("hunter2") && !shown.contains("104"),
            "{shown}"
        );
        let mut p = pb::PublishBlockRequest::default();
        p.passphrase = b"hunter2".to_vec();
        let mut e = pb::ExpandVolumeRequest::default();
        e.passphrase = b"hunter2".to_vec();
        let mut k = pb::RekeyVolumeRequest::default();
        k.passphrase = b"hunter2".to_vec();
        k.new_passphrase = b"hunter3".to_vec();
        for shown in [format!("{p:?}"), format!("{e:?}"), format!("{k:#?}")] {
            assert!(
                !shown.contains("104") && shown.contains("<redacted>"),
                "{shown}"
            );
        }
    }
}
