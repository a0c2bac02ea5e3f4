//! The operations, as a library: initialise PVs, create/extend/reduce/remove VGs,
//! create/remove/resize/rename LVs, tags. Metadata only: activation is elsewhere.
//!
//! Every change follows one pattern: take lvm2's lock, read the VG fresh from disk under
//! it, validate everything, build the new VG in memory, then commit. Validation happens
//! before the first write, so bad input leaves the disks exactly as they were.

pub mod cow;
pub mod edit;
mod raid;
mod raid_legs;
mod segments;
pub mod thin;

pub use crate::model::layout::DEFAULT_STRIPE_SIZE;
pub use crate::model::Layout;
pub use edit::{check_removable, check_resizable, pv_spaces, Edit, GroupSnapshot, LvSpec};

/// A raid1 LV's legs (metadata and image sub-LV names, in leg order).
pub fn raid_legs(lv: &crate::model::LogicalVolume) -> Option<Vec<(String, String)>> {
    raid::legs_of(lv).map(<[_]>::to_vec)
}

use crate::alloc::AllocError;
use crate::format::label::{DiskLocn, PvLabel, PV_EXT_USED};
use crate::format::mda::{MdaHeader, MDA_HEADER_SIZE};
use crate::model::name::{validate_vg_name, NameError, TagError};
use crate::model::{LogicalVolume, ModelError, TextHeader, VolumeGroup};
use crate::store::backup::BackupDirs;
use crate::store::backup_writer::{BackupWriter, Version};
use crate::store::commit::{commit, CommitStep, CommitTarget};
use crate::store::devices_file::DevicesFileLocation;
use crate::store::lock::{LockGuard, LockMode, Locker, Resource, DEFAULT_LOCK_DIR};
use crate::store::scan::{
    read_label, read_pv_from, scan_devices, Fingerprint, PvHeaders, VgOnDisk,
};
use crate::store::{Access, Device, StoreError};
use crate::units::{Bytes, ExtentSize, Sectors, SECTOR_SIZE};
use crate::uuid::Uuid;
use edit::{NewPv, Origin};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::info;

/// lvm2's `devices/pv_min_size` default: 2 MiB.
pub const PV_MIN_SIZE: Bytes = Bytes(2 << 20);
/// Where lvm2 puts the first metadata area.
pub const MDA_OFFSET: Bytes = Bytes(4096);
/// lvm2's default data alignment: extents start at 1 MiB.
pub const DEFAULT_PE_START: Bytes = Bytes(1 << 20);

/// How large the metadata area of a PV lvmd creates is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataSize {
    /// [`LARGE_METADATA_AREA`] on devices of at least [`LARGE_METADATA_FROM`], lvm2's
    /// default (1020 KiB, data from 1 MiB) on smaller ones.
    #[default]
    Auto,
    /// This much (rounded up so the data starts on a MiB boundary, as lvm2's
    /// `pvcreate --metadatasize` rounds).
    Exactly(Bytes),
}

/// The metadata area lvmd gives PVs of [`LARGE_METADATA_FROM`] or more: lvm2 keeps two
/// copies of the text in it (old and new), so this holds about 8 MiB of text, some
/// 10,000 volumes, where lvm2's default 1020 KiB holds about 1,500 and a VG that
/// reaches that can make no volume more however much space it has (an area cannot be
/// grown later). 16 MiB is 0.4% of the smallest such device.
pub const LARGE_METADATA_AREA: Bytes = Bytes(16 << 20);
/// Devices this large or larger get [`LARGE_METADATA_AREA`].
pub const LARGE_METADATA_FROM: Bytes = Bytes(4 << 30);

impl MetadataSize {
    /// Where the data of a PV of `device_size` starts: the area runs from 4 KiB to there.
    pub fn pe_start(self, device_size: Bytes) -> Bytes {
        let want = match self {
            MetadataSize::Auto if device_size >= LARGE_METADATA_FROM => LARGE_METADATA_AREA,
            MetadataSize::Auto => return DEFAULT_PE_START,
            MetadataSize::Exactly(b) => b,
        };
        let mib = DEFAULT_PE_START.0;
        Bytes((MDA_OFFSET.0 + want.0).div_ceil(mib) * mib)
    }
}
/// lvm2's default stripe size: 64 KiB.

#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Tag(#[from] TagError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {size} is too small for a PV (at least {min})")]
    DeviceTooSmall {
        path: PathBuf,
        size: Bytes,
        min: Bytes,
    },
    #[error("{path}: already a PV (uuid {uuid})")]
    PvExists { path: PathBuf, uuid: Uuid },
    #[error("{path}: holds {what}; refusing to overwrite it")]
    DeviceNotEmpty { path: PathBuf, what: String },
    /// Something of LVM is on a device that is no PV lvmd can read: a damaged label, a
    /// metadata area, metadata text. Never initialised again automatically: an admin
    /// decides.
    #[error("{path}: shows traces of LVM ({what}); refusing to make it a new PV, it may hold a volume group's metadata: see `lvmd-ctl inspect {path}`")]
    LvmTraces { path: PathBuf, what: String },
    #[error("{path}: PV is in use by volume group {vg}")]
    PvInUse { path: PathBuf, vg: String },
    #[error("{path}: not a PV of volume group {vg}")]
    PvNotInVg { path: PathBuf, vg: String },
    #[error("{path}: PV of volume group {vg} holds extents of {lvs}")]
    PvHasExtents {
        path: PathBuf,
        vg: String,
        lvs: String,
    },
    #[error("volume group {0} already exists")]
    VgExists(String),
    #[error("volume group {0} not found")]
    VgNotFound(String),
    #[error("volume group {vg} still has logical volumes: {lvs}")]
    VgNotEmpty { vg: String, lvs: String },
    #[error("volume group {vg} cannot be changed: {why}")]
    VgNotWritable { vg: String, why: String },
    #[error("logical volume {vg}/{lv} already exists")]
    LvExists { vg: String, lv: String },
    #[error("logical volume {vg}/{lv} not found")]
    LvNotFound { vg: String, lv: String },
    #[error("logical volume {vg}/{lv}: {why}")]
    LvUnsupported { vg: String, lv: String, why: String },
    #[error("logical volume {vg}/{lv} is used by {by}")]
    LvInUse { vg: String, lv: String, by: String },
    #[error("invalid {what} {value}: {why}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("volume group {vg}: {source}")]
    Alloc {
        vg: String,
        #[source]
        source: AllocError,
    },
    #[error("{0}")]
    Model(#[from] ModelError),
}

