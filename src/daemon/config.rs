//! `/etc/lvmd/lvmd.toml`: where the socket is and who may use it, where lvmd may mount,
//! and the device classes (a name for a VG, and where its PVs come from).
//!
//! A bad file is refused at start with a message naming the key; unknown keys are
//! errors, not ignored, so a typo does not silently fall back to a default.
//!
//! ```toml
//! socket = "/run/lvmd/lvmd.sock"
//! socket_group = "lvmd"            # group that may connect (mode 0660)
//! allowed_uids = [0]
//! allowed_gids = []
//! mount_roots = ["/var/lib/kubelet"]
//! inline_wipe_limit = "1GiB"       # larger removed volumes are zeroed in the background
//!
//! [device_classes.ssd]
//! volume_group = "lvmd-ssd"
//! default = true
//! devices = ["/dev/disk/by-id/nvme-*"]   # globs: PVs to create the VG from, or add
//! stripes = 1
//!
//! [device_classes.trial]
//! volume_group = "lvmd-trial"
//! loop_file = { path = "/var/lib/lvmd/trial.img", size = "10GiB" }
//!
//! [device_classes.thin]           # volumes of this class are thin (docs/thin.md)
//! volume_group = "lvmd-thin"
//! devices = ["/dev/disk/by-id/nvme-B*"]
//! thin_pool = { name = "pool0", size = "90%", overprovision_ratio = 5.0 }
//! ```

use crate::model::name::validate_vg_name;
use crate::socket::AccessPolicy;
use crate::units::{deserialize_size as size, Bytes};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/lvmd/lvmd.toml";
pub const DEFAULT_SOCKET: &str = "/run/lvmd/lvmd.sock";
pub const DEFAULT_MOUNT_ROOT: &str = "/var/lib/kubelet";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Group owning the socket (name or number); `None`: root's group.
    #[serde(default)]
    pub socket_group: Option<String>,
    /// Peers (by SO_PEERCRED) allowed to talk to the daemon besides root.
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
    #[serde(default)]
    pub allowed_gids: Vec<u32>,
    /// Root (uid 0) may always connect unless this is false.
    #[serde(default = "yes")]
    pub allow_root: bool,
    #[serde(default = "default_roots")]
    pub mount_roots: Vec<PathBuf>,
    #[serde(default = "default_backup_dir")]
    pub backup_dir: PathBuf,
    #[serde(default = "default_archive_dir")]
    pub archive_dir: PathBuf,
    #[serde(default = "default_lock_dir")]
    pub lock_dir: PathBuf,
    /// lvm2's devices file (lvm.conf `devices/devicesfile` in `/etc/lvm/devices`): when
    /// it exists, lvmd lists the PVs it creates there, as lvm2's pvcreate does.
    #[serde(default = "default_devices_file")]
    pub lvm2_devices_file: PathBuf,
    /// Globs of further devices to look for PVs on (the classes' devices always are).
    #[serde(default)]
    pub scan_devices: Vec<String>,
    /// How often capacity is re-read to notice changes made by others (lvm2).
    #[serde(default = "default_poll")]
    pub capacity_poll_seconds: u64,
    /// Removed volumes up to this size are zeroed before DeleteVolume returns; larger
    /// ones in the background, their space held until they are zeros.
    #[serde(default = "default_inline_wipe", deserialize_with = "size")]
    pub inline_wipe_limit: Bytes,
    #[serde(default)]
    pub device_classes: BTreeMap<String, DeviceClass>,
    /// Let clients create, remove, resize, activate and mount volumes of VGs that are no
    /// device class's (any VG on a scanned device). Off: such VGs can be read only.
    #[serde(default)]
    pub manage_other_volume_groups: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceClass {
    pub volume_group: String,
    #[serde(default)]
    pub default: bool,
    /// Globs: devices the VG is created from at start, or extended with when new ones
    /// appear (blank devices or PVs outside any VG; anything else is left alone).
    #[serde(default)]
    pub devices: Vec<String>,
    /// A sparse file attached as a loop device and used as a PV: for trial clusters.
    #[serde(default)]
    pub loop_file: Option<LoopFile>,
    /// Stripes for volumes created without a layout (1: linear).
    #[serde(default = "one")]
    pub stripes: u32,
    #[serde(default = "default_stripe_size", deserialize_with = "size")]
    pub stripe_size: Bytes,
    /// The metadata area of each PV lvmd creates for this class. Unset: 16 MiB on
    /// devices of 4 GiB or more (some 10,000 volumes), lvm2's 1020 KiB on smaller ones
    /// (some 1,500). An area cannot be grown once the PV exists.
    #[serde(default, deserialize_with = "opt_size")]
    pub metadata_size: Option<Bytes>,
    /// Cipher and PBKDF of the LUKS2 volumes of this class (created `encrypted`);
    /// unset: [`LuksConfig::default`] (docs/encryption.md, Settings).
    #[serde(default)]
    pub encryption: Option<crate::crypt::LuksConfig>,
    /// Repair this class's degraded mirrors without being asked (as lvm2's
    /// `raid_fault_policy = "allocate"`): an active raid1 volume with a leg lost is
    /// repaired onto another PV of the VG (see [`super::auto_repair`]). Off: only by
    /// request (RepairLogicalVolume, `lvmd-ctl lv repair`).
    #[serde(default)]
    pub auto_repair: bool,
    /// Its mirrors (raid1 volumes) get dm-integrity under each copy, as lvm2's
    /// `--raidintegrity y`, unless a request says otherwise: a block one copy returns
    /// damaged is detected and read from another, at the cost of each leg's checksums
    /// and journal (some 4 MiB per 500 MiB plus 4 to 64 MiB) and slower writes.
    #[serde(default)]
    pub integrity: bool,
    /// The class's thin pool: created at start if absent (or lvm2's adopted), and its
    /// volumes are thin unless a request names another layout.
    #[serde(default)]
    pub thin_pool: Option<ThinPoolConfig>,
}

