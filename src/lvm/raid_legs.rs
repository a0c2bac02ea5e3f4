//! Changing how many legs a raid1 LV has, as lvm2's `lvconvert -m N` does
//! (`_raid_add_images` and `_raid_remove_images` in lvm2's raid_manip.c).
//!
//! Added legs are laid out as lvm2 lays out a new leg: on a PV no other leg uses, its
//! one-extent `_rmeta_K` first, then its image (with integrity: the `_iorig` data, then
//! a new `_imeta`, the image's integrity segment taking the other legs' settings), both
//! flagged `REBUILD` so the next load makes dm-raid copy the whole leg, appended to the
//! VG's LVs in lvm2's order (`_rmeta_K`, `_rimage_K`, `_rimage_K_imeta`,
//! `_rimage_K_iorig`). Removed legs are those on the PVs asked for, else the last
//! ones; the legs after them are renamed to close the gap (their `_rmeta_N` and
//! `_rimage_N` only, as lvm2 shifts them: an integrity image keeps naming the layers it
//! had). Down to one leg (`-m 0`), the LV becomes linear on that leg's image's extents,
//! as lvm2 leaves it.

use super::edit::Origin;
use super::raid::{
    self, allocate_linear, image_name, imeta_name, integrity_subs, iorig_name, leg_pvs, legs_of,
    meta_name, split_areas, INTEGRITY, META_EXTENTS, REBUILD, RECALCULATE,
};
use super::segments::linear_segments;
use super::{LvmError, Result};
use crate::alloc;
use crate::format::text::Value;
use crate::model::layout::integrity_meta_extents;
use crate::model::name::check_dm_name;
use crate::model::{Layout, LogicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::units::Extents;

/// What becomes of the sub-LVs of the legs a conversion removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovedLegs {
    /// They leave the metadata (lvm2's result), their extents free as they are.
    Dropped,
    /// Each linear sub-LV of a removed leg (`_rmeta`, a plain `_rimage`, an integrity
    /// image's `_iorig` and `_imeta`) stays as a visible linear LV of its own, named
    /// `name_prefix` and its uuid, with `tags`: its extents stay allocated until its
    /// owner has zeroed them (lvmd's wipe LVs), as lvm2 keeps extracted legs as
    /// visible `*_extracted` LVs until it removes them.
    Kept {
        name_prefix: String,
        tags: Vec<String>,
    },
}

/// Gives raid1 LV `lv_name` `mirrors + 1` legs; `pvs` (names in the VG) are where new
/// legs may go, or which legs go (those on them), as lvm2's `lvconvert -m N LV PVs`;
/// empty: any PV no leg uses, or the last legs. `Ok(false)`: it has that many already.
pub(super) fn convert(
    vg: &mut VolumeGroup,
    lv_name: &str,
    mirrors: u32,
    pvs: &[String],
    removed: &RemovedLegs,
    origin: &Origin,
) -> Result<bool> {
    let lv = vg.lv(lv_name).expect("caller checked").clone();
    let vg_name = vg.name.clone();
    let unsupported = |why: String| LvmError::LvUnsupported {
        vg: vg_name.clone(),
        lv: lv_name.into(),
        why,
    };
    let Some(legs) = legs_of(&lv).map(<[_]>::to_vec) else {
        return Err(unsupported(format!(
            "it is a {} volume; only raid1 LVs have legs to add or remove",
            lv.type_name()
        )));
    };
    let Some(subs) = raid::all_sub_lvs(vg, lv_name) else {
        return Err(unsupported(match raid::layered_leg(vg, &lv) {
            Some((sub, kind)) => raid::layered_why(sub, kind),
            None => "one of its legs is not in the VG".into(),
        }));
    };
    for pv in pvs {
        if vg.pv(pv).is_none() {
            return Err(LvmError::InvalidArgument {
                what: "physical volume",
                value: pv.clone(),
                why: format!("is not a PV of VG {vg_name}"),
            });
        }
    }
    let Some(SegmentKind::Raid1 { region_size, .. }) = lv.segments.first().map(|s| &s.kind) else {
        unreachable!("legs_of found a raid1 segment")
    };
    let integrity = integrity_subs(vg, vg.lv(&legs[0].1).expect("all_sub_lvs checked")).is_some();
    if mirrors == 0 && integrity {
        return Err(LvmError::InvalidArgument {
            what: "mirror count",
            value: "0".into(),
            why: format!(
                "{vg_name}/{lv_name} has integrity layers, which lvmd does not take off \
                 (lvm2's lvconvert --raidintegrity n, then -m 0)"
            ),
        });
    }
    if mirrors > 0 {
        Layout::Raid1 {
            mirrors,
            region_size: region_size.unwrap_or(crate::model::layout::DEFAULT_REGION_SIZE),
            integrity,
        }
        .check()?;
    }
    let want = mirrors as usize + 1;
    if want == legs.len() {
        // Already so (a retry of a conversion that was committed).
        return Ok(false);
    }
    // A leg not yet rebuilt holds no full copy: neither a source for a new leg nor
    // one to keep when others go.
    if let Some(sub) = subs.iter().find(|s| {
        vg.lv(s)
            .is_some_and(|l| l.status.iter().any(|f| f == REBUILD))
    }) {
        return Err(unsupported(format!(
            "its leg {sub} is still flagged REBUILD (a rebuild not yet loaded): activate \
             it and let the leg sync before changing its legs"
        )));
    }
    if want > legs.len() {
        add_legs(vg, &lv, &legs, want, pvs, origin)?;
    } else {
        remove_legs(vg, &lv, &legs, want, pvs, removed)?;
        if want == 1 {
            to_linear(vg, lv_name, removed);
        }
    }
    Ok(true)
}

