//! Writing a new version of a VG's metadata so that a crash at any point leaves either
//! the old or the new version readable, never neither (lvm2's order, `_vg_write_raw` /
//! `_vg_commit_raw_rlocn`):
//!
//! 1. plan where the new text goes in every metadata area; refuse before writing
//!    anything if one is full;
//! 2. write the text after the live copy in each area (the live copy stays untouched),
//!    then flush every device;
//! 3. rewrite each area's header to point at the new text, then flush.
//!
//! Until a header is rewritten, that area still names the old text. A reader takes the
//! highest seqno it finds, so once any header points at the new text the new version
//! wins, and the remaining copies are repaired by the next commit.

use super::device::Device;
use super::mda_io::{plan_text, read_header, write_header, write_text};
use super::StoreError;
use crate::format::label::PvLabel;
use crate::format::mda::MdaHeader;
use crate::format::text::Layout;
use crate::model::render::{render, Previous, Rendered};
use crate::model::{TextHeader, VolumeGroup};

/// A point in a commit, reported to the fault-injection hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// The new text was written to metadata area `mda` of target `pv`.
    TextWritten { pv: usize, mda: usize },
    /// All texts are written and flushed.
    TextsSynced,
    /// The header of that area now points at the new text.
    HeaderWritten { pv: usize, mda: usize },
}

/// A PV to write, with its label as read from it.
pub struct CommitTarget<'a> {
    pub device: &'a Device,
    pub label: &'a PvLabel,
    /// Its areas' headers as read under the same lock (the VG's fingerprint), in the
    /// label's order; `None`: the commit reads them.
    pub headers: Option<&'a [MdaHeader]>,
}

/// The metadata text exactly as it goes on disk, reusing the text of LVs unchanged
/// since `previous` (a rendering of the disk layout).
pub fn render_disk_text(
    vg: &VolumeGroup,
    header: &TextHeader,
    previous: Option<Previous<'_>>,
) -> Rendered {
    render(vg, header, Layout::Disk, false, previous)
}

/// What a commit left on disk: the text, and each target's area headers (in its
/// label's order) as they are now, so a caller can know the VG without reading it back.
#[derive(Debug)]
pub struct Committed {
    pub rendered: Rendered,
    pub headers: Vec<Vec<MdaHeader>>,
}

/// Writes `vg` to every metadata area of every target. `previous`: the version it
/// replaces as rendered, whose unchanged LVs' text is reused. `inject` is called after
/// each step; returning `false` stops the commit there (for crash tests), as if the
/// process had died.
pub fn commit(
    vg: &VolumeGroup,
    header: &TextHeader,
    targets: &[CommitTarget],
    previous: Option<Previous<'_>>,
    inject: &mut dyn FnMut(CommitStep) -> bool,
) -> Result<Committed, StoreError> {
    if let Some(p) = vg.problems().first() {
        return Err(StoreError::Inconsistent {
            vg: vg.name.clone(),
            why: format!("refusing to write inconsistent metadata: {p}"),
        });
    }
    let rendered = render_disk_text(vg, header, previous);
    let text = &rendered.text;

    // 1. Plan everything before the first write.
    let mut plans = Vec::new();
    let mut headers = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let mut after = Vec::with_capacity(t.label.metadata_areas.len());
        for (j, area) in t.label.metadata_areas.iter().enumerate() {
            let known = t.headers.and_then(|h| h.get(j)).cloned();
            let current = match known.map_or_else(|| read_header(t.device, area), Ok) {
                Ok(h) => h,
                // A damaged area (the VG was read from its other copies) starts over
                // empty, as lvm2 repairs it; its old contents were unreadable anyway.
                Err(StoreError::Mda { .. } | StoreError::MdaSizeMismatch { .. }) => {
                    tracing::warn!(device = %t.device.path().display(), mda = area.offset.0,
                        "rewriting a damaged metadata area");
                    MdaHeader::new_empty(area.offset, area.size)
                }
                Err(e) => return Err(e),
            };
            match plan_text(t.device, &current, text.as_bytes())? {
                Some(plan) => {
                    after.push(plan.new_header.clone());
                    plans.push((i, j, plan));
                }
                None => after.push(current),
            }
        }
        headers.push(after);
    }
    if plans.is_empty() {
        return Err(StoreError::Inconsistent {
            vg: vg.name.clone(),
            why: "no PV of the volume group has a metadata area in use".into(),
        });
    }

    // 2. The new text, beside the live one.
    for (i, j, plan) in &plans {
        write_text(targets[*i].device, plan)?;
        if !inject(CommitStep::TextWritten { pv: *i, mda: *j }) {
            return Err(StoreError::Injected(CommitStep::TextWritten {
                pv: *i,
                mda: *j,
            }));
        }
    }
    sync_all(targets)?;
    if !inject(CommitStep::TextsSynced) {
        return Err(StoreError::Injected(CommitStep::TextsSynced));
    }

    // 3. Switch each header over.
    for (i, j, plan) in &plans {
        write_header(targets[*i].device, &plan.new_header)?;
        if !inject(CommitStep::HeaderWritten { pv: *i, mda: *j }) {
            return Err(StoreError::Injected(CommitStep::HeaderWritten {
                pv: *i,
                mda: *j,
            }));
        }
    }
    // Any subset of the header writes landing leaves old-or-new, so one flush per
    // device at the end is enough.
    sync_all(targets)?;
    Ok(Committed { rendered, headers })
}

/// Flushes every target, all at once: the order that makes a commit crash-safe is per
/// device (its texts stable before its headers change, and every text stable before
/// any header changes), which holds as long as this returns only when all are done.
/// Devices are independent of each other, so their flushes (about a millisecond or
/// more each) overlap instead of adding up.
fn sync_all(targets: &[CommitTarget]) -> Result<(), StoreError> {
    match targets {
        [] => Ok(()),
        [only] => only.device.sync(),
        [first, rest @ ..] => std::thread::scope(|s| {
            let others: Vec<_> = rest.iter().map(|t| s.spawn(|| t.device.sync())).collect();
            let mut result = first.device.sync();
            for h in others {
                let r = h.join().expect("a flush thread panicked");
                if result.is_ok() {
                    result = r;
                }
            }
            result
        }),
    }
}
