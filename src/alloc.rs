//! Extent allocation: deciding which physical extents a new or growing LV gets.
//!
//! Pure and self-contained: the caller describes each PV's size and the extents
//! already in use ([`PvSpace`]), asks for a number of extents in a [`Shape`]
//! ([`Request`]), and gets back where they go ([`Allocation`]). Nothing here knows
//! about the VG model, so the caller turns the answer into LV segments.
//!
//! The policy follows lvm2's default `normal` policy (`lib/metadata/lv_manip.c`) in
//! spirit, not line by line:
//!
//! - **Linear.** When extending an LV, extents directly after its last area come first,
//!   so the LV stays contiguous (lvm2 tries `contiguous` placement before `normal`).
//!   Then, if one free run can hold the rest, the smallest such run is used (best fit,
//!   which keeps big runs whole for later). Otherwise runs are taken largest first, so
//!   the LV gets as few segments as possible; the last, partial piece again goes to the
//!   smallest run that can hold it.
//! - **Striped.** One segment with one contiguous run per stripe, each stripe on a
//!   different PV. lvm2 can also build a striped LV from several striped segments when
//!   no PV set has runs long enough; this allocator does not (yet), it fails instead.
//!
//! Ties are always broken by the caller's PV index and then by start extent, never by
//! the order of the input slice, so the same space gives the same answer.

use crate::units::Extents;

/// A run of extents on one PV, `start..start + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtentRange {
    pub start: Extents,
    pub count: Extents,
}

impl ExtentRange {
    pub fn new(start: u64, count: u64) -> ExtentRange {
        ExtentRange {
            start: Extents(start),
            count: Extents(count),
        }
    }
}

/// One PV as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvSpace {
    /// The caller's id for this PV; areas name PVs by it. Must be unique.
    pub index: usize,
    /// Extents on the PV (its `pe_count`).
    pub pe_count: Extents,
    /// `false` for PVs marked non-allocatable (`pvchange -x n`): never used.
    pub allocatable: bool,
    /// Extents held by existing LVs, in any order; ranges may overlap.
    pub used: Vec<ExtentRange>,
}

/// A run of extents on one PV: where (part of) an LV goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Area {
    /// The [`PvSpace::index`] of the PV.
    pub pv: usize,
    pub start: Extents,
    pub count: Extents,
}

impl Area {
    /// The first extent past the area.
    pub fn end(&self) -> Extents {
        self.start + self.count
    }
}

/// How the allocator places extents: the part of an LV's layout placement depends on
/// (stripe sizes and the like do not change where extents go; see
/// [`crate::model::Layout::shape`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    Linear,
    /// `stripes` parallel runs of equal length on distinct PVs.
    Striped {
        stripes: u32,
    },
    /// `legs` copies of `extents` each (a raid1 LV's legs), each leg on one PV of its
    /// own, so that losing a PV loses at most one copy.
    Mirrored {
        legs: u32,
    },
}

/// What to allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Total LV extents to add (for striped: over all stripes together; for mirrored:
    /// of each leg).
    pub extents: Extents,
    pub shape: Shape,
    /// Only these PVs (by [`PvSpace::index`]) may be used; `None` means any.
    /// Unknown indices are ignored.
    pub pvs_allowed: Option<Vec<usize>>,
    /// When extending a linear LV: its last area. If the extents right after it are
    /// free (and its PV may be used), they are taken first. Ignored for striped
    /// layouts and when it names no known PV.
    pub after: Option<Area>,
}

impl Request {
    pub fn linear(extents: Extents) -> Request {
        Request {
            extents,
            shape: Shape::Linear,
            pvs_allowed: None,
            after: None,
        }
    }

    pub fn striped(extents: Extents, stripes: u32) -> Request {
        Request {
            shape: Shape::Striped { stripes },
            ..Request::linear(extents)
        }
    }

    /// Restricts placement to these PVs.
    pub fn on_pvs(mut self, pvs: Vec<usize>) -> Request {
        self.pvs_allowed = Some(pvs);
        self
    }

