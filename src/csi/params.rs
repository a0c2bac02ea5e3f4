//! StorageClass parameters and volume capabilities, validated before anything is asked
//! of lvmd. Unknown parameters are refused so a typo never silently falls back to a
//! default.

use super::pb::volume_capability::access_mode::Mode;
use super::pb::volume_capability::AccessType;
use super::pb::VolumeCapability;
use super::status::invalid;
use crate::units::parse_size;
use std::collections::HashMap;
use tonic::Status;

pub const FILESYSTEMS: &[&str] = &["ext4", "xfs"];
pub const DEFAULT_FS: &str = "ext4";

pub const P_DEVICE_CLASS: &str = "deviceClass";
pub const P_LAYOUT: &str = "layout";
pub const P_STRIPES: &str = "stripes";
pub const P_STRIPE_SIZE: &str = "stripeSize";
pub const P_MIRRORS: &str = "mirrors";
pub const P_FS_TYPE: &str = "fsType";
/// `"true"`: a LUKS2-encrypted volume (csi-driver-lvm's parameter); the key comes as
/// the `passphrase` of the node-stage (and node-expand) secret.
pub const P_ENCRYPTION: &str = "encryption";
/// csi-driver-lvm's mirror option: dm-integrity under each copy (lvm2's
/// `--raidintegrity y`); only with layout raid1 (or mirror).
pub const P_INTEGRITY: &str = "integrity";
/// The key of the secret that holds an encrypted volume's passphrase.
pub const SECRET_PASSPHRASE: &str = "passphrase";
pub const PV_NAME: &str = "csi.storage.k8s.io/pv/name";
pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
/// Inline ephemeral volumes: the size attribute, and what kubelet adds to the context.
pub const P_SIZE: &str = "size";
pub const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";
pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
const RESERVED_PREFIX: &str = "csi.storage.k8s.io/";

/// Parameters lvm2 has but lvmd-csi does not offer (yet): refused with that said.
const UNSUPPORTED: &[&str] = &[
    "encrypted",
    "luks",
    "thin",
    "thinPool",
    "mirror",
    "raid",
    "raidLevel",
    "type",
    "cache",
];

/// The StorageClass's `layout` is the API's own enum (`Unspecified`: the device
/// class's default); lvmd translates it into its layout, once.
pub use crate::rpc::pb::Layout;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeParams {
    /// Empty: lvmd's default class.
    pub device_class: String,
    pub layout: Layout,
    /// 0: the class's default.
    pub stripes: u32,
    /// 0: lvmd's default (64 KiB).
    pub stripe_size: u64,
    /// raid1: copies besides the first; 0 for other layouts.
    pub mirrors: u32,
    pub fs_type: Option<String>,
    /// LUKS2 (`encryption: "true"`).
    pub encrypted: bool,
    /// raid1: dm-integrity under each copy; `None`: the device class's default.
    pub integrity: Option<bool>,
    pub pv_name: Option<String>,
    pub pvc_name: Option<String>,
    pub pvc_namespace: Option<String>,
}