/// A device class's thin pool (`lvcreate --type thin-pool` with these options).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThinPoolConfig {
    /// The pool LV's name in the class's VG.
    pub name: String,
    /// The pool's data size: a size (`"100GiB"`, bytes) or a share of the VG
    /// (`"90%"`, of its size when the pool is made; the metadata and its spare come
    /// out of the rest).
    pub size: PoolSize,
    /// Unset: lvm2's choice (64 KiB, doubled while the metadata would pass 128 MiB).
    #[serde(default, deserialize_with = "opt_size")]
    pub chunk_size: Option<Bytes>,
    /// The pool's metadata LV (`_tmeta`); unset: lvm2's estimate (64 bytes a chunk).
    #[serde(default, deserialize_with = "opt_size")]
    pub metadata_size: Option<Bytes>,
    /// Zero each block on first write. On by default: off, a new volume reads
    /// whatever a removed one left in the parts of a block it has not written.
    #[serde(default = "yes")]
    pub zero: bool,
    /// `passdown` (lvm2's default), `nopassdown` or `ignore`.
    #[serde(default = "default_discards")]
    pub discards: String,
    /// The sum of the thin volumes' sizes may reach this many times the pool's data
    /// size; a volume created or grown past it is refused.
    #[serde(default = "default_overprovision")]
    pub overprovision_ratio: f64,
    /// New volumes are refused while the pool's data or metadata is this full (the
    /// kernel's count), so writers of the existing ones keep the rest.
    #[serde(default = "default_usage_limit")]
    pub usage_limit_percent: u32,
    /// Grow the pool by itself once dm-thin counts its data or metadata at least this
    /// full (lvm2's `thin_pool_autoextend_threshold`); 100, the default, never.
    #[serde(default = "default_autoextend_threshold")]
    pub autoextend_threshold_percent: u32,
    /// By how much of its size the part that reached the threshold grows (lvm2's
    /// `thin_pool_autoextend_percent`).
    #[serde(default = "default_autoextend_percent")]
    pub autoextend_percent: u32,
}

/// A thin pool's size as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolSize {
    Bytes(Bytes),
    /// Percent of the VG's size, 1..=100.
    Percent(u32),
}