    /// Asks for contiguous extension after the LV's last area.
    pub fn after(mut self, last: Area) -> Request {
        self.after = Some(last);
        self
    }
}

/// Where the extents went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Areas in LV order; each becomes one linear segment. No two consecutive areas
    /// are contiguous on the same PV (they would have been merged). With
    /// [`Request::after`], the first area may start right at the old last area's end,
    /// in which case the caller can grow that segment instead of adding one.
    Linear(Vec<Area>),
    /// One area per stripe, in stripe order (sorted by PV index), all the same length,
    /// each on a different PV: together one striped segment.
    Striped { stripes: Vec<Area> },
    /// Per leg, its areas in leg order (each leg's areas on one PV, no PV in two legs).
    Mirrored { legs: Vec<Vec<Area>> },
}

impl Allocation {
    /// Every area allocated, in order (leg after leg for mirrored).
    pub fn areas(&self) -> Vec<Area> {
        match self {
            Allocation::Linear(areas) => areas.clone(),
            Allocation::Striped { stripes } => stripes.clone(),
            Allocation::Mirrored { legs } => legs.concat(),
        }
    }

    /// Extents allocated in total.
    pub fn extents(&self) -> Extents {
        Extents(self.areas().iter().map(|a| a.count.0).sum())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("cannot allocate zero extents")]
    ZeroSize,
    #[error("a striped allocation needs at least one stripe")]
    ZeroStripes,
    #[error("a mirrored allocation needs at least one leg")]
    ZeroLegs,
    /// The caller rounds up (lvm2 rounds the LV size up to a multiple of the stripes).
    #[error("{extents} cannot be split evenly over {stripes} stripes")]
    StripesDoNotDivide { extents: Extents, stripes: u32 },
    /// Fewer PVs with free space than stripes.
    #[error("{stripes} stripes need as many PVs with free space; only {usable} have any")]
    NotEnoughPvs { stripes: u32, usable: usize },
    /// Not enough free extents in total on the PVs that may be used.
    #[error("not enough free extents: need {needed}, {free} free")]
    NoSpace { needed: Extents, free: Extents },
    /// Enough PVs and extents, but too few PVs have a long enough contiguous run.
    #[error(
        "{stripes} stripes need {stripes} PVs with {per_stripe} contiguous free extents each; \
         only {fitting} have such a run"
    )]
    NoStripeSpace {
        stripes: u32,
        per_stripe: Extents,
        fitting: usize,
    },
    /// Fewer PVs than legs with room for a whole leg each.
    #[error("{legs} mirror legs need {legs} PVs with {per_leg} free extents each; only {fitting} have that much")]
    NoMirrorSpace {
        legs: u32,
        per_leg: Extents,
        fitting: usize,
    },
    /// Bad input: a used range does not lie within its PV.
    #[error("PV {pv}: used extents {}+{} go past its {pe_count}", range.start.0, range.count.0)]
    UsedPastEnd {
        pv: usize,
        range: ExtentRange,
        pe_count: Extents,
    },
    /// Bad input: two PVs with the same index.
    #[error("PV index {pv} appears more than once")]
    DuplicatePv { pv: usize },
}

/// A free run, in plain numbers for the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    pv: usize,
    start: u64,
    count: u64,
}

