//! Where a linear or striped LV's bytes lie on its PVs, computed from the metadata
//! alone: what lvmd zeroes when an LV gives extents back (removal, shrink) and the
//! edges it clears when it makes one. Device-mapper maps the same way (`linear` and
//! `striped` targets over `pe_start + extent * extent_size`), so this is what a reader
//! of the LV's device would see, without needing the device.

use super::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::units::{Extents, Sectors};

/// A run of whole extents on one PV (by the PV's name in the metadata).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PvExtents {
    pub pv: String,
    pub start: Extents,
    pub count: Extents,
}

/// A run of sectors on one PV, counted from the start of the device (`pe_start`
/// included).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PvSpan {
    pub pv: String,
    pub offset: Sectors,
    pub len: Sectors,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("{lv}: segment at extent {at} is {kind}; only linear and striped segments map to PV extents")]
    NotPlain { lv: String, at: u64, kind: String },
    #[error("{lv}: extent {at} is not at a row of its {stripes}-stripe segment (lvm2 cuts striped segments at whole rows)")]
    NotOnRow { lv: String, at: u64, stripes: usize },
    #[error("{lv}: segment at extent {at} refers to PV {pv}, which the VG does not have")]
    NoPv { lv: String, at: u64, pv: String },
    #[error("{lv}: its raid1 leg {sub} is not in the VG")]
    NoSubLv { lv: String, sub: String },
    #[error("{lv}: a raid1 volume gives back extents only whole (removal), not from extent {at}")]
    RaidPart { lv: String, at: u64 },
    #[error("{lv}: its thin pool sub-LV {sub} is not in the VG")]
    NoPoolSubLv { lv: String, sub: String },
    #[error("{lv}: a thin pool gives back extents only whole (removal), not from extent {at}")]
    PoolPart { lv: String, at: u64 },
}

/// A thin pool LV's (metadata, data) sub-LVs; `None` when the LV is no pool.
fn pool_parts<'a>(
    vg: &'a VolumeGroup,
    lv: &LogicalVolume,
) -> Option<Result<(&'a LogicalVolume, &'a LogicalVolume), PlacementError>> {
    let [seg] = lv.segments.as_slice() else {
        return None;
    };
    let SegmentKind::ThinPool { metadata, pool, .. } = &seg.kind else {
        return None;
    };
    let sub = |name: &String| {
        vg.lv(name).ok_or_else(|| PlacementError::NoPoolSubLv {
            lv: lv.name.clone(),
            sub: name.clone(),
        })
    };
    Some(sub(metadata).and_then(|m| Ok((m, sub(pool)?))))
}

/// A thin LV: its blocks are the pool's, on no PV extents of its own.
fn is_thin(lv: &LogicalVolume) -> bool {
    matches!(lv.segments.as_slice(), [seg] if matches!(seg.kind, SegmentKind::Thin { .. }))
}

/// A raid1 leg's sub-LVs that lie on PV extents: its metadata area, its data (the
/// image, or under lvm2's `--raidintegrity` the image's `_iorig`) and the integrity
/// metadata (`_imeta`) when there is one.
struct Leg<'a> {
    meta: &'a LogicalVolume,
    data: &'a LogicalVolume,
    imeta: Option<&'a LogicalVolume>,
}

/// A raid1 LV's legs; `None` when the LV is not raid1.
fn raid1_legs<'a>(
    vg: &'a VolumeGroup,
    lv: &LogicalVolume,
) -> Option<Result<Vec<Leg<'a>>, PlacementError>> {
    let [seg] = lv.segments.as_slice() else {
        return None;
    };
    let SegmentKind::Raid1 { legs, .. } = &seg.kind else {
        return None;
    };
    let sub = |name: &str| {
        vg.lv(name).ok_or_else(|| PlacementError::NoSubLv {
            lv: lv.name.clone(),
            sub: name.into(),
        })
    };
    Some(
        legs.iter()
            .map(|(m, i)| {
                let image = sub(i)?;
                Ok(match image.integrity_layer() {
                    Some((data, imeta)) => Leg {
                        meta: sub(m)?,
                        data: sub(data)?,
                        imeta: Some(sub(imeta)?),
                    },
                    None => Leg {
                        meta: sub(m)?,
                        data: image,
                        imeta: None,
                    },
                })
            })
            .collect(),
    )
}

