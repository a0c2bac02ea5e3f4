//! Thin pools and thin LVs as lvm2 2.03 lays them out, and the pool's transaction id
//! kept in step as lvm2 keeps it.
//!
//! A pool is a visible LV with one `thin-pool` segment over two hidden linear sub-LVs,
//! `<pool>_tdata` (the data blocks) and `<pool>_tmeta` (dm-thin's own metadata), plus
//! one VG-wide hidden spare `lvol0_pmspare` as large as the largest `_tmeta` (what
//! `thin_repair` writes into). A thin LV is a visible LV with one `thin` segment naming
//! its pool and its thin device id inside the pool's metadata.
//!
//! The pool's kernel metadata knows the thin devices by id; the VG metadata knows the
//! LVs. The two are tied by the pool's `transaction_id`: every VG commit that creates
//! or deletes thin devices raises it by one (lvm2's `attach_pool_message`: once per
//! commit, at its first message), and the pool's kernel metadata carries the same
//! number once the messages were sent (`set_transaction_id old new`, sent last).
//!
//! Crash safety (lvm2's own journal, which lvm2 reads and replays too): the commit that
//! creates or deletes a thin LV also records what the kernel still has to be told, as
//! `messageN { create = "<lv>" }` / `messageN { delete = <id> }` sections in the pool's
//! segment, with the raised transaction id. The messages are sent after that commit
//! (on the active pool, or at the pool's next activation), and a second commit
//! ([`Edit::ThinMessagesSent`](super::Edit::ThinMessagesSent)) drops them. A kill -9
//! anywhere leaves one of:
//! - kernel id = metadata id - 1, messages recorded: none or some sent; send them again
//!   (a `create` as `delete` then `create_thin`, so a half-done earlier attempt never
//!   shows old blocks; a `delete` of an id already gone is done), then
//!   `set_transaction_id`, then drop them;
//! - kernel id = metadata id, messages recorded: all sent; drop them;
//! - kernel id = metadata id, none recorded: in step.
//!
//! lvm2 commits the metadata with the messages too, but sends them from the suspend
//! of the same command before it commits that metadata for good (its precommitted
//! copy), so a kill between its message and its commit leaves the kernel one
//! transaction ahead of the committed metadata: "transaction_id mismatch". lvmd never
//! sends a message that no committed metadata records.

use super::edit::Origin;
use super::segments::linear_segments;
use super::{LvmError, Result};
use crate::alloc::{self, Allocation};
use crate::format::text::{Item, Section, Value};
use crate::model::name::check_dm_name;
use crate::model::{LogicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::units::{Bytes, ExtentSize, Extents, Sectors};

/// The VG-wide spare for pool metadata repair (lvm2's name).
pub const PMSPARE: &str = "lvol0_pmspare";
/// lvm2's default chunk size (`allocation/thin_pool_chunk_size`, generic policy): 64 KiB.
pub const DEFAULT_CHUNK_SIZE: Sectors = Sectors(128);
/// dm-thin's smallest and largest data block (lvm2's `DM_THIN_{MIN,MAX}_DATA_BLOCK_SIZE`).
pub const MIN_CHUNK_SIZE: Sectors = Sectors(128);
pub const MAX_CHUNK_SIZE: Sectors = Sectors(2 * 1024 * 1024);
/// lvm2's bounds on a pool's metadata LV (`DEFAULT_THIN_POOL_MIN_METADATA_SIZE` 2 MiB,
/// `DEFAULT_THIN_POOL_MAX_METADATA_SIZE` 255 * (16 Ki - 64) * 4 KiB, ~15.56 GiB: what
/// dm-thin's space maps can address).
pub const MIN_METADATA_SIZE: Sectors = Sectors(2 * 2048);
pub const MAX_METADATA_SIZE: Sectors = Sectors(2 * 255 * ((1 << 14) - 64) * 4);
/// Above this lvm2 doubles the default chunk size rather than grow the metadata
/// (`DEFAULT_THIN_POOL_OPTIMAL_METADATA_SIZE`, 128 MiB).
pub const OPTIMAL_METADATA_SIZE: Sectors = Sectors(2 * 128 * 1024);
/// The largest thin device id dm-thin takes (24 bits, lvm2's `DM_THIN_MAX_DEVICE_ID`).
pub const MAX_DEVICE_ID: u64 = (1 << 24) - 1;

/// How the pool handles discards (lvm2's `discards` words; lvm2's default `passdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolDiscards {
    #[default]
    Passdown,
    NoPassdown,
    Ignore,
}

impl PoolDiscards {
    pub fn as_lvm2(self) -> &'static str {
        match self {
            PoolDiscards::Passdown => "passdown",
            PoolDiscards::NoPassdown => "nopassdown",
            PoolDiscards::Ignore => "ignore",
        }
    }
}

/// A new thin pool, as `lvcreate --type thin-pool -L data_size [-c chunk]
/// [--poolmetadatasize m] [-Z y|n] [--discards d]` asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinPoolSpec {
    pub name: String,
    /// The data sub-LV's size (the pool's size in `lvs`), rounded up to extents.
    pub data_size: Bytes,
    /// `None`: lvm2's default (64 KiB, doubled while the metadata would pass 128 MiB).
    pub chunk_size: Option<Sectors>,
    /// `None`: lvm2's estimate, 64 bytes per chunk, within lvm2's bounds.
    pub metadata_size: Option<Bytes>,
    /// Zero blocks when first provisioned (lvm2's default: yes).
    pub zero_new_blocks: bool,
    pub discards: PoolDiscards,
    pub tags: Vec<String>,
}

/// A pending thin-pool message, as recorded in the pool's segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolMessage {
    /// `create_thin <id>` for this thin LV (its device id is in its segment).
    Create(String),
    /// `delete <id>`.
    Delete(u64),
}

fn invalid(what: &'static str, value: impl ToString, why: impl Into<String>) -> LvmError {
    LvmError::InvalidArgument {
        what,
        value: value.to_string(),
        why: why.into(),
    }
}

impl ThinPoolSpec {
    /// The checks that need no VG.
    pub fn check(&self) -> Result<()> {
        super::edit::check_size(self.data_size)?;
        if let Some(c) = self.chunk_size {
            // lvm2: a multiple of 64 KiB from 64 KiB to 1 GiB.
            if c < MIN_CHUNK_SIZE || c > MAX_CHUNK_SIZE || c.0 % MIN_CHUNK_SIZE.0 != 0 {
                return Err(invalid(
                    "chunk size",
                    c.to_bytes().0,
                    "must be a multiple of 64KiB from 64KiB to 1GiB",
                ));
            }
        }
        if let Some(m) = self.metadata_size {
            let s = m.to_sectors_ceil();
            if s < MIN_METADATA_SIZE || s > MAX_METADATA_SIZE {
                return Err(invalid(
                    "metadata size",
                    m.0,
                    "must be from 2MiB to 15.56GiB (dm-thin's bounds)",
                ));
            }
        }
        Ok(())
    }

