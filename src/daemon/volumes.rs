//! The engine's policy, written once over where the metadata is kept.
//!
//! [`VolumeEngine`] implements [`Engine`] on top of a [`Metadata`] (lvmd's `Lvm`
//! library on real devices, or VGs in memory), an [`Activation`] and a [`Node`]. So the
//! simulated engine runs exactly the policy the real one runs — idempotent creates,
//! deactivating before removing, refusing to shrink what is in use, checking every
//! argument before the first change — and tests of the one hold for the other.
//!
//! [`Node`]: super::node::Node

use super::activation::{Activation, ActivationError};
use super::crash;
use super::engine::{
    spec_mismatch, Created, Engine, EngineError, Expanded, Layout, LvInfo, LvSpec, MountSpec,
    Mounted, PathStats, Rekeyed, Result, VgInfo, VgSpace, VolumeKey,
};
use super::marks;
use super::node::{LoopDev, NodeError};
use super::node_work::NodeWork;
use super::view;
use super::wipe::{self, Wiper, Zeroer};
use crate::activate::target::RaidStatus;
use crate::crypt::{CryptError, CryptName, Passphrase};
use crate::lvm::edit::check_size;
use crate::lvm::{Edit, LvmError};
use crate::model::name::{validate_lv_name, validate_vg_name};
use crate::model::VolumeGroup;
use crate::units::{human_bytes, Bytes, Extents};
use crate::uuid::Uuid;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// A VG as read, with the device each present PV was found on.
#[derive(Debug, Clone)]
pub struct VgRead {
    pub vg: Arc<VolumeGroup>,
    pub devices: BTreeMap<Uuid, PathBuf>,
    pub metadata: MetadataUse,
}

/// How full the VG's metadata areas are: a VG whose text no longer fits can describe
/// no more volumes, whatever its free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetadataUse {
    /// The current metadata text.
    pub used: Bytes,
    /// The longest text every area takes.
    pub capacity: Bytes,
}

/// Where VGs live. Errors are the `Lvm` library's, so both stores fail alike.
pub trait Metadata: Send + Sync + 'static {
    fn read_all(&self) -> std::result::Result<Vec<VgRead>, LvmError>;
    fn read(&self, vg: &str) -> std::result::Result<VgRead, LvmError>;
    fn vg_create(&self, vg: &str, devices: &[PathBuf]) -> std::result::Result<(), LvmError>;
    fn vg_extend(&self, vg: &str, devices: &[PathBuf]) -> std::result::Result<(), LvmError>;
    /// Applies one VG edit ([`crate::lvm::edit::apply`], the same code for every store)
    /// to the VG as stored now, and commits it.
    fn edit(&self, vg: &str, edit: &Edit) -> std::result::Result<(), LvmError>;
    /// Whether some metadata area of `vg` holds an older copy than the newest (a
    /// commit cut short between its headers) or a damaged one. Default: a store that
    /// cannot.
    fn has_stale_copies(&self, _vg: &str) -> std::result::Result<bool, LvmError> {
        Ok(false)
    }
    /// Waits for what the store writes after answering (lvm2's backup files).
    fn flush_background_writes(&self) {}
}

/// One writer per VG at a time, many readers, inside this process. (lvm2's file locks,
/// taken inside `Lvm`, order lvmd against other processes.)
#[derive(Debug, Default)]
pub(crate) struct VgLocks(Mutex<HashMap<String, Arc<RwLock<()>>>>);

impl VgLocks {
    pub(crate) fn get(&self, vg: &str) -> Arc<RwLock<()>> {
        self.0
            .lock()
            .unwrap()
            .entry(vg.to_owned())
            .or_default()
            .clone()
    }
}

/// The engine's policy over a metadata store, an activation layer and a node.
///
/// # Crash safety
///
/// A metadata commit is atomic (new texts first, then the headers; a reader takes the
/// highest seqno it finds, and the next commit rewrites every area), so a `kill -9`
/// leaves each change either committed or not. Killed between the headers of two PVs,
/// the older copies left behind make lvm2 warn ("inconsistent metadata") until the
/// next commit: reconciliation rewrites such a VG at start. Each operation orders its
/// steps so that both outcomes, at every point, are consistent or completed by start-up
/// reconciliation ([`super::reconcile`]) or by the caller retrying (every call is
/// idempotent by name):
///
/// - **create**: one commit (the LV tagged `lvmd.fresh`), then its first and last MiB
///   zeroed on the PVs ([`super::wipe`]). Before the commit: nothing happened, the
///   retry creates. After it: the LV exists; the retry finds it with the same spec,
///   zeroes its edges again while it is still fresh and inactive, and returns it
///   (`created: false`).
/// - **resize** (grow): commit, then reload the active table. Killed before the commit:
///   old size everywhere, the retry grows. Killed between: the metadata says the new
///   size, the kernel still maps the old one; the mapped old extents are unchanged
///   (growing only appends), so data is safe; reconciliation reloads the table at
///   start, and so does the retry (it finds the target size committed and refreshes an
///   active volume, a no-op when the table is current). A reload cut between its
///   suspend and resume leaves the old table live (suspended): the same check finds it
///   and the refresh resumes with the new one. Shrinking is refused while active, so
///   never needs a reload; it zeroes the extents it gives back before its commit.
/// - **remove**: deactivate, zero the LV's extents, then commit. Killed before the
///   deactivation: nothing changed. After it: the LV is inactive (maybe zeroed) but
///   still in the metadata; the retry removes it. An LV over the inline wipe limit is
///   instead renamed into a wipe LV by the commit, which holds its extents until the
///   wipe thread has zeroed and removed it (resumed at start-up). The other order could leave a device mapping extents the metadata calls free,
///   which a later create would hand out again: hence this order; reconciliation still
///   removes such a device (lvm2 or an old version could leave one) unless it is open.
/// - **activate/deactivate**: no metadata change; the activation layer removes a
///   device it created but never resumed on the next activation, and both calls are
///   idempotent.
///
/// Crash points for tests ([`super::crash`]) sit at the steps named above.
pub struct VolumeEngine<M> {
    pub(crate) meta: M,
    pub(crate) activation: Arc<dyn Activation>,
    pub(crate) node: NodeWork,
    pub(crate) locks: VgLocks,
    /// One per LV name (`vg/lv`), for creates and removes of linear and striped
    /// volumes: they hold it and only the VG's read lock, so those of different names
    /// run side by side and their commits go in one group (see
    /// [`super::real`]); every other change holds the VG's write lock.
    pub(crate) names: VgLocks,
    /// One per LV (`vg/lv`): staging and handing out are decided and done one at a
    /// time, so two stages of a fresh LV cannot both format it.
    pub(crate) handouts: VgLocks,
    /// Writes the zeros of [`super::wipe`]: removal, shrink, the edges of new volumes.
    pub(crate) zeroer: Arc<dyn Zeroer>,
    /// Removals of volumes up to this size zero them inline; larger ones in the
    /// background.
    pub(crate) inline_wipe_limit: Bytes,
    pub(crate) wiper: Arc<Wiper>,
    /// Per VG: its device class's thin pool and the pool's guards.
    pub(crate) thin: BTreeMap<String, super::thin::ThinPolicy>,
}

pub(super) fn lv_not_found(vg: &str, lv: &str) -> EngineError {
    LvmError::LvNotFound {
        vg: vg.into(),
        lv: lv.into(),
    }
    .into()
}

fn invalid(what: &'static str, value: impl ToString, why: impl Into<String>) -> EngineError {
    LvmError::InvalidArgument {
        what,
        value: value.to_string(),
        why: why.into(),
    }
    .into()
}

/// Checks a create request before anything is read or written: lvm2's rules (the VG
/// edit's own check, the one set of name, tag, size and layout rules), then lvmd's
/// reserved names and marks.
fn check_spec(vg: &str, spec: &LvSpec) -> Result<()> {
    if spec.layout == Layout::Thin {
        // The pool is the class's, known once the VG is read; the rest checks here.
        Edit::CreateThin {
            name: spec.name.clone(),
            pool: String::new(),
            size: spec.size,
            tags: spec.tags.clone(),
        }
        .check(vg)?;
    } else {
        Edit::CreateLv(spec.clone()).check(vg)?;
    }
    if spec.name.starts_with(super::marks::WIPE_NAME_PREFIX) {
        return Err(invalid(
            "logical volume name",
            &spec.name,
            format!(
                "names starting with {:?} are lvmd's own (volumes being wiped)",
                super::marks::WIPE_NAME_PREFIX
            ),
        ));
    }
    for t in &spec.tags {
        if super::marks::is_internal(t) {
            return Err(invalid(
                "tag",
                t,
                format!(
                    "tags starting with {:?} are lvmd's own",
                    super::marks::PREFIX
                ),
            ));
        }
    }
    Ok(())
}

/// Metadata areas this full get a warning at each create: when the text no longer
/// fits, the VG can describe no volume more, however much space it has.
const METADATA_WARN_PERCENT: u64 = 75;

fn warn_if_metadata_filling(read: &VgRead) {
    let MetadataUse { used, capacity } = read.metadata;
    if capacity.0 > 0 && used.0 * 100 >= capacity.0 * METADATA_WARN_PERCENT {
        tracing::warn!(
            vg = read.vg.name,
            used = used.0,
            capacity = capacity.0,
            "metadata areas {}% full ({} of {}): once full no volume more can be created \
             in this volume group (its smallest metadata area bounds it, and an area cannot \
             grow: see the device class's metadata_size)",
            used.0 * 100 / capacity.0,
            human_bytes(used),
            human_bytes(capacity)
        );
    }
}

/// Refuses sizes the VG could not hold even empty: OUT_OF_RANGE rather than "no space";
/// and layouts this VG cannot have.
fn check_fits(vg: &VolumeGroup, size: Bytes, layout: Layout) -> Result<()> {
    let total = vg.extent_size.span(vg.total_extents()).to_bytes();
    if layout.copies() as usize > vg.pvs.len() {
        return Err(invalid(
            "mirror count",
            layout.copies() - 1,
            format!(
                "{} copies need as many PVs, and volume group {} has {}",
                layout.copies(),
                vg.name,
                vg.pvs.len()
            ),
        ));
    }
    // Every copy counts: a mirror larger than the VG over its copies never fits.
    let need = vg
        .extent_size
        .span(layout.footprint(size, vg.extent_size))
        .to_bytes();
    if need > total {
        return Err(EngineError::OutOfRange {
            what: "size",
            value: size,
            vg: vg.name.clone(),
            total,
        });
    }
    layout
        .check_for(&vg.name, vg.extent_size)
        .map_err(LvmError::from)?;
    Ok(())
}

impl<M: Metadata> VolumeEngine<M> {
    pub fn new(
        meta: M,
        activation: Arc<dyn Activation>,
        node: NodeWork,
        zeroer: Arc<dyn Zeroer>,
    ) -> Self {
        VolumeEngine {
            meta,
            activation,
            node,
            locks: VgLocks::default(),
            names: VgLocks::default(),
            handouts: VgLocks::default(),
            zeroer,
            inline_wipe_limit: wipe::DEFAULT_INLINE_LIMIT,
            wiper: Arc::default(),
            thin: BTreeMap::new(),
        }
    }

    /// Thin volumes of `vg` go into this pool, under its guards.
    pub fn with_thin_pool(mut self, vg: &str, policy: super::thin::ThinPolicy) -> Self {
        self.thin.insert(vg.into(), policy);
        self
    }

    /// The store the engine keeps its VGs in.
    pub fn metadata(&self) -> &M {
        &self.meta
    }

    /// Removals of volumes larger than `limit` zero them in the background.
    pub fn with_inline_wipe_limit(mut self, limit: Bytes) -> Self {
        self.inline_wipe_limit = limit;
        self
    }

    /// Another zeroer (tests: a [`wipe::SimZeroer`] to look at, or make fail).
    pub fn with_zeroer(mut self, zeroer: Arc<dyn Zeroer>) -> Self {
        self.zeroer = zeroer;
        self
    }

    /// "No space" while removed volumes are still being zeroed says so, with how much.
    pub(super) fn no_space(&self, vg: &str, e: LvmError) -> EngineError {
        if let LvmError::Alloc { .. } = &e {
            if let Ok(read) = self.meta.read(vg) {
                let wiping = wipe::wiping(&read.vg);
                if wiping > Bytes(0) {
                    return EngineError::NoSpaceWhileWiping {
                        source: e,
                        vg: vg.into(),
                        wiping,
                    };
                }
            }
        }
        e.into()
    }

    /// Where each active LV of `vg` is; an activation layer that cannot answer leaves
    /// the volumes shown inactive rather than failing a listing.
    pub(super) fn devices(&self, read: &VgRead) -> BTreeMap<String, PathBuf> {
        let vg = &read.vg.name;
        match self.activation.active_volumes(read) {
            Ok(list) => list.into_iter().map(|a| (a.lv, a.device)).collect(),
            Err(e) => {
                tracing::warn!(vg, "cannot list active volumes: {e}");
                BTreeMap::new()
            }
        }
    }