/// The PV extents an LV gives back from logical extent `keep` on (all of them for 0, a
/// removal): [`extents_from`] for linear and striped LVs, every extent of every leg
/// (metadata and image) for a raid1 LV, which gives back only whole.
pub fn freed_extents(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    keep: Extents,
) -> Result<Vec<PvExtents>, PlacementError> {
    // A thin LV's blocks go back to its pool (the pool's `delete`, discards passed
    // down), not to the VG.
    if is_thin(lv) {
        return Ok(Vec::new());
    }
    if let Some(parts) = pool_parts(vg, lv) {
        if keep > Extents::ZERO {
            return Err(PlacementError::PoolPart {
                lv: lv.name.clone(),
                at: keep.0,
            });
        }
        let (meta, data) = parts?;
        let mut out = extents_from(meta, Extents::ZERO)?;
        out.extend(extents_from(data, Extents::ZERO)?);
        return Ok(out);
    }
    let Some(legs) = raid1_legs(vg, lv) else {
        return extents_from(lv, keep);
    };
    if keep > Extents::ZERO {
        return Err(PlacementError::RaidPart {
            lv: lv.name.clone(),
            at: keep.0,
        });
    }
    let mut out = Vec::new();
    for leg in legs? {
        for sub in [leg.meta, leg.data].into_iter().chain(leg.imeta) {
            out.extend(extents_from(sub, Extents::ZERO)?);
        }
    }
    Ok(out)
}

/// The PV extents a raid1 LV `lv` (as grown) holds past logical extent `from` (its size
/// before the grow): the grown part of every image. These are what lvmd zeroes before
/// a grown mirror is reloaded: dm-raid resyncs the grown region by copying the first
/// leg onto the others, and serves reads of a region not yet in sync from the first
/// leg, so whatever that leg's new extents held would be readable through the mirror
/// and copied onto every leg. Zeroed, the resync copies zeros onto zeros. Every leg is
/// zeroed, not only the first: if the first fails before the resync is done, reads of
/// the grown region come from another leg. `None`: not a raid1 LV.
pub fn raid1_grown_extents(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    from: Extents,
) -> Option<Result<Vec<PvExtents>, PlacementError>> {
    let legs = raid1_legs(vg, lv)?;
    Some(legs.and_then(|legs| {
        let mut out = Vec::new();
        for leg in legs {
            out.extend(extents_from(leg.data, from)?);
        }
        Ok(out)
    }))
}

/// What is cleared on a new LV: its [`edges`], and for a raid1 LV the edges of every
/// copy plus every metadata area whole (dm-raid must find no old superblock there, or
/// it could take stale legs for in sync; with integrity, each leg's `_imeta` too); for a thin pool its `_tmeta` whole, for a
/// thin LV nothing.
pub fn clear_on_create(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    edge: Sectors,
) -> Result<Vec<PvSpan>, PlacementError> {
    // A new thin LV reads as zeroes wherever the pool has provisioned nothing: nothing
    // of it lies on PV extents to clear.
    if is_thin(lv) {
        return Ok(Vec::new());
    }
    // A new pool: dm-thin formats an all-zero metadata device at first activation, and
    // takes anything else for a pool's metadata (another tenant's thin devices and
    // their blocks, mapped into this pool): `_tmeta` is cleared whole. Its data needs
    // nothing: unprovisioned blocks read as zeroes, and new blocks are zeroed
    // (`zero_new_blocks`) or written whole.
    if let Some(parts) = pool_parts(vg, lv) {
        let (meta, _) = parts?;
        let whole = vg.extent_size.span(meta.extents());
        return Ok(merge(spans_of(vg, meta, Sectors(0), whole)?));
    }
    let Some(legs) = raid1_legs(vg, lv) else {
        return edges(vg, lv, edge);
    };
    let mut out = Vec::new();
    for leg in legs? {
        // dm-integrity formats an all-zero metadata device at its first load and takes
        // anything else for an earlier one's superblock, journal and tags: `_imeta` is
        // cleared whole too (lvm2 zeroes it whole before its first activation).
        for whole in [leg.meta].into_iter().chain(leg.imeta) {
            let len = vg.extent_size.span(whole.extents());
            out.extend(spans_of(vg, whole, Sectors(0), len)?);
        }
        out.extend(edges(vg, leg.data, edge)?);
    }
    Ok(merge(out))
}

