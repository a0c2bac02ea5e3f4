use super::*;
use crate::activate::planner::plan_lv;
use crate::activate::target::table_text;
use crate::activate::test_fixture::{mixed, read, vg_from_text};
use crate::model::{Area, Segment};

/// lvm2's table lines for one device of the fixture, without the `name: ` prefix.
fn lvm2_table(dm_name: &str) -> String {
    let prefix = format!("{dm_name}: ");
    let lines: Vec<String> = read("dmsetup-table.txt")
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!lines.is_empty(), "no table for {dm_name} in the fixture");
    lines.concat()
}

/// lvm2's device-mapper uuid of a fixture device.
fn lvm2_uuid(dm_name: &str) -> String {
    read("dmsetup-uuids.txt")
        .lines()
        .find_map(|l| {
            let (name, uuid) = l.split_once(' ')?;
            (name == dm_name).then(|| uuid.to_owned())
        })
        .unwrap_or_else(|| panic!("no uuid for {dm_name} in the fixture"))
}

#[test]
fn names_double_dashes_like_lvm2() {
    assert_eq!(dm_name("vg0", "lv0", None), "vg0-lv0");
    assert_eq!(dm_name("my-vg", "data-1", None), "my--vg-data--1");
    assert_eq!(dm_name("a--b", "c", None), "a----b-c");
    assert_eq!(
        dm_name("lvmd_mixed", "pool", Some("tpool")),
        "lvmd_mixed-pool-tpool"
    );
    assert_eq!(dm_name("v-g", "l", Some("x-y")), "v--g-l-x--y");
}

#[test]
fn uuids_are_lvm_prefix_vg_lv_and_layer() {
    let vg: Uuid = "VykkwS-IOkd-evZk-66lT-mk7U-qide-M70Rti".parse().unwrap();
    let lv: Uuid = "SlVjuX-4gRe-jVQD-7aSO-Ucy8-wFRW-xu9Oji".parse().unwrap();
    let top = dm_uuid(&vg, &lv, None);
    assert_eq!(
        top,
        "LVM-VykkwSIOkdevZk66lTmk7UqideM70RtiSlVjuX4gRejVQD7aSOUcy8wFRWxu9Oji"
    );
    assert_eq!(dm_uuid(&vg, &lv, Some("real")), format!("{top}-real"));
    assert_eq!(parse_dm_uuid(&vg, &top), Some((lv, None)));
    assert_eq!(
        parse_dm_uuid(&vg, &format!("{top}-real")),
        Some((lv, Some("real".into())))
    );
    assert_eq!(parse_dm_uuid(&vg, &format!("{top}real")), None);
    assert_eq!(parse_dm_uuid(&vg, "LVM-short"), None);
    let other: Uuid = "KIqzjb-JcwT-bYYw-rumv-meMM-Z7IQ-SN2TlF".parse().unwrap();
    assert_eq!(parse_dm_uuid(&other, &top), None);
}

#[test]
fn fixture_linear_and_striped_tables_equal_lvm2s() {
    let (vg, devices) = mixed();
    for lv in ["lin_a", "striped"] {
        let plan = plan_lv(&vg, lv, &devices).unwrap();
        assert_eq!(plan.devices.len(), 1);
        let top = plan.top();
        let name = format!("lvmd_mixed-{lv}");
        assert_eq!(top.name, name);
        assert_eq!(top.uuid, lvm2_uuid(&name), "{lv}");
        assert_eq!(table_text(&top.table), lvm2_table(&name), "{lv}");
        assert!(top.visible && !top.read_only);
    }
    // lin_a is the three-segment one: one line per segment.
    assert_eq!(
        plan_lv(&vg, "lin_a", &devices).unwrap().top().table.len(),
        3
    );
}

/// The numbers lvm2's devices had in the fixture's VM: its tables name `-real` and
/// `-cow` by them.
const LIN_B_REAL: DevNum = DevNum {
    major: 253,
    minor: 13,
};
const LIN_B_SNAP_COW: DevNum = DevNum {
    major: 253,
    minor: 14,
};

fn resolve_cow_layers(plan: &mut LvPlan) {
    let real = plan
        .devices
        .iter()
        .position(|d| d.name == "lvmd_mixed-lin_b-real")
        .unwrap();
    let cow = plan
        .devices
        .iter()
        .position(|d| d.name == "lvmd_mixed-lin_b_snap-cow")
        .unwrap();
    plan.resolve(real, LIN_B_REAL);
    plan.resolve(cow, LIN_B_SNAP_COW);
}