impl From<crate::model::LayoutError> for LvmError {
    fn from(e: crate::model::LayoutError) -> LvmError {
        LvmError::InvalidArgument {
            what: e.what,
            value: e.value,
            why: e.why,
        }
    }
}

pub type Result<T> = std::result::Result<T, LvmError>;

/// The context every operation runs in: which devices to look at, where lvm2's locks
/// and backups live, and who we are.
#[derive(Debug, Clone)]
pub struct Lvm {
    /// The devices to scan for PVs (lvm2 would scan all block devices; lvmd is told).
    pub devices: Vec<PathBuf>,
    pub locker: Locker,
    /// `None`: keep no backup files (tests of many VGs in parallel).
    pub backup: Option<BackupDirs>,
    /// When set, each commit's archive and backup are written by it after the commit,
    /// off the caller's path (the daemon; see `store::backup_writer`), instead of
    /// inside the commit into `backup`.
    pub backup_writer: Option<Arc<BackupWriter>>,
    pub host: String,
    /// Fault injection for crash tests: called after each commit step.
    pub inject: Option<FaultInjector>,
    /// lvm2's run directory, whose device hints are invalidated after changes to which
    /// devices are PVs or which VGs exist.
    pub lvm2_run_dir: PathBuf,
    /// lvm2's devices file: when it exists, each PV lvmd creates or puts in a VG gets an
    /// entry, as lvm2's pvcreate/vgcreate/vgextend give it, so lvm2 with
    /// `use_devicesfile=1` sees it. Its lock is `D_<name>` in the locker's directory.
    pub lvm2_devices_file: DevicesFileLocation,
    /// Where device nodes live (`/dev`): a new VG's name must not name an entry there,
    /// as its LVs' links go to `<dev_dir>/<VG>/<LV>`.
    pub dev_dir: PathBuf,
    /// The metadata area of PVs lvmd creates.
    pub metadata_size: MetadataSize,
}

/// Called after each commit step; returning `false` stops the commit there, as a crash
/// would. Only tests set one.
#[derive(Clone)]
pub struct FaultInjector(pub std::sync::Arc<dyn Fn(CommitStep) -> bool + Send + Sync>);

impl std::fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultInjector")
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How far [`lvm_traces`] looks: lvm2's first metadata area ends at the 1 MiB data start.
const TRACE_SCAN: u64 = 1 << 20;

/// Anything of LVM in the first MiB of a device, `head` (a label in sectors 0-3 even
/// with a bad checksum or only its type, a metadata area header at 4 KiB, metadata
/// text), in words; `None` when there is none.
pub fn lvm_traces(head: &[u8]) -> Option<String> {
    use crate::format::label::{LABEL_ID, LABEL_SCAN_SECTORS, LABEL_TYPE};
    use crate::format::mda::MDA_MAGIC;
    for sector in 0..LABEL_SCAN_SECTORS as usize {
        let s = head.get(sector * 512..(sector + 1) * 512).unwrap_or(&[]);
        if s.get(..8) == Some(&LABEL_ID[..]) || s.get(24..32) == Some(&LABEL_TYPE[..]) {
            return Some(format!("an LVM label in sector {sector}"));
        }
    }
    let mda = MDA_OFFSET.0 as usize;
    if head.get(mda + 4..mda + 20) == Some(&MDA_MAGIC[..]) {
        return Some(format!("an LVM metadata area header at byte {mda}"));
    }
    let text = crate::model::CONTENTS.as_bytes();
    if let Some(at) = head.windows(text.len()).position(|w| w == text) {
        return Some(format!("LVM metadata text at byte {at}"));
    }
    None
}

/// Refuses a device that is not a PV unless it is blank: no trace of LVM, nothing
/// libblkid recognises anywhere on it. What `pvcreate` must not silently destroy.
fn check_blank(dev: &Device, path: &Path) -> Result<()> {
    let head = dev.read_at(Bytes(0), TRACE_SCAN.min(dev.size().0))?;
    if let Some(what) = lvm_traces(&head) {
        return Err(LvmError::LvmTraces {
            path: path.into(),
            what,
        });
    }
    let found = crate::probe::probe(path).map_err(|e| LvmError::InvalidArgument {
        what: "device",
        value: path.display().to_string(),
        why: e.to_string(),
    })?;
    if !found.is_empty() {
        return Err(LvmError::DeviceNotEmpty {
            path: path.into(),
            what: found.describe(),
        });
    }
    Ok(())
}

/// The PV on `dev`, a damaged label reported as a trace of LVM (never as blank).
fn read_pv_or_traces(dev: &Device, path: &Path) -> Result<Option<crate::store::scan::PvOnDisk>> {
    match read_pv_from(dev) {
        Err(StoreError::Label { source, .. }) => Err(LvmError::LvmTraces {
            path: path.into(),
            what: source.to_string(),
        }),
        other => Ok(other?),
    }
}

/// Where a caller keeps VGs between operations (the daemon does).
/// [`Lvm::read_vg_cached`] and [`Lvm::edit_group`] look the VG up and store what they
/// read or committed with lvm2's lock held, so no commit falls between the check of
/// the headers and the update, and concurrent readers find what the last commit left
/// instead of each reading the VG in full.
pub trait VgCache {
    fn get(&self, vg: &str) -> Option<Arc<VgOnDisk>>;
    fn put(&self, vg: &str, found: &Arc<VgOnDisk>);
}

/// A VG read under its write lock, ready to change.
struct Locked {
    _guards: Vec<LockGuard>,
    found: Arc<VgOnDisk>,
}