    /// Chunk size and metadata extents as lvm2's `update_thin_pool_params` picks them
    /// for a pool of `data` extents.
    pub fn sizes(&self, data: Extents, extent_size: ExtentSize) -> Result<(Sectors, Extents)> {
        let data_sectors = extent_size.span(data).0;
        let estimate = |chunk: u64| data_sectors / (chunk * (512 / 64));
        let (chunk, meta) = match (self.chunk_size, self.metadata_size) {
            (Some(c), None) => (c.0, estimate(c.0)),
            (None, None) => {
                let (mut c, mut m) = (DEFAULT_CHUNK_SIZE.0, estimate(DEFAULT_CHUNK_SIZE.0));
                while m > OPTIMAL_METADATA_SIZE.0 && c < MAX_CHUNK_SIZE.0 {
                    c <<= 1;
                    m >>= 1;
                }
                (c, m)
            }
            (c, Some(m)) => {
                let m = m.to_sectors_ceil().0;
                // lvm2 estimates the chunk from the metadata given, rounded up to 64 KiB.
                let est = (data_sectors / (m * 8)).div_ceil(MIN_CHUNK_SIZE.0) * MIN_CHUNK_SIZE.0;
                (c.map_or(est.max(MIN_CHUNK_SIZE.0), |c| c.0), m)
            }
        };
        // lvm2 rounds to extents, then clamps (update_pool_metadata_min_max).
        let meta = meta.div_ceil(extent_size.sectors().0) * extent_size.sectors().0;
        let meta = meta.clamp(MIN_METADATA_SIZE.0, MAX_METADATA_SIZE.0);
        let meta = extent_size.extents_ceil(Sectors(meta));
        let max_data = MAX_METADATA_SIZE.0 * chunk * 512 / 64;
        if data_sectors > max_data {
            return Err(invalid(
                "chunk size",
                Sectors(chunk).to_bytes().0,
                format!(
                    "cannot address {} of pool data",
                    crate::units::human_bytes(Sectors(data_sectors).to_bytes())
                ),
            ));
        }
        if chunk > data_sectors {
            return Err(invalid(
                "chunk size",
                Sectors(chunk).to_bytes().0,
                "the pool's data is smaller than one chunk",
            ));
        }
        Ok((Sectors(chunk), meta))
    }
}

pub(super) fn tmeta_name(pool: &str) -> String {
    format!("{pool}_tmeta")
}

pub(super) fn tdata_name(pool: &str) -> String {
    format!("{pool}_tdata")
}

fn hidden_lv(name: String, segments: Vec<Segment>, origin: &Origin) -> LogicalVolume {
    origin.new_lv(name, false, vec![], segments)
}

pub(super) fn allocate_linear(vg: &VolumeGroup, extents: Extents) -> Result<Vec<alloc::Area>> {
    let req = alloc::Request {
        extents,
        shape: alloc::Shape::Linear,
        pvs_allowed: None,
        after: None,
    };
    match alloc::allocate(&super::edit::pv_spaces(vg), &req) {
        Ok(Allocation::Linear(areas)) => Ok(areas),
        Ok(_) => unreachable!("a linear request gives a linear allocation"),
        Err(source) => Err(LvmError::Alloc {
            vg: vg.name.clone(),
            source,
        }),
    }
}

pub(super) fn check_new_name(vg: &VolumeGroup, name: &str) -> Result<()> {
    check_dm_name(&vg.name, name)?;
    if vg.lv(name).is_some() {
        return Err(LvmError::LvExists {
            vg: vg.name.clone(),
            lv: name.into(),
        });
    }
    Ok(())
}

/// Adds a thin pool as lvm2's `lvcreate --type thin-pool` writes it: the spare first
/// (or grown to the new metadata size), then the data, then the metadata sub-LV, each
/// linear; transaction id 0.
pub(super) fn create_pool(
    vg: &mut VolumeGroup,
    spec: &ThinPoolSpec,
    origin: &Origin,
) -> Result<()> {
    spec.check()?;
    let name = &spec.name;
    let (tmeta, tdata) = (tmeta_name(name), tdata_name(name));
    for n in [name, &tmeta, &tdata] {
        check_new_name(vg, n)?;
    }
    let data = vg
        .extent_size
        .extents_ceil(spec.data_size.to_sectors_ceil());
    let (chunk, meta) = spec.sizes(data, vg.extent_size)?;

    // Everything is allocated on a scratch copy first: a VG too small for any part
    // changes nothing.
    ensure_spare(vg, meta, origin)?;
    let data_areas = allocate_linear(vg, data)?;
    let data_lv = hidden_lv(
        tdata.clone(),
        linear_segments(vg, Extents::ZERO, &data_areas),
        origin,
    );
    vg.lvs.push(data_lv);
    let meta_areas = allocate_linear(vg, meta)?;
    let meta_lv = hidden_lv(
        tmeta.clone(),
        linear_segments(vg, Extents::ZERO, &meta_areas),
        origin,
    );
    vg.lvs.push(meta_lv);

    let mut extra = Section::new();
    extra.push("discards", Value::Str(spec.discards.as_lvm2().into()));
    if spec.zero_new_blocks {
        // lvm2 writes the key only when set.
        extra.push("zero_new_blocks", Value::Int(1));
    }
    let pool = origin.new_lv(
        name.clone(),
        true,
        spec.tags.clone(),
        vec![Segment {
            start_extent: Extents::ZERO,
            extent_count: data,
            kind: SegmentKind::ThinPool {
                metadata: tmeta,
                pool: tdata,
                transaction_id: 0,
                chunk_size: chunk,
            },
            tags: vec![],
            extra,
        }],
    );
    // lvm2 lists visible LVs first; the new pool goes before the hidden ones.
    let at = vg
        .lvs
        .iter()
        .position(|l| !l.is_visible())
        .unwrap_or(vg.lvs.len());
    vg.lvs.insert(at, pool);
    Ok(())
}

/// The VG's metadata spare made, or grown, to `meta` extents, so it can stand in for
/// the largest `_tmeta` (lvm2's `--poolmetadataspare y`, its default).
fn ensure_spare(vg: &mut VolumeGroup, meta: Extents, origin: &Origin) -> Result<()> {
    match vg.lv(PMSPARE).map(|s| s.extents()) {
        None => {
            let areas = allocate_linear(vg, meta)?;
            let spare = hidden_lv(
                PMSPARE.into(),
                linear_segments(vg, Extents::ZERO, &areas),
                origin,
            );
            vg.lvs.push(spare);
        }
        Some(have) if have < meta => {
            let areas = allocate_linear(vg, meta - have)?;
            let more = linear_segments(vg, have, &areas);
            let spare = vg.lv_mut(PMSPARE).expect("present");
            spare.segments.extend(more);
            super::segments::merge_adjacent(&mut spare.segments);
        }
        Some(_) => {}
    }
    Ok(())
}