    /// dm-raid's status of an active mirror; as with [`Self::devices`], a kernel that
    /// cannot answer leaves it unknown rather than failing a listing.
    pub(super) fn raid_status(&self, read: &VgRead, lv: &str, active: bool) -> Option<RaidStatus> {
        if !active || !read.vg.lv(lv).is_some_and(crate::activate::raid::is_raid) {
            return None;
        }
        self.activation.raid_status(read, lv).unwrap_or_else(|e| {
            tracing::warn!(vg = %read.vg.name, lv, "cannot read the mirror's status: {e}");
            None
        })
    }

    /// Why the active thin pool `pool` cannot serve its volumes as it should, as the
    /// kernel says; `None` while it works (or is not active). A status the kernel
    /// cannot give for a pool whose volume is active counts as trouble: nothing vouches
    /// for the volume then.
    fn pool_trouble(&self, read: &VgRead, pool: &str) -> Option<String> {
        match self.activation.thin_pool_status(read, pool) {
            Ok(status) => status.and_then(|s| s.trouble),
            Err(e) => Some(format!("unreadable ({e})")),
        }
    }

    /// The volume as clients see it, with what the kernel says of it when `device` is
    /// there: dm-raid's status of a mirror (and of its integrity layers), its pool's
    /// trouble for a thin volume.
    /// `pools` keeps each pool's answer for the rest of one listing.
    fn lv_view(
        &self,
        read: &VgRead,
        lv: &crate::model::LogicalVolume,
        device: Option<PathBuf>,
        pools: &mut BTreeMap<String, Option<String>>,
    ) -> LvInfo {
        let active = device.is_some();
        let status = self.raid_status(read, &lv.name, active);
        let mut info = view::lv_info(read, lv, device, status.as_ref());
        if let Some(sync) = info.sync.as_mut().filter(|_| info.layout.integrity()) {
            // As with the raid status, a kernel that cannot answer leaves it unknown.
            sync.integrity_mismatches = self
                .activation
                .integrity_mismatches(read, &lv.name)
                .unwrap_or_else(|e| {
                    tracing::warn!(vg = %read.vg.name, lv = %lv.name, "cannot read dm-integrity's status: {e}");
                    None
                });
        }
        if let Some(pool) = super::thin::pool_of_thin(lv).filter(|_| active) {
            let trouble = pools
                .entry(pool.to_owned())
                .or_insert_with(|| self.pool_trouble(read, pool));
            if let Some(trouble) = trouble {
                info.health = view::with_pool_trouble(info.health, &read.vg.name, pool, trouble);
            }
        }
        info
    }

    pub(super) fn info(&self, read: &VgRead, lv: &str) -> Result<LvInfo> {
        let model = read
            .vg
            .lv(lv)
            .filter(|l| view::is_client_visible(l))
            .ok_or_else(|| lv_not_found(&read.vg.name, lv))?;
        let device = self.devices(read).remove(lv);
        Ok(self.lv_view(read, model, device, &mut BTreeMap::new()))
    }

    fn create_locked(&self, vg: &str, spec: &LvSpec, encrypted: bool) -> Result<Created<LvInfo>> {
        let read = self.meta.read(vg)?;
        if let Some(of) = read
            .vg
            .lv(&spec.name)
            .and_then(|l| marks::snapshot_of(&l.tags))
        {
            return Err(EngineError::AlreadyExists {
                what: "logical volume",
                name: format!("{vg}/{}", spec.name),
                why: format!("as a snapshot of {of}"),
            });
        }
        if let Some(from) = read
            .vg
            .lv(&spec.name)
            .and_then(|l| marks::made_from(&l.tags))
        {
            return Err(EngineError::AlreadyExists {
                what: "logical volume",
                name: format!("{vg}/{}", spec.name),
                why: format!("made from {from} (asked for a new volume)"),
            });
        }
        if read.vg.lv(&spec.name).is_some() {
            if spec.layout == Layout::Thin {
                // A create killed after its commit: its message goes before the
                // volume is handed back.
                self.finish_pending(&read)?;
                return self.existing(&self.meta.read(vg)?, spec, encrypted);
            }
            return self.existing(&read, spec, encrypted);
        }
        check_fits(&read.vg, spec.size, spec.layout)?;
        // Fresh from the creating commit: until it is handed out, a retry may clear its
        // edges again (a crash between this commit and the zeroing below is safe).
        let mut fresh = spec.clone();
        fresh.tags.push(super::marks::FRESH.into());
        if encrypted {
            // In the same commit: no moment where the volume exists unmarked.
            fresh.tags.push(marks::CRYPT.into());
        }
        if spec.layout == Layout::Thin {
            // Nothing of it is on PV extents: no edges to clear (its blocks read as
            // zeroes until written).
            let read = self.create_thin_locked(vg, &spec.name, spec.size, fresh.tags)?;
            warn_if_metadata_filling(&read);
            tracing::info!(
                vg,
                lv = spec.name,
                size = spec.size.0,
                encrypted,
                "created thin volume"
            );
            return Ok(Created {
                value: self.info(&read, &spec.name)?,
                created: true,
            });
        }
        match self.meta.edit(vg, &Edit::CreateLv(fresh)) {
            Ok(()) => {}
            // Another writer (lvm2) made it between our read and our lock.
            Err(LvmError::LvExists { .. }) => {
                return self.existing(&self.meta.read(vg)?, spec, encrypted)
            }
            Err(e) => return Err(self.no_space(vg, e)),
        }
        crash::point("committed");
        let read = self.meta.read(vg)?;
        warn_if_metadata_filling(&read);
        let model = read
            .vg
            .lv(&spec.name)
            .ok_or_else(|| lv_not_found(vg, &spec.name))?;
        self.clear_edges(&read, model)?;
        crash::point("cleared");
        tracing::info!(vg, lv = spec.name, size = spec.size.0, layout = %spec.layout, encrypted, "created logical volume");
        Ok(Created {
            value: self.info(&read, &spec.name)?,
            created: true,
        })
    }

    pub(super) fn existing(
        &self,
        read: &VgRead,
        spec: &LvSpec,
        encrypted: bool,
    ) -> Result<Created<LvInfo>> {
        let info = self.info(read, &spec.name)?;
        let is = marks::is_encrypted(&info.tags);
        let mismatch = spec_mismatch(&info, spec, read.vg.extent_size).or_else(|| {
            let said = |e: bool| if e { "encrypted" } else { "not encrypted" };
            (is != encrypted).then(|| format!("{} (asked for {})", said(is), said(encrypted)))
        });
        match mismatch {
            None => {
                // Still fresh (never handed out) and inactive: nobody wrote to it, so
                // the edges are cleared again, in case a crash came before they were.
                // Anything else of an existing LV is never zeroed.
                if super::marks::is_fresh(&info.tags) && info.device.is_none() {
                    if let Some(model) = read.vg.lv(&spec.name) {
                        self.clear_edges(read, model)?;
                    }
                }
                Ok(Created {
                    value: info,
                    created: false,
                })
            }
            Some(why) => Err(EngineError::AlreadyExists {
                what: "logical volume",
                name: format!("{}/{}", read.vg.name, spec.name),
                why,
            }),
        }
    }

    /// Resizes `lv` with the VG's write lock held, once `check` has approved the LV as
    /// it is now and the size it would get.
    fn resize_locked(
        &self,
        vg: &str,
        lv: &str,
        size: Bytes,
        check: impl FnOnce(&LvInfo, Bytes) -> Result<()>,
    ) -> Result<LvInfo> {
        let read = self.meta.read(vg)?;
        let current = self.info(&read, lv)?;
        // raid, thin and pools: refused before anything (a same-size retry reloads
        // tables) reaches them.
        crate::lvm::check_resizable(&read.vg, lv)?;
        check_fits(&read.vg, size, current.layout)?;
        let target = current.layout.rounded_size(size, read.vg.extent_size);
        check(&current, target)?;
        self.check_thin_grow(&read, lv, target)?;
        if target == current.size {
            if current.device.is_some() {
                // A retry after a crash between the commit and the reload: reload now.
                // (Unchanged tables are left alone.)
                self.activation.refresh(&read, lv)?;
                self.refresh_read_only_loops(&current)?;
            }
            return Ok(current);
        }
        let edit = Edit::ResizeLv {
            lv: lv.into(),
            size,
        };
        // A raid1 LV: the VG as the edit will leave it, which refuses a shrink before
        // anything (a raid1 volume is never cut) and says where a grow goes.
        let raid1_planned = if read.vg.lv(lv).is_some_and(|l| l.type_name() == "raid1") {
            // Growing creates no LV, so the origin is not recorded anywhere.
            let origin = crate::lvm::edit::Origin {
                host: String::new(),
                time: 0,
                pv_block_sizes: Default::default(),
            };
            let planned = crate::lvm::edit::apply(&read.vg, &edit, &origin)
                .map_err(|e| self.no_space(vg, e))?;
            Some(VgRead {
                vg: Arc::new(planned.vg),
                ..read.clone()
            })
        } else {
            None
        };
        if target < current.size && current.device.is_some() {
            return Err(EngineError::FailedPrecondition {
                what: "logical volume",
                name: format!("{vg}/{lv}"),
                why: format!(
                    "is active; shrinking it from {} to {} under a user could destroy data (deactivate it first)",
                    current.size.0, target.0
                ),
            });
        }
        if target < current.size {
            // The extents a shrink gives back are zeroed before it is committed (a crash
            // between: the LV's tail, which its owner asked to drop, reads as zeros).
            let model = read.vg.lv(lv).ok_or_else(|| lv_not_found(vg, lv))?;
            let keep = Extents(target.0 / read.vg.extent_size.bytes().0);
            let ranges = wipe::freed_ranges(&read, model, keep)?;
            self.zero_ranges(vg, lv, "extents a shrink gives back", &ranges, None)?;
        }
        // A raid1 grow: the grown part of every image is zeroed before the commit, on
        // the extents the very edit will allocate (the edit is pure, and this VG's
        // write lock holds it still), so no byte they held before reads back through
        // the mirror or is resynced onto its other legs (placement::raid1_grown_extents).
        // Before the commit, a kill -9 leaves only zeroed free extents; after it, the
        // extents are the mirror's own and zeroed already.
        let old_extents = Extents(current.size.0 / read.vg.extent_size.bytes().0);
        let grown_ranges = |vg_now: &VgRead| -> Result<Vec<wipe::DeviceRange>> {
            match vg_now.vg.lv(lv) {
                Some(model) if target > current.size => {
                    wipe::raid1_grown_ranges(vg_now, model, old_extents)
                }
                _ => Ok(Vec::new()),
            }
        };
        let mut zeroed = Vec::new();
        if let Some(planned) = raid1_planned {
            zeroed = grown_ranges(&planned)?;
            self.zero_ranges(vg, lv, "grown part of each mirror leg", &zeroed, None)?;
        }
        self.meta
            .edit(vg, &edit)
            .map_err(|e| self.no_space(vg, e))?;
        crash::point("committed");
        let read = self.meta.read(vg)?;
        let now = grown_ranges(&read)?;
        if now != zeroed {
            // Another process (lvm2) changed the VG between our read and lvm2's lock
            // in the commit, so the grow took other extents: they are the mirror's
            // now, not yet reloaded, and zeroed before anything maps them.
            tracing::warn!(
                vg,
                lv,
                "the grow allocated other extents than planned; zeroing those"
            );
            self.zero_ranges(vg, lv, "grown part of each mirror leg", &now, None)?;
        }
        if current.device.is_some() {
            // Grown on disk: the active table must follow, or the new space is invisible;
            // and so must read-only publishes of it.
            self.activation.refresh(&read, lv)?;
            self.refresh_read_only_loops(&current)?;
        }
        tracing::info!(
            vg,
            lv,
            from = current.size.0,
            to = target.0,
            "resized logical volume"
        );
        self.info(&read, lv)
    }
}

