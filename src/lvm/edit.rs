//! VG edits, pure: a VG and one typed request in, the new VG out. Nothing here reads or
//! writes a disk, so the real store ([`crate::lvm::Lvm`], which adds lvm2's lock and
//! the commit) and the daemon's simulated store run the very same code and cannot
//! disagree about what a request does to a VG.
//!
//! A new volume type is one more [`Edit`] (or one more [`Layout`]) and its arm here.

use super::cow;
use super::raid;
pub use super::raid_legs::RemovedLegs;
use super::segments::{last_linear_area, merge_adjacent, segments_from, truncate_segments};
use super::thin::{self, ThinPoolSpec};
use super::{LvmError, Result};
use crate::alloc::{self, Allocation, PvSpace};
use crate::model::name::{validate_lv_name_in, validate_tag};
use crate::model::{Layout, LogicalVolume, PhysicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::units::{Bytes, ExtentSize, Extents, Sectors};
use crate::uuid::Uuid;
use std::collections::BTreeMap;

/// A new LV: the one typed create request from the API down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvSpec {
    pub name: String,
    pub size: Bytes,
    pub layout: Layout,
    pub tags: Vec<String>,
}

/// One snapshot of an [`Edit::CreateThinSnapshotGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub name: String,
    /// A visible thin LV of the group's pool.
    pub origin: String,
    pub tags: Vec<String>,
}

/// One change to a VG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    CreateLv(LvSpec),
    /// A visible linear or striped LV nothing refers to.
    RemoveLv {
        lv: String,
    },
    /// Grows (continuing the last linear run when it can) or shrinks to `size`, rounded
    /// as the LV's layout rounds.
    ResizeLv {
        lv: String,
        size: Bytes,
    },
    /// Renames, and when `tags` says so replaces the tags in the same commit.
    RenameLv {
        lv: String,
        to: String,
        tags: Option<Vec<String>>,
    },
    /// Deletions first, additions not doubled (lvm2's `--deltag`/`--addtag`).
    ChangeLvTags {
        lv: String,
        add: Vec<String>,
        del: Vec<String>,
    },
    ChangeVgTags {
        add: Vec<String>,
        del: Vec<String>,
    },
    /// A thin pool with its sub-LVs (and the VG's metadata spare), as
    /// `lvcreate --type thin-pool` makes it.
    CreateThinPool(ThinPoolSpec),
    /// A thin LV in `pool`: the pool's transaction id raised and the `create` message
    /// recorded for the kernel (see [`super::thin`]).
    CreateThin {
        name: String,
        pool: String,
        size: Bytes,
        tags: Vec<String>,
    },
    /// A thin snapshot of thin LV `origin` (`lvcreate -s`), in the origin's pool, as
    /// large as it or `size` (at least the origin's: `lvcreate -s` then `lvextend`, in
    /// one commit): the pool's transaction id raised and the `create` recorded (sent as
    /// `create_snap`); `read_only` as `-pr`; `activation_skip` as lvm2's default for
    /// thin snapshots (`-ky`; off: `-kn`, what a volume restored from one wants).
    CreateThinSnapshot {
        name: String,
        origin: String,
        read_only: bool,
        activation_skip: bool,
        size: Option<Bytes>,
        tags: Vec<String>,
    },
    /// Read-only thin snapshots of several thin LVs of one pool taken at one instant
    /// (a group): each as `CreateThinSnapshot` makes one (`-pr`, activation skip), all
    /// in one pool transaction (the id raised once, every `create` recorded), which
    /// lvm2 has no command for. Origins of another pool are refused.
    CreateThinSnapshotGroup {
        snapshots: Vec<GroupSnapshot>,
    },
    /// A copy-on-write snapshot `name` of linear or striped LV `origin` (`lvcreate -s -L
    /// cow_size -c chunk_size`): its store allocated, its `snapshotN` written (see
    /// [`super::cow`]).
    CreateCowSnapshot {
        name: String,
        origin: String,
        cow_size: Bytes,
        chunk_size: Sectors,
        tags: Vec<String>,
    },
    /// The COW snapshot whose store is `lv` (the name users gave it), with its
    /// `snapshotN`; the origin stays.
    RemoveCowSnapshot {
        lv: String,
    },
    /// A thin LV nothing but its thin snapshots refers to: gone from the metadata, its
    /// `delete` recorded, its snapshots' `origin` dropped (as lvm2 does).
    RemoveThin {
        lv: String,
    },
    /// Grows thin pool `pool` as `lvextend` does: its data (`_tdata`, and the pool's
    /// segment with it) to `data`, its metadata (`_tmeta`, and the VG's spare with it)
    /// to `metadata`, each rounded up to extents; `None` leaves that part as it is.
    /// Pools are never shrunk (dm-thin cannot).
    ResizeThinPool {
        pool: String,
        data: Option<Bytes>,
        metadata: Option<Bytes>,
    },
    /// The pool's recorded messages reached the kernel, whose pool is at
    /// `transaction_id`: they are dropped.
    ThinMessagesSent {
        pool: String,
        transaction_id: u64,
    },
    /// Replaces raid1 LV `lv`'s legs `legs` (by index: on a missing PV, or failed) with
    /// space on PVs no other leg uses, none of them in `avoid` (PVs whose device is
    /// gone), flagged `REBUILD` so dm-raid rebuilds them, as `lvconvert --repair`.
    RepairRaid {
        lv: String,
        legs: Vec<usize>,
        avoid: Vec<String>,
    },
    /// Gives raid1 LV `lv` `mirrors + 1` legs, as `lvconvert -m mirrors LV PVs`: new
    /// legs on PVs no leg uses (of `pvs`, when given), flagged `REBUILD` so dm-raid
    /// copies them whole; legs removed from the end, or those on `pvs`, the rest
    /// renamed to close the gap; the removed legs' sub-LVs as `removed` says (see
    /// [`super::raid_legs`]).
    ConvertRaid {
        lv: String,
        mirrors: u32,
        pvs: Vec<String>,
        removed: RemovedLegs,
    },
    /// The kernel took the rebuild of raid1 LV `lv`'s new legs, or the recalculation of
    /// its new integrity layers: their `REBUILD` flags and `recalculate` keys are
    /// dropped (lvm2 drops them after its load too).
    RaidRebuildLoaded {
        lv: String,
    },
    /// Nothing but a new seqno: every metadata area gets the newest text again.
    Rewrite,
}