pub fn parse(params: &HashMap<String, String>) -> Result<VolumeParams, Status> {
    let mut p = VolumeParams {
        device_class: String::new(),
        layout: Layout::Unspecified,
        stripes: 0,
        stripe_size: 0,
        mirrors: 0,
        fs_type: None,
        encrypted: false,
        integrity: None,
        pv_name: None,
        pvc_name: None,
        pvc_namespace: None,
    };
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    for k in keys {
        let v = params[k].trim();
        match k.as_str() {
            P_DEVICE_CLASS => p.device_class = v.into(),
            P_LAYOUT => {
                p.layout = match v {
                    "linear" => Layout::Linear,
                    "striped" => Layout::Striped,
                    "raid1" | "mirror" => Layout::Raid1,
                    "thin" => Layout::Thin,
                    "" => Layout::Unspecified,
                    other => {
                        return Err(invalid(format!(
                            "parameter {P_LAYOUT}={other:?}: \"linear\", \"striped\", \
                             \"raid1\" (or \"mirror\") and \"thin\" are supported"
                        )))
                    }
                }
            }
            P_STRIPES => {
                p.stripes = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=128).contains(n))
                    .ok_or_else(|| {
                        invalid(format!(
                            "parameter {P_STRIPES}={v:?}: a number from 1 to 128"
                        ))
                    })?
            }
            P_STRIPE_SIZE => {
                let b = parse_size(v)
                    .map_err(|e| invalid(format!("parameter {P_STRIPE_SIZE}={v:?}: {e}")))?;
                // lvmd's own stripe-size rule, so a class it would refuse fails here.
                crate::model::Layout::striped(2, b)
                    .and_then(|l| l.check())
                    .map_err(|e| invalid(format!("parameter {P_STRIPE_SIZE}={v:?}: {}", e.why)))?;
                p.stripe_size = b.0;
            }
            P_MIRRORS => {
                let max = crate::model::layout::MAX_RAID1_LEGS - 1;
                p.mirrors = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        invalid(format!(
                            "parameter {P_MIRRORS}={v:?}: a number from 1 to {max} (copies \
                             besides the first)"
                        ))
                    })?
            }
            P_FS_TYPE | "csi.storage.k8s.io/fstype" => {
                let f = fs_type(v)
                    .map_err(|e| invalid(format!("parameter {k}={v:?}: {}", e.message())))?;
                p.fs_type = Some(f.into())
            }
            P_ENCRYPTION => {
                p.encrypted = parse_bool(v).ok_or_else(|| {
                    invalid(format!(
                        "parameter {P_ENCRYPTION}={v:?}: \"true\" or \"false\""
                    ))
                })?
            }
            P_INTEGRITY => match parse_bool(v) {
                Some(b) => p.integrity = Some(b),
                None => {
                    return Err(invalid(format!(
                        "parameter {P_INTEGRITY}={v:?}: \"true\" or \"false\""
                    )))
                }
            },
            PV_NAME => p.pv_name = Some(v.into()),
            PVC_NAME => p.pvc_name = Some(v.into()),
            PVC_NAMESPACE => p.pvc_namespace = Some(v.into()),
            // Other keys under the reserved prefix are the CO's business, not ours.
            other if other.starts_with("csi.storage.k8s.io/") => {}
            other if UNSUPPORTED.iter().any(|u| u.eq_ignore_ascii_case(other)) => {
                return Err(invalid(format!(
                    "parameter {other:?} is not supported by lvmd-csi: volumes are linear, \
                     striped or raid1, thick (encrypted with {P_ENCRYPTION}: \"true\")"
                )))
            }
            other => {
                return Err(invalid(format!(
                    "unknown parameter {other:?} (known: {P_DEVICE_CLASS}, {P_LAYOUT}, \
                     {P_STRIPES}, {P_STRIPE_SIZE}, {P_MIRRORS}, {P_INTEGRITY}, {P_FS_TYPE}, \
                     {P_ENCRYPTION})"
                )))
            }
        }
    }
    for (layout, word) in [(Layout::Linear, "linear"), (Layout::Thin, "thin")] {
        if p.layout == layout && (p.stripes > 1 || p.stripe_size != 0) {
            return Err(invalid(format!(
                "parameters {P_STRIPES}/{P_STRIPE_SIZE} contradict {P_LAYOUT}={word}"
            )));
        }
    }
    if p.layout == Layout::Unspecified && (p.stripes > 1 || p.stripe_size != 0) {
        p.layout = Layout::Striped;
    }
    if p.layout == Layout::Unspecified && p.mirrors > 0 {
        p.layout = Layout::Raid1;
    }
    if p.mirrors > 0 && p.layout != Layout::Raid1 {
        return Err(invalid(format!(
            "parameter {P_MIRRORS} contradicts {P_LAYOUT}={}",
            p.layout.as_str_name()
        )));
    }
    // Refused rather than dropped: a class that asks for checksummed copies must not
    // get a volume with none, and dm-integrity without a second copy could detect
    // damage but never read the block from elsewhere.
    if p.integrity == Some(true) && p.layout != Layout::Raid1 {
        return Err(invalid(format!(
            "parameter {P_INTEGRITY}=\"true\" needs {P_LAYOUT}=raid1 (or mirror): \
             dm-integrity sits under a mirror's copies, a damaged block read from another; \
             {P_LAYOUT} is {}",
            match p.layout {
                Layout::Linear => "linear",
                Layout::Striped => "striped",
                Layout::Thin => "thin",
                Layout::Raid1 => "raid1",
                Layout::Unspecified => "unset",
            }
        )));
    }
    if p.layout == Layout::Raid1 {
        if p.stripes > 1 || p.stripe_size != 0 {
            return Err(invalid(format!(
                "parameters {P_STRIPES}/{P_STRIPE_SIZE} contradict {P_LAYOUT}=raid1"
            )));
        }
        p.mirrors = p.mirrors.max(1);
    }
    Ok(p)
}