fn pool_no_shrink(
    vg: &VolumeGroup,
    pool: &str,
    part: &str,
    current: Extents,
    target: Extents,
) -> LvmError {
    LvmError::LvUnsupported {
        vg: vg.name.clone(),
        lv: pool.into(),
        why: format!(
            "its {part} is {} extents and would shrink to {}; thin pools grow but never \
             shrink (dm-thin cannot)",
            current.0, target.0
        ),
    }
}

/// Grows thin pool `pool` as lvm2's `lvextend` does (see [`super::Edit::ResizeThinPool`]):
/// the data sub-LV extended (continuing its last run where it can) and the pool's
/// segment with it; the metadata sub-LV extended after the spare is grown to match.
/// What grew, for the description; `None` when both are already that size.
pub(super) fn resize_pool(
    vg: &mut VolumeGroup,
    pool: &str,
    data: Option<Bytes>,
    metadata: Option<Bytes>,
    origin: &Origin,
) -> Result<Option<String>> {
    let (tmeta, tdata, chunk) = match &pool_segment(vg, pool)?.kind {
        SegmentKind::ThinPool {
            metadata,
            pool,
            chunk_size,
            ..
        } => (metadata.clone(), pool.clone(), *chunk_size),
        _ => unreachable!("pool_segment returns pool segments"),
    };
    for sub in [&tdata, &tmeta] {
        let plain = vg.lv(sub).is_some_and(|l| {
            l.is_plain() && crate::model::Layout::of(l) == crate::model::Layout::Linear
        });
        if !plain {
            return Err(LvmError::LvUnsupported {
                vg: vg.name.clone(),
                lv: pool.into(),
                why: format!(
                    "its sub-LV {sub} is not a linear LV; lvmd grows pools whose data and \
                     metadata are linear (use lvm2)"
                ),
            });
        }
    }
    let extents_of = |vg: &VolumeGroup, lv: &str| vg.lv(lv).map_or(Extents::ZERO, |l| l.extents());
    let mut grew = Vec::new();
    if let Some(size) = data {
        let current = extents_of(vg, &tdata);
        let target = vg.extent_size.extents_ceil(size.to_sectors_ceil());
        if target < current {
            return Err(pool_no_shrink(vg, pool, "data", current, target));
        }
        let max = MAX_METADATA_SIZE.0 * chunk.0 * 512 / 64;
        if vg.extent_size.span(target).0 > max {
            return Err(invalid(
                "thin pool data size",
                size.0,
                format!(
                    "its chunk size {} addresses at most {} of data",
                    crate::units::human_bytes(chunk.to_bytes()),
                    crate::units::human_bytes(Sectors(max).to_bytes())
                ),
            ));
        }
        if target > current {
            super::edit::grow(vg, &tdata, target)?;
            pool_segment(vg, pool)?.extent_count = target;
            grew.push(format!("data to {} extents", target.0));
        }
    }
    if let Some(size) = metadata {
        let current = extents_of(vg, &tmeta);
        let target = vg.extent_size.extents_ceil(size.to_sectors_ceil());
        if target < current {
            return Err(pool_no_shrink(vg, pool, "metadata", current, target));
        }
        if vg.extent_size.span(target) > MAX_METADATA_SIZE {
            return Err(invalid(
                "thin pool metadata size",
                size.0,
                "must be at most 15.56GiB (dm-thin's bound)",
            ));
        }
        if target > current {
            ensure_spare(vg, target, origin)?;
            super::edit::grow(vg, &tmeta, target)?;
            grew.push(format!("metadata to {} extents", target.0));
        }
    }
    Ok((!grew.is_empty()).then(|| grew.join(", ")))
}

/// The pool segment of `pool`, or why it is none lvmd can change.
fn pool_segment<'a>(vg: &'a mut VolumeGroup, pool: &str) -> Result<&'a mut Segment> {
    let vg_name = vg.name.clone();
    let lv = vg.lv_mut(pool).ok_or_else(|| LvmError::LvNotFound {
        vg: vg_name.clone(),
        lv: pool.into(),
    })?;
    match lv.segments.as_mut_slice() {
        [seg @ Segment {
            kind: SegmentKind::ThinPool { .. },
            ..
        }] => Ok(seg),
        _ => Err(LvmError::LvUnsupported {
            vg: vg_name,
            lv: pool.into(),
            why: "not a thin pool".into(),
        }),
    }
}

/// The thin LVs of `pool` with their device ids.
pub fn thin_lvs<'a>(vg: &'a VolumeGroup, pool: &str) -> Vec<(&'a LogicalVolume, u64)> {
    vg.lvs
        .iter()
        .filter_map(|lv| match lv.segments.as_slice() {
            [Segment {
                kind:
                    SegmentKind::Thin {
                        thin_pool,
                        device_id,
                        ..
                    },
                ..
            }] if thin_pool == pool => Some((lv, *device_id)),
            _ => None,
        })
        .collect()
}

/// The origin of thin snapshot `name`; `None` for a plain thin LV (or none at all).
pub fn snapshot_origin<'a>(vg: &'a VolumeGroup, name: &str) -> Option<&'a str> {
    match vg.lv(name)?.segments.as_slice() {
        [Segment {
            kind: SegmentKind::Thin {
                origin: Some(o), ..
            },
            ..
        }] => Some(o),
        _ => None,
    }
}

/// The messages recorded in a pool's segment, in order.
pub fn pending_messages(seg: &Segment) -> Vec<PoolMessage> {
    seg.extra
        .sections()
        .filter(|(n, _)| n.starts_with("message"))
        .filter_map(|(_, body)| {
            if let Some(lv) = body.get_str("create") {
                Some(PoolMessage::Create(lv.into()))
            } else {
                body.get_int("delete")
                    .and_then(|i| u64::try_from(i).ok())
                    .map(PoolMessage::Delete)
            }
        })
        .collect()
}

/// Whether a message opens the commit's kernel transaction or joins the one an earlier
/// message of the same edit opened (a group of snapshots: one transaction, one commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transaction {
    Opens,
    Joins,
}