/// lvm2's `lvconvert -m 0`: the one leg left (`_rmeta_0`, `_rimage_0`) goes, the LV
/// taking its image's extents as its own linear segments, under its name and id; the
/// leg's metadata sub-LV as `removed` says.
fn to_linear(vg: &mut VolumeGroup, lv_name: &str, removed: &RemovedLegs) {
    let (meta, image) = (meta_name(lv_name, 0), image_name(lv_name, 0));
    let segments = vg.lv(&image).expect("the leg left").segments.clone();
    vg.lv_mut(lv_name).expect("caller checked").segments = segments;
    vg.lvs.retain(|l| l.name != image);
    match removed {
        RemovedLegs::Dropped => vg.lvs.retain(|l| l.name != meta),
        RemovedLegs::Kept { name_prefix, tags } => {
            let l = vg.lv_mut(&meta).expect("the leg left");
            l.name = format!("{name_prefix}{}", l.id.compact());
            l.status.retain(|s| s != REBUILD);
            if !l.status.iter().any(|s| s == "VISIBLE") {
                l.status.push("VISIBLE".into());
            }
            l.tags = tags.clone();
        }
    }
}

fn add_legs(
    vg: &mut VolumeGroup,
    lv: &LogicalVolume,
    legs: &[(String, String)],
    want: usize,
    pvs: &[String],
    origin: &Origin,
) -> Result<()> {
    let extents = lv.extents();
    // The other legs' integrity settings (block size, mode, hash...) are the new
    // leg's, as lvm2 takes them from the raid for an added image.
    let template = vg
        .lv(&legs[0].1)
        .filter(|image| integrity_subs(vg, image).is_some())
        .and_then(|image| match &image.segments[0].kind {
            SegmentKind::Other { body, .. } => Some(body.clone()),
            _ => None,
        });
    let imeta_extents = if template.is_some() {
        integrity_meta_extents(extents, vg.extent_size)
    } else {
        Extents::ZERO
    };
    let mut all_legs = legs.to_vec();
    for k in legs.len()..want {
        let (m, i) = (meta_name(&lv.name, k), image_name(&lv.name, k));
        let (orig, imeta) = (iorig_name(&lv.name, k), imeta_name(&lv.name, k));
        let mut names = vec![m.clone(), i.clone()];
        if template.is_some() {
            names.extend([orig.clone(), imeta.clone()]);
        }
        for sub in &names {
            check_dm_name(&vg.name, sub)?;
            if vg.lv(sub).is_some() {
                return Err(LvmError::LvExists {
                    vg: vg.name.clone(),
                    lv: sub.clone(),
                });
            }
        }
        // Never beside another leg (counting the ones added before this one), never on
        // a missing PV, and only on the PVs asked for.
        let taken: Vec<usize> = all_legs.iter().flat_map(|l| leg_pvs(vg, l)).collect();
        let allowed: Vec<usize> = vg
            .pvs
            .iter()
            .enumerate()
            .filter(|(p, pv)| {
                !taken.contains(p) && !pv.is_missing() && (pvs.is_empty() || pvs.contains(&pv.name))
            })
            .map(|(p, _)| p)
            .collect();
        let req = alloc::Request {
            extents: META_EXTENTS + extents + imeta_extents,
            shape: alloc::Shape::Linear,
            pvs_allowed: Some(allowed),
            after: None,
        };
        let areas = allocate_linear(vg, &req)?;
        if let Some(block_size) = template.as_ref().and_then(|b| b.get_int("block_size")) {
            let on: Vec<usize> = areas.iter().map(|a| a.pv).collect();
            raid::check_leg_block_size(vg, &lv.name, &on, block_size as u32, origin)?;
        }
        let (meta_areas, rest) = split_areas(&areas, META_EXTENTS);
        let (data_areas, imeta_areas) = split_areas(&rest, extents);
        let new_sub = |name: String, segments| {
            let mut l = origin.new_lv(name, false, vec![], segments);
            l.status.push(REBUILD.into());
            l
        };
        let meta = new_sub(m.clone(), linear_segments(vg, Extents::ZERO, &meta_areas));
        let data = linear_segments(vg, Extents::ZERO, &data_areas);
        let mut added = vec![meta];
        match &template {
            None => added.push(new_sub(i.clone(), data)),
            Some(body) => {
                let mut body = body.clone();
                body.set("origin", Value::Str(orig.clone()));
                body.set("meta_dev", Value::Str(imeta.clone()));
                body.set(
                    "data_sectors",
                    Value::Int(vg.extent_size.span(extents).0 as i64),
                );
                // Its new integrity metadata has no tags yet: the first load computes
                // them (lvm2 makes a new integrity image the same way).
                body.set(RECALCULATE, Value::Int(1));
                let image = Segment {
                    start_extent: Extents::ZERO,
                    extent_count: extents,
                    kind: SegmentKind::Other {
                        type_name: INTEGRITY.into(),
                        body,
                    },
                    tags: vec![],
                    extra: Default::default(),
                };
                added.push(new_sub(i.clone(), vec![image]));
                let mut imeta_lv = origin.new_lv(
                    imeta,
                    false,
                    vec![],
                    linear_segments(vg, Extents::ZERO, &imeta_areas),
                );
                // lvm2 makes the integrity metadata with no read-ahead.
                imeta_lv.extra.push("read_ahead", Value::Int(-1));
                added.push(imeta_lv);
                added.push(origin.new_lv(orig, false, vec![], data));
            }
        }
        vg.lvs.extend(added);
        all_legs.push((m, i));
    }
    set_legs(vg, &lv.name, all_legs);
    Ok(())
}