impl Run {
    fn end(self) -> u64 {
        self.start + self.count
    }
    fn area(self, count: u64) -> Area {
        Area {
            pv: self.pv,
            start: Extents(self.start),
            count: Extents(count),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PvFree {
    pv: usize,
    allocatable: bool,
    /// Maximal free runs, sorted by start; never empty runs.
    runs: Vec<Run>,
}

impl PvFree {
    fn free(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |t, r| t.saturating_add(r.count))
    }
    fn largest_run(&self) -> u64 {
        self.runs.iter().map(|r| r.count).max().unwrap_or(0)
    }
}

/// The free space of a set of PVs, checked and normalised once, for several queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeSpace {
    /// Sorted by PV index.
    pvs: Vec<PvFree>,
}

impl FreeSpace {
    /// Checks the input (every used range inside its PV, PV indices unique) and works
    /// out the free runs. PVs are checked in index order, so which error a bad input
    /// gets does not depend on how the caller ordered the PVs.
    pub fn new(pvs: &[PvSpace]) -> Result<FreeSpace, AllocError> {
        let mut sorted: Vec<&PvSpace> = pvs.iter().collect();
        sorted.sort_by_key(|p| p.index);
        if let Some(w) = sorted.windows(2).find(|w| w[0].index == w[1].index) {
            return Err(AllocError::DuplicatePv { pv: w[0].index });
        }
        let pvs = sorted
            .into_iter()
            .map(|pv| {
                Ok(PvFree {
                    pv: pv.index,
                    allocatable: pv.allocatable,
                    runs: free_runs(pv)?,
                })
            })
            .collect::<Result<_, AllocError>>()?;
        Ok(FreeSpace { pvs })
    }

    /// Free extents on allocatable PVs: what a linear allocation could use.
    /// (Saturates at `u64::MAX`.)
    pub fn free_extents(&self) -> Extents {
        Extents(
            self.pvs
                .iter()
                .filter(|p| p.allocatable)
                .fold(0u64, |t, p| t.saturating_add(p.free())),
        )
    }

    /// Free runs on allocatable PVs, by PV index then start.
    pub fn free_areas(&self) -> impl Iterator<Item = Area> + '_ {
        self.pvs
            .iter()
            .filter(|p| p.allocatable)
            .flat_map(|p| p.runs.iter().map(|r| r.area(r.count)))
    }

    /// The largest LV [`allocate`](Self::allocate) would succeed on with this layout
    /// and no PV restriction (restrict by passing fewer PVs). Zero when nothing fits,
    /// including for zero stripes. For striped layouts it is a multiple of the stripes.
    pub fn largest_allocation(&self, layout: Shape) -> Extents {
        match layout {
            Shape::Linear => self.free_extents(),
            Shape::Striped { stripes: 0 } | Shape::Mirrored { legs: 0 } => Extents::ZERO,
            Shape::Mirrored { legs } => {
                // A leg may use several runs of its PV: the legs-th freest PV bounds it.
                let mut free: Vec<u64> = self
                    .pvs
                    .iter()
                    .filter(|p| p.allocatable)
                    .map(PvFree::free)
                    .collect();
                free.sort_unstable_by(|a, b| b.cmp(a));
                Extents(free.get(legs as usize - 1).copied().unwrap_or(0))
            }
            Shape::Striped { stripes } => {
                let n = stripes as usize;
                let mut largest: Vec<u64> = self
                    .pvs
                    .iter()
                    .filter(|p| p.allocatable)
                    .map(PvFree::largest_run)
                    .collect();
                if largest.len() < n {
                    return Extents::ZERO;
                }
                largest.sort_unstable_by(|a, b| b.cmp(a));
                // The n-th longest run bounds every stripe; cap so the total fits a u64.
                let per = largest[n - 1].min(u64::MAX / u64::from(stripes));
                Extents(per * u64::from(stripes))
            }
        }
    }

    /// Chooses extents for `req`; see the module documentation for the policy.
    pub fn allocate(&self, req: &Request) -> Result<Allocation, AllocError> {
        match req.shape {
            Shape::Striped { stripes: 0 } => return Err(AllocError::ZeroStripes),
            Shape::Mirrored { legs: 0 } => return Err(AllocError::ZeroLegs),
            _ => {}
        }
        if req.extents == Extents::ZERO {
            return Err(AllocError::ZeroSize);
        }
        let usable: Vec<&PvFree> = self
            .pvs
            .iter()
            .filter(|p| p.allocatable)
            .filter(|p| req.pvs_allowed.as_ref().is_none_or(|a| a.contains(&p.pv)))
            .collect();
        match req.shape {
            Shape::Linear => allocate_linear(&usable, req.extents.0, req.after),
            Shape::Striped { stripes } => allocate_striped(&usable, req.extents.0, stripes),
            Shape::Mirrored { legs } => allocate_mirrored(&usable, req.extents.0, legs),
        }
    }
}

