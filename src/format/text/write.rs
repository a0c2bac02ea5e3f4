//! Writer for LVM2 metadata text, laid out the way lvm2 2.03 lays it out
//! (`lib/format_text/export.c`), minus lvm2's comments.
//!
//! Both layouts write `key = value` one item a line, `name {` ... `}` for sections,
//! strings in double quotes with `"` and `\` escaped (nothing else is: lvm2 has no other
//! escapes, so a newline is written as a newline), arrays as `[a, b, c]` and `[]`, and
//! floats verbatim. They differ only in indentation:
//! - [`Layout::Disk`]: none at all, as in a metadata area.
//! - [`Layout::Backup`]: one tab per level, at most 5 (lvm2's file writer stops
//!   indenting at 5; metadata never nests deeper).
//!
//! lvm2 also puts blank lines at fixed places, and writes the area lists of segments
//! (`stripes`, `mirrors`, `raids`, `raid0_lvs`) one area a line. Those places are
//! recognised here by name, so that a VG written by lvmd looks like one written by lvm2;
//! for any other document they simply never match. Blank lines carry no meaning.
//!
//! Items are written in document order: the caller decides whether the VG section or
//! the `contents`/`version`/... header comes first (lvm2 puts the VG first on disk and
//! last in backup files).
//!
//! `parse(&write_document(d, _))` gives `d` back for every document whose names are
//! non-empty, whose strings contain no NUL, whose floats are literals the parser
//! accepts, whose arrays do not nest, and which nests at most
//! [`MAX_DEPTH`](super::parse::MAX_DEPTH) sections deep. Names that are not plain
//! identifiers are written in double quotes, which lvm2 also reads.

use std::fmt::Write as _;

use super::parse::is_plain_name;
use super::{Document, Item, Section, Value};

/// How to lay out the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As lvm2 writes into metadata areas: one item a line, no indentation.
    Disk,
    /// As lvm2 writes backup files: tab-indented.
    Backup,
}

/// lvm2's file writer clamps indentation to this many tabs (`MAX_INDENT` in export.c).
const MAX_INDENT: usize = 5;

/// Keys whose arrays lvm2 writes one area a line (`out_areas` in export.c).
const AREA_KEYS: [&str; 4] = ["stripes", "mirrors", "raids", "raid0_lvs"];

/// The VG's lists of PVs, LVs and removed LVs; lvm2 puts a blank line before each of
/// them and before each entry in them.
const VG_LISTS: [&str; 3] = [
    "physical_volumes",
    "logical_volumes",
    "historical_logical_volumes",
];

/// Pairs that lvm2 follows with a blank line: the PV's device hint, the LV's segment
/// count, the segment's extent count and the VDO pool's virtual extents.
const BLANK_AFTER: [&str; 4] = ["device", "segment_count", "extent_count", "virtual_extents"];

pub fn write_document(doc: &Document, layout: Layout) -> String {
    let mut w = Writer {
        out: String::new(),
        layout,
        fill: None,
    };
    w.body(doc, 0, None);
    w.out
}

/// Writes `doc` as [`write_document`] does, except for the entries of the section named
/// `list` one level down (the VG's `logical_volumes`, say): the document holds that
/// section empty, and `fill` writes its entries through a [`ListWriter`], which can
/// copy an entry's text from an earlier rendering. An entry of one of the VG's lists
/// is preceded by a blank line whatever precedes it, so its text never depends on its
/// neighbours: the same entry always gives the same bytes. `size_hint`: the text's
/// expected length (the previous rendering's, say), to allocate once.
pub fn write_document_filling(
    doc: &Document,
    layout: Layout,
    list: &str,
    size_hint: usize,
    fill: &mut dyn FnMut(&mut ListWriter<'_>),
) -> String {
    assert!(
        VG_LISTS.contains(&list),
        "only a VG list's entries are independent of their neighbours"
    );
    let mut w = Writer {
        out: String::with_capacity(size_hint),
        layout,
        fill: Some((list, fill)),
    };
    w.body(doc, 0, None);
    w.out
}

/// Writes the entries of a list section (see [`write_document_filling`]).
pub struct ListWriter<'w> {
    out: &'w mut String,
    layout: Layout,
}

