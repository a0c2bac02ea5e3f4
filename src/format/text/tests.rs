//! Tests across parser and writer: real lvm2 texts, and round trips of arbitrary
//! documents. Grammar details are tested next to the parser and writer.

use proptest::prelude::*;

use super::parse::MAX_DEPTH;
use super::*;

/// Written by lvm2 2.03.16; see tests/fixtures/text/README.md.
const DISK: &str = include_str!("../../../tests/fixtures/text/vgtext-disk.txt");
const DISK_SEQNO1: &str = include_str!("../../../tests/fixtures/text/vgtext-disk-seqno1.txt");
const BACKUP: &str = include_str!("../../../tests/fixtures/text/vgtext-backup.txt");

/// lvm2's text without its comments and without leading/trailing blank lines, which is
/// what the writer should reproduce. Whole-line comments go with their line.
fn without_comments(text: &str) -> String {
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                '#' if !in_string => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        let kept = line[..cut].trim_end();
        if kept.is_empty() && cut < line.len() {
            continue;
        }
        lines.push(kept);
    }
    lines.join("\n").trim_matches('\n').to_owned()
}

fn vg(doc: &Document) -> &Section {
    doc.section("vgtext").expect("VG section")
}

#[test]
fn real_disk_text_parses() {
    let doc = parse(DISK).unwrap();
    let names: Vec<&str> = doc.items.iter().map(Item::name).collect();
    assert_eq!(
        names,
        [
            "vgtext",
            "contents",
            "version",
            "description",
            "creation_host",
            "creation_time"
        ]
    );
    assert_eq!(doc.get_str("contents"), Some("Text Format Volume Group"));
    assert_eq!(doc.get_int("version"), Some(1));
    // The trailing comments on these lines are not part of the values.
    assert_eq!(doc.get_str("creation_host"), Some("vm"));
    assert!(doc.get_int("creation_time").is_some());

    let vg = vg(&doc);
    assert_eq!(
        vg.get_str("id"),
        Some("qF8YlU-jZXz-KfZA-Nfx9-jvq0-RjAE-7JCjou")
    );
    assert_eq!(vg.get_int("seqno"), Some(4));
    assert_eq!(vg.get_str("format"), Some("lvm2"));
    assert_eq!(vg.get_int("extent_size"), Some(8192));
    assert_eq!(
        vg.get("status").unwrap().as_str_array().unwrap(),
        ["RESIZEABLE", "READ", "WRITE"]
    );
    assert_eq!(vg.get("flags"), Some(&Value::Array(vec![])));

    let pvs = vg.section("physical_volumes").unwrap();
    let pv_names: Vec<&str> = pvs.sections().map(|(n, _)| n).collect();
    assert_eq!(pv_names, ["pv0", "pv1"]);
    let pv0 = pvs.section("pv0").unwrap();
    assert_eq!(pv0.get_str("device"), Some("/dev/loop0"));
    assert_eq!(pv0.get_int("dev_size"), Some(131072));
    assert_eq!(pv0.get_int("pe_start"), Some(2048));
    assert_eq!(pv0.get_int("pe_count"), Some(15));

    let lvs = vg.section("logical_volumes").unwrap();
    let lv1 = lvs.section("lv1").unwrap();
    assert_eq!(lv1.get("tags").unwrap().as_str_array().unwrap(), ["hello"]);
    assert_eq!(
        lv1.get("status").unwrap().as_str_array().unwrap(),
        ["READ", "WRITE", "VISIBLE"]
    );
    assert_eq!(lv1.get_int("segment_count"), Some(2));
    let seg1 = lv1.section("segment1").unwrap();
    assert_eq!(seg1.get_int("start_extent"), Some(0));
    assert_eq!(seg1.get_int("extent_count"), Some(2));
    assert_eq!(seg1.get_str("type"), Some("striped"));
    assert_eq!(seg1.get_int("stripe_count"), Some(1));
    assert_eq!(
        seg1.get("stripes"),
        Some(&Value::Array(vec![Value::Str("pv0".into()), Value::Int(0)]))
    );
    let seg2 = lv1.section("segment2").unwrap();
    assert_eq!(seg2.get_int("start_extent"), Some(2));
    assert_eq!(seg2.get_int("extent_count"), Some(1));

    // A name using every extra character lvm2 allows in LV names.
    let striped = lvs.section("lv.data+1-x").unwrap();
    let seg = striped.section("segment1").unwrap();
    assert_eq!(seg.get_int("stripe_count"), Some(2));
    assert_eq!(seg.get_int("stripe_size"), Some(128));
    assert_eq!(
        seg.get("stripes"),
        Some(&Value::Array(vec![
            Value::Str("pv0".into()),
            Value::Int(2),
            Value::Str("pv1".into()),
            Value::Int(0),
        ]))
    );
}