impl Lvm {
    pub fn new(devices: Vec<PathBuf>) -> Lvm {
        Lvm {
            devices,
            locker: Locker::new(DEFAULT_LOCK_DIR),
            backup: Some(BackupDirs::default()),
            backup_writer: None,
            host: host_name(),
            inject: None,
            lvm2_run_dir: crate::store::hints::DEFAULT_RUN_DIR.into(),
            lvm2_devices_file: DevicesFileLocation::default(),
            dev_dir: PathBuf::from("/dev"),
            metadata_size: MetadataSize::Auto,
        }
    }

    fn lock(&self, r: Resource, mode: LockMode) -> Result<LockGuard> {
        self.locker.lock(&r, mode).map_err(|source| {
            LvmError::Store(StoreError::Lock {
                what: format!("{r:?} in {}", self.locker.dir().display()),
                source,
            })
        })
    }

    /// Tells lvm2 to rescan all devices on its next command (see `store::hints`).
    /// Failing to do so is not worth failing a committed change over: lvm2 also
    /// rescans when its device list changes, and `pvscan --cache` repairs it.
    fn invalidate_lvm2_hints(&self) {
        if let Err(e) = crate::store::hints::invalidate(&self.lvm2_run_dir) {
            tracing::warn!(dir = %self.lvm2_run_dir.display(), "could not invalidate lvm2's device hints: {e}");
        }
    }

    /// Lists new PVs in lvm2's devices file, if there is one. Like lvm2 (whose commands
    /// go on when `device_ids_write` fails), a failure is a warning, not an error: the
    /// PVs exist and lvmd sees them; `lvmdevices --adddev` makes lvm2 see them too.
    fn record_in_devices_file(&self, pvs: &[(PathBuf, Uuid)]) {
        let loc = &self.lvm2_devices_file;
        match crate::store::devices_file::record_pvs(loc, &self.locker, pvs) {
            Ok(true) => {
                info!(file = %loc.path().display(), pvs = pvs.len(), "updated lvm2's devices file")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                file = %loc.path().display(),
                "could not add PVs to lvm2's devices file, so lvm2 may not see them \
                 (lvmdevices --adddev adds them): {e}"
            ),
        }
    }

    fn header(&self, description: String) -> TextHeader {
        TextHeader {
            description: format!("Written by lvmd: {description}"),
            creation_host: self.host.clone(),
            creation_time: now(),
        }
    }

    /// All VGs on the configured devices.
    pub fn volume_groups(&self) -> Result<Vec<VgOnDisk>> {
        Ok(scan_devices(&self.devices).volume_groups()?)
    }

    /// One VG, read under a shared lock.
    pub fn read_vg(&self, name: &str) -> Result<VgOnDisk> {
        let _g = self.lock(Resource::Vg(name.into()), LockMode::Shared)?;
        self.find_vg(name)
    }

    fn find_vg(&self, name: &str) -> Result<VgOnDisk> {
        let scan = scan_devices(&self.devices);
        let mut matching: Vec<VgOnDisk> = scan
            .volume_groups()?
            .into_iter()
            .filter(|v| v.vg.name == name)
            .collect();
        match matching.len() {
            0 => Err(LvmError::VgNotFound(name.into())),
            1 => Ok(matching.remove(0)),
            _ => Err(LvmError::VgNotWritable {
                vg: name.into(),
                why: "two volume groups have this name; rename one with lvm2's vgrename by uuid"
                    .into(),
            }),
        }
    }

    /// One VG read under a shared lock; the one `cache` holds (as read or committed
    /// before) is returned as it is (its text neither read nor parsed again) when its
    /// [`Fingerprint`] still matches the disks, else the VG is read in full and put
    /// in the cache. `.1`: whether the cached one was current.
    pub fn read_vg_cached(&self, name: &str, cache: &dyn VgCache) -> Result<(Arc<VgOnDisk>, bool)> {
        let _g = self.lock(Resource::Vg(name.into()), LockMode::Shared)?;
        let (found, reused) = self.find_vg_cached(name, cache.get(name).as_ref())?;
        if !reused {
            cache.put(name, &found);
        }
        Ok((found, reused))
    }

    /// With the VG's lock held: `cached` if nobody changed the VG since, else a full read.
    fn find_vg_cached(
        &self,
        name: &str,
        cached: Option<&Arc<VgOnDisk>>,
    ) -> Result<(Arc<VgOnDisk>, bool)> {
        if let Some(c) = cached.filter(|c| c.vg.name == name) {
            if let Some(fp) = &c.fingerprint {
                if Fingerprint::read(&c.devices).as_ref() == Some(fp) {
                    return Ok((Arc::clone(c), true));
                }
            }
        }
        Ok((Arc::new(self.find_vg(name)?), false))
    }

    fn lock_vg_for_write(&self, name: &str) -> Result<Locked> {
        self.lock_vg_for_write_past_missing(name, false, None)
    }

    /// `past_missing`: PVs whose device is gone do not stop the write (the edit takes
    /// data off them; see [`Edit::writes_past_missing_pvs`]). `cache`: as for
    /// [`Lvm::read_vg_cached`].
    fn lock_vg_for_write_past_missing(
        &self,
        name: &str,
        past_missing: bool,
        cache: Option<&dyn VgCache>,
    ) -> Result<Locked> {
        let guard = self.lock(Resource::Vg(name.into()), LockMode::Exclusive)?;
        let cached = cache.and_then(|c| c.get(name));
        let (found, _) = self.find_vg_cached(name, cached.as_ref())?;
        check_writable(&found, past_missing)?;
        Ok(Locked {
            _guards: vec![guard],
            found,
        })
    }