/// Records `msg` in the pool's segment and raises the pool's transaction id (lvm2's
/// `attach_pool_message`: once per commit, at its first message; later messages of
/// the same edit `Join` it and are numbered after it). One kernel transaction is in
/// flight at a time: while messages of an earlier commit are recorded (not yet known
/// sent), a new one is refused, since the kernel's transaction id could no longer tell
/// which were sent. Returns the transaction id before the raise (what a new thin LV
/// records, as lvm2).
fn attach_message(
    vg_name: &str,
    pool: &str,
    seg: &mut Segment,
    msg: PoolMessage,
    tx: Transaction,
) -> Result<u64> {
    let recorded = pending_messages(seg).len();
    if tx == Transaction::Joins {
        let SegmentKind::ThinPool { transaction_id, .. } = &seg.kind else {
            unreachable!("a pool segment")
        };
        let opened = *transaction_id - 1;
        assert!(
            recorded > 0,
            "a joining message follows the one that opened"
        );
        push_message(seg, recorded + 1, msg);
        return Ok(opened);
    }
    if recorded > 0 {
        return Err(LvmError::LvUnsupported {
            vg: vg_name.into(),
            lv: pool.into(),
            why: "its metadata still records thin-pool messages not yet known sent; \
                  they must reach the pool (activate it) before another thin volume is \
                  created or removed"
                .into(),
        });
    }
    let SegmentKind::ThinPool { transaction_id, .. } = &mut seg.kind else {
        unreachable!("a pool segment")
    };
    let before = *transaction_id;
    *transaction_id += 1;
    push_message(seg, 1, msg);
    Ok(before)
}

/// The `message<n>` section lvm2 writes for `msg` (numbered from 1 in a transaction).
fn push_message(seg: &mut Segment, n: usize, msg: PoolMessage) {
    let mut body = Section::new();
    match msg {
        PoolMessage::Create(lv) => body.push("create", Value::Str(lv)),
        PoolMessage::Delete(id) => body.push("delete", Value::Int(id as i64)),
    }
    seg.extra.push_section(&format!("message{n}"), body);
}

/// Adds thin LV `name` of `size` (rounded up to extents) in `pool`, with the lowest
/// device id above every thin LV of the pool (lvm2's `get_free_pool_device_id`), and
/// the `create` message recorded.
pub(super) fn create_thin(
    vg: &mut VolumeGroup,
    name: &str,
    pool: &str,
    size: Bytes,
    tags: &[String],
    origin: &Origin,
) -> Result<()> {
    super::edit::check_size(size)?;
    let extents = vg.extent_size.extents_ceil(size.to_sectors_ceil());
    let lv = NewThin {
        name,
        pool,
        extents,
        snapshot_of: None,
        read_only: false,
        activation_skip: false,
        tags,
    };
    add_thin(vg, &lv, origin, Transaction::Opens)
}

/// What [`add_thin`] makes.
struct NewThin<'a> {
    name: &'a str,
    pool: &'a str,
    extents: Extents,
    /// A thin snapshot's origin LV (a thin LV of the same pool).
    snapshot_of: Option<&'a str>,
    read_only: bool,
    activation_skip: bool,
    tags: &'a [String],
}

fn add_thin(vg: &mut VolumeGroup, new: &NewThin, origin: &Origin, tx: Transaction) -> Result<()> {
    let (name, pool) = (new.name, new.pool);
    check_new_name(vg, name)?;
    pool_segment(vg, pool)?;
    let device_id = thin_lvs(vg, pool)
        .iter()
        .map(|(_, id)| *id)
        .max()
        .unwrap_or(0)
        + 1;
    if device_id > MAX_DEVICE_ID {
        return Err(LvmError::LvUnsupported {
            vg: vg.name.clone(),
            lv: pool.into(),
            why: format!("no free thin device id (all up to {MAX_DEVICE_ID} used)"),
        });
    }
    let vg_name = vg.name.clone();
    let seg = pool_segment(vg, pool)?;
    // lvm2 records a snapshot's create as a thin LV's (`create = "<lv>"`) and tells
    // the two apart by the LV's origin when it sends it (`create_snap`).
    let transaction_id = attach_message(&vg_name, pool, seg, PoolMessage::Create(name.into()), tx)?;
    let mut lv = origin.new_lv(
        name.into(),
        true,
        new.tags.to_vec(),
        vec![Segment {
            start_extent: Extents::ZERO,
            extent_count: new.extents,
            kind: SegmentKind::Thin {
                thin_pool: pool.into(),
                transaction_id,
                device_id,
                origin: new.snapshot_of.map(Into::into),
            },
            tags: vec![],
            extra: Default::default(),
        }],
    );
    if new.read_only {
        // lvm2's `-pr`: no WRITE; the thin device is then made read-only.
        lv.status.retain(|s| s != "WRITE");
    }
    if new.activation_skip {
        // lvm2 (`activation/auto_set_activation_skip`, on by default) flags every thin
        // snapshot it makes so that `vgchange -ay`/`lvchange -ay` pass it by (`-K`
        // activates it); lvm2 writes the flag in `flags`, not `status`.
        lv.flags.push(ACTIVATION_SKIP.into());
    }
    let at = vg
        .lvs
        .iter()
        .position(|l| !l.is_visible())
        .unwrap_or(vg.lvs.len());
    vg.lvs.insert(at, lv);
    Ok(())
}

/// lvm2's flag for an LV that activation passes by unless asked with `-K`.
pub const ACTIVATION_SKIP: &str = "ACTIVATION_SKIP";

/// The pool and size of thin LV `name`, if it is one.
fn thin_of(vg: &VolumeGroup, name: &str) -> Option<(String, Extents)> {
    match vg.lv(name)?.segments.as_slice() {
        [Segment {
            kind: SegmentKind::Thin { thin_pool, .. },
            extent_count,
            ..
        }] => Some((thin_pool.clone(), *extent_count)),
        _ => None,
    }
}

/// A thin snapshot to make ([`create_snapshot`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot<'a> {
    pub name: &'a str,
    /// The origin: a visible thin LV.
    pub of: &'a str,
    pub read_only: bool,
    pub activation_skip: bool,
    /// At least the origin's size; `None`: the origin's.
    pub size: Option<Bytes>,
    pub tags: &'a [String],
}

/// Adds thin snapshot `snap.name` of thin LV `snap.of`, as `lvcreate -s <vg>/<of> -n
/// <name>` (`-pr` when read-only, `-kn` without activation skip) writes it: a thin LV
/// of the origin's pool and size with `origin = "<of>"`, a new device id, the pool's
/// transaction id raised, the `create` recorded (sent as `create_snap <id> <origin
/// id>`), flagged `ACTIVATION_SKIP` unless asked not to. A larger `size` is what
/// `lvextend` after it writes (the segment's length; a thin LV's blocks are the pool's).
/// `tx`: whether it opens the commit's pool transaction or joins a group's.
fn create_snapshot(
    vg: &mut VolumeGroup,
    snap: &Snapshot,
    origin: &Origin,
    tx: Transaction,
) -> Result<String> {
    let of = snap.of;
    let lv = vg.lv(of).ok_or_else(|| LvmError::LvNotFound {
        vg: vg.name.clone(),
        lv: of.into(),
    })?;
    let Some((pool, have)) = thin_of(vg, of).filter(|_| lv.is_visible()) else {
        return Err(LvmError::LvUnsupported {
            vg: vg.name.clone(),
            lv: of.into(),
            why: format!(
                "it is a {} volume; lvmd snapshots thin volumes only",
                lv.type_name()
            ),
        });
    };
    let extents = match snap.size {
        None => have,
        Some(size) => {
            let want = vg.extent_size.extents_ceil(size.to_sectors_ceil());
            if want < have {
                return Err(invalid(
                    "size",
                    size.0,
                    format!(
                        "a volume made from {of} ({} bytes) is at least as large as it",
                        vg.extent_size.span(have).to_bytes().0
                    ),
                ));
            }
            want
        }
    };
    let new = NewThin {
        name: snap.name,
        pool: &pool,
        extents,
        snapshot_of: Some(of),
        read_only: snap.read_only,
        activation_skip: snap.activation_skip,
        tags: snap.tags,
    };
    add_thin(vg, &new, origin, tx)?;
    Ok(pool)
}