impl<M: Metadata> VolumeEngine<M> {
    /// [`Engine::repair_logical_volume`] under the VG's write lock.
    ///
    /// Crash-safe order: (1) the new legs' metadata areas are zeroed while their
    /// extents are still free (a crash: zeroed free space), so dm-raid finds no stale
    /// superblock there and takes the leg as new; (2) one commit moves the legs and
    /// flags them `REBUILD` (a crash after it: lvm2 and lvmd both activate the mirror
    /// with `rebuild N`, and lvmd's start-up reconciliation reloads the active table
    /// behind its metadata, so the rebuild starts either way); (3) the legs' tables and
    /// then the raid table are reloaded, which starts the rebuild; (4) a second commit
    /// drops the flags (a crash before it: the next activation rebuilds the leg again,
    /// slower but never wrong, and a retry drops them).
    pub(super) fn repair_locked(&self, vg: &str, lv: &str) -> Result<LvInfo> {
        let read = self.meta.read(vg)?;
        let current = self.info(&read, lv)?;
        let precondition = |why: String| EngineError::FailedPrecondition {
            what: "logical volume",
            name: format!("{vg}/{lv}"),
            why,
        };
        let model = read.vg.lv(lv).ok_or_else(|| lv_not_found(vg, lv))?;
        let Some(legs) = crate::lvm::raid_legs(model) else {
            return Err(precondition(format!(
                "is a {} volume; only raid1 mirrors are repaired",
                model.type_name()
            )));
        };
        if current.device.is_none() {
            return Err(precondition(
                "is not active; activate it first (a mirror is repaired while it runs, as \
                 lvm2's lvconvert --repair)"
                    .into(),
            ));
        }
        let status = self.raid_status(&read, lv, true);
        // PVs whose device is gone: neither a leg's place nor the new leg's.
        let absent: Vec<String> = read
            .vg
            .pvs
            .iter()
            .filter(|pv| view::pv_absent(&read, pv))
            .map(|pv| pv.name.clone())
            .collect();
        // The legs the volume's health calls broken.
        let broken: Vec<usize> = (0..legs.len())
            .filter(|&i| view::leg_fault(&read, i, &legs[i], status.as_ref()).is_some())
            .collect();
        if broken.is_empty() {
            // Nothing to move; a repair cut after its reload leaves the flags: drop
            // them once the kernel runs the table with the rebuild.
            if !self.activation.table_current(&read, lv)? {
                self.activation.refresh(&read, lv)?;
            }
            self.meta
                .edit(vg, &Edit::RaidRebuildLoaded { lv: lv.into() })?;
            return self.info(&self.meta.read(vg)?, lv);
        }
        let edit = Edit::RepairRaid {
            lv: lv.into(),
            legs: broken.clone(),
            avoid: absent,
        };
        // The VG as the edit will leave it (the edit is pure and this lock holds the
        // VG still): where the new metadata areas go.
        let origin = crate::lvm::edit::Origin {
            host: String::new(),
            time: 0,
            pv_block_sizes: Default::default(),
        };
        let planned =
            crate::lvm::edit::apply(&read.vg, &edit, &origin).map_err(|e| self.no_space(vg, e))?;
        let planned = VgRead {
            vg: Arc::new(planned.vg),
            ..read.clone()
        };
        // The new legs' raid metadata, and with integrity their new integrity metadata:
        // whole, as at creation.
        let moved: Vec<(String, String)> = broken.iter().map(|&i| legs[i].clone()).collect();
        let ranges = self.new_leg_metadata_ranges(&planned, &moved)?;
        self.zero_ranges(vg, lv, "new mirror legs' metadata areas", &ranges, None)?;
        self.meta
            .edit(vg, &edit)
            .map_err(|e| self.no_space(vg, e))?;
        crash::point("committed");
        let read = self.meta.read(vg)?;
        self.activation.refresh(&read, lv)?;
        crash::point("reloaded");
        self.meta
            .edit(vg, &Edit::RaidRebuildLoaded { lv: lv.into() })?;
        tracing::info!(vg, lv, legs = ?broken, "repaired mirror: legs rebuilding");
        self.info(&self.meta.read(vg)?, lv)
    }

    /// Tells the read-only loop devices over an active, grown volume its new size
    /// (`LOOP_SET_CAPACITY`), so read-only block publishes see it too.
    fn refresh_read_only_loops(&self, lv: &LvInfo) -> Result<()> {
        let Some(device) = &lv.device else {
            return Ok(());
        };
        for l in self.node.node.loops_over(device)? {
            if l.read_only && l.lvmd {
                self.node.node.refresh_loop_size(&l.path)?;
                tracing::info!(device = %device.display(), loop_device = %l.path.display(),
                    "read-only loop device takes the new size");
            }
        }
        Ok(())
    }

    /// Deactivates, saying what holds the volume when it is busy: a read-only block
    /// publish holds it through its loop device, which the kernel's open count does
    /// not name.
    pub(super) fn deactivate_volume(&self, read: &VgRead, lv: &str) -> Result<bool> {
        match self.activation.deactivate(read, lv) {
            Err(ActivationError::Busy { vg, lv: name, by }) => {
                let loops = match self.devices(read).get(lv) {
                    Some(device) => self.node.node.loops_over(device).unwrap_or_default(),
                    None => Vec::new(),
                };
                let mut by = by;
                for l in loops {
                    let users = self.node.node.loop_users(&l.path).unwrap_or_default();
                    by.push_str(&format!(
                        "; {}loop device {} reads from it{}",
                        if l.read_only { "read-only " } else { "" },
                        l.path.display(),
                        if users.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", users.join(", "))
                        }
                    ));
                    if l.lvmd {
                        by.push_str(" (a read-only block publish: unpublish it first)");
                    }
                }
                Err(ActivationError::Busy { vg, lv: name, by }.into())
            }
            other => Ok(other?),
        }
    }

    /// The managed VG and LV whose active device is `device`.
    fn managed_volume(&self, device: &Path) -> Result<Option<(String, String)>> {
        for read in self.meta.read_all()? {
            for (lv, dev) in self.devices(&read) {
                if self.node.node.same_device(&dev, device).unwrap_or(false) {
                    return Ok(Some((read.vg.name.clone(), lv)));
                }
            }
        }
        Ok(None)
    }

    /// After `target` was unpublished: detaches the loop device a read-only block
    /// publish bound there. Only one that is surely lvmd's and unused: read-only,
    /// labelled by lvmd when attached, reading from an active LV of a VG lvmd manages,
    /// and mounted nowhere else (an open file descriptor on it, which the kernel does
    /// not show, makes the detach lazy: it lands on the last close and breaks no
    /// reader). Anything else is left alone, and logged.
    fn release_read_only_loop(&self, l: &LoopDev) -> Result<()> {
        if !(l.read_only && l.lvmd) {
            return Ok(());
        }
        // Over an encrypted volume, the loop device reads from its crypt mapping.
        let managed = match self.managed_volume(&l.backing)? {
            Some(v) => Some(v),
            None => match self.node.node.crypt_mapping_of(&l.backing)? {
                Some(name) if self.logical_volume(name.vg(), name.lv()).is_ok() => {
                    Some((name.vg().to_owned(), name.lv().to_owned()))
                }
                _ => None,
            },
        };
        let Some((vg, lv)) = managed else {
            tracing::warn!(loop_device = %l.path.display(), backing = %l.backing.display(),
                "loop device reads from no active volume lvmd manages; left attached");
            return Ok(());
        };
        let users = self.node.node.loop_users(&l.path)?;
        if !users.is_empty() {
            tracing::warn!(vg, lv, loop_device = %l.path.display(), users = users.join(", "),
                "read-only loop device still used elsewhere; left attached");
            return Ok(());
        }
        self.node.node.detach_loop(&l.path)?;
        tracing::info!(vg, lv, loop_device = %l.path.display(), "detached read-only loop device");
        Ok(())
    }
}

/// lvmd's marks that a hand-out as a raw device ends: after it, what is on the LV may
/// be an application's, never to be formatted.
fn unformattable_marks(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter(|t| {
            *t == marks::FRESH
                || t.starts_with(marks::MKFS_PREFIX)
                || t.starts_with(marks::MKLUKS_PREFIX)
        })
        .cloned()
        .collect()
}

impl<M: Metadata> VolumeEngine<M> {
    /// Activates with the VG's write lock (no resize or remove of the VG in between),
    /// leaving lvmd's marks as they are.
    fn activate_volume(&self, vg: &str, lv: &str) -> Result<LvInfo> {
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        let read = self.meta.read(vg)?;
        let info = self.info(&read, lv)?;
        if info.tags.iter().any(|t| t == marks::COPYING) {
            // A restore cut short: its bytes are not all there.
            return Err(EngineError::FailedPrecondition {
                what: "logical volume",
                name: format!("{vg}/{lv}"),
                why: "is being restored from a snapshot and not complete; the retry of \
                      its CreateVolume finishes it"
                    .into(),
            });
        }
        let active = self.activation.activate(&read, lv)?;
        crash::point("activated");
        if read.vg.lv(lv).is_some_and(crate::activate::raid::is_raid) {
            // What the metadata asked of this first load only (a new integrity layer's
            // `recalculate`, a repaired leg's `REBUILD`), now in the kernel's table:
            // dropped, as lvm2 drops it after its activation, so no later load
            // restarts it. A crash before this commit: the next activation (lvmd's or
            // lvm2's) asks again, which the kernel takes as a no-op or a restart.
            self.meta
                .edit(vg, &Edit::RaidRebuildLoaded { lv: lv.into() })?;
        }
        let mut info = self.info(&read, lv)?;
        info.device = Some(active.device);
        Ok(info)
    }

