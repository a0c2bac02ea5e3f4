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
pub(crate) use redacted_debug;

redacted_debug!(pb::MountVolumeRequest {
    volume, target_path, fs_type, mount_options, read_only
} secret { passphrase });
redacted_debug!(pb::PublishBlockRequest { volume, target_path, read_only } secret { passphrase });
redacted_debug!(pb::ExpandVolumeRequest { volume, size_bytes, target_path } secret { passphrase });

#[cfg(test)]
mod tests {
    use super::pb;

    #[test]
    fn requests_with_a_key_never_print_it() {
        let r = pb::MountVolumeRequest {
            target_path: "/t".into(),
            passphrase: b"hunter2-secret".to_vec(),
            ..Default::default()
        };
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
        let p = pb::PublishBlockRequest {
            passphrase: b"hunter2".to_vec(),
            ..Default::default()
        };
        let e = pb::ExpandVolumeRequest {
            passphrase: b"hunter2".to_vec(),
            ..Default::default()
        };
        for shown in [format!("{p:?}"), format!("{e:?}")] {
            assert!(
                !shown.contains("104") && shown.contains("<redacted>"),
                "{shown}"
            );
        }
    }
}
