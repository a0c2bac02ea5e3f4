use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn pv(index: usize, pe: u64, used: &[(u64, u64)]) -> PvSpace {
    PvSpace {
        index,
        pe_count: Extents(pe),
        allocatable: true,
        used: used.iter().map(|&(s, c)| ExtentRange::new(s, c)).collect(),
    }
}

fn area(pv: usize, start: u64, count: u64) -> Area {
    Area {
        pv,
        start: Extents(start),
        count: Extents(count),
    }
}

fn linear(pvs: &[PvSpace], req: &Request) -> Vec<Area> {
    match allocate(pvs, req).unwrap() {
        Allocation::Linear(areas) => areas,
        other => panic!("expected linear, got {other:?}"),
    }
}

fn striped(pvs: &[PvSpace], req: &Request) -> Vec<Area> {
    match allocate(pvs, req).unwrap() {
        Allocation::Striped { stripes } => stripes,
        other => panic!("expected striped, got {other:?}"),
    }
}

/// A PV whose free space is exactly the given runs (start, count).
fn pv_with_runs(index: usize, pe: u64, runs: &[(u64, u64)]) -> PvSpace {
    let mut used = Vec::new();
    let mut cursor = 0;
    for &(s, c) in runs {
        if s > cursor {
            used.push((cursor, s - cursor));
        }
        cursor = s + c;
    }
    if pe > cursor {
        used.push((cursor, pe - cursor));
    }
    pv(index, pe, &used)
}

#[test]
fn free_space_normalises_overlapping_unsorted_ranges() {
    let pvs = [pv(
        7,
        100,
        &[
            (50, 10),
            (10, 5),
            (12, 10),
            (22, 3),
            (90, 10),
            (0, 0),
            (55, 2),
        ],
    )];
    let fs = FreeSpace::new(&pvs).unwrap();
    let free: Vec<Area> = fs.free_areas().collect();
    assert_eq!(free, [area(7, 0, 10), area(7, 25, 25), area(7, 60, 30)]);
    assert_eq!(fs.free_extents(), Extents(65));
    assert_eq!(free_extents(&pvs).unwrap(), Extents(65));
}

#[test]
fn used_range_past_end_is_an_error() {
    let err = FreeSpace::new(&[pv(0, 10, &[]), pv(3, 10, &[(8, 3)])]).unwrap_err();
    assert_eq!(
        err,
        AllocError::UsedPastEnd {
            pv: 3,
            range: ExtentRange::new(8, 3),
            pe_count: Extents(10),
        }
    );
    assert!(err.to_string().contains("PV 3"), "{err}");
    // start + count overflowing must not wrap into range.
    let err = allocate(&[pv(1, 10, &[(u64::MAX, 2)])], &Request::linear(Extents(1))).unwrap_err();
    assert!(matches!(err, AllocError::UsedPastEnd { pv: 1, .. }));
    // An empty range exactly at the end is fine.
    assert!(FreeSpace::new(&[pv(0, 10, &[(10, 0)])]).is_ok());
}

#[test]
fn duplicate_pv_index_is_an_error() {
    let err = FreeSpace::new(&[pv(2, 10, &[]), pv(1, 10, &[]), pv(2, 5, &[])]).unwrap_err();
    assert_eq!(err, AllocError::DuplicatePv { pv: 2 });
}

#[test]
fn request_validation() {
    let pvs = [pv(0, 100, &[]), pv(1, 100, &[])];
    assert_eq!(
        allocate(&pvs, &Request::linear(Extents(0))),
        Err(AllocError::ZeroSize)
    );
    assert_eq!(
        allocate(&pvs, &Request::striped(Extents(0), 2)),
        Err(AllocError::ZeroSize)
    );
    assert_eq!(
        allocate(&pvs, &Request::striped(Extents(10), 0)),
        Err(AllocError::ZeroStripes)
    );
    assert_eq!(
        allocate(&pvs, &Request::striped(Extents(11), 2)),
        Err(AllocError::StripesDoNotDivide {
            extents: Extents(11),
            stripes: 2
        })
    );
}

