//! lvmd and Debian's lvm2 on the same loop devices, metadata only (activation off): each
//! reads what the other wrote, and lvm2's `vgck` accepts everything lvmd writes.

mod common;

use common::{host_tests_enabled, num, text, vg_name, Loops};
use lvmd::lvm::{FaultInjector, Layout, LvmError};
use lvmd::model::SegmentKind;
use lvmd::store::scan::VgOnDisk;
use lvmd::units::{Bytes, ExtentSize, Sectors};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const MIB: u64 = 1 << 20;

fn striped(stripes: u32) -> Layout {
    Layout::Striped {
        stripes,
        stripe_size: Sectors(128),
    }
}

/// lvm2's `seg_pe_ranges` for our model: `dev:first-last` per area.
fn our_pe_ranges(found: &VgOnDisk, lv: &str) -> Vec<String> {
    let vg = &found.vg;
    let lv = vg.lv(lv).unwrap();
    lv.segments
        .iter()
        .map(|seg| match &seg.kind {
            SegmentKind::Striped { stripes, .. } => {
                let per = seg.extent_count.0 / stripes.len() as u64;
                stripes
                    .iter()
                    .map(|a| {
                        let pv = vg.pv(&a.name).unwrap();
                        format!(
                            "{}:{}-{}",
                            found.devices[&pv.id].display(),
                            a.start.0,
                            a.start.0 + per - 1
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            other => panic!("unexpected segment type {}", other.type_name()),
        })
        .collect()
}

/// Checks that lvm2's pvs/vgs/lvs agree with lvmd's reading of the VG on every size,
/// extent count and range.
fn assert_lvm2_agrees(loops: &Loops, vg_name: &str) {
    loops.vgck(vg_name);
    let found = loops.lvmd().read_vg(vg_name).unwrap();
    let vg = &found.vg;

    let vgs = loops.report(
        &[
            "vgs",
            "-o",
            "vg_name,vg_uuid,vg_seqno,vg_extent_size,vg_extent_count,vg_free_count,pv_count,lv_count,vg_tags",
            vg_name,
        ],
        "vg",
    );
    assert_eq!(vgs.len(), 1);
    let r = &vgs[0];
    assert_eq!(text(r, "vg_uuid"), vg.id.to_string());
    assert_eq!(num(r, "vg_seqno"), vg.seqno);
    assert_eq!(num(r, "vg_extent_size"), vg.extent_size.bytes().0);
    assert_eq!(num(r, "vg_extent_count"), vg.total_extents().0);
    assert_eq!(num(r, "vg_free_count"), vg.free_extents().0);
    assert_eq!(num(r, "pv_count"), vg.pvs.len() as u64);
    assert_eq!(
        num(r, "lv_count"),
        vg.lvs.iter().filter(|l| l.is_visible()).count() as u64
    );
    assert_eq!(text(r, "vg_tags"), vg.tags.join(","));

    let pvs = loops.report(
        &[
            "pvs",
            "-o",
            "pv_name,pv_uuid,vg_name,dev_size,pe_start,pv_pe_count,pv_pe_alloc_count",
            "--select",
            &format!("vg_name={vg_name}"),
        ],
        "pv",
    );
    assert_eq!(pvs.len(), vg.pvs.len());
    let used = vg.used_extents();
    for r in &pvs {
        let pv = vg
            .pvs
            .iter()
            .find(|p| p.id.to_string() == text(r, "pv_uuid"))
            .unwrap_or_else(|| panic!("lvm2 shows a PV lvmd does not: {r}"));
        assert_eq!(PathBuf::from(text(r, "pv_name")), found.devices[&pv.id]);
        assert_eq!(num(r, "pe_start"), pv.pe_start.to_bytes().0);
        assert_eq!(num(r, "pv_pe_count"), pv.pe_count.0);
        assert_eq!(
            num(r, "pv_pe_alloc_count"),
            used.get(pv.name.as_str()).map_or(0, |e| e.0)
        );
    }

    let lvs = loops.report(
        &[
            "lvs",
            "-a",
            "--segments",
            "-o",
            "lv_name,lv_uuid,lv_size,lv_tags,segtype,stripes,stripe_size,seg_start_pe,seg_size_pe,seg_pe_ranges",
            vg_name,
        ],
        "seg",
    );
    let mut rows_by_lv: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in &lvs {
        rows_by_lv
            .entry(text(r, "lv_name").trim_matches(['[', ']']).to_owned())
            .or_default()
            .push(r);
    }
    assert_eq!(
        rows_by_lv.keys().cloned().collect::<Vec<_>>(),
        {
            let mut names: Vec<String> = vg.lvs.iter().map(|l| l.name.clone()).collect();
            names.sort();
            names
        },
        "lvm2 and lvmd list different LVs"
    );
    for lv in &vg.lvs {
        let rows = &rows_by_lv[&lv.name];
        assert_eq!(rows.len(), lv.segments.len(), "segments of {}", lv.name);
        let size = vg.extent_size.span(lv.extents()).to_bytes().0;
        assert_eq!(text(rows[0], "lv_uuid"), lv.id.to_string());
        assert_eq!(num(rows[0], "lv_size"), size, "size of {}", lv.name);
        assert_eq!(text(rows[0], "lv_tags"), lv.tags.join(","));
        if !lv.is_plain() {
            continue;
        }
        let ranges = our_pe_ranges(&found, &lv.name);
        for ((row, seg), ours) in rows.iter().zip(&lv.segments).zip(&ranges) {
            let SegmentKind::Striped {
                stripes,
                stripe_size,
            } = &seg.kind
            else {
                unreachable!()
            };
            assert_eq!(num(row, "seg_start_pe"), seg.start_extent.0);
            assert_eq!(num(row, "seg_size_pe"), seg.extent_count.0);
            assert_eq!(num(row, "stripes"), stripes.len() as u64);
            assert_eq!(
                num(row, "stripe_size"),
                stripe_size.map_or(0, |s| s.to_bytes().0)
            );
            let theirs = text(row, "seg_pe_ranges");
            assert_eq!(
                theirs.split_whitespace().collect::<Vec<_>>().join(" "),
                *ours,
                "extent ranges of {}",
                lv.name
            );
        }
    }
}

#[test]
fn lvm2_accepts_and_agrees_with_what_lvmd_writes() {
    if !host_tests_enabled("lvm2_accepts_and_agrees_with_what_lvmd_writes") {
        return;
    }
    let loops = Loops::new(&[64, 64, 96]);
    let lvm = loops.lvmd();
    let vg = vg_name("create");
    lvm.vg_create(&vg, &loops.devs[..2], ExtentSize::DEFAULT)
        .unwrap();
    assert_lvm2_agrees(&loops, &vg);

    lvm.lv_create(
        &vg,
        "lin",
        Bytes(20 * MIB),
        Layout::Linear,
        &["pvc=a".into()],
    )
    .unwrap();
    lvm.lv_create(&vg, "str", Bytes(30 * MIB), striped(2), &[])
        .unwrap();
    // Fills the rest of the first PV and spills over: several segments.
    lvm.lv_create(&vg, "span", Bytes(50 * MIB), Layout::Linear, &[])
        .unwrap();
    assert_lvm2_agrees(&loops, &vg);

    lvm.vg_extend(&vg, &loops.devs[2..]).unwrap();
    lvm.lv_resize(&vg, "lin", Bytes(60 * MIB)).unwrap();
    lvm.lv_resize(&vg, "str", Bytes(48 * MIB)).unwrap();
    lvm.lv_change_tags(&vg, "span", &["owner/ns=x".into()], &[])
        .unwrap();
    lvm.vg_change_tags(&vg, &["node1".into()], &[]).unwrap();
    assert_lvm2_agrees(&loops, &vg);
    let lin = lvm.read_vg(&vg).unwrap().vg.lv("lin").unwrap().clone();
    assert!(lin.segments.len() >= 2, "lin should span PVs now: {lin:?}");

    lvm.lv_resize(&vg, "lin", Bytes(8 * MIB)).unwrap();
    lvm.lv_rename(&vg, "span", "spanned").unwrap();
    lvm.lv_remove(&vg, "str").unwrap();
    assert_lvm2_agrees(&loops, &vg);

    // lvm2 can restore from the backup lvmd keeps.
    let backup = loops.backup_dir().join(&vg);
    let backup_text = std::fs::read_to_string(&backup).unwrap();
    assert!(backup_text.contains("spanned {"), "{backup_text}");
    loops.lvm_ok(&[
        "vgcfgrestore",
        "--test",
        "-f",
        backup.to_str().unwrap(),
        &vg,
    ]);
    let archives = std::fs::read_dir(loops.archive_dir()).unwrap().count();
    assert!(archives >= 5, "{archives} archived versions");
    let listed = loops.lvm_ok(&["vgcfgrestore", "--list", &vg]);
    assert!(listed.contains("lvmd"), "{listed}");

    for lv in ["lin", "spanned"] {
        lvm.lv_remove(&vg, lv).unwrap();
    }
    lvm.vg_reduce(&vg, &loops.devs[2..]).unwrap();
    assert_lvm2_agrees(&loops, &vg);
    lvm.vg_remove(&vg).unwrap();
    let (ok, _, _) = loops.lvm(&["vgs", &vg]);
    assert!(!ok, "lvm2 still sees {vg} after vgremove");
    // The PVs are orphans lvm2 can reuse.
    let pvs = loops.report(&["pvs", "-o", "pv_name,vg_name"], "pv");
    assert_eq!(pvs.len(), 3, "{pvs:?}");
    assert!(pvs.iter().all(|r| text(r, "vg_name").is_empty()));
    let vg2 = vg_name("reuse");
    loops.lvm_ok(&["vgcreate", &vg2, loops.devs[0].to_str().unwrap()]);
    loops.lvm_ok(&["vgremove", "-f", &vg2]);
}

#[test]
fn lvmd_reads_and_changes_what_lvm2_writes() {
    if !host_tests_enabled("lvmd_reads_and_changes_what_lvm2_writes") {
        return;
    }
    let loops = Loops::new(&[64, 64, 64]);
    let vg = vg_name("import");
    let devs: Vec<&str> = loops.devs.iter().map(|d| d.to_str().unwrap()).collect();
    loops.lvm_ok(&["pvcreate", devs[0], devs[1], devs[2]]);
    loops.lvm_ok(&[
        "vgcreate", "--addtag", "fromlvm2", &vg, devs[0], devs[1], devs[2],
    ]);
    let lvcreate = |args: &[&str]| {
        let mut full = vec!["lvcreate", "-an", "-Zn", "-y"];
        full.extend(args);
        full.push(&vg);
        loops.lvm_ok(&full);
    };
    lvcreate(&["-L", "8M", "-n", "a", "--addtag", "t1"]);
    lvcreate(&["-L", "8M", "-n", "b"]);
    loops.lvm_ok(&["lvextend", "-L", "+12M", &format!("{vg}/a")]);
    lvcreate(&["-L", "16M", "-i", "2", "-I", "64k", "-n", "s"]);
    lvcreate(&["-L", "20M", "-i", "3", "-I", "128k", "-n", "s3"]);
    let backup = loops.dir.path().join("lvm2-backup");
    loops.lvm_ok(&["vgcfgbackup", "-f", backup.to_str().unwrap(), &vg]);
    let before = std::fs::read_to_string(&backup).unwrap();
    assert!(before.contains("stripe_count = 3"), "{before}");

    let lvm = loops.lvmd();
    let found = lvm.read_vg(&vg).unwrap();
    assert_eq!(found.vg.tags, vec!["fromlvm2".to_string()]);
    assert_eq!(found.vg.lv("a").unwrap().segments.len(), 2);
    assert_eq!(found.vg.lv("a").unwrap().tags, vec!["t1".to_string()]);
    assert_eq!(found.vg.lvs.len(), 4);
    assert_lvm2_agrees(&loops, &vg);

    lvm.lv_create(&vg, "fromlvmd", Bytes(12 * MIB), Layout::Linear, &[])
        .unwrap();
    lvm.lv_remove(&vg, "b").unwrap();
    assert_lvm2_agrees(&loops, &vg);
    let lvs = loops.report(&["lvs", "-o", "lv_name", &vg], "lv");
    let names: Vec<String> = lvs.iter().map(|r| text(r, "lv_name")).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&"fromlvmd".to_string()) && !names.contains(&"b".to_string()));
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

#[test]
fn lvm2_and_lvmd_take_turns_for_50_rounds() {
    if !host_tests_enabled("lvm2_and_lvmd_take_turns_for_50_rounds") {
        return;
    }
    let loops = Loops::new(&[128, 128]);
    let vg = vg_name("turns");
    let devs: Vec<&str> = loops.devs.iter().map(|d| d.to_str().unwrap()).collect();
    loops.lvm_ok(&["vgcreate", &vg, devs[0], devs[1]]);
    let lvm = loops.lvmd();
    let mut expected: Vec<String> = Vec::new();
    let mut seqno = lvm.read_vg(&vg).unwrap().vg.seqno;
    for round in 0..50 {
        let name = format!("r{round}");
        if round % 2 == 0 {
            loops.lvm_ok(&["lvcreate", "-an", "-Zn", "-L", "4M", "-n", &name, &vg]);
        } else {
            lvm.lv_create(&vg, &name, Bytes(4 * MIB), Layout::Linear, &[])
                .unwrap();
        }
        expected.push(name);
        // Every third round, the other side removes the oldest volume.
        if round % 3 == 2 {
            let old = expected.remove(0);
            if round % 2 == 0 {
                lvm.lv_remove(&vg, &old).unwrap();
            } else {
                loops.lvm_ok(&["lvremove", "-y", &format!("{vg}/{old}")]);
            }
        }
        let found = lvm.read_vg(&vg).unwrap();
        assert!(
            found.vg.seqno > seqno,
            "seqno did not move in round {round}"
        );
        seqno = found.vg.seqno;
        let mut ours: Vec<String> = found.vg.lvs.iter().map(|l| l.name.clone()).collect();
        let lvs = loops.report(&["lvs", "-o", "lv_name", &vg], "lv");
        let mut theirs: Vec<String> = lvs.iter().map(|r| text(r, "lv_name")).collect();
        let mut want = expected.clone();
        ours.sort();
        theirs.sort();
        want.sort();
        assert_eq!(ours, want, "lvmd's view in round {round}");
        assert_eq!(theirs, want, "lvm2's view in round {round}");
        let vgs = loops.report(&["vgs", "-o", "vg_seqno", &vg], "vg");
        assert_eq!(num(&vgs[0], "vg_seqno"), seqno, "round {round}");
    }
    assert_lvm2_agrees(&loops, &vg);
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// A commit stopped after each of its writes in turn leaves a VG that lvm2 and lvmd
/// both read, as the old version or the new one, never anything else.
#[test]
fn a_commit_stopped_after_any_write_leaves_old_or_new() {
    if !host_tests_enabled("a_commit_stopped_after_any_write_leaves_old_or_new") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let vg = vg_name("crash");
    let mut lvm = loops.lvmd();
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    lvm.lv_create(&vg, "keep", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();

    let mut stopped_at = 0;
    for step in 0.. {
        let old = lvm.read_vg(&vg).unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        lvm.inject = Some(FaultInjector(Arc::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst) < step
        })));
        let name = format!("new{step}");
        let result = lvm.lv_create(&vg, &name, Bytes(4 * MIB), Layout::Linear, &[]);
        lvm.inject = None;
        let completed = result.is_ok();
        if !completed {
            assert!(
                matches!(
                    result,
                    Err(LvmError::Store(lvmd::store::StoreError::Injected(_)))
                ),
                "{result:?}"
            );
        }
        let now = lvm.read_vg(&vg).unwrap();
        let theirs = loops.report(&["vgs", "-o", "vg_seqno", &vg], "vg");
        let their_seqno = num(&theirs[0], "vg_seqno");
        assert_eq!(
            their_seqno, now.vg.seqno,
            "lvm2 and lvmd disagree after step {step}"
        );
        let has_new = now.vg.lv(&name).is_some();
        if now.vg.seqno == old.vg.seqno {
            assert_eq!(now.vg, old.vg, "same seqno, different VG after step {step}");
        } else {
            assert_eq!(now.vg.seqno, old.vg.seqno + 1);
            assert!(has_new, "new seqno without the new LV after step {step}");
        }
        let lvs = loops.report(&["lvs", "-o", "lv_name", &vg], "lv");
        assert_eq!(
            lvs.iter().any(|r| text(r, "lv_name") == name),
            has_new,
            "lvm2 and lvmd disagree on {name} after step {step}"
        );
        if has_new {
            // Next round starts from a clean VG: drop the LV (this also rewrites
            // every copy, repairing any stale one).
            lvm.lv_remove(&vg, &name).unwrap();
        }
        if completed {
            stopped_at = step;
            break;
        }
    }
    // 2 PVs x (text + header) + the sync point: every one of them was a stop point.
    assert!(stopped_at >= 5, "only {stopped_at} steps");
    loops.vgck(&vg);
    lvm.lv_remove(&vg, "keep").unwrap();
    lvm.vg_remove(&vg).unwrap();
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    if !host_tests_enabled("bad_input_is_refused_and_changes_nothing") {
        return;
    }
    let loops = Loops::new(&[64, 1]);
    let lvm = loops.lvmd();
    let vg = vg_name("bad");
    let small = loops.devs[1].clone();
    let err = lvm
        .vg_create(
            &vg,
            &[loops.devs[0].clone(), small.clone()],
            ExtentSize::DEFAULT,
        )
        .unwrap_err();
    assert!(matches!(err, LvmError::DeviceTooSmall { .. }), "{err}");
    assert!(err.to_string().contains(small.to_str().unwrap()), "{err}");
    // Nothing was written to the good device either.
    assert!(lvmd::store::scan::read_pv(&loops.devs[0])
        .unwrap()
        .is_none());

    let err = lvm
        .vg_create("bad name", &loops.devs[..1], ExtentSize::DEFAULT)
        .unwrap_err();
    assert!(err.to_string().contains("\"bad name\""), "{err}");
    // Names of /dev entries: lvm2's vgcreate refuses them as well (its LV links would
    // land in /dev/shm, /dev/pts ...). Neither writes anything.
    let dev0 = loops.devs[0].to_str().unwrap();
    for name in ["shm", "pts"] {
        let err = lvm
            .vg_create(name, &loops.devs[..1], ExtentSize::DEFAULT)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("/dev/{name} already exists")),
            "{err}"
        );
        let (ok, _, stderr) = loops.lvm(&["vgcreate", name, dev0]);
        assert!(
            !ok && stderr.contains("already exists in filesystem"),
            "lvm2 vgcreate {name}: {stderr}"
        );
    }
    assert!(lvmd::store::scan::read_pv(&loops.devs[0])
        .unwrap()
        .is_none());

    lvm.vg_create(&vg, &loops.devs[..1], ExtentSize::DEFAULT)
        .unwrap();
    let before = lvm.read_vg(&vg).unwrap();
    let cases: Vec<(LvmError, &str)> = vec![
        (
            lvm.vg_create(&vg, &loops.devs[..1], ExtentSize::DEFAULT)
                .unwrap_err(),
            "already exists",
        ),
        (
            lvm.lv_create(&vg, "x", Bytes(0), Layout::Linear, &[])
                .unwrap_err(),
            "size 0",
        ),
        (
            lvm.lv_create(&vg, "x", Bytes(1 << 40), Layout::Linear, &[])
                .unwrap_err(),
            "extents",
        ),
        (
            lvm.lv_create(&vg, "x_rimage", Bytes(MIB), Layout::Linear, &[])
                .unwrap_err(),
            "_rimage",
        ),
        (
            lvm.lv_create(&vg, "x", Bytes(MIB), striped(2), &[])
                .unwrap_err(),
            "stripe",
        ),
        (
            lvm.lv_create(&vg, "x", Bytes(MIB), Layout::Linear, &["bad tag".into()])
                .unwrap_err(),
            "\"bad tag\"",
        ),
        (lvm.lv_remove(&vg, "nope").unwrap_err(), "nope"),
        (
            lvm.vg_extend(&vg, &[PathBuf::from("/dev/null")])
                .unwrap_err(),
            "not among the devices",
        ),
        (lvm.vg_remove("nope").unwrap_err(), "nope"),
    ];
    for (err, needle) in &cases {
        assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
    }
    let after = lvm.read_vg(&vg).unwrap();
    assert_eq!(before.vg, after.vg, "a refused request changed the VG");
    assert_eq!(before.text, after.text);
    lvm.vg_remove(&vg).unwrap();
}

