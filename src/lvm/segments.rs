//! LV segments from allocations, and the segment surgery of a resize: continuing,
//! merging and cutting linear and striped segments as lvm2 does.

use crate::alloc::{self, Allocation};
use crate::model::{Area, Layout, LogicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::units::Extents;

/// Segments for an allocation, starting at LV extent `start`.
/// One linear segment per area, from LV extent `start`.
pub(super) fn linear_segments(
    vg: &VolumeGroup,
    mut start: Extents,
    areas: &[alloc::Area],
) -> Vec<Segment> {
    areas
        .iter()
        .map(|a| {
            let seg = Segment {
                start_extent: start,
                extent_count: a.count,
                kind: SegmentKind::Striped {
                    stripe_size: None,
                    stripes: vec![Area {
                        name: vg.pvs[a.pv].name.clone(),
                        start: a.start,
                    }],
                },
                tags: vec![],
                extra: Default::default(),
            };
            start += a.count;
            seg
        })
        .collect()
}

pub(super) fn segments_from(
    vg: &VolumeGroup,
    start: Extents,
    allocation: &Allocation,
    layout: Layout,
) -> Vec<Segment> {
    let area = |a: &alloc::Area| Area {
        name: vg.pvs[a.pv].name.clone(),
        start: a.start,
    };
    match allocation {
        Allocation::Linear(areas) => linear_segments(vg, start, areas),
        // Each leg becomes sub-LVs of its own (super::raid).
        Allocation::Mirrored { .. } => unreachable!("mirror legs are not segments of one LV"),
        Allocation::Striped { stripes } => {
            let Layout::Striped { stripe_size, .. } = layout else {
                unreachable!("striped allocation for a {layout} request")
            };
            let per = stripes.first().map_or(Extents::ZERO, |a| a.count);
            vec![Segment {
                start_extent: start,
                extent_count: Extents(per.0 * stripes.len() as u64),
                kind: SegmentKind::Striped {
                    stripe_size: Some(stripe_size),
                    stripes: stripes.iter().map(area).collect(),
                },
                tags: vec![],
                extra: Default::default(),
            }]
        }
    }
}

/// The PV run the LV ends on, when it is linear, so an extension can continue it.
pub(super) fn last_linear_area(vg: &VolumeGroup, lv: &LogicalVolume) -> Option<alloc::Area> {
    let seg = lv.segments.last()?;
    match &seg.kind {
        SegmentKind::Striped { stripes, .. } if stripes.len() == 1 => {
            let pv = vg.pvs.iter().position(|p| p.name == stripes[0].name)?;
            Some(alloc::Area {
                pv,
                start: stripes[0].start,
                count: seg.extent_count,
            })
        }
        _ => None,
    }
}

/// Joins consecutive linear segments that continue on the same PV, as lvm2 does.
pub(super) fn merge_adjacent(segments: &mut Vec<Segment>) {
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    for seg in segments.drain(..) {
        if let Some(prev) = out.last_mut() {
            if let (
                SegmentKind::Striped {
                    stripes: a,
                    stripe_size: None,
                },
                SegmentKind::Striped {
                    stripes: b,
                    stripe_size: None,
                },
            ) = (&prev.kind, &seg.kind)
            {
                if a.len() == 1
                    && b.len() == 1
                    && a[0].name == b[0].name
                    && a[0].start + prev.extent_count == b[0].start
                    && prev.tags == seg.tags
                    && prev.extra == seg.extra
                {
                    prev.extent_count += seg.extent_count;
                    continue;
                }
            }
        }
        out.push(seg);
    }
    *segments = out;
}

/// Shortens striped/linear segments so the LV has `target` extents.
pub(super) fn truncate_segments(segments: &mut Vec<Segment>, target: Extents) {
    segments.retain(|s| s.start_extent < target);
    if let Some(last) = segments.last_mut() {
        let end = last.start_extent + last.extent_count;
        if end > target {
            // A striped segment shrinks by whole stripes: `target` was rounded to them.
            last.extent_count = target - last.start_extent;
        }
    }
}
