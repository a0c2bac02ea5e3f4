//! raid1 LVs as lvm2 lays them out: the visible LV has one `raid1` segment naming its
//! legs, and each leg is two hidden linear sub-LVs on one PV of its own, a one-extent
//! metadata area `<lv>_rmeta_N` (dm-raid's superblock and write-intent bitmap) and the
//! data copy `<lv>_rimage_N`. The edits here keep the legs with their LV: created,
//! renamed and removed together.

use super::edit::{BlockSizes, Origin};
use super::segments::linear_segments;
use super::{LvmError, Result};
use crate::alloc::{self, Allocation};
use crate::format::text::{Section, Value};
use crate::model::layout::integrity_meta_extents;
use crate::model::name::check_dm_name;
use crate::model::{Layout, LogicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::units::{Extents, Sectors};

/// Extents of each leg's metadata sub-LV (lvm2's: one extent).
pub(super) const META_EXTENTS: Extents = Extents(1);

pub(super) fn meta_name(lv: &str, leg: usize) -> String {
    format!("{lv}_rmeta_{leg}")
}

pub(super) fn image_name(lv: &str, leg: usize) -> String {
    format!("{lv}_rimage_{leg}")
}

/// The sub-LV names of a raid1 LV, as its segment lists them (metadata, image per leg).
pub(super) fn legs_of(lv: &LogicalVolume) -> Option<&[(String, String)]> {
    match lv.segments.as_slice() {
        [Segment {
            kind: SegmentKind::Raid1 { legs, .. },
            ..
        }] => Some(legs),
        _ => None,
    }
}

/// The first leg sub-LV of raid1 LV `lv` that is not plain, with its type
/// (`integrity` for lvm2's `--raidintegrity` mirrors).
pub(super) fn layered_leg<'a>(
    vg: &'a VolumeGroup,
    lv: &LogicalVolume,
) -> Option<(&'a str, &'a str)> {
    legs_of(lv)?
        .iter()
        .flat_map(|(m, i)| [m, i])
        .filter_map(|n| vg.lv(n))
        .find(|sub| !sub.is_plain())
        .map(|sub| (sub.name.as_str(), sub.type_name()))
}

/// Adds a raid1 LV of `extents` per leg, with its legs' sub-LVs, as lvm2's
/// `lvcreate --type raid1 -m mirrors -R region_size [--raidintegrity y]` writes it.
pub(super) fn create(
    vg: &mut VolumeGroup,
    name: &str,
    extents: Extents,
    layout: Layout,
    tags: &[String],
    origin: &Origin,
) -> Result<()> {
    let Layout::Raid1 {
        mirrors,
        region_size,
        integrity,
    } = layout
    else {
        unreachable!("raid1 layout")
    };
    let legs = (mirrors + 1) as usize;
    let imeta_extents = if integrity {
        integrity_meta_extents(extents, vg.extent_size)
    } else {
        Extents::ZERO
    };
    for leg in 0..legs {
        let mut names = vec![meta_name(name, leg), image_name(name, leg)];
        if integrity {
            names.extend([iorig_name(name, leg), imeta_name(name, leg)]);
        }
        for sub in names {
            check_dm_name(&vg.name, &sub)?;
            if vg.lv(&sub).is_some() {
                return Err(LvmError::LvExists {
                    vg: vg.name.clone(),
                    lv: sub,
                });
            }
        }
    }
    // Each leg on one PV of its own: its metadata, its data and (with integrity) the
    // integrity metadata, so losing a PV costs one copy and its checksums together.
    let req = alloc::Request {
        extents: META_EXTENTS + extents + imeta_extents,
        shape: layout.shape(),
        pvs_allowed: None,
        after: None,
    };
    let allocation =
        alloc::allocate(&super::edit::pv_spaces(vg), &req).map_err(|source| LvmError::Alloc {
            vg: vg.name.clone(),
            source,
        })?;
    let Allocation::Mirrored { legs: placed } = allocation else {
        unreachable!("a mirrored allocation")
    };
    // lvm2 picks the integrity block size from the devices the legs landed on.
    let block_size = if integrity {
        let pvs: Vec<usize> = placed.iter().flatten().map(|a| a.pv).collect();
        Some(integrity_block_size(vg, name, &pvs, origin)?)
    } else {
        None
    };
    let sub_lv = |name: String, segments| origin.new_lv(name, false, vec![], segments);
    let mut subs = Vec::with_capacity(legs * 2);
    let mut layers = Vec::new();
    let mut leg_names = Vec::with_capacity(legs);
    for (leg, areas) in placed.iter().enumerate() {
        // The leg's first extent is its metadata area, then its image (lvm2 puts the
        // metadata right before the image, on the same PV), then the integrity
        // metadata (lvm2 allocates it after the raid, on the image's PV).
        let (meta, rest) = split_areas(areas, META_EXTENTS);
        let (data, imeta) = split_areas(&rest, extents);
        let (m, i) = (meta_name(name, leg), image_name(name, leg));
        let data_segments = linear_segments(vg, Extents::ZERO, &data);
        if let Some(block_size) = block_size {
            let (orig, imeta_lv) = (iorig_name(name, leg), imeta_name(name, leg));
            let image = Segment {
                start_extent: Extents::ZERO,
                extent_count: extents,
                kind: SegmentKind::Other {
                    type_name: INTEGRITY.into(),
                    body: integrity_body(
                        &orig,
                        &imeta_lv,
                        vg.extent_size.span(extents),
                        block_size,
                    ),
                },
                tags: vec![],
                extra: Default::default(),
            };
            subs.push(sub_lv(i.clone(), vec![image]));
            let mut imeta_sub = sub_lv(imeta_lv, linear_segments(vg, Extents::ZERO, &imeta));
            // lvm2 makes the integrity metadata with no read-ahead.
            imeta_sub.extra.push("read_ahead", Value::Int(-1));
            layers.push((imeta_sub, sub_lv(orig, data_segments)));
        } else {
            subs.push(sub_lv(i.clone(), data_segments));
        }
        subs.push(sub_lv(m.clone(), linear_segments(vg, Extents::ZERO, &meta)));
        leg_names.push((m, i));
    }
    let lv = origin.new_lv(
        name.into(),
        true,
        tags.to_vec(),
        vec![Segment {
            start_extent: Extents::ZERO,
            extent_count: extents,
            kind: SegmentKind::Raid1 {
                region_size: Some(region_size),
                legs: leg_names,
            },
            tags: vec![],
            extra: Default::default(),
        }],
    );
    // lvm2's order: the LV, then per leg its image and its metadata, then (integrity)
    // every leg's `_imeta`, then every leg's `_iorig`.
    vg.lvs.push(lv);
    vg.lvs.extend(subs);
    let (imetas, origs): (Vec<_>, Vec<_>) = layers.into_iter().unzip();
    vg.lvs.extend(imetas);
    vg.lvs.extend(origs);
    Ok(())
}