/// Attaches an lvm2-made fixture (tests/fixtures/lvm2/<name>): sparse images of the
/// recorded sizes with the saved heads (label + metadata area) written at offset 0.
/// Returns the VG name.
fn attach_fixture(loops: &mut Loops, name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lvm2")
        .join(name);
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let mut vg = String::new();
    for line in manifest.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols[0] {
            "vg" => vg = cols[1].to_owned(),
            "pv" => {
                let head = std::process::Command::new("gzip")
                    .arg("-dc")
                    .arg(dir.join(cols[1]))
                    .output()
                    .unwrap();
                assert!(head.status.success());
                let image = loops.dir.path().join(cols[1].trim_end_matches(".head.gz"));
                let f = std::fs::File::create(&image).unwrap();
                f.set_len(cols[2].parse().unwrap()).unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, &head.stdout, 0).unwrap();
                loops.add_image(&image);
            }
            _ => {}
        }
    }
    vg
}

/// lvm2's view of every LV (hidden ones too), by name.
fn lvm2_lvs(loops: &Loops, vg: &str) -> BTreeMap<String, serde_json::Value> {
    loops
        .report(
            &[
                "lvs",
                "-a",
                "-o",
                "lv_name,lv_uuid,lv_attr,lv_size,segtype,pool_lv,origin,data_lv,metadata_lv,lv_tags,devices",
                vg,
            ],
            "lv",
        )
        .into_iter()
        .map(|r| (text(&r, "lv_name"), r))
        .collect()
}

#[test]
fn lvmd_changes_an_lvm2_vg_with_raid_thin_snapshot_and_cache_intact() {
    if !host_tests_enabled("lvmd_changes_an_lvm2_vg_with_raid_thin_snapshot_and_cache_intact") {
        return;
    }
    let mut loops = Loops::new(&[]);
    let vg = attach_fixture(&mut loops, "mixed");
    loops.vgck(&vg);
    let before = lvm2_lvs(&loops, &vg);

    let lvm = loops.lvmd();
    let found = lvm.read_vg(&vg).unwrap();
    assert!(found.missing_pvs().is_empty());
    let kind = |lv: &str| found.vg.lv(lv).unwrap().segments[0].kind.clone();
    assert!(matches!(kind("mirrored"), SegmentKind::Raid1 { ref legs, .. } if legs.len() == 2));
    assert!(matches!(kind("pool"), SegmentKind::ThinPool { .. }));
    assert!(
        matches!(kind("thin_snap"), SegmentKind::Thin { origin: Some(ref o), .. } if o == "thin")
    );
    assert!(
        matches!(kind("snapshot0"), SegmentKind::Snapshot { ref origin, .. } if origin == "lin_b")
    );
    assert!(
        matches!(kind("cached"), SegmentKind::Other { ref type_name, .. } if type_name == "cache")
    );
    assert_eq!(
        found.vg.lvs.len(),
        before.len() + 1,
        "lvs -a hides only snapshot0"
    );
    assert!(found.vg.problems().is_empty(), "{:?}", found.vg.problems());

    // What lvmd cannot change safely, it refuses, naming why.
    let refused = [
        (lvm.lv_remove(&vg, "lin_b").unwrap_err(), "snapshot"),
        (lvm.lv_remove(&vg, "thin").unwrap_err(), "thin"),
        (lvm.lv_remove(&vg, "cached").unwrap_err(), "cache"),
        // (lvm2's mirror, one extent, is one lvmd grows: lvmd_grows_mirrors_leg_by_leg_as_lvm2_does.)
        (lvm.lv_remove(&vg, "pool_tdata").unwrap_err(), "thin-pool"),
    ];
    for (err, needle) in &refused {
        assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
    }
    assert_eq!(lvm.read_vg(&vg).unwrap().vg.seqno, found.vg.seqno);

    // A read-modify-write: one LV added, one removed.
    lvm.lv_create(
        &vg,
        "added",
        Bytes(8 * MIB),
        Layout::Linear,
        &["by=lvmd".into()],
    )
    .unwrap();
    lvm.lv_remove(&vg, "striped").unwrap();
    loops.vgck(&vg);

    let after = lvm2_lvs(&loops, &vg);
    let mut expected = before.clone();
    expected.remove("striped");
    let added = after.get("added").expect("lvm2 sees the new LV").clone();
    assert_eq!(text(&added, "lv_tags"), "by=lvmd");
    assert_eq!(num(&added, "lv_size"), 8 * MIB);
    expected.insert("added".into(), added);
    assert_eq!(after, expected, "lvm2's view changed beyond the two LVs");

    // lvmd's own model of everything it did not touch is unchanged too, unknown parts
    // (cache, cache-pool with its odd type name) included.
    let now = lvm.read_vg(&vg).unwrap();
    for lv in &found.vg.lvs {
        if lv.name != "striped" {
            assert_eq!(now.vg.lv(&lv.name), Some(lv), "{} changed", lv.name);
        }
    }
    assert!(now.text.contains("cache-pool+METADATA_FORMAT"));

    // lvmd-ctl inspect reads it all, as JSON.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lvmd-ctl"))
        .arg("inspect")
        .arg("--json")
        .args(&loops.devs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vgs = report["volume_groups"].as_array().unwrap();
    assert_eq!(vgs.len(), 1);
    assert_eq!(vgs[0]["name"], vg.as_str());
    assert_eq!(vgs[0]["seqno"], now.vg.seqno);
    let lv_type = |name: &str| {
        vgs[0]["lvs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from inspect"))["type"]
            .clone()
    };
    assert_eq!(lv_type("mirrored"), "raid1");
    assert_eq!(lv_type("pool"), "thin-pool");
    assert_eq!(lv_type("cached"), "cache");
    assert_eq!(lv_type("added"), "linear");
    assert_eq!(report["devices"].as_array().unwrap().len(), 3);
    assert!(report["devices"][0]["pv"]["metadata_areas"][0]["seqno"].is_u64());

    // And the human form names the VG and its LVs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lvmd-ctl"))
        .arg("inspect")
        .args(&loops.devs)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&format!("Volume group {vg}")), "{table}");
    assert!(
        table.contains("[pool_tdata]") && table.contains("added"),
        "{table}"
    );
}