    /// Commits `vg` (whose seqno the caller has not touched) over the version in `old`,
    /// plus any `new_pvs` joining it, then refreshes lvm2's backup files. Returns the VG
    /// as it is now on disk, as a read would find it, without reading it back.
    fn write_vg(
        &self,
        old: &VgOnDisk,
        mut vg: VolumeGroup,
        new_pvs: &[(PathBuf, Uuid)],
        description: String,
    ) -> Result<VgOnDisk> {
        vg.seqno = old.vg.seqno + 1;
        let header = self.header(description);
        let mut paths: BTreeMap<Uuid, PathBuf> = old.devices.clone();
        paths.extend(new_pvs.iter().map(|(p, u)| (*u, p.clone())));
        let mut devices = Vec::new();
        // A PV flagged MISSING in the new metadata with no device: written around, as
        // lvm2 writes around it (its old copy is older, and says so by its seqno).
        let mut written = Vec::new();
        let mut known_headers = Vec::new();
        for pv in &vg.pvs {
            if pv.is_missing() && !paths.contains_key(&pv.id) {
                continue;
            }
            let path = paths.get(&pv.id).ok_or_else(|| LvmError::VgNotWritable {
                vg: vg.name.clone(),
                why: format!("PV {} ({}) is missing", pv.name, pv.id),
            })?;
            let dev = Device::open(path, Access::Write)?;
            // Label and area headers as the VG's fingerprint has them, read under this
            // same lock a moment ago; read again only without one (a new PV, a VG read
            // in full every time).
            let known = old.fingerprint.as_ref().and_then(|f| {
                f.0.iter()
                    .find(|p| p.label.pv_uuid == pv.id && p.path == *path)
            });
            let label = match known {
                Some(k) => Some(k.label.clone()),
                None => read_label(&dev)?.filter(|l| l.pv_uuid == pv.id),
            };
            let Some(label) = label else {
                return Err(LvmError::VgNotWritable {
                    vg: vg.name.clone(),
                    why: format!("{} no longer carries PV {}", path.display(), pv.id),
                });
            };
            devices.push((dev, label));
            known_headers.push(known.map(|k| k.mdas.as_slice()));
            written.push(pv.id);
        }
        check_within_devices(&old.vg, &vg, &written, &devices)?;
        let targets: Vec<CommitTarget> = devices
            .iter()
            .zip(&known_headers)
            .map(|((device, label), headers)| CommitTarget {
                device,
                label,
                headers: *headers,
            })
            .collect();
        let mut inject = |step| self.inject.as_ref().is_none_or(|f| (f.0)(step));
        // A new VG has no previous version to archive. lvm2 archives before its commit;
        // with a writer the archive follows the commit (see `store::backup_writer`).
        let new_vg = old.text.is_empty();
        if let (Some(b), false, None) = (&self.backup, new_vg, &self.backup_writer) {
            b.archive(&old.vg, &old.header)?;
        }
        let committed = commit(&vg, &header, &targets, Some(old.as_previous()), &mut inject)?;
        // A PV says in its label that it belongs to a VG; set after the metadata is
        // there, so a crash never leaves a PV marked used with no VG to show for it.
        for (dev, label) in devices.iter_mut() {
            if !label.is_used() {
                label.ext_flags |= PV_EXT_USED;
                write_label(dev, label)?;
            }
        }
        let now = Arc::new(vg);
        let vg = &*now;
        match (&self.backup_writer, &self.backup) {
            (Some(w), _) => {
                let replaced = (!new_vg).then(|| Version {
                    vg: Arc::clone(&old.vg),
                    header: old.header.clone(),
                });
                let written = Version {
                    vg: Arc::clone(&now),
                    header: header.clone(),
                };
                w.submit(replaced, written);
            }
            (None, Some(b)) => b.write_backup(vg, &header)?,
            (None, None) => {}
        }
        info!(vg = %vg.name, seqno = vg.seqno, "{}", header.description);
        // Every area of every present PV now holds this text. A VG written around a
        // missing PV gets no fingerprint, so it is read in full next time, as before.
        let mut pvs: Vec<PvHeaders> = written
            .iter()
            .zip(devices.iter().zip(committed.headers))
            .map(|(id, ((_, label), mdas))| PvHeaders {
                path: paths[id].clone(),
                label: label.clone(),
                mdas,
            })
            .collect();
        let capacity = pvs
            .iter()
            .flat_map(|p| &p.mdas)
            .filter(|h| !h.is_ignored())
            .map(|h| h.max_text_size())
            .min()
            .unwrap_or(0);
        let written_paths: BTreeMap<Uuid, PathBuf> = pvs
            .iter()
            .map(|p| (p.label.pv_uuid, p.path.clone()))
            .collect();
        // In the order of the devices map, as a scan builds it.
        pvs.sort_by_key(|p| p.label.pv_uuid);
        let fingerprint = (written.len() == vg.pvs.len()).then_some(Fingerprint(pvs));
        Ok(VgOnDisk {
            vg: now,
            header,
            text: committed.rendered.text,
            lv_spans: committed.rendered.lv_spans,
            checked: true,
            devices: written_paths,
            stale: vec![],
            damaged: vec![],
            unwritable: None,
            metadata_capacity: Bytes(capacity),
            fingerprint,
        })
    }

    /// Makes `path` a PV outside any VG, as `pvcreate` does with lvm2's defaults: label in
    /// sector 1, one metadata area from 4 KiB to the 1 MiB data start.
    pub fn pv_create(&self, path: &Path) -> Result<PvLabel> {
        let _g = self.lock(Resource::Global, LockMode::Exclusive)?;
        let label = self.pv_create_locked(path)?;
        self.record_in_devices_file(&[(path.to_path_buf(), label.pv_uuid)]);
        Ok(label)
    }

    fn pv_create_locked(&self, path: &Path) -> Result<PvLabel> {
        let dev = Device::open(path, Access::WriteExclusive)?;
        let pe_start = self.metadata_size.pe_start(dev.size());
        let min = PV_MIN_SIZE.max(pe_start + Bytes(SECTOR_SIZE));
        if dev.size() < min {
            return Err(LvmError::DeviceTooSmall {
                path: path.into(),
                size: dev.size(),
                min,
            });
        }
        if let Some(pv) = read_pv_or_traces(&dev, path)? {
            return Err(LvmError::PvExists {
                path: path.into(),
                uuid: pv.label.pv_uuid,
            });
        }
        check_blank(&dev, path)?;
        let mda = DiskLocn {
            offset: MDA_OFFSET,
            size: pe_start - MDA_OFFSET,
        };
        let label = PvLabel::new(
            Uuid::random(),
            dev.size(),
            vec![DiskLocn {
                offset: pe_start,
                size: Bytes(0),
            }],
            vec![mda],
        );
        // Clear what an old label or a stale metadata area could leave, then the empty
        // area header, and the label last: until it lands the device is not a PV.
        dev.write_at(Bytes(0), &vec![0u8; MDA_OFFSET.0 as usize])?;
        dev.write_at(MDA_OFFSET, &[0u8; MDA_HEADER_SIZE as usize])?;
        let header = MdaHeader::new_empty(mda.offset, mda.size);
        dev.write_at(mda.offset, &header.to_bytes())?;
        dev.sync()?;
        write_label(&dev, &label)?;
        self.invalidate_lvm2_hints();
        info!(device = %path.display(), uuid = %label.pv_uuid, "created PV");
        Ok(label)
    }