impl ListWriter<'_> {
    /// Where the next entry starts in the whole text.
    pub fn position(&self) -> usize {
        self.out.len()
    }

    /// Writes the entry `name { body }` as the whole-document writer would.
    pub fn entry(&mut self, name: &str, body: &Section) {
        let mut w = Writer {
            out: std::mem::take(self.out),
            layout: self.layout,
            fill: None,
        };
        w.section_entry(name, body, LIST_ENTRY_DEPTH);
        *self.out = w.out;
    }

    /// Copies an entry's text exactly as an earlier [`ListWriter::entry`] of the same
    /// layout wrote it (from [`ListWriter::position`] before it to after it).
    pub fn verbatim(&mut self, text: &str) {
        self.out.push_str(text);
    }
}

/// The entries of a VG's list sit two levels down: VG section, list, entry.
const LIST_ENTRY_DEPTH: usize = 2;

type Fill<'f> = (&'f str, &'f mut dyn FnMut(&mut ListWriter<'_>));

struct Writer<'f> {
    out: String,
    layout: Layout,
    fill: Option<Fill<'f>>,
}

impl Writer<'_> {
    fn indent(&mut self, depth: usize) {
        if self.layout == Layout::Backup {
            for _ in 0..depth.min(MAX_INDENT) {
                self.out.push('\t');
            }
        }
    }

    /// Writes the items of a section whose own items sit at `depth`; `name` is the
    /// section's name (`None` for the document itself).
    fn body(&mut self, section: &Section, depth: usize, name: Option<&str>) {
        let items = &section.items;
        for (i, item) in items.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| &items[p]);
            if blank_before(item, prev, depth, name) {
                self.out.push('\n');
            }
            match item {
                Item::Pair { key, value } => self.pair(key, value, depth),
                Item::Section { name, body } => self.section(name, body, depth),
            }
        }
        // lvm2 writes a blank line where each of the VG's LV lists would go, whether or
        // not there is one; those present already got theirs above.
        if section.section("physical_volumes").is_some() {
            for list in &VG_LISTS[1..] {
                if section.section(list).is_none() {
                    self.out.push('\n');
                }
            }
        }
    }

    fn section(&mut self, name: &str, body: &Section, depth: usize) {
        self.indent(depth);
        self.name(name);
        self.out.push_str(" {\n");
        match self.fill.take() {
            Some((list, fill)) if depth + 1 == LIST_ENTRY_DEPTH && name == list => {
                let mut lw = ListWriter {
                    out: &mut self.out,
                    layout: self.layout,
                };
                fill(&mut lw);
                // One list is filled; anything else under that name is written as is.
            }
            other => {
                self.fill = other;
                self.body(body, depth + 1, Some(name));
            }
        }
        self.indent(depth);
        self.out.push_str("}\n");
    }

    /// One entry of a VG list section (the only lists [`write_document_filling`]
    /// takes), with the blank line lvm2 puts before each.
    fn section_entry(&mut self, name: &str, body: &Section, depth: usize) {
        self.out.push('\n');
        self.section(name, body, depth);
    }

    fn pair(&mut self, key: &str, value: &Value, depth: usize) {
        self.indent(depth);
        self.name(key);
        self.out.push_str(" = ");
        match value {
            Value::Array(items) if !items.is_empty() && AREA_KEYS.contains(&key) => {
                self.out.push_str("[\n");
                let group = area_width(items);
                let mut groups = items.chunks(group).peekable();
                while let Some(chunk) = groups.next() {
                    self.indent(depth + 1);
                    self.list(chunk);
                    if groups.peek().is_some() {
                        self.out.push(',');
                    }
                    self.out.push('\n');
                }
                self.indent(depth);
                self.out.push(']');
            }
            _ => self.value(value),
        }
        self.out.push('\n');
    }

    fn name(&mut self, name: &str) {
        if is_plain_name(name) {
            self.out.push_str(name);
        } else {
            self.string(name);
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            Value::Float(text) => self.out.push_str(text),
            Value::Str(s) => self.string(s),
            Value::Array(items) => {
                self.out.push('[');
                self.list(items);
                self.out.push(']');
            }
        }
    }

    /// Values separated by `", "`, as lvm2 writes them.
    fn list(&mut self, items: &[Value]) {
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.value(v);
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        // Nearly every string (names, uuids, tags) needs no escape: one copy.
        if !s.contains(['"', '\\']) {
            self.out.push_str(s);
            self.out.push('"');
            return;
        }
        for c in s.chars() {
            if c == '"' || c == '\\' {
                self.out.push('\\');
            }
            self.out.push(c);
        }
        self.out.push('"');
    }
}