/// `"true"`/`"false"` as Kubernetes writes them (any case).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" | "" => Some(false),
        _ => None,
    }
}

/// Whether a volume context (what CreateVolume returned, or an inline volume's
/// attributes) says the volume is encrypted.
pub fn is_encrypted(ctx: &HashMap<String, String>) -> bool {
    ctx.get(P_ENCRYPTION)
        .and_then(|v| parse_bool(v.trim()))
        .unwrap_or(false)
}

/// The smallest filesystem of `fs` that mkfs makes: mkfs.xfs (xfsprogs 5.19 and later)
/// refuses anything under 300 MiB; ext4 has no floor that matters at extent sizes.
pub fn min_filesystem_bytes(fs: &str) -> u64 {
    if fs == "xfs" {
        300 << 20
    } else {
        0
    }
}

/// Whether kubelet publishes an inline ephemeral volume (no CreateVolume before it).
pub fn is_ephemeral(ctx: &HashMap<String, String>) -> bool {
    ctx.get(EPHEMERAL).is_some_and(|v| v.trim() == "true")
}

/// An inline ephemeral volume's `volumeAttributes`, with the pod kubelet names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EphemeralParams {
    pub volume: VolumeParams,
    /// Bytes asked for (before rounding to whole extents); None: the default size.
    pub size: Option<u64>,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
}

/// The attributes a pod may set on an inline volume: the StorageClass parameters that
/// make sense for it, and `size`. The pod author writes these by hand, so any other key
/// is refused with its value, rather than ignored.
const EPHEMERAL_KEYS: &[&str] = &[
    P_SIZE,
    P_DEVICE_CLASS,
    P_FS_TYPE,
    P_LAYOUT,
    P_STRIPES,
    P_STRIPE_SIZE,
    // LUKS2, as csi-driver-lvm's attribute; the key is the passphrase of the pod's
    // nodePublishSecretRef.
    P_ENCRYPTION,
];

pub fn ephemeral(ctx: &HashMap<String, String>) -> Result<EphemeralParams, Status> {
    let mut rest = HashMap::new();
    let mut e = EphemeralParams {
        volume: parse(&HashMap::new())?,
        size: None,
        pod_namespace: None,
        pod_name: None,
        pod_uid: None,
    };
    let mut keys: Vec<&String> = ctx.keys().collect();
    keys.sort();
    for k in keys {
        let v = ctx[k].trim();
        match k.as_str() {
            P_SIZE => e.size = Some(ephemeral_size(v)?),
            POD_NAMESPACE => e.pod_namespace = Some(v.into()),
            POD_NAME => e.pod_name = Some(v.into()),
            POD_UID => e.pod_uid = Some(v.into()),
            known if EPHEMERAL_KEYS.contains(&known) => {
                rest.insert(k.clone(), v.to_string());
            }
            // kubelet's own keys (the ephemeral flag, the service account, tokens):
            // not ours to check, and never logged.
            other if other.starts_with(RESERVED_PREFIX) => {}
            other => {
                return Err(invalid(format!(
                    "inline ephemeral volume: unknown volumeAttributes key {other:?} \
                     (value {v:?}); known: {}",
                    EPHEMERAL_KEYS.join(", ")
                )))
            }
        }
    }
    e.volume =
        parse(&rest).map_err(|s| invalid(format!("inline ephemeral volume: {}", s.message())))?;
    Ok(e)
}

fn ephemeral_size(v: &str) -> Result<u64, Status> {
    match parse_size(v) {
        Ok(b) if b.0 > 0 => Ok(b.0),
        Ok(_) => Err(invalid(format!(
            "inline ephemeral volume: {P_SIZE}={v:?} must be more than 0"
        ))),
        Err(e) => Err(invalid(format!(
            "inline ephemeral volume: {P_SIZE}={v:?}: {e} (e.g. 1Gi, 512MiB)"
        ))),
    }
}