#[test]
fn linear_best_fit_takes_the_smallest_run_that_fits() {
    let pvs = [
        pv_with_runs(0, 100, &[(0, 30), (40, 12), (60, 12)]),
        pv_with_runs(1, 100, &[(5, 10)]),
        pv_with_runs(2, 100, &[(0, 12)]),
    ];
    // 12-runs on PV 0 (twice) and PV 2 tie: lowest PV index, then lowest start.
    assert_eq!(
        linear(&pvs, &Request::linear(Extents(11))),
        [area(0, 40, 11)]
    );
    assert_eq!(
        linear(&pvs, &Request::linear(Extents(10))),
        [area(1, 5, 10)]
    );
    assert_eq!(
        linear(&pvs, &Request::linear(Extents(13))),
        [area(0, 0, 13)]
    );
}

#[test]
fn linear_fills_from_the_largest_runs_when_nothing_fits_whole() {
    let pvs = [
        pv_with_runs(0, 50, &[(0, 5)]),
        pv_with_runs(1, 50, &[(10, 8)]),
        pv_with_runs(2, 50, &[(0, 3), (20, 6)]),
    ];
    // 8 + 6 whole, then the last extent best-fits into the 3-run, not the 5-run.
    assert_eq!(
        linear(&pvs, &Request::linear(Extents(15))),
        [area(1, 10, 8), area(2, 20, 6), area(2, 0, 1)]
    );
    assert_eq!(
        linear(&pvs, &Request::linear(Extents(22))),
        [area(1, 10, 8), area(2, 20, 6), area(0, 0, 5), area(2, 0, 3)]
    );
}

#[test]
fn linear_no_space_reports_needed_and_free() {
    let mut pvs = vec![pv(0, 10, &[(0, 4)]), pv(1, 5, &[]), pv(2, 100, &[])];
    pvs[2].allocatable = false;
    assert_eq!(
        allocate(&pvs, &Request::linear(Extents(12))),
        Err(AllocError::NoSpace {
            needed: Extents(12),
            free: Extents(11)
        })
    );
    assert_eq!(free_extents(&pvs).unwrap(), Extents(11));
    let msg = allocate(&pvs, &Request::linear(Extents(12)))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("12e") && msg.contains("11e"), "{msg}");
}

#[test]
fn non_allocatable_pvs_are_never_used() {
    let mut pvs = vec![pv(0, 100, &[]), pv(1, 20, &[])];
    pvs[0].allocatable = false;
    assert_eq!(
        linear(&pvs, &Request::linear(Extents(20))),
        [area(1, 0, 20)]
    );
    assert!(allocate(&pvs, &Request::linear(Extents(21))).is_err());
    assert_eq!(
        allocate(&pvs, &Request::striped(Extents(2), 2)),
        Err(AllocError::NotEnoughPvs {
            stripes: 2,
            usable: 1
        })
    );
    // Even a contiguous-extension hint does not reach a non-allocatable PV.
    let req = Request::linear(Extents(5)).after(area(0, 0, 10));
    assert_eq!(linear(&pvs, &req), [area(1, 0, 5)]);
}

#[test]
fn pvs_allowed_restricts_placement() {
    let pvs = [pv(0, 10, &[]), pv(1, 50, &[]), pv(2, 30, &[])];
    let req = Request::linear(Extents(35)).on_pvs(vec![0, 2, 99]);
    assert_eq!(linear(&pvs, &req), [area(2, 0, 30), area(0, 0, 5)]);
    assert_eq!(
        allocate(&pvs, &Request::linear(Extents(41)).on_pvs(vec![0, 2])),
        Err(AllocError::NoSpace {
            needed: Extents(41),
            free: Extents(40)
        })
    );
    assert_eq!(
        allocate(&pvs, &Request::linear(Extents(1)).on_pvs(vec![])),
        Err(AllocError::NoSpace {
            needed: Extents(1),
            free: Extents(0)
        })
    );
    let req = Request::striped(Extents(20), 2).on_pvs(vec![1, 2]);
    assert_eq!(striped(&pvs, &req), [area(1, 0, 10), area(2, 0, 10)]);
}