/// lvm2's segment type of a raid image with dm-integrity under it.
pub(super) const INTEGRITY: &str = "integrity";

/// The integrity segment body lvm2 writes for a new raid image of `data` sectors:
/// journal mode, 4-byte crc32c tags per 512-byte block, metadata on `imeta`, and
/// `recalculate = 1` until the first activation has started the kernel computing the
/// tags of what the data sub-LV holds (lvm2 clears it in a commit right after that
/// activation; lvmd's [`clear_first_load`] does the same).
///
/// The block size is [`integrity_block_size`]'s.
fn integrity_body(iorig: &str, imeta: &str, data: Sectors, block_size: u32) -> Section {
    let mut b = Section::new();
    b.push("origin", Value::Str(iorig.into()));
    b.push("data_sectors", Value::Int(data.0 as i64));
    b.push("mode", Value::Str("J".into()));
    b.push("tag_size", Value::Int(4));
    b.push("block_size", Value::Int(i64::from(block_size)));
    b.push("internal_hash", Value::Str("crc32c".into()));
    b.push("meta_dev", Value::Str(imeta.into()));
    b.push(RECALCULATE, Value::Int(1));
    b
}

/// The integrity block size lvm2's lvcreate picks for a new mirror whose legs are on
/// PVs `pvs` (indexes in `vg.pvs`), from their devices' block sizes (`origin`):
/// 4096 when their logical blocks are 4 KiB (dm-integrity cannot use a smaller one
/// there), or when every one of them has 512-byte logical and 4 KiB physical blocks;
/// 512 otherwise, also for devices whose sizes are not known. Devices that mix 512 and
/// 4096 logical blocks are refused, as lvm2 refuses them.
pub(super) fn integrity_block_size(
    vg: &VolumeGroup,
    lv: &str,
    pvs: &[usize],
    origin: &Origin,
) -> Result<u32> {
    let sizes: Vec<(&str, BlockSizes)> = pvs
        .iter()
        .filter_map(|&p| {
            let pv = &vg.pvs[p];
            origin
                .pv_block_sizes
                .get(&pv.id)
                .map(|s| (pv.name.as_str(), *s))
        })
        .collect();
    let lbs = |n: u32| sizes.iter().filter(|(_, s)| s.logical == n).count();
    let pbs = |n: u32| sizes.iter().filter(|(_, s)| s.physical == n).count();
    if lbs(4096) > 0 && lbs(512) > 0 {
        let each: Vec<String> = sizes
            .iter()
            .map(|(pv, s)| format!("{pv}: {}", s.logical))
            .collect();
        return Err(LvmError::InvalidArgument {
            what: "integrity",
            value: format!("{}/{lv}", vg.name),
            why: format!(
                "its legs' PVs mix logical block sizes ({}); dm-integrity needs one, as \
                 lvm2 says",
                each.join(", ")
            ),
        });
    }
    Ok(
        if lbs(4096) > 0 || (lbs(512) > 0 && pbs(4096) > 0 && pbs(512) == 0) {
            4096
        } else {
            512
        },
    )
}