/// The PV extents that back the LV's logical extents from `from` to its end: all of
/// them for `from` 0 (a removal), what a shrink to `from` extents gives back otherwise.
/// A striped segment is cut by whole rows, as lvm2 cuts it: each stripe keeps
/// `(from - segment start) / stripes` extents.
pub fn extents_from(lv: &LogicalVolume, from: Extents) -> Result<Vec<PvExtents>, PlacementError> {
    let mut out = Vec::new();
    for seg in &lv.segments {
        let SegmentKind::Striped { stripes, .. } = &seg.kind else {
            return Err(PlacementError::NotPlain {
                lv: lv.name.clone(),
                at: seg.start_extent.0,
                kind: seg.kind.type_name().into(),
            });
        };
        let end = seg.start_extent + seg.extent_count;
        if end <= from || stripes.is_empty() {
            continue;
        }
        let n = stripes.len() as u64;
        let keep = from.0.saturating_sub(seg.start_extent.0);
        if keep % n != 0 {
            return Err(PlacementError::NotOnRow {
                lv: lv.name.clone(),
                at: from.0,
                stripes: stripes.len(),
            });
        }
        let per_stripe = seg.extent_count.0 / n;
        for a in stripes {
            out.push(PvExtents {
                pv: a.name.clone(),
                start: Extents(a.start.0 + keep / n),
                count: Extents(per_stripe - keep / n),
            });
        }
    }
    Ok(out)
}

/// The sectors of `extents` on their PV.
pub fn extents_span(vg: &VolumeGroup, e: &PvExtents) -> Option<PvSpan> {
    let pv = vg.pv(&e.pv)?;
    Some(PvSpan {
        pv: e.pv.clone(),
        offset: pv.pe_start + vg.extent_size.span(e.start),
        len: vg.extent_size.span(e.count),
    })
}

/// PV sectors that hold every sector of the LV's logical range `start .. start + len`
/// (clipped to the LV). Linear segments map exactly; a striped segment gives, on each
/// stripe, the whole rows of chunks the range touches: a superset, but never outside
/// the LV's own extents.
pub fn spans_of(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    start: Sectors,
    len: Sectors,
) -> Result<Vec<PvSpan>, PlacementError> {
    let es = vg.extent_size.sectors().0;
    let want_end = start.0.saturating_add(len.0);
    let mut out = Vec::new();
    for seg in &lv.segments {
        let SegmentKind::Striped {
            stripes,
            stripe_size,
        } = &seg.kind
        else {
            return Err(PlacementError::NotPlain {
                lv: lv.name.clone(),
                at: seg.start_extent.0,
                kind: seg.kind.type_name().into(),
            });
        };
        let seg_start = seg.start_extent.0 * es;
        let seg_end = seg_start + seg.extent_count.0 * es;
        let (a, b) = (start.0.max(seg_start), want_end.min(seg_end));
        if a >= b || stripes.is_empty() {
            continue;
        }
        let (a, b) = (a - seg_start, b - seg_start);
        let n = stripes.len() as u64;
        let per_stripe = seg.extent_count.0 / n * es;
        // Within the segment: one stripe maps straight through; N stripes interleave
        // chunks (chunk k on stripe k % N, at row k / N).
        let (from, to) = if n == 1 {
            (a, b)
        } else {
            let chunk = stripe_size.map_or(es, |s| s.0.max(1));
            let row = chunk * n;
            ((a / row) * chunk, (b.div_ceil(row) * chunk).min(per_stripe))
        };
        for area in stripes {
            let pv = vg.pv(&area.name).ok_or_else(|| PlacementError::NoPv {
                lv: lv.name.clone(),
                at: seg.start_extent.0,
                pv: area.name.clone(),
            })?;
            out.push(PvSpan {
                pv: area.name.clone(),
                offset: Sectors(pv.pe_start.0 + area.start.0 * es + from),
                len: Sectors(to - from),
            });
        }
    }
    Ok(merge(out))
}

/// The first and the last `edge` of the LV (the whole LV when it is smaller than both),
/// on its PVs: where lvm2 zeroes and wipes signatures at `lvcreate`, where filesystems
/// keep their primary superblocks, and where GPT backups and md/LUKS2 secondary
/// headers sit at the end of a device.
pub fn edges(
    vg: &VolumeGroup,
    lv: &LogicalVolume,
    edge: Sectors,
) -> Result<Vec<PvSpan>, PlacementError> {
    let size = vg.extent_size.span(lv.extents());
    let mut spans = spans_of(vg, lv, Sectors(0), edge.min(size))?;
    let tail = size.0.saturating_sub(edge.0);
    spans.extend(spans_of(vg, lv, Sectors(tail), Sectors(size.0 - tail))?);
    Ok(merge(spans))
}