/// Adds the thin snapshots `snaps` (one, or a group), each as [`create_snapshot`]
/// makes one, in one pool transaction: the pool's id raised once, every `create`
/// recorded (`message1`, `message2`, ... in order), so the kernel takes them all in
/// one transaction, with their origins suspended together (a group is a cut at one
/// instant). Every origin must be in the same pool (the first one's): a transaction
/// is one pool's.
pub(super) fn create_snapshots(
    vg: &mut VolumeGroup,
    snaps: &[Snapshot],
    origin: &Origin,
) -> Result<()> {
    let Some(first) = snaps.first() else {
        return Err(invalid(
            "snapshots",
            "[]",
            "a group has at least one snapshot",
        ));
    };
    let pool = create_snapshot(vg, first, origin, Transaction::Opens)?;
    for snap in &snaps[1..] {
        if let Some((other, _)) = thin_of(vg, snap.of).filter(|(p, _)| *p != pool) {
            return Err(LvmError::LvUnsupported {
                vg: vg.name.clone(),
                lv: snap.of.into(),
                why: format!(
                    "it is in thin pool {other}, the group's first origin {} in {pool}; a \
                     group's snapshots are one pool's transaction",
                    first.of
                ),
            });
        }
        create_snapshot(vg, snap, origin, Transaction::Joins)?;
    }
    Ok(())
}

/// Removes thin LV `name` (which nothing refers to) and records the `delete` of its
/// device id in its pool.
pub(super) fn remove_thin(vg: &mut VolumeGroup, name: &str) -> Result<()> {
    let lv = vg.lv(name).ok_or_else(|| LvmError::LvNotFound {
        vg: vg.name.clone(),
        lv: name.into(),
    })?;
    let (pool, device_id) = match lv.segments.as_slice() {
        [Segment {
            kind:
                SegmentKind::Thin {
                    thin_pool,
                    device_id,
                    ..
                },
            ..
        }] => (thin_pool.clone(), *device_id),
        _ => {
            return Err(LvmError::LvUnsupported {
                vg: vg.name.clone(),
                lv: name.into(),
                why: "not a thin volume".into(),
            })
        }
    };
    let vg_name = vg.name.clone();
    let seg = pool_segment(vg, &pool)?;
    attach_message(
        &vg_name,
        &pool,
        seg,
        PoolMessage::Delete(device_id),
        Transaction::Opens,
    )?;
    vg.lvs.retain(|l| l.name != name);
    // As lvm2's `detach_pool_lv`: the origin's snapshots stay, as plain thin LVs (their
    // blocks are their own in the pool's kernel metadata; only the name goes).
    for lv in &mut vg.lvs {
        for seg in &mut lv.segments {
            if let SegmentKind::Thin { origin, .. } = &mut seg.kind {
                if origin.as_deref() == Some(name) {
                    *origin = None;
                }
            }
        }
    }
    Ok(())
}

/// Drops the pool's recorded messages once the kernel's pool is at `transaction_id`
/// (all sent). Refused if the metadata moved on meanwhile.
pub(super) fn messages_sent(vg: &mut VolumeGroup, pool: &str, transaction_id: u64) -> Result<bool> {
    let vg_name = vg.name.clone();
    let seg = pool_segment(vg, pool)?;
    let SegmentKind::ThinPool {
        transaction_id: have,
        ..
    } = &seg.kind
    else {
        unreachable!("a pool segment")
    };
    if *have != transaction_id {
        return Err(LvmError::LvUnsupported {
            vg: vg_name,
            lv: pool.into(),
            why: format!(
                "its metadata is at transaction {have}, not {transaction_id} as the sent \
                 messages say"
            ),
        });
    }
    let before = seg.extra.items.len();
    seg.extra
        .items
        .retain(|i| !matches!(i, Item::Section { name, .. } if name.starts_with("message")));
    Ok(seg.extra.items.len() != before)
}

/// One thin-pool target message (dm-thin's `pool_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelMessage {
    /// `delete <id>`; an id the pool does not have (ENODATA) is already deleted.
    Delete(u64),
    CreateThin(u64),
    /// `create_snap <id> <origin id>`: a thin device sharing every block of the origin
    /// (which must not take writes meanwhile: suspended when active).
    CreateSnap {
        id: u64,
        origin: u64,
    },
    SetTransactionId {
        old: u64,
        new: u64,
    },
}

impl KernelMessage {
    /// The message text as the pool target takes it.
    pub fn text(&self) -> String {
        match self {
            KernelMessage::Delete(id) => format!("delete {id}"),
            KernelMessage::CreateThin(id) => format!("create_thin {id}"),
            KernelMessage::CreateSnap { id, origin } => format!("create_snap {id} {origin}"),
            KernelMessage::SetTransactionId { old, new } => {
                format!("set_transaction_id {old} {new}")
            }
        }
    }
}

/// What an active pool whose kernel metadata is at `kernel` needs so that it matches
/// the VG metadata (see the module's comment for the states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Catchup {
    /// Kernel and metadata agree, nothing recorded.
    InStep,
    /// The recorded messages reached the kernel already: only the record is dropped
    /// ([`Edit::ThinMessagesSent`](super::Edit::ThinMessagesSent) at `transaction_id`).
    Sent { transaction_id: u64 },
    /// Send these, in order, then drop the record at `transaction_id`.
    Send {
        messages: Vec<KernelMessage>,
        transaction_id: u64,
    },
}