/// Refuses a new leg for raid1 LV `lv` on PVs `pvs` whose logical blocks are larger
/// than the mirror's integrity block size `block_size` (lvm2's lvconvert refuses
/// them: dm-integrity cannot address a device in units smaller than its sectors).
pub(super) fn check_leg_block_size(
    vg: &VolumeGroup,
    lv: &str,
    pvs: &[usize],
    block_size: u32,
    origin: &Origin,
) -> Result<()> {
    for &p in pvs {
        let pv = &vg.pvs[p];
        if let Some(s) = origin.pv_block_sizes.get(&pv.id) {
            if s.logical > block_size {
                return Err(LvmError::InvalidArgument {
                    what: "physical volume",
                    value: pv.name.clone(),
                    why: format!(
                        "has {}-byte logical blocks, larger than the integrity block size \
                         {block_size} of {}/{lv}'s legs",
                        s.logical, vg.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The integrity key that asks the next load for the kernel's recalculation.
pub(super) const RECALCULATE: &str = "recalculate";

pub(super) fn iorig_name(lv: &str, leg: usize) -> String {
    format!("{lv}_rimage_{leg}_iorig")
}

pub(super) fn imeta_name(lv: &str, leg: usize) -> String {
    format!("{lv}_rimage_{leg}_imeta")
}

/// The (`_iorig`, `_imeta`) sub-LVs of raid image `image` when it is an integrity
/// layer as lvm2 makes one (one integrity segment over two plain LVs of the VG).
pub(super) fn integrity_subs(vg: &VolumeGroup, image: &LogicalVolume) -> Option<(String, String)> {
    let (origin, meta) = image.integrity_layer()?;
    [origin, meta]
        .iter()
        .all(|n| vg.lv(n).is_some_and(LogicalVolume::is_plain))
        .then(|| (origin.to_owned(), meta.to_owned()))
}

/// Every sub-LV of raid1 LV `lv_name` when its legs are all there: each leg's
/// metadata and image, and with integrity the image's `_iorig` and `_imeta` (what a
/// removal takes with it). `None` when a leg is missing or has a layer lvmd does not
/// know.
pub(super) fn all_sub_lvs(vg: &VolumeGroup, lv_name: &str) -> Option<Vec<String>> {
    let legs = legs_of(vg.lv(lv_name)?)?;
    let mut out = Vec::with_capacity(legs.len() * 4);
    for (m, i) in legs {
        if !vg.lv(m).is_some_and(LogicalVolume::is_plain) {
            return None;
        }
        let image = vg.lv(i)?;
        out.extend([m.clone(), i.clone()]);
        if !image.is_plain() {
            let (orig, meta) = integrity_subs(vg, image)?;
            out.extend([orig, meta]);
        }
    }
    Some(out)
}

/// The first `n` extents of `areas`, and the rest.
pub(super) fn split_areas(
    areas: &[alloc::Area],
    n: Extents,
) -> (Vec<alloc::Area>, Vec<alloc::Area>) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    let mut left = n;
    for a in areas {
        if left == Extents::ZERO {
            tail.push(*a);
            continue;
        }
        let take = Extents(a.count.0.min(left.0));
        head.push(alloc::Area { count: take, ..*a });
        left -= take;
        if take < a.count {
            tail.push(alloc::Area {
                pv: a.pv,
                start: a.start + take,
                count: a.count - take,
            });
        }
    }
    (head, tail)
}

/// Renames the sub-LVs of raid1 LV `new` (just renamed) after it, and the names its
/// segment lists, as lvm2's lvrename does.
pub(super) fn rename_legs(vg: &mut VolumeGroup, new: &str) -> Result<()> {
    let Some(legs) = vg.lv(new).and_then(legs_of).map(<[_]>::to_vec) else {
        return Ok(());
    };
    // A layer other than lvm2's integrity would keep sub-LVs under the old name.
    let layers: Vec<Option<(String, String)>> = legs
        .iter()
        .map(|(_, i)| vg.lv(i).and_then(|image| integrity_subs(vg, image)))
        .collect();
    if all_sub_lvs(vg, new).is_none() {
        if let Some((sub, kind)) = layered_leg(vg, vg.lv(new).expect("checked")) {
            return Err(LvmError::LvUnsupported {
                vg: vg.name.clone(),
                lv: new.into(),
                why: layered_why(sub, kind),
            });
        }
    }
    let mut renamed = Vec::with_capacity(legs.len());
    for (leg, ((m, i), layer)) in legs.iter().zip(&layers).enumerate() {
        let pair = (meta_name(new, leg), image_name(new, leg));
        let mut moves = vec![(m.clone(), pair.0.clone()), (i.clone(), pair.1.clone())];
        if let Some((orig, imeta)) = layer {
            moves.push((orig.clone(), iorig_name(new, leg)));
            moves.push((imeta.clone(), imeta_name(new, leg)));
        }
        for (from, to) in &moves {
            check_dm_name(&vg.name, to)?;
            if vg.lv(to).is_some() {
                return Err(LvmError::LvExists {
                    vg: vg.name.clone(),
                    lv: to.clone(),
                });
            }
            if let Some(sub) = vg.lv_mut(from) {
                sub.name = to.clone();
            }
        }
        if layer.is_some() {
            // The image's integrity segment names its layers.
            let image = vg.lv_mut(&pair.1).expect("renamed above");
            if let SegmentKind::Other { body, .. } = &mut image.segments[0].kind {
                body.set("origin", Value::Str(iorig_name(new, leg)));
                body.set("meta_dev", Value::Str(imeta_name(new, leg)));
            }
        }
        renamed.push(pair);
    }
    let lv = vg.lv_mut(new).expect("renamed above");
    if let SegmentKind::Raid1 { legs, .. } = &mut lv.segments[0].kind {
        *legs = renamed;
    }
    Ok(())
}

/// The PVs (by index in `vg.pvs`) a leg's metadata and image sub-LVs sit on.
pub(super) fn leg_pvs(vg: &VolumeGroup, leg: &(String, String)) -> Vec<usize> {
    let mut out = Vec::new();
    // An integrity image's extents are its layers'.
    let layers = vg
        .lv(&leg.1)
        .and_then(|image| integrity_subs(vg, image))
        .map(|(orig, imeta)| vec![orig, imeta])
        .unwrap_or_default();
    for sub in [&leg.0, &leg.1].into_iter().chain(&layers) {
        for seg in vg
            .lv(sub)
            .map(|l| l.segments.as_slice())
            .unwrap_or_default()
        {
            if let SegmentKind::Striped { stripes, .. } = &seg.kind {
                for a in stripes {
                    out.extend(vg.pvs.iter().position(|p| p.name == a.name));
                }
            }
        }
    }
    out
}

/// lvm2's per-sub-LV flag asking dm-raid to rebuild the leg (`rebuild N`).
pub(super) const REBUILD: &str = "REBUILD";

/// Replaces legs `replace` of raid1 LV `lv_name` as `lvconvert --repair` does: each
/// leg's `_rmeta_N` (one extent) and `_rimage_N` (the LV's extents) move, under
/// their names and ids, to a PV that no other leg uses, that is not missing and not
/// in `avoid`, metadata first, then the image, as lvm2 allocates a new leg; both are
/// flagged `REBUILD`, which the raid table passes on (`rebuild N`), so dm-raid copies
/// the whole leg from the others. The old extents go free (the missing PV's too:
/// `vgreduce --removemissing` then has nothing of this LV to take).
pub(super) fn repair(
    vg: &mut VolumeGroup,
    lv_name: &str,
    replace: &[usize],
    avoid: &[String],
    origin: &Origin,
) -> Result<()> {
    let lv = vg.lv(lv_name).expect("caller checked").clone();
    let vg_name = vg.name.clone();
    let unsupported = |why: String| LvmError::LvUnsupported {
        vg: vg_name.clone(),
        lv: lv_name.into(),
        why,
    };
    let Some(legs) = legs_of(&lv).map(<[_]>::to_vec) else {
        return Err(unsupported(format!(
            "it is a {} volume; only raid1 legs are repaired",
            lv.type_name()
        )));
    };
    // lvm2's integrity layer moves with its leg; any other layer is refused.
    if all_sub_lvs(vg, lv_name).is_none() {
        if let Some((sub, kind)) = layered_leg(vg, &lv) {
            return Err(unsupported(layered_why(sub, kind)));
        }
    }
    if replace.is_empty() {
        return Err(unsupported("no leg to repair was named".into()));
    }
    if replace.len() >= legs.len() {
        return Err(unsupported(format!(
            "all its {} legs would be replaced: no copy is left to rebuild them from",
            legs.len()
        )));
    }
    let extents = lv.extents();
    for &i in replace {
        let Some(leg) = legs.get(i) else {
            return Err(unsupported(format!(
                "it has {} legs, no leg {i}",
                legs.len()
            )));
        };
        for sub in [&leg.0, &leg.1] {
            if vg.lv(sub).is_none() {
                return Err(unsupported(format!("its raid1 leg {sub} is not in the VG")));
            }
        }
        // Every other leg's PVs as they are now (a leg replaced before this one
        // counts at its new place), and this leg's old ones.
        let mut taken: Vec<usize> = legs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, l)| leg_pvs(vg, l))
            .collect();
        taken.extend(leg_pvs(vg, leg));
        let allowed: Vec<usize> = vg
            .pvs
            .iter()
            .enumerate()
            .filter(|(p, pv)| !taken.contains(p) && !pv.is_missing() && !avoid.contains(&pv.name))
            .map(|(p, _)| p)
            .collect();
        // With integrity, the leg's integrity metadata moves too, after its data (as
        // lvm2 lays out a new leg): a new, zeroed `_imeta` whose tags the next load
        // computes (`recalculate`), then dm-raid rebuilds the data over it.
        let layer = vg.lv(&leg.1).and_then(|image| integrity_subs(vg, image));
        let imeta_extents = if layer.is_some() {
            integrity_meta_extents(extents, vg.extent_size)
        } else {
            Extents::ZERO
        };
        let req = alloc::Request {
            extents: META_EXTENTS + extents + imeta_extents,
            shape: alloc::Shape::Linear,
            pvs_allowed: Some(allowed),
            after: None,
        };
        let areas = allocate_linear(vg, &req)?;
        // An integrity leg keeps its block size: the new PV must be able to take it.
        if let Some(block_size) = vg.lv(&leg.1).filter(|_| layer.is_some()).and_then(|image| {
            match &image.segments[0].kind {
                SegmentKind::Other { body, .. } => body.get_int("block_size"),
                _ => None,
            }
        }) {
            let on: Vec<usize> = areas.iter().map(|a| a.pv).collect();
            check_leg_block_size(vg, lv_name, &on, block_size as u32, origin)?;
        }
        let (meta, rest) = split_areas(&areas, META_EXTENTS);
        let (data, imeta) = split_areas(&rest, extents);
        let mut moves = vec![(leg.0.clone(), meta)];
        match &layer {
            Some((orig, imeta_lv)) => {
                moves.push((orig.clone(), data));
                moves.push((imeta_lv.clone(), imeta));
            }
            None => moves.push((leg.1.clone(), data)),
        }
        for (sub, areas) in moves {
            let segments = linear_segments(vg, Extents::ZERO, &areas);
            vg.lv_mut(&sub).expect("checked above").segments = segments;
        }
        // lvm2 reads the rebuild flag off the image (and sets it on both).
        for sub in [&leg.0, &leg.1] {
            let l = vg.lv_mut(sub).expect("checked above");
            if !l.status.iter().any(|s| s == REBUILD) {
                l.status.push(REBUILD.into());
            }
            if layer.is_some() && sub == &leg.1 {
                if let SegmentKind::Other { body, .. } = &mut l.segments[0].kind {
                    body.set(RECALCULATE, Value::Int(1));
                }
            }
        }
    }
    Ok(())
}

/// Why lvmd does not change a mirror whose leg `sub` is a `kind` layer.
pub(super) fn layered_why(sub: &str, kind: &str) -> String {
    format!(
        "its leg {sub} is a {kind} layer that is not lvm2's integrity layer over two \
         linear sub-LVs of the VG (_iorig, _imeta); lvmd changes raid1 legs that are linear \
         or such a layer (use lvm2)"
    )
}

/// Drops what raid1 LV `lv_name`'s metadata asks of the next load only, once the
/// kernel has taken it: its sub-LVs' `REBUILD` flags and its integrity images'
/// `recalculate` (lvm2 drops both in a commit after that load, so later loads neither
/// rebuild a leg again nor restart the tags' recalculation); `false`: none was there.
pub(super) fn clear_first_load(vg: &mut VolumeGroup, lv_name: &str) -> bool {
    let Some(subs) = all_sub_lvs(vg, lv_name) else {
        return false;
    };
    let mut changed = false;
    for sub in subs {
        let l = vg.lv_mut(&sub).expect("all_sub_lvs checked");
        let before = l.status.len();
        l.status.retain(|s| s != REBUILD);
        changed |= l.status.len() != before;
        for seg in &mut l.segments {
            if let SegmentKind::Other { type_name, body } = &mut seg.kind {
                if type_name == INTEGRITY {
                    changed |= body.remove(RECALCULATE);
                }
            }
        }
    }
    changed
}

/// Grows raid1 LV `lv_name` to `target` extents per leg, as lvm2's `lvextend` does for
/// raid1: every `_rimage_N` is extended by the same amount, continuing its last run
/// when the extents right after it are free, and never onto a PV another leg (its
/// metadata or image) uses, so losing one PV still costs at most one copy. The legs are
/// allocated one after the other on the VG as it grows, so two legs never take the
/// same free run. The metadata sub-LVs keep their one extent (lvm2's do too: the
/// bitmap is sized by region, and one extent holds it for any size lvmd allows).
pub(super) fn grow(vg: &mut VolumeGroup, lv_name: &str, target: Extents) -> Result<()> {
    let lv = vg.lv(lv_name).expect("caller checked").clone();
    let legs = legs_of(&lv).expect("caller checked raid1").to_vec();
    let current = lv.extents();
    let add = target - current;
    // With integrity the data sub-LV under each image (`_iorig`) is what grows, as in
    // lvm2's `_lv_extend_layered_lv`; the image's integrity segment follows it.
    let mut layers = Vec::with_capacity(legs.len());
    for (i, leg) in legs.iter().enumerate() {
        let image = vg.lv(&leg.1).ok_or_else(|| LvmError::LvUnsupported {
            vg: vg.name.clone(),
            lv: lv_name.into(),
            why: format!("its raid1 leg {} is not in the VG", leg.1),
        })?;
        let layer = integrity_subs(vg, image);
        let data_name = layer.as_ref().map_or(&leg.1, |(orig, _)| orig).clone();
        let data = vg.lv(&data_name).expect("integrity_subs checked");
        if data.extents() != current || image.extents() != current {
            return Err(LvmError::LvUnsupported {
                vg: vg.name.clone(),
                lv: lv_name.into(),
                why: format!(
                    "its leg {data_name} has {} extents, the LV {}; lvmd grows only raid1 \
                     LVs whose images match it (lvm2's lvs -a shows the legs)",
                    data.extents().0,
                    current.0
                ),
            });
        }
        let others: Vec<usize> = legs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, l)| leg_pvs(vg, l))
            .collect();
        let allowed: Vec<usize> = (0..vg.pvs.len()).filter(|p| !others.contains(p)).collect();
        let req = alloc::Request {
            extents: add,
            shape: alloc::Shape::Linear,
            pvs_allowed: Some(allowed),
            after: super::segments::last_linear_area(vg, data),
        };
        let areas = allocate_linear(vg, &req)?;
        let mut segments = data.segments.clone();
        segments.extend(linear_segments(vg, current, &areas));
        super::segments::merge_adjacent(&mut segments);
        vg.lv_mut(&data_name).expect("checked above").segments = segments;
        layers.push(layer);
    }
    // Then each grown image's integrity metadata, when lvm2's formula asks for more
    // (lvm2's `lv_extend_integrity_in_raid`): only on the PVs it is on already.
    let imeta_extents = integrity_meta_extents(target, vg.extent_size);
    let data_sectors = vg.extent_size.span(target);
    for (leg, layer) in legs.iter().zip(&layers) {
        let Some((_, imeta_name)) = layer else {
            continue;
        };
        let image = vg.lv_mut(&leg.1).expect("checked above");
        image.segments[0].extent_count = target;
        if let SegmentKind::Other { body, .. } = &mut image.segments[0].kind {
            body.set("data_sectors", Value::Int(data_sectors.0 as i64));
        }
        let imeta = vg.lv(imeta_name).expect("integrity_subs checked");
        let have = imeta.extents();
        if imeta_extents <= have {
            continue;
        }
        let own: Vec<usize> = imeta
            .segments
            .iter()
            .filter_map(|seg| match &seg.kind {
                SegmentKind::Striped { stripes, .. } => Some(stripes),
                _ => None,
            })
            .flatten()
            .filter_map(|a| vg.pvs.iter().position(|p| p.name == a.name))
            .collect();
        let req = alloc::Request {
            extents: imeta_extents - have,
            shape: alloc::Shape::Linear,
            pvs_allowed: Some(own),
            after: super::segments::last_linear_area(vg, imeta),
        };
        let areas = allocate_linear(vg, &req)?;
        let mut segments = imeta.segments.clone();
        segments.extend(linear_segments(vg, have, &areas));
        super::segments::merge_adjacent(&mut segments);
        vg.lv_mut(imeta_name).expect("checked above").segments = segments;
    }
    let lv = vg.lv_mut(lv_name).expect("caller checked");
    lv.segments[0].extent_count = target;
    Ok(())
}

/// A linear allocation in `vg` (a leg's metadata and image, or a leg's growth).
pub(super) fn allocate_linear(vg: &VolumeGroup, req: &alloc::Request) -> Result<Vec<alloc::Area>> {
    let allocation =
        alloc::allocate(&super::edit::pv_spaces(vg), req).map_err(|source| LvmError::Alloc {
            vg: vg.name.clone(),
            source,
        })?;
    let Allocation::Linear(areas) = allocation else {
        unreachable!("a linear allocation")
    };
    Ok(areas)
}

#[cfg(test)]
mod integrity_tests {
    use super::repair_tests::{empty_vg, runs};
    use crate::lvm::edit::{apply, Edit, Origin};
    use crate::lvm::LvmError;
    use crate::model::VolumeGroup;
    use crate::units::Bytes;

    /// lvm2's `--raidintegrity y` mirror (tests/fixtures/lvm2/raid1-integrity).
    fn vg() -> VolumeGroup {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/lvm2/raid1-integrity/vgcfgbackup.txt"
        ))
        .unwrap();
        let doc = crate::format::text::parse(&text).unwrap();
        VolumeGroup::from_document(&doc).unwrap().0
    }

    fn origin() -> Origin {
        Origin {
            host: "h".into(),
            time: 1,
            pv_block_sizes: Default::default(),
        }
    }

    /// A leg whose integrity layer is not whole (its `_imeta` gone from the VG) is a
    /// layer lvmd does not know: growing, renaming, repairing or removing the mirror is
    /// refused naming it, the VG as it was.
    #[test]
    fn a_mirror_with_a_broken_integrity_layer_is_not_changed() {
        let mut vg = vg();
        vg.lvs.retain(|l| l.name != "m_rimage_0_imeta");
        for edit in [
            Edit::RepairRaid {
                lv: "m".into(),
                legs: vec![1],
                avoid: vec![],
            },
            Edit::ResizeLv {
                lv: "m".into(),
                size: Bytes(16 << 20),
            },
            Edit::RemoveLv { lv: "m".into() },
            Edit::RenameLv {
                lv: "m".into(),
                to: "n".into(),
                tags: None,
            },
        ] {
            match apply(&vg, &edit, &origin()) {
                Err(LvmError::LvUnsupported { why, .. }) => {
                    assert!(
                        why.contains("m_rimage_0") && why.contains("integrity"),
                        "{edit:?}: {why}"
                    );
                }
                other => panic!("{edit:?}: {other:?}"),
            }
        }
    }

    /// A repair moves a leg whole, as lvm2 lays out a new leg: `_rmeta`, `_iorig` and
    /// a new `_imeta` (after the data) on a PV no other leg uses; `REBUILD` on the
    /// leg, `recalculate` on its image (its new integrity metadata gets its tags at
    /// the next load); the other leg as it was. Both go once the load took them.
    #[test]
    fn an_integrity_leg_is_repaired_whole_onto_a_spare_pv() {
        use crate::lvm::edit::LvSpec;
        use crate::model::layout::DEFAULT_REGION_SIZE;
        use crate::model::{Layout, SegmentKind};
        let vg = empty_vg(3, Bytes(64 << 20));
        let spec = LvSpec {
            name: "m".into(),
            size: Bytes(8 << 20),
            layout: Layout::Raid1 {
                mirrors: 1,
                region_size: DEFAULT_REGION_SIZE,
                integrity: true,
            },
            tags: vec![],
        };
        let made = apply(&vg, &Edit::CreateLv(spec), &origin()).unwrap().vg;
        let made = apply(
            &made,
            &Edit::RaidRebuildLoaded { lv: "m".into() },
            &origin(),
        )
        .unwrap()
        .vg;
        let old = runs(&made, "m_rimage_1_iorig")[0].0.clone();
        let kept = runs(&made, "m_rimage_0_iorig")[0].0.clone();
        let repair = Edit::RepairRaid {
            lv: "m".into(),
            legs: vec![1],
            avoid: vec![old.clone()],
        };
        let repaired = apply(&made, &repair, &origin()).unwrap().vg;
        let rmeta = runs(&repaired, "m_rmeta_1");
        let spare = rmeta[0].0.clone();
        assert!(spare != old && spare != kept, "{rmeta:?}");
        let start = rmeta[0].1;
        assert_eq!(
            runs(&repaired, "m_rimage_1_iorig"),
            [(spare.clone(), start + 1, 2)]
        );
        assert_eq!(
            runs(&repaired, "m_rimage_1_imeta"),
            [(spare.clone(), start + 3, 2)]
        );
        for sub in [
            "m",
            "m_rmeta_0",
            "m_rimage_0",
            "m_rimage_0_iorig",
            "m_rimage_0_imeta",
        ] {
            assert_eq!(repaired.lv(sub), made.lv(sub), "{sub}");
        }
        let image = repaired.lv("m_rimage_1").unwrap();
        assert!(image.status.iter().any(|s| s == "REBUILD"));
        let SegmentKind::Other { body, .. } = &image.segments[0].kind else {
            panic!()
        };
        assert_eq!(body.get_int("recalculate"), Some(1));
        assert_eq!(
            image.integrity_layer(),
            Some(("m_rimage_1_iorig", "m_rimage_1_imeta"))
        );
        let done = apply(
            &repaired,
            &Edit::RaidRebuildLoaded { lv: "m".into() },
            &origin(),
        )
        .unwrap()
        .vg;
        let image = done.lv("m_rimage_1").unwrap();
        assert!(!image.status.iter().any(|s| s == "REBUILD"));
        let SegmentKind::Other { body, .. } = &image.segments[0].kind else {
            panic!()
        };
        assert_eq!(body.get("recalculate"), None);
    }

    /// lvm2's mirror goes whole: the LV and its eight sub-LVs; renamed, every sub-LV
    /// follows and the integrity segments name the new layers.
    #[test]
    fn lvm2s_integrity_mirror_is_removed_and_renamed_whole() {
        let vg = vg();
        let removed = apply(&vg, &Edit::RemoveLv { lv: "m".into() }, &origin()).unwrap();
        assert!(removed.vg.lvs.is_empty(), "{:?}", removed.vg.lvs);
        let edit = Edit::RenameLv {
            lv: "m".into(),
            to: "n".into(),
            tags: None,
        };
        let renamed = apply(&vg, &edit, &origin()).unwrap().vg;
        let mut names: Vec<&str> = renamed.lvs.iter().map(|l| l.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "n",
                "n_rimage_0",
                "n_rimage_0_imeta",
                "n_rimage_0_iorig",
                "n_rimage_1",
                "n_rimage_1_imeta",
                "n_rimage_1_iorig",
                "n_rmeta_0",
                "n_rmeta_1"
            ]
        );
        for leg in 0..2 {
            let image = renamed.lv(&format!("n_rimage_{leg}")).unwrap();
            let (orig, imeta) = image.integrity_layer().unwrap();
            assert_eq!(orig, format!("n_rimage_{leg}_iorig"));
            assert_eq!(imeta, format!("n_rimage_{leg}_imeta"));
            // The layers kept their ids and extents.
            let old = vg.lv(&format!("m_rimage_{leg}_imeta")).unwrap();
            let new = renamed.lv(imeta).unwrap();
            assert_eq!((old.id, &old.segments), (new.id, &new.segments));
        }
    }

    /// A mirror lvmd makes with integrity is what lvm2 made for the same request (the
    /// fixture: `lvcreate --type raid1 -m1 --raidintegrity y -L 8M` on two 64 MiB
    /// PVs): the same LVs in the same order, the same segments and extents, the same
    /// integrity keys, plus `recalculate = 1` until its first activation (lvm2 clears
    /// it right after; so does [`Edit::RaidRebuildLoaded`]).
    #[test]
    fn an_integrity_mirror_is_laid_out_as_lvm2_lays_it_out() {
        use crate::model::layout::DEFAULT_REGION_SIZE;
        let lvm2 = vg();
        let mut empty = lvm2.clone();
        empty.lvs.clear();
        let spec = crate::lvm::edit::LvSpec {
            name: "m".into(),
            size: Bytes(8 << 20),
            layout: crate::model::Layout::Raid1 {
                mirrors: 1,
                region_size: DEFAULT_REGION_SIZE,
                integrity: true,
            },
            tags: vec![],
        };
        let ours = apply(&empty, &Edit::CreateLv(spec), &origin()).unwrap().vg;
        let names =
            |vg: &VolumeGroup| -> Vec<String> { vg.lvs.iter().map(|l| l.name.clone()).collect() };
        assert_eq!(names(&ours), names(&lvm2));
        for theirs in &lvm2.lvs {
            let mine = ours.lv(&theirs.name).unwrap();
            assert_eq!(mine.status, theirs.status, "{}", theirs.name);
            assert_eq!(
                mine.extra.get_int("read_ahead"),
                theirs.extra.get_int("read_ahead"),
                "{}",
                theirs.name
            );
            let mut want = theirs.segments.clone();
            if let [crate::model::Segment {
                kind: crate::model::SegmentKind::Other { body, .. },
                ..
            }] = want.as_mut_slice()
            {
                body.push("recalculate", crate::format::text::Value::Int(1));
            }
            assert_eq!(mine.segments, want, "{}", theirs.name);
        }
        // The first load taken: the key goes, once.
        let done = Edit::RaidRebuildLoaded { lv: "m".into() };
        let cleared = apply(&ours, &done, &origin()).unwrap();
        assert!(cleared.changed);
        for leg in ["m_rimage_0", "m_rimage_1"] {
            assert_eq!(
                cleared.vg.lv(leg).unwrap().segments,
                lvm2.lv(leg).unwrap().segments
            );
        }
        assert!(!apply(&cleared.vg, &done, &origin()).unwrap().changed);
        // Its text reads back as the same VG.
        let header = crate::model::TextHeader {
            description: String::new(),
            creation_host: "h".into(),
            creation_time: 1,
        };
        let doc = cleared.vg.to_document(&header, false);
        let back = VolumeGroup::from_document(&doc).unwrap().0;
        assert_eq!(back.lvs, cleared.vg.lvs);
    }

    /// On PVs of 4 KiB logical blocks lvmd picks lvm2's integrity block size, 4096 (the
    /// fixture: lvm2's `lvcreate --type raid1 -m1 --raidintegrity y` on two loop
    /// devices made with `losetup -b 4096`), and otherwise as lvm2's lvcreate: 4096
    /// for 512-byte logical and 4 KiB physical blocks on every leg, 512 for 512-byte
    /// blocks or unknown devices; logical block sizes mixed across the legs are refused.
    /// A leg added or repaired onto a 4 KiB device of a mirror of 512-byte integrity
    /// blocks is refused naming the PV.
    #[test]
    fn the_integrity_block_size_follows_the_pvs_block_sizes_as_lvm2s() {
        use crate::lvm::edit::{BlockSizes, LvSpec, RemovedLegs};
        use crate::model::layout::DEFAULT_REGION_SIZE;
        use crate::model::SegmentKind;
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/lvm2/raid1-4k/vgcfgbackup.txt"
        ))
        .unwrap();
        let lvm2 = VolumeGroup::from_document(&crate::format::text::parse(&text).unwrap())
            .unwrap()
            .0;
        let mut empty = lvm2.clone();
        empty.lvs.clear();
        let spec = LvSpec {
            name: "k".into(),
            size: Bytes(8 << 20),
            layout: crate::model::Layout::Raid1 {
                mirrors: 1,
                region_size: DEFAULT_REGION_SIZE,
                integrity: true,
            },
            tags: vec![],
        };
        let with = |sizes: &[(u32, u32)]| {
            let mut o = origin();
            for (pv, (logical, physical)) in empty.pvs.iter().zip(sizes) {
                o.pv_block_sizes.insert(
                    pv.id,
                    BlockSizes {
                        logical: *logical,
                        physical: *physical,
                    },
                );
            }
            o
        };
        let block_size = |o: &Origin| {
            let vg = apply(&empty, &Edit::CreateLv(spec.clone()), o).unwrap().vg;
            let SegmentKind::Other { body, .. } = &vg.lv("k_rimage_0").unwrap().segments[0].kind
            else {
                panic!()
            };
            (body.get_int("block_size"), vg)
        };
        let (size, ours) = block_size(&with(&[(4096, 4096), (4096, 4096)]));
        assert_eq!(size, Some(4096));
        let loaded = apply(
            &ours,
            &Edit::RaidRebuildLoaded { lv: "k".into() },
            &origin(),
        )
        .unwrap()
        .vg;
        for theirs in &lvm2.lvs {
            assert_eq!(
                loaded.lv(&theirs.name).unwrap().segments,
                theirs.segments,
                "{}",
                theirs.name
            );
        }
        assert_eq!(block_size(&with(&[(512, 4096), (512, 4096)])).0, Some(4096));
        assert_eq!(block_size(&with(&[(512, 4096), (512, 512)])).0, Some(512));
        assert_eq!(block_size(&with(&[(512, 512), (512, 512)])).0, Some(512));
        assert_eq!(block_size(&origin()).0, Some(512));
        let e = apply(
            &empty,
            &Edit::CreateLv(spec.clone()),
            &with(&[(512, 512), (4096, 4096)]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("mix logical block sizes"), "{e}");
        // A third leg on a 4 KiB device, under 512-byte integrity blocks.
        let mut three = empty_vg(3, Bytes(64 << 20));
        let made = apply(&three, &Edit::CreateLv(spec.clone()), &origin())
            .unwrap()
            .vg;
        three = apply(
            &made,
            &Edit::RaidRebuildLoaded { lv: "k".into() },
            &origin(),
        )
        .unwrap()
        .vg;
        let mut o = origin();
        o.pv_block_sizes.insert(
            three.pvs[2].id,
            BlockSizes {
                logical: 4096,
                physical: 4096,
            },
        );
        let add = Edit::ConvertRaid {
            lv: "k".into(),
            mirrors: 2,
            pvs: vec![],
            removed: RemovedLegs::Dropped,
        };
        let e = apply(&three, &add, &o).unwrap_err();
        assert!(e.to_string().contains(&three.pvs[2].name), "{e}");
        assert!(apply(&three, &add, &origin()).is_ok());
        // Nor does a repair move a leg there.
        let repair = Edit::RepairRaid {
            lv: "k".into(),
            legs: vec![1],
            avoid: vec![],
        };
        let e = apply(&three, &repair, &o).unwrap_err();
        assert!(e.to_string().contains(&three.pvs[2].name), "{e}");
        assert!(apply(&three, &repair, &origin()).is_ok());
    }

    /// Grown as lvm2's lvextend grows one: each `_iorig` by the same extents (around its
    /// `_imeta`, never on the other leg's PV), each image's integrity segment and
    /// `data_sectors` with it, and each `_imeta` on its own PV when lvm2's formula asks
    /// for more (past 500 MiB of data: 16 MiB for 600 MiB).
    #[test]
    fn an_integrity_mirror_grows_its_data_and_then_its_metadata() {
        use crate::lvm::edit::LvSpec;
        use crate::model::layout::DEFAULT_REGION_SIZE;
        use crate::model::{Layout, SegmentKind};
        use crate::units::Extents;
        let small = vg();
        let grown = apply(
            &small,
            &Edit::ResizeLv {
                lv: "m".into(),
                size: Bytes(16 << 20),
            },
            &origin(),
        )
        .unwrap()
        .vg;
        for (leg, pv) in [(0, "pv0"), (1, "pv1")] {
            // 1-2, then past the _imeta at 3-4.
            assert_eq!(
                runs(&grown, &format!("m_rimage_{leg}_iorig")),
                [(pv.to_owned(), 1, 2), (pv.to_owned(), 5, 2)]
            );
            let image = grown.lv(&format!("m_rimage_{leg}")).unwrap();
            assert_eq!(image.extents(), Extents(4));
            let SegmentKind::Other { body, .. } = &image.segments[0].kind else {
                panic!()
            };
            assert_eq!(body.get_int("data_sectors"), Some(32768));
            assert_eq!(
                runs(&grown, &format!("m_rimage_{leg}_imeta")),
                [(pv.to_owned(), 3, 2)]
            );
        }
        assert_eq!(grown.lv("m").unwrap().extents(), Extents(4));

        let big = empty_vg(2, Bytes(2 << 30));
        let spec = LvSpec {
            name: "m".into(),
            size: Bytes(400 << 20),
            layout: Layout::Raid1 {
                mirrors: 1,
                region_size: DEFAULT_REGION_SIZE,
                integrity: true,
            },
            tags: vec![],
        };
        let made = apply(&big, &Edit::CreateLv(spec), &origin()).unwrap().vg;
        let grow = Edit::ResizeLv {
            lv: "m".into(),
            size: Bytes(600 << 20),
        };
        let grown = apply(&made, &grow, &origin()).unwrap().vg;
        for leg in 0..2 {
            let imeta = runs(&grown, &format!("m_rimage_{leg}_imeta"));
            let before = runs(&made, &format!("m_rimage_{leg}_imeta"));
            assert_eq!(imeta.iter().map(|r| r.2).sum::<u64>(), 4, "{imeta:?}");
            assert!(imeta.iter().all(|r| r.0 == before[0].0), "{imeta:?}");
            let data = runs(&grown, &format!("m_rimage_{leg}_iorig"));
            assert_eq!(data.iter().map(|r| r.2).sum::<u64>(), 150);
            assert!(data.iter().all(|r| r.0 == before[0].0), "{data:?}");
        }
        // Text and back: the same VG.
        let header = crate::model::TextHeader {
            description: String::new(),
            creation_host: "h".into(),
            creation_time: 1,
        };
        let back = VolumeGroup::from_document(&grown.to_document(&header, false))
            .unwrap()
            .0;
        assert_eq!(back.lvs, grown.lvs);
    }

    /// Each leg takes its data, one raid metadata extent and its integrity metadata
    /// on one PV: a PV with room for the data but not the rest does not take a leg.
    #[test]
    fn each_leg_needs_room_for_its_integrity_metadata() {
        use crate::model::layout::DEFAULT_REGION_SIZE;
        let mut empty = vg();
        empty.lvs.clear();
        // 15 extents per PV: 12 of data, 1 rmeta, 2 imeta fit; 13 of data do not.
        let spec = |mib: u64| crate::lvm::edit::LvSpec {
            name: "m".into(),
            size: Bytes(mib << 20),
            layout: crate::model::Layout::Raid1 {
                mirrors: 1,
                region_size: DEFAULT_REGION_SIZE,
                integrity: true,
            },
            tags: vec![],
        };
        assert!(apply(&empty, &Edit::CreateLv(spec(48)), &origin()).is_ok());
        let e = apply(&empty, &Edit::CreateLv(spec(52)), &origin()).unwrap_err();
        assert!(matches!(e, LvmError::Alloc { .. }), "{e:?}");
    }
}