/// Whether lvm2 would have a blank line before `item`.
fn blank_before(item: &Item, prev: Option<&Item>, depth: usize, parent: Option<&str>) -> bool {
    let Some(prev) = prev else {
        // The first entry of a PV/LV list still gets one, right after the `{`.
        return matches!(item, Item::Section { .. })
            && parent.is_some_and(|p| VG_LISTS.contains(&p));
    };
    let is_section = matches!(item, Item::Section { .. });
    let name = item.name();
    if depth == 0 {
        // The header's layout: blank lines around `description`, before `creation_host`,
        // and between the VG section and the header keys.
        return is_section
            || matches!(prev, Item::Section { .. })
            || name == "description"
            || name == "creation_host";
    }
    if let Item::Pair { key, .. } = prev {
        if BLANK_AFTER.contains(&key.as_str()) {
            return true;
        }
    }
    match item {
        Item::Section { name, .. } => {
            VG_LISTS.contains(&name.as_str())
                || parent.is_some_and(|p| VG_LISTS.contains(&p))
                // Thin pool messages: one blank line before the first.
                || name == "message1"
        }
        Item::Pair { key, value } => {
            (AREA_KEYS.contains(&key.as_str()) && matches!(value, Value::Array(a) if !a.is_empty()))
                // The VG's allocation policy (an LV's has none).
                || (depth == 1 && key == "allocation_policy")
        }
    }
}