#[test]
fn extension_continues_after_the_last_area() {
    // PV 0: the LV holds 0..10, something else 50..60. PV 1 has an exact 5-run that
    // best fit alone would pick.
    let pvs = [
        pv(0, 100, &[(0, 10), (50, 10)]),
        pv_with_runs(1, 100, &[(0, 5)]),
    ];
    let last = area(0, 0, 10);
    assert_eq!(
        linear(&pvs, &Request::linear(Extents(5)).after(last)),
        [area(0, 10, 5)]
    );
    // The run after the LV holds 40; the rest goes by the usual rules.
    assert_eq!(
        linear(&pvs, &Request::linear(Extents(45)).after(last)),
        [area(0, 10, 40), area(1, 0, 5)]
    );
    // Without the hint: best fit.
    assert_eq!(linear(&pvs, &Request::linear(Extents(5))), [area(1, 0, 5)]);
}

#[test]
fn extension_hint_is_ignored_when_it_cannot_help() {
    let pvs = [pv(0, 100, &[(0, 10), (10, 5)]), pv(1, 5, &[])];
    // The extents after the LV are used.
    let req = Request::linear(Extents(5)).after(area(0, 0, 10));
    assert_eq!(linear(&pvs, &req), [area(1, 0, 5)]);
    // Its PV is not allowed.
    let req = Request::linear(Extents(5))
        .after(area(0, 0, 15))
        .on_pvs(vec![1]);
    assert_eq!(linear(&pvs, &req), [area(1, 0, 5)]);
    // The LV ends at the end of its PV, or the hint names no PV we know.
    let pvs = [pv(0, 10, &[(0, 10)]), pv(1, 5, &[])];
    for last in [area(0, 0, 10), area(9, 0, 3), area(0, u64::MAX, 1)] {
        let req = Request::linear(Extents(5)).after(last);
        assert_eq!(linear(&pvs, &req), [area(1, 0, 5)]);
    }
}

#[test]
fn extension_leaves_the_rest_of_the_run_usable() {
    // Hint in the middle of a free run (the caller's LV just ended there): the pieces
    // either side are still free for the remainder of the request.
    let pvs = [pv(0, 30, &[(0, 5)])];
    let req = Request::linear(Extents(25)).after(area(0, 5, 5));
    assert_eq!(linear(&pvs, &req), [area(0, 10, 20), area(0, 5, 5)]);
}

#[test]
fn adjacent_areas_merge() {
    let areas = vec![
        area(0, 0, 5),
        area(0, 5, 5),
        area(1, 10, 1),
        area(0, 10, 1),
        area(0, 11, 2),
    ];
    assert_eq!(
        merge_contiguous(areas),
        [area(0, 0, 10), area(1, 10, 1), area(0, 10, 3)]
    );
}

#[test]
fn striped_uses_distinct_pvs_with_best_fitting_runs() {
    let pvs = [
        pv_with_runs(0, 100, &[(0, 20)]),
        pv_with_runs(1, 100, &[(0, 50)]),
        pv_with_runs(2, 100, &[(30, 10)]),
        pv_with_runs(3, 100, &[(0, 40), (60, 15)]),
    ];
    // 10 per stripe: the PVs with the smallest fitting runs are 2 (10), 3 (15), 0 (20).
    assert_eq!(
        striped(&pvs, &Request::striped(Extents(30), 3)),
        [area(0, 0, 10), area(2, 30, 10), area(3, 60, 10)]
    );
    // 16 per stripe: PV 2 cannot; PV 3 uses its 40-run.
    assert_eq!(
        striped(&pvs, &Request::striped(Extents(32), 2)),
        [area(0, 0, 16), area(3, 0, 16)]
    );
    // One stripe: a single contiguous run.
    assert_eq!(
        striped(&pvs, &Request::striped(Extents(45), 1)),
        [area(1, 0, 45)]
    );
}

