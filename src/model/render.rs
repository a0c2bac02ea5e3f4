//! A VG's metadata text, rendered reusing the text of the LVs that did not change since
//! an earlier rendering.
//!
//! lvm2's format has no deltas: every commit writes the whole text, and so does every
//! backup. Building the text tree of 5000 LVs and writing it out was most of a commit's
//! CPU at that size, though one commit changes one LV or a few. An LV's entry in the
//! `logical_volumes` list does not depend on its neighbours (see
//! [`write_document_filling`]), so an LV equal to the same-named LV of the version
//! rendered before gets that version's bytes copied; only new and changed LVs are
//! rendered. The result is the same text as [`VolumeGroup::to_document`] written
//! whole, which debug builds (every test) check on each rendering.

use super::{TextHeader, VolumeGroup};
use crate::format::text::{write_document_filling, Layout, ListWriter};
use std::collections::HashMap;
use std::ops::Range;

/// A rendered text and where each LV's entry lies in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub layout: Layout,
    /// For each LV of the VG rendered, in its order: its entry's bytes in `text`.
    pub lv_spans: Vec<Range<usize>>,
}

impl Rendered {
    /// This rendering as the previous one of the next, `vg` being what it was rendered
    /// from.
    pub fn previous<'a>(&'a self, vg: &'a VolumeGroup) -> Previous<'a> {
        Previous {
            vg,
            text: &self.text,
            layout: self.layout,
            lv_spans: &self.lv_spans,
        }
    }
}

/// An earlier rendering (its parts, wherever they are kept) and the VG it was
/// rendered from.
#[derive(Clone, Copy)]
pub struct Previous<'a> {
    pub vg: &'a VolumeGroup,
    pub text: &'a str,
    pub layout: Layout,
    pub lv_spans: &'a [Range<usize>],
}