impl<'de> Deserialize<'de> for PoolSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PoolSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(PoolSize::Bytes(Bytes(n))),
            Raw::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .map(PoolSize::Percent)
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "{t:?}: a share of the volume group is 1% to 100%"
                        ))
                    }),
                None => crate::units::parse_size(&t)
                    .map(PoolSize::Bytes)
                    .map_err(serde::de::Error::custom),
            },
        }
    }
}

impl ThinPoolConfig {
    pub fn discards(&self) -> Option<crate::lvm::thin::PoolDiscards> {
        use crate::lvm::thin::PoolDiscards;
        match self.discards.as_str() {
            "passdown" => Some(PoolDiscards::Passdown),
            "nopassdown" => Some(PoolDiscards::NoPassdown),
            "ignore" => Some(PoolDiscards::Ignore),
            _ => None,
        }
    }

    /// The pool as `Edit::CreateThinPool` makes it, for a VG of `vg_size`.
    pub fn spec(&self, vg_size: Bytes) -> crate::lvm::thin::ThinPoolSpec {
        let data_size = match self.size {
            PoolSize::Bytes(b) => b,
            PoolSize::Percent(p) => Bytes(vg_size.0 / 100 * u64::from(p)),
        };
        crate::lvm::thin::ThinPoolSpec {
            name: self.name.clone(),
            data_size,
            chunk_size: self.chunk_size.map(|c| c.to_sectors_floor()),
            metadata_size: self.metadata_size,
            zero_new_blocks: self.zero,
            discards: self.discards().unwrap_or_default(),
            tags: vec![],
        }
    }

    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        crate::model::name::validate_lv_name(&self.name)
            .map_err(|e| (key("name"), e.to_string()))?;
        if self.discards().is_none() {
            return Err((
                key("discards"),
                format!(
                    "{:?}: must be passdown, nopassdown or ignore",
                    self.discards
                ),
            ));
        }
        if !(self.overprovision_ratio.is_finite() && self.overprovision_ratio >= 1.0) {
            return Err((
                key("overprovision_ratio"),
                format!(
                    "{}: must be at least 1 (1: no overcommit)",
                    self.overprovision_ratio
                ),
            ));
        }
        if !(1..=100).contains(&self.usage_limit_percent) {
            return Err((
                key("usage_limit_percent"),
                format!("{}: must be 1 to 100", self.usage_limit_percent),
            ));
        }
        if !(1..=100).contains(&self.autoextend_threshold_percent) {
            return Err((
                key("autoextend_threshold_percent"),
                format!(
                    "{}: must be 1 to 100 (100: never grow by itself)",
                    self.autoextend_threshold_percent
                ),
            ));
        }
        if !(1..=1000).contains(&self.autoextend_percent) {
            return Err((
                key("autoextend_percent"),
                format!("{}: must be 1 to 1000", self.autoextend_percent),
            ));
        }
        if let Some(c) = self.chunk_size {
            if c.0 % 512 != 0 {
                return Err((key("chunk_size"), format!("{}: must be whole sectors", c.0)));
            }
        }
        // The pool's own rules (chunk and metadata bounds), with any data size.
        self.spec(Bytes(1 << 30))
            .check()
            .map_err(|e| (key("thin_pool"), e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopFile {
    pub path: PathBuf,
    #[serde(deserialize_with = "size")]
    pub size: Bytes,
}

fn default_socket() -> PathBuf {
    DEFAULT_SOCKET.into()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_roots() -> Vec<PathBuf> {
    vec![DEFAULT_MOUNT_ROOT.into()]
}
fn default_backup_dir() -> PathBuf {
    crate::store::backup::DEFAULT_BACKUP_DIR.into()
}
fn default_archive_dir() -> PathBuf {
    crate::store::backup::DEFAULT_ARCHIVE_DIR.into()
}
fn default_lock_dir() -> PathBuf {
    crate::store::lock::DEFAULT_LOCK_DIR.into()
}
fn default_devices_file() -> PathBuf {
    crate::store::devices_file::DevicesFileLocation::default().path()
}
fn default_poll() -> u64 {
    30
}
fn default_inline_wipe() -> Bytes {
    crate::daemon::wipe::DEFAULT_INLINE_LIMIT
}
fn default_discards() -> String {
    "passdown".into()
}
fn default_overprovision() -> f64 {
    10.0
}
fn default_usage_limit() -> u32 {
    90
}
fn default_autoextend_threshold() -> u32 {
    100
}
fn default_autoextend_percent() -> u32 {
    20
}
fn default_stripe_size() -> Bytes {
    crate::model::layout::DEFAULT_STRIPE_SIZE.to_bytes()
}

/// An optional size, as [`size`] takes it.
fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
    size(d).map(Some)
}

impl Default for Config {
    fn default() -> Self {
        Config::parse("").expect("the empty config is valid")
    }
}

/// A refused configuration: which file, which key, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    /// Dotted path of the key at fault (`device_classes.ssd.stripes`), or `(file)`.
    pub key: String,
    pub message: String,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text).map_err(|e| ConfigError {
            file: path.display().to_string(),
            ..e
        })
    }