#[test]
fn fixture_cow_origin_and_snapshot_plan_lvm2s_layers() {
    let (vg, devices) = mixed();
    // The origin: -real, the snapshot's -cow and snapshot, the origin over -real last.
    let mut origin = plan_lv(&vg, "lin_b", &devices).unwrap();
    resolve_cow_layers(&mut origin);
    let names: Vec<&str> = origin.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lvmd_mixed-lin_b-real",
            "lvmd_mixed-lin_b_snap-cow",
            "lvmd_mixed-lin_b_snap",
            "lvmd_mixed-lin_b"
        ]
    );
    for d in &origin.devices {
        assert_eq!(table_text(&d.table), lvm2_table(&d.name), "{}", d.name);
        assert_eq!(d.uuid, lvm2_uuid(&d.name), "{}", d.name);
        // Only the LVs people open get /dev/VG/LV: the origin and the snapshot.
        assert_eq!(
            d.visible,
            !d.name.ends_with("-real") && !d.name.ends_with("-cow"),
            "{}",
            d.name
        );
        assert!(!d.read_only, "{}", d.name);
    }
    assert_eq!(origin.top().name, "lvmd_mixed-lin_b");
    // The snapshot's own plan: -real, its -cow, itself on top.
    let mut snap = plan_lv(&vg, "lin_b_snap", &devices).unwrap();
    resolve_cow_layers(&mut snap);
    let names: Vec<&str> = snap.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lvmd_mixed-lin_b-real",
            "lvmd_mixed-lin_b_snap-cow",
            "lvmd_mixed-lin_b_snap"
        ]
    );
    assert_eq!(snap.top(), &origin.devices[2]);
    // Without its snapshot the origin is a plain LV again: its own table, no layers.
    let gone = crate::lvm::edit::apply(
        &vg,
        &crate::lvm::Edit::RemoveCowSnapshot {
            lv: "lin_b_snap".into(),
        },
        &crate::lvm::edit::Origin::now("h"),
    )
    .unwrap()
    .vg;
    let plain = plan_lv(&gone, "lin_b", &devices).unwrap();
    assert_eq!(plain.devices.len(), 1);
    assert_eq!(
        table_text(&plain.top().table),
        lvm2_table("lvmd_mixed-lin_b-real")
    );
}

#[test]
fn fixture_hidden_lvs_and_the_real_layers_of_other_types_match_lvm2_too() {
    let (vg, devices) = mixed();
    // Sub-LVs lvm2 maps linearly: their tables and names are the same rules.
    for (lv, dm) in [
        ("mirrored_rimage_0", "lvmd_mixed-mirrored_rimage_0"),
        ("mirrored_rmeta_1", "lvmd_mixed-mirrored_rmeta_1"),
        ("pool_tdata", "lvmd_mixed-pool_tdata"),
        ("pool_tmeta", "lvmd_mixed-pool_tmeta"),
    ] {
        let model = vg.lv(lv).unwrap();
        let table = lv_table(&vg, model, &devices).unwrap();
        assert_eq!(table_text(&table), lvm2_table(dm), "{lv}");
        assert_eq!(dm_name(&vg.name, lv, None), dm);
        // Activating a component directly is refused, as lvm2 does.
        assert!(
            matches!(
                plan_lv(&vg, lv, &devices),
                Err(ActivateError::HiddenLv { .. })
            ),
            "{lv}"
        );
    }
}

#[test]
fn fixture_unsupported_types_are_named() {
    let (vg, devices) = mixed();
    for (lv, ty) in [("snapshot0", "snapshot"), ("cached", "cache")] {
        match plan_lv(&vg, lv, &devices) {
            Err(e @ ActivateError::UnsupportedSegment { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(lv) && text.contains(&format!("{ty:?}")),
                    "{text}"
                );
            }
            other => panic!("{lv}: expected UnsupportedSegment {ty}, got {other:?}"),
        }
    }
    assert!(matches!(
        plan_lv(&vg, "nope", &devices),
        Err(ActivateError::LvNotFound { .. })
    ));
}