#[test]
fn real_backup_has_the_same_vg_as_disk() {
    let disk = parse(DISK).unwrap();
    let backup = parse(BACKUP).unwrap();
    // Same seqno, so the same VG; only the header keys differ.
    assert_eq!(vg(&disk), vg(&backup));
    let names: Vec<&str> = backup.items.iter().map(Item::name).collect();
    assert_eq!(
        names,
        [
            "contents",
            "version",
            "description",
            "creation_host",
            "creation_time",
            "vgtext"
        ]
    );
    assert_eq!(
        backup.get_str("description"),
        Some("vgcfgbackup --config global/activation=0 -f /tmp/t/backup.txt vgtext")
    );
}

#[test]
fn real_disk_text_with_its_terminating_nul() {
    // A metadata area's recorded size counts the text's NUL.
    let with_nul = format!("{DISK}\0");
    assert_eq!(parse(&with_nul).unwrap(), parse(DISK).unwrap());
}

#[test]
fn disk_layout_matches_lvm2() {
    for text in [DISK, DISK_SEQNO1] {
        let doc = parse(text).unwrap();
        let written = write_document(&doc, Layout::Disk);
        assert_eq!(written.trim_matches('\n'), without_comments(text));
        assert_eq!(parse(&written).unwrap(), doc);
    }
}

#[test]
fn backup_layout_matches_lvm2() {
    let doc = parse(BACKUP).unwrap();
    let written = write_document(&doc, Layout::Backup);
    assert_eq!(written.trim_matches('\n'), without_comments(BACKUP));
    assert_eq!(parse(&written).unwrap(), doc);
}

#[test]
fn comment_stripping_helper() {
    assert_eq!(
        without_comments("# top\n\na = \"x#y\"\t# c\nb = 1\n\n"),
        "a = \"x#y\"\nb = 1"
    );
}

// ---- arbitrary documents ----

/// A name from the unquoted-identifier alphabet (`'` is fine except first).
fn plain_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.+!$%&*/:;<>?@^`|~\\-é中][a-zA-Z0-9_.+!$%&*/:;<>?@^`|~'\\-é中]{0,11}"
}

/// Any name the writer has to quote: non-empty, no NUL.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => plain_name(),
        1 => "[^\\x00]{1,8}",
        1 => "[ #{}\\[\\]=\",'\\\\\\n]{1,6}",
    ]
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\\x00]{0,16}",
        "[\"\\\\\\n\\t #'a-z{}\\[\\]=,é]{0,16}",
        Just(String::new()),
    ]
}

fn float_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[+-]?[0-9]{1,6}\\.[0-9]{0,6}",
        "[+-]?[0-9]{0,6}\\.[0-9]{1,6}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(0i64), Just(i64::MIN), Just(i64::MAX), -10i64..10].prop_map(Value::Int),
        float_literal().prop_map(Value::Float),
        any_string().prop_map(Value::Str),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        1 => prop::collection::vec(scalar(), 0..6).prop_map(Value::Array),
    ]
}

/// Documents with lvm2-ish names mixed in, so that the writer's layout rules fire.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => any_name(),
        1 => prop::sample::select(vec![
            "physical_volumes",
            "logical_volumes",
            "historical_logical_volumes",
            "device",
            "segment_count",
            "extent_count",
            "stripes",
            "raids",
            "message1",
            "allocation_policy",
            "description",
            "creation_host",
        ])
        .prop_map(str::to_owned),
    ]
}