#[test]
fn striped_errors() {
    let pvs = [
        pv_with_runs(0, 100, &[(0, 5), (10, 5)]),
        pv_with_runs(1, 100, &[(0, 20)]),
        pv_with_runs(2, 100, &[(0, 20)]),
        pv(3, 10, &[(0, 10)]),
    ];
    // PV 3 is full, so only three PVs have space.
    assert_eq!(
        allocate(&pvs, &Request::striped(Extents(4), 4)),
        Err(AllocError::NotEnoughPvs {
            stripes: 4,
            usable: 3
        })
    );
    assert_eq!(
        allocate(&pvs, &Request::striped(Extents(60), 3)),
        Err(AllocError::NoSpace {
            needed: Extents(60),
            free: Extents(50)
        })
    );
    // 50 free in total, but PV 0's space is in two runs of 5.
    let err = allocate(&pvs, &Request::striped(Extents(30), 3)).unwrap_err();
    assert_eq!(
        err,
        AllocError::NoStripeSpace {
            stripes: 3,
            per_stripe: Extents(10),
            fitting: 2
        }
    );
    assert!(err.to_string().contains("only 2"), "{err}");
}

#[test]
fn largest_allocation_per_layout() {
    let mut pvs = vec![
        pv_with_runs(0, 100, &[(0, 20), (50, 5)]),
        pv_with_runs(1, 100, &[(0, 50)]),
        pv_with_runs(2, 100, &[(30, 10)]),
        pv_with_runs(3, 100, &[(0, 30)]),
        pv(4, 1000, &[]),
    ];
    pvs[4].allocatable = false;
    let largest = |layout| largest_allocation(&pvs, layout).unwrap();
    assert_eq!(largest(Shape::Linear), Extents(115));
    assert_eq!(largest(Shape::Striped { stripes: 1 }), Extents(50));
    // Third-longest per-PV run is 20.
    assert_eq!(largest(Shape::Striped { stripes: 3 }), Extents(60));
    assert_eq!(largest(Shape::Striped { stripes: 4 }), Extents(40));
    assert_eq!(largest(Shape::Striped { stripes: 5 }), Extents(0));
    assert_eq!(largest(Shape::Striped { stripes: 0 }), Extents(0));
}

#[test]
fn allocation_accessors() {
    let a = Allocation::Linear(vec![area(0, 0, 3), area(1, 4, 5)]);
    assert_eq!(a.extents(), Extents(8));
    assert_eq!(a.areas().len(), 2);
    assert_eq!(area(1, 4, 5).end(), Extents(9));
}

// ---- properties, against a per-extent bitmap model ----

/// Each PV as one bool per extent: `true` = used.
struct Model {
    pvs: BTreeMap<usize, (bool, Vec<bool>)>,
}

impl Model {
    fn new(pvs: &[PvSpace]) -> Model {
        let mut map = BTreeMap::new();
        for p in pvs {
            let mut used = vec![false; p.pe_count.0 as usize];
            for r in &p.used {
                for e in r.start.0..r.start.0 + r.count.0 {
                    used[e as usize] = true;
                }
            }
            map.insert(p.index, (p.allocatable, used));
        }
        Model { pvs: map }
    }

    fn usable(&self, req: &Request) -> Vec<usize> {
        self.pvs
            .iter()
            .filter(|(i, (alloc, _))| {
                *alloc && req.pvs_allowed.as_ref().is_none_or(|a| a.contains(i))
            })
            .map(|(i, _)| *i)
            .collect()
    }

    fn is_free(&self, pv: usize, e: u64) -> bool {
        self.pvs
            .get(&pv)
            .and_then(|(_, used)| used.get(e as usize))
            .is_some_and(|u| !u)
    }