/// Who makes a change: what new LVs record as their creation host and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub host: String,
    pub time: i64,
    /// The block sizes of the PVs' devices where the store can ask them (by PV uuid):
    /// what lvm2 reads off the devices to pick an integrity block size. Empty in
    /// plans and the simulator (lvm2's choice for unknown devices: 512).
    pub pv_block_sizes: BTreeMap<Uuid, BlockSizes>,
}

/// A device's logical and physical block sizes in bytes (`BLKSSZGET`, `BLKPBSZGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    pub logical: u32,
    pub physical: u32,
}

impl Origin {
    pub fn now(host: &str) -> Origin {
        Origin {
            host: host.into(),
            time: super::now(),
            pv_block_sizes: Default::default(),
        }
    }

    /// A new LV as lvm2 writes one: read-write, a fresh uuid, made at this origin's time
    /// on its host. Hidden sub-LVs (raid legs, a pool's layers) are not `visible`.
    pub fn new_lv(
        &self,
        name: String,
        visible: bool,
        tags: Vec<String>,
        segments: Vec<Segment>,
    ) -> LogicalVolume {
        let mut status = vec!["READ".to_owned(), "WRITE".to_owned()];
        if visible {
            status.push("VISIBLE".into());
        }
        LogicalVolume {
            name,
            id: Uuid::random(),
            status,
            flags: vec![],
            tags,
            creation_time: Some(self.time),
            creation_host: Some(self.host.clone()),
            segments,
            extra: Default::default(),
        }
    }
}

/// The VG after an edit (seqno untouched: the store sets it at commit).
#[derive(Debug, Clone)]
pub struct Edited {
    pub vg: VolumeGroup,
    /// For lvm2's metadata header and backup files, e.g. `lvcreate vg/a`.
    pub description: String,
    /// `false`: the edit changes nothing (a resize to the current size); no commit.
    pub changed: bool,
}

impl Edit {
    /// [`Edit::ChangeLvTags`] from borrowed lists.
    pub fn lv_tags(lv: &str, add: &[String], del: &[String]) -> Edit {
        Edit::ChangeLvTags {
            lv: lv.into(),
            add: add.to_vec(),
            del: del.to_vec(),
        }
    }