fn section() -> impl Strategy<Value = Section> {
    let leaf = prop::collection::vec((key(), value()), 0..6).prop_map(|pairs| Section {
        items: pairs
            .into_iter()
            .map(|(key, value)| Item::Pair { key, value })
            .collect(),
    });
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop::collection::vec(
            prop_oneof![
                (key(), value()).prop_map(|(key, value)| Item::Pair { key, value }),
                (key(), inner).prop_map(|(name, body)| Item::Section { name, body }),
            ],
            0..6,
        )
        .prop_map(|items| Section { items })
    })
}

proptest! {
    #[test]
    fn round_trip_disk(doc in section()) {
        let text = write_document(&doc, Layout::Disk);
        prop_assert_eq!(parse(&text), Ok(doc), "text:\n{}", text);
    }

    #[test]
    fn round_trip_backup(doc in section()) {
        let text = write_document(&doc, Layout::Backup);
        prop_assert_eq!(parse(&text), Ok(doc), "text:\n{}", text);
    }

    #[test]
    fn disk_layout_has_no_indentation(doc in section()) {
        // A newline inside a string may be followed by anything, so only check texts
        // without one.
        let text = write_document(&doc, Layout::Disk);
        if !doc_has_multiline_string(&doc) {
            prop_assert!(text.lines().all(|l| !l.starts_with('\t')));
        }
    }

    #[test]
    fn parse_never_panics(text in "\\PC*") {
        let _ = parse(&text);
    }

    #[test]
    fn parse_never_panics_on_grammar_soup(parts in prop::collection::vec(prop::sample::select(vec![
        "{", "}", "[", "]", "=", ",", "\"", "'", "\\", "#", "\n", " ", "\t", "\0",
        "a", "vg", "1", "-", "+", ".", "0", "07", "09", "1.5", "0x1",
        "99999999999999999999", "-9223372036854775808", "é", "中", "\"str\"",
    ]), 0..64)) {
        let text: String = parts.concat();
        if let Err(e) = parse(&text) {
            prop_assert!(e.line >= 1 && e.column >= 1);
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn parse_errors_point_inside_the_text(text in "[a-z{}\\[\\]=,\"# \n0-9.-]{0,40}") {
        if let Err(e) = parse(&text) {
            let lines = text.split('\n').count();
            prop_assert!(e.line <= lines, "{:?} in {:?}", e, text);
            let line = text.split('\n').nth(e.line - 1).unwrap();
            prop_assert!(e.column <= line.chars().count() + 1, "{:?} in {:?}", e, text);
        }
    }
}

fn doc_has_multiline_string(section: &Section) -> bool {
    fn value_has(v: &Value) -> bool {
        match v {
            Value::Str(s) => s.contains('\n'),
            Value::Array(a) => a.iter().any(value_has),
            _ => false,
        }
    }
    section.items.iter().any(|item| match item {
        Item::Pair { key, value } => key.contains('\n') || value_has(value),
        Item::Section { name, body } => name.contains('\n') || doc_has_multiline_string(body),
    })
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "a {".repeat(100_000);
    let err = parse(&deep).unwrap_err();
    assert!(err.message.contains("nested deeper"), "{err}");
    assert_eq!((err.line, err.column), (1, 3 * MAX_DEPTH + 3));

    let ok = format!("{}{}", "a {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
    let mut doc = parse(&ok).unwrap();
    let mut depth = 0;
    while let Some(Item::Section { body, .. }) = doc.items.pop() {
        depth += 1;
        doc = body;
    }
    assert_eq!(depth, MAX_DEPTH);
}

#[test]
fn huge_inputs_do_not_crash() {
    let _ = parse(&"[".repeat(100_000));
    let _ = parse(&format!("a = {}", "[".repeat(100_000)));
    let _ = parse(&"}".repeat(100_000));
    let _ = parse(&"\"".repeat(100_001));
    let long = format!("a = [{}]", "1, ".repeat(100_000));
    assert_eq!(
        parse(&long)
            .unwrap()
            .get("a")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        100_000
    );
}