/// The catch-up of pool `pool` of `vg` from kernel transaction `kernel`, or why the
/// two cannot be brought in step without an admin (the kernel ahead of the metadata,
/// or behind by more than the recorded transaction).
pub fn catchup(vg: &VolumeGroup, pool: &str, kernel: u64) -> std::result::Result<Catchup, String> {
    let lv = vg.lv(pool).ok_or_else(|| format!("no LV {pool}"))?;
    let [seg @ Segment {
        kind: SegmentKind::ThinPool { transaction_id, .. },
        ..
    }] = lv.segments.as_slice()
    else {
        return Err(format!("{pool} is not a thin pool"));
    };
    let meta = *transaction_id;
    let pending = pending_messages(seg);
    let mismatch = || {
        format!(
            "the kernel's pool is at transaction {kernel}, its metadata at {meta}{}",
            if pending.is_empty() {
                " with no messages recorded"
            } else {
                " with messages recorded for one transaction"
            }
        )
    };
    if kernel == meta {
        return Ok(if pending.is_empty() {
            Catchup::InStep
        } else {
            Catchup::Sent {
                transaction_id: meta,
            }
        });
    }
    if pending.is_empty() || kernel + 1 != meta {
        return Err(mismatch());
    }
    let mut messages = Vec::new();
    for m in &pending {
        match m {
            PoolMessage::Create(name) => {
                let thin_id = |lv: &str| {
                    thin_lvs(vg, pool)
                        .into_iter()
                        .find(|(l, _)| l.name == lv)
                        .map(|(_, id)| id)
                };
                let id = thin_id(name).ok_or_else(|| {
                    format!("a create message names {name}, no thin LV of {pool}")
                })?;
                // A device of this id at the old transaction can only be an earlier,
                // unfinished try of this very create: deleted first, so the new
                // volume never shows its blocks (nor, for a snapshot, stale ones).
                messages.push(KernelMessage::Delete(id));
                match snapshot_origin(vg, name) {
                    None => messages.push(KernelMessage::CreateThin(id)),
                    Some(of) => {
                        // One transaction at a time: the origin cannot have gone since
                        // (its removal would have been refused while this is recorded).
                        let origin = thin_id(of).ok_or_else(|| {
                            format!("snapshot {name}'s origin {of} is no thin LV of {pool}")
                        })?;
                        messages.push(KernelMessage::CreateSnap { id, origin });
                    }
                }
            }
            PoolMessage::Delete(id) => messages.push(KernelMessage::Delete(*id)),
        }
    }
    // Last: the kernel's id moves only once everything before it was taken.
    messages.push(KernelMessage::SetTransactionId {
        old: kernel,
        new: meta,
    });
    Ok(Catchup::Send {
        messages,
        transaction_id: meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn spec(chunk: Option<u64>, meta_mib: Option<u64>) -> ThinPoolSpec {
        ThinPoolSpec {
            name: "pool".into(),
            data_size: Bytes(MIB),
            chunk_size: chunk.map(Sectors),
            metadata_size: meta_mib.map(|m| Bytes(m * MIB)),
            zero_new_blocks: true,
            discards: PoolDiscards::Passdown,
            tags: vec![],
        }
    }

    fn gib(n: u64) -> Extents {
        Extents(n * 256)
    }

    #[test]
    fn metadata_and_chunk_sizes_are_lvm2s() {
        let es = ExtentSize::DEFAULT;
        // 64 bytes a 64 KiB chunk: 100 GiB of data takes 100 MiB of metadata.
        assert_eq!(
            spec(None, None).sizes(gib(100), es).unwrap(),
            (Sectors(128), Extents(25))
        );
        // Past 128 MiB lvm2 doubles the chunk instead: 1 TiB takes 512 KiB chunks
        // and 128 MiB.
        assert_eq!(
            spec(None, None).sizes(gib(1024), es).unwrap(),
            (Sectors(1024), Extents(32))
        );
        // Small pools get lvm2's 2 MiB minimum, a whole extent.
        assert_eq!(
            spec(None, None).sizes(Extents(5), es).unwrap(),
            (Sectors(128), Extents(1))
        );
        // A chunk size given is kept, the metadata follows it.
        assert_eq!(
            spec(Some(256), None).sizes(gib(100), es).unwrap(),
            (Sectors(256), Extents(13))
        );
        // A metadata size given is kept; the chunk follows it.
        assert_eq!(
            spec(None, Some(8)).sizes(gib(100), es).unwrap(),
            (Sectors(1664), Extents(2))
        );
        // A data size under one chunk, and a chunk that cannot address the data.
        assert!(spec(Some(2048), None).sizes(Extents(0), es).is_err());
    }

    #[test]
    fn bad_chunk_and_metadata_sizes_are_refused() {
        assert!(spec(Some(64), None).check().is_err());
        assert!(spec(Some(192), None).check().is_err());
        assert!(spec(Some(256), None).check().is_ok());
        assert!(spec(None, Some(1)).check().is_err());
        assert!(spec(None, Some(16 * 1024)).check().is_err());
    }

    fn vg_with_pool() -> VolumeGroup {
        use crate::lvm::edit::{add_pvs, apply, new_vg, Edit, NewPv};
        let mut vg = new_vg("vg", ExtentSize::DEFAULT);
        add_pvs(
            &mut vg,
            &[NewPv {
                id: crate::uuid::Uuid::random(),
                device: "/dev/x".into(),
                dev_size: Bytes(64 * MIB).to_sectors_floor(),
                pe_start: Sectors(2048),
            }],
        )
        .unwrap();
        let origin = Origin {
            host: "h".into(),
            time: 1,
            pv_block_sizes: Default::default(),
        };
        let mut s = spec(None, None);
        s.data_size = Bytes(8 * MIB);
        let vg = apply(&vg, &Edit::CreateThinPool(s), &origin).unwrap().vg;
        let thin = Edit::CreateThin {
            name: "t".into(),
            pool: "pool".into(),
            size: Bytes(MIB),
            tags: vec![],
        };
        apply(&vg, &thin, &origin).unwrap().vg
    }

    #[test]
    fn a_pool_grows_its_data_and_metadata_as_lvextend_and_never_shrinks() {
        use crate::lvm::edit::{apply, Edit};
        let vg = vg_with_pool();
        let origin = Origin {
            host: "h".into(),
            time: 2,
            pv_block_sizes: Default::default(),
        };
        let resize = |data: Option<u64>, metadata: Option<u64>| Edit::ResizeThinPool {
            pool: "pool".into(),
            data: data.map(|m| Bytes(m * MIB)),
            metadata: metadata.map(|m| Bytes(m * MIB)),
        };
        let extents = |vg: &VolumeGroup, lv: &str| vg.lv(lv).unwrap().extents().0;
        let free = vg.free_extents().0;
        // Data 8 -> 18 MiB: rounded up to 5 extents, the pool's segment with it; the data
        // run continues where it can (the metadata sits right after it here, so a
        // second run), and nothing else moves.
        let grown = apply(&vg, &resize(Some(18), None), &origin).unwrap();
        assert!(grown.changed);
        let g = &grown.vg;
        assert_eq!(extents(g, "pool_tdata"), 5);
        assert_eq!(g.lv("pool").unwrap().segments[0].extent_count.0, 5);
        assert_eq!(g.lv("pool").unwrap().extents().0, 5);
        assert_eq!(extents(g, "pool_tmeta"), 1);
        assert_eq!(extents(g, PMSPARE), 1);
        assert_eq!(g.free_extents().0, free - 3);
        assert_eq!(g.lv("t"), vg.lv("t"), "the thin LV is untouched");
        assert!(
            grown.description.contains("data to 5 extents"),
            "{}",
            grown.description
        );
        // Metadata 4 -> 12 MiB: the spare grows first, so it still covers the largest.
        let g = apply(g, &resize(None, Some(12)), &origin).unwrap().vg;
        assert_eq!(extents(&g, "pool_tmeta"), 3);
        assert_eq!(extents(&g, PMSPARE), 3);
        assert_eq!(g.free_extents().0, free - 3 - 4);
        // The same sizes again: nothing to do; smaller: refused, naming both sizes.
        assert!(
            !apply(&g, &resize(Some(20), Some(12)), &origin)
                .unwrap()
                .changed
        );
        let m = apply(&g, &resize(Some(8), None), &origin)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("data is 5 extents") && m.contains("shrink to 2"),
            "{m}"
        );
        let m = apply(&g, &resize(None, Some(4)), &origin)
            .unwrap_err()
            .to_string();
        assert!(m.contains("metadata"), "{m}");
        // More than the VG has: refused whole (the metadata part too, though it fits).
        let err = apply(&g, &resize(Some(1024), Some(16)), &origin).unwrap_err();
        assert!(matches!(err, LvmError::Alloc { .. }), "{err}");
        // Not a pool.
        let err = apply(
            &g,
            &Edit::ResizeThinPool {
                pool: "t".into(),
                data: Some(Bytes(64 * MIB)),
                metadata: None,
            },
            &origin,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a thin pool"), "{err}");
    }

    #[test]
    fn a_new_pool_clears_its_metadata_whole_and_a_thin_lv_nothing() {
        use crate::model::placement::{clear_on_create, freed_extents, PvSpan};
        let vg = vg_with_pool();
        // lvm2's order on the PV: spare, data, metadata.
        let start = |lv: &str| match &vg.lv(lv).unwrap().segments[0].kind {
            SegmentKind::Striped { stripes, .. } => stripes[0].start.0,
            _ => unreachable!(),
        };
        assert_eq!(
            (start(PMSPARE), start("pool_tdata"), start("pool_tmeta")),
            (0, 1, 3)
        );
        let pool = vg.lv("pool").unwrap();
        let edge = Sectors(2048);
        assert_eq!(
            clear_on_create(&vg, pool, edge).unwrap(),
            vec![PvSpan {
                pv: "pv0".into(),
                offset: Sectors(2048 + 3 * 8192),
                len: Sectors(8192),
            }]
        );
        let t = vg.lv("t").unwrap();
        assert!(clear_on_create(&vg, t, edge).unwrap().is_empty());
        assert!(freed_extents(&vg, t, Extents::ZERO).unwrap().is_empty());
        // A pool gives back its data and metadata (the spare stays the VG's).
        let freed: u64 = freed_extents(&vg, pool, Extents::ZERO)
            .unwrap()
            .iter()
            .map(|e| e.count.0)
            .sum();
        assert_eq!(freed, 3);
        assert!(freed_extents(&vg, pool, Extents(1)).is_err());
    }

    #[test]
    fn pending_messages_are_read_back_and_dropped_once_sent() {
        let mut vg = vg_with_pool();
        let seg = &vg.lv("pool").unwrap().segments[0];
        assert_eq!(pending_messages(seg), vec![PoolMessage::Create("t".into())]);
        assert!(messages_sent(&mut vg, "pool", 0).is_err());
        assert!(messages_sent(&mut vg, "pool", 1).unwrap());
        assert!(!messages_sent(&mut vg, "pool", 1).unwrap());
        remove_thin(&mut vg, "t").unwrap();
        let seg = &vg.lv("pool").unwrap().segments[0];
        assert_eq!(pending_messages(seg), vec![PoolMessage::Delete(1)]);
        assert!(matches!(
            seg.kind,
            SegmentKind::ThinPool {
                transaction_id: 2,
                ..
            }
        ));
    }

    #[test]
    fn catchup_replays_the_recorded_transaction_idempotently() {
        let mut vg = vg_with_pool();
        // Created, nothing sent: delete (a half-done try), create, then the id.
        assert_eq!(
            catchup(&vg, "pool", 0).unwrap(),
            Catchup::Send {
                messages: vec![
                    KernelMessage::Delete(1),
                    KernelMessage::CreateThin(1),
                    KernelMessage::SetTransactionId { old: 0, new: 1 },
                ],
                transaction_id: 1,
            }
        );
        // All sent, the record not yet dropped (killed before the second commit).
        assert_eq!(
            catchup(&vg, "pool", 1).unwrap(),
            Catchup::Sent { transaction_id: 1 }
        );
        // The kernel ahead of the metadata (lvm2 killed between message and commit) is
        // no state lvmd makes: refused, named.
        assert!(catchup(&vg, "pool", 2)
            .unwrap_err()
            .contains("at transaction 2"));
        messages_sent(&mut vg, "pool", 1).unwrap();
        assert_eq!(catchup(&vg, "pool", 1).unwrap(), Catchup::InStep);
        assert!(catchup(&vg, "pool", 0).is_err());
        remove_thin(&mut vg, "t").unwrap();
        assert_eq!(
            catchup(&vg, "pool", 1).unwrap(),
            Catchup::Send {
                messages: vec![
                    KernelMessage::Delete(1),
                    KernelMessage::SetTransactionId { old: 1, new: 2 },
                ],
                transaction_id: 2,
            }
        );
        assert_eq!(KernelMessage::CreateThin(7).text(), "create_thin 7");
    }

    #[test]
    fn a_snapshot_is_lvm2s_layout_sent_as_create_snap_and_outlives_its_origin() {
        use crate::lvm::edit::{apply, Edit};
        let origin = Origin {
            host: "h".into(),
            time: 2,
            pv_block_sizes: Default::default(),
        };
        let mut vg = vg_with_pool();
        messages_sent(&mut vg, "pool", 1).unwrap();
        let snap = |name: &str, of: &str| Edit::CreateThinSnapshot {
            name: name.into(),
            origin: of.into(),
            read_only: true,
            activation_skip: true,
            size: None,
            tags: vec!["x".into()],
        };
        let e = apply(&vg, &snap("s", "t"), &origin).unwrap();
        assert_eq!(e.description, "lvcreate -s vg/t -n s");
        let mut vg = e.vg;
        let s = vg.lv("s").unwrap();
        assert_eq!(s.flags, vec![ACTIVATION_SKIP.to_owned()]);
        assert_eq!(s.status, vec!["READ".to_owned(), "VISIBLE".to_owned()]);
        assert_eq!(s.extents(), vg.lv("t").unwrap().extents());
        assert_eq!(
            s.segments[0].kind,
            SegmentKind::Thin {
                thin_pool: "pool".into(),
                transaction_id: 1,
                device_id: 2,
                origin: Some("t".into()),
            }
        );
        let seg = &vg.lv("pool").unwrap().segments[0];
        assert_eq!(pending_messages(seg), vec![PoolMessage::Create("s".into())]);
        // Sent as a snapshot of the origin's id, after a delete of a half-done try.
        assert_eq!(
            catchup(&vg, "pool", 1).unwrap(),
            Catchup::Send {
                messages: vec![
                    KernelMessage::Delete(2),
                    KernelMessage::CreateSnap { id: 2, origin: 1 },
                    KernelMessage::SetTransactionId { old: 1, new: 2 },
                ],
                transaction_id: 2,
            }
        );
        assert_eq!(
            KernelMessage::CreateSnap { id: 2, origin: 1 }.text(),
            "create_snap 2 1"
        );
        // One transaction at a time; then the origin goes, its snapshot stays plain.
        assert!(apply(&vg, &snap("s2", "t"), &origin).is_err());
        messages_sent(&mut vg, "pool", 2).unwrap();
        // Only thin volumes are snapshotted; names are checked.
        let m = apply(&vg, &snap("s3", "pool"), &origin)
            .unwrap_err()
            .to_string();
        assert!(m.contains("thin-pool") && m.contains("pool"), "{m}");
        assert!(apply(&vg, &snap("s3", "nope"), &origin).is_err());
        assert!(apply(&vg, &snap("s", "t"), &origin).is_err());
        // A volume made from it: writable, no activation skip, grown; never smaller.
        let restore = |size: u64| Edit::CreateThinSnapshot {
            name: "r".into(),
            origin: "s".into(),
            read_only: false,
            activation_skip: false,
            size: Some(Bytes(size * MIB)),
            tags: vec![],
        };
        let m = apply(&vg, &restore(0), &origin).unwrap_err().to_string();
        assert!(m.contains("size"), "{m}");
        // The origin is one 4 MiB extent: 5 MiB takes two.
        let r = apply(&vg, &restore(5), &origin).unwrap().vg;
        let r = r.lv("r").unwrap();
        assert!(r.flags.is_empty() && r.status.contains(&"WRITE".to_owned()));
        assert_eq!(r.extents(), crate::units::Extents(2));
        assert!(
            matches!(&r.segments[0].kind, SegmentKind::Thin { origin: Some(o), .. } if o == "s")
        );
        let vg = apply(&vg, &Edit::RemoveThin { lv: "t".into() }, &origin)
            .unwrap()
            .vg;
        assert!(vg.lv("t").is_none());
        assert!(matches!(
            vg.lv("s").unwrap().segments[0].kind,
            SegmentKind::Thin {
                origin: None,
                device_id: 2,
                ..
            }
        ));
        assert_eq!(
            pending_messages(&vg.lv("pool").unwrap().segments[0]),
            vec![PoolMessage::Delete(1)]
        );
    }

    #[test]
    fn a_group_of_snapshots_is_one_transaction_of_one_pool() {
        use crate::lvm::edit::{apply, Edit, GroupSnapshot};
        let origin = Origin {
            host: "h".into(),
            time: 2,
            pv_block_sizes: Default::default(),
        };
        let mut vg = vg_with_pool();
        messages_sent(&mut vg, "pool", 1).unwrap();
        let thin = |name: &str, pool: &str| Edit::CreateThin {
            name: name.into(),
            pool: pool.into(),
            size: Bytes(MIB),
            tags: vec![],
        };
        let mut vg = apply(&vg, &thin("u", "pool"), &origin).unwrap().vg;
        messages_sent(&mut vg, "pool", 2).unwrap();
        let member = |name: &str, of: &str| GroupSnapshot {
            name: name.into(),
            origin: of.into(),
            tags: vec!["g".into()],
        };
        let group = |m: Vec<GroupSnapshot>| Edit::CreateThinSnapshotGroup { snapshots: m };
        let e = apply(
            &vg,
            &group(vec![member("st", "t"), member("su", "u")]),
            &origin,
        )
        .unwrap();
        assert!(
            e.description.contains("vg/t -n st, vg/u -n su"),
            "{}",
            e.description
        );
        let g = &e.vg;
        // Both as a single snapshot's layout, at the transaction before the one raise.
        for (name, id, of) in [("st", 3, "t"), ("su", 4, "u")] {
            let lv = g.lv(name).unwrap();
            assert_eq!(lv.flags, vec![ACTIVATION_SKIP.to_owned()]);
            assert!(!lv.status.contains(&"WRITE".to_owned()));
            assert_eq!(
                lv.segments[0].kind,
                SegmentKind::Thin {
                    thin_pool: "pool".into(),
                    transaction_id: 2,
                    device_id: id,
                    origin: Some(of.into()),
                }
            );
        }
        let seg = &g.lv("pool").unwrap().segments[0];
        assert!(matches!(
            seg.kind,
            SegmentKind::ThinPool {
                transaction_id: 3,
                ..
            }
        ));
        let names: Vec<&str> = seg.extra.sections().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["message1", "message2"]);
        assert_eq!(
            catchup(g, "pool", 2).unwrap(),
            Catchup::Send {
                messages: vec![
                    KernelMessage::Delete(3),
                    KernelMessage::CreateSnap { id: 3, origin: 1 },
                    KernelMessage::Delete(4),
                    KernelMessage::CreateSnap { id: 4, origin: 2 },
                    KernelMessage::SetTransactionId { old: 2, new: 3 },
                ],
                transaction_id: 3,
            }
        );
        // Refused whole: one transaction at a time, an empty group, a name twice.
        assert!(apply(g, &group(vec![member("x", "t")]), &origin).is_err());
        assert!(apply(&vg, &group(vec![]), &origin).is_err());
        assert!(apply(
            &vg,
            &group(vec![member("x", "t"), member("x", "u")]),
            &origin
        )
        .is_err());

        // An origin of another pool: refused naming it and both pools.
        let mut p2 = spec(None, None);
        p2.name = "pool2".into();
        p2.data_size = Bytes(4 * MIB);
        let mut vg = apply(&vg, &Edit::CreateThinPool(p2), &origin).unwrap().vg;
        vg = apply(&vg, &thin("w", "pool2"), &origin).unwrap().vg;
        messages_sent(&mut vg, "pool2", 1).unwrap();
        let err = apply(
            &vg,
            &group(vec![member("st", "t"), member("sw", "w")]),
            &origin,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("w") && err.contains("pool2") && err.contains("in pool"),
            "{err}"
        );
    }
}