    /// Each device becomes a PV of the VG: an orphan PV as is, a blank device after
    /// `pvcreate`. Devices in another VG are refused. Nothing is written here.
    fn check_new_pvs(&self, devices: &[PathBuf]) -> Result<Vec<(PathBuf, Option<PvLabel>)>> {
        let scan = scan_devices(&self.devices);
        let vgs = scan.volume_groups()?;
        let scanned: Vec<PathBuf> = self
            .devices
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect();
        let mut out = Vec::new();
        // The devices as the kernel names them: a path and a symlink to it are one disk.
        let mut seen: Vec<PathBuf> = Vec::new();
        for path in devices {
            // A PV outside the scanned set would look missing to every later command.
            let real = std::fs::canonicalize(path).map_err(|e| LvmError::InvalidArgument {
                what: "device",
                value: path.display().to_string(),
                why: e.to_string(),
            })?;
            if !scanned.contains(&real) {
                return Err(LvmError::InvalidArgument {
                    what: "device",
                    value: path.display().to_string(),
                    why: "not among the devices lvmd is configured to scan".into(),
                });
            }
            if seen.contains(&real) {
                return Err(LvmError::InvalidArgument {
                    what: "device",
                    value: path.display().to_string(),
                    why: format!("named twice (it is {})", real.display()),
                });
            }
            seen.push(real.clone());
            let dev = Device::open(path, Access::Read)?;
            match read_pv_or_traces(&dev, path)? {
                Some(pv) => {
                    if let Some(vg) = vgs
                        .iter()
                        .find(|v| v.devices.contains_key(&pv.label.pv_uuid))
                    {
                        return Err(LvmError::PvInUse {
                            path: path.clone(),
                            vg: vg.vg.name.clone(),
                        });
                    }
                    if pv.label.is_used() {
                        return Err(LvmError::PvInUse {
                            path: path.clone(),
                            vg: "(a volume group whose metadata was not found)".into(),
                        });
                    }
                    // Its metadata may name a VG we cannot read: never taken over.
                    if let Some(m) = pv.damaged_mdas.first() {
                        return Err(LvmError::PvInUse {
                            path: path.clone(),
                            vg: format!(
                                "(unknown: its metadata area at byte {} is damaged: {}; \
                                 see lvmd-ctl inspect)",
                                m.start, m.why
                            ),
                        });
                    }
                    out.push((path.clone(), Some(pv.label)));
                }
                None => {
                    let pe_start = self.metadata_size.pe_start(dev.size());
                    let min = PV_MIN_SIZE.max(pe_start + Bytes(SECTOR_SIZE));
                    if dev.size() < min {
                        return Err(LvmError::DeviceTooSmall {
                            path: path.clone(),
                            size: dev.size(),
                            min,
                        });
                    }
                    check_blank(&dev, path)?;
                    out.push((path.clone(), None));
                }
            }
        }
        Ok(out)
    }

    /// Turns checked devices into PV entries of `vg`, running `pvcreate` on blank ones.
    fn add_pvs(
        &self,
        vg: &mut VolumeGroup,
        checked: Vec<(PathBuf, Option<PvLabel>)>,
    ) -> Result<Vec<(PathBuf, Uuid)>> {
        let mut added = Vec::new();
        let mut entries = Vec::new();
        for (path, label) in checked {
            let label = match label {
                Some(l) => l,
                None => self.pv_create_locked(&path)?,
            };
            entries.push(new_pv(&path, &label)?);
            added.push((path, label.pv_uuid));
        }
        edit::add_pvs(vg, &entries)?;
        // lvm2's vgcreate and vgextend list both the PVs they create and the orphan
        // PVs they take in.
        self.record_in_devices_file(&added);
        Ok(added)
    }

    pub fn vg_create(
        &self,
        name: &str,
        devices: &[PathBuf],
        extent_size: ExtentSize,
    ) -> Result<VolumeGroup> {
        validate_vg_name(name)?;
        // lvm2's vgcreate refuses the same (validate_new_vg_name): `/dev/mapper`,
        // `/dev/shm`, `/dev/disk` ... would get the VG's LV links among their entries.
        let dev_entry = self.dev_dir.join(name);
        if std::fs::symlink_metadata(&dev_entry).is_ok() {
            return Err(LvmError::InvalidArgument {
                what: "volume group name",
                value: name.into(),
                why: format!(
                    "{} already exists in the filesystem; the VG's device links would go \
                     among its entries (lvm2 refuses such a name too)",
                    dev_entry.display()
                ),
            });
        }
        if devices.is_empty() {
            return Err(LvmError::InvalidArgument {
                what: "device list",
                value: "[]".into(),
                why: "a volume group needs at least one PV".into(),
            });
        }
        let _global = self.lock(Resource::Global, LockMode::Exclusive)?;
        let _vg = self.lock(Resource::Vg(name.into()), LockMode::Exclusive)?;
        let scan = scan_devices(&self.devices);
        if scan.volume_groups()?.iter().any(|v| v.vg.name == name) {
            return Err(LvmError::VgExists(name.into()));
        }
        let checked = self.check_new_pvs(devices)?;
        // Check that each device holds at least one extent before anything is written.
        for (path, label) in &checked {
            let (size, pe_start) = match label {
                Some(l) => (l.device_size, new_pv(path, l)?.pe_start.to_bytes()),
                None => {
                    let size = Device::open(path, Access::Read)?.size();
                    (size, self.metadata_size.pe_start(size))
                }
            };
            let data = size
                .to_sectors_floor()
                .0
                .saturating_sub(pe_start.0 / SECTOR_SIZE);
            if data < extent_size.sectors().0 {
                return Err(LvmError::DeviceTooSmall {
                    path: path.clone(),
                    size,
                    min: pe_start + extent_size.bytes(),
                });
            }
        }
        let mut vg = edit::new_vg(name, extent_size);
        let added = self.add_pvs(&mut vg, checked)?;
        let empty = VgOnDisk {
            vg: Arc::new(VolumeGroup {
                seqno: 0,
                ..vg.clone()
            }),
            header: TextHeader::default(),
            text: String::new(),
            lv_spans: Vec::new(),
            checked: false,
            devices: BTreeMap::new(),
            stale: vec![],
            damaged: vec![],
            unwritable: None,
            metadata_capacity: Bytes(0),
            fingerprint: None,
        };
        let written = self.write_vg(&empty, vg, &added, format!("vgcreate {name}"))?;
        self.invalidate_lvm2_hints();
        Ok(VolumeGroup::clone(&written.vg))
    }