#[cfg(test)]
mod repair_tests {
    use super::*;
    use crate::lvm::edit::{add_pvs, apply, new_vg, Edit, LvSpec, NewPv};
    use crate::units::{Bytes, ExtentSize, Sectors};

    const MIB: u64 = 1 << 20;

    fn origin() -> Origin {
        Origin {
            host: "h".into(),
            time: 1,
            pv_block_sizes: Default::default(),
        }
    }

    /// A VG of `count` PVs of `size` each, with nothing on them.
    pub(super) fn empty_vg(count: usize, size: Bytes) -> VolumeGroup {
        let mut vg = new_vg("vg", ExtentSize::DEFAULT);
        let pvs: Vec<NewPv> = (0..count)
            .map(|i| NewPv {
                id: crate::uuid::Uuid::random(),
                device: format!("/dev/x{i}"),
                dev_size: size.to_sectors_floor(),
                pe_start: Sectors(2048),
            })
            .collect();
        add_pvs(&mut vg, &pvs).unwrap();
        vg
    }

    /// Three 64 MiB PVs, a 16 MiB two-leg mirror on the first two.
    fn vg_with_mirror() -> VolumeGroup {
        let vg = empty_vg(3, Bytes(64 * MIB));
        let spec = LvSpec {
            name: "m".into(),
            size: Bytes(16 * MIB),
            layout: Layout::Raid1 {
                mirrors: 1,
                region_size: Sectors(4096),
                integrity: false,
            },
            tags: vec![],
        };
        apply(&vg, &Edit::CreateLv(spec), &origin()).unwrap().vg
    }