pub fn fs_type(v: &str) -> Result<&str, Status> {
    match v {
        "" => Ok(DEFAULT_FS),
        f if FILESYSTEMS.contains(&f) => Ok(f),
        other => Err(invalid(format!(
            "filesystem {other:?} is not supported (ext4 or xfs)"
        ))),
    }
}

/// What a capability asks for, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Block,
    Mount { fs_type: String, flags: Vec<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    pub access: Access,
    pub read_only_mode: bool,
}

/// A volume is local to one node: single-node modes only.
/// A request's capability, which the Node calls require.
pub fn required_capability(c: Option<&VolumeCapability>) -> Result<Capability, Status> {
    capability(c.ok_or_else(|| invalid("volume_capability missing"))?)
}

pub fn capability(c: &VolumeCapability) -> Result<Capability, Status> {
    let mode = c
        .access_mode
        .as_ref()
        .ok_or_else(|| invalid("volume capability without access_mode"))?
        .mode();
    let read_only_mode = match mode {
        Mode::SingleNodeWriter | Mode::SingleNodeSingleWriter | Mode::SingleNodeMultiWriter => {
            false
        }
        Mode::SingleNodeReaderOnly => true,
        other => {
            return Err(invalid(format!(
                "access mode {} is not supported: lvmd volumes are local to one node",
                other.as_str_name()
            )))
        }
    };
    let access = match c
        .access_type
        .as_ref()
        .ok_or_else(|| invalid("volume capability without access_type (block or mount)"))?
    {
        AccessType::Block(_) => Access::Block,
        AccessType::Mount(m) => Access::Mount {
            fs_type: fs_type(&m.fs_type)?.into(),
            flags: m.mount_flags.clone(),
        },
    };
    Ok(Capability {
        access,
        read_only_mode,
    })
}