    /// Replaces lvmd's mark `from` by `to` on `vg/lv` in one commit, checking under the
    /// VG's write lock that the LV is still as it was read: `from` there, or with
    /// `None` no mark of lvmd's at all (another writer may have changed it since).
    fn swap_mark(&self, vg: &str, lv: &str, from: Option<&str>, to: &str) -> Result<()> {
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        let read = self.meta.read(vg)?;
        let tags = &self.info(&read, lv)?.tags;
        let still = match from {
            Some(f) => tags.iter().any(|t| t == f),
            // The encryption mark says nothing about what the volume holds.
            None => !tags
                .iter()
                .any(|t| super::marks::is_internal(t) && t != marks::CRYPT),
        };
        if !still {
            return Err(EngineError::FailedPrecondition {
                what: "logical volume",
                name: format!("{vg}/{lv}"),
                why: format!(
                    "its marks changed while it was being staged (now {}); retry",
                    tags.join(", ")
                ),
            });
        }
        let del: Vec<String> = from.iter().map(|f| f.to_string()).collect();
        // An empty `to`: `from` is only dropped.
        let add: Vec<String> = [to]
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| t.to_string())
            .collect();
        self.meta.edit(vg, &Edit::lv_tags(lv, &add, &del))?;
        tracing::info!(vg, lv, from, to, "marked");
        Ok(())
    }

    /// Before `vg/lv` is handed out as a raw device (a client's activate, a block
    /// publish): drops the marks that would let lvmd format it later, in one commit.
    fn end_formattable(&self, vg: &str, lv: &str) -> Result<()> {
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        let read = self.meta.read(vg)?;
        let drop = unformattable_marks(&self.info(&read, lv)?.tags);
        if drop.is_empty() {
            return Ok(());
        }
        self.meta.edit(vg, &Edit::lv_tags(lv, &[], &drop))?;
        tracing::info!(vg, lv, dropped = ?drop, "handed out as a raw device: lvmd will never format it");
        Ok(())
    }

    /// The opened mapping of the active encrypted LV `vg/lv` (`device`: the LV's),
    /// LUKS-formatted first when lvmd made it blank. `fs_type`: the filesystem the
    /// stage will make inside (`None`: a block publish, nothing made inside).
    ///
    /// | marks                | LV holds         | then                                    |
    /// |----------------------|------------------|-----------------------------------------|
    /// | `lvmd.fresh`         | nothing          | `lvmd.mkluks=`, format, `lvmd.mkfs=`    |
    /// | `lvmd.fresh`         | anything         | refuse (written outside lvmd)           |
    /// | `lvmd.mkluks=`       | anything         | format again (never opened), as above   |
    /// | other (or none)      | a LUKS header    | open with the key                       |
    /// | other                | anything else    | refuse                                  |
    ///
    /// A volume without `lvmd.crypt` whose LV holds a LUKS header (cryptsetup's) is
    /// adopted: opened, then marked. Every refusal and a wrong key change nothing.
    fn open_encrypted(
        &self,
        vg: &str,
        lv: &str,
        device: &Path,
        key: &VolumeKey,
        fs_type: Option<&str>,
        read_only: bool,
    ) -> Result<PathBuf> {
        let name = CryptName::for_volume(vg, lv).map_err(NodeError::from)?;
        let node = &self.node.node;
        let tags = self.logical_volume(vg, lv)?.tags;
        let refuse = |why: String| {
            tracing::warn!(vg, lv, device = %device.display(), "not opening: {why}");
            EngineError::FailedPrecondition {
                what: "logical volume",
                name: format!("{vg}/{lv}"),
                why,
            }
        };
        let cut_short = marks::luks_formatting_for(&tags).map(str::to_owned);
        if marks::is_encrypted(&tags) && (marks::is_fresh(&tags) || cut_short.is_some()) {
            if read_only {
                return Err(refuse(
                    "holds no LUKS volume yet, and a read-only stage cannot make one".into(),
                ));
            }
            // The filesystem recorded by a cut-short format wins, as with mkfs.
            let fs_type = match (fs_type, cut_short.as_deref()) {
                (Some(_), Some(was)) if !was.is_empty() => Some(was),
                (f, _) => f,
            };
            let inner = fs_type.unwrap_or("").to_owned();
            let mkluks = format!("{}{inner}", marks::MKLUKS_PREFIX);
            let again = match &cut_short {
                Some(was) => {
                    tracing::warn!(
                        vg,
                        lv,
                        "an earlier LUKS format was cut short: formatting again"
                    );
                    self.swap_mark(
                        vg,
                        lv,
                        Some(&format!("{}{was}", marks::MKLUKS_PREFIX)),
                        &mkluks,
                    )?;
                    true
                }
                None => {
                    let found = node.probe(device)?;
                    if !found.is_empty() {
                        return Err(refuse(format!(
                            "lvmd created it blank and never handed it out, yet it holds {}: written outside lvmd, so lvmd does not format it",
                            found.describe()
                        )));
                    }
                    self.swap_mark(vg, lv, Some(marks::FRESH), &mkluks)?;
                    false
                }
            };
            crash::point("luks-marked");
            node.luks_format(device, &key.luks, &key.key, again)?;
            crash::point("luks-formatted");
            // Inside, a filesystem is lvmd's to make (over whatever decrypted noise is
            // there: nothing was ever written through the mapping).
            let next = match fs_type {
                Some(t) => format!("{}{t}", marks::MKFS_PREFIX),
                None => String::new(),
            };
            self.swap_mark(vg, lv, Some(&mkluks), &next)?;
            tracing::info!(vg, lv, device = %device.display(), cipher = key.luks.cipher, "LUKS2-formatted");
        } else if !marks::is_encrypted(&tags) {
            let found = node.probe(device)?;
            if !found.signatures.iter().any(|s| s.name == "crypto_LUKS") {
                return Err(refuse(format!(
                    "a key was given, but it is not encrypted (it holds {})",
                    found.describe()
                )));
            }
        }
        let mapped = node.luks_open(device, &name, &key.key, &key.luks.open_options())?;
        if !marks::is_encrypted(&tags) {
            self.add_crypt_mark(vg, lv)?;
            tracing::info!(vg, lv, "adopted a LUKS volume lvmd did not format");
        }
        tracing::info!(vg, lv, mapping = %name, "opened");
        Ok(mapped)
    }

    /// Marks `vg/lv` encrypted (an adopted LUKS volume), keeping its other marks.
    fn add_crypt_mark(&self, vg: &str, lv: &str) -> Result<()> {
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.meta
            .edit(vg, &Edit::lv_tags(lv, &[marks::CRYPT.to_owned()], &[]))?;
        Ok(())
    }

    /// The key an encrypted volume needs, or why it is missing.
    fn need_key<'k>(vg: &str, lv: &str, key: Option<&'k VolumeKey>) -> Result<&'k VolumeKey> {
        key.ok_or_else(|| EngineError::InvalidArgument {
            what: "request for",
            value: format!("{vg}/{lv}"),
            why: "the volume is encrypted (LUKS2) and its key (passphrase) was not given".into(),
        })
    }

    /// Closes the crypt mapping of `vg/lv` (`info`) if it is open (before a
    /// deactivation: the mapping holds the LV). Only an active, encrypted LV can have
    /// one; others are not asked about (libcryptsetup needs device-mapper). In use
    /// (mounted) is FAILED_PRECONDITION, nothing changed.
    fn close_crypt(&self, vg: &str, lv: &str, info: &LvInfo) -> Result<()> {
        if info.device.is_none() || !marks::is_encrypted(&info.tags) {
            return Ok(());
        }
        // A name too long for a mapping was never opened.
        let Ok(name) = CryptName::for_volume(vg, lv) else {
            return Ok(());
        };
        if self.node.node.luks_close(&name)? {
            tracing::info!(vg, lv, mapping = %name, "closed");
        }
        Ok(())
    }

    /// After an unmount or unpublish: closes the lvmd crypt mapping that was there,
    /// unless something else still uses it (a staging mount under a publish's bind).
    fn close_after_unmount(&self, name: &CryptName) {
        let h = self.handouts.get(&format!("{}/{}", name.vg(), name.lv()));
        let _h = h.write().unwrap();
        match self.node.node.luks_close(name) {
            Ok(true) => tracing::info!(mapping = %name, "closed"),
            Ok(false) => {}
            Err(NodeError::Crypt(CryptError::Busy { .. })) => {
                tracing::debug!(mapping = %name, "still in use elsewhere; left open")
            }
            Err(e) => tracing::warn!(mapping = %name, "cannot close: {e}"),
        }
    }

    /// Decides from the marks and the probe ([`super::formatting`]), formats if that
    /// says so, and mounts. `device`: the LV's, active.
    fn stage(&self, vg: &str, lv: &str, device: &Path, spec: &MountSpec) -> Result<Mounted> {
        use super::formatting::{decide, Plan};
        use super::marks::{FRESH, FS_PREFIX, MKFS_PREFIX};
        let name = format!("{vg}/{lv}");
        let tags = self.logical_volume(vg, lv)?.tags;
        let found = self.node.node.probe(device)?;
        let plan = decide(&tags, &found, &spec.fs_type, spec.read_only).map_err(|why| {
            tracing::warn!(vg, lv, device = %device.display(), found = found.describe(), "not staging: {why}");
            EngineError::FailedPrecondition {
                what: "logical volume",
                name: name.clone(),
                why,
            }
        })?;
        let (fs_type, formatted) = match plan {
            Plan::Mount { fs_type, adopt } => {
                if adopt {
                    // Recorded before the mount: from here on lvmd never formats it.
                    self.swap_mark(vg, lv, None, &format!("{FS_PREFIX}{fs_type}"))?;
                    tracing::info!(vg, lv, fs_type, "adopted a filesystem lvmd did not make");
                }
                (fs_type, false)
            }
            Plan::Format { fs_type, again } => {
                let mkfs = format!("{MKFS_PREFIX}{fs_type}");
                if again {
                    tracing::warn!(
                        vg,
                        lv,
                        fs_type,
                        "an earlier mkfs was cut short: formatting again"
                    );
                } else {
                    self.swap_mark(vg, lv, Some(FRESH), &mkfs)?;
                    crash::point("mkfs-marked");
                }
                self.node.node.make_filesystem(device, &fs_type, again)?;
                crash::point("formatted");
                self.swap_mark(vg, lv, Some(&mkfs), &format!("{FS_PREFIX}{fs_type}"))?;
                crash::point("fs-marked");
                tracing::info!(vg, lv, device = %device.display(), fs_type, "made a filesystem");
                (fs_type, true)
            }
        };
        if fs_type != spec.fs_type {
            // Mount what is there rather than reformat someone's data; but say so,
            // since the caller asked for something else.
            tracing::warn!(vg, lv, device = %device.display(), existing = fs_type, asked = spec.fs_type,
                "volume holds another filesystem; mounting it as it is");
        }
        match self.node.mount_as(device, spec, &fs_type, formatted) {
            Err(EngineError::Node(NodeError::Io { source, .. })) if !formatted => {
                Err(EngineError::FailedPrecondition {
                    what: "logical volume",
                    name,
                    why: format!(
                        "its {fs_type} filesystem ({}) does not mount: {source}; lvmd does not format it",
                        found.describe()
                    ),
                })
            }
            other => other,
        }
    }
}

impl<M: Metadata> Engine for VolumeEngine<M> {
    fn flush_background_writes(&self) {
        self.meta.flush_background_writes();
    }

    fn thin_pool(&self, vg: &str) -> Result<Option<super::thin::ThinPoolInfo>> {
        self.thin_pool_info(vg)
    }

    fn grow_thin_pool(
        &self,
        vg: &str,
        data: Option<Bytes>,
        metadata: Option<Bytes>,
    ) -> Result<super::thin::ThinPoolInfo> {
        VolumeEngine::grow_thin_pool(self, vg, data, metadata)
    }

    fn volume_groups(&self) -> Result<Vec<VgInfo>> {
        Ok(self
            .meta
            .read_all()?
            .iter()
            .map(|r| view::vg_info(&r.vg, &r.devices))
            .collect())
    }

    fn volume_group(&self, vg: &str) -> Result<VgInfo> {
        let lock = self.locks.get(vg);
        let _g = lock.read().unwrap();
        let r = self.meta.read(vg)?;
        Ok(view::vg_info(&r.vg, &r.devices))
    }

    fn create_volume_group(&self, vg: &str, devices: &[PathBuf]) -> Result<VgInfo> {
        validate_vg_name(vg).map_err(LvmError::from)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.meta.vg_create(vg, devices)?;
        let r = self.meta.read(vg)?;
        Ok(view::vg_info(&r.vg, &r.devices))
    }

    fn extend_volume_group(&self, vg: &str, devices: &[PathBuf]) -> Result<VgInfo> {
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.meta.vg_extend(vg, devices)?;
        let r = self.meta.read(vg)?;
        Ok(view::vg_info(&r.vg, &r.devices))
    }

    fn space(&self, vg: &str, stripes: u32) -> Result<VgSpace> {
        let lock = self.locks.get(vg);
        let _g = lock.read().unwrap();
        Ok(view::vg_space(&self.meta.read(vg)?, stripes))
    }

    fn logical_volumes(&self, vg: &str) -> Result<Vec<LvInfo>> {
        let lock = self.locks.get(vg);
        let _g = lock.read().unwrap();
        let r = self.meta.read(vg)?;
        let mut devices = self.devices(&r);
        let mut pools = BTreeMap::new();
        // Sized once: a filtered iterator would grow the vector of thousands step by step.
        let mut out = Vec::with_capacity(r.vg.lvs.len());
        for lv in view::visible_lvs(&r.vg) {
            let device = devices.remove(&lv.name);
            out.push(self.lv_view(&r, lv, device, &mut pools));
        }
        Ok(out)
    }

    fn logical_volume(&self, vg: &str, lv: &str) -> Result<LvInfo> {
        let lock = self.locks.get(vg);
        let _g = lock.read().unwrap();
        self.info(&self.meta.read(vg)?, lv)
    }

    fn create_volume(&self, vg: &str, spec: &LvSpec, encrypted: bool) -> Result<Created<LvInfo>> {
        check_spec(vg, spec)?;
        if encrypted {
            // Its mapping's name must be possible before the volume exists.
            CryptName::for_volume(vg, &spec.name).map_err(NodeError::from)?;
        }
        let lock = self.locks.get(vg);
        if spec.layout == Layout::Thin {
            // The pool's transaction ids are handed out in commit order.
            let _g = lock.write().unwrap();
            return self.create_locked(vg, spec, encrypted);
        }
        let name = self.names.get(&format!("{vg}/{}", spec.name));
        let _n = name.write().unwrap();
        let _g = lock.read().unwrap();
        self.create_locked(vg, spec, encrypted)
    }

    fn create_snapshot(
        &self,
        vg: &str,
        name: &str,
        source: &str,
        cow_size: Option<super::engine::CowSize>,
    ) -> Result<Created<super::engine::SnapshotInfo>> {
        super::snapshots::check_names(name, source)?;
        super::snapshots::check_cow_size(cow_size)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.create_snapshot_locked(vg, name, source, cow_size)
    }

    fn delete_snapshot(&self, vg: &str, name: &str) -> Result<bool> {
        validate_lv_name(name).map_err(LvmError::from)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.delete_snapshot_locked(vg, name)
    }

    fn snapshots(&self, vg: &str) -> Result<Vec<super::engine::SnapshotInfo>> {
        let lock = self.locks.get(vg);
        let _g = lock.read().unwrap();
        Ok(self.snapshots_of(&self.meta.read(vg)?))
    }

    fn create_snapshot_group(
        &self,
        vg: &str,
        group: &str,
        members: &[super::engine::GroupMember],
    ) -> Result<Created<super::engine::SnapshotGroupInfo>> {
        super::snapshot_groups::check_request(group, members)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.create_snapshot_group_locked(vg, group, members)
    }

    fn delete_snapshot_group(&self, vg: &str, group: &str) -> Result<bool> {
        validate_lv_name(group).map_err(LvmError::from)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.delete_snapshot_group_locked(vg, group)
    }

    fn snapshot_group(&self, vg: &str, group: &str) -> Result<super::engine::SnapshotGroupInfo> {
        validate_lv_name(group).map_err(LvmError::from)?;
        let lock = self.locks.get(vg);
        let _g = lock.read().unwrap();
        self.snapshot_group_of(&self.meta.read(vg)?, group)
    }

    fn create_volume_from(
        &self,
        vg: &str,
        spec: &LvSpec,
        source: &str,
        encrypted: bool,
    ) -> Result<Created<LvInfo>> {
        // Size 0: the source's (known under the lock); the other checks as any create's.
        let mut checked = spec.clone();
        checked.size = checked.size.max(Bytes(1));
        check_spec(vg, &checked)?;
        super::snapshots::check_names(&spec.name, source)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.create_from_locked(vg, spec, source, encrypted)
    }

    fn remove_logical_volume(&self, vg: &str, lv: &str) -> Result<bool> {
        validate_lv_name(lv).map_err(LvmError::from)?;
        let lock = self.locks.get(vg);
        {
            let name = self.names.get(&format!("{vg}/{lv}"));
            let _n = name.write().unwrap();
            let _g = lock.read().unwrap();
            let read = self.meta.read(vg)?;
            let plain = read.vg.lv(lv).is_some_and(|m| {
                super::thin::pool_of_thin(m).is_none() && !super::marks::is_wipe(&m.name, &m.tags)
            });
            if plain {
                return self.remove_locked(vg, lv, &read);
            }
        }
        // Gone, thin or being wiped: with the VG to itself, as any other change.
        let _g = lock.write().unwrap();
        let read = self.meta.read(vg)?;
        self.remove_locked(vg, lv, &read)
    }

    fn resize_logical_volume(&self, vg: &str, lv: &str, size: Bytes) -> Result<LvInfo> {
        check_size(size)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.resize_locked(vg, lv, size, |_, _| Ok(()))
    }

    fn repair_logical_volume(&self, vg: &str, lv: &str) -> Result<LvInfo> {
        validate_lv_name(lv).map_err(LvmError::from)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.repair_locked(vg, lv)
    }

    fn convert_logical_volume(
        &self,
        vg: &str,
        lv: &str,
        mirrors: u32,
        pvs: &[PathBuf],
    ) -> Result<LvInfo> {
        validate_lv_name(lv).map_err(LvmError::from)?;
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        self.convert_locked(vg, lv, mirrors, pvs)
    }