fn set_legs(vg: &mut VolumeGroup, lv: &str, new: Vec<(String, String)>) {
    let lv = vg.lv_mut(lv).expect("caller checked");
    if let SegmentKind::Raid1 { legs, .. } = &mut lv.segments[0].kind {
        *legs = new;
    }
}

fn remove_legs(
    vg: &mut VolumeGroup,
    lv: &LogicalVolume,
    legs: &[(String, String)],
    want: usize,
    pvs: &[String],
    removed: &RemovedLegs,
) -> Result<()> {
    let count = legs.len() - want;
    // lvm2 looks from the last leg down for legs on the PVs named.
    let on_pvs: Vec<usize> = (0..legs.len())
        .rev()
        .filter(|&i| {
            pvs.is_empty()
                || leg_pvs(vg, &legs[i])
                    .iter()
                    .any(|&p| pvs.contains(&vg.pvs[p].name))
        })
        .take(count)
        .collect();
    if on_pvs.len() < count {
        return Err(LvmError::InvalidArgument {
            what: "physical volumes",
            value: pvs.join(","),
            why: format!(
                "{} legs of {}/{} are to go but only {} of them are on these PVs",
                count,
                vg.name,
                lv.name,
                on_pvs.len()
            ),
        });
    }
    // The removed legs' sub-LVs: their linear layers, and the image over them.
    let mut gone = Vec::new();
    let mut kept_layers = Vec::new();
    for &i in &on_pvs {
        let (m, image) = &legs[i];
        gone.push(m.clone());
        gone.push(image.clone());
        kept_layers.push(m.clone());
        match integrity_subs(vg, vg.lv(image).expect("all_sub_lvs checked")) {
            Some((orig, imeta)) => {
                gone.extend([orig.clone(), imeta.clone()]);
                kept_layers.extend([orig, imeta]);
            }
            None => kept_layers.push(image.clone()),
        }
    }
    match removed {
        RemovedLegs::Dropped => vg.lvs.retain(|l| !gone.contains(&l.name)),
        RemovedLegs::Kept { name_prefix, tags } => {
            vg.lvs
                .retain(|l| !gone.contains(&l.name) || kept_layers.contains(&l.name));
            for name in &kept_layers {
                let id = vg.lv(name).expect("all_sub_lvs checked").id;
                let new_name = format!("{name_prefix}{}", id.compact());
                check_dm_name(&vg.name, &new_name)?;
                let l = vg.lv_mut(name).expect("checked above");
                l.name = new_name;
                l.status.retain(|s| s != REBUILD);
                if !l.status.iter().any(|s| s == "VISIBLE") {
                    l.status.push("VISIBLE".into());
                }
                l.tags = tags.clone();
            }
        }
    }
    // The legs left, renamed after their new places (lvm2's
    // `_shift_and_rename_image_components`): only `_rmeta_N` and `_rimage_N`.
    let mut left = Vec::with_capacity(want);
    for (i, (m, image)) in legs.iter().enumerate() {
        if on_pvs.contains(&i) {
            continue;
        }
        let p = left.len();
        let pair = (meta_name(&lv.name, p), image_name(&lv.name, p));
        for (from, to) in [(m, &pair.0), (image, &pair.1)] {
            if from != to {
                vg.lv_mut(from).expect("all_sub_lvs checked").name = to.clone();
            }
        }
        left.push(pair);
    }
    set_legs(vg, &lv.name, left);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RemovedLegs;
    use crate::lvm::edit::{apply, Edit, Origin};
    use crate::lvm::LvmError;
    use crate::model::{SegmentKind, VolumeGroup};

    /// One of lvm2's VGs of tests/fixtures/lvm2/raid1-convert (see its README).
    fn fixture(name: &str) -> VolumeGroup {
        let text = std::fs::read_to_string(format!(
            "{}/tests/fixtures/lvm2/raid1-convert/{name}.txt",
            env!("CARGO_MANIFEST_DIR")
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

    fn convert(lv: &str, mirrors: u32, pvs: &[&str], removed: RemovedLegs) -> Edit {
        Edit::ConvertRaid {
            lv: lv.into(),
            mirrors,
            pvs: pvs.iter().map(|p| p.to_string()).collect(),
            removed,
        }
    }

    fn names(vg: &VolumeGroup) -> Vec<&str> {
        vg.lvs.iter().map(|l| l.name.as_str()).collect()
    }

    /// The same LVs in the same order, each with the same segments and status; ids
    /// as `ids` maps lvm2's LV names to ours.
    fn assert_same_lvs(ours: &VolumeGroup, lvm2: &VolumeGroup) {
        assert_eq!(names(ours), names(lvm2));
        for theirs in &lvm2.lvs {
            let mine = ours.lv(&theirs.name).unwrap();
            assert_eq!(mine.segments, theirs.segments, "{}", theirs.name);
            assert_eq!(mine.status, theirs.status, "{}", theirs.name);
            assert_eq!(
                mine.extra.get_int("read_ahead"),
                theirs.extra.get_int("read_ahead"),
                "{}",
                theirs.name
            );
        }
    }

    /// A leg added as lvm2's `lvconvert -m 2 LV pv2` adds it (m0 → m1, n0 → n1): the
    /// same LVs in the same order, the same extents, and the same integrity settings;
    /// ours carries `REBUILD` on the new leg (and `recalculate` on a new integrity
    /// image) until the load took them, which lvm2 dropped before its backup.
    #[test]
    fn a_leg_is_added_as_lvm2_adds_one() {
        for (lv, before, after) in [("m", "m0", "m1"), ("n", "n0", "n1")] {
            let lvm2 = fixture(after);
            let edit = convert(lv, 2, &["pv2"], RemovedLegs::Dropped);
            let ours = apply(&fixture(before), &edit, &origin()).unwrap();
            assert!(ours.changed);
            for sub in [format!("{lv}_rmeta_2"), format!("{lv}_rimage_2")] {
                let l = ours.vg.lv(&sub).unwrap();
                assert!(l.status.iter().any(|s| s == "REBUILD"), "{sub}");
            }
            let image = ours.vg.lv(&format!("{lv}_rimage_2")).unwrap();
            if let SegmentKind::Other { body, .. } = &image.segments[0].kind {
                assert_eq!(body.get_int("recalculate"), Some(1));
            }
            let loaded = Edit::RaidRebuildLoaded { lv: lv.into() };
            let loaded = apply(&ours.vg, &loaded, &origin()).unwrap().vg;
            assert_same_lvs(&loaded, &lvm2);
            // Without PVs named: the first PV no leg uses, the same here.
            let any = convert(lv, 2, &[], RemovedLegs::Dropped);
            let anywhere = apply(&fixture(before), &any, &origin()).unwrap().vg;
            let sub = format!("{lv}_rmeta_2");
            assert_eq!(
                anywhere.lv(&sub).unwrap().segments,
                lvm2.lv(&sub).unwrap().segments
            );
            // Its text reads back as the same VG.
            let header = crate::model::TextHeader {
                description: String::new(),
                creation_host: "h".into(),
                creation_time: 1,
            };
            let doc = ours.vg.to_document(&header, false);
            assert_eq!(VolumeGroup::from_document(&doc).unwrap().0.lvs, ours.vg.lvs);
            // Already three legs: nothing to do.
            let again = apply(&ours.vg, &edit, &origin()).unwrap();
            assert!(!again.changed);
        }
    }

    /// A leg removed as lvm2's `lvconvert -m 1 LV pv0` removes it (m1 → m2, n1 → n2):
    /// leg 0 goes, legs 1 and 2 become 0 and 1 under their ids (integrity images still
    /// naming their layers of the old numbers, as lvm2 leaves them).
    #[test]
    fn a_leg_is_removed_and_the_rest_renamed_as_lvm2_does() {
        for (lv, before, after) in [("m", "m1", "m2"), ("n", "n1", "n2")] {
            let (from, lvm2) = (fixture(before), fixture(after));
            let edit = convert(lv, 1, &["pv0"], RemovedLegs::Dropped);
            let ours = apply(&from, &edit, &origin()).unwrap().vg;
            assert_same_lvs(&ours, &lvm2);
            for (old, new) in [(1, 0), (2, 1)] {
                for kind in ["rmeta", "rimage"] {
                    let was = from.lv(&format!("{lv}_{kind}_{old}")).unwrap();
                    assert_eq!(ours.lv(&format!("{lv}_{kind}_{new}")).unwrap().id, was.id);
                }
            }
            // No PV named: the last leg goes, nothing is renamed.
            let last = convert(lv, 1, &[], RemovedLegs::Dropped);
            let ours = apply(&from, &last, &origin()).unwrap().vg;
            assert_eq!(
                ours.lv(lv).unwrap().segments,
                fixture(before.replace('1', "0").as_str())
                    .lv(lv)
                    .unwrap()
                    .segments
            );
            assert!(ours.lv(&format!("{lv}_rmeta_2")).is_none());
        }
    }

    /// `-m 0` as lvm2's (m2 → m3): the LV linear on leg 0's extents, under its id, its
    /// legs gone; kept, leg 0's metadata and leg 1 stay as LVs of their own.
    #[test]
    fn a_mirror_becomes_linear_on_its_first_leg_as_lvm2_makes_it() {
        let (from, lvm2) = (fixture("m2"), fixture("m3"));
        let ours = apply(
            &from,
            &convert("m", 0, &[], RemovedLegs::Dropped),
            &origin(),
        )
        .unwrap()
        .vg;
        assert_same_lvs(&ours, &lvm2);
        assert_eq!(ours.lv("m").unwrap().id, from.lv("m").unwrap().id);
        let removed = RemovedLegs::Kept {
            name_prefix: "wipe-".into(),
            tags: vec!["gone".into()],
        };
        let kept = apply(&from, &convert("m", 0, &[], removed), &origin())
            .unwrap()
            .vg;
        assert_eq!(
            kept.lv("m").unwrap().segments,
            lvm2.lv("m").unwrap().segments
        );
        for sub in ["m_rmeta_0", "m_rmeta_1", "m_rimage_1"] {
            let was = from.lv(sub).unwrap();
            let l = kept.lv(&format!("wipe-{}", was.id.compact())).unwrap();
            assert_eq!(l.segments, was.segments, "{sub}");
        }
        assert_eq!(kept.lvs.len(), 4);
    }

    /// Kept, the removed leg's linear sub-LVs stay as visible LVs named by their uuids
    /// with the tags asked for, on the extents they had; the integrity image over
    /// them goes.
    #[test]
    fn removed_legs_can_be_kept_as_lvs_of_their_own() {
        let from = fixture("n1");
        let removed = RemovedLegs::Kept {
            name_prefix: "wipe-".into(),
            tags: vec!["gone".into()],
        };
        let ours = apply(&from, &convert("n", 1, &["pv0"], removed), &origin())
            .unwrap()
            .vg;
        for sub in ["n_rmeta_0", "n_rimage_0_iorig", "n_rimage_0_imeta"] {
            let was = from.lv(sub).unwrap();
            let kept = ours.lv(&format!("wipe-{}", was.id.compact())).unwrap();
            assert_eq!(kept.segments, was.segments, "{sub}");
            assert!(kept.status.iter().any(|s| s == "VISIBLE"), "{sub}");
            assert_eq!(kept.tags, ["gone"]);
        }
        let image = from.lv("n_rimage_0").unwrap();
        assert!(ours.lvs.iter().all(|l| l.id != image.id));
        assert_eq!(ours.lvs.len(), from.lvs.len() - 1);
    }

    /// Bad requests are refused naming the value, the VG as it was: no leg left to
    /// mirror, more legs than PVs, PVs that hold no leg, an unknown PV, a leg still to
    /// be rebuilt, a volume that is no mirror.
    #[test]
    fn conversions_that_cannot_be_done_are_refused() {
        let vg = fixture("m1");
        let e = apply(
            &fixture("n1"),
            &convert("n", 0, &[], RemovedLegs::Dropped),
            &origin(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--raidintegrity n"), "{e}");
        let e = apply(&vg, &convert("m", 4, &[], RemovedLegs::Dropped), &origin()).unwrap_err();
        assert!(matches!(e, LvmError::Alloc { .. }), "{e}");
        let e = apply(
            &vg,
            &convert("m", 1, &["pv3"], RemovedLegs::Dropped),
            &origin(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("pv3"), "{e}");
        let e = apply(
            &vg,
            &convert("m", 1, &["pv9"], RemovedLegs::Dropped),
            &origin(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("pv9"), "{e}");
        let added = apply(
            &fixture("m0"),
            &convert("m", 2, &[], RemovedLegs::Dropped),
            &origin(),
        )
        .unwrap()
        .vg;
        let e = apply(
            &added,
            &convert("m", 1, &[], RemovedLegs::Dropped),
            &origin(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("REBUILD"), "{e}");
        let mut linear = vg.clone();
        linear.lvs.retain(|l| l.name == "m_rimage_0");
        linear.lvs[0].status.push("VISIBLE".into());
        let e = apply(
            &linear,
            &convert("m_rimage_0", 1, &[], RemovedLegs::Dropped),
            &origin(),
        )
        .unwrap_err();
        assert!(matches!(e, LvmError::LvUnsupported { .. }), "{e}");
    }
}