    /// Parses and checks a config text (`file` in errors is `(text)`).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let err = |key: String, message: String| ConfigError {
            file: "(text)".into(),
            key,
            message,
        };
        let line_of = |span: Option<std::ops::Range<usize>>| {
            span.map(|s| {
                format!(
                    " (line {})",
                    text[..s.start.min(text.len())].matches('\n').count() + 1
                )
            })
            .unwrap_or_default()
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            err(
                "(syntax)".into(),
                format!("{}{}", e.message(), line_of(e.span())),
            )
        })?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            err(
                if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                format!("{}{}", inner.message(), line_of(inner.span())),
            )
        })?;
        config.check().map_err(|(k, m)| err(k, m))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), (String, String)> {
        let plain_abs = |key: &str, p: &Path| {
            if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
                Err((
                    key.to_owned(),
                    format!(
                        "{:?} must be an absolute path without '..'",
                        p.display().to_string()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        plain_abs("socket", &self.socket)?;
        if self.mount_roots.is_empty() {
            return Err((
                "mount_roots".into(),
                "must name at least one directory".into(),
            ));
        }
        for (i, r) in self.mount_roots.iter().enumerate() {
            plain_abs(&format!("mount_roots[{i}]"), r)?;
            if r == Path::new("/") {
                return Err((
                    format!("mount_roots[{i}]"),
                    "\"/\" would allow mounting anywhere".into(),
                ));
            }
        }
        plain_abs("backup_dir", &self.backup_dir)?;
        plain_abs("archive_dir", &self.archive_dir)?;
        plain_abs("lock_dir", &self.lock_dir)?;
        plain_abs("lvm2_devices_file", &self.lvm2_devices_file)?;
        if self.lvm2_devices_file.file_name().is_none() {
            return Err((
                "lvm2_devices_file".into(),
                "must name a file, not a directory".into(),
            ));
        }
        if self.capacity_poll_seconds == 0 {
            return Err(("capacity_poll_seconds".into(), "must be at least 1".into()));
        }
        let mut vgs: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, class) in &self.device_classes {
            let key = |k: &str| format!("device_classes.{name}.{k}");
            validate_vg_name(name).map_err(|e| {
                (
                    format!("device_classes.{name}"),
                    format!("invalid device class name: {}", e.why),
                )
            })?;
            validate_vg_name(&class.volume_group)
                .map_err(|e| (key("volume_group"), e.to_string()))?;
            if let Some(other) = vgs.insert(&class.volume_group, name) {
                return Err((
                    key("volume_group"),
                    format!(
                        "{} is already the volume group of device class {other}",
                        class.volume_group
                    ),
                ));
            }
            if let Some(m) = class.metadata_size {
                // lvm2 takes no less than this; more than 1 GiB of text no lvm2 or lvmd
                // would read back quickly.
                if m < Bytes(64 << 10) || m > Bytes(1 << 30) {
                    return Err((
                        key("metadata_size"),
                        format!("{} is outside 64KiB..1GiB", m.0),
                    ));
                }
            }
            if class.stripes == 0 {
                return Err((key("stripes"), "must be at least 1".into()));
            }
            if let Some(luks) = &class.encryption {
                luks.validate()
                    .map_err(|e| (key("encryption"), e.to_string()))?;
            }
            // The one stripe-size rule, whether or not this class stripes by default.
            crate::model::Layout::striped(2, class.stripe_size)
                .and_then(|l| l.check())
                .map_err(|e| (key("stripe_size"), format!("{}: {}", e.value, e.why)))?;
            for (i, g) in class.devices.iter().enumerate() {
                glob::Pattern::new(g).map_err(|e| {
                    (
                        format!("{}[{i}]", key("devices")),
                        format!("bad glob {g:?}: {e}"),
                    )
                })?;
            }
            if let Some(t) = &class.thin_pool {
                t.check(&|k| key(&format!("thin_pool.{k}")))?;
            }
            if let Some(l) = &class.loop_file {
                plain_abs(&key("loop_file.path"), &l.path)?;
                if l.size.0 < 8 << 20 {
                    return Err((key("loop_file.size"), "must be at least 8MiB".into()));
                }
            }
        }
        for (i, g) in self.scan_devices.iter().enumerate() {
            glob::Pattern::new(g)
                .map_err(|e| (format!("scan_devices[{i}]"), format!("bad glob {g:?}: {e}")))?;
        }
        let defaults: Vec<&String> = self
            .device_classes
            .iter()
            .filter(|(_, c)| c.default)
            .map(|(n, _)| n)
            .collect();
        if defaults.len() > 1 {
            return Err((
                format!("device_classes.{}.default", defaults[1]),
                format!(
                    "only one device class can be the default ({} already is)",
                    defaults[0]
                ),
            ));
        }
        if defaults.is_empty() && self.device_classes.len() > 1 {
            return Err((
                "device_classes".into(),
                "with more than one device class, mark one `default = true`".into(),
            ));
        }
        Ok(())
    }

    /// Who may connect to the API socket.
    pub fn access_policy(&self) -> AccessPolicy {
        AccessPolicy {
            allow_root: self.allow_root,
            uids: self.allowed_uids.clone(),
            gids: self.allowed_gids.clone(),
        }
    }

    /// The default device class's name (the only one, or the one marked default).
    pub fn default_class(&self) -> Option<&str> {
        self.device_classes
            .iter()
            .find(|(_, c)| c.default)
            .or_else(|| {
                (self.device_classes.len() == 1)
                    .then(|| self.device_classes.iter().next())
                    .flatten()
            })
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
socket = "/run/lvmd/test.sock"
socket_group = "lvmd"
allowed_uids = [1000]
allowed_gids = [2000]
mount_roots = ["/var/lib/kubelet", "/mnt/extra"]

[device_classes.ssd]
volume_group = "vg-ssd"
default = true
devices = ["/dev/disk/by-id/nvme-*"]
stripes = 2
stripe_size = "128KiB"
metadata_size = "64MiB"

[device_classes.trial]
volume_group = "vg-trial"
loop_file = { path = "/var/lib/lvmd/trial.img", size = "1GiB" }
"#;

    #[test]
    fn good_file() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/lvmd/test.sock"));
        assert_eq!(c.allowed_uids, vec![1000]);
        assert!(c.allow_root);
        assert_eq!(c.default_class(), Some("ssd"));
        let ssd = &c.device_classes["ssd"];
        assert_eq!((ssd.stripes, ssd.stripe_size), (2, Bytes(128 << 10)));
        assert_eq!(ssd.metadata_size, Some(Bytes(64 << 20)));
        assert_eq!(c.device_classes["trial"].metadata_size, None);
        assert_eq!(
            c.device_classes["trial"].loop_file.as_ref().unwrap().size,
            Bytes(1 << 30)
        );
        assert_eq!(c.device_classes["trial"].stripe_size, Bytes(64 << 10));
        let d = Config::default();
        assert_eq!(d.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(d.mount_roots, vec![PathBuf::from(DEFAULT_MOUNT_ROOT)]);
        assert_eq!(d.inline_wipe_limit, Bytes(1 << 30));
        let c = Config::parse("inline_wipe_limit = \"64MiB\"").unwrap();
        assert_eq!(c.inline_wipe_limit, Bytes(64 << 20));
        let e = Config::parse("inline_wipe_limit = \"lots\"").unwrap_err();
        assert!(e.to_string().contains("inline_wipe_limit"), "{e}");
    }

    /// The NVMe open flags are per class, both forms of TOML, off where unset; a bad
    /// value names the class's key.
    #[test]
    fn workqueue_flags_are_per_class_and_off_by_default() {
        let c = Config::parse(
            "[device_classes.nvme]\nvolume_group = \"vg-n\"\ndefault = true\n\
             encryption = { no_read_workqueue = true, no_write_workqueue = true }\n\
             [device_classes.hdd]\nvolume_group = \"vg-h\"\n\
             [device_classes.hdd.encryption]\nno_write_workqueue = true\n\
             [device_classes.plain]\nvolume_group = \"vg-p\"\n",
        )
        .unwrap();
        let opts = |class: &str| {
            c.device_classes[class]
                .encryption
                .as_ref()
                .map(|l| l.open_options())
        };
        let n = opts("nvme").unwrap();
        assert!(n.no_read_workqueue && n.no_write_workqueue);
        let h = opts("hdd").unwrap();
        assert!(!h.no_read_workqueue && h.no_write_workqueue);
        assert_eq!(opts("plain"), None);
        let e = Config::parse(
            "[device_classes.a]\nvolume_group = \"v\"\n\
             encryption = { no_read_workqueue = 1 }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no_read_workqueue"), "{e}");
    }

    /// Off unless a class says so; only those classes' VGs are looked after.
    #[test]
    fn auto_repair_is_per_class_and_off_by_default() {
        let c = Config::parse(GOOD).unwrap();
        assert!(c.device_classes.values().all(|d| !d.auto_repair));
        assert!(super::super::auto_repair::vgs(&c).is_empty());
        let c = Config::parse(
            "[device_classes.a]\nvolume_group = \"vg-a\"\ndefault = true\nauto_repair = true\n\
             [device_classes.b]\nvolume_group = \"vg-b\"\n",
        )
        .unwrap();
        assert_eq!(super::super::auto_repair::vgs(&c), ["vg-a"]);
        let e = Config::parse("[device_classes.a]\nvolume_group = \"v\"\nauto_repair = 1\n")
            .unwrap_err();
        assert!(e.to_string().contains("auto_repair"), "{e}");
    }

    /// A class's mirrors get integrity when it says so (off by default), and the
    /// class carries it to the API's default.
    #[test]
    fn integrity_is_per_class_and_off_by_default() {
        let c = Config::parse(GOOD).unwrap();
        assert!(c.device_classes.values().all(|d| !d.integrity));
        let c = Config::parse(
            "[device_classes.a]\nvolume_group = \"vg-a\"\ndefault = true\nintegrity = true\n\
             [device_classes.b]\nvolume_group = \"vg-b\"\n",
        )
        .unwrap();
        let classes = super::super::classes::DeviceClasses::from_config(&c);
        let by_name = |n: &str| classes.all().find(|k| k.name == n).unwrap().integrity;
        assert!(by_name("a") && !by_name("b"));
        let e = Config::parse("[device_classes.a]\nvolume_group = \"v\"\nintegrity = \"yes\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("integrity"), "{e}");
    }

    #[test]
    fn a_thin_pool_is_configured_with_safe_defaults_and_bad_values_are_named() {
        let c = Config::parse(
            "[device_classes.t]\nvolume_group = \"vg\"\n\
             thin_pool = { name = \"pool0\", size = \"90%\" }\n",
        )
        .unwrap();
        let t = c.device_classes["t"].thin_pool.clone().unwrap();
        assert_eq!(t.size, PoolSize::Percent(90));
        // Zeroing is on unless turned off: a new volume never reads old blocks.
        assert!(t.zero);
        assert_eq!(t.discards(), Some(crate::lvm::thin::PoolDiscards::Passdown));
        assert_eq!(t.spec(Bytes(1000 << 20)).data_size, Bytes(900 << 20));
        let t = |body: &str| {
            Config::parse(&format!(
                "[device_classes.t]\nvolume_group = \"vg\"\nthin_pool = {{ name = \"p\", {body} }}\n"
            ))
        };
        assert_eq!(
            t("size = \"1GiB\", chunk_size = \"64KiB\"")
                .unwrap()
                .device_classes["t"]
                .thin_pool
                .as_ref()
                .unwrap()
                .size,
            PoolSize::Bytes(Bytes(1 << 30))
        );
        for (body, key, says) in [
            ("size = \"0%\"", "device_classes.t.thin_pool.size", "0%"),
            ("size = \"101%\"", "device_classes.t.thin_pool.size", "101%"),
            (
                "size = \"1G\", discards = \"all\"",
                "device_classes.t.thin_pool.discards",
                "all",
            ),
            (
                "size = \"1G\", overprovision_ratio = 0.5",
                "device_classes.t.thin_pool.overprovision_ratio",
                "0.5",
            ),
            (
                "size = \"1G\", usage_limit_percent = 0",
                "device_classes.t.thin_pool.usage_limit_percent",
                "0",
            ),
            (
                "size = \"1G\", autoextend_threshold_percent = 0",
                "device_classes.t.thin_pool.autoextend_threshold_percent",
                "0",
            ),
            (
                "size = \"1G\", autoextend_percent = 0",
                "device_classes.t.thin_pool.autoextend_percent",
                "0",
            ),
            (
                "size = \"1G\", chunk_size = \"96KiB\"",
                "device_classes.t.thin_pool.thin_pool",
                "98304",
            ),
            (
                "size = \"1G\", zeroing = true",
                "device_classes.t.thin_pool.zeroing",
                "zeroing",
            ),
        ] {
            let e = t(body).unwrap_err();
            assert_eq!(e.key, key, "{body}: {e}");
            assert!(e.message.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn the_shipped_example_parses() {
        let c = Config::parse(include_str!("../../systemd/lvmd.toml")).unwrap();
        assert_eq!(c.default_class(), Some("ssd"));
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
    }

    fn refused(text: &str) -> ConfigError {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = refused("sockett = \"/x\"");
        assert!(e.message.contains("sockett"), "{e}");
        let e = refused("[device_classes.a]\nvolume_group = \"vg\"\nstrips = 2\n");
        assert_eq!(e.key, "device_classes.a.strips", "{e}");
        assert!(e.message.contains("line 3"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = refused("[device_classes.a]\nvolume_group = \"vg\"\nstripes = \"two\"\n");
        assert_eq!(e.key, "device_classes.a.stripes", "{e}");
        let e = refused("[device_classes.a]\nvolume_group = \"vg\"\nstripe_size = \"12Q\"\n");
        assert_eq!(e.key, "device_classes.a.stripe_size", "{e}");
        assert!(e.message.contains("12Q"), "{e}");
        let e = refused("[device_classes.a]\nvolume_group = \"vg\"\nmetadata_size = \"1KiB\"\n");
        assert_eq!(e.key, "device_classes.a.metadata_size", "{e}");
        assert!(e.message.contains("1024"), "{e}");
        let e = refused("[device_classes.a]\nvolume_group = \"bad name\"\n");
        assert_eq!(e.key, "device_classes.a.volume_group", "{e}");
        let e = refused("mount_roots = [\"relative\"]");
        assert_eq!(e.key, "mount_roots[0]", "{e}");
        let e = refused("lvm2_devices_file = \"system.devices\"");
        assert_eq!(e.key, "lvm2_devices_file", "{e}");
        let e = refused("lvm2_devices_file = \"/\"");
        assert_eq!(e.key, "lvm2_devices_file", "{e}");
        assert_eq!(
            Config::default().lvm2_devices_file,
            PathBuf::from("/etc/lvm/devices/system.devices")
        );
        let e = refused("allowed_uids = [-1]");
        assert!(e.key.starts_with("allowed_uids"), "{e}");
        let e = refused(
            "[device_classes.a]\nvolume_group = \"x\"\n[device_classes.b]\nvolume_group = \"y\"\n",
        );
        assert_eq!(e.key, "device_classes", "{e}");
        let e = refused("[device_classes.a]\nvolume_group = \"x\"\ndefault = true\n[device_classes.b]\nvolume_group = \"x\"\n");
        assert_eq!(e.key, "device_classes.b.volume_group", "{e}");
        let e = refused("socket = ");
        assert_eq!(e.key, "(syntax)", "{e}");
    }
}