    fn activate(&self, vg: &str, lv: &str) -> Result<LvInfo> {
        // A client's activation hands the device out: what it writes there is never
        // formatted by a later stage.
        let h = self.handouts.get(&format!("{vg}/{lv}"));
        let _h = h.write().unwrap();
        self.end_formattable(vg, lv)?;
        self.activate_volume(vg, lv)
    }

    fn deactivate(&self, vg: &str, lv: &str) -> Result<LvInfo> {
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        let read = self.meta.read(vg)?;
        let info = self.info(&read, lv)?;
        self.close_crypt(vg, lv, &info)?;
        self.deactivate_volume(&read, lv)?;
        self.info(&read, lv)
    }

    fn mount_volume_keyed(
        &self,
        vg: &str,
        lv: &str,
        spec: &MountSpec,
        key: Option<&VolumeKey>,
    ) -> Result<Mounted> {
        let spec = self.node.check_mount(spec)?;
        let target = self.node.check_path(&spec.target)?;
        let h = self.handouts.get(&format!("{vg}/{lv}"));
        let _h = h.write().unwrap();
        let before = self.logical_volume(vg, lv)?;
        if marks::is_encrypted(&before.tags) {
            Self::need_key(vg, lv, key)?;
        }
        self.node
            .check_free_target(&target, before.device.is_some())?;
        let info = self.activate_volume(vg, lv)?;
        let mut device = info.device.expect("activate sets the device");
        if let Some(key) = key {
            // `spec` passed check_mount: its options parse.
            let read_only = super::node_work::asks_read_only(&spec)?;
            device = self.open_encrypted(vg, lv, &device, key, Some(&spec.fs_type), read_only)?;
        }
        if let Some(m) = self.node.mounted_already(&device, &spec)? {
            return Ok(m);
        }
        self.stage(vg, lv, &device, &spec)
    }

    fn bind_mount(&self, source: &Path, target: &Path, read_only: bool) -> Result<()> {
        self.node.bind(source, target, read_only)
    }

    fn publish_block_keyed(
        &self,
        vg: &str,
        lv: &str,
        target: &Path,
        read_only: bool,
        key: Option<&VolumeKey>,
    ) -> Result<PathBuf> {
        let target = self.node.check_path(target)?;
        let h = self.handouts.get(&format!("{vg}/{lv}"));
        let _h = h.write().unwrap();
        let before = self.logical_volume(vg, lv)?;
        if marks::is_encrypted(&before.tags) {
            Self::need_key(vg, lv, key)?;
        }
        self.node
            .check_free_target(&target, before.device.is_some())?;
        if let Some(key) = key {
            // The LUKS volume is made (if fresh) and opened first; what is handed out
            // is the opened mapping, and from then on its contents are the client's.
            let info = self.activate_volume(vg, lv)?;
            let device = info.device.expect("activate sets the device");
            let mapped = self.open_encrypted(vg, lv, &device, key, None, read_only)?;
            self.end_formattable(vg, lv)?;
            self.node.publish_block(&mapped, &target, read_only)?;
            return Ok(mapped);
        }
        // Before the device is given: from here it may hold an application's data.
        self.end_formattable(vg, lv)?;
        let info = self.activate_volume(vg, lv)?;
        let device = info.device.expect("activate sets the device");
        self.node.publish_block(&device, &target, read_only)?;
        Ok(device)
    }

    fn unmount(&self, target: &Path, remove_target: bool) -> Result<bool> {
        let checked = self.node.check_path(target)?;
        // A read-only block publish: its loop device goes too, after the unmount.
        let lo = self.node.node.loop_at(&checked)?;
        // An encrypted volume's mapping is closed after its last unmount.
        let crypt = match &lo {
            Some(l) => self.node.node.crypt_mapping_of(&l.backing)?,
            None => self.node.node.crypt_mapping_at(&checked)?,
        };
        let was = self.node.unmount(target, remove_target)?;
        if let Some(l) = lo {
            // The unmount is done and a retry would not find the loop device again, so
            // a failure here is logged rather than failing the call; start-up
            // reconciliation detaches such a leftover.
            if let Err(e) = self.release_read_only_loop(&l) {
                tracing::warn!(loop_device = %l.path.display(), "cannot detach: {e}");
            }
        }
        if let Some(name) = crypt {
            self.close_after_unmount(&name);
        }
        Ok(was)
    }

    fn path_stats(&self, path: &Path) -> Result<PathStats> {
        self.node.stats(path)
    }

    fn expand_volume_keyed(
        &self,
        vg: &str,
        lv: &str,
        size: Bytes,
        target: Option<&Path>,
        key: Option<&VolumeKey>,
    ) -> Result<Expanded> {
        // Every check before the first change: size, path, the LV, where it is mounted;
        // the LV's checks and its growth under one write lock, so no other resize can
        // come between (and turn this grow into a shrink).
        check_size(size)?;
        let target = target.map(|t| self.node.check_path(t)).transpose()?;
        let mut fs = None;
        // An open mapping of the volume grows after the LV, before the filesystem.
        let mut crypt = None;
        let info = {
            let lock = self.locks.get(vg);
            let _g = lock.write().unwrap();
            self.resize_locked(vg, lv, size, |current, want| {
                if want < current.size {
                    return Err(invalid(
                        "size",
                        size.0,
                        format!(
                            "is smaller than {vg}/{lv} ({} bytes); volumes only grow",
                            current.size.0
                        ),
                    ));
                }
                let mut current_device = current.device.clone();
                if current.device.is_some() && marks::is_encrypted(&current.tags) {
                    if let Ok(name) = CryptName::for_volume(vg, lv) {
                        if self.node.node.luks_is_open(&name)? {
                            let k = Self::need_key(vg, lv, key)?;
                            current_device = Some(name.device_path());
                            crypt = Some((name, k));
                        }
                    }
                }
                if let Some(t) = &target {
                    let Some(device) = &current_device else {
                        return Err(EngineError::FailedPrecondition {
                            what: "logical volume",
                            name: format!("{vg}/{lv}"),
                            why: format!("is not active, so it cannot be mounted at {}", t),
                        });
                    };
                    fs = Some((device.clone(), self.node.check_grow_target(device, t)?));
                }
                Ok(())
            })?
        };
        if let Some((name, k)) = &crypt {
            // Also on a same-size retry after a crash between the LV and the mapping.
            self.node.node.luks_resize(name, &k.key)?;
            tracing::info!(vg, lv, mapping = %name, "crypt mapping takes the new size");
        }
        // The filesystem grows outside the lock: resize2fs may take a while.
        let filesystem_size = match (&target, fs) {
            (Some(t), Some((device, fs_type))) => {
                self.node.grow_filesystem(&device, t, &fs_type)?.total
            }
            _ => Bytes(0),
        };
        Ok(Expanded {
            lv: info,
            filesystem_size,
        })
    }

    fn rekey_volume(
        &self,
        vg: &str,
        lv: &str,
        old: &VolumeKey,
        new: &Passphrase,
    ) -> Result<Rekeyed> {
        // Under the volume's hand-out lock: no first stage formats it meanwhile.
        let h = self.handouts.get(&format!("{vg}/{lv}"));
        let _h = h.write().unwrap();
        let before = self.logical_volume(vg, lv)?;
        let refuse = |why: &str| EngineError::FailedPrecondition {
            what: "logical volume",
            name: format!("{vg}/{lv}"),
            why: why.to_owned(),
        };
        if !marks::is_encrypted(&before.tags) {
            return Err(refuse(
                "is not an encrypted lvmd volume (a LUKS volume lvmd did not make is adopted by its first stage or block publish)",
            ));
        }
        if marks::is_fresh(&before.tags) || marks::luks_formatting_for(&before.tags).is_some() {
            return Err(refuse(
                "holds no LUKS volume yet (it is formatted on its first stage or block publish, with the key given there)",
            ));
        }
        // The header is on the LV: an inactive one is activated for the rekey and
        // deactivated again after it.
        let was_active = before.device.is_some();
        let info = self.activate_volume(vg, lv)?;
        let device = info.device.clone().expect("activate sets the device");
        let done = self.rekey_device(vg, lv, &device, old, new);
        if !was_active {
            let lock = self.locks.get(vg);
            let _g = lock.write().unwrap();
            let read = self.meta.read(vg)?;
            if let Err(e) = self.deactivate_volume(&read, lv) {
                tracing::warn!(vg, lv, "cannot deactivate again after the rekey: {e}");
            }
        }
        let (keyslot, removed) = done?;
        Ok(Rekeyed {
            lv: self.logical_volume(vg, lv)?,
            keyslot,
            removed,
        })
    }
}

impl<M: Metadata> VolumeEngine<M> {
    /// Removes `lv` as read in `read`, with the VG's write lock, or its read lock and
    /// the LV's name lock for a linear or striped one.
    fn remove_locked(&self, vg: &str, lv: &str, read: &VgRead) -> Result<bool> {
        let Some(model) = read.vg.lv(lv) else {
            // A removal killed after its commit: its pool's message goes now.
            self.finish_pending(read)?;
            return Ok(false);
        };
        if super::marks::is_wipe(&model.name, &model.tags) {
            // Already removed; lvmd finishes it.
            return Ok(false);
        }
        if let Some(of) = marks::snapshot_of(&model.tags) {
            return Err(EngineError::FailedPrecondition {
                what: "logical volume",
                name: format!("{vg}/{lv}"),
                why: format!("is a snapshot of {of}, not a volume (DeleteSnapshot deletes it)"),
            });
        }
        if let Some(pool) = super::thin::pool_of_thin(model).map(str::to_owned) {
            // Refusals (a snapshot naming it, a record of another transaction that
            // cannot be sent) before anything changes; then as any volume: closed,
            // deactivated, then the commit and the pool's `delete`.
            crate::lvm::edit::check_thin_removable(&read.vg, lv)?;
            self.settle_pool(vg, &pool)?;
            self.close_crypt(vg, lv, &self.info(read, lv)?)?;
            self.deactivate_volume(read, lv)?;
            crash::point("deactivated");
            self.remove_thin_locked(vg, lv, &pool)?;
            tracing::info!(vg, lv, pool, "removed thin volume");
            return Ok(true);
        }
        // What lvmd cannot remove (raid, thin, a pool, a hidden or used sub-LV) is
        // refused before anything changes: deactivating first, then finding out, would
        // take a thin LV's pool layers or a raid LV's legs down for nothing. So is an LV
        // on a missing PV: its extents could not be zeroed.
        crate::lvm::check_removable(&read.vg, lv)?;
        let ranges = wipe::freed_ranges(read, model, Extents::ZERO)?;
        let size = read.vg.extent_size.span(model.extents()).to_bytes();
        // Busy (mounted, open) stops here, before the metadata changes; an encrypted
        // volume's mapping goes first (it holds the LV).
        if view::is_client_visible(model) {
            self.close_crypt(vg, lv, &self.info(read, lv)?)?;
        }
        self.deactivate_volume(read, lv)?;
        crash::point("deactivated");
        if size <= self.inline_wipe_limit {
            // Zeroed, then removed: a crash between leaves a zeroed LV the retry removes.
            self.zero_ranges(vg, lv, "a removed volume", &ranges, Some("zeroing"))?;
            crash::point("zeroed");
            self.meta.edit(vg, &Edit::RemoveLv { lv: lv.into() })?;
            crash::point("committed");
            tracing::info!(vg, lv, "removed logical volume");
        } else {
            // Too large to zero in the caller's time: one commit turns it into a wipe
            // LV, whose extents stay allocated until the wipe thread zeroed them.
            let name = wipe::wipe_name(model);
            let edit = Edit::RenameLv {
                lv: lv.into(),
                to: name.clone(),
                tags: Some(vec![super::marks::WIPE.into()]),
            };
            self.meta.edit(vg, &edit)?;
            crash::point("committed");
            self.wiper.poke();
            tracing::info!(
                vg,
                lv,
                wipe_lv = name,
                bytes = size.0,
                "removed logical volume; its extents are zeroed in the background"
            );
        }
        Ok(true)
    }