#[test]
fn missing_pv_is_refused_by_name() {
    let (vg, mut devices) = mixed();
    let pv1 = vg.pv("pv1").unwrap().id;
    devices.remove(&pv1);
    // lin_a has its last segment on pv1.
    match plan_lv(&vg, "lin_a", &devices) {
        Err(ActivateError::MissingPv { lv, pv, uuid, .. }) => {
            assert_eq!((lv.as_str(), pv.as_str(), uuid), ("lin_a", "pv1", pv1));
        }
        other => panic!("expected MissingPv, got {other:?}"),
    }
    let e = plan_lv(&vg, "lin_a", &devices).unwrap_err().to_string();
    assert!(
        e.contains("lin_a") && e.contains("pv1") && e.contains(&pv1.to_string()),
        "{e}"
    );
    // An LV on the PVs that are there still plans (as lvm2 activates it too).
    plan_lv(&vg, "cached", &devices).unwrap_err();
    plan_lv(&vg, "lin_b", &devices).unwrap();
    // A PV flagged MISSING in the metadata is missing even when a device answers.
    let (mut vg3, devices3) = mixed();
    vg3.pvs
        .iter_mut()
        .find(|p| p.name == "pv0")
        .unwrap()
        .flags
        .push("MISSING".into());
    assert!(matches!(
        plan_lv(&vg3, "lin_a", &devices3),
        Err(ActivateError::MissingPv { ref pv, .. }) if pv == "pv0"
    ));
}

/// A VG with dashes in its names, two PVs with different data starts, and an LV of
/// each layout, written as lvm2 would write it.
const DASHED: &str = r#"
contents = "Text Format Volume Group"
version = 1
my-vg {
    id = "Jpw4ZB-AE1X-xX1k-xGlB-Jc0c-lGsA-UR!DXp"
    seqno = 5
    status = ["RESIZEABLE", "READ", "WRITE"]
    flags = []
    extent_size = 8192
    max_lv = 0
    max_pv = 0
    metadata_copies = 0
    physical_volumes {
        pv0 {
            id = "KIqzjb-JcwT-bYYw-rumv-meMM-Z7IQ-SN2TlF"
            status = ["ALLOCATABLE"]
            flags = []
            dev_size = 262144
            pe_start = 2048
            pe_count = 31
        }
        pv1 {
            id = "VUgqKr-eTex-EdV8-p9Wc-XlS2-ipKd-q3HCxA"
            status = ["ALLOCATABLE"]
            flags = []
            dev_size = 262144
            pe_start = 4096
            pe_count = 30
        }
    }
    logical_volumes {
        data-1 {
            id = "hS9x98-JOoH-XS2d-dOSY-MuGB-YtVx-wkQoCj"
            status = ["READ", "WRITE", "VISIBLE"]
            flags = []
            segment_count = 3
            segment1 {
                start_extent = 0
                extent_count = 2
                type = "striped"
                stripe_count = 1
                stripes = ["pv0", 0]
            }
            segment2 {
                start_extent = 2
                extent_count = 4
                type = "striped"
                stripe_count = 2
                stripe_size = 128
                stripes = ["pv0", 10, "pv1", 3]
            }
            segment3 {
                start_extent = 6
                extent_count = 1
                type = "striped"
                stripe_count = 1
                stripes = ["pv1", 20]
            }
        }
        ro {
            id = "EF55fM-1Gqy-zet8-uHxY-BGD2-XlES-7Mo6hF"
            status = ["READ", "VISIBLE"]
            flags = []
            segment_count = 1
            segment1 {
                start_extent = 0
                extent_count = 1
                type = "striped"
                stripe_count = 1
                stripes = ["pv1", 0]
            }
        }
        void {
            id = "I8S0yt-ekGc-ZKor-hlWo-PY3W-bQMV-0r1pGe"
            status = ["READ", "WRITE", "VISIBLE"]
            flags = []
            segment_count = 2
            segment1 {
                start_extent = 0
                extent_count = 2
                type = "zero"
            }
            segment2 {
                start_extent = 2
                extent_count = 1
                type = "error"
            }
        }
    }
}
"#;

fn dashed() -> (VolumeGroup, BTreeMap<Uuid, DevNum>) {
    let vg = vg_from_text(DASHED);
    let devices = [("pv0", 7, 0), ("pv1", 7, 1)]
        .into_iter()
        .map(|(pv, major, minor)| (vg.pv(pv).unwrap().id, DevNum { major, minor }))
        .collect();
    (vg, devices)
}