    pub fn vg_extend(&self, name: &str, devices: &[PathBuf]) -> Result<VolumeGroup> {
        let _global = self.lock(Resource::Global, LockMode::Exclusive)?;
        let locked = self.lock_vg_for_write(name)?;
        let checked = self.check_new_pvs(devices)?;
        let mut vg = VolumeGroup::clone(&locked.found.vg);
        let added = self.add_pvs(&mut vg, checked)?;
        let written = self.write_vg(&locked.found, vg, &added, format!("vgextend {name}"))?;
        self.invalidate_lvm2_hints();
        Ok(VolumeGroup::clone(&written.vg))
    }

    /// Removes unused PVs from a VG; they stay PVs, outside any VG.
    pub fn vg_reduce(&self, name: &str, devices: &[PathBuf]) -> Result<VolumeGroup> {
        let _global = self.lock(Resource::Global, LockMode::Exclusive)?;
        let locked = self.lock_vg_for_write(name)?;
        let found = &locked.found;
        let mut vg = VolumeGroup::clone(&found.vg);
        let usage = vg.pv_usage();
        let mut removed = Vec::new();
        for path in devices {
            let uuid = found
                .devices
                .iter()
                .find(|(_, p)| *p == path)
                .map(|(u, _)| *u)
                .ok_or_else(|| LvmError::PvNotInVg {
                    path: path.clone(),
                    vg: name.into(),
                })?;
            let pv = vg.pv_by_id(&uuid).expect("devices map only VG PVs");
            let lvs: Vec<&str> = usage
                .iter()
                .filter(|u| u.pv == pv.name)
                .map(|u| u.lv)
                .collect();
            if !lvs.is_empty() {
                return Err(LvmError::PvHasExtents {
                    path: path.clone(),
                    vg: name.into(),
                    lvs: lvs.join(", "),
                });
            }
            removed.push((path.clone(), uuid));
        }
        vg.pvs
            .retain(|pv| !removed.iter().any(|(_, u)| *u == pv.id));
        if vg.pvs.is_empty() {
            return Err(LvmError::InvalidArgument {
                what: "device list",
                value: format!("{devices:?}"),
                why: format!("would remove every PV of {name}; remove the VG instead"),
            });
        }
        let written = self.write_vg(found, vg, &[], format!("vgreduce {name}"))?;
        for (path, _) in &removed {
            orphan_pv(path)?;
        }
        self.invalidate_lvm2_hints();
        Ok(VolumeGroup::clone(&written.vg))
    }