    /// The checks that need no VG: names, tags and the layout's shape. Stores call this
    /// before taking any lock, so bad input is refused as such even where the VG or LV
    /// does not exist; [`apply`] calls it again.
    pub fn check(&self, vg: &str) -> Result<()> {
        let tags = |t: &[String]| t.iter().try_for_each(|t| validate_tag(t));
        match self {
            Edit::CreateLv(spec) => {
                validate_lv_name_in(vg, &spec.name)?;
                tags(&spec.tags)?;
                check_size(spec.size)?;
                spec.layout.check()?;
                if spec.layout == Layout::Thin {
                    return Err(LvmError::InvalidArgument {
                        what: "layout",
                        value: "thin".into(),
                        why: "a thin volume is made in a pool (Edit::CreateThin)".into(),
                    });
                }
            }
            Edit::ResizeLv { size, .. } => check_size(*size)?,
            Edit::ResizeThinPool { data, metadata, .. } => {
                for size in data.iter().chain(metadata) {
                    check_size(*size)?;
                }
            }
            Edit::RenameLv { to, tags: t, .. } => {
                validate_lv_name_in(vg, to)?;
                tags(t.as_deref().unwrap_or_default())?;
            }
            Edit::ChangeLvTags { add, del, .. } | Edit::ChangeVgTags { add, del } => {
                tags(add)?;
                tags(del)?;
            }
            Edit::CreateThinPool(spec) => {
                validate_lv_name_in(vg, &spec.name)?;
                tags(&spec.tags)?;
                spec.check()?;
            }
            Edit::CreateThin {
                name,
                size,
                tags: t,
                ..
            } => {
                validate_lv_name_in(vg, name)?;
                tags(t)?;
                check_size(*size)?;
            }
            Edit::CreateThinSnapshot { name, tags: t, .. } => {
                validate_lv_name_in(vg, name)?;
                tags(t)?;
            }
            Edit::CreateThinSnapshotGroup { snapshots } => {
                for snap in snapshots {
                    validate_lv_name_in(vg, &snap.name)?;
                    tags(&snap.tags)?;
                }
            }
            Edit::CreateCowSnapshot {
                name,
                cow_size,
                chunk_size,
                tags: t,
                ..
            } => {
                validate_lv_name_in(vg, name)?;
                tags(t)?;
                check_size(*cow_size)?;
                cow::check_chunk_size(*chunk_size)?;
            }
            Edit::RemoveLv { .. }
            | Edit::RemoveThin { .. }
            | Edit::RemoveCowSnapshot { .. }
            | Edit::ThinMessagesSent { .. }
            | Edit::RepairRaid { .. }
            | Edit::RaidRebuildLoaded { .. }
            | Edit::Rewrite => {}
            Edit::ConvertRaid { removed, .. } => {
                if let RemovedLegs::Kept { tags: t, .. } = removed {
                    tags(t)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the edit may be committed while PVs of the VG are missing: a raid
    /// repair, which takes a mirror's leg off a missing PV (lvm2's `lvconvert --repair`
    /// writes the metadata to the PVs left, the missing ones flagged `MISSING`). Every
    /// other edit is refused then, so a missing PV's copy is never silently lost.
    pub fn writes_past_missing_pvs(&self) -> bool {
        matches!(
            self,
            Edit::RepairRaid { .. } | Edit::RaidRebuildLoaded { .. }
        )
    }

    /// Whether the edit may make or move an integrity layer, whose block size lvm2
    /// picks from (or checks against) the PVs' devices ([`Origin::pv_block_sizes`]).
    pub fn reads_pv_block_sizes(&self) -> bool {
        match self {
            Edit::CreateLv(spec) => spec.layout.integrity(),
            Edit::ConvertRaid { .. } | Edit::RepairRaid { .. } => true,
            _ => false,
        }
    }

    /// The LV the edit leaves behind under this name (created, resized, renamed,
    /// retagged), looked up in the edited VG.
    pub fn lv_name(&self) -> Option<&str> {
        match self {
            Edit::CreateLv(spec) => Some(&spec.name),
            Edit::CreateThinPool(spec) => Some(&spec.name),
            Edit::CreateThin { name, .. }
            | Edit::CreateThinSnapshot { name, .. }
            | Edit::CreateCowSnapshot { name, .. } => Some(name),
            Edit::ResizeLv { lv, .. }
            | Edit::ChangeLvTags { lv, .. }
            | Edit::RepairRaid { lv, .. }
            | Edit::ConvertRaid { lv, .. }
            | Edit::RaidRebuildLoaded { lv } => Some(lv),
            Edit::RenameLv { to, .. } => Some(to),
            Edit::ThinMessagesSent { pool, .. } | Edit::ResizeThinPool { pool, .. } => Some(pool),
            Edit::RemoveLv { .. }
            | Edit::RemoveThin { .. }
            | Edit::CreateThinSnapshotGroup { .. }
            | Edit::RemoveCowSnapshot { .. }
            | Edit::ChangeVgTags { .. }
            | Edit::Rewrite => None,
        }
    }
}

/// A volume has at least one extent.
pub fn check_size(size: Bytes) -> Result<()> {
    if size == Bytes(0) {
        return Err(LvmError::InvalidArgument {
            what: "size",
            value: "0".into(),
            why: "a logical volume needs at least one extent".into(),
        });
    }
    Ok(())
}

/// Applies `edit` to `vg`. Everything is checked before anything changes; an error
/// means the VG is as it was.
pub fn apply(vg: &VolumeGroup, edit: &Edit, origin: &Origin) -> Result<Edited> {
    if changes_only_once_checked(edit) {
        let mut new = vg.clone();
        let description = apply_checked_in_place(&mut new, edit, origin)?;
        return Ok(Edited {
            vg: new,
            description,
            changed: true,
        });
    }
    apply_to_copy(vg, edit, origin)
}

/// As [`apply`], to `vg` itself: `Some(description)` when it changed, and on `Err`
/// `vg` is as it was. What a group commit applies its edits with, so the usual group
/// (creates and removals of linear and striped LVs, which touch nothing before every
/// check passed) costs one copy of the VG, not one per edit.
pub fn apply_in_place(
    vg: &mut VolumeGroup,
    edit: &Edit,
    origin: &Origin,
) -> Result<Option<String>> {
    if changes_only_once_checked(edit) {
        return apply_checked_in_place(vg, edit, origin).map(Some);
    }
    let edited = apply_to_copy(vg, edit, origin)?;
    if !edited.changed {
        return Ok(None);
    }
    *vg = edited.vg;
    Ok(Some(edited.description))
}

/// The edits whose every check comes before their one change to the VG.
fn changes_only_once_checked(edit: &Edit) -> bool {
    match edit {
        Edit::CreateLv(spec) => !matches!(spec.layout, Layout::Raid1 { .. }),
        Edit::RemoveLv { .. } => true,
        _ => false,
    }
}

fn apply_checked_in_place(vg: &mut VolumeGroup, edit: &Edit, origin: &Origin) -> Result<String> {
    edit.check(&vg.name)?;
    let name = vg.name.clone();
    match edit {
        Edit::CreateLv(spec) => {
            create(vg, spec, origin)?;
            Ok(format!("lvcreate {name}/{}", spec.name))
        }
        Edit::RemoveLv { lv } => {
            existing(vg, lv)?;
            check_removable(vg, lv)?;
            let subs = raid::all_sub_lvs(vg, lv).unwrap_or_default();
            vg.lvs.retain(|l| l.name != *lv && !subs.contains(&l.name));
            Ok(format!("lvremove {name}/{lv}"))
        }
        _ => unreachable!("only edits changes_only_once_checked accepts"),
    }
}

fn apply_to_copy(vg: &VolumeGroup, edit: &Edit, origin: &Origin) -> Result<Edited> {
    edit.check(&vg.name)?;
    let mut new = vg.clone();
    let name = &vg.name;
    let description = match edit {
        Edit::CreateLv(spec) => {
            create(&mut new, spec, origin)?;
            format!("lvcreate {name}/{}", spec.name)
        }
        Edit::RemoveLv { lv } => {
            existing(vg, lv)?;
            check_removable(vg, lv)?;
            // A raid1 LV goes with its legs (and their integrity layers).
            let subs = raid::all_sub_lvs(vg, lv).unwrap_or_default();
            new.lvs.retain(|l| l.name != *lv && !subs.contains(&l.name));
            format!("lvremove {name}/{lv}")
        }
        Edit::CreateThinPool(spec) => {
            thin::create_pool(&mut new, spec, origin)?;
            format!("lvcreate --type thin-pool {name}/{}", spec.name)
        }
        Edit::CreateThin {
            name: lv,
            pool,
            size,
            tags,
        } => {
            thin::create_thin(&mut new, lv, pool, *size, tags, origin)?;
            format!("lvcreate --thin {name}/{pool} -n {lv}")
        }
        Edit::CreateThinSnapshot {
            name: lv,
            origin: of,
            read_only,
            activation_skip,
            size,
            tags,
        } => {
            let snap = thin::Snapshot {
                name: lv,
                of,
                read_only: *read_only,
                activation_skip: *activation_skip,
                size: *size,
                tags,
            };
            thin::create_snapshots(&mut new, &[snap], origin)?;
            format!("lvcreate -s {name}/{of} -n {lv}")
        }
        Edit::CreateThinSnapshotGroup { snapshots } => {
            let snaps: Vec<thin::Snapshot> = snapshots
                .iter()
                .map(|s| thin::Snapshot {
                    name: &s.name,
                    of: &s.origin,
                    read_only: true,
                    activation_skip: true,
                    size: None,
                    tags: &s.tags,
                })
                .collect();
            thin::create_snapshots(&mut new, &snaps, origin)?;
            let each: Vec<String> = snapshots
                .iter()
                .map(|s| format!("{name}/{} -n {}", s.origin, s.name))
                .collect();
            format!("lvcreate -s {} (one thin transaction)", each.join(", "))
        }
        Edit::CreateCowSnapshot {
            name: lv,
            origin: of,
            cow_size,
            chunk_size,
            tags,
        } => {
            let snap = cow::CowSnapshot {
                name: lv,
                of,
                cow_size: *cow_size,
                chunk_size: *chunk_size,
                tags,
            };
            cow::create(&mut new, &snap, origin)?;
            format!("lvcreate -s {name}/{of} -n {lv} -L {}b", cow_size.0)
        }
        Edit::RemoveCowSnapshot { lv } => {
            existing(vg, lv)?;
            cow::remove(&mut new, lv)?;
            format!("lvremove {name}/{lv}")
        }
        Edit::RemoveThin { lv } => {
            existing(vg, lv)?;
            check_thin_removable(vg, lv)?;
            thin::remove_thin(&mut new, lv)?;
            format!("lvremove {name}/{lv}")
        }
        Edit::ThinMessagesSent {
            pool,
            transaction_id,
        } => {
            if !thin::messages_sent(&mut new, pool, *transaction_id)? {
                return Ok(Edited {
                    vg: new,
                    description: String::new(),
                    changed: false,
                });
            }
            format!("thin pool {name}/{pool} messages sent (transaction {transaction_id})")
        }
        Edit::ResizeThinPool {
            pool,
            data,
            metadata,
        } => {
            let Some(what) = thin::resize_pool(&mut new, pool, *data, *metadata, origin)? else {
                return Ok(Edited {
                    vg: new,
                    description: String::new(),
                    changed: false,
                });
            };
            format!("lvextend {name}/{pool} ({what})")
        }
        Edit::ResizeLv { lv, size } => {
            let Some(target) = resize(&mut new, lv, *size)? else {
                return Ok(Edited {
                    vg: new,
                    description: String::new(),
                    changed: false,
                });
            };
            format!("lvresize {name}/{lv} to {} extents", target.0)
        }
        Edit::RenameLv { lv, to, tags } => {
            existing(vg, lv)?;
            if vg.lv(to).is_some() {
                return Err(LvmError::LvExists {
                    vg: name.clone(),
                    lv: to.clone(),
                });
            }
            // Other LVs refer to this one by name; renaming would need to rewrite those.
            check_unreferenced(vg, lv)?;
            let l = new.lv_mut(lv).expect("checked");
            l.name = to.clone();
            let mut description = format!("lvrename {name}/{lv} {to}");
            if let Some(tags) = tags {
                l.tags = tags.clone();
                description.push_str(&format!(" (tags {tags:?})"));
            }
            raid::rename_legs(&mut new, to)?;
            description
        }
        Edit::ChangeLvTags { lv, add, del } => {
            existing(vg, lv)?;
            change_tags(&mut new.lv_mut(lv).expect("checked").tags, add, del);
            format!("lvchange tags {name}/{lv}")
        }
        Edit::ChangeVgTags { add, del } => {
            change_tags(&mut new.tags, add, del);
            format!("vgchange tags {name}")
        }
        Edit::RepairRaid { lv, legs, avoid } => {
            existing(vg, lv)?;
            raid::repair(&mut new, lv, legs, avoid, origin)?;
            format!("lvconvert --repair {name}/{lv} (legs {legs:?})")
        }
        Edit::ConvertRaid {
            lv,
            mirrors,
            pvs,
            removed,
        } => {
            existing(vg, lv)?;
            if !super::raid_legs::convert(&mut new, lv, *mirrors, pvs, removed, origin)? {
                return Ok(Edited {
                    vg: new,
                    description: String::new(),
                    changed: false,
                });
            }
            format!("lvconvert -m {mirrors} {name}/{lv}")
        }
        Edit::RaidRebuildLoaded { lv } => {
            existing(vg, lv)?;
            if !raid::clear_first_load(&mut new, lv) {
                return Ok(Edited {
                    vg: new,
                    description: String::new(),
                    changed: false,
                });
            }
            format!("raid1 {name}/{lv}: first load taken (rebuild, recalculate)")
        }
        Edit::Rewrite => format!("rewrite {name} to repair stale metadata copies"),
    };
    Ok(Edited {
        vg: new,
        description,
        changed: true,
    })
}

fn existing<'a>(vg: &'a VolumeGroup, lv: &str) -> Result<&'a LogicalVolume> {
    vg.lv(lv).ok_or_else(|| LvmError::LvNotFound {
        vg: vg.name.clone(),
        lv: lv.into(),
    })
}

fn create(vg: &mut VolumeGroup, spec: &LvSpec, origin: &Origin) -> Result<()> {
    if vg.lv(&spec.name).is_some() {
        return Err(LvmError::LvExists {
            vg: vg.name.clone(),
            lv: spec.name.clone(),
        });
    }
    spec.layout.check_for(&vg.name, vg.extent_size)?;
    let extents = spec.layout.extents_for(spec.size, vg.extent_size);
    if let Layout::Raid1 { .. } = spec.layout {
        return raid::create(vg, &spec.name, extents, spec.layout, &spec.tags, origin);
    }
    let allocation = allocate(vg, extents, spec.layout, None)?;
    let lv = origin.new_lv(
        spec.name.clone(),
        true,
        spec.tags.clone(),
        segments_from(vg, Extents::ZERO, &allocation, spec.layout),
    );
    vg.lvs.push(lv);
    Ok(())
}

/// `None`: already that size.
fn resize(vg: &mut VolumeGroup, lv_name: &str, size: Bytes) -> Result<Option<Extents>> {
    existing(vg, lv_name)?;
    check_resizable(vg, lv_name)?;
    let lv = vg.lv(lv_name).expect("checked").clone();
    let layout = Layout::of(&lv);
    let target = layout.extents_for(size, vg.extent_size);
    let current = lv.extents();
    if layout == Layout::Thin {
        // Its size is its segment's length: no extents to allocate, the pool's blocks
        // are provisioned as it is written.
        if target < current {
            return Err(no_shrink(vg, lv_name, "thin", current, target));
        }
        if target == current {
            return Ok(None);
        }
        vg.lv_mut(lv_name).expect("checked").segments[0].extent_count = target;
        return Ok(Some(target));
    }
    if raid::legs_of(&lv).is_some() {
        if target < current {
            return Err(no_shrink(vg, lv_name, "raid1", current, target));
        }
        if target == current {
            return Ok(None);
        }
        raid::grow(vg, lv_name, target)?;
        return Ok(Some(target));
    }
    if target > current {
        grow(vg, lv_name, target)?;
        return Ok(Some(target));
    }
    let mut new_lv = lv.clone();
    if target < current {
        truncate_segments(&mut new_lv.segments, target);
    } else {
        return Ok(None);
    }
    *vg.lv_mut(lv_name).expect("checked") = new_lv;
    Ok(Some(target))
}

/// Grows linear or striped LV `lv_name` (visible or a pool's sub-LV) to `target`
/// extents, continuing its last run where the PV has room, as lvm2 extends.
pub(super) fn grow(vg: &mut VolumeGroup, lv_name: &str, target: Extents) -> Result<()> {
    let lv = existing(vg, lv_name)?;
    let layout = Layout::of(lv);
    let current = lv.extents();
    let last = last_linear_area(vg, lv);
    let allocation = allocate(vg, target - current, layout, last)?;
    let more = segments_from(vg, current, &allocation, layout);
    let lv = vg.lv_mut(lv_name).expect("checked");
    lv.segments.extend(more);
    merge_adjacent(&mut lv.segments);
    Ok(())
}

/// Deletions first, additions not doubled, as lvm2's `lvchange --addtag/--deltag`.
pub(crate) fn change_tags(tags: &mut Vec<String>, add: &[String], del: &[String]) {
    tags.retain(|t| !del.contains(t));
    for t in add {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
}

/// Each PV's space as the allocator sees it: used runs, and whether it may be allocated.
pub fn pv_spaces(vg: &VolumeGroup) -> Vec<PvSpace> {
    let usage = vg.pv_usage();
    vg.pvs
        .iter()
        .enumerate()
        .map(|(i, pv)| PvSpace {
            index: i,
            pe_count: pv.pe_count,
            allocatable: pv.is_allocatable() && !pv.is_missing(),
            used: usage
                .iter()
                .filter(|u| u.pv == pv.name)
                .map(|u| alloc::ExtentRange {
                    start: u.start,
                    count: u.count,
                })
                .collect(),
        })
        .collect()
}

fn allocate(
    vg: &VolumeGroup,
    extents: Extents,
    layout: Layout,
    after: Option<alloc::Area>,
) -> Result<Allocation> {
    let req = alloc::Request {
        extents,
        shape: layout.shape(),
        pvs_allowed: None,
        after,
    };
    alloc::allocate(&pv_spaces(vg), &req).map_err(|source| LvmError::Alloc {
        vg: vg.name.clone(),
        source,
    })
}

/// A VG with no PVs yet, as lvm2's vgcreate writes it.
pub fn new_vg(name: &str, extent_size: ExtentSize) -> VolumeGroup {
    VolumeGroup {
        name: name.into(),
        id: Uuid::random(),
        seqno: 0,
        status: vec!["RESIZEABLE".into(), "READ".into(), "WRITE".into()],
        flags: vec![],
        tags: vec![],
        extent_size,
        max_lv: 0,
        max_pv: 0,
        metadata_copies: 0,
        pvs: vec![],
        lvs: vec![],
        extra: Default::default(),
    }
}

/// A device joining a VG: its PV uuid, where it was found, its size and where its
/// extents start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPv {
    pub id: Uuid,
    pub device: String,
    pub dev_size: Sectors,
    pub pe_start: Sectors,
}

/// Adds PV entries as lvm2 writes them, each named by the lowest free `pvN`; a device
/// that holds no whole extent after `pe_start` is refused (and nothing added).
pub fn add_pvs(vg: &mut VolumeGroup, pvs: &[NewPv]) -> Result<()> {
    let mut entries = Vec::with_capacity(pvs.len());
    for pv in pvs {
        let data = pv.dev_size.checked_sub(pv.pe_start).unwrap_or_default();
        let pe_count = vg.extent_size.extents_floor(data);
        if pe_count == Extents::ZERO {
            return Err(LvmError::DeviceTooSmall {
                path: pv.device.clone().into(),
                size: pv.dev_size.to_bytes(),
                min: (pv.pe_start + vg.extent_size.sectors()).to_bytes(),
            });
        }
        entries.push(PhysicalVolume {
            name: String::new(),
            id: pv.id,
            device: Some(pv.device.clone()),
            status: vec!["ALLOCATABLE".into()],
            flags: vec![],
            tags: vec![],
            dev_size: pv.dev_size,
            pe_start: pv.pe_start,
            pe_count,
            extra: Default::default(),
        });
    }
    let mut next = 0;
    for mut pv in entries {
        while vg.pvs.iter().any(|p| p.name == format!("pv{next}")) {
            next += 1;
        }
        pv.name = format!("pv{next}");
        vg.pvs.push(pv);
    }
    Ok(())
}

/// Whether lvmd may remove `lv_name` of `vg` (which must exist): a visible linear or
/// striped LV nothing else refers to. The daemon asks before it deactivates anything,
/// so a refused removal changes nothing at all.
pub fn check_removable(vg: &VolumeGroup, lv_name: &str) -> Result<()> {
    cow::check_not_origin(vg, lv_name, "removing")?;
    if let Some(snap) = cow::by_cow(vg, lv_name) {
        return Err(LvmError::LvUnsupported {
            vg: vg.name.clone(),
            lv: lv_name.into(),
            why: format!(
                "it is a COW snapshot of {}; it is removed as a snapshot \
                 (Edit::RemoveCowSnapshot), with its {}",
                snap.origin, snap.segment_lv
            ),
        });
    }
    if raid::all_sub_lvs(vg, lv_name).is_none() {
        check_plain(vg, lv_name)?;
    }
    check_visible(vg, lv_name)?;
    check_unreferenced(vg, lv_name)
}

/// Whether lvmd may remove thin LV `lv_name` of `vg` (which must exist): visible and
/// used by nothing but its thin snapshots (which stay, their `origin` dropped), as
/// [`apply`] checks [`Edit::RemoveThin`].
pub fn check_thin_removable(vg: &VolumeGroup, lv_name: &str) -> Result<()> {
    check_visible(vg, lv_name)?;
    check_unreferenced_but_snapshots(vg, lv_name)
}

/// Whether lvmd may resize `lv_name` of `vg` (which must exist): a visible linear or
/// striped LV, or a raid1 LV whose legs are all there (grown only, [`apply`] refuses
/// shrinking one).
pub fn check_resizable(vg: &VolumeGroup, lv_name: &str) -> Result<()> {
    cow::check_not_origin(vg, lv_name, "resizing")?;
    let thin = vg
        .lv(lv_name)
        .is_some_and(|l| Layout::of(l) == Layout::Thin && l.segments.len() == 1);
    if raid::all_sub_lvs(vg, lv_name).is_none() && !thin {
        check_plain(vg, lv_name)?;
    }
    check_visible(vg, lv_name)
}

fn check_plain(vg: &VolumeGroup, lv_name: &str) -> Result<()> {
    let lv = vg.lv(lv_name).expect("caller checked");
    if !lv.is_plain() {
        let kind = lv.type_name();
        let why = match kind {
            "thin" => "it is a thin volume; removing one takes the pool's `delete` message \
                       (the daemon's removal, Edit::RemoveThin)"
                .to_owned(),
            "thin-pool" => "it is a thin pool; lvmd's volume API does not remove or resize \
                            thin pools yet (use lvm2)"
                .to_owned(),
            "raid1" => match raid::layered_leg(vg, lv) {
                Some((sub, kind)) => raid::layered_why(sub, kind),
                None => "it is a raid1 volume whose legs are not all in the metadata; \
                         lvmd changes only whole raid1 volumes (use lvm2)"
                    .to_owned(),
            },
            _ => format!(
                "it is a {kind} volume; lvmd changes only linear, striped and raid1 volumes \
                 (use lvm2)"
            ),
        };
        return Err(LvmError::LvUnsupported {
            vg: vg.name.clone(),
            lv: lv_name.into(),
            why,
        });
    }
    check_visible(vg, lv_name)
}

fn check_visible(vg: &VolumeGroup, lv_name: &str) -> Result<()> {
    let lv = vg.lv(lv_name).expect("caller checked");
    if !lv.is_visible() {
        let owner = users_of(vg, lv_name).into_iter().next();
        return Err(LvmError::LvUnsupported {
            vg: vg.name.clone(),
            lv: lv_name.into(),
            why: format!(
                "it is a hidden sub-volume of {}",
                owner.as_deref().unwrap_or("another volume")
            ),
        });
    }
    Ok(())
}

/// The LVs whose segments refer to `lv_name`, as `name (type segment)`.
fn users_of(vg: &VolumeGroup, lv_name: &str) -> Vec<String> {
    users_but(vg, lv_name, false)
}

/// As [`users_of`]; `but_snapshots`: a thin snapshot that names `lv_name` only as its
/// `origin` is no user (lvm2 removes a thin origin and keeps its snapshots).
fn users_but(vg: &VolumeGroup, lv_name: &str, but_snapshots: bool) -> Vec<String> {
    let mut users = Vec::new();
    for other in &vg.lvs {
        for seg in &other.segments {
            let by_area = matches!(&seg.kind, SegmentKind::Striped { stripes, .. }
                if stripes.iter().any(|a| a.name == lv_name));
            let mut refs = seg
                .lv_references()
                .into_iter()
                .filter(|r| *r == lv_name)
                .count();
            if but_snapshots
                && matches!(&seg.kind, SegmentKind::Thin { origin: Some(o), .. } if o == lv_name)
            {
                refs -= 1;
            }
            if by_area || refs > 0 {
                users.push(format!("{} ({} segment)", other.name, seg.kind.type_name()));
            }
        }
    }
    users
}

/// Thin snapshots of `lv_name` (by `origin`) are no users; anything else is.
fn check_unreferenced_but_snapshots(vg: &VolumeGroup, lv_name: &str) -> Result<()> {
    match users_but(vg, lv_name, true).into_iter().next() {
        Some(by) => Err(LvmError::LvInUse {
            vg: vg.name.clone(),
            lv: lv_name.into(),
            by,
        }),
        None => Ok(()),
    }
}

fn check_unreferenced(vg: &VolumeGroup, lv_name: &str) -> Result<()> {
    match users_of(vg, lv_name).into_iter().next() {
        Some(by) => Err(LvmError::LvInUse {
            vg: vg.name.clone(),
            lv: lv_name.into(),
            by,
        }),
        None => Ok(()),
    }
}

/// lvmd grows thin and raid1 volumes but never shrinks them.
fn no_shrink(
    vg: &VolumeGroup,
    lv_name: &str,
    kind: &str,
    current: Extents,
    target: Extents,
) -> LvmError {
    LvmError::LvUnsupported {
        vg: vg.name.clone(),
        lv: lv_name.into(),
        why: format!(
            "it is a {kind} volume of {} extents; lvmd grows {kind} volumes but does not \
             shrink them (to {} extents)",
            current.0, target.0
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::text::parse;

    fn fixture() -> VolumeGroup {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lvm2/simple/vgcfgbackup.txt");
        let text = std::fs::read_to_string(p).unwrap();
        VolumeGroup::from_document(&parse(&text).unwrap())
            .unwrap()
            .0
    }

    fn create(name: &str, size: Bytes) -> Edit {
        Edit::CreateLv(LvSpec {
            name: name.into(),
            size,
            layout: Layout::Linear,
            tags: vec![],
        })
    }

    /// A group commit applies its edits to one model: each must do what `apply` does,
    /// and one refused must leave the model as it was for the next.
    #[test]
    fn in_place_edits_match_apply_and_a_refused_one_changes_nothing() {
        let origin = Origin {
            host: "test".into(),
            time: 1,
            pv_block_sizes: Default::default(),
        };
        let vg = fixture();
        let existing = vg.lvs[0].name.clone();
        let edits = [
            create("new1", Bytes(8 << 20)),
            create(&existing, Bytes(8 << 20)),
            create("huge", Bytes(1 << 50)),
            Edit::RemoveLv {
                lv: "absent".into(),
            },
            Edit::RemoveLv {
                lv: existing.clone(),
            },
            Edit::ChangeVgTags {
                add: vec!["t".into()],
                del: vec![],
            },
        ];
        let mut in_place = vg.clone();
        let mut copied = vg.clone();
        for edit in &edits {
            let before = in_place.clone();
            let a = apply_in_place(&mut in_place, edit, &origin);
            let b = apply(&copied, edit, &origin);
            match (a, b) {
                (Ok(Some(d)), Ok(e)) => {
                    assert!(e.changed);
                    assert_eq!(d, e.description);
                    copied = e.vg;
                    // A new LV's uuid is random: the same on both sides for comparing.
                    for lv in copied.lvs.iter_mut() {
                        if let Some(l) = in_place.lv(&lv.name) {
                            lv.id = l.id;
                        }
                    }
                }
                (Err(_), Err(_)) => {
                    assert_eq!(in_place, before, "{edit:?} refused, yet changed it")
                }
                (a, b) => panic!(
                    "{edit:?}: in place {a:?}, copied {:?}",
                    b.map(|e| e.description)
                ),
            }
            assert_eq!(in_place, copied, "{edit:?}");
        }
        assert!(in_place.lv("new1").is_some());
        assert!(in_place.lv(&existing).is_none());
    }
}