    /// Lengths of the maximal free runs.
    fn runs(&self, pv: usize) -> Vec<u64> {
        let used = &self.pvs[&pv].1;
        let mut runs = Vec::new();
        let mut len = 0;
        for &u in used.iter().chain([true].iter()) {
            if u {
                if len > 0 {
                    runs.push(len);
                }
                len = 0;
            } else {
                len += 1;
            }
        }
        runs
    }

    fn free(&self, pv: usize) -> u64 {
        self.runs(pv).iter().sum()
    }
}

fn arb_pv(index: usize) -> impl Strategy<Value = PvSpace> {
    (0u64..48, prop::bool::weighted(0.85)).prop_flat_map(move |(pe, allocatable)| {
        // Short ranges, so that a fair share of requests fit.
        let range = (0..=pe).prop_flat_map(move |s| (Just(s), 0..=(pe - s).min(12)));
        prop::collection::vec(range, 0..6).prop_map(move |used| PvSpace {
            index,
            pe_count: Extents(pe),
            allocatable,
            used: used
                .into_iter()
                .map(|(s, c)| ExtentRange::new(s, c))
                .collect(),
        })
    })
}

/// PV indices are spaced out so that requests can name unknown ones.
fn arb_pvs() -> impl Strategy<Value = Vec<PvSpace>> {
    (1usize..7).prop_flat_map(|n| (0..n).map(|i| arb_pv(i * 3 + 1)).collect::<Vec<_>>())
}

fn arb_request() -> impl Strategy<Value = Request> {
    let layout_extents = prop_oneof![
        2 => (0u64..60).prop_map(|e| (Shape::Linear, e)),
        // Mostly divisible, so that striped requests get past validation.
        1 => (1u32..5, 0u64..40)
            .prop_map(|(s, per)| (Shape::Striped { stripes: s }, per * u64::from(s))),
        1 => (0u32..5, 0u64..60).prop_map(|(s, e)| (Shape::Striped { stripes: s }, e)),
        1 => (0u32..5, 0u64..40).prop_map(|(l, e)| (Shape::Mirrored { legs: l }, e)),
    ];
    let allowed = prop::option::weighted(0.3, prop::collection::vec(0usize..20, 0..5));
    (layout_extents, allowed).prop_map(|((layout, extents), pvs_allowed)| Request {
        extents: Extents(extents),
        shape: layout,
        pvs_allowed,
        after: None,
    })
}

/// PVs and a request whose extension hint, if any, is usually one of the used ranges
/// (as an LV's last area would be), sometimes anything at all.
fn arb_case() -> impl Strategy<Value = (Vec<PvSpace>, Request)> {
    (arb_pvs(), arb_request()).prop_flat_map(|(pvs, req)| {
        let used: Vec<Area> = pvs
            .iter()
            .flat_map(|p| p.used.iter().map(|r| area(p.index, r.start.0, r.count.0)))
            .collect();
        let anything = (0usize..20, 0u64..50, 0u64..10).prop_map(|(pv, s, c)| area(pv, s, c));
        let after = if used.is_empty() {
            prop::option::weighted(0.2, anything).boxed()
        } else {
            prop_oneof![
                2 => Just(None),
                2 => prop::sample::select(used).prop_map(Some),
                1 => anything.prop_map(Some),
            ]
            .boxed()
        };
        (Just(pvs), Just(req), after).prop_map(|(pvs, mut req, after)| {
            req.after = after;
            (pvs, req)
        })
    })
}

/// (b) inside the PV, on free extents of a usable PV; (c) no two areas share an extent.
fn check_areas(model: &Model, usable: &[usize], areas: &[Area]) {
    let mut seen = BTreeSet::new();
    for a in areas {
        assert!(a.count.0 > 0, "empty area {a:?}");
        assert!(usable.contains(&a.pv), "area {a:?} on an unusable PV");
        for e in a.start.0..a.end().0 {
            assert!(model.is_free(a.pv, e), "area {a:?} takes used extent {e}");
            assert!(seen.insert((a.pv, e)), "extent {e} on PV {} twice", a.pv);
        }
    }
}