/// Sorted, with overlapping or touching spans of one PV joined.
fn merge(mut spans: Vec<PvSpan>) -> Vec<PvSpan> {
    spans.retain(|s| s.len.0 > 0);
    spans.sort();
    let mut out: Vec<PvSpan> = Vec::new();
    for s in spans {
        if let Some(last) = out.last_mut() {
            if last.pv == s.pv && s.offset.0 <= last.offset.0 + last.len.0 {
                let end = (last.offset.0 + last.len.0).max(s.offset.0 + s.len.0);
                last.len = Sectors(end - last.offset.0);
                continue;
            }
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::text::Section;
    use crate::model::{Area, PhysicalVolume, Segment};
    use crate::units::ExtentSize;
    use crate::uuid::Uuid;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const ES: u64 = 8192; // 4 MiB extents, in sectors
    const PE_START: u64 = 2048;

    fn vg(pvs: usize, lvs: Vec<LogicalVolume>) -> VolumeGroup {
        VolumeGroup {
            name: "vg".into(),
            id: Uuid::random(),
            seqno: 1,
            status: vec![],
            flags: vec![],
            tags: vec![],
            extent_size: ExtentSize::new(Sectors(ES)).unwrap(),
            max_lv: 0,
            max_pv: 0,
            metadata_copies: 0,
            pvs: (0..pvs)
                .map(|i| PhysicalVolume {
                    name: format!("pv{i}"),
                    id: Uuid::random(),
                    device: None,
                    status: vec![],
                    flags: vec![],
                    tags: vec![],
                    dev_size: Sectors(1 << 30),
                    // Different data offsets per PV, so a mix-up shows.
                    pe_start: Sectors(PE_START * (i as u64 + 1)),
                    pe_count: Extents(100_000),
                    extra: Section::new(),
                })
                .collect(),
            lvs,
            extra: Section::new(),
        }
    }

    fn seg(start: u64, count: u64, stripe_size: Option<u64>, areas: &[(usize, u64)]) -> Segment {
        Segment {
            start_extent: Extents(start),
            extent_count: Extents(count),
            kind: SegmentKind::Striped {
                stripe_size: stripe_size.map(Sectors),
                stripes: areas
                    .iter()
                    .map(|&(pv, at)| Area {
                        name: format!("pv{pv}"),
                        start: Extents(at),
                    })
                    .collect(),
            },
            tags: vec![],
            extra: Section::new(),
        }
    }

    fn lv(segments: Vec<Segment>) -> LogicalVolume {
        LogicalVolume {
            name: "lv".into(),
            id: Uuid::random(),
            status: vec!["VISIBLE".into()],
            flags: vec![],
            tags: vec![],
            creation_time: None,
            creation_host: None,
            segments,
            extra: Section::new(),
        }
    }

    /// What device-mapper does with one logical sector: the (PV, device sector) it
    /// reads. Written from the kernel's linear and striped targets, sector by sector.
    fn dm_map(vg: &VolumeGroup, lv: &LogicalVolume, s: u64) -> (String, u64) {
        let seg = lv
            .segments
            .iter()
            .find(|g| s >= g.start_extent.0 * ES && s < (g.start_extent.0 + g.extent_count.0) * ES)
            .expect("sector inside the LV");
        let SegmentKind::Striped {
            stripes,
            stripe_size,
        } = &seg.kind
        else {
            unreachable!()
        };
        let rel = s - seg.start_extent.0 * ES;
        let (stripe, off) = if stripes.len() == 1 {
            (0, rel)
        } else {
            let c = stripe_size.unwrap().0;
            let n = stripes.len() as u64;
            let chunk = rel / c;
            ((chunk % n) as usize, (chunk / n) * c + rel % c)
        };
        let a = &stripes[stripe];
        let pv = vg.pv(&a.name).unwrap();
        (a.name.clone(), pv.pe_start.0 + a.start.0 * ES + off)
    }

    fn covered(spans: &[PvSpan], pv: &str, sector: u64) -> bool {
        spans
            .iter()
            .any(|x| x.pv == pv && sector >= x.offset.0 && sector < x.offset.0 + x.len.0)
    }

    /// Every (PV, extent) an LV holds, extent by extent.
    fn held(lv: &LogicalVolume) -> BTreeSet<(String, u64)> {
        let mut out = BTreeSet::new();
        for s in &lv.segments {
            let SegmentKind::Striped { stripes, .. } = &s.kind else {
                unreachable!()
            };
            let per = s.extent_count.0 / stripes.len() as u64;
            for a in stripes {
                for e in 0..per {
                    out.insert((a.name.clone(), a.start.0 + e));
                }
            }
        }
        out
    }

    fn expand(list: &[PvExtents]) -> BTreeSet<(String, u64)> {
        list.iter()
            .flat_map(|e| (0..e.count.0).map(move |i| (e.pv.clone(), e.start.0 + i)))
            .collect()
    }

    #[test]
    fn linear_segments_map_straight_through_across_pvs() {
        // 3 extents on pv0 at 10, then 2 on pv1 at 0, then 1 on pv0 at 50.
        let l = lv(vec![
            seg(0, 3, None, &[(0, 10)]),
            seg(3, 2, None, &[(1, 0)]),
            seg(5, 1, None, &[(0, 50)]),
        ]);
        let g = vg(2, vec![]);
        // The last sector of extent 2 and the first of extent 3: one on each PV.
        let spans = spans_of(&g, &l, Sectors(3 * ES - 1), Sectors(2)).unwrap();
        assert_eq!(
            spans,
            vec![
                PvSpan {
                    pv: "pv0".into(),
                    offset: Sectors(PE_START + 13 * ES - 1),
                    len: Sectors(1)
                },
                PvSpan {
                    pv: "pv1".into(),
                    offset: Sectors(2 * PE_START),
                    len: Sectors(1)
                },
            ]
        );
        // Edges of 1 MiB: the head on pv0 at extent 10, the tail at the end of extent 50.
        let e = edges(&g, &l, Sectors(2048)).unwrap();
        assert_eq!(
            e,
            vec![
                PvSpan {
                    pv: "pv0".into(),
                    offset: Sectors(PE_START + 10 * ES),
                    len: Sectors(2048)
                },
                PvSpan {
                    pv: "pv0".into(),
                    offset: Sectors(PE_START + 51 * ES - 2048),
                    len: Sectors(2048)
                },
            ]
        );
        // Everything from extent 4 on: the rest of pv1's run, and pv0's last extent.
        assert_eq!(
            extents_from(&l, Extents(4)).unwrap(),
            vec![
                PvExtents {
                    pv: "pv1".into(),
                    start: Extents(1),
                    count: Extents(1)
                },
                PvExtents {
                    pv: "pv0".into(),
                    start: Extents(50),
                    count: Extents(1)
                },
            ]
        );
    }

    #[test]
    fn striped_rows_cover_every_stripe() {
        // 2 stripes of 64 KiB (128 sectors), 4 extents: 2 per stripe.
        let l = lv(vec![seg(0, 4, Some(128), &[(0, 5), (1, 7)])]);
        let g = vg(2, vec![]);
        // The first MiB is 8 rows of 2 chunks: 8 chunks (1024 sectors) on each stripe.
        let spans = spans_of(&g, &l, Sectors(0), Sectors(2048)).unwrap();
        assert_eq!(
            spans,
            vec![
                PvSpan {
                    pv: "pv0".into(),
                    offset: Sectors(PE_START + 5 * ES),
                    len: Sectors(1024)
                },
                PvSpan {
                    pv: "pv1".into(),
                    offset: Sectors(2 * PE_START + 7 * ES),
                    len: Sectors(1024)
                },
            ]
        );
        // A shrink from 4 to 2 extents gives back the second extent of each stripe.
        assert_eq!(
            expand(&extents_from(&l, Extents(2)).unwrap()),
            [("pv0".to_string(), 6), ("pv1".to_string(), 8)].into()
        );
        // Not at a row: refused, never guessed.
        assert!(matches!(
            extents_from(&l, Extents(1)),
            Err(PlacementError::NotOnRow { stripes: 2, .. })
        ));
    }

    #[test]
    fn other_segment_types_are_refused() {
        let mut l = lv(vec![seg(0, 1, None, &[(0, 0)])]);
        l.segments[0].kind = SegmentKind::Other {
            type_name: "mirror".into(),
            body: Section::new(),
        };
        assert!(matches!(
            extents_from(&l, Extents(0)),
            Err(PlacementError::NotPlain { .. })
        ));
        assert!(spans_of(&vg(1, vec![]), &l, Sectors(0), Sectors(1)).is_err());
    }

    /// An LV of random linear and striped segments on 4 PVs, not overlapping.
    fn arb_lv() -> impl Strategy<Value = LogicalVolume> {
        let segment = (1usize..=4, 1u64..=4, 0u32..=3);
        prop::collection::vec(segment, 1..=4).prop_map(|segs| {
            let mut out = Vec::new();
            let mut at = 0;
            let mut next_free = [0u64; 4];
            for (i, (stripes, per_stripe, chunk_log)) in segs.into_iter().enumerate() {
                // Chunks of 8 .. 64 KiB (16 .. 128 sectors); gaps between areas.
                let chunk = 16u64 << chunk_log;
                let areas: Vec<(usize, u64)> = (0..stripes)
                    .map(|s| {
                        let pv = (s + i) % 4;
                        let start = next_free[pv] + 1;
                        next_free[pv] = start + per_stripe;
                        (pv, start)
                    })
                    .collect();
                let count = per_stripe * stripes as u64;
                let ss = (stripes > 1).then_some(chunk);
                out.push(seg(at, count, ss, &areas));
                at += count;
            }
            lv(out)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every logical sector of a range is covered where device-mapper puts it, and
        /// nothing outside the LV's own extents is touched.
        #[test]
        fn spans_cover_what_device_mapper_maps(l in arb_lv(), a in 0u64..1000, b in 0u64..1000) {
            let g = vg(4, vec![]);
            let size = l.extents().0 * ES;
            let (a, b) = ((a * size / 1000).min(b * size / 1000), (a * size / 1000).max(b * size / 1000));
            let spans = spans_of(&g, &l, Sectors(a), Sectors(b - a)).unwrap();
            // Sample the range (every sector for small ranges).
            let step = ((b - a) / 4000).max(1);
            let mut s = a;
            while s < b {
                let (pv, at) = dm_map(&g, &l, s);
                prop_assert!(covered(&spans, &pv, at), "sector {s} -> {pv}:{at} not in {spans:?}");
                s += step;
            }
            if b > a {
                let (pv, at) = dm_map(&g, &l, b - 1);
                prop_assert!(covered(&spans, &pv, at));
            }
            let own = held(&l);
            for x in &spans {
                let pe = g.pv(&x.pv).unwrap().pe_start.0;
                let first = (x.offset.0 - pe) / ES;
                let last = (x.offset.0 + x.len.0 - 1 - pe) / ES;
                for e in first..=last {
                    prop_assert!(own.contains(&(x.pv.clone(), e)), "{x:?} leaves the LV");
                }
            }
            // Linear LVs map exactly: no sector more than asked.
            if l.segments.iter().all(|sg| matches!(&sg.kind, SegmentKind::Striped { stripes, .. } if stripes.len() == 1)) {
                prop_assert_eq!(spans.iter().map(|x| x.len.0).sum::<u64>(), b - a);
            }
        }

        /// A shrink gives back exactly the extents the LV holds before and not after,
        /// cutting each segment as lvm2 does; a removal gives back all of them.
        #[test]
        fn extents_from_is_what_a_cut_frees(l in arb_lv(), cut in 0u64..1000) {
            prop_assert_eq!(expand(&extents_from(&l, Extents(0)).unwrap()), held(&l));
            let total = l.extents().0;
            let want = cut * total / 1000;
            // Round down to a row of the segment it falls in, as lvm2 rounds.
            let seg = l.segments.iter().find(|s| want < s.start_extent.0 + s.extent_count.0).unwrap();
            let SegmentKind::Striped { stripes, .. } = &seg.kind else { unreachable!() };
            let n = stripes.len() as u64;
            let target = seg.start_extent.0 + (want - seg.start_extent.0) / n * n;
            let mut after = l.clone();
            after.segments.retain(|s| s.start_extent.0 < target);
            if let Some(last) = after.segments.last_mut() {
                last.extent_count = Extents(target - last.start_extent.0);
            }
            let freed: BTreeSet<_> = held(&l).difference(&held(&after)).cloned().collect();
            prop_assert_eq!(expand(&extents_from(&l, Extents(target)).unwrap()), freed);
        }
    }
}