/// `vg`'s text in `layout` (`backup_order`: the header before the VG, as in backup
/// files), copying the entries of LVs unchanged since `previous`.
pub fn render(
    vg: &VolumeGroup,
    header: &TextHeader,
    layout: Layout,
    backup_order: bool,
    previous: Option<Previous<'_>>,
) -> Rendered {
    // Only a rendering of the same layout whose spans cover its VG's LVs can be reused.
    let previous = previous.filter(|p| p.layout == layout && p.lv_spans.len() == p.vg.lvs.len());
    let by_name: HashMap<&str, usize> = previous
        .map(|p| {
            p.vg.lvs
                .iter()
                .enumerate()
                .map(|(i, lv)| (lv.name.as_str(), i))
                .collect()
        })
        .unwrap_or_default();
    let doc = vg.document(header, backup_order, false);
    let size_hint = previous.map_or(0, |p| p.text.len() + 4096);
    let mut lv_spans = Vec::with_capacity(vg.lvs.len());
    let mut fill = |w: &mut ListWriter<'_>| {
        for lv in &vg.lvs {
            let start = w.position();
            let same = previous.and_then(|p| {
                let i = *by_name.get(lv.name.as_str())?;
                (p.vg.lvs[i] == *lv).then(|| &p.text[p.lv_spans[i].clone()])
            });
            match same {
                Some(text) => w.verbatim(text),
                None => w.entry(&lv.name, &lv.to_section()),
            }
            lv_spans.push(start..w.position());
        }
    };
    let text = write_document_filling(&doc, layout, "logical_volumes", size_hint, &mut fill);
    debug_assert_eq!(
        text,
        crate::format::text::write_document(&vg.to_document(header, backup_order), layout),
        "a rendering that reuses LV entries differs from the whole one"
    );
    Rendered {
        text,
        layout,
        lv_spans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::text::{parse, write_document};
    use crate::model::LogicalVolume;
    use std::path::Path;

    fn fixture(name: &str) -> VolumeGroup {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/lvm2/{name}"));
        let text = std::fs::read_to_string(p).unwrap();
        VolumeGroup::from_document(&parse(&text).unwrap())
            .unwrap()
            .0
    }

    fn whole(vg: &VolumeGroup, h: &TextHeader, layout: Layout, backup_order: bool) -> String {
        write_document(&vg.to_document(h, backup_order), layout)
    }

    fn header() -> TextHeader {
        TextHeader {
            description: "test".into(),
            creation_host: "host".into(),
            creation_time: 1,
        }
    }

    /// Renders `after` from `before`'s rendering in both layouts and checks it against
    /// the whole rendering, and that the spans hold each LV's entry.
    fn check(before: &VolumeGroup, after: &VolumeGroup) -> Rendered {
        let h = header();
        let mut last = None;
        for (layout, order) in [(Layout::Disk, false), (Layout::Backup, true)] {
            let first = render(before, &h, layout, order, None);
            assert_eq!(first.text, whole(before, &h, layout, order));
            let next = render(after, &h, layout, order, Some(first.previous(before)));
            assert_eq!(next.text, whole(after, &h, layout, order));
            assert_eq!(next.lv_spans.len(), after.lvs.len());
            for (lv, span) in after.lvs.iter().zip(&next.lv_spans) {
                let entry = &next.text[span.clone()];
                assert!(entry.starts_with('\n'), "{entry:?}");
                let opening = if layout == Layout::Disk {
                    "\n"
                } else {
                    "\n\t\t"
                };
                assert!(
                    entry.starts_with(&format!("{opening}{} {{\n", lv.name))
                        || entry.starts_with(&format!("{opening}\"{}\" {{\n", lv.name)),
                    "{entry:?}"
                );
            }
            last = Some(next);
        }
        last.unwrap()
    }

    fn copy_named(lv: &LogicalVolume, name: &str) -> LogicalVolume {
        let mut lv = lv.clone();
        lv.name = name.into();
        lv.id = crate::uuid::Uuid::random();
        lv
    }

    #[test]
    fn reused_entries_give_the_whole_rendering_after_each_kind_of_change() {
        for name in ["simple", "mixed", "raid1-integrity", "raid1-4k"] {
            let vg = fixture(&format!("{name}/vgcfgbackup.txt"));
            assert!(!vg.lvs.is_empty(), "{name}");
            // Unchanged, only the seqno.
            let mut same = vg.clone();
            same.seqno += 1;
            check(&vg, &same);
            // An LV added at the end, one removed from the front, one changed, one
            // renamed, the order changed, every LV gone.
            let mut added = vg.clone();
            added.lvs.push(copy_named(&vg.lvs[0], "added"));
            check(&vg, &added);
            let mut removed = vg.clone();
            removed.lvs.remove(0);
            check(&vg, &removed);
            let mut changed = vg.clone();
            changed.lvs[0].tags.push("changed".into());
            check(&vg, &changed);
            let mut renamed = vg.clone();
            renamed.lvs[0].name = "renamed".into();
            check(&vg, &renamed);
            let mut reversed = vg.clone();
            reversed.lvs.reverse();
            check(&vg, &reversed);
            let mut none = vg.clone();
            none.lvs.clear();
            check(&vg, &none);
            check(&none, &vg);
        }
    }

    #[test]
    fn an_entry_is_copied_only_from_an_equal_lv_of_the_same_layout() {
        let vg = fixture("simple/vgcfgbackup.txt");
        let h = header();
        let disk = render(&vg, &h, Layout::Disk, false, None);
        // A previous rendering whose text is poisoned where an LV's entry is: reused
        // entries show up, rendered ones do not.
        let mut poisoned = disk.clone();
        let span = poisoned.lv_spans[0].clone();
        let marker = format!("\n{} {{\nPOISON\n}}\n", vg.lvs[0].name);
        poisoned.text.replace_range(span.clone(), &marker);
        poisoned.lv_spans[0] = span.start..span.start + marker.len();
        let shift = marker.len() as isize - span.len() as isize;
        for s in poisoned.lv_spans.iter_mut().skip(1) {
            *s = (s.start as isize + shift) as usize..(s.end as isize + shift) as usize;
        }
        let reuse = |vg2: &VolumeGroup, layout| {
            let prev = poisoned.previous(&vg);
            // Skips the debug check, which would (rightly) fail on the poison.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                render(vg2, &h, layout, false, Some(prev))
            }))
        };
        // Same LV, same layout: copied (and the debug check catches the poison).
        let copied = reuse(&vg, Layout::Disk);
        if cfg!(debug_assertions) {
            assert!(copied.is_err());
        } else {
            assert!(copied.unwrap().text.contains("POISON"));
        }
        // The LV changed: rendered afresh.
        let mut changed = vg.clone();
        changed.lvs[0].tags.push("t".into());
        assert!(!reuse(&changed, Layout::Disk)
            .unwrap()
            .text
            .contains("POISON"));
        // Another layout: nothing copied.
        assert!(!reuse(&vg, Layout::Backup).unwrap().text.contains("POISON"));
    }
}