pub fn capabilities(cs: &[VolumeCapability]) -> Result<Vec<Capability>, Status> {
    if cs.is_empty() {
        return Err(invalid("volume_capabilities missing"));
    }
    cs.iter().map(capability).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kv: &[(&str, &str)]) -> Result<VolumeParams, Status> {
        parse(
            &kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn parameters() {
        let v = p(&[("deviceClass", "ssd"), ("stripes", "2"), (PV_NAME, "pvc-1")]).unwrap();
        assert_eq!(v.layout, Layout::Striped);
        assert_eq!((v.stripes, v.pv_name.as_deref()), (2, Some("pvc-1")));
        assert_eq!(
            p(&[("stripeSize", "128KiB")]).unwrap().stripe_size,
            128 << 10
        );
        let code = |kv: &[(&str, &str)]| p(kv).unwrap_err().code();
        assert_eq!(code(&[("colour", "red")]), tonic::Code::InvalidArgument);
        assert_eq!(code(&[("layout", "thick")]), tonic::Code::InvalidArgument);
        assert_eq!(p(&[("layout", "thin")]).unwrap().layout, Layout::Thin);
        assert_eq!(
            code(&[("layout", "thin"), ("stripes", "2")]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(&[("layout", "thin"), ("mirrors", "1")]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(code(&[("stripes", "0")]), tonic::Code::InvalidArgument);
        // raid1: one mirror unless said; mirrors alone mean raid1; no stripes with it.
        let m = p(&[("layout", "raid1")]).unwrap();
        assert_eq!((m.layout, m.mirrors), (Layout::Raid1, 1));
        let m = p(&[("layout", "mirror"), ("mirrors", "2")]).unwrap();
        assert_eq!((m.layout, m.mirrors), (Layout::Raid1, 2));
        assert_eq!(p(&[("mirrors", "1")]).unwrap().layout, Layout::Raid1);
        assert_eq!(
            code(&[("layout", "raid1"), ("stripes", "2")]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(&[("layout", "linear"), ("mirrors", "1")]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(code(&[("mirrors", "0")]), tonic::Code::InvalidArgument);
        assert_eq!(code(&[("mirrors", "64")]), tonic::Code::InvalidArgument);
        assert_eq!(
            code(&[("stripeSize", "3000")]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(&[("layout", "linear"), ("stripes", "2")]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(code(&[("fsType", "btrfs")]), tonic::Code::InvalidArgument);
        // Encryption is a flag.
        assert!(p(&[("encryption", "true")]).unwrap().encrypted);
        assert!(p(&[("encryption", "TRUE")]).unwrap().encrypted);
        assert!(!p(&[("encryption", "false")]).unwrap().encrypted);
        assert!(!p(&[]).unwrap().encrypted);
        let e = p(&[("encryption", "yes")]).unwrap_err();
        assert!(e.message().contains("encryption"), "{e:?}");
        let e = p(&[("luks", "true")]).unwrap_err();
        assert!(e.message().contains("not supported"), "{e:?}");
        assert!(p(&[("csi.storage.k8s.io/whatever", "x")]).is_ok());
        // Integrity: a flag of mirrors, on or off (unset: the class's), refused with
        // any other layout naming it; anything else is no flag.
        let off = p(&[("layout", "raid1"), ("integrity", "false")]).unwrap();
        assert_eq!((off.layout, off.integrity), (Layout::Raid1, Some(false)));
        let on = p(&[("layout", "mirror"), ("integrity", "true")]).unwrap();
        assert_eq!((on.layout, on.integrity), (Layout::Raid1, Some(true)));
        let on = p(&[("mirrors", "2"), ("integrity", "true")]).unwrap();
        assert_eq!(
            (on.layout, on.mirrors, on.integrity),
            (Layout::Raid1, 2, Some(true))
        );
        assert_eq!(p(&[("layout", "raid1")]).unwrap().integrity, None);
        for layout in ["linear", "striped", "thin"] {
            let e = p(&[("layout", layout), ("integrity", "true")]).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message().contains("needs layout=raid1") && e.message().contains(layout),
                "{e:?}"
            );
        }
        let e = p(&[("integrity", "true")]).unwrap_err();
        assert!(e.message().contains("layout is unset"), "{e:?}");
        assert!(p(&[("layout", "linear"), ("integrity", "false")]).is_ok());
        let e = p(&[("integrity", "maybe")]).unwrap_err();
        assert!(e.message().contains("\"true\" or \"false\""), "{e:?}");
    }

    fn eph(kv: &[(&str, &str)]) -> Result<EphemeralParams, Status> {
        ephemeral(
            &kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn ephemeral_attributes() {
        let e = eph(&[
            (EPHEMERAL, "true"),
            ("size", "512Mi"),
            ("deviceClass", "wide"),
            ("fsType", "xfs"),
            ("stripes", "2"),
            (POD_NAME, "web-0"),
            (POD_NAMESPACE, "team-a"),
            (POD_UID, "u-1"),
            ("csi.storage.k8s.io/serviceAccount.name", "default"),
        ])
        .unwrap();
        assert_eq!(e.size, Some(512 << 20));
        assert_eq!(e.volume.device_class, "wide");
        assert_eq!(e.volume.fs_type.as_deref(), Some("xfs"));
        assert_eq!((e.volume.layout, e.volume.stripes), (Layout::Striped, 2));
        assert_eq!(e.pod_name.as_deref(), Some("web-0"));
        assert_eq!(e.pod_namespace.as_deref(), Some("team-a"));
        assert_eq!(e.pod_uid.as_deref(), Some("u-1"));
        let none = eph(&[]).unwrap();
        assert_eq!((none.size, none.volume.layout), (None, Layout::Unspecified));
        assert_eq!(eph(&[("size", "1Gi")]).unwrap().size, Some(1 << 30));
        assert_eq!(eph(&[("size", "3GiB")]).unwrap().size, Some(3 << 30));
        // Every refusal names the key and the value.
        for (k, v) in [
            ("colour", "red"),
            ("size", "lots"),
            ("size", "0"),
            ("size", "1Qi"),
            ("fsType", "btrfs"),
            ("layout", "thick"),
            ("stripes", "0"),
        ] {
            let s = eph(&[(k, v)]).unwrap_err();
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{k}={v}");
            let m = s.message();
            let key = k.rsplit('/').next().unwrap();
            assert!(m.contains(key) && m.contains(v), "{k}={v}: {m}");
        }
        assert!(is_ephemeral(
            &[(EPHEMERAL.to_string(), "true".to_string())].into()
        ));
        assert!(!is_ephemeral(
            &[(EPHEMERAL.to_string(), "false".to_string())].into()
        ));
        assert!(!is_ephemeral(&HashMap::new()));
    }
}