/// lvm2 and lvmd change one VG at the same moment: lvm2's file locks keep them apart,
/// so no change is lost and the metadata stays consistent.
#[test]
fn lvm2_and_lvmd_writing_at_once_lose_nothing() {
    if !host_tests_enabled("lvm2_and_lvmd_writing_at_once_lose_nothing") {
        return;
    }
    let loops = Arc::new(Loops::new(&[256]));
    let vg = vg_name("race");
    loops.lvm_ok(&["vgcreate", &vg, loops.devs[0].to_str().unwrap()]);
    let rounds = 12;
    let lvm2_side = {
        let (loops, vg) = (loops.clone(), vg.clone());
        std::thread::spawn(move || {
            for i in 0..rounds {
                loops.lvm_ok(&[
                    "lvcreate",
                    "-an",
                    "-Zn",
                    "-L",
                    "4M",
                    "-n",
                    &format!("l2_{i}"),
                    &vg,
                ]);
            }
        })
    };
    let lvm = loops.lvmd();
    for i in 0..rounds {
        lvm.lv_create(&vg, &format!("ld_{i}"), Bytes(4 * MIB), Layout::Linear, &[])
            .unwrap();
    }
    lvm2_side.join().unwrap();
    let found = lvm.read_vg(&vg).unwrap();
    assert_eq!(found.vg.lvs.len(), 2 * rounds, "a change was lost");
    assert_lvm2_agrees(&loops, &vg);
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// A metadata area too small for the next text is refused before anything is written.
#[test]
fn a_full_metadata_area_is_refused_cleanly() {
    if !host_tests_enabled("a_full_metadata_area_is_refused_cleanly") {
        return;
    }
    let loops = Loops::new(&[512]);
    let vg = vg_name("full");
    let dev = loops.devs[0].to_str().unwrap();
    loops.lvm_ok(&[
        "pvcreate",
        "--metadatasize",
        "32k",
        "--dataalignment",
        "4k",
        dev,
    ]);
    loops.lvm_ok(&["vgcreate", "-s", "1m", &vg, dev]);
    let lvm = loops.lvmd();
    let mut created = 0;
    let err = loop {
        let before = lvm.read_vg(&vg).unwrap();
        match lvm.lv_create(
            &vg,
            &format!("lv{created}"),
            Bytes(MIB),
            Layout::Linear,
            &[],
        ) {
            Ok(_) => created += 1,
            Err(e) => {
                let after = lvm.read_vg(&vg).unwrap();
                assert_eq!(before.text, after.text, "a refused commit changed the disk");
                break e;
            }
        }
        assert!(created < 500, "the metadata area never filled");
    };
    assert!(created > 5, "only {created} LVs fit");
    assert!(err.to_string().contains("full"), "{err}");
    loops.vgck(&vg);
    let lvs = loops.report(&["lvs", "-o", "lv_name", &vg], "lv");
    assert_eq!(lvs.len(), created);
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

#[test]
fn devices_of_another_vg_or_with_data_are_refused() {
    if !host_tests_enabled("devices_of_another_vg_or_with_data_are_refused") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let (a, b) = (vg_name("owner"), vg_name("thief"));
    loops.lvm_ok(&["vgcreate", &a, loops.devs[0].to_str().unwrap()]);
    let lvm = loops.lvmd();
    let err = lvm
        .vg_create(&b, &loops.devs[..1], ExtentSize::DEFAULT)
        .unwrap_err();
    assert!(
        matches!(err, LvmError::PvInUse { ref vg, .. } if *vg == a),
        "{err}"
    );
    let err = lvm.vg_extend(&a, &loops.devs[..1]).unwrap_err();
    assert!(matches!(err, LvmError::PvInUse { .. }), "{err}");
    // A filesystem on the second device: never overwritten.
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&loops.devs[1])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = lvm
        .vg_create(&b, &loops.devs[1..], ExtentSize::DEFAULT)
        .unwrap_err();
    assert!(err.to_string().contains("ext4 filesystem"), "{err}");
    let err = lvm.pv_create(&loops.devs[1]).unwrap_err();
    assert!(matches!(err, LvmError::DeviceNotEmpty { .. }), "{err}");
    loops.lvm_ok(&["vgremove", "-f", &a]);
}

/// PVs with two metadata areas (one at the end of the device) and PVs whose area lvm2
/// keeps ignored: lvmd writes every area lvm2 would, and leaves the ignored one alone.
#[test]
fn second_and_ignored_metadata_areas_are_kept_as_lvm2_keeps_them() {
    if !host_tests_enabled("second_and_ignored_metadata_areas_are_kept_as_lvm2_keeps_them") {
        return;
    }
    let loops = Loops::new(&[64, 64, 64]);
    let vg = vg_name("mdas");
    let devs: Vec<&str> = loops.devs.iter().map(|d| d.to_str().unwrap()).collect();
    loops.lvm_ok(&[
        "pvcreate",
        "--pvmetadatacopies",
        "2",
        devs[0],
        devs[1],
        devs[2],
    ]);
    loops.lvm_ok(&["vgcreate", &vg, devs[0], devs[1], devs[2]]);
    loops.lvm_ok(&["pvchange", "--metadataignore", "y", devs[2]]);
    let lvm = loops.lvmd();
    lvm.lv_create(&vg, "a", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();
    let seqno = lvm.read_vg(&vg).unwrap().vg.seqno;
    let pvs: Vec<_> = loops
        .devs
        .iter()
        .map(|d| lvmd::store::scan::read_pv(d).unwrap().unwrap())
        .collect();
    for pv in &pvs[..2] {
        assert_eq!(pv.mdas.len(), 2);
        for m in &pv.mdas {
            let text = m.text.as_deref().expect("both areas hold the VG");
            assert!(
                text.contains(&format!("seqno = {seqno}")),
                "{}",
                pv.path.display()
            );
        }
    }
    for m in &pvs[2].mdas {
        assert!(m.header.is_ignored());
        assert!(m.text.is_none());
    }
    assert_lvm2_agrees(&loops, &vg);
    let pvs = loops.report(
        &["pvs", "-o", "pv_name,pv_mda_count,pv_mda_used_count"],
        "pv",
    );
    let used: u64 = pvs.iter().map(|r| num(r, "pv_mda_used_count")).sum();
    assert_eq!(used, 4, "{pvs:?}");

    // As the daemon changes it: through a cache, whose proof that nobody changed the
    // VG reads each PV's label and first area's header at once and the area at the
    // end on its own, and whose commits take those headers instead of reading them.
    let cache = OneVg::default();
    let (_, reused) = lvm.read_vg_cached(&vg, &cache).unwrap();
    assert!(!reused, "nothing cached yet");
    for name in ["b", "c"] {
        let spec = lvmd::lvm::LvSpec {
            name: name.into(),
            size: Bytes(8 * MIB),
            layout: Layout::Linear,
            tags: vec![],
        };
        let (_, results) = lvm
            .edit_group(&vg, &[lvmd::lvm::Edit::CreateLv(spec)], Some(&cache))
            .unwrap();
        results.into_iter().for_each(|r| r.unwrap());
        let (found, reused) = lvm.read_vg_cached(&vg, &cache).unwrap();
        assert!(reused, "the headers lvmd wrote prove the cached VG current");
        assert!(found.vg.lv(name).is_some());
    }
    let seqno = lvm.read_vg(&vg).unwrap().vg.seqno;
    for d in &loops.devs[..2] {
        let pv = lvmd::store::scan::read_pv(d).unwrap().unwrap();
        for m in &pv.mdas {
            let text = m.text.as_deref().expect("both areas hold the VG");
            assert!(
                text.contains(&format!("seqno = {seqno}")),
                "{}",
                d.display()
            );
        }
    }
    // lvm2 changes it: the cached VG is no longer proven, and is read again.
    loops.lvm_ok(&["lvremove", "-f", &format!("{vg}/b")]);
    let (found, reused) = lvm.read_vg_cached(&vg, &cache).unwrap();
    assert!(!reused);
    assert!(found.vg.lv("b").is_none());
    assert_lvm2_agrees(&loops, &vg);
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// The daemon's cache of parsed VGs, for one VG.
#[derive(Default)]
struct OneVg(std::sync::Mutex<Option<Arc<VgOnDisk>>>);

impl lvmd::lvm::VgCache for OneVg {
    fn get(&self, _vg: &str) -> Option<Arc<VgOnDisk>> {
        self.0.lock().unwrap().clone()
    }
    fn put(&self, _vg: &str, found: &Arc<VgOnDisk>) {
        *self.0.lock().unwrap() = Some(Arc::clone(found));
    }
}

/// A uniquely named devices file in lvm2's `/etc/lvm/devices` (lvm2 2.03.16 takes
/// `devices/devicesfile` only as a name in that directory), removed on drop with its lock
/// file, and the directory too when this test created it. Never `system.devices`.
struct TestDevicesFile {
    name: String,
    created_dir: bool,
}

const LVM2_DEVICES_DIR: &str = "/etc/lvm/devices";

impl TestDevicesFile {
    fn new(test: &str) -> TestDevicesFile {
        let created_dir = !std::path::Path::new(LVM2_DEVICES_DIR).exists();
        std::fs::create_dir_all(LVM2_DEVICES_DIR).unwrap();
        let name = format!("lvmdt_{test}_{}.devices", std::process::id());
        assert_ne!(name, "system.devices");
        TestDevicesFile { name, created_dir }
    }

    fn path(&self) -> PathBuf {
        std::path::Path::new(LVM2_DEVICES_DIR).join(&self.name)
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.path()).unwrap()
    }

    fn counter(&self) -> u32 {
        let f = lvmd::store::devices_file::DevicesFile::parse(&self.text());
        f.version().unwrap().expect("a VERSION line").2
    }

    /// `lvm <args>` confined to the loop devices, using this devices file.
    fn lvm(&self, loops: &Loops, args: &[&str]) -> (bool, String, String) {
        let mut config = loops.lvm_config().replace(
            "use_devicesfile=0",
            &format!("use_devicesfile=1 devicesfile=\"{}\"", self.name),
        );
        assert!(config.contains("use_devicesfile=1"));
        // lvm2 ignores global_filter with a devices file, and says so; `filter` stays.
        let start = config.find("global_filter=[").unwrap();
        let end = start + config[start..].find("] ").unwrap() + 2;
        config.replace_range(start..end, "");
        let (cmd, rest) = args.split_first().unwrap();
        let mut full = vec![*cmd, "--config", &config];
        full.extend(rest);
        common::run("lvm", &full)
    }

    fn lvm_ok(&self, loops: &Loops, args: &[&str]) -> String {
        let (ok, out, err) = self.lvm(loops, args);
        assert!(
            ok,
            "lvm {args:?} failed:\n{err}\n{out}\nfile:\n{}",
            self.text()
        );
        out
    }
}

impl Drop for TestDevicesFile {
    fn drop(&mut self) {
        let path = self.path();
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(format!("{}_new", path.display()));
        let _ = std::fs::remove_file(
            std::path::Path::new(lvmd::store::lock::DEFAULT_LOCK_DIR)
                .join(format!("D_{}", self.name)),
        );
        if self.created_dir {
            let _ = std::fs::remove_dir(LVM2_DEVICES_DIR);
        }
    }
}

/// lvm2 restricted to a devices file it made sees the PV and VG lvmd creates next to its
/// own, finds nothing to correct in the entry lvmd wrote, and lvmd counted the version up.
#[test]
fn lvm2_using_a_devices_file_sees_what_lvmd_creates() {
    if !host_tests_enabled("lvm2_using_a_devices_file_sees_what_lvmd_creates") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let vg = vg_name("devfile");
    let df = TestDevicesFile::new("devfile");
    let (a, b) = (
        loops.devs[0].display().to_string(),
        loops.devs[1].display().to_string(),
    );
    // lvm2 makes the file with its first PV.
    df.lvm_ok(&loops, &["pvcreate", &a]);
    let made = df.text();
    assert!(
        made.starts_with("# LVM uses devices listed in this file.\n"),
        "{made}"
    );
    assert_eq!(made.matches("IDTYPE=").count(), 1, "{made}");
    let before = df.counter();
    // Without an entry lvm2 would not see lvmd's PV at all.
    let pvs = df.lvm_ok(&loops, &["pvs", "--noheadings", "-o", "pv_name"]);
    assert_eq!(pvs.split_whitespace().collect::<Vec<_>>(), vec![a.as_str()]);

    let mut lvm = loops.lvmd();
    lvm.lvm2_devices_file = lvmd::store::devices_file::DevicesFileLocation {
        dir: LVM2_DEVICES_DIR.into(),
        name: df.name.clone(),
    };
    let label = lvm.pv_create(&loops.devs[1]).unwrap();
    assert_eq!(df.counter(), before + 1);
    lvm.vg_create(&vg, &[loops.devs[1].clone()], ExtentSize::DEFAULT)
        .unwrap();
    // The PV was already listed: vgcreate had nothing to add.
    assert_eq!(df.counter(), before + 1);

    let text = df.text();
    let backing = std::fs::read_to_string(format!(
        "/sys/block/{}/loop/backing_file",
        loops.devs[1].file_name().unwrap().to_str().unwrap()
    ))
    .unwrap();
    let line = format!(
        "IDTYPE=loop_file IDNAME={} DEVNAME={b} PVID={}",
        backing.trim_end(),
        label.pv_uuid.compact()
    );
    assert!(
        text.lines().any(|l| l == line),
        "{line} missing from:\n{text}"
    );
    // lvm2's own first entry and header comments are untouched.
    for l in made.lines().filter(|l| !l.starts_with("VERSION")) {
        assert!(text.lines().any(|t| t == l), "{l} lost from:\n{text}");
    }

    let (ok, out, err) = df.lvm(&loops, &["lvmdevices", "--check"]);
    let complaints: Vec<&str> = err
        .lines()
        .chain(out.lines())
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("Activation disabled") && !l.contains("leaked on lvm"))
        .collect();
    assert!(
        ok && complaints.is_empty(),
        "lvmdevices --check:\n{err}\n{out}"
    );

    let pvs = df.lvm_ok(&loops, &["pvs", "--noheadings", "-o", "pv_name,vg_name"]);
    let mut rows: Vec<Vec<&str>> = pvs
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    rows.sort();
    // Sorted as text, like the rows: /dev/loop10 comes before /dev/loop8.
    let mut want = vec![vec![a.as_str()], vec![b.as_str(), vg.as_str()]];
    want.sort();
    assert_eq!(rows, want);
    let vgs = df.lvm_ok(
        &loops,
        &["vgs", "--noheadings", "-o", "vg_name,pv_count", &vg],
    );
    assert_eq!(
        vgs.split_whitespace().collect::<Vec<_>>(),
        vec![vg.as_str(), "1"]
    );
    // lvm2 found nothing in the file to correct, or it would have rewritten it.
    assert_eq!(df.text(), text);
    df.lvm_ok(&loops, &["vgremove", "-f", &vg]);
}

/// One disk named twice, by its path and by a symlink to it (as /dev/disk/by-id gives):
/// refused before anything is written, so no orphan PV is left behind.
#[test]
fn one_device_named_twice_is_refused_before_any_write() {
    if !host_tests_enabled("one_device_named_twice_is_refused_before_any_write") {
        return;
    }
    let loops = Loops::new(&[64]);
    let link = loops.dir.path().join("by-id-disk0");
    std::os::unix::fs::symlink(&loops.devs[0], &link).unwrap();
    let mut lvm = loops.lvmd();
    lvm.devices.push(link.clone());
    let before = std::fs::read(&loops.devs[0]).unwrap()[..1 << 20].to_vec();
    let err = lvm
        .vg_create(
            &vg_name("twice"),
            &[loops.devs[0].clone(), link],
            ExtentSize::DEFAULT,
        )
        .unwrap_err();
    assert!(
        matches!(&err, LvmError::InvalidArgument { why, .. } if why.contains("named twice")),
        "{err}"
    );
    assert!(before == std::fs::read(&loops.devs[0]).unwrap()[..1 << 20]);
    let (ok, _, _) = loops.lvm(&["pvs", loops.devs[0].to_str().unwrap()]);
    assert!(!ok, "lvm2 finds a PV that should not exist");
}

/// A raid1 LV lvmd makes is what lvm2's `lvcreate --type raid1 -m1` makes: lvm2 lists
/// it as raid1 with its hidden `_rimage_N`/`_rmeta_N` legs, each leg's two sub-LVs on
/// one PV and no PV shared by two legs; `vgck` is clean; lvm2 renames and removes it
/// (legs included) and lvmd removes one lvm2 renamed.
#[test]
fn lvm2_reads_renames_and_removes_the_mirrors_lvmd_makes() {
    if !host_tests_enabled("lvm2_reads_renames_and_removes_the_mirrors_lvmd_makes") {
        return;
    }
    let loops = Loops::new(&[64, 64, 64]);
    let lvm = loops.lvmd();
    let vg = vg_name("mirror");
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let mirror = |mirrors| Layout::Raid1 {
        mirrors,
        region_size: lvmd::model::layout::DEFAULT_REGION_SIZE,
        integrity: false,
    };
    lvm.lv_create(&vg, "lin", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();
    lvm.lv_create(&vg, "m2", Bytes(12 * MIB), mirror(1), &["pvc=a".into()])
        .unwrap();
    lvm.lv_create(&vg, "m3", Bytes(8 * MIB), mirror(2), &[])
        .unwrap();
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    for (lv, legs, size) in [("m2", 2, 12 * MIB), ("m3", 3, 8 * MIB)] {
        let top = &lvs[lv];
        assert_eq!(text(top, "segtype"), "raid1", "{top}");
        // lvm2's attr: r(aid), and i(mage)/e (raid metadata) for the legs.
        assert!(text(top, "lv_attr").starts_with('r'), "{top}");
        assert_eq!(num(top, "lv_size"), size);
        assert_eq!(text(top, "lv_tags"), if lv == "m2" { "pvc=a" } else { "" });
        let mut pvs = Vec::new();
        for i in 0..legs {
            let image = &lvs[&format!("[{lv}_rimage_{i}]")];
            let meta = &lvs[&format!("[{lv}_rmeta_{i}]")];
            // (i)mage, or (I)mage out of sync: with activation off lvm2 cannot ask the
            // kernel how far a sync is.
            assert!(text(image, "lv_attr").starts_with(['i', 'I']), "{image}");
            assert!(text(meta, "lv_attr").starts_with('e'), "{meta}");
            assert_eq!(num(image, "lv_size"), size);
            assert_eq!(num(meta, "lv_size"), 4 * MIB);
            let dev =
                |r: &serde_json::Value| text(r, "devices").split('(').next().unwrap().to_owned();
            assert_eq!(dev(image), dev(meta), "leg {i} of {lv} spans PVs");
            pvs.push(dev(image));
        }
        pvs.sort();
        pvs.dedup();
        assert_eq!(pvs.len(), legs, "{lv}: two legs share a PV");
        assert!(
            text(top, "devices").contains(&format!("{lv}_rimage_0(0)")),
            "{top}"
        );
    }
    // lvm2 renames lvmd's mirror (legs renamed along) and lvmd removes it.
    loops.lvm_ok(&["lvrename", &vg, "m2", "m2b"]);
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    assert!(lvs.contains_key("[m2b_rimage_1]"), "{:?}", lvs.keys());
    lvm.lv_remove(&vg, "m2b").unwrap();
    // lvmd renames one (legs along) and lvm2 removes it.
    lvm.lv_rename(&vg, "m3", "m3b").unwrap();
    let lvs = lvm2_lvs(&loops, &vg);
    assert!(lvs.contains_key("[m3b_rmeta_2]"), "{:?}", lvs.keys());
    loops.vgck(&vg);
    loops.lvm_ok(&["lvremove", "-f", &format!("{vg}/m3b")]);
    let lvs = lvm2_lvs(&loops, &vg);
    assert_eq!(lvs.keys().collect::<Vec<_>>(), vec!["lin"], "{lvs:?}");
    // Every extent is free again but the linear LV's.
    let found = lvm.read_vg(&vg).unwrap();
    assert_eq!(found.vg.free_extents().0 + 2, found.vg.total_extents().0);
    // A leg is no LV of its own to remove, and resizing a mirror is refused as such.
    lvm.lv_create(&vg, "m", Bytes(4 * MIB), mirror(1), &[])
        .unwrap();
    let e = lvm.lv_remove(&vg, "m_rimage_0").unwrap_err();
    assert!(matches!(e, LvmError::LvUnsupported { .. }), "{e}");
    // Shrinking a mirror is refused as such (lvmd grows them: below).
    lvm.lv_resize(&vg, "m", Bytes(12 * MIB)).unwrap();
    let e = lvm.lv_resize(&vg, "m", Bytes(4 * MIB)).unwrap_err();
    assert!(e.to_string().contains("does not shrink them"), "{e}");
    loops.vgck(&vg);
}

/// A raid1 LV with integrity lvmd makes is one lvm2 reads as its own
/// `--raidintegrity y` mirror (lvm2 cannot make one without device-mapper; the layout
/// is compared with what it made in the VM in `lvm::raid`'s tests): `lvs -a` shows
/// each image as an `integrity` LV over its `_iorig`, with its `_imeta` beside it on
/// the leg's PV, `vgck` is clean; lvm2 renames it (layers along) and lvmd removes it;
/// lvmd renames one and lvm2 removes it; every extent is free again; lvmd grows one
/// and lvm2 reads every layer's new size.
#[test]
fn lvm2_reads_renames_and_removes_the_integrity_mirrors_lvmd_makes() {
    if !host_tests_enabled("lvm2_reads_renames_and_removes_the_integrity_mirrors_lvmd_makes") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let lvm = loops.lvmd();
    let vg = vg_name("imirror");
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let mirror = Layout::Raid1 {
        mirrors: 1,
        region_size: lvmd::model::layout::DEFAULT_REGION_SIZE,
        integrity: true,
    };
    lvm.lv_create(&vg, "a", Bytes(8 * MIB), mirror, &[])
        .unwrap();
    lvm.lv_create(&vg, "b", Bytes(12 * MIB), mirror, &[])
        .unwrap();
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    for (lv, size) in [("a", 8 * MIB), ("b", 12 * MIB)] {
        let top = &lvs[lv];
        assert_eq!(text(top, "segtype"), "raid1", "{top}");
        assert_eq!(num(top, "lv_size"), size);
        let mut pvs = Vec::new();
        for i in 0..2 {
            let image = &lvs[&format!("[{lv}_rimage_{i}]")];
            assert_eq!(text(image, "segtype"), "integrity", "{image}");
            assert_eq!(num(image, "lv_size"), size);
            assert!(
                text(image, "devices").contains(&format!("{lv}_rimage_{i}_iorig(0)")),
                "{image}"
            );
            let dev = |name: &str| {
                let r = &lvs[&format!("[{lv}_rimage_{i}_{name}]")];
                text(r, "devices").split('(').next().unwrap().to_owned()
            };
            let imeta = &lvs[&format!("[{lv}_rimage_{i}_imeta]")];
            assert_eq!(num(imeta, "lv_size"), 8 * MIB, "{imeta}");
            let meta = &lvs[&format!("[{lv}_rmeta_{i}]")];
            let meta_dev = text(meta, "devices").split('(').next().unwrap().to_owned();
            // The whole leg on one PV.
            assert_eq!(dev("iorig"), dev("imeta"), "leg {i} of {lv}");
            assert_eq!(dev("iorig"), meta_dev, "leg {i} of {lv}");
            pvs.push(meta_dev);
        }
        pvs.dedup();
        assert_eq!(pvs.len(), 2, "{lv}: two legs share a PV");
    }
    loops.lvm_ok(&["lvrename", &vg, "a", "a2"]);
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    assert!(lvs.contains_key("[a2_rimage_1_imeta]"), "{:?}", lvs.keys());
    lvm.lv_remove(&vg, "a2").unwrap();
    lvm.lv_rename(&vg, "b", "b2").unwrap();
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    assert!(lvs.contains_key("[b2_rimage_0_iorig]"), "{:?}", lvs.keys());
    loops.lvm_ok(&["lvremove", "-f", &format!("{vg}/b2")]);
    let lvs = lvm2_lvs(&loops, &vg);
    assert!(lvs.is_empty(), "{lvs:?}");
    let found = lvm.read_vg(&vg).unwrap();
    assert_eq!(found.vg.free_extents(), found.vg.total_extents());
    // Grown (as lvm2's lvextend: each _iorig, the integrity images with them), lvm2
    // reads the new sizes.
    lvm.lv_create(&vg, "c", Bytes(4 * MIB), mirror, &[])
        .unwrap();
    lvm.lv_resize(&vg, "c", Bytes(12 * MIB)).unwrap();
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    for lv in [
        "c",
        "[c_rimage_0]",
        "[c_rimage_1]",
        "[c_rimage_0_iorig]",
        "[c_rimage_1_iorig]",
    ] {
        assert_eq!(num(&lvs[lv], "lv_size"), 12 * MIB, "{lv}");
    }
    for i in 0..2 {
        let dev = |sub: &str| {
            text(&lvs[&format!("[c_rimage_{i}_{sub}]")], "devices")
                .split('(')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(dev("iorig"), dev("imeta"), "leg {i} left its PV");
    }
    let repair = lvmd::lvm::Edit::RepairRaid {
        lv: "c".into(),
        legs: vec![1],
        avoid: vec![],
    };
    // Two PVs, each holding a leg: a repair has no PV to move a leg to (never onto
    // the other leg's), and changes nothing.
    let e = lvm.edit(&vg, &repair).unwrap_err();
    assert!(matches!(e, LvmError::Alloc { .. }), "{e}");
    loops.vgck(&vg);
}

/// The legs of raid1 LV `lv` in lvm2's report: per leg, the PVs its rmeta and rimage
/// sit on (every segment's), the rimage's size and its number of segments.
fn lvm2_legs(loops: &Loops, vg: &str, lv: &str, legs: usize) -> Vec<(Vec<String>, u64, usize)> {
    let rows = loops.report(
        &[
            "lvs",
            "-a",
            "--segments",
            "-o",
            "lv_name,lv_size,devices",
            vg,
        ],
        "seg",
    );
    (0..legs)
        .map(|i| {
            let (image, meta) = (format!("[{lv}_rimage_{i}]"), format!("[{lv}_rmeta_{i}]"));
            let mine: Vec<&serde_json::Value> = rows
                .iter()
                .filter(|r| [&image, &meta].contains(&&text(r, "lv_name")))
                .collect();
            let mut pvs: Vec<String> = mine
                .iter()
                .map(|r| text(r, "devices").split('(').next().unwrap().to_owned())
                .collect();
            pvs.sort();
            pvs.dedup();
            let image_rows: Vec<_> = mine
                .iter()
                .filter(|r| text(r, "lv_name") == image)
                .collect();
            (pvs, num(image_rows[0], "lv_size"), image_rows.len())
        })
        .collect()
}

/// lvmd grows a raid1 LV as lvm2's `lvextend` grows one: every `_rimage_N` by the same
/// amount, continuing on its own PV where the extents after it are free, elsewhere on
/// a PV no other leg uses where they are not, and never onto another leg's PV; lvm2
/// lists the result with the new size on every leg and `vgck` is clean. Where no PV is
/// left for a leg, the grow is refused and nothing changes.
#[test]
fn lvmd_grows_mirrors_leg_by_leg_as_lvm2_does() {
    if !host_tests_enabled("lvmd_grows_mirrors_leg_by_leg_as_lvm2_does") {
        return;
    }
    let loops = Loops::new(&[64, 64, 64]);
    let lvm = loops.lvmd();
    let vg = vg_name("mgrow");
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let mirror = Layout::Raid1 {
        mirrors: 1,
        region_size: lvmd::model::layout::DEFAULT_REGION_SIZE,
        integrity: false,
    };
    lvm.lv_create(&vg, "m", Bytes(8 * MIB), mirror, &[])
        .unwrap();
    let before = lvm2_legs(&loops, &vg, "m", 2);
    // Each leg continues on its own PV.
    lvm.lv_resize(&vg, "m", Bytes(20 * MIB)).unwrap();
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    assert_eq!(num(&lvs["m"], "lv_size"), 20 * MIB);
    let after = lvm2_legs(&loops, &vg, "m", 2);
    for (i, ((pvs0, ..), (pvs1, size, runs))) in before.iter().zip(&after).enumerate() {
        assert_eq!(pvs0, pvs1, "leg {i} left its PV: {after:?}");
        assert_eq!(pvs1.len(), 1, "leg {i} spans PVs: {after:?}");
        assert_eq!(*size, 20 * MIB, "leg {i}");
        // One run: the extension continued the image's segment.
        assert_eq!(*runs, 1, "leg {i}: {after:?}");
    }
    // A linear LV right after leg 0's image: leg 0 grows elsewhere, but only on its own
    // PV or the third, never on leg 1's.
    let leg0_pv = after[0].0[0].clone();
    let leg1_pv = after[1].0[0].clone();
    // (lvm2 puts it at the first free extent of that PV: right after the image.)
    loops.lvm_ok(&[
        "lvcreate", "-an", "-Zn", "-Wn", "-L", "4M", "-n", "block", &vg, &leg0_pv,
    ]);
    lvm.lv_resize(&vg, "m", Bytes(40 * MIB)).unwrap();
    loops.vgck(&vg);
    let grown = lvm2_legs(&loops, &vg, "m", 2);
    assert_eq!(num(&lvm2_lvs(&loops, &vg)["m"], "lv_size"), 40 * MIB);
    assert_eq!((grown[0].1, grown[1].1), (40 * MIB, 40 * MIB));
    assert!(
        !grown[0].0.contains(&leg1_pv),
        "leg 0 on leg 1's PV: {grown:?}"
    );
    assert!(
        !grown[1].0.contains(&leg0_pv),
        "leg 1 on leg 0's PV: {grown:?}"
    );
    // Leg 0 went around the blocking LV: a second run; leg 1 continued in one.
    assert!(grown[0].2 >= 2, "{grown:?}");
    assert_eq!(grown[1].2, 1, "{grown:?}");
    // More than the PVs hold for two legs: refused, and nothing changes.
    let found = lvm.read_vg(&vg).unwrap();
    let e = lvm.lv_resize(&vg, "m", Bytes(100 * MIB)).unwrap_err();
    assert!(matches!(e, LvmError::Alloc { .. }), "{e}");
    assert_eq!(lvm.read_vg(&vg).unwrap().vg.seqno, found.vg.seqno);
    // lvm2's own lvextend on lvmd's mirror, where it can without device-mapper, and
    // lvmd grows what lvm2 grew.
    let planned = lvmd::lvm::edit::apply(
        &found.vg,
        &lvmd::lvm::Edit::ResizeLv {
            lv: "m".into(),
            size: Bytes(44 * MIB),
        },
        &lvmd::lvm::edit::Origin::now("test"),
    )
    .unwrap()
    .vg;
    let (ok, _, err) = loops.lvm(&["lvextend", "-L", "44M", &format!("{vg}/m")]);
    if ok {
        loops.vgck(&vg);
        // lvm2 put every leg's new extent where lvmd would have.
        let by_lvm2 = lvm.read_vg(&vg).unwrap().vg;
        for sub in ["m_rimage_0", "m_rimage_1", "m_rmeta_0", "m_rmeta_1"] {
            assert_eq!(
                by_lvm2.lv(sub).unwrap().segments,
                planned.lv(sub).unwrap().segments,
                "{sub}: lvm2's lvextend and lvmd's grow differ"
            );
        }
        lvm.lv_resize(&vg, "m", Bytes(48 * MIB)).unwrap();
        loops.vgck(&vg);
        let lvs = lvm2_lvs(&loops, &vg);
        assert_eq!(num(&lvs["m"], "lv_size"), 48 * MIB);
    } else {
        eprintln!("lvm2's lvextend of a raid1 LV without device-mapper: {err}");
    }
    // lvm2 removes the grown mirror, every leg along.
    loops.lvm_ok(&["lvremove", "-f", &format!("{vg}/m")]);
    let lvs = lvm2_lvs(&loops, &vg);
    assert_eq!(lvs.keys().collect::<Vec<_>>(), vec!["block"], "{lvs:?}");
}

/// PVs lvmd creates on large devices get a 16 MiB metadata area, laid out as lvm2's
/// `pvcreate --metadatasize 16m` lays it out (data from 17 MiB), smaller ones lvm2's
/// default; a set size is rounded as lvm2 rounds it. lvm2 reads them all, and lvmd
/// reports how much text the VG's areas take.
#[test]
fn metadata_areas_are_sized_for_thousands_of_volumes_as_lvm2_sizes_them() {
    if !host_tests_enabled("metadata_areas_are_sized_for_thousands_of_volumes_as_lvm2_sizes_them") {
        return;
    }
    use lvmd::lvm::MetadataSize;
    // 4 GiB (sparse): large; 64 MiB: lvm2's default; 64 MiB with 8 MiB asked.
    let loops = Loops::new(&[4096, 64, 64]);
    let mut lvm = loops.lvmd();
    let vg = vg_name("mda_size");
    lvm.vg_create(&vg, &loops.devs[..2], ExtentSize::DEFAULT)
        .unwrap();
    lvm.metadata_size = MetadataSize::Exactly(Bytes(8 * MIB));
    lvm.vg_extend(&vg, &loops.devs[2..]).unwrap();
    loops.vgck(&vg);
    let rows = loops.report(&["pvs", "-o", "pv_name,pe_start,pv_mda_size"], "pv");
    let row = |i: usize| {
        let dev = loops.devs[i].display().to_string();
        let r = rows.iter().find(|r| text(r, "pv_name") == dev).unwrap();
        (num(r, "pe_start"), num(r, "pv_mda_size"))
    };
    // What lvm2 2.03 writes for --metadatasize 16m and 8m, and by default.
    assert_eq!(row(0), (17 * MIB, 17 * MIB - 4096));
    assert_eq!(row(1), (MIB, MIB - 4096));
    assert_eq!(row(2), (9 * MIB, 9 * MIB - 4096));
    // The VG's capacity is its smallest area's share (old and new copy side by side).
    let found = lvm.read_vg(&vg).unwrap();
    let small = lvmd::format::mda::MdaHeader::new_empty(Bytes(4096), Bytes(MIB - 4096));
    assert_eq!(found.metadata_capacity, Bytes(small.max_text_size()));
    assert!(found.metadata_capacity > Bytes(500 << 10));
    assert!((found.text.len() as u64) < found.metadata_capacity.0);
}

/// lvmd makes a thin pool and thin LVs as lvm2's `lvcreate --type thin-pool` and
/// `lvcreate --thin` write them: lvm2 lists them with their sizes, types, chunk size,
/// thin ids and transaction ids, `vgck` accepts every step (the pending `create` /
/// `delete` messages included), and lvmd adds to and removes from a pool lvm2 made.
/// (lvm2 cannot make or remove thin LVs without device-mapper: that direction is in
/// the VM.)
#[test]
fn lvm2_lists_the_thin_pools_and_thin_volumes_lvmd_makes() {
    if !host_tests_enabled("lvm2_lists_the_thin_pools_and_thin_volumes_lvmd_makes") {
        return;
    }
    use lvmd::lvm::thin::{PoolDiscards, ThinPoolSpec};
    use lvmd::lvm::Edit;
    let loops = Loops::new(&[64, 64]);
    let lvm = loops.lvmd();
    let vg = vg_name("thin");
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let spec = ThinPoolSpec {
        name: "pool".into(),
        data_size: Bytes(18 * MIB),
        chunk_size: None,
        metadata_size: None,
        zero_new_blocks: true,
        discards: PoolDiscards::Passdown,
        tags: vec!["class=thin".into()],
    };
    lvm.edit(&vg, &Edit::CreateThinPool(spec)).unwrap();
    loops.vgck(&vg);
    let report = |loops: &Loops| -> BTreeMap<String, serde_json::Value> {
        loops
            .report(
                &[
                    "lvs",
                    "-a",
                    "-o",
                    "lv_name,lv_attr,lv_size,segtype,pool_lv,data_lv,metadata_lv,chunk_size,transaction_id,thin_id,zero,discards,lv_tags",
                    &vg,
                ],
                "lv",
            )
            .into_iter()
            .map(|r| (text(&r, "lv_name"), r))
            .collect()
    };
    let lvs = report(&loops);
    assert_eq!(
        lvs.keys().collect::<Vec<_>>(),
        vec!["[lvol0_pmspare]", "[pool_tdata]", "[pool_tmeta]", "pool"],
        "{lvs:?}"
    );
    let pool = &lvs["pool"];
    assert_eq!(text(pool, "segtype"), "thin-pool");
    assert!(text(pool, "lv_attr").starts_with('t'), "{pool}");
    // 18 MiB rounds up to 5 extents; lvm2's estimate (64 bytes a chunk) is far below
    // its 2 MiB minimum, which rounds up to one extent.
    assert_eq!(num(pool, "lv_size"), 20 * MIB);
    assert_eq!(num(pool, "chunk_size"), 64 << 10);
    assert_eq!(num(pool, "transaction_id"), 0);
    assert_eq!(text(pool, "discards"), "passdown");
    assert_eq!(text(pool, "zero"), "zero");
    assert_eq!(text(pool, "lv_tags"), "class=thin");
    assert_eq!(text(pool, "data_lv"), "[pool_tdata]");
    assert_eq!(text(pool, "metadata_lv"), "[pool_tmeta]");
    assert_eq!(num(&lvs["[pool_tdata]"], "lv_size"), 20 * MIB);
    assert!(text(&lvs["[pool_tdata]"], "lv_attr").starts_with('T'));
    assert_eq!(num(&lvs["[pool_tmeta]"], "lv_size"), 4 * MIB);
    assert!(text(&lvs["[pool_tmeta]"], "lv_attr").starts_with('e'));
    assert_eq!(num(&lvs["[lvol0_pmspare]"], "lv_size"), 4 * MIB);

    // Thin LVs, overcommitted: each commit raises the pool's transaction id and
    // records its message until the kernel took it.
    let thin = |name: &str, mib: u64| Edit::CreateThin {
        name: name.into(),
        pool: "pool".into(),
        size: Bytes(mib * MIB),
        tags: vec![],
    };
    lvm.edit(&vg, &thin("t1", 40)).unwrap();
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    assert!(found.text.contains("create = \"t1\""), "{}", found.text);
    // One transaction in flight at a time.
    let e = lvm.edit(&vg, &thin("t2", 8)).unwrap_err();
    assert!(e.to_string().contains("not yet known sent"), "{e}");
    let sent = |tid| Edit::ThinMessagesSent {
        pool: "pool".into(),
        transaction_id: tid,
    };
    assert!(lvm.edit(&vg, &sent(0)).is_err(), "the metadata is at 1");
    lvm.edit(&vg, &sent(1)).unwrap();
    lvm.edit(&vg, &thin("t2", 8)).unwrap();
    lvm.edit(&vg, &sent(2)).unwrap();
    loops.vgck(&vg);
    let lvs = report(&loops);
    assert_eq!(num(&lvs["pool"], "transaction_id"), 2);
    for (lv, id, size) in [("t1", 1, 40 * MIB), ("t2", 2, 8 * MIB)] {
        let r = &lvs[lv];
        assert_eq!(text(r, "segtype"), "thin");
        assert!(text(r, "lv_attr").starts_with('V'), "{r}");
        assert_eq!(text(r, "pool_lv"), "pool");
        assert_eq!(num(r, "thin_id"), id);
        assert_eq!(num(r, "lv_size"), size);
    }
    let found = lvm.read_vg(&vg).unwrap();
    let seg = |lv: &str| found.vg.lv(lv).unwrap().segments[0].kind.clone();
    assert!(matches!(
        seg("t1"),
        SegmentKind::Thin {
            transaction_id: 0,
            ..
        }
    ));
    assert!(matches!(
        seg("t2"),
        SegmentKind::Thin {
            transaction_id: 1,
            ..
        }
    ));
    // The pool's sub-LVs are no volumes to remove on their own, nor is the pool
    // while thin LVs use it.
    assert!(lvm.lv_remove(&vg, "pool_tmeta").is_err());
    assert!(lvm
        .edit(&vg, &Edit::RemoveThin { lv: "pool".into() })
        .is_err());

    // Removal: the delete recorded with the next transaction id.
    lvm.edit(&vg, &Edit::RemoveThin { lv: "t1".into() })
        .unwrap();
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    assert!(found.text.contains("delete = 1"), "{}", found.text);
    lvm.edit(&vg, &sent(3)).unwrap();
    let lvs = report(&loops);
    assert!(!lvs.contains_key("t1"));
    assert_eq!(num(&lvs["pool"], "transaction_id"), 3);
    // The highest id is free again (lvm2's rule: one above the highest in use).
    lvm.edit(&vg, &Edit::RemoveThin { lv: "t2".into() })
        .unwrap();
    lvm.edit(&vg, &sent(4)).unwrap();
    lvm.edit(&vg, &thin("t3", 4)).unwrap();
    loops.vgck(&vg);
    assert_eq!(num(&report(&loops)["t3"], "thin_id"), 1);
    assert_lvm2_agrees_on_free(&loops, &vg);

    // Grown as lvextend grows a pool: lvm2 lists the new sizes, the spare as large as
    // the metadata, and vgck accepts it.
    lvm.edit(
        &vg,
        &Edit::ResizeThinPool {
            pool: "pool".into(),
            data: Some(Bytes(40 * MIB)),
            metadata: Some(Bytes(8 * MIB)),
        },
    )
    .unwrap();
    loops.vgck(&vg);
    let lvs = report(&loops);
    assert_eq!(num(&lvs["pool"], "lv_size"), 40 * MIB);
    assert_eq!(num(&lvs["[pool_tdata]"], "lv_size"), 40 * MIB);
    assert_eq!(num(&lvs["[pool_tmeta]"], "lv_size"), 8 * MIB);
    assert_eq!(num(&lvs["[lvol0_pmspare]"], "lv_size"), 8 * MIB);
    assert_eq!(num(&lvs["t3"], "thin_id"), 1);
    assert_lvm2_agrees_on_free(&loops, &vg);
}

/// lvm2's free extents of `vg` are lvmd's.
fn assert_lvm2_agrees_on_free(loops: &Loops, vg: &str) {
    let found = loops.lvmd().read_vg(vg).unwrap();
    let vgs = loops.report(&["vgs", "-o", "vg_free_count", vg], "vg");
    assert_eq!(num(&vgs[0], "vg_free_count"), found.vg.free_extents().0);
}

/// lvmd adds a thin LV to the pool lvm2 made (next device id and transaction id) and
/// removes one of lvm2's, and lvm2 agrees.
#[test]
fn lvmd_adds_to_and_removes_from_an_lvm2_thin_pool() {
    if !host_tests_enabled("lvmd_adds_to_and_removes_from_an_lvm2_thin_pool") {
        return;
    }
    use lvmd::lvm::Edit;
    let mut loops = Loops::new(&[]);
    let vg = attach_fixture(&mut loops, "mixed");
    let lvm = loops.lvmd();
    lvm.edit(
        &vg,
        &Edit::CreateThin {
            name: "t_lvmd".into(),
            pool: "pool".into(),
            size: Bytes(12 * MIB),
            tags: vec![],
        },
    )
    .unwrap();
    loops.vgck(&vg);
    let lvs = loops.report(
        &[
            "lvs",
            "-o",
            "lv_name,thin_id,transaction_id,lv_size",
            "--select",
            "lv_name=t_lvmd||lv_name=pool",
            &vg,
        ],
        "lv",
    );
    let row = |n: &str| lvs.iter().find(|r| text(r, "lv_name") == n).unwrap();
    // lvm2 left the pool at 2 with thin ids 1 and 2.
    assert_eq!(num(row("t_lvmd"), "thin_id"), 3);
    assert_eq!(num(row("pool"), "transaction_id"), 3);
    assert_eq!(num(row("t_lvmd"), "lv_size"), 12 * MIB);
    lvm.edit(
        &vg,
        &Edit::ThinMessagesSent {
            pool: "pool".into(),
            transaction_id: 3,
        },
    )
    .unwrap();
    lvm.edit(
        &vg,
        &Edit::RemoveThin {
            lv: "thin_snap".into(),
        },
    )
    .unwrap();
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    assert!(found.vg.lv("thin_snap").is_none());
    assert!(found.text.contains("delete = 2"));
}

/// The section of LV `lv` in a VG's metadata text, its lines trimmed, with what differs
/// from LV to LV by nature (uuid, creation time and host, thin ids) blanked.
fn lv_section_shape(text: &str, lv: &str) -> Vec<String> {
    let mut lines = text.lines().map(str::trim);
    lines
        .by_ref()
        .find(|l| *l == format!("{lv} {{"))
        .unwrap_or_else(|| panic!("no section {lv} in\n{text}"));
    let mut depth = 1;
    let mut out = Vec::new();
    for l in lines {
        depth += l.matches('{').count();
        depth -= l.matches('}').count();
        if depth == 0 {
            break;
        }
        let key = l.split(" = ").next().unwrap_or(l);
        let blank = [
            "id",
            "creation_time",
            "creation_host",
            "transaction_id",
            "device_id",
        ];
        out.push(if blank.contains(&key) {
            key.to_owned()
        } else {
            l.split('#').next().unwrap().trim_end().to_owned()
        });
    }
    out
}

/// lvmd's thin snapshot of lvm2's thin LV is the one `lvcreate -s vg/thin` made in the
/// same VG (the fixture's `thin_snap`, made by lvm2 2.03 in the VM: lvm2 cannot make
/// thin LVs without device-mapper): the same section but for what differs by nature,
/// the same `lvs` attributes (`k`: activation skip), `vgck` clean; lvm2 removes it;
/// and lvmd removes a thin origin whose snapshot stays, as lvm2 does, the snapshot then
/// a plain thin LV in lvm2's listing.
#[test]
fn lvm2_lists_and_removes_the_thin_snapshots_lvmd_makes() {
    if !host_tests_enabled("lvm2_lists_and_removes_the_thin_snapshots_lvmd_makes") {
        return;
    }
    use lvmd::lvm::Edit;
    let mut loops = Loops::new(&[]);
    let vg = attach_fixture(&mut loops, "mixed");
    let lvm = loops.lvmd();
    // lvmd reads lvm2's snapshot as one.
    let found = lvm.read_vg(&vg).unwrap();
    assert_eq!(
        lvmd::lvm::thin::snapshot_origin(&found.vg, "thin_snap"),
        Some("thin")
    );
    let snap = |name: &str, read_only: bool| Edit::CreateThinSnapshot {
        name: name.into(),
        origin: "thin".into(),
        read_only,
        activation_skip: true,
        size: None,
        tags: vec![],
    };
    lvm.edit(&vg, &snap("snap_lvmd", false)).unwrap();
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    // lvm2's own text of its snapshot, as vgcfgbackup wrote it in the VM.
    let lvm2_text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lvm2/mixed/vgcfgbackup.txt"),
    )
    .unwrap();
    let theirs = lv_section_shape(&lvm2_text, "thin_snap");
    assert_eq!(lv_section_shape(&found.text, "snap_lvmd"), theirs);
    assert!(found.text.contains("create = \"snap_lvmd\""));
    let lvs = loops.report(
        &[
            "lvs",
            "-o",
            "lv_name,lv_attr,origin,pool_lv,thin_id,transaction_id,lv_size",
            &vg,
        ],
        "lv",
    );
    let row = |n: &str| {
        lvs.iter()
            .find(|r| text(r, "lv_name") == n)
            .unwrap()
            .clone()
    };
    // lvm2 left the pool at transaction 2 with thin ids 1 and 2.
    assert_eq!(num(&row("snap_lvmd"), "thin_id"), 3);
    assert_eq!(num(&row("pool"), "transaction_id"), 3);
    lvm.edit(
        &vg,
        &Edit::ThinMessagesSent {
            pool: "pool".into(),
            transaction_id: 3,
        },
    )
    .unwrap();
    let lvs = loops.report(
        &["lvs", "-o", "lv_name,lv_attr,origin,pool_lv,lv_size", &vg],
        "lv",
    );
    let row = |n: &str| {
        lvs.iter()
            .find(|r| text(r, "lv_name") == n)
            .unwrap()
            .clone()
    };
    let (ours, lvm2s) = (row("snap_lvmd"), row("thin_snap"));
    for key in ["lv_attr", "origin", "pool_lv", "lv_size"] {
        assert_eq!(text(&ours, key), text(&lvm2s, key), "{key}");
    }
    // `XX`: lvm2 knows no state with activation off; `k`: activation skip.
    assert_eq!(text(&ours, "lv_attr"), "Vwi-XXtz-k");
    // A read-only one is `-pr`'s: no WRITE, `r` in the attributes.
    lvm.edit(&vg, &snap("snap_ro", true)).unwrap();
    lvm.edit(
        &vg,
        &Edit::ThinMessagesSent {
            pool: "pool".into(),
            transaction_id: 4,
        },
    )
    .unwrap();
    let attr = |name: &str| {
        let r = loops.report(
            &[
                "lvs",
                "-o",
                "lv_name,lv_attr,origin",
                &format!("{vg}/{name}"),
            ],
            "lv",
        );
        (text(&r[0], "lv_attr"), text(&r[0], "origin"))
    };
    assert_eq!(attr("snap_ro"), ("Vri-XXtz-k".into(), "thin".into()));
    // lvm2 removes lvmd's snapshot. Without device-mapper it cannot send the pool's
    // message: it commits the LV gone with its `delete` recorded (lvmd's own journal,
    // which lvmd sends at the pool's next activation), then fails on the pool.
    let (ok, _, err) = loops.lvm(&["lvremove", "-f", &format!("{vg}/snap_lvmd")]);
    assert!(ok || err.contains("Failed to update pool"), "{err}");
    let found = lvm.read_vg(&vg).unwrap();
    assert!(found.vg.lv("snap_lvmd").is_none());
    let pool = &found.vg.lv("pool").unwrap().segments[0];
    assert_eq!(
        lvmd::lvm::thin::pending_messages(pool),
        vec![lvmd::lvm::thin::PoolMessage::Delete(3)]
    );
    assert!(matches!(
        pool.kind,
        SegmentKind::ThinPool {
            transaction_id: 5,
            ..
        }
    ));
    lvm.edit(
        &vg,
        &Edit::ThinMessagesSent {
            pool: "pool".into(),
            transaction_id: 5,
        },
    )
    .unwrap();
    // The origin goes; lvm2's snapshot and lvmd's stay as plain thin LVs.
    lvm.edit(&vg, &Edit::RemoveThin { lv: "thin".into() })
        .unwrap();
    loops.vgck(&vg);
    assert_eq!(attr("thin_snap").1, "");
    assert_eq!(attr("snap_ro").1, "");
    let found = lvm.read_vg(&vg).unwrap();
    assert!(found.text.contains("delete = 1"));
    assert!(!lv_section_shape(&found.text, "thin_snap")
        .iter()
        .any(|l| l.starts_with("origin")));
}

/// lvmd's group snapshot (two snapshots in one pool transaction, `message1` and
/// `message2` recorded) is metadata lvm2 reads: `vgck` clean with both messages
/// recorded, the pool's transaction raised once, both listed as snapshots of their
/// origins with the attributes of lvm2's own, and clean again once the record is
/// dropped.
#[test]
fn lvm2_reads_a_group_of_thin_snapshots_in_one_transaction() {
    if !host_tests_enabled("lvm2_reads_a_group_of_thin_snapshots_in_one_transaction") {
        return;
    }
    use lvmd::lvm::{Edit, GroupSnapshot};
    let mut loops = Loops::new(&[]);
    let vg = attach_fixture(&mut loops, "mixed");
    let lvm = loops.lvmd();
    let member = |name: &str, origin: &str| GroupSnapshot {
        name: name.into(),
        origin: origin.into(),
        tags: vec![
            format!("lvmd.group=g"),
            format!("lvmd.snapshot-of={origin}"),
        ],
    };
    lvm.edit(
        &vg,
        &Edit::CreateThinSnapshotGroup {
            snapshots: vec![member("g_thin", "thin"), member("g_snap", "thin_snap")],
        },
    )
    .unwrap();
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    assert!(
        found.text.contains("create = \"g_thin\"") && found.text.contains("create = \"g_snap\""),
        "{}",
        found.text
    );
    let lvs = loops.report(
        &[
            "lvs",
            "-o",
            "lv_name,lv_attr,origin,thin_id,transaction_id,lv_tags",
            &vg,
        ],
        "lv",
    );
    let row = |n: &str| {
        lvs.iter()
            .find(|r| text(r, "lv_name") == n)
            .unwrap_or_else(|| panic!("{n}: {lvs:?}"))
            .clone()
    };
    // lvm2 left the pool at transaction 2 with thin ids 1 and 2: one raise for both.
    assert_eq!(num(&row("pool"), "transaction_id"), 3);
    for (name, origin, id) in [("g_thin", "thin", 3), ("g_snap", "thin_snap", 4)] {
        let r = row(name);
        assert_eq!(
            (text(&r, "origin"), num(&r, "thin_id")),
            (origin.to_owned(), id),
            "{lvs:?}"
        );
        // Read-only, activation skip, as `lvcreate -s -pr` makes one.
        assert_eq!(text(&r, "lv_attr"), "Vri-XXtz-k", "{lvs:?}");
        assert!(text(&r, "lv_tags").contains("lvmd.group=g"), "{lvs:?}");
    }
    lvm.edit(
        &vg,
        &Edit::ThinMessagesSent {
            pool: "pool".into(),
            transaction_id: 3,
        },
    )
    .unwrap();
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    let seg = &found.vg.lv("pool").unwrap().segments[0];
    assert!(lvmd::lvm::thin::pending_messages(seg).is_empty());
}

/// A mirror's leg PV gone: lvmd refuses every change but the repair, which it writes
/// to the PVs left with the missing one flagged MISSING, as lvm2 does; lvm2 reads the
/// result (the leg on the spare, next to nothing on the missing PV), and its
/// `vgreduce --removemissing` then takes the PV out and leaves a VG `vgck` accepts.
#[test]
fn a_raid_repair_past_a_missing_pv_is_one_lvm2_reads_and_reduces() {
    if !host_tests_enabled("a_raid_repair_past_a_missing_pv_is_one_lvm2_reads_and_reduces") {
        return;
    }
    let mut loops = Loops::new(&[32, 32, 32]);
    let lvm = loops.lvmd();
    let vg = vg_name("repair");
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let mirror = Layout::Raid1 {
        mirrors: 1,
        region_size: Sectors(4096),
        integrity: false,
    };
    lvm.lv_create(&vg, "m", Bytes(8 * MIB), mirror, &[])
        .unwrap();
    let found = lvm.read_vg(&vg).unwrap();
    let pv_of = |found: &VgOnDisk, sub: &str| match &found.vg.lv(sub).unwrap().segments[0].kind {
        SegmentKind::Striped { stripes, .. } => stripes[0].name.clone(),
        other => panic!("{other:?}"),
    };
    let gone_pv = pv_of(&found, "m_rimage_1");
    let gone_id = found.vg.pv(&gone_pv).unwrap().id;
    let gone_dev = found.devices[&gone_id].clone();
    let kept_pv = pv_of(&found, "m_rimage_0");
    let spare_pv = found
        .vg
        .pvs
        .iter()
        .map(|p| p.name.clone())
        .find(|p| *p != gone_pv && *p != kept_pv)
        .unwrap();
    lvmd_sys::loopdev::detach(&gone_dev).unwrap();
    // Out of the fixture: its number may go to another test's device now, which
    // neither lvm2's filter nor lvmd may see, nor the fixture detach.
    loops.devs.retain(|d| *d != gone_dev);
    let lvm = loops.lvmd();

    let err = lvm
        .lv_create(&vg, "lin", Bytes(4 * MIB), Layout::Linear, &[])
        .unwrap_err();
    assert!(matches!(err, LvmError::VgNotWritable { .. }), "{err}");
    let repair = lvmd::lvm::Edit::RepairRaid {
        lv: "m".into(),
        legs: vec![1],
        avoid: vec![gone_pv.clone()],
    };
    lvm.edit(&vg, &repair).unwrap();
    let found = lvm.read_vg(&vg).unwrap();
    assert!(found.vg.pv(&gone_pv).unwrap().is_missing());
    assert_eq!(pv_of(&found, "m_rimage_1"), spare_pv);
    assert_eq!(pv_of(&found, "m_rmeta_1"), spare_pv);

    let lvs = loops.lvm_ok(&["lvs", "-a", "--noheadings", "-o", "lv_name,devices", &vg]);
    let spare_dev = found.devices[&found.vg.pv(&spare_pv).unwrap().id].clone();
    let spare_dev = spare_dev.display().to_string();
    for sub in ["m_rimage_1", "m_rmeta_1"] {
        assert!(
            lvs.lines()
                .any(|l| l.contains(&format!("[{sub}]")) && l.contains(&spare_dev)),
            "{lvs}"
        );
    }
    assert!(!lvs.contains("unknown"), "{lvs}");
    loops.lvm_ok(&["vgreduce", "--removemissing", &vg]);
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    // (lvm2 numbers the PV names afresh: the uuid says which one went.)
    assert_eq!(found.vg.pvs.len(), 2);
    assert!(found.vg.pvs.iter().all(|p| p.id != gone_id));
    // Whole again: lvmd changes it as any other.
    lvm.lv_create(&vg, "lin", Bytes(4 * MIB), Layout::Linear, &[])
        .unwrap();
}

/// A device class's thin pool from lvmd.toml, through the daemon's start-up (the real
/// engine; no device-mapper on this host): lvm2 lists the pool lvmd made for a 90%
/// share with the config's chunk size, zeroing and discards, `vgck` clean; a restart
/// adopts it unchanged; a config that does not match it is refused naming both values
/// with nothing written.
#[test]
fn lvm2_reads_the_thin_pool_a_device_class_configures() {
    if !host_tests_enabled("lvm2_reads_the_thin_pool_a_device_class_configures") {
        return;
    }
    use lvmd::daemon::activation::NoDeviceMapper;
    use lvmd::daemon::config::Config;
    use lvmd::daemon::thin::ThinPolicy;
    use lvmd::daemon::{HostNode, RealEngine};
    let loops = Loops::new(&[64, 64]);
    let vg = vg_name("cthin");
    loops
        .lvmd()
        .vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let pool_of = |body: &str| {
        let text = format!(
            "[device_classes.t]\nvolume_group = \"{vg}\"\nthin_pool = {{ name = \"pool\", {body} }}\n"
        );
        Config::parse(&text).unwrap().device_classes["t"]
            .thin_pool
            .clone()
            .unwrap()
    };
    let config = pool_of("size = \"90%\", chunk_size = \"128KiB\", discards = \"nopassdown\"");
    let engine = RealEngine::real(
        loops.lvmd(),
        Arc::new(NoDeviceMapper {
            why: "no device-mapper on this host".into(),
        }),
        Arc::new(HostNode),
        vec![],
    )
    .with_thin_pool(&vg, ThinPolicy::of(&config));
    let info = engine.prepare_thin_pool(&vg, &config).unwrap();
    loops.vgck(&vg);
    let rows: BTreeMap<String, serde_json::Value> = loops
        .report(
            &[
                "lvs",
                "-a",
                "-o",
                "lv_name,segtype,lv_size,chunk_size,zero,discards,transaction_id,lv_tags",
                &vg,
            ],
            "lv",
        )
        .into_iter()
        .map(|r| (text(&r, "lv_name"), r))
        .collect();
    let pool = &rows["pool"];
    assert_eq!(text(pool, "segtype"), "thin-pool");
    assert_eq!(num(pool, "lv_size"), info.data_size.0);
    assert_eq!(num(pool, "chunk_size"), 128 << 10);
    assert_eq!(text(pool, "discards"), "nopassdown");
    assert!(
        ["1", "zero"].contains(&text(pool, "zero").as_str()),
        "{pool}"
    );
    assert_eq!(text(pool, "transaction_id"), "0");
    // No mark of lvmd's left: its _tmeta was zeroed.
    assert_eq!(text(pool, "lv_tags"), "", "{pool}");
    // 90% of the VG's 30 extents, less what the metadata and its spare need.
    let vg_size = num(
        &loops.report(&["vgs", "-o", "vg_size", &vg], "vg")[0],
        "vg_size",
    );
    assert!(
        info.data_size.0 <= vg_size / 10 * 9 && info.data_size.0 >= vg_size / 10 * 8,
        "{info:?}"
    );
    for hidden in ["[pool_tdata]", "[pool_tmeta]", "[lvol0_pmspare]"] {
        assert!(rows.contains_key(hidden), "{hidden}: {rows:?}");
    }
    let seqno = loops.lvmd().read_vg(&vg).unwrap().vg.seqno;
    // A restart adopts it as it is; other settings are refused, nothing written.
    engine.prepare_thin_pool(&vg, &config).unwrap();
    for (body, says) in [
        (
            "size = \"90%\", chunk_size = \"64KiB\", discards = \"nopassdown\"",
            "65536",
        ),
        ("size = \"90%\", chunk_size = \"128KiB\"", "passdown"),
        // Smaller than the config says (a larger one, grown since, is adopted).
        (
            "size = \"1GiB\", chunk_size = \"128KiB\", discards = \"nopassdown\"",
            "1073741824",
        ),
    ] {
        let e = engine
            .prepare_thin_pool(&vg, &pool_of(body))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(says) && e.contains("changed nothing"),
            "{body}: {e}"
        );
    }
    assert_eq!(loops.lvmd().read_vg(&vg).unwrap().vg.seqno, seqno);
    loops.vgck(&vg);
}

/// The daemon keeps the parsed VG between operations and proves it current by the
/// metadata area headers alone: its own commits leave the cache current (no read
/// back), and whatever lvm2 changes between two of its operations is seen by the next
/// one, read or change.
#[test]
fn the_daemons_cached_vg_follows_lvm2s_changes_and_its_own_commits() {
    use lvmd::daemon::activation::NoDeviceMapper;
    use lvmd::daemon::engine::{Engine, LvSpec};
    use lvmd::daemon::{HostNode, RealEngine};
    if !host_tests_enabled("the_daemons_cached_vg_follows_lvm2s_changes_and_its_own_commits") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let vg = common::vg_name("cache");
    loops
        .lvmd()
        .vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let engine = RealEngine::real(
        loops.lvmd(),
        Arc::new(NoDeviceMapper {
            why: "no device-mapper on this host".into(),
        }),
        Arc::new(HostNode),
        vec![],
    );
    let spec = |name: &str| LvSpec {
        name: name.into(),
        size: Bytes(4 << 20),
        layout: Layout::Linear,
        tags: vec![],
    };
    let listed = |e: &RealEngine| -> Vec<(String, Vec<String>)> {
        e.logical_volumes(&vg)
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.tags))
            .collect()
    };
    let names = |e: &RealEngine| -> Vec<String> { listed(e).into_iter().map(|l| l.0).collect() };
    let misses = |e: &RealEngine| e.metadata().cache_stats().1;

    engine.create_logical_volume(&vg, &spec("a")).unwrap();
    let before = misses(&engine);
    assert_eq!(names(&engine), ["a"]);
    assert_eq!(names(&engine), ["a"]);
    assert_eq!(
        misses(&engine),
        before,
        "reads after lvmd's own commit come from the cache"
    );

    // lvm2 adds a volume: the next read sees it (one full read).
    loops.lvm_ok(&["lvcreate", "-an", "-Zn", "-L", "4M", "-n", "b", &vg]);
    assert_eq!(names(&engine), ["a", "b"]);
    assert_eq!(misses(&engine), before + 1);
    // lvm2 removes it, then lvmd changes the VG: the change builds on lvm2's version.
    loops.lvm_ok(&["lvremove", "-f", &format!("{vg}/b")]);
    engine.create_logical_volume(&vg, &spec("c")).unwrap();
    assert_eq!(names(&engine), ["a", "c"]);
    // A change that leaves the text's length as it was is seen too.
    loops.lvm_ok(&["lvchange", "--addtag", "seen", &format!("{vg}/a")]);
    let a_tags = listed(&engine).into_iter().find(|l| l.0 == "a").unwrap().1;
    assert!(a_tags.contains(&"seen".to_string()), "{a_tags:?}");
    assert!(engine.remove_logical_volume(&vg, "c").unwrap());

    // lvm2 agrees on what lvmd wrote after each of its changes.
    loops.vgck(&vg);
    let lvm2_names: Vec<String> = loops
        .report(&["lvs", "-o", "lv_name", &vg], "lv")
        .iter()
        .map(|r| text(r, "lv_name"))
        .collect();
    assert_eq!(lvm2_names, ["a"]);
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// Concurrent creates, then removes, of one VG through the daemon's engine go in
/// fewer commits than volumes (group commit), each caller with its own answer: those
/// that no longer fit once the others are placed fail alone, the rest are created;
/// lvm2 finds the VG clean and agrees on every volume.
#[test]
fn concurrent_creates_and_removes_share_commits_each_with_its_own_answer() {
    use lvmd::daemon::activation::NoDeviceMapper;
    use lvmd::daemon::engine::{Engine, EngineError, LvSpec};
    use lvmd::daemon::{HostNode, RealEngine};
    use std::sync::Barrier;
    if !host_tests_enabled("concurrent_creates_and_removes_share_commits_each_with_its_own_answer")
    {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let vg = common::vg_name("group");
    loops
        .lvmd()
        .vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let engine = Arc::new(RealEngine::real(
        loops.lvmd(),
        Arc::new(NoDeviceMapper {
            why: "no device-mapper on this host".into(),
        }),
        Arc::new(HostNode),
        vec![],
    ));
    let free = engine.volume_group(&vg).unwrap().free.0;
    // 16 small volumes and 4 large ones: each fits alone, not all of them together.
    let mut wanted: Vec<(String, u64)> = (0..16).map(|i| (format!("s{i:02}"), 4 << 20)).collect();
    wanted.extend((0..4).map(|i| (format!("l{i}"), 32 << 20)));
    assert!(wanted.iter().map(|w| w.1).sum::<u64>() > free);
    let seqno = |e: &RealEngine| e.volume_group(&vg).unwrap().seqno;
    let before = seqno(&engine);
    let barrier = Arc::new(Barrier::new(wanted.len()));
    let outcomes: Vec<(String, Result<u64, String>)> = std::thread::scope(|s| {
        let runs: Vec<_> = wanted
            .iter()
            .map(|(name, size)| {
                let (engine, barrier, vg) = (engine.clone(), barrier.clone(), vg.clone());
                s.spawn(move || {
                    barrier.wait();
                    let spec = LvSpec {
                        name: name.clone(),
                        size: Bytes(*size),
                        layout: Layout::Linear,
                        tags: vec![],
                    };
                    let r = engine.create_logical_volume(&vg, &spec);
                    let r = r.map(|c| c.value.size.0).map_err(|e| match e {
                        EngineError::Lvm(LvmError::Alloc { .. }) => "no space".to_string(),
                        other => format!("unexpected: {other}"),
                    });
                    (name.clone(), r)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let created: Vec<&String> = outcomes
        .iter()
        .filter_map(|(n, r)| r.is_ok().then_some(n))
        .collect();
    for (name, r) in &outcomes {
        match r {
            Ok(size) => assert_eq!(*size, wanted.iter().find(|w| &w.0 == name).unwrap().1),
            Err(why) => assert_eq!(why, "no space", "{name}"),
        }
    }
    assert!(created.len() < wanted.len(), "{outcomes:?}");
    // A create failed only for want of space once the others were placed.
    let left = engine.volume_group(&vg).unwrap().free.0;
    for (name, r) in &outcomes {
        let size = wanted.iter().find(|w| &w.0 == name).unwrap().1;
        assert!(
            r.is_ok() || size > left,
            "{name} ({size}) failed with {left} free"
        );
    }
    let commits = seqno(&engine) - before;
    assert!(
        commits < created.len() as u64,
        "{} volumes in {commits} commits",
        created.len()
    );
    let listed = |loops: &Loops| -> Vec<String> {
        let mut names: Vec<String> = loops
            .report(&["lvs", "-o", "lv_name", &vg], "lv")
            .iter()
            .map(|r| text(r, "lv_name"))
            .collect();
        names.sort();
        names
    };
    let mut expected: Vec<String> = created.iter().map(|n| n.to_string()).collect();
    expected.sort();
    loops.vgck(&vg);
    assert_eq!(listed(&loops), expected);

    let before = seqno(&engine);
    let removed: Vec<bool> = std::thread::scope(|s| {
        let barrier = Arc::new(Barrier::new(created.len()));
        let runs: Vec<_> = created
            .iter()
            .map(|name| {
                let (engine, barrier, vg) = (engine.clone(), barrier.clone(), vg.clone());
                s.spawn(move || {
                    barrier.wait();
                    engine.remove_logical_volume(&vg, name).unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(removed.iter().all(|r| *r));
    assert!(seqno(&engine) - before < created.len() as u64);
    loops.vgck(&vg);
    assert!(listed(&loops).is_empty());
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// The device of PV `pv` (a name in `vg`) as lvmd found it.
fn found_dev(lvm: &lvmd::lvm::Lvm, vg: &str, pv: &str) -> String {
    let found = lvm.read_vg(vg).unwrap();
    let id = found.vg.pv(pv).unwrap().id;
    found.devices[&id].display().to_string()
}

/// lvmd changes a mirror's number of legs (`lvconvert -m N`'s edit; lvm2 itself
/// refuses `lvconvert -m` on an inactive LV, so the layout is compared with what it
/// did in the VM in `lvm::raid_legs`'s tests): lvm2 lists a third leg (plain, and
/// with its integrity layers) on the PV no other leg uses, `vgck` is clean, with the
/// new legs' `REBUILD` flags and after they are dropped; leg 0 removed, the others are
/// renamed 0 and 1 on their PVs; a removed leg kept as LVs of its own (the daemon's
/// wipe LVs) is listed as linear LVs and removed; down to one copy, lvm2 lists a linear
/// LV on the first leg's PV; lvmd adds a leg to lvm2's mirror of
/// the `mixed` fixture and removes it again, lvm2's other LVs intact.
#[test]
fn lvmd_adds_and_removes_mirror_legs_as_lvm2_lists_them() {
    if !host_tests_enabled("lvmd_adds_and_removes_mirror_legs_as_lvm2_lists_them") {
        return;
    }
    use lvmd::lvm::edit::RemovedLegs;
    let loops = Loops::new(&[64, 64, 64, 64]);
    let lvm = loops.lvmd();
    let vg = vg_name("mlegs");
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let mirror = |integrity| Layout::Raid1 {
        mirrors: 1,
        region_size: lvmd::model::layout::DEFAULT_REGION_SIZE,
        integrity,
    };
    lvm.lv_create(&vg, "m", Bytes(8 * MIB), mirror(false), &[])
        .unwrap();
    lvm.lv_create(&vg, "n", Bytes(8 * MIB), mirror(true), &[])
        .unwrap();
    let convert = |lv: &str, mirrors, pvs: Vec<String>, removed| lvmd::lvm::Edit::ConvertRaid {
        lv: lv.into(),
        mirrors,
        pvs,
        removed,
    };
    let loaded = |lv: &str| lvmd::lvm::Edit::RaidRebuildLoaded { lv: lv.into() };
    for lv in ["m", "n"] {
        lvm.edit(&vg, &loaded(lv)).unwrap();
        lvm.edit(&vg, &convert(lv, 2, vec![], RemovedLegs::Dropped))
            .unwrap();
        loops.vgck(&vg);
        let legs = lvm2_legs(&loops, &vg, lv, 3);
        // (An integrity image's device is its `_iorig`: the PVs are the rmeta's.)
        let mut pvs: Vec<&String> = legs
            .iter()
            .flat_map(|l| &l.0)
            .filter(|d| d.starts_with("/dev/"))
            .collect();
        pvs.sort();
        pvs.dedup();
        assert_eq!(pvs.len(), 3, "{lv}: legs share a PV: {legs:?}");
        assert!(legs.iter().all(|l| l.1 == 8 * MIB), "{legs:?}");
        lvm.edit(&vg, &loaded(lv)).unwrap();
        loops.vgck(&vg);
    }
    let lvs = lvm2_lvs(&loops, &vg);
    assert_eq!(text(&lvs["[n_rimage_2]"], "segtype"), "integrity");
    assert_eq!(num(&lvs["[n_rimage_2_imeta]"], "lv_size"), 8 * MIB);
    let dev = |r: &serde_json::Value| text(r, "devices").split('(').next().unwrap().to_owned();
    assert_eq!(dev(&lvs["[n_rimage_2_iorig]"]), dev(&lvs["[n_rmeta_2]"]));
    // Leg 0 of m goes (by its PV, as `lvconvert -m 1 vg/m PV`): legs 1 and 2 are
    // renamed 0 and 1 where they were.
    let found = lvm.read_vg(&vg).unwrap();
    let pv_of = |found: &VgOnDisk, sub: &str| match &found.vg.lv(sub).unwrap().segments[0].kind {
        SegmentKind::Striped { stripes, .. } => stripes[0].name.clone(),
        other => panic!("{other:?}"),
    };
    let (leg0, leg1, leg2) = (
        pv_of(&found, "m_rimage_0"),
        pv_of(&found, "m_rimage_1"),
        pv_of(&found, "m_rimage_2"),
    );
    lvm.edit(&vg, &convert("m", 1, vec![leg0], RemovedLegs::Dropped))
        .unwrap();
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    assert_eq!(pv_of(&found, "m_rimage_0"), leg1);
    assert_eq!(pv_of(&found, "m_rimage_1"), leg2);
    let lvs = lvm2_lvs(&loops, &vg);
    assert!(!lvs.contains_key("[m_rimage_2]"), "{:?}", lvs.keys());
    assert_eq!(
        text(&lvs["m"], "devices"),
        "m_rimage_0(0),m_rimage_1(0)",
        "{:?}",
        lvs["m"]
    );
    // n's last leg goes but stays as LVs of its own, which lvm2 lists as linear.
    let kept = RemovedLegs::Kept {
        name_prefix: "lvmd-wipe-".into(),
        tags: vec!["lvmd.wipe".into()],
    };
    lvm.edit(&vg, &convert("n", 1, vec![], kept)).unwrap();
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    let wipes: Vec<&String> = lvs.keys().filter(|k| k.starts_with("lvmd-wipe-")).collect();
    assert_eq!(wipes.len(), 3, "{:?}", lvs.keys());
    for w in &wipes {
        assert_eq!(text(&lvs[*w], "segtype"), "linear", "{w}");
        assert_eq!(text(&lvs[*w], "lv_tags"), "lvmd.wipe", "{w}");
    }
    for w in wipes {
        lvm.lv_remove(&vg, w).unwrap();
    }
    loops.vgck(&vg);
    assert!(lvm2_lvs(&loops, &vg).keys().all(|k| !k.contains("_2")));
    // m down to one copy: lvm2 lists a linear LV on leg 0's PV, and nothing of its legs.
    lvm.edit(&vg, &convert("m", 0, vec![], RemovedLegs::Dropped))
        .unwrap();
    loops.vgck(&vg);
    let lvs = lvm2_lvs(&loops, &vg);
    assert_eq!(text(&lvs["m"], "segtype"), "linear", "{:?}", lvs["m"]);
    assert!(text(&lvs["m"], "devices").starts_with(&found_dev(&lvm, &vg, &leg1)));
    assert!(
        lvs.keys().all(|k| !k.starts_with("[m_")),
        "{:?}",
        lvs.keys()
    );
    // lvm2's mirror: a leg added and removed again; its other LVs as they were.
    let mut loops = Loops::new(&[64]);
    let fixture_vg = attach_fixture(&mut loops, "mixed");
    let lvm = loops.lvmd();
    let extra = loops.devs[0].clone();
    lvm.vg_extend(&fixture_vg, &[extra]).unwrap();
    let before = lvm2_lvs(&loops, &fixture_vg);
    lvm.edit(
        &fixture_vg,
        &convert("mirrored", 2, vec![], RemovedLegs::Dropped),
    )
    .unwrap();
    loops.vgck(&fixture_vg);
    assert_eq!(lvm2_legs(&loops, &fixture_vg, "mirrored", 3)[2].1, 8 * MIB);
    lvm.edit(&fixture_vg, &loaded("mirrored")).unwrap();
    lvm.edit(
        &fixture_vg,
        &convert("mirrored", 1, vec![], RemovedLegs::Dropped),
    )
    .unwrap();
    loops.vgck(&fixture_vg);
    let after = lvm2_lvs(&loops, &fixture_vg);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, row) in &before {
        assert_eq!(
            text(row, "lv_uuid"),
            text(&after[name], "lv_uuid"),
            "{name}"
        );
        assert_eq!(
            text(row, "devices"),
            text(&after[name], "devices"),
            "{name}"
        );
    }
}

/// lvmd's COW snapshot of a linear LV is the one `lvcreate -s -L` made beside it (the
/// fixture's `lin_b_snap` of `lin_b`, made by lvm2 2.03 in the VM: lvm2 makes no COW
/// snapshot without device-mapper, even with activation off): the same `lvs -a` row
/// (attributes, origin, size, chunk, segment type), the same `snapshotN` section but
/// for the names, `vgck` clean. lvm2 renames and removes lvmd's; lvmd reads what lvm2
/// wrote and removes lvm2's, the origin then an ordinary volume in both listings.
#[test]
fn lvm2_lists_renames_and_removes_the_cow_snapshots_lvmd_makes() {
    if !host_tests_enabled("lvm2_lists_renames_and_removes_the_cow_snapshots_lvmd_makes") {
        return;
    }
    use lvmd::lvm::{cow, Edit};
    let mut loops = Loops::new(&[]);
    let vg = attach_fixture(&mut loops, "mixed");
    let lvm = loops.lvmd();
    let found = lvm.read_vg(&vg).unwrap();
    let es = found.vg.extent_size;
    let theirs = cow::by_cow(&found.vg, "lin_b_snap").unwrap();
    assert_eq!(
        (theirs.origin.as_str(), theirs.chunk_size),
        ("lin_b", Sectors(8))
    );
    lvm.edit(
        &vg,
        &Edit::CreateCowSnapshot {
            name: "snap_lvmd".into(),
            origin: "lin_b".into(),
            cow_size: es.span(lvmd::units::Extents(2)).to_bytes(),
            chunk_size: cow::DEFAULT_CHUNK_SIZE,
            tags: vec![],
        },
    )
    .unwrap();
    loops.vgck(&vg);
    let found = lvm.read_vg(&vg).unwrap();
    let ours = cow::by_cow(&found.vg, "snap_lvmd").unwrap();
    assert_eq!(ours.segment_lv, "snapshot1");
    let renamed: Vec<String> = lv_section_shape(&found.text, "snapshot1")
        .into_iter()
        .map(|l| l.replace("snap_lvmd", "lin_b_snap"))
        .collect();
    assert_eq!(renamed, lv_section_shape(&found.text, "snapshot0"));
    let fields = "lv_name,lv_attr,origin,snap_percent,segtype,chunk_size,lv_size";
    let rows = |loops: &Loops| {
        let lvs = loops.report(&["lvs", "-a", "-o", fields, &vg], "lv");
        lvs.into_iter()
            .map(|r| (text(&r, "lv_name"), r))
            .collect::<BTreeMap<_, _>>()
    };
    let lvs = rows(&loops);
    for key in fields.split(',').skip(1) {
        assert_eq!(
            text(&lvs["snap_lvmd"], key),
            text(&lvs["lin_b_snap"], key),
            "{key}"
        );
    }
    // `s`: a snapshot; the origin `o`. lvm2 lists no snapshotN.
    assert!(text(&lvs["snap_lvmd"], "lv_attr").starts_with("swi"));
    assert!(text(&lvs["lin_b"], "lv_attr").starts_with("owi"));
    assert!(!lvs.keys().any(|n| n.starts_with("snapshot")), "{lvs:?}");
    // lvm2 renames lvmd's snapshot; lvmd reads the store's new name in the segment.
    loops.lvm_ok(&["lvrename", &vg, "snap_lvmd", "snap_renamed"]);
    let found = lvm.read_vg(&vg).unwrap();
    let after = cow::by_cow(&found.vg, "snap_renamed").unwrap();
    assert_eq!(after.segment_lv, "snapshot1");
    assert_eq!(after.origin, "lin_b");
    // lvm2 removes it (store and snapshotN) with activation off.
    loops.lvm_ok(&["lvremove", "-f", &format!("{vg}/snap_renamed")]);
    let found = lvm.read_vg(&vg).unwrap();
    assert!(found.vg.lv("snap_renamed").is_none() && found.vg.lv("snapshot1").is_none());
    // The origin is refused removal while lvm2's snapshot stands; lvmd removes that.
    let e = lvm.lv_remove(&vg, "lin_b").unwrap_err().to_string();
    assert!(e.contains("lin_b_snap"), "{e}");
    lvm.edit(
        &vg,
        &Edit::RemoveCowSnapshot {
            lv: "lin_b_snap".into(),
        },
    )
    .unwrap();
    loops.vgck(&vg);
    let lvs = rows(&loops);
    assert!(!lvs.contains_key("lin_b_snap"));
    assert!(text(&lvs["lin_b"], "lv_attr").starts_with("-wi"));
    assert!(lvm.read_vg(&vg).unwrap().vg.lv("snapshot0").is_none());
    lvm.lv_remove(&vg, "lin_b").unwrap();
    loops.vgck(&vg);
}
