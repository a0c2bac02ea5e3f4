//! raid1 LVs as lvm2 lays them out: the visible LV has one `raid1` segment naming its
//! legs, and each leg is two hidden linear sub-LVs on one PV of its own, a one-extent
//! metadata area `<lv>_rmeta_N` (dm-raid's superblock and write-intent bitmap) and the
//! data copy `<lv>_rimage_N`. The edits here keep the legs with their LV: created,
//! renamed and removed together.

use super::edit::Origin;
use super::segments::linear_segments;
use super::{LvmError, Result};
use crate::alloc::{self, Allocation};
use crate::model::name::check_dm_name;
use crate::model::{Layout, LogicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::units::Extents;

/// Extents of each leg's metadata sub-LV (lvm2's: one extent).
const META_EXTENTS: Extents = Extents(1);

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

/// The sub-LVs of `lv_name` when it is a raid1 LV whose legs are all there.
pub(super) fn sub_lvs(vg: &VolumeGroup, lv_name: &str) -> Option<Vec<String>> {
    let legs = legs_of(vg.lv(lv_name)?)?;
    let names: Vec<String> = legs
        .iter()
        .flat_map(|(m, i)| [m.clone(), i.clone()])
        .collect();
    names.iter().all(|n| vg.lv(n).is_some()).then_some(names)
}

/// Adds a raid1 LV of `extents` per leg, with its legs' sub-LVs, as lvm2's
/// `lvcreate --type raid1 -m mirrors -R region_size` writes it.
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
    } = layout
    else {
        unreachable!("raid1 layout")
    };
    let legs = (mirrors + 1) as usize;
    for leg in 0..legs {
        for sub in [meta_name(name, leg), image_name(name, leg)] {
            check_dm_name(&vg.name, &sub)?;
            if vg.lv(&sub).is_some() {
                return Err(LvmError::LvExists {
                    vg: vg.name.clone(),
                    lv: sub,
                });
            }
        }
    }
    let req = alloc::Request {
        extents: META_EXTENTS + extents,
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
    let sub_lv = |name: String, segments| origin.new_lv(name, false, vec![], segments);
    let mut subs = Vec::with_capacity(legs * 2);
    let mut leg_names = Vec::with_capacity(legs);
    for (leg, areas) in placed.iter().enumerate() {
        // The leg's first extent is its metadata area, the rest its image (lvm2 puts
        // the metadata right before the image, on the same PV).
        let (meta, image) = split_areas(areas, META_EXTENTS);
        let (m, i) = (meta_name(name, leg), image_name(name, leg));
        subs.push(sub_lv(
            i.clone(),
            linear_segments(vg, Extents::ZERO, &image),
        ));
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
    // lvm2's order: the LV, then per leg its image and its metadata.
    vg.lvs.push(lv);
    vg.lvs.extend(subs);
    Ok(())
}

/// The first `n` extents of `areas`, and the rest.
fn split_areas(areas: &[alloc::Area], n: Extents) -> (Vec<alloc::Area>, Vec<alloc::Area>) {
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
    let mut renamed = Vec::with_capacity(legs.len());
    for (leg, (m, i)) in legs.iter().enumerate() {
        let pair = (meta_name(new, leg), image_name(new, leg));
        for (from, to) in [(m, &pair.0), (i, &pair.1)] {
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
        renamed.push(pair);
    }
    let lv = vg.lv_mut(new).expect("renamed above");
    if let SegmentKind::Raid1 { legs, .. } = &mut lv.segments[0].kind {
        *legs = renamed;
    }
    Ok(())
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
    // The PVs each leg (metadata and image) sits on, by index.
    let pvs_of = |vg: &VolumeGroup, leg: &(String, String)| -> Vec<usize> {
        let mut out = Vec::new();
        for sub in [&leg.0, &leg.1] {
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
    };
    for (i, leg) in legs.iter().enumerate() {
        let image = vg.lv(&leg.1).ok_or_else(|| LvmError::LvUnsupported {
            vg: vg.name.clone(),
            lv: lv_name.into(),
            why: format!("its raid1 leg {} is not in the VG", leg.1),
        })?;
        if image.extents() != current {
            return Err(LvmError::LvUnsupported {
                vg: vg.name.clone(),
                lv: lv_name.into(),
                why: format!(
                    "its leg {} has {} extents, the LV {}; lvmd grows only raid1 LVs whose \
                     images match it (lvm2's lvs -a shows the legs)",
                    leg.1,
                    image.extents().0,
                    current.0
                ),
            });
        }
        let others: Vec<usize> = legs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, l)| pvs_of(vg, l))
            .collect();
        let allowed: Vec<usize> = (0..vg.pvs.len()).filter(|p| !others.contains(p)).collect();
        let req = alloc::Request {
            extents: add,
            shape: alloc::Shape::Linear,
            pvs_allowed: Some(allowed),
            after: super::segments::last_linear_area(vg, image),
        };
        let allocation = alloc::allocate(&super::edit::pv_spaces(vg), &req).map_err(|source| {
            LvmError::Alloc {
                vg: vg.name.clone(),
                source,
            }
        })?;
        let Allocation::Linear(areas) = allocation else {
            unreachable!("a linear allocation")
        };
        let mut segments = vg.lv(&leg.1).expect("checked above").segments.clone();
        segments.extend(linear_segments(vg, current, &areas));
        super::segments::merge_adjacent(&mut segments);
        vg.lv_mut(&leg.1).expect("checked above").segments = segments;
    }
    let lv = vg.lv_mut(lv_name).expect("caller checked");
    lv.segments[0].extent_count = target;
    Ok(())
}
