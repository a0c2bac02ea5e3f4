//! What a volume group uses of its PVs, and the consistency checks run on every VG
//! read and before every commit (lvmd never writes a VG that fails them).

use super::lv::SegmentKind;
use super::vg::VolumeGroup;
use crate::format::text::{Item, Section, Value};
use crate::units::Extents;
use std::collections::{HashMap, HashSet};

/// A run of extents on one PV that an LV segment holds; names borrowed from the VG
/// (this is computed on every commit, for every segment of every LV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvUsage<'a> {
    pub pv: &'a str,
    pub start: Extents,
    pub count: Extents,
    pub lv: &'a str,
    /// 1-based, as in the text.
    pub segment: usize,
    /// For segment types lvmd does not model the length is not known; the whole segment
    /// length is reserved, which can only over-count, never hand out extents in use.
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// `name`/extent pairs whose name is a PV, anywhere in an unknown segment's body.
fn pv_pairs_in<'a>(body: &'a Section, is_pv: &dyn Fn(&str) -> bool, out: &mut Vec<(&'a str, u64)>) {
    for item in &body.items {
        match item {
            Item::Pair {
                value: Value::Array(values),
                ..
            } => {
                for w in values.windows(2) {
                    if let (Value::Str(n), Value::Int(start)) = (&w[0], &w[1]) {
                        if *start >= 0 && is_pv(n) {
                            out.push((n, *start as u64));
                        }
                    }
                }
            }
            Item::Section { body, .. } => pv_pairs_in(body, is_pv, out),
            _ => {}
        }
    }
}

impl VolumeGroup {
    /// Every run of PV extents held by an LV segment.
    pub fn pv_usage(&self) -> Vec<PvUsage<'_>> {
        let pv_names: HashSet<&str> = self.pvs.iter().map(|p| p.name.as_str()).collect();
        let is_pv = |n: &str| pv_names.contains(n);
        let mut out = Vec::new();
        for lv in &self.lvs {
            for (i, seg) in lv.segments.iter().enumerate() {
                let mut push = |pv, start: u64, count: Extents, estimated| {
                    out.push(PvUsage {
                        pv,
                        start: Extents(start),
                        count,
                        lv: &lv.name,
                        segment: i + 1,
                        estimated,
                    })
                };
                match &seg.kind {
                    SegmentKind::Striped { stripes, .. } => {
                        let per_stripe = Extents(seg.extent_count.0 / stripes.len() as u64);
                        for a in stripes.iter().filter(|a| is_pv(&a.name)) {
                            push(&a.name, a.start.0, per_stripe, false);
                        }
                    }
                    SegmentKind::Other { body, .. } => {
                        let mut pairs = Vec::new();
                        pv_pairs_in(body, &is_pv, &mut pairs);
                        for (pv, start) in pairs {
                            push(pv, start, seg.extent_count, true);
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Extents of each PV in use, by PV name.
    pub fn used_extents(&self) -> HashMap<&str, Extents> {
        let mut used: HashMap<&str, Extents> = HashMap::new();
        for u in self.pv_usage() {
            *used.entry(u.pv).or_default() += u.count;
        }
        used
    }

    pub fn free_extents(&self) -> Extents {
        let used = self
            .used_extents()
            .values()
            .fold(Extents::ZERO, |a, b| a + *b);
        self.total_extents()
            .checked_sub(used)
            .unwrap_or(Extents::ZERO)
    }

    /// Inconsistencies that make a VG unsafe to write: lvm2's `vgck` would reject most.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, what: String| problems.push(Problem { path, what });
        let vg = &self.name;

        let mut seen_names = HashSet::new();
        let mut seen_ids = HashSet::new();
        for pv in &self.pvs {
            let path = format!("{vg}/physical_volumes/{}", pv.name);
            if !seen_names.insert(pv.name.as_str()) {
                problem(path.clone(), "PV name used twice".into());
            }
            if !seen_ids.insert(pv.id) {
                problem(path.clone(), format!("PV uuid {} used twice", pv.id));
            }
            let end = pv.pe_start + self.extent_size.span(pv.pe_count);
            if end > pv.dev_size {
                problem(
                    path,
                    format!(
                        "pe_start {} + {} extents ends at sector {} past dev_size {}",
                        pv.pe_start.0, pv.pe_count.0, end.0, pv.dev_size.0
                    ),
                );
            }
        }
        // Run on every commit of VGs of thousands of LVs: paths are made only for a
        // problem, and references are looked up in a set, not by a scan of the LVs.
        let all_lvs: HashSet<&str> = self.lvs.iter().map(|lv| lv.name.as_str()).collect();
        let mut lv_names = HashSet::with_capacity(self.lvs.len());
        for lv in &self.lvs {
            let path = || format!("{vg}/logical_volumes/{}", lv.name);
            if !lv_names.insert(lv.name.as_str()) {
                problem(path(), "LV name used twice".into());
            }
            if !seen_ids.insert(lv.id) {
                problem(path(), format!("LV uuid {} used twice", lv.id));
            }
            if lv.segments.is_empty() {
                problem(path(), "no segments".into());
            }
            for (i, seg) in lv.segments.iter().enumerate() {
                let refs: Vec<&str> = match &seg.kind {
                    SegmentKind::Striped { stripes, .. } => stripes
                        .iter()
                        .filter(|a| self.pv(&a.name).is_none())
                        .map(|a| a.name.as_str())
                        .collect(),
                    SegmentKind::Other { .. } => Vec::new(),
                    known => known.lv_references(),
                };
                for r in refs {
                    if !all_lvs.contains(r) {
                        problem(
                            format!("{}/segment{}", path(), i + 1),
                            format!("refers to {r:?}, which is neither a PV nor an LV of {vg}"),
                        );
                    }
                }
            }
        }

        // Each PV extent belongs to at most one LV segment, and lies inside the PV.
        let mut by_pv: HashMap<&str, Vec<&PvUsage>> = HashMap::new();
        let usage = self.pv_usage();
        for u in &usage {
            by_pv.entry(u.pv).or_default().push(u);
        }
        for (pv_name, mut runs) in by_pv {
            let pv = self.pv(pv_name).expect("usage only names known PVs");
            runs.sort_by_key(|u| u.start);
            for u in runs.iter().filter(|u| !u.estimated) {
                if u.start + u.count > pv.pe_count {
                    problem(
                        format!("{vg}/logical_volumes/{}/segment{}", u.lv, u.segment),
                        format!(
                            "extents {}..{} on {pv_name} run past its {} extents",
                            u.start.0,
                            (u.start + u.count).0,
                            pv.pe_count.0
                        ),
                    );
                }
            }
            let exact: Vec<&PvUsage> = runs.iter().copied().filter(|u| !u.estimated).collect();
            for w in exact.windows(2) {
                if w[0].start + w[0].count > w[1].start {
                    problem(
                        format!("{vg}/physical_volumes/{pv_name}"),
                        format!(
                            "extent {} is used by both {} (segment {}) and {} (segment {})",
                            w[1].start.0, w[0].lv, w[0].segment, w[1].lv, w[1].segment
                        ),
                    );
                }
            }
        }
        problems
    }
}