/// The maximal free runs of one PV, after checking its used ranges.
fn free_runs(pv: &PvSpace) -> Result<Vec<Run>, AllocError> {
    let mut used: Vec<(u64, u64)> = Vec::with_capacity(pv.used.len());
    for r in &pv.used {
        match r.start.0.checked_add(r.count.0) {
            Some(end) if end <= pv.pe_count.0 => {
                if r.count.0 > 0 {
                    used.push((r.start.0, end));
                }
            }
            _ => {
                return Err(AllocError::UsedPastEnd {
                    pv: pv.index,
                    range: *r,
                    pe_count: pv.pe_count,
                })
            }
        }
    }
    used.sort_unstable();
    // Sweep the sorted ranges; `cursor` is the first extent not known to be used, so
    // overlapping and touching ranges fold together without a separate merge pass.
    let mut runs = Vec::new();
    let mut cursor = 0u64;
    for (start, end) in used {
        if start > cursor {
            runs.push(Run {
                pv: pv.index,
                start: cursor,
                count: start - cursor,
            });
        }
        cursor = cursor.max(end);
    }
    if pv.pe_count.0 > cursor {
        runs.push(Run {
            pv: pv.index,
            start: cursor,
            count: pv.pe_count.0 - cursor,
        });
    }
    Ok(runs)
}

/// Each leg on a PV of its own: PVs where the leg fits in one run first (it stays one
/// segment), then by PV index; within its PV a leg is placed as a linear allocation.
fn allocate_mirrored(
    usable: &[&PvFree],
    per_leg: u64,
    legs: u32,
) -> Result<Allocation, AllocError> {
    let mut fitting: Vec<&PvFree> = usable
        .iter()
        .copied()
        .filter(|p| p.free() >= per_leg)
        .collect();
    if fitting.len() < legs as usize {
        return Err(AllocError::NoMirrorSpace {
            legs,
            per_leg: Extents(per_leg),
            fitting: fitting.len(),
        });
    }
    fitting.sort_by_key(|p| (p.largest_run() < per_leg, p.pv));
    let legs = fitting[..legs as usize]
        .iter()
        .map(|pv| match allocate_linear(&[pv], per_leg, None)? {
            Allocation::Linear(areas) => Ok(areas),
            _ => unreachable!("a linear allocation"),
        })
        .collect::<Result<_, AllocError>>()?;
    Ok(Allocation::Mirrored { legs })
}

fn allocate_linear(
    usable: &[&PvFree],
    needed: u64,
    after: Option<Area>,
) -> Result<Allocation, AllocError> {
    let mut runs: Vec<Run> = usable.iter().flat_map(|p| p.runs.iter().copied()).collect();
    let free = runs.iter().fold(0u64, |t, r| t.saturating_add(r.count));
    if free < needed {
        return Err(AllocError::NoSpace {
            needed: Extents(needed),
            free: Extents(free),
        });
    }

    let mut areas = Vec::new();
    let mut remaining = needed;

    // Contiguous extension: the free run holding the extent right after the LV's end.
    if let Some(after) = after {
        if let Some(at) = after.start.0.checked_add(after.count.0) {
            if let Some(i) = runs
                .iter()
                .position(|r| r.pv == after.pv && r.start <= at && at < r.end())
            {
                let run = runs.swap_remove(i);
                let take = remaining.min(run.end() - at);
                areas.push(Area {
                    pv: run.pv,
                    start: Extents(at),
                    count: Extents(take),
                });
                remaining -= take;
                // Give back what is left either side, so the rest of the request can
                // still use it (ordering of `runs` does not matter: choices use keys).
                for (start, end) in [(run.start, at), (at + take, run.end())] {
                    if end > start {
                        runs.push(Run {
                            pv: run.pv,
                            start,
                            count: end - start,
                        });
                    }
                }
            }
        }
    }

    // Terminates: free >= remaining holds throughout, and each pass either finishes or
    // removes a run shorter than what is still needed.
    while remaining > 0 {
        let best_fit = runs
            .iter()
            .filter(|r| r.count >= remaining)
            .min_by_key(|r| (r.count, r.pv, r.start));
        if let Some(run) = best_fit {
            areas.push(run.area(remaining));
            break;
        }
        let (i, _) = runs
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| (std::cmp::Reverse(r.count), r.pv, r.start))
            .expect("free space covers the request, so a run is left");
        let run = runs.swap_remove(i);
        areas.push(run.area(run.count));
        remaining -= run.count;
    }

    Ok(Allocation::Linear(merge_contiguous(areas)))
}