/// Fewest runs whose lengths add up to `needed`.
fn min_areas(mut runs: Vec<u64>, needed: u64) -> usize {
    runs.sort_unstable_by(|a, b| b.cmp(a));
    let mut total = 0;
    for (i, r) in runs.iter().enumerate() {
        total += r;
        if total >= needed {
            return i + 1;
        }
    }
    unreachable!("only called when the space suffices")
}

fn check_linear(model: &Model, req: &Request, result: Result<Allocation, AllocError>) {
    let needed = req.extents.0;
    let usable = model.usable(req);
    let free: u64 = usable.iter().map(|&p| model.free(p)).sum();
    if needed == 0 {
        assert_eq!(result, Err(AllocError::ZeroSize));
        return;
    }
    if free < needed {
        // (e) it fails only when the space really is short, and says how short.
        assert_eq!(
            result,
            Err(AllocError::NoSpace {
                needed: req.extents,
                free: Extents(free)
            })
        );
        return;
    }
    let Ok(Allocation::Linear(areas)) = result else {
        panic!("{free} free for {needed}, yet {result:?}");
    };
    // (a)
    assert_eq!(areas.iter().map(|a| a.count.0).sum::<u64>(), needed);
    check_areas(model, &usable, &areas);
    for w in areas.windows(2) {
        assert!(
            !(w[0].pv == w[1].pv && w[0].end() == w[1].start),
            "unmerged {w:?}"
        );
    }
    match req.after {
        Some(last) => {
            let at = last.start.0.checked_add(last.count.0);
            if let Some(at) =
                at.filter(|&at| usable.contains(&last.pv) && model.is_free(last.pv, at))
            {
                assert_eq!((areas[0].pv, areas[0].start.0), (last.pv, at));
            }
        }
        None => {
            let runs = usable.iter().flat_map(|&p| model.runs(p)).collect();
            assert_eq!(areas.len(), min_areas(runs, needed), "{areas:?}");
        }
    }
}

fn check_striped(
    model: &Model,
    req: &Request,
    stripes: u32,
    result: Result<Allocation, AllocError>,
) {
    let extents = req.extents.0;
    let n = stripes as usize;
    let expected_err = if stripes == 0 {
        Some(AllocError::ZeroStripes)
    } else if extents == 0 {
        Some(AllocError::ZeroSize)
    } else if extents % u64::from(stripes) != 0 {
        Some(AllocError::StripesDoNotDivide {
            extents: req.extents,
            stripes,
        })
    } else {
        let per = extents / u64::from(stripes);
        let usable = model.usable(req);
        let with_space = usable.iter().filter(|&&p| model.free(p) > 0).count();
        let free: u64 = usable.iter().map(|&p| model.free(p)).sum();
        let fitting = usable
            .iter()
            .filter(|&&p| model.runs(p).iter().any(|&r| r >= per))
            .count();
        if with_space < n {
            Some(AllocError::NotEnoughPvs {
                stripes,
                usable: with_space,
            })
        } else if free < extents {
            Some(AllocError::NoSpace {
                needed: req.extents,
                free: Extents(free),
            })
        } else if fitting < n {
            Some(AllocError::NoStripeSpace {
                stripes,
                per_stripe: Extents(per),
                fitting,
            })
        } else {
            None
        }
    };
    if let Some(err) = expected_err {
        assert_eq!(result, Err(err));
        return;
    }
    let Ok(Allocation::Striped { stripes: areas }) = result else {
        panic!("expected a striped allocation, got {result:?}");
    };
    // (d) one area per stripe, equal counts, distinct PVs (strictly sorted by PV).
    assert_eq!(areas.len(), n);
    assert!(areas
        .iter()
        .all(|a| a.count.0 == extents / u64::from(stripes)));
    assert!(areas.windows(2).all(|w| w[0].pv < w[1].pv), "{areas:?}");
    check_areas(model, &model.usable(req), &areas);
}