#[test]
fn mixed_segments_one_line_each_with_pe_start_per_pv() {
    let (vg, devices) = dashed();
    let plan = plan_lv(&vg, "data-1", &devices).unwrap();
    let top = plan.top();
    assert_eq!(top.name, "my--vg-data--1");
    assert_eq!(
        top.uuid,
        "LVM-Jpw4ZBAE1XxX1kxGlBJc0clGsAUR!DXphS9x98JOoHXS2ddOSYMuGBYtVxwkQoCj"
    );
    assert_eq!(
        table_text(&top.table),
        "0 16384 linear 7:0 2048\n\
         16384 32768 striped 2 128 7:0 83968 7:1 28672\n\
         49152 8192 linear 7:1 167936\n"
    );
    assert_eq!(top.size(), Sectors(57344));
    // Typed, not just text.
    assert_eq!(
        top.table[1].target,
        Target::Striped(Striped {
            chunk: Sectors(128),
            stripes: vec![
                StripeArea {
                    device: DevRef::Device(DevNum { major: 7, minor: 0 }),
                    offset: Sectors(2048 + 10 * 8192)
                },
                StripeArea {
                    device: DevRef::Device(DevNum { major: 7, minor: 1 }),
                    offset: Sectors(4096 + 3 * 8192)
                },
            ]
        })
    );
    assert_eq!(
        top.table[1].to_ioctl(),
        (
            16384,
            32768,
            "striped".into(),
            "2 128 7:0 83968 7:1 28672".into()
        )
    );
    // Each stripe uses 2 extents from its offset.
    assert_eq!(
        top.table[1].target.device_ends(top.table[1].length),
        vec![
            (DevNum { major: 7, minor: 0 }, Sectors(83968 + 16384)),
            (DevNum { major: 7, minor: 1 }, Sectors(28672 + 16384)),
        ]
    );
}

#[test]
fn read_only_lv_is_planned_read_only() {
    let (vg, devices) = dashed();
    let plan = plan_lv(&vg, "ro", &devices).unwrap();
    assert!(plan.top().read_only);
    assert!(!plan_lv(&vg, "data-1", &devices).unwrap().top().read_only);
}

#[test]
fn zero_and_error_segments_map_to_their_targets() {
    let (vg, devices) = dashed();
    let plan = plan_lv(&vg, "void", &devices).unwrap();
    assert_eq!(
        table_text(&plan.top().table),
        "0 16384 zero\n16384 8192 error\n"
    );
    assert_eq!(
        plan.top().table[0].to_ioctl(),
        (0, 16384, "zero".into(), String::new())
    );
}

#[test]
fn areas_past_the_pv_or_on_unknown_names_are_refused() {
    let (mut vg, devices) = dashed();
    let lv = vg.lv_mut("ro").unwrap();
    lv.segments[0].kind = SegmentKind::Striped {
        stripe_size: None,
        stripes: vec![Area {
            name: "pv1".into(),
            start: Extents(30),
        }],
    };
    let e = plan_lv(&vg, "ro", &devices).unwrap_err();
    assert!(matches!(e, ActivateError::InvalidMetadata { .. }), "{e}");
    assert!(e.to_string().contains("pv1"), "{e}");

    let lv = vg.lv_mut("ro").unwrap();
    lv.segments[0].kind = SegmentKind::Striped {
        stripe_size: None,
        stripes: vec![Area {
            name: "data-1".into(),
            start: Extents(0),
        }],
    };
    let e = plan_lv(&vg, "ro", &devices).unwrap_err().to_string();
    assert!(e.contains("stacked on the LV data-1"), "{e}");

    let lv = vg.lv_mut("ro").unwrap();
    lv.segments.clear();
    assert!(matches!(
        plan_lv(&vg, "ro", &devices),
        Err(ActivateError::InvalidMetadata { .. })
    ));
}