/// Joins consecutive areas that continue each other on the same PV: one segment is
/// simpler than two. (Free runs are maximal, so this is a safeguard more than a need.)
fn merge_contiguous(areas: Vec<Area>) -> Vec<Area> {
    let mut out: Vec<Area> = Vec::with_capacity(areas.len());
    for a in areas {
        match out.last_mut() {
            Some(last) if last.pv == a.pv && last.end() == a.start => last.count += a.count,
            _ => out.push(a),
        }
    }
    out
}

fn allocate_striped(
    usable: &[&PvFree],
    extents: u64,
    stripes: u32,
) -> Result<Allocation, AllocError> {
    let n = stripes as usize;
    if extents % u64::from(stripes) != 0 {
        return Err(AllocError::StripesDoNotDivide {
            extents: Extents(extents),
            stripes,
        });
    }
    let per = extents / u64::from(stripes);

    let with_space = usable.iter().filter(|p| !p.runs.is_empty()).count();
    if with_space < n {
        return Err(AllocError::NotEnoughPvs {
            stripes,
            usable: with_space,
        });
    }
    let free = usable.iter().fold(0u64, |t, p| t.saturating_add(p.free()));
    if free < extents {
        return Err(AllocError::NoSpace {
            needed: Extents(extents),
            free: Extents(free),
        });
    }

    // Per PV, the smallest run that holds a stripe; then the PVs whose such runs are
    // smallest, so long runs stay whole for later, as with linear best fit.
    let mut candidates: Vec<Run> = usable
        .iter()
        .filter_map(|p| {
            p.runs
                .iter()
                .filter(|r| r.count >= per)
                .min_by_key(|r| (r.count, r.start))
                .copied()
        })
        .collect();
    if candidates.len() < n {
        return Err(AllocError::NoStripeSpace {
            stripes,
            per_stripe: Extents(per),
            fitting: candidates.len(),
        });
    }
    candidates.sort_by_key(|r| (r.count, r.pv));
    candidates.truncate(n);
    candidates.sort_by_key(|r| r.pv);
    Ok(Allocation::Striped {
        stripes: candidates.into_iter().map(|r| r.area(per)).collect(),
    })
}

/// [`FreeSpace::allocate`] in one call.
pub fn allocate(pvs: &[PvSpace], req: &Request) -> Result<Allocation, AllocError> {
    FreeSpace::new(pvs)?.allocate(req)
}

/// [`FreeSpace::free_extents`] in one call.
pub fn free_extents(pvs: &[PvSpace]) -> Result<Extents, AllocError> {
    Ok(FreeSpace::new(pvs)?.free_extents())
}

/// [`FreeSpace::largest_allocation`] in one call.
pub fn largest_allocation(pvs: &[PvSpace], layout: Shape) -> Result<Extents, AllocError> {
    Ok(FreeSpace::new(pvs)?.largest_allocation(layout))
}

#[cfg(test)]
mod tests;