/// How many values make one area: `"pv0", 0` and `"lv_rmeta_0", "lv_rimage_0"` are
/// pairs, a RAID image without metadata LV stands alone.
fn area_width(items: &[Value]) -> usize {
    let pairs = items.len() % 2 == 0
        && items.chunks(2).all(|pair| match pair {
            [Value::Str(_), Value::Int(_)] => true,
            [Value::Str(a), Value::Str(_)] => a.contains("_rmeta_"),
            _ => false,
        });
    if pairs {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::text::parse;

    fn sec(items: Vec<Item>) -> Section {
        Section { items }
    }
    fn p(key: &str, value: Value) -> Item {
        Item::Pair {
            key: key.into(),
            value,
        }
    }
    fn s(name: &str, items: Vec<Item>) -> Item {
        Item::Section {
            name: name.into(),
            body: sec(items),
        }
    }
    fn st(v: &str) -> Value {
        Value::Str(v.into())
    }
    fn both(doc: &Document) -> (String, String) {
        let disk = write_document(doc, Layout::Disk);
        let backup = write_document(doc, Layout::Backup);
        assert_eq!(parse(&disk).as_ref(), Ok(doc), "{disk}");
        assert_eq!(parse(&backup).as_ref(), Ok(doc), "{backup}");
        (disk, backup)
    }

    #[test]
    fn values() {
        let doc = sec(vec![
            p("i", Value::Int(-12)),
            p("min", Value::Int(i64::MIN)),
            p("f", Value::Float("+1.50".into())),
            p("s", st("plain")),
            p("e", st("say \"hi\" \\ \\q")),
            p("nl", st("two\nlines")),
            p("empty", st("")),
            p("u", st("ünï中")),
            p("none", Value::Array(vec![])),
            p("one", Value::str_array(["READ"])),
            p("flags", Value::str_array(["READ", "WRITE", "VISIBLE"])),
            p(
                "mixed",
                Value::Array(vec![st("pv0"), Value::Int(0), Value::Float(".5".into())]),
            ),
        ]);
        let (disk, backup) = both(&doc);
        let expected = "i = -12\n\
                        min = -9223372036854775808\n\
                        f = +1.50\n\
                        s = \"plain\"\n\
                        e = \"say \\\"hi\\\" \\\\ \\\\q\"\n\
                        nl = \"two\nlines\"\n\
                        empty = \"\"\n\
                        u = \"ünï中\"\n\
                        none = []\n\
                        one = [\"READ\"]\n\
                        flags = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\
                        mixed = [\"pv0\", 0, .5]\n";
        assert_eq!(disk, expected);
        assert_eq!(backup, expected);
    }

    #[test]
    fn names_are_quoted_only_when_needed() {
        let doc = sec(vec![
            p("lv.data+1-x", Value::Int(1)),
            p("it's", Value::Int(2)),
            p("'lead", Value::Int(3)),
            p("a b", Value::Int(4)),
            p("x#\"y\\", Value::Int(5)),
            s("sec name", vec![]),
        ]);
        let (disk, _) = both(&doc);
        assert_eq!(
            disk,
            "lv.data+1-x = 1\nit's = 2\n\"'lead\" = 3\n\"a b\" = 4\n\"x#\\\"y\\\\\" = 5\n\
             \n\"sec name\" {\n}\n"
        );
    }

    #[test]
    fn nesting_and_indentation() {
        let doc = sec(vec![s(
            "a",
            vec![
                p("x", Value::Int(1)),
                s(
                    "b",
                    vec![s(
                        "c",
                        vec![s(
                            "d",
                            vec![s("e", vec![s("f", vec![p("y", Value::Int(2))])])],
                        )],
                    )],
                ),
            ],
        )]);
        let (disk, backup) = both(&doc);
        assert_eq!(
            disk,
            "a {\nx = 1\nb {\nc {\nd {\ne {\nf {\ny = 2\n}\n}\n}\n}\n}\n}\n"
        );
        // lvm2's file writer never indents more than five tabs.
        assert_eq!(
            backup,
            "a {\n\tx = 1\n\tb {\n\t\tc {\n\t\t\td {\n\t\t\t\te {\n\t\t\t\t\tf {\n\
             \t\t\t\t\ty = 2\n\t\t\t\t\t}\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t}\n}\n"
        );
    }

    #[test]
    fn area_lists_one_area_a_line() {
        let seg =
            |key: &str, v: Value| sec(vec![s("segment1", vec![p("type", st("x")), p(key, v)])]);
        let (disk, backup) = both(&seg(
            "stripes",
            Value::Array(vec![st("pv0"), Value::Int(2), st("pv1"), Value::Int(0)]),
        ));
        assert_eq!(
            disk,
            "segment1 {\ntype = \"x\"\n\nstripes = [\n\"pv0\", 2,\n\"pv1\", 0\n]\n}\n"
        );
        assert_eq!(
            backup,
            "segment1 {\n\ttype = \"x\"\n\n\tstripes = [\n\t\t\"pv0\", 2,\n\t\t\"pv1\", 0\n\t]\n}\n"
        );
        let (disk, _) = both(&seg(
            "raids",
            Value::str_array(["r_rmeta_0", "r_rimage_0", "r_rmeta_1", "r_rimage_1"]),
        ));
        assert!(
            disk.contains(
                "raids = [\n\"r_rmeta_0\", \"r_rimage_0\",\n\"r_rmeta_1\", \"r_rimage_1\"\n]\n"
            ),
            "{disk}"
        );
        let (disk, _) = both(&seg(
            "raid0_lvs",
            Value::str_array(["r_rimage_0", "r_rimage_1"]),
        ));
        assert!(
            disk.contains("raid0_lvs = [\n\"r_rimage_0\",\n\"r_rimage_1\"\n]\n"),
            "{disk}"
        );
        let (disk, _) = both(&seg(
            "mirrors",
            Value::Array(vec![st("m_mimage_0"), Value::Int(0)]),
        ));
        assert!(
            disk.contains("mirrors = [\n\"m_mimage_0\", 0\n]\n"),
            "{disk}"
        );
        let (disk, _) = both(&seg("stripes", Value::Array(vec![])));
        assert!(disk.contains("type = \"x\"\nstripes = []\n"), "{disk}");
    }

    #[test]
    fn blank_lines_where_lvm2_puts_them() {
        let pv = |n: &str| {
            s(
                n,
                vec![
                    p("id", st("i")),
                    p("device", st("/dev/x")),
                    p("status", Value::str_array(["ALLOCATABLE"])),
                ],
            )
        };
        let vg = |lists: Vec<Item>| {
            let mut items = vec![
                p("seqno", Value::Int(1)),
                p("allocation_policy", st("contiguous")),
                p("metadata_copies", Value::Int(0)),
            ];
            items.extend(lists);
            sec(vec![
                s("vg", items),
                p("contents", st("Text Format Volume Group")),
                p("version", Value::Int(1)),
                p("description", st("")),
                p("creation_host", st("h")),
                p("creation_time", Value::Int(5)),
            ])
        };
        let pvs = s("physical_volumes", vec![pv("pv0"), pv("pv1")]);
        let (disk, _) = both(&vg(vec![pvs.clone()]));
        assert_eq!(
            disk,
            "vg {\nseqno = 1\n\nallocation_policy = \"contiguous\"\nmetadata_copies = 0\n\n\
             physical_volumes {\n\n\
             pv0 {\nid = \"i\"\ndevice = \"/dev/x\"\n\nstatus = [\"ALLOCATABLE\"]\n}\n\n\
             pv1 {\nid = \"i\"\ndevice = \"/dev/x\"\n\nstatus = [\"ALLOCATABLE\"]\n}\n\
             }\n\n\n}\n\
             \ncontents = \"Text Format Volume Group\"\nversion = 1\n\ndescription = \"\"\n\
             \ncreation_host = \"h\"\ncreation_time = 5\n"
        );
        let lv = s(
            "lv",
            vec![
                p("segment_count", Value::Int(1)),
                s(
                    "segment1",
                    vec![
                        p("start_extent", Value::Int(0)),
                        p("extent_count", Value::Int(1)),
                        p("type", st("thin-pool")),
                        s("message1", vec![p("create", st("t"))]),
                        s("message2", vec![p("delete", Value::Int(1))]),
                    ],
                ),
            ],
        );
        let lvs = s("logical_volumes", vec![lv]);
        let hist = s("historical_logical_volumes", vec![s("h", vec![])]);
        let (disk, _) = both(&vg(vec![pvs, lvs, hist]));
        let vg_text = disk.split("\ncontents").next().unwrap();
        assert!(
            vg_text.ends_with(
                "}\n\nlogical_volumes {\n\nlv {\nsegment_count = 1\n\nsegment1 {\n\
                 start_extent = 0\nextent_count = 1\n\ntype = \"thin-pool\"\n\n\
                 message1 {\ncreate = \"t\"\n}\nmessage2 {\ndelete = 1\n}\n}\n}\n}\n\n\
                 historical_logical_volumes {\n\nh {\n}\n}\n}\n"
            ),
            "{vg_text}"
        );
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert_eq!(write_document(&Document::new(), Layout::Disk), "");
        assert_eq!(write_document(&Document::new(), Layout::Backup), "");
    }
}