    /// The two halves of a rekey on the LV's `device` ([`Engine::rekey_volume`]).
    fn rekey_device(
        &self,
        vg: &str,
        lv: &str,
        device: &Path,
        old: &VolumeKey,
        new: &Passphrase,
    ) -> Result<(u32, Vec<u32>)> {
        let node = &self.node.node;
        let keyslot = match node.luks_add_key(device, &old.luks.pbkdf, &old.key, new) {
            Ok(slot) => slot,
            // Done by an earlier call: the old key is gone and the new one opens it.
            Err(NodeError::Crypt(CryptError::WrongKey { .. }))
                if node.luks_check_key(device, new).is_ok() =>
            {
                tracing::info!(
                    vg,
                    lv,
                    "rekeyed already: the old key opens nothing, the new one does"
                );
                return Ok((node.luks_check_key(device, new)?, Vec::new()));
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(vg, lv, keyslot, "new key added");
        crash::point("rekey-added");
        let removed = node.luks_remove_key(device, &old.key, new)?;
        tracing::info!(vg, lv, keyslot, ?removed, "old key's keyslots destroyed");
        Ok((keyslot, removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::{Layout, LvSpec};
    use crate::daemon::node::{MountKind, MountRequest, MountSource, Node};
    use crate::daemon::{SimActivation, SimEngine, SimNode};

    const MIB: u64 = 1 << 20;

    fn engine() -> (SimEngine, Arc<SimActivation>, Arc<SimNode>) {
        let devs = vec![(PathBuf::from("/dev/sim0"), Bytes(256 * MIB))];
        let (e, act, node) = SimEngine::with_sims(&devs, vec![PathBuf::from("/k")]);
        e.create_volume_group("vg", &[PathBuf::from("/dev/sim0")])
            .unwrap();
        e.create_logical_volume(
            "vg",
            &LvSpec {
                name: "raw".into(),
                size: Bytes(8 * MIB),
                layout: Layout::Linear,
                tags: vec![],
            },
        )
        .unwrap();
        (e, act, node)
    }

    #[test]
    fn capacity_says_how_full_the_metadata_areas_are() {
        let (e, _, _) = engine();
        let before = e.space("vg", 1).unwrap();
        // A 256 MiB device gets lvm2's default area: 1020 KiB, half of it per copy.
        let area = crate::format::mda::MdaHeader::new_empty(Bytes(4096), Bytes((1 << 20) - 4096));
        assert_eq!(before.metadata_capacity, Bytes(area.max_text_size()));
        for i in 0..5 {
            let spec = LvSpec {
                name: format!("m{i}"),
                size: Bytes(4 * MIB),
                layout: Layout::Linear,
                tags: vec![],
            };
            e.create_logical_volume("vg", &spec).unwrap();
        }
        let after = e.space("vg", 1).unwrap();
        assert_eq!(after.metadata_capacity, before.metadata_capacity);
        // Each volume adds its text: a few hundred bytes.
        let per = (after.metadata_used.0 - before.metadata_used.0) / 5;
        assert!((200..2000).contains(&per), "{per} bytes per volume");
    }

    #[test]
    fn read_only_block_publish_goes_through_a_read_only_loop_device() {
        let (e, _, node) = engine();
        let target = Path::new("/k/pods/p/raw");
        let dev = e.publish_block("vg", "raw", target, true).unwrap();
        let loops = node.loops();
        assert_eq!(loops.len(), 1, "{loops:?}");
        let l = &loops[0];
        assert!(l.read_only && l.lvmd, "{l:?}");
        assert_eq!(l.backing, dev);
        assert_eq!(node.mounted(target), Some((l.path.clone(), true)));

        // A retry finds it bound there: no second loop device.
        e.publish_block("vg", "raw", target, true).unwrap();
        assert_eq!(node.loops(), loops);
        // Read-write at the same target is refused, saying why.
        let err = e.publish_block("vg", "raw", target, false).unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");

        // A read-write publish elsewhere is the plain bind it always was.
        let rw = Path::new("/k/pods/q/raw");
        e.publish_block("vg", "raw", rw, false).unwrap();
        assert_eq!(node.mounted(rw), Some((dev.clone(), false)));
        // ... and read-only on top of it is refused.
        let err = e.publish_block("vg", "raw", rw, true).unwrap_err();
        assert!(err.to_string().contains("read-write"), "{err}");
        assert_eq!(node.loops().len(), 1);

        // Unpublish: unmounted, and the loop device detached.
        assert!(e.unmount(target, true).unwrap());
        assert_eq!(node.mounted(target), None);
        assert!(node.loops().is_empty(), "{:?}", node.loops());
        assert!(e.unmount(rw, true).unwrap());
    }

    #[test]
    fn a_failed_bind_leaves_no_loop_device() {
        let (e, _, node) = engine();
        node.set_fail_mounts(true);
        e.publish_block("vg", "raw", Path::new("/k/raw"), true)
            .unwrap_err();
        assert!(node.loops().is_empty(), "{:?}", node.loops());
        node.set_fail_mounts(false);
        e.publish_block("vg", "raw", Path::new("/k/raw"), true)
            .unwrap();
        assert_eq!(node.loops().len(), 1);
    }

    #[test]
    fn names_lvm2_refuses_are_refused_before_anything_is_written() {
        let (e, _, _) = engine();
        let before = e.logical_volumes("vg").unwrap().len();
        for (name, why) in [
            // 127 characters is a valid name, but "vg-" + it is no dm name.
            (
                "l".repeat(127),
                "device-mapper name would have 130 characters",
            ),
            ("data_cpool".into(), "_cpool"),
            ("x_wcorig".into(), "_wcorig"),
            ("x_imeta".into(), "_imeta"),
        ] {
            let spec = LvSpec {
                name: name.clone(),
                size: Bytes(8 * MIB),
                layout: Layout::Linear,
                tags: vec![],
            };
            let err = e.create_logical_volume("vg", &spec).unwrap_err();
            assert!(
                matches!(err, EngineError::Lvm(LvmError::Name(_))) && err.to_string().contains(why),
                "{name}: {err}"
            );
        }
        assert_eq!(e.logical_volumes("vg").unwrap().len(), before);
    }

    #[test]
    fn unpublish_leaves_loop_devices_lvmd_did_not_make() {
        let (e, _, node) = engine();
        let dev = e.activate("vg", "raw").unwrap().device.unwrap();
        // Someone's own read-only loop over the LV, bound under the mount root.
        let theirs = node.attach_foreign_loop(&dev, true);
        let target = PathBuf::from("/k/theirs");
        let confined = crate::daemon::paths::check_path(&target, &[PathBuf::from("/k")]).unwrap();
        node.mount(&MountRequest {
            source: MountSource::Device(theirs.clone()),
            target: confined.clone(),
            kind: MountKind::Bind,
            read_only: true,
            options: vec![],
        })
        .unwrap();
        assert!(e.unmount(&target, false).unwrap());
        assert_eq!(node.loops().len(), 1);
        assert_eq!(node.loops()[0].path, theirs);
        // Ours, but over a device of no volume lvmd manages: left too.
        let stranger = node.attach_read_only_loop(Path::new("/dev/sdz")).unwrap();
        node.mount(&MountRequest {
            source: MountSource::Device(stranger),
            target: confined,
            kind: MountKind::Bind,
            read_only: true,
            options: vec![],
        })
        .unwrap();
        assert!(e.unmount(&target, false).unwrap());
        assert_eq!(node.loops().len(), 2);
    }

    #[test]
    fn growing_a_volume_published_read_only_resizes_its_loop_device() {
        let (e, _, node) = engine();
        let target = Path::new("/k/raw");
        e.publish_block("vg", "raw", target, true).unwrap();
        let l = node.loops()[0].path.clone();
        assert_eq!(node.loop_size_refreshes(&l), 0);
        let x = e.expand_volume("vg", "raw", Bytes(16 * MIB), None).unwrap();
        assert_eq!(x.lv.size, Bytes(16 * MIB));
        assert_eq!(node.loop_size_refreshes(&l), 1);
        // A retry (same size) refreshes again, harmlessly.
        e.expand_volume("vg", "raw", Bytes(16 * MIB), None).unwrap();
        assert_eq!(node.loop_size_refreshes(&l), 2);
    }

    fn fs_spec(target: &str, fs: &str, read_only: bool) -> MountSpec {
        MountSpec {
            target: PathBuf::from(target),
            fs_type: fs.into(),
            options: vec![],
            read_only,
        }
    }

    fn lv(name: &str) -> LvSpec {
        LvSpec {
            name: name.into(),
            size: Bytes(8 * MIB),
            layout: Layout::Linear,
            tags: vec!["csi.pv=x".into()],
        }
    }

    fn marks_of(e: &SimEngine, name: &str) -> Vec<String> {
        let tags = e.logical_volume("vg", name).unwrap().tags;
        let mut m: Vec<String> = tags
            .into_iter()
            .filter(|t| crate::daemon::marks::is_internal(t))
            .collect();
        m.sort();
        m
    }

    /// The LV's device, active (without ending its freshness).
    fn device_of(e: &SimEngine, name: &str) -> PathBuf {
        e.activate_volume("vg", name).unwrap().device.unwrap()
    }

    fn sig(name: &str, usage: crate::probe::Usage) -> crate::probe::Signature {
        crate::probe::Signature {
            name: name.into(),
            usage,
            offset: Some(Bytes(0)),
            size: None,
            bad_checksum: false,
        }
    }

    fn refused(err: EngineError, says: &str) {
        assert!(
            matches!(err, EngineError::FailedPrecondition { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(says), "{msg}");
    }

    fn key(k: &str) -> VolumeKey {
        VolumeKey {
            key: crate::crypt::Passphrase::new(k.as_bytes().to_vec()).unwrap(),
            luks: crate::crypt::LuksConfig::fast_for_tests(),
        }
    }

    const MAPPED: &str = "/dev/mapper/lvmd-crypt-vg-sec";

    fn wrong_key(err: &EngineError) -> bool {
        matches!(
            err,
            EngineError::Node(NodeError::Crypt(CryptError::WrongKey { .. }))
        )
    }

    #[test]
    fn a_rekey_replaces_the_key_in_two_halves_and_a_second_run_finishes_or_is_a_no_op() {
        let (e, _, node) = engine();
        let pass = |k: &str| crate::crypt::Passphrase::new(k.as_bytes().to_vec()).unwrap();
        // Never formatted yet, or not encrypted: refused, naming why.
        e.create_volume("vg", &lv("sec"), true).unwrap();
        e.create_logical_volume("vg", &lv("plain")).unwrap();
        let err = e
            .rekey_volume("vg", "sec", &key("k1"), &pass("k2"))
            .unwrap_err();
        refused(err, "holds no LUKS volume yet");
        let err = e
            .rekey_volume("vg", "plain", &key("k1"), &pass("k2"))
            .unwrap_err();
        refused(err, "is not an encrypted lvmd volume");

        e.mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&key("k1")))
            .unwrap();
        e.unmount(Path::new("/k/s"), true).unwrap();
        e.deactivate("vg", "sec").unwrap();
        // A wrong old key: WrongKey, nothing changed (the new key opens nothing).
        let err = e
            .rekey_volume("vg", "sec", &key("nope"), &pass("k2"))
            .unwrap_err();
        assert!(wrong_key(&err), "{err}");
        assert!(!err.to_string().contains("nope"), "{err}");
        // Inactive before: activated for the rekey, inactive again after it.
        let done = e
            .rekey_volume("vg", "sec", &key("k1"), &pass("k2"))
            .unwrap();
        assert_eq!((done.keyslot, done.removed.clone()), (1, vec![0]));
        assert!(
            done.lv.device.is_none() && e.logical_volume("vg", "sec").unwrap().device.is_none()
        );
        // Old key refused, new key opens; the data was never formatted again.
        let err = e
            .mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&key("k1")))
            .unwrap_err();
        assert!(wrong_key(&err), "{err}");
        let m = e
            .mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&key("k2")))
            .unwrap();
        assert!(!m.formatted);
        assert_eq!((node.luks_formats().len(), node.formats().len()), (1, 1));
        // The same call again: done already, nothing changed.
        let again = e
            .rekey_volume("vg", "sec", &key("k1"), &pass("k2"))
            .unwrap();
        assert_eq!((again.keyslot, again.removed), (1, vec![]));

        // A crash between the halves (the first half alone, as the layer leaves it):
        // either key opens; the same rekey, mounted, finishes it.
        let device = e.logical_volume("vg", "sec").unwrap().device.unwrap();
        let pbkdf = crate::crypt::LuksConfig::fast_for_tests().pbkdf;
        assert_eq!(
            node.luks_add_key(&device, &pbkdf, &pass("k2"), &pass("k3"))
                .unwrap(),
            0
        );
        assert!(node.luks_check_key(&device, &pass("k2")).is_ok());
        assert!(node.luks_check_key(&device, &pass("k3")).is_ok());
        let done = e
            .rekey_volume("vg", "sec", &key("k2"), &pass("k3"))
            .unwrap();
        assert_eq!((done.keyslot, done.removed), (0, vec![1]));
        assert!(done.lv.device.is_some(), "it stays active, mounted");
        assert!(wrong_key(
            &node
                .luks_check_key(&device, &pass("k2"))
                .unwrap_err()
                .into()
        ));
        assert!(node.mounted(Path::new("/k/s")).is_some());
        // The same key twice: nothing destroyed, the key still opens it.
        let same = e
            .rekey_volume("vg", "sec", &key("k3"), &pass("k3"))
            .unwrap();
        assert_eq!((same.keyslot, same.removed), (0, vec![]));
        assert!(node.luks_check_key(&device, &pass("k3")).is_ok());
    }

    #[test]
    fn a_class_s_workqueue_flags_are_the_mapping_s_from_its_first_open() {
        let (e, _, node) = engine();
        e.create_volume("vg", &lv("sec"), true).unwrap();
        let mut fast = key("k");
        fast.luks.no_read_workqueue = true;
        fast.luks.no_write_workqueue = true;
        e.mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&fast))
            .unwrap();
        let o = node.crypt_open_options("lvmd-crypt-vg-sec").unwrap();
        assert!(
            o.no_read_workqueue && o.no_write_workqueue && !o.read_only,
            "{o:?}"
        );
        e.unmount(Path::new("/k/s"), true).unwrap();
        assert!(node.open_crypt_names().is_empty());
        // The class changed to one flag: the next open makes the mapping with that one.
        let mut one = key("k");
        one.luks.no_write_workqueue = true;
        e.mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&one))
            .unwrap();
        let o = node.crypt_open_options("lvmd-crypt-vg-sec").unwrap();
        assert!(!o.no_read_workqueue && o.no_write_workqueue, "{o:?}");
    }

    #[test]
    fn an_encrypted_volume_is_luks_formatted_once_and_staged_through_its_mapping() {
        let (e, _, node) = engine();
        let c = e.create_volume("vg", &lv("sec"), true).unwrap();
        assert!(c.created);
        assert_eq!(marks_of(&e, "sec"), ["lvmd.crypt", "lvmd.fresh"]);
        // The idempotent create compares encryption too.
        assert!(!e.create_volume("vg", &lv("sec"), true).unwrap().created);
        let err = e.create_logical_volume("vg", &lv("sec")).unwrap_err();
        assert!(matches!(err, EngineError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("encrypted"), "{err}");
        // No key: refused before anything, naming the passphrase.
        let err = e
            .mount_volume("vg", "sec", &fs_spec("/k/s", "", false))
            .unwrap_err();
        assert!(matches!(err, EngineError::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().contains("passphrase"), "{err}");
        assert_eq!(marks_of(&e, "sec"), ["lvmd.crypt", "lvmd.fresh"]);
        // First stage: LUKS format, open, mkfs on the mapping.
        let k = key("right");
        let m = e
            .mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&k))
            .unwrap();
        assert!(m.formatted);
        assert_eq!(m.device, PathBuf::from(MAPPED));
        assert_eq!(
            node.mounted(Path::new("/k/s")).unwrap().0,
            PathBuf::from(MAPPED)
        );
        assert_eq!(marks_of(&e, "sec"), ["lvmd.crypt", "lvmd.fs=ext4"]);
        assert_eq!(node.luks_formats().len(), 1);
        assert_eq!(node.formats(), [(PathBuf::from(MAPPED), "ext4".into())]);
        // A retry: done already.
        let again = e
            .mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&k))
            .unwrap();
        assert!(!again.formatted);
        // Unstage closes the mapping.
        assert!(e.unmount(Path::new("/k/s"), true).unwrap());
        assert!(node.open_crypt_names().is_empty());
        // A wrong key: PERMISSION_DENIED-class, nothing changed.
        let err = e
            .mount_volume_keyed(
                "vg",
                "sec",
                &fs_spec("/k/s", "", false),
                Some(&key("wrong")),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::Node(NodeError::Crypt(CryptError::WrongKey { .. }))
            ),
            "{err}"
        );
        assert!(!err.to_string().contains("wrong"), "{err}");
        assert_eq!(marks_of(&e, "sec"), ["lvmd.crypt", "lvmd.fs=ext4"]);
        assert!(node.open_crypt_names().is_empty());
        assert!(node.mounted(Path::new("/k/s")).is_none());
        // The right key again: opened and mounted, never formatted again.
        let later = e
            .mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&k))
            .unwrap();
        assert!(!later.formatted);
        assert_eq!((node.luks_formats().len(), node.formats().len()), (1, 1));
        // Removal while mounted: refused (the mapping is busy), nothing changed.
        assert!(e.remove_logical_volume("vg", "sec").is_err());
        assert!(e.logical_volume("vg", "sec").is_ok());
        e.unmount(Path::new("/k/s"), true).unwrap();
        // Removal of an encrypted volume whose mapping is open closes it first.
        e.mount_volume_keyed("vg", "sec", &fs_spec("/k/s", "", false), Some(&k))
            .unwrap();
        node.unmount(&e.node.check_path(Path::new("/k/s")).unwrap())
            .unwrap();
        assert_eq!(node.open_crypt_names(), ["lvmd-crypt-vg-sec"]);
        assert!(e.remove_logical_volume("vg", "sec").unwrap());
        assert!(node.open_crypt_names().is_empty());
    }

    #[test]
    fn a_key_for_a_volume_that_is_not_luks_is_refused() {
        let (e, _, node) = engine();
        e.create_logical_volume("vg", &lv("plain")).unwrap();
        let err = e
            .mount_volume_keyed("vg", "plain", &fs_spec("/k/p", "", false), Some(&key("k")))
            .unwrap_err();
        refused(err, "not encrypted");
        assert!(node.formats().is_empty() && node.luks_formats().is_empty());
        // A LUKS volume lvmd did not make (cryptsetup's): adopted with its key.
        e.create_logical_volume("vg", &lv("theirs")).unwrap();
        let dev = device_of(&e, "theirs");
        node.luks_format(
            &dev,
            &crate::crypt::LuksConfig::fast_for_tests(),
            &key("k").key,
            false,
        )
        .unwrap();
        e.end_formattable("vg", "theirs").unwrap();
        let mapped = PathBuf::from("/dev/mapper/lvmd-crypt-vg-theirs");
        node.make_filesystem(&mapped, "xfs", false).unwrap();
        let m = e
            .mount_volume_keyed("vg", "theirs", &fs_spec("/k/t", "", false), Some(&key("k")))
            .unwrap();
        assert_eq!((m.fs_type.as_str(), m.formatted), ("xfs", false));
        assert_eq!(marks_of(&e, "theirs"), ["lvmd.crypt", "lvmd.fs=xfs"]);
    }

    #[test]
    fn a_cut_short_luks_format_is_done_again_and_a_written_fresh_volume_refused() {
        use crate::daemon::marks::FRESH;
        let (e, _, node) = engine();
        // Killed after marking the format: formatted again over whatever it left.
        e.create_volume("vg", &lv("a"), true).unwrap();
        let edit = Edit::lv_tags("a", &["lvmd.mkluks=xfs".into()], &[FRESH.into()]);
        e.meta.edit("vg", &edit).unwrap();
        let dev = device_of(&e, "a");
        node.write_signature(&dev, sig("crypto_LUKS", crate::probe::Usage::Crypto));
        let m = e
            .mount_volume_keyed("vg", "a", &fs_spec("/k/a", "ext4", false), Some(&key("k")))
            .unwrap();
        assert_eq!((m.fs_type.as_str(), m.formatted), ("xfs", true));
        assert_eq!(node.luks_formats(), [(dev, true)]);
        assert_eq!(marks_of(&e, "a"), ["lvmd.crypt", "lvmd.fs=xfs"]);
        // Fresh, yet written outside lvmd: never LUKS-formatted.
        e.create_volume("vg", &lv("b"), true).unwrap();
        let dev = device_of(&e, "b");
        node.write_signature(&dev, sig("ext4", crate::probe::Usage::Filesystem));
        let err = e
            .mount_volume_keyed("vg", "b", &fs_spec("/k/b", "", false), Some(&key("k")))
            .unwrap_err();
        refused(err, "written outside lvmd");
        assert_eq!(node.luks_formats().len(), 1);
        // Read-only: a fresh encrypted volume cannot be made.
        e.create_volume("vg", &lv("c"), true).unwrap();
        let err = e
            .mount_volume_keyed("vg", "c", &fs_spec("/k/c", "", true), Some(&key("k")))
            .unwrap_err();
        refused(err, "read-only");
        assert_eq!(marks_of(&e, "c"), ["lvmd.crypt", "lvmd.fresh"]);
    }

    #[test]
    fn an_encrypted_block_volume_publishes_its_mapping_and_grows_with_its_key() {
        let (e, _, node) = engine();
        e.create_volume("vg", &lv("sec"), true).unwrap();
        let k = key("k");
        let err = e
            .publish_block("vg", "sec", Path::new("/k/b"), false)
            .unwrap_err();
        assert!(err.to_string().contains("passphrase"), "{err}");
        let dev = e
            .publish_block_keyed("vg", "sec", Path::new("/k/b"), false, Some(&k))
            .unwrap();
        assert_eq!(dev, PathBuf::from(MAPPED));
        assert_eq!(node.mounted(Path::new("/k/b")).unwrap().0, dev);
        // Handed out raw: no mark left that would let lvmd format it.
        assert_eq!(marks_of(&e, "sec"), ["lvmd.crypt"]);
        assert!(node.formats().is_empty());
        // Growing it needs the key while its mapping is open; without, nothing changes.
        let err = e
            .expand_volume("vg", "sec", Bytes(16 * MIB), None)
            .unwrap_err();
        assert!(err.to_string().contains("passphrase"), "{err}");
        assert_eq!(e.logical_volume("vg", "sec").unwrap().size, Bytes(8 * MIB));
        let x = e
            .expand_volume_keyed("vg", "sec", Bytes(16 * MIB), None, Some(&k))
            .unwrap();
        assert_eq!(x.lv.size, Bytes(16 * MIB));
        // Unpublish closes the mapping.
        e.unmount(Path::new("/k/b"), true).unwrap();
        assert!(node.open_crypt_names().is_empty());
        // Read-only: through a read-only loop device over the mapping; the unpublish
        // detaches it, then closes the mapping.
        let dev = e
            .publish_block_keyed("vg", "sec", Path::new("/k/r"), true, Some(&k))
            .unwrap();
        assert_eq!(dev, PathBuf::from(MAPPED));
        assert_eq!(node.loops().len(), 1);
        assert_eq!(node.loops()[0].backing, dev);
        e.unmount(Path::new("/k/r"), true).unwrap();
        assert!(node.loops().is_empty(), "{:?}", node.loops());
        assert!(node.open_crypt_names().is_empty());
    }

    #[test]
    fn reconciliation_closes_crypt_mappings_of_volumes_that_are_gone_only() {
        let (e, _, node) = engine();
        e.create_volume("vg", &lv("kept"), true).unwrap();
        e.create_volume("vg", &lv("gone"), true).unwrap();
        let k = key("k");
        for n in ["kept", "gone"] {
            e.publish_block_keyed("vg", n, &PathBuf::from(format!("/k/{n}")), false, Some(&k))
                .unwrap();
            node.unmount(
                &e.node
                    .check_path(&PathBuf::from(format!("/k/{n}")))
                    .unwrap(),
            )
            .unwrap();
        }
        // The LV went (another tool, or a crash after a removal's commit).
        e.meta
            .edit("vg", &Edit::RemoveLv { lv: "gone".into() })
            .unwrap();
        let repairs = e.reconcile(&["vg".into()]);
        assert!(
            repairs.contains(&super::super::reconcile::Repair::ClosedCrypt {
                vg: "vg".into(),
                mapping: "lvmd-crypt-vg-gone".into()
            }),
            "{repairs:?}"
        );
        assert_eq!(node.open_crypt_names(), ["lvmd-crypt-vg-kept"]);
    }

    #[test]
    fn a_fresh_volume_is_formatted_once_then_only_mounted() {
        let (e, _, node) = engine();
        e.create_logical_volume("vg", &lv("fs")).unwrap();
        assert_eq!(marks_of(&e, "fs"), ["lvmd.fresh"]);
        // The client's tags are as asked: the mark is lvmd's own.
        let retry = e.create_logical_volume("vg", &lv("fs")).unwrap();
        assert!(!retry.created);
        let m = e
            .mount_volume("vg", "fs", &fs_spec("/k/s", "", false))
            .unwrap();
        assert!(m.formatted);
        assert_eq!(m.fs_type, "ext4");
        assert_eq!(marks_of(&e, "fs"), ["lvmd.fs=ext4"]);
        // A retry while mounted, and a mount after unmounting: never formatted again.
        let again = e
            .mount_volume("vg", "fs", &fs_spec("/k/s", "", false))
            .unwrap();
        assert!(!again.formatted);
        assert!(e.unmount(Path::new("/k/s"), true).unwrap());
        let later = e
            .mount_volume("vg", "fs", &fs_spec("/k/s", "", true))
            .unwrap();
        assert!(!later.formatted);
        assert_eq!(node.formats().len(), 1, "{:?}", node.formats());
        // Asked as xfs: mounted as the ext4 it is, and said so.
        e.unmount(Path::new("/k/s"), true).unwrap();
        let x = e
            .mount_volume("vg", "fs", &fs_spec("/k/s", "xfs", false))
            .unwrap();
        assert_eq!((x.fs_type.as_str(), x.formatted), ("ext4", false));
        assert_eq!(node.mount_count(), 1);
    }

    #[test]
    fn a_damaged_filesystem_of_lvmds_is_refused_never_formatted_again() {
        let (e, _, node) = engine();
        e.create_logical_volume("vg", &lv("fs")).unwrap();
        e.mount_volume("vg", "fs", &fs_spec("/k/s", "xfs", false))
            .unwrap();
        e.unmount(Path::new("/k/s"), true).unwrap();
        let dev = device_of(&e, "fs");
        // Its superblock zeroed: the probe finds nothing.
        node.clear_signatures(&dev);
        let err = e
            .mount_volume("vg", "fs", &fs_spec("/k/s", "xfs", false))
            .unwrap_err();
        refused(
            err,
            "lvmd formatted it as xfs, but the probe finds no signature",
        );
        // Overwritten by something else.
        node.write_signature(&dev, sig("crypto_LUKS", crate::probe::Usage::Crypto));
        let err = e
            .mount_volume("vg", "fs", &fs_spec("/k/s", "xfs", false))
            .unwrap_err();
        refused(err, "crypto_LUKS");
        assert_eq!(node.formats().len(), 1);
        assert_eq!(node.mount_count(), 0);
        assert_eq!(marks_of(&e, "fs"), ["lvmd.fs=xfs"]);
    }

    #[test]
    fn a_fresh_volume_someone_wrote_to_is_refused() {
        let (e, _, node) = engine();
        e.create_logical_volume("vg", &lv("fs")).unwrap();
        let dev = device_of(&e, "fs");
        node.write_signature(&dev, sig("btrfs", crate::probe::Usage::Filesystem));
        let err = e
            .mount_volume("vg", "fs", &fs_spec("/k/s", "", false))
            .unwrap_err();
        refused(err, "a btrfs filesystem");
        assert!(node.formats().is_empty());
        assert_eq!(marks_of(&e, "fs"), ["lvmd.fresh"]);
        // Read-only, a fresh LV has nothing to mount and is not formatted either.
        e.create_logical_volume("vg", &lv("ro")).unwrap();
        let err = e
            .mount_volume("vg", "ro", &fs_spec("/k/r", "", true))
            .unwrap_err();
        refused(err, "read-only");
        assert!(node.formats().is_empty());
    }

    #[test]
    fn a_crash_between_the_steps_of_formatting_is_finished_by_the_retry() {
        use crate::daemon::marks::FRESH;
        let (e, _, node) = engine();
        let set = |name: &str, add: &str| {
            let edit = Edit::lv_tags(name, &[add.into()], &[FRESH.into()]);
            e.meta.edit("vg", &edit).unwrap();
        };
        // Killed after marking mkfs, before mkfs ran: nothing on the device.
        e.create_logical_volume("vg", &lv("a")).unwrap();
        set("a", "lvmd.mkfs=xfs");
        let m = e
            .mount_volume("vg", "a", &fs_spec("/k/a", "ext4", false))
            .unwrap();
        // The type recorded is the one made, whatever the retry asks.
        assert_eq!((m.fs_type.as_str(), m.formatted), ("xfs", true));
        assert_eq!(marks_of(&e, "a"), ["lvmd.fs=xfs"]);
        // Killed after mkfs, before marking it done: made again (nothing was mounted).
        e.create_logical_volume("vg", &lv("b")).unwrap();
        set("b", "lvmd.mkfs=ext4");
        let dev = device_of(&e, "b");
        node.make_filesystem(&dev, "ext4", false).unwrap();
        let n = node.formats().len();
        let m = e
            .mount_volume("vg", "b", &fs_spec("/k/b", "", false))
            .unwrap();
        assert!(m.formatted);
        assert_eq!(node.formats().len(), n + 1);
        assert_eq!(marks_of(&e, "b"), ["lvmd.fs=ext4"]);
        // Killed after marking it done, before the mount: only mounted.
        e.create_logical_volume("vg", &lv("c")).unwrap();
        set("c", "lvmd.fs=ext4");
        let dev = device_of(&e, "c");
        node.make_filesystem(&dev, "ext4", false).unwrap();
        let n = node.formats().len();
        let m = e
            .mount_volume("vg", "c", &fs_spec("/k/c", "", false))
            .unwrap();
        assert!(!m.formatted);
        assert_eq!(node.formats().len(), n);
        // Killed before anything: still fresh, formatted by the retry.
        e.create_logical_volume("vg", &lv("d")).unwrap();
        assert!(
            e.mount_volume("vg", "d", &fs_spec("/k/d", "", false))
                .unwrap()
                .formatted
        );
    }

    #[test]
    fn volumes_lvmd_did_not_create_are_adopted_or_refused_never_formatted() {
        let (e, _, node) = engine();
        // LVs as lvm2 (or an older lvmd) made them: no mark.
        for n in ["ext", "empty", "btrfs", "two"] {
            e.meta.edit("vg", &Edit::CreateLv(lv(n))).unwrap();
        }
        let ext = device_of(&e, "ext");
        node.write_signature(&ext, sig("ext4", crate::probe::Usage::Filesystem));
        let m = e
            .mount_volume("vg", "ext", &fs_spec("/k/e", "xfs", false))
            .unwrap();
        assert_eq!((m.fs_type.as_str(), m.formatted), ("ext4", false));
        assert_eq!(marks_of(&e, "ext"), ["lvmd.fs=ext4"]);
        let err = e
            .mount_volume("vg", "empty", &fs_spec("/k/m", "", false))
            .unwrap_err();
        refused(err, "may hold data");
        let b = device_of(&e, "btrfs");
        node.write_signature(&b, sig("btrfs", crate::probe::Usage::Filesystem));
        refused(
            e.mount_volume("vg", "btrfs", &fs_spec("/k/b", "", false))
                .unwrap_err(),
            "a btrfs filesystem",
        );
        let two = device_of(&e, "two");
        node.write_signature(&two, sig("ext4", crate::probe::Usage::Filesystem));
        node.write_signature(&two, sig("gpt", crate::probe::Usage::PartitionTable));
        refused(
            e.mount_volume("vg", "two", &fs_spec("/k/t", "", false))
                .unwrap_err(),
            "a gpt partition table",
        );
        assert!(node.formats().is_empty(), "{:?}", node.formats());
        for n in ["empty", "btrfs", "two"] {
            assert!(marks_of(&e, n).is_empty(), "{n}");
        }
    }

    #[test]
    fn a_raw_hand_out_ends_formatting_for_good() {
        let (e, _, node) = engine();
        e.create_logical_volume("vg", &lv("blk")).unwrap();
        e.publish_block("vg", "blk", Path::new("/k/blk"), false)
            .unwrap();
        assert!(marks_of(&e, "blk").is_empty());
        e.unmount(Path::new("/k/blk"), true).unwrap();
        // An application may have written anything there since.
        refused(
            e.mount_volume("vg", "blk", &fs_spec("/k/s", "", false))
                .unwrap_err(),
            "may hold data",
        );
        // A client's explicit activation too, and an mkfs cut short with it.
        e.create_logical_volume("vg", &lv("act")).unwrap();
        let edit = Edit::lv_tags("act", &["lvmd.mkfs=ext4".into()], &["lvmd.fresh".into()]);
        e.meta.edit("vg", &edit).unwrap();
        e.activate("vg", "act").unwrap();
        assert!(marks_of(&e, "act").is_empty());
        refused(
            e.mount_volume("vg", "act", &fs_spec("/k/a", "", false))
                .unwrap_err(),
            "may hold data",
        );
        assert!(node.formats().is_empty());
        // Handing out a formatted volume raw keeps what lvmd knows of it.
        e.create_logical_volume("vg", &lv("fs")).unwrap();
        e.mount_volume("vg", "fs", &fs_spec("/k/f", "", false))
            .unwrap();
        e.activate("vg", "fs").unwrap();
        assert_eq!(marks_of(&e, "fs"), ["lvmd.fs=ext4"]);
    }

    #[test]
    fn a_filesystem_larger_than_its_device_is_refused_with_both_sizes() {
        let (e, _, node) = engine();
        // grown to 16 MiB and formatted, deleted; a new 8 MiB LV at the same place.
        e.create_logical_volume("vg", &lv("big")).unwrap();
        let dev = device_of(&e, "big");
        node.set_device_size(&dev, Bytes(16 * MIB));
        e.mount_volume("vg", "big", &fs_spec("/k/b", "", false))
            .unwrap();
        e.unmount(Path::new("/k/b"), true).unwrap();
        assert!(e.remove_logical_volume("vg", "big").unwrap());
        node.set_device_size(&dev, Bytes(8 * MIB));
        // Recreated fresh: the old signature found is refused, not mounted.
        e.create_logical_volume("vg", &lv("big")).unwrap();
        assert_eq!(device_of(&e, "big"), dev);
        refused(
            e.mount_volume("vg", "big", &fs_spec("/k/b", "", false))
                .unwrap_err(),
            "written outside lvmd",
        );
        // One lvmd itself formatted, whose device shrank under it: both sizes named.
        let edit = Edit::lv_tags("big", &["lvmd.fs=ext4".into()], &["lvmd.fresh".into()]);
        e.meta.edit("vg", &edit).unwrap();
        refused(
            e.mount_volume("vg", "big", &fs_spec("/k/b", "", false))
                .unwrap_err(),
            "is 16777216 bytes, larger than the device's 8388608 bytes",
        );
        assert_eq!(node.formats().len(), 1);
    }

    /// lvm2's `mixed` fixture VG (raid1, thin pool, thin LVs, cache, snapshot).
    fn lvm2_mixed() -> (SimEngine, Arc<SimActivation>, String) {
        use crate::format::text;
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lvm2/mixed/vgcfgbackup.txt");
        let doc = text::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let vg = VolumeGroup::from_document(&doc).unwrap().0;
        let name = vg.name.clone();
        let (e, act, _) = SimEngine::with_sims(&[], vec![]);
        e.insert_vg(vg);
        (e, act, name)
    }

    #[test]
    fn volumes_lvmd_cannot_remove_are_refused_before_anything_changes() {
        let (e, act, vg) = lvm2_mixed();
        for lv in ["mirrored", "thin", "pool", "cached"] {
            e.activate(&vg, lv).unwrap();
        }
        // lvm2's internal `snapshotN` of a COW snapshot is no volume.
        assert!(e.activate(&vg, "snapshot0").is_err());
        assert!(!e
            .logical_volumes(&vg)
            .unwrap()
            .iter()
            .any(|l| l.name == "snapshot0" || l.name == "lin_b_snap"));
        let seqno = e.volume_group(&vg).unwrap().seqno;
        let active = act.active_in(&vg);
        // (A thin snapshot's origin is removable, its snapshot kept: lvm::thin tests.)
        for (lv, says) in [
            ("pool", "thin pool"),
            ("cached", "cache"),
            // A COW snapshot's origin while it has one; the snapshot's store, which
            // goes only as a snapshot. (Names like `pool_tmeta` are refused as lvm2's
            // reserved names.)
            ("lin_b", "origin of the COW snapshots lin_b_snap"),
            ("lin_b_snap", "COW snapshot of lin_b"),
        ] {
            let err = e.remove_logical_volume(&vg, lv).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(says), "{lv}: {msg}");
            assert!(
                matches!(
                    &err,
                    EngineError::Lvm(LvmError::LvUnsupported { .. } | LvmError::LvInUse { .. })
                ),
                "{lv}: {err:?}"
            );
            // Not deactivated first, not removed from the metadata.
            assert_eq!(act.active_in(&vg), active, "{lv}");
            assert_eq!(e.volume_group(&vg).unwrap().seqno, seqno, "{lv}");
        }
        // Resizing the pool is refused too, before any reload; same size included.
        // (lvm2's mirror is one lvmd grows: below; so are thin volumes, daemon::thin.)
        for lv in ["pool"] {
            let size = e.logical_volume(&vg, lv).unwrap().size;
            for to in [size, Bytes(size.0 * 2)] {
                let err = e.resize_logical_volume(&vg, lv, to).unwrap_err();
                assert!(
                    matches!(&err, EngineError::Lvm(LvmError::LvUnsupported { .. })),
                    "{lv}: {err:?}"
                );
            }
        }
        assert_eq!(e.volume_group(&vg).unwrap().seqno, seqno);
        // A plain LV of the same VG is still removed (deactivated first).
        e.activate(&vg, "lin_a").unwrap();
        assert!(e.remove_logical_volume(&vg, "lin_a").unwrap());
        assert!(act.active_in(&vg).iter().all(|a| a.lv != "lin_a"));
        // lvm2's mirror is one lvmd grows (every leg) and removes: deactivated first,
        // legs along. Shrinking it is refused.
        let size = e.logical_volume(&vg, "mirrored").unwrap().size;
        let grown = e
            .resize_logical_volume(&vg, "mirrored", Bytes(size.0 * 2))
            .unwrap();
        assert_eq!(grown.size, Bytes(size.0 * 2));
        let err = e.resize_logical_volume(&vg, "mirrored", size).unwrap_err();
        assert!(err.to_string().contains("does not shrink"), "{err}");
        assert!(e.remove_logical_volume(&vg, "mirrored").unwrap());
        assert!(act.active_in(&vg).iter().all(|a| a.lv != "mirrored"));
        let read = e.meta.read(&vg).unwrap();
        let left: Vec<&str> = read.vg.lvs.iter().map(|l| l.name.as_str()).collect();
        assert!(left.iter().all(|n| !n.starts_with("mirrored")), "{left:?}");
    }

    #[test]
    fn busy_deactivation_names_the_read_only_publish() {
        let (e, act, node) = engine();
        let target = Path::new("/k/pods/p/raw");
        e.publish_block("vg", "raw", target, true).unwrap();
        // The sim's activation knows nothing of loop devices: make it see an opener.
        act.set_open_count("vg", "raw", 1);
        let l = node.loops()[0].path.clone();
        for err in [
            e.deactivate("vg", "raw").unwrap_err(),
            e.remove_logical_volume("vg", "raw").unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(msg.contains(&l.display().to_string()), "{msg}");
            assert!(msg.contains("/k/pods/p/raw"), "{msg}");
            assert!(msg.contains("unpublish"), "{msg}");
        }
    }
}