fn check_mirrored(model: &Model, req: &Request, legs: u32, result: Result<Allocation, AllocError>) {
    let per = req.extents.0;
    let usable = model.usable(req);
    let fitting = usable.iter().filter(|&&p| model.free(p) >= per).count();
    let expected_err = if legs == 0 {
        Some(AllocError::ZeroLegs)
    } else if per == 0 {
        Some(AllocError::ZeroSize)
    } else if fitting < legs as usize {
        Some(AllocError::NoMirrorSpace {
            legs,
            per_leg: req.extents,
            fitting,
        })
    } else {
        None
    };
    if let Some(err) = expected_err {
        assert_eq!(result, Err(err));
        return;
    }
    let Ok(Allocation::Mirrored { legs: placed }) = result else {
        panic!("expected a mirrored allocation, got {result:?}");
    };
    // One leg per copy, each whole and on one PV, no PV shared by two legs.
    assert_eq!(placed.len(), legs as usize);
    let mut pvs = Vec::new();
    for leg in &placed {
        assert_eq!(leg.iter().map(|a| a.count.0).sum::<u64>(), per, "{leg:?}");
        assert!(leg.iter().all(|a| a.pv == leg[0].pv), "{leg:?}");
        pvs.push(leg[0].pv);
    }
    let n = pvs.len();
    pvs.sort_unstable();
    pvs.dedup();
    assert_eq!(pvs.len(), n, "two legs share a PV: {placed:?}");
    check_areas(model, &usable, &placed.concat());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn allocations_are_sound((pvs, req) in arb_case()) {
        let model = Model::new(&pvs);
        let result = allocate(&pvs, &req);
        match req.shape {
            Shape::Linear => check_linear(&model, &req, result),
            Shape::Striped { stripes } => check_striped(&model, &req, stripes, result),
            Shape::Mirrored { legs } => check_mirrored(&model, &req, legs, result),
        }
    }

    /// The answer depends on the space, not on the order the caller listed it in.
    #[test]
    fn allocation_ignores_input_order((pvs, req) in arb_case()) {
        let mut shuffled = pvs.clone();
        shuffled.reverse();
        for p in &mut shuffled {
            p.used.reverse();
        }
        prop_assert_eq!(allocate(&pvs, &req), allocate(&shuffled, &req));
    }

    /// (f) the reported capacity is exactly what allocation can deliver.
    #[test]
    fn largest_allocation_is_tight(pvs in arb_pvs(), stripes in 1u32..5) {
        let fs = FreeSpace::new(&pvs).unwrap();
        let largest = fs.largest_allocation(Shape::Linear);
        if largest.0 > 0 {
            prop_assert!(fs.allocate(&Request::linear(largest)).is_ok());
        }
        prop_assert!(fs.allocate(&Request::linear(Extents(largest.0 + 1))).is_err());

        let layout = Shape::Striped { stripes };
        let largest = fs.largest_allocation(layout);
        let s = u64::from(stripes);
        prop_assert_eq!(largest.0 % s, 0);
        if largest.0 > 0 {
            prop_assert!(fs.allocate(&Request::striped(largest, stripes)).is_ok());
        }
        prop_assert!(fs.allocate(&Request::striped(Extents(largest.0 + s), stripes)).is_err());

        let mirrored = |e| Request { shape: Shape::Mirrored { legs: stripes }, ..Request::linear(e) };
        let largest = fs.largest_allocation(Shape::Mirrored { legs: stripes });
        if largest.0 > 0 {
            prop_assert!(fs.allocate(&mirrored(largest)).is_ok());
        }
        prop_assert!(fs.allocate(&mirrored(Extents(largest.0 + 1))).is_err());
    }
}