#[test]
fn unknown_segment_type_names_lv_segment_and_type() {
    let (mut vg, devices) = dashed();
    let lv = vg.lv_mut("void").unwrap();
    lv.segments.push(Segment {
        start_extent: Extents(3),
        extent_count: Extents(1),
        kind: SegmentKind::Other {
            type_name: "vdo".into(),
            body: Default::default(),
        },
        tags: vec![],
        extra: Default::default(),
    });
    let e = plan_lv(&vg, "void", &devices).unwrap_err();
    assert!(
        matches!(&e, ActivateError::UnsupportedSegment { lv, segment: 3, type_name, .. }
            if lv == "void" && type_name == "vdo"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "logical volume my-vg/void: segment 3 has type \"vdo\", which lvmd cannot activate yet"
    );
}

#[test]
fn over_long_names_are_refused() {
    let (mut vg, devices) = dashed();
    // 64 dashes in each name double to 128 each: far past the kernel's 127.
    let long = "-".repeat(63) + "x";
    vg.name = long.clone();
    vg.lv_mut("ro").unwrap().name = long.clone();
    match plan_lv(&vg, &long, &devices) {
        Err(ActivateError::NameTooLong {
            what: "name",
            value,
            max,
        }) => {
            assert_eq!(max, DM_NAME_MAX);
            assert!(value.len() > DM_NAME_MAX);
        }
        other => panic!("expected NameTooLong, got {other:?}"),
    }
}

fn striped_seg(start: u64, count: u64, stripe_size: Option<u64>, areas: &[(&str, u64)]) -> Segment {
    Segment {
        start_extent: Extents(start),
        extent_count: Extents(count),
        kind: SegmentKind::Striped {
            stripe_size: stripe_size.map(Sectors),
            stripes: areas
                .iter()
                .map(|(name, at)| Area {
                    name: (*name).into(),
                    start: Extents(*at),
                })
                .collect(),
        },
        tags: vec![],
        extra: Default::default(),
    }
}

#[test]
fn continuing_segments_are_one_line_as_lvm2_merges_them() {
    let (mut vg, devices) = dashed();
    // What lvmd's striped extension writes: a second segment that continues every
    // stripe of the first. lvm2 loads one line for it.
    let lv = vg.lv_mut("ro").unwrap();
    lv.status.push("WRITE".into());
    lv.segments = vec![
        striped_seg(0, 2, Some(128), &[("pv0", 0), ("pv1", 0)]),
        striped_seg(2, 2, Some(128), &[("pv0", 1), ("pv1", 1)]),
        striped_seg(4, 4, Some(128), &[("pv0", 2), ("pv1", 2)]),
    ];
    let plan = plan_lv(&vg, "ro", &devices).unwrap();
    assert_eq!(
        table_text(&plan.top().table),
        "0 65536 striped 2 128 7:0 2048 7:1 4096\n"
    );

    // Linear pieces that continue each other on one PV: one line.
    let lv = vg.lv_mut("ro").unwrap();
    lv.segments = vec![
        striped_seg(0, 1, None, &[("pv0", 5)]),
        striped_seg(1, 2, None, &[("pv0", 6)]),
    ];
    assert_eq!(
        table_text(&plan_lv(&vg, "ro", &devices).unwrap().top().table),
        "0 24576 linear 7:0 43008\n"
    );

    // Not continued: another PV, a gap, another stripe size or count, other tags.
    for second in [
        striped_seg(1, 2, None, &[("pv1", 6)]),
        striped_seg(1, 2, None, &[("pv0", 7)]),
    ] {
        let lv = vg.lv_mut("ro").unwrap();
        lv.segments = vec![striped_seg(0, 1, None, &[("pv0", 5)]), second];
        assert_eq!(plan_lv(&vg, "ro", &devices).unwrap().top().table.len(), 2);
    }
    for second in [
        striped_seg(2, 2, Some(256), &[("pv0", 1), ("pv1", 1)]),
        striped_seg(2, 1, None, &[("pv0", 1)]),
    ] {
        let lv = vg.lv_mut("ro").unwrap();
        lv.segments = vec![
            striped_seg(0, 2, Some(128), &[("pv0", 0), ("pv1", 0)]),
            second,
        ];
        assert_eq!(plan_lv(&vg, "ro", &devices).unwrap().top().table.len(), 2);
    }
    let lv = vg.lv_mut("ro").unwrap();
    let mut tagged = striped_seg(1, 2, None, &[("pv0", 6)]);
    tagged.tags = vec!["t".into()];
    lv.segments = vec![striped_seg(0, 1, None, &[("pv0", 5)]), tagged];
    assert_eq!(plan_lv(&vg, "ro", &devices).unwrap().top().table.len(), 2);

    // zero and error segments stay apart, as lvm2 has no merge for them.
    let void = plan_lv(&vg, "void", &devices).unwrap();
    assert_eq!(void.top().table.len(), 2);
    let mut vg2 = vg.clone();
    let lv = vg2.lv_mut("void").unwrap();
    lv.segments[1].kind = lv.segments[0].kind.clone();
    assert_eq!(
        plan_lv(&vg2, "void", &devices).unwrap().top().table.len(),
        2
    );
}

#[test]
fn errors_number_segments_as_the_metadata_does() {
    let (mut vg, devices) = dashed();
    let lv = vg.lv_mut("void").unwrap();
    lv.segments = vec![
        striped_seg(0, 1, None, &[("pv0", 5)]),
        striped_seg(1, 1, None, &[("pv0", 6)]),
        Segment {
            start_extent: Extents(2),
            extent_count: Extents(1),
            kind: SegmentKind::Other {
                type_name: "vdo".into(),
                body: Default::default(),
            },
            tags: vec![],
            extra: Default::default(),
        },
    ];
    assert!(matches!(
        plan_lv(&vg, "void", &devices),
        Err(ActivateError::UnsupportedSegment { segment: 3, .. })
    ));
}