    /// Each segment of `sub` as (PV name, first extent, extent count).
    pub(super) fn runs(vg: &VolumeGroup, sub: &str) -> Vec<(String, u64, u64)> {
        vg.lv(sub)
            .unwrap()
            .segments
            .iter()
            .map(|seg| match &seg.kind {
                SegmentKind::Striped { stripes, .. } => (
                    stripes[0].name.clone(),
                    stripes[0].start.0,
                    seg.extent_count.0,
                ),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_leg_on_a_missing_pv_moves_to_the_spare_flagged_rebuild() {
        let vg = vg_with_mirror();
        let gone = runs(&vg, "m_rimage_1")[0].0.clone();
        let kept = runs(&vg, "m_rimage_0")[0].0.clone();
        assert_ne!(gone, kept);
        let spare = vg
            .pvs
            .iter()
            .map(|p| p.name.clone())
            .find(|n| *n != gone && *n != kept)
            .unwrap();
        let mut missing = vg.clone();
        missing
            .pvs
            .iter_mut()
            .find(|p| p.name == gone)
            .unwrap()
            .flags
            .push("MISSING".into());
        let edit = Edit::RepairRaid {
            lv: "m".into(),
            legs: vec![1],
            avoid: vec![],
        };
        let repaired = apply(&missing, &edit, &origin()).unwrap().vg;
        // The other leg and the LV are as they were.
        for sub in ["m", "m_rmeta_0", "m_rimage_0"] {
            assert_eq!(repaired.lv(sub), missing.lv(sub), "{sub}");
        }
        // lvm2's layout of a new leg: one metadata extent, the image right after it,
        // on a PV no other leg uses; same names and ids, REBUILD on both.
        let meta = runs(&repaired, "m_rmeta_1");
        let image = runs(&repaired, "m_rimage_1");
        assert_eq!(meta.len(), 1);
        assert_eq!((meta[0].0.as_str(), meta[0].2), (spare.as_str(), 1));
        assert_eq!(image, vec![(spare.clone(), meta[0].1 + 1, 4)]);
        for sub in ["m_rmeta_1", "m_rimage_1"] {
            let (old, new) = (missing.lv(sub).unwrap(), repaired.lv(sub).unwrap());
            assert_eq!(old.id, new.id);
            assert!(new.status.iter().any(|s| s == "REBUILD"), "{sub}");
        }
        // Nothing of the mirror is on the missing PV any more.
        for sub in all_sub_lvs(&repaired, "m").unwrap() {
            assert!(runs(&repaired, &sub).iter().all(|r| r.0 != gone), "{sub}");
        }
        // The rebuild loaded: the flags go, once.
        let done = Edit::RaidRebuildLoaded { lv: "m".into() };
        let cleared = apply(&repaired, &done, &origin()).unwrap();
        assert!(cleared.changed);
        assert!(cleared
            .vg
            .lvs
            .iter()
            .all(|l| !l.status.iter().any(|s| s == "REBUILD")));
        assert!(!apply(&cleared.vg, &done, &origin()).unwrap().changed);
    }

    #[test]
    fn a_repair_never_lands_beside_another_leg_nor_on_an_avoided_pv() {
        let vg = vg_with_mirror();
        let gone = runs(&vg, "m_rimage_1")[0].0.clone();
        let spare = vg
            .pvs
            .iter()
            .map(|p| p.name.clone())
            .find(|n| *n != gone && *n != runs(&vg, "m_rimage_0")[0].0)
            .unwrap();
        // The spare's device is gone too: only the other leg's PV has room, which a
        // repair must not take (both copies on one PV).
        let edit = Edit::RepairRaid {
            lv: "m".into(),
            legs: vec![1],
            avoid: vec![gone.clone(), spare],
        };
        let err = apply(&vg, &edit, &origin()).unwrap_err();
        assert!(matches!(err, LvmError::Alloc { .. }), "{err:?}");
        // No copy left to rebuild from, or no such leg: refused by name.
        for legs in [vec![0, 1], vec![2], vec![]] {
            let edit = Edit::RepairRaid {
                lv: "m".into(),
                legs,
                avoid: vec![],
            };
            let err = apply(&vg, &edit, &origin()).unwrap_err().to_string();
            assert!(err.contains("vg/m"), "{err}");
        }
    }
}