    /// Removes an empty VG; its PVs stay PVs.
    pub fn vg_remove(&self, name: &str) -> Result<()> {
        let _global = self.lock(Resource::Global, LockMode::Exclusive)?;
        let locked = self.lock_vg_for_write(name)?;
        let found = &locked.found;
        if !found.vg.lvs.is_empty() {
            return Err(LvmError::VgNotEmpty {
                vg: name.into(),
                lvs: found
                    .vg
                    .lvs
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        // The files of earlier commits first, so none lands after the removal.
        if let Some(w) = &self.backup_writer {
            w.flush();
            w.forget(name);
        }
        if let Some(b) = &self.backup {
            b.archive(&found.vg, &found.header)?;
        }
        for path in found.devices.values() {
            orphan_pv(path)?;
        }
        if let Some(b) = &self.backup {
            b.remove_backup(name)?;
        }
        self.invalidate_lvm2_hints();
        info!(vg = name, "removed volume group");
        Ok(())
    }

    /// Applies one [`Edit`] under lvm2's lock to the VG as it is on disk now, and commits
    /// it (unless it changes nothing). Returns the VG as committed.
    pub fn edit(&self, vg_name: &str, edit: &Edit) -> Result<VolumeGroup> {
        // Bad input is refused as such before any lock or read.
        edit.check(vg_name)?;
        let (found, mut results) = self.edit_group(vg_name, std::slice::from_ref(edit), None)?;
        results.pop().expect("one result per edit")?;
        Ok(VolumeGroup::clone(&found.vg))
    }

    /// Several edits of one VG in one commit (a group commit): applied in order to one
    /// model under one lvm2 lock, then one metadata write and one archive and backup
    /// for all of them. Each edit gets its own result; one that is refused (bad input,
    /// no space, a name taken by an earlier edit of the group) is left out and the rest
    /// commit. `Err` is what stops them all: the lock, the read, the commit.
    ///
    /// `cache`: where the VG as read or committed before is kept, used instead of
    /// reading it again when nobody changed it since, and given the VG as it is
    /// afterwards before lvm2's lock is released (see [`Lvm::read_vg_cached`]).
    /// Returns the VG as it is on disk afterwards.
    pub fn edit_group(
        &self,
        vg_name: &str,
        edits: &[Edit],
        cache: Option<&dyn VgCache>,
    ) -> Result<(Arc<VgOnDisk>, Vec<Result<()>>)> {
        let mut results: Vec<Result<()>> = edits.iter().map(|e| e.check(vg_name)).collect();
        let past_missing = edits
            .iter()
            .zip(&results)
            .any(|(e, r)| r.is_ok() && e.writes_past_missing_pvs());
        let locked = self.lock_vg_for_write_past_missing(vg_name, past_missing, cache)?;
        let found = &locked.found;
        let mut origin = Origin::now(&self.host);
        if edits.iter().any(Edit::reads_pv_block_sizes) {
            origin.pv_block_sizes = pv_block_sizes(found);
        }
        let mut vg = VolumeGroup::clone(&found.vg);
        let mut descriptions = Vec::new();
        for (edit, result) in edits.iter().zip(results.iter_mut()) {
            if result.is_err() {
                continue;
            }
            // Only the edits that take data off missing PVs may write past them.
            if past_missing && !edit.writes_past_missing_pvs() {
                if let Err(e) = check_writable(found, false) {
                    *result = Err(e);
                    continue;
                }
            }
            match edit::apply_in_place(&mut vg, edit, &origin) {
                Ok(Some(description)) => descriptions.push(description),
                Ok(None) => {}
                Err(e) => *result = Err(e),
            }
        }
        if past_missing {
            // lvm2 flags a PV it writes around MISSING, so any later reader (lvm2's
            // vgreduce --removemissing, vgextend --restoremissing) knows the PV's own
            // copy of the metadata is stale.
            for pv in vg.pvs.iter_mut() {
                if !found.devices.contains_key(&pv.id) && !pv.is_missing() {
                    pv.flags.push("MISSING".into());
                }
            }
        }
        let after = if descriptions.is_empty() {
            Arc::clone(found)
        } else {
            let written = self.write_vg(found, vg, &[], group_description(descriptions))?;
            Arc::new(written)
        };
        // Still under the lock: a reader that takes it next finds this version cached.
        if let Some(c) = cache {
            c.put(vg_name, &after);
        }
        Ok((after, results))
    }

    /// [`Lvm::edit`], returning the LV the edit leaves behind.
    fn edit_lv(&self, vg_name: &str, edit: Edit) -> Result<LogicalVolume> {
        let vg = self.edit(vg_name, &edit)?;
        let name = edit.lv_name().expect("an LV edit");
        Ok(vg.lv(name).expect("the edit leaves it").clone())
    }

    pub fn lv_create(
        &self,
        vg_name: &str,
        lv_name: &str,
        size: Bytes,
        layout: Layout,
        tags: &[String],
    ) -> Result<LogicalVolume> {
        let spec = LvSpec {
            name: lv_name.into(),
            size,
            layout,
            tags: tags.to_vec(),
        };
        self.edit_lv(vg_name, Edit::CreateLv(spec))
    }

    /// Removes a linear or striped LV that nothing else refers to.
    pub fn lv_remove(&self, vg_name: &str, lv_name: &str) -> Result<()> {
        let lv = lv_name.into();
        self.edit(vg_name, &Edit::RemoveLv { lv }).map(drop)
    }

    /// Grows or shrinks a linear or striped LV to `size` (rounded up to whole extents,
    /// and to whole stripes). Extending keeps the LV's layout.
    pub fn lv_resize(&self, vg_name: &str, lv_name: &str, size: Bytes) -> Result<LogicalVolume> {
        let lv = lv_name.into();
        self.edit_lv(vg_name, Edit::ResizeLv { lv, size })
    }

    pub fn lv_rename(&self, vg_name: &str, old: &str, new: &str) -> Result<()> {
        let (lv, to) = (old.into(), new.into());
        let edit = Edit::RenameLv { lv, to, tags: None };
        self.edit(vg_name, &edit).map(drop)
    }

    /// Renames an LV and replaces its tags in one commit: either both happen or
    /// neither (lvmd turns a removed LV into a wipe LV this way).
    pub fn lv_rename_retag(
        &self,
        vg_name: &str,
        old: &str,
        new: &str,
        tags: &[String],
    ) -> Result<()> {
        let (lv, to, tags) = (old.into(), new.into(), Some(tags.to_vec()));
        self.edit(vg_name, &Edit::RenameLv { lv, to, tags })
            .map(drop)
    }

    /// Adds and removes LV tags in one commit.
    pub fn lv_change_tags(
        &self,
        vg_name: &str,
        lv_name: &str,
        add: &[String],
        del: &[String],
    ) -> Result<LogicalVolume> {
        let (lv, add, del) = (lv_name.into(), add.to_vec(), del.to_vec());
        self.edit_lv(vg_name, Edit::ChangeLvTags { lv, add, del })
    }

    /// Commits the VG unchanged but for its seqno: brings every metadata area (one a cut
    /// commit left behind, one a PV missed) up to the newest version.
    pub fn vg_rewrite(&self, vg_name: &str) -> Result<()> {
        self.edit(vg_name, &Edit::Rewrite).map(drop)
    }

    pub fn vg_change_tags(&self, vg_name: &str, add: &[String], del: &[String]) -> Result<()> {
        let (add, del) = (add.to_vec(), del.to_vec());
        self.edit(vg_name, &Edit::ChangeVgTags { add, del })
            .map(drop)
    }
}

fn write_label(dev: &Device, label: &PvLabel) -> Result<()> {
    dev.write_at(Bytes(label.sector * SECTOR_SIZE), &label.to_sector())?;
    dev.sync()?;
    Ok(())
}

/// Makes a PV that left its VG an orphan again: an empty metadata area, and the
/// label's "used" flag cleared.
fn orphan_pv(path: &Path) -> Result<()> {
    let dev = Device::open(path, Access::Write)?;
    let Some(pv) = read_pv_from(&dev)? else {
        return Ok(());
    };
    for area in &pv.label.metadata_areas {
        let header = MdaHeader::new_empty(area.offset, area.size);
        dev.write_at(area.offset, &header.to_bytes())?;
    }
    dev.sync()?;
    let mut label = pv.label;
    label.ext_flags &= !PV_EXT_USED;
    write_label(&dev, &label)
}

/// lvm2's header line for a group commit: the edits' own descriptions, the first few
/// in full.
fn group_description(mut descriptions: Vec<String>) -> String {
    const SHOWN: usize = 3;
    let more = descriptions.len().saturating_sub(SHOWN);
    descriptions.truncate(SHOWN);
    let shown = descriptions.join("; ");
    match more {
        0 => shown,
        n => format!("{shown}; and {n} more"),
    }
}

fn check_writable(found: &VgOnDisk, past_missing: bool) -> Result<()> {
    let vg = &found.vg;
    let refuse = |why: String| {
        Err(LvmError::VgNotWritable {
            vg: vg.name.clone(),
            why,
        })
    };
    if !vg.is_writeable() {
        return refuse("its status lacks WRITE".into());
    }
    if vg.status.iter().any(|s| s == "EXPORTED") {
        return refuse("it is exported".into());
    }
    for key in ["lock_type", "system_id"] {
        if let Some(v) = vg.extra.get_str(key).filter(|v| !v.is_empty()) {
            return refuse(format!(
                "it has {key} {v:?}; lvmd does not take part in shared or foreign VGs"
            ));
        }
    }
    if let Some(why) = &found.unwritable {
        return refuse(why.clone());
    }
    let missing = found.missing_pvs();
    if let Some(pv) = missing.first().filter(|_| !past_missing) {
        return refuse(format!(
            "PV {} ({}) is missing; writing now would lose its copy",
            pv.name, pv.id
        ));
    }
    if found.checked {
        return Ok(());
    }
    if let Some(p) = vg.problems().first() {
        return refuse(format!("its metadata is inconsistent: {p}"));
    }
    Ok(())
}

/// Refuses a change that puts extents past the end of a PV's device: a device that
/// shrank since its PV was made (a smaller LUN, a truncated image) still claims its old
/// `pe_count`, and data written there would be lost. `devices` are `vg.pvs`' devices, in
/// order. Extents some LV already held before the change are left to it (lvmd did not
/// put them there, and removing that LV must stay possible).
fn check_within_devices(
    old: &VolumeGroup,
    vg: &VolumeGroup,
    written: &[Uuid],
    devices: &[(Device, PvLabel)],
) -> Result<()> {
    let before = old.pv_usage();
    let after = vg.pv_usage();
    let pvs = vg.pvs.iter().filter(|pv| written.contains(&pv.id));
    for (pv, (dev, _)) in pvs.zip(devices) {
        let data = dev
            .size()
            .to_sectors_floor()
            .0
            .saturating_sub(pv.pe_start.0);
        let usable = vg.extent_size.extents_floor(Sectors(data));
        if usable >= pv.pe_count {
            continue;
        }
        for u in after.iter().filter(|u| u.pv == pv.name) {
            let end = u.start + u.count;
            if end <= usable {
                continue;
            }
            let past = u.start.max(usable);
            let held_before = before
                .iter()
                .any(|b| b.pv == u.pv && b.start <= past && end <= b.start + b.count);
            if !held_before {
                return Err(LvmError::VgNotWritable {
                    vg: vg.name.clone(),
                    why: format!(
                        "PV {} on {} is {} now, room for {} extents, but its metadata says {}: \
                         {} would get extents {}..{} past the device's end (did the device \
                         shrink?)",
                        pv.name,
                        dev.path().display(),
                        dev.size(),
                        usable.0,
                        pv.pe_count.0,
                        u.lv,
                        past.0,
                        end.0
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A device with this label, found at `path`, as it joins a VG.
fn new_pv(path: &Path, label: &PvLabel) -> Result<NewPv> {
    let pe_start = label
        .data_areas
        .first()
        .map(|d| d.offset)
        .unwrap_or(DEFAULT_PE_START);
    let pe_start = pe_start
        .to_sectors_exact()
        .ok_or_else(|| LvmError::InvalidArgument {
            what: "PV data area",
            value: pe_start.to_string(),
            why: "not sector aligned".into(),
        })?;
    Ok(NewPv {
        id: label.pv_uuid,
        device: path.display().to_string(),
        dev_size: label.device_size.to_sectors_floor(),
        pe_start,
    })
}

/// The block sizes of the VG's PV devices found here, as lvm2 reads them to pick an
/// integrity block size; a device that cannot say is left out (unknown).
fn pv_block_sizes(found: &VgOnDisk) -> std::collections::BTreeMap<Uuid, edit::BlockSizes> {
    found
        .devices
        .iter()
        .filter_map(|(id, path)| {
            let f = std::fs::File::open(path).ok()?;
            let sizes = edit::BlockSizes {
                logical: lvmd_sys::blkdev::logical_block_size(&f).ok()?,
                physical: lvmd_sys::blkdev::physical_block_size(&f).ok()?,
            };
            Some((*id, sizes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::label::{LABEL_ID, LABEL_TYPE};
    use crate::format::mda::MDA_MAGIC;

    #[test]
    fn any_trace_of_lvm_in_the_first_mib_is_found() {
        let blank = vec![0u8; TRACE_SCAN as usize];
        assert_eq!(lvm_traces(&blank), None);
        let with = |at: usize, bytes: &[u8]| {
            let mut b = blank.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            lvm_traces(&b).unwrap()
        };
        // A label in any of sectors 0-3, by its id or only its type; not in sector 4.
        assert_eq!(with(3 * 512, LABEL_ID), "an LVM label in sector 3");
        assert_eq!(with(24, LABEL_TYPE), "an LVM label in sector 0");
        assert_eq!(
            lvm_traces(&{
                let mut b = blank.clone();
                b[4 * 512..4 * 512 + 8].copy_from_slice(LABEL_ID);
                b
            }),
            None
        );
        assert_eq!(
            with(4096 + 4, MDA_MAGIC),
            "an LVM metadata area header at byte 4096"
        );
        let text = format!("contents = \"{}\"", crate::model::CONTENTS);
        assert_eq!(
            with(900_000 + 11, text.as_bytes()),
            "LVM metadata text at byte 900023"
        );
        // A short device is scanned as far as it goes.
        assert_eq!(lvm_traces(&[0u8; 100]), None);
    }
}
