//! Thin plans against the `mixed` fixture: what lvm2 2.03.16 loaded in the VM
//! (`tests/fixtures/lvm2/mixed/dmsetup-table.txt`), where the pool's layers got
//! 253:8 (`_tmeta`), 253:9 (`_tdata`) and 253:10 (`-tpool`).

use super::*;
use crate::activate::planner::plan_lv;
use crate::activate::target::{table_size, table_text, unresolved, DevRef, Error, Zero};
use crate::activate::test_fixture::{mixed, read};
use crate::format::text;

/// `name: table` and `name uuid` of one fixture device, as lvm2 made it.
fn lvm2_device(dm_name: &str) -> (String, String) {
    let prefix = format!("{dm_name}: ");
    let table: String = read("dmsetup-table.txt")
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!table.is_empty(), "no table for {dm_name}");
    let uuid = read("dmsetup-uuids.txt")
        .lines()
        .find_map(|l| {
            let (name, uuid) = l.split_once(' ')?;
            (name == dm_name).then(|| uuid.to_owned())
        })
        .unwrap();
    (table, uuid)
}

/// The numbers the fixture's devices had, in plan order.
fn resolve_as_in_fixture(plan: &mut LvPlan) {
    for (i, minor) in [8, 9, 10].into_iter().enumerate() {
        plan.resolve(i, DevNum { major: 253, minor });
    }
}

fn assert_like_lvm2(plan: &LvPlan, names: &[&str]) {
    let ours: Vec<&str> = plan.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(ours, names);
    for d in &plan.devices {
        let (table, uuid) = lvm2_device(&d.name);
        assert_eq!(table_text(&d.table), table, "{}", d.name);
        assert_eq!(d.uuid, uuid, "{}", d.name);
        assert_eq!(d.size(), table_size(&d.table));
    }
}

#[test]
fn thin_lv_plan_is_lvm2s_four_devices_bottom_up() {
    let (vg, pvs) = mixed();
    let mut plan = plan_lv(&vg, "thin", &pvs).unwrap();
    // Before activation, the layers name each other as planned devices.
    assert_eq!(
        plan.devices[3].table[0].target,
        Target::Thin(Thin {
            pool: DevRef::planned(2, "lvmd_mixed-pool-tpool"),
            device_id: ThinDevId::new_u64(1).unwrap(),
            external_origin: None,
        })
    );
    assert_eq!(DevRef::planned(2, "x").planned_index(), Some(2));
    assert_eq!(
        DevRef::Device(DevNum {
            major: 253,
            minor: 2
        })
        .planned_index(),
        None
    );
    resolve_as_in_fixture(&mut plan);
    assert_like_lvm2(
        &plan,
        &[
            "lvmd_mixed-pool_tmeta",
            "lvmd_mixed-pool_tdata",
            "lvmd_mixed-pool-tpool",
            "lvmd_mixed-thin",
        ],
    );
    // Exactly the kernel's text, trailing space of the pool line included.
    assert_eq!(
        table_text(&plan.devices[2].table),
        "0 32768 thin-pool 253:8 253:9 128 0 0 \n"
    );
    assert_eq!(
        table_text(&plan.devices[3].table),
        "0 65536 thin 253:10 1\n"
    );
    let visible: Vec<bool> = plan.devices.iter().map(|d| d.visible).collect();
    assert_eq!(visible, [false, false, false, true]);
    assert!(plan.devices.iter().all(|d| !d.read_only));
    assert_eq!(plan.top().name, "lvmd_mixed-thin");
}

#[test]
fn pool_plan_adds_a_read_only_linear_over_the_tpool() {
    let (vg, pvs) = mixed();
    let mut plan = plan_lv(&vg, "pool", &pvs).unwrap();
    resolve_as_in_fixture(&mut plan);
    assert_like_lvm2(
        &plan,
        &[
            "lvmd_mixed-pool_tmeta",
            "lvmd_mixed-pool_tdata",
            "lvmd_mixed-pool-tpool",
            "lvmd_mixed-pool",
        ],
    );
    let top = plan.top();
    assert!(top.read_only && !top.visible);
    assert!(top.uuid.ends_with("-pool"));
}

#[test]
fn thin_snapshot_is_a_thin_of_its_own_device_id() {
    let (vg, pvs) = mixed();
    let plan = plan_lv(&vg, "thin_snap", &pvs).unwrap();
    assert_eq!(plan.devices.len(), 4);
    assert_eq!(
        plan.top().table[0].target.params(),
        format!("{} 2", DevRef::planned(2, "lvmd_mixed-pool-tpool"))
    );
}

fn pool_segment_mut(vg: &mut VolumeGroup) -> &mut crate::model::Segment {
    let pool = vg.lvs.iter_mut().find(|l| l.name == "pool").unwrap();
    &mut pool.segments[0]
}

#[test]
fn pool_features_follow_zeroing_discards_and_error_when_full_like_lvm2() {
    // Each as lvm2 2.03.16 loaded it in the VM (lvchange --zero n --discards ...,
    // --errorwhenfull y), in the kernel's order.
    let cases: [(Option<i64>, Option<&str>, bool, &str); 5] = [
        (Some(1), Some("passdown"), false, "0 "),
        (None, Some("passdown"), false, "1 skip_block_zeroing "),
        (
            None,
            Some("nopassdown"),
            true,
            "3 skip_block_zeroing no_discard_passdown error_if_no_space ",
        ),
        (
            None,
            Some("ignore"),
            true,
            "3 skip_block_zeroing ignore_discard error_if_no_space ",
        ),
        (Some(1), None, false, "1 ignore_discard "),
    ];
    for (zero, discards, ewf, features) in cases {
        let (mut vg, pvs) = mixed();
        let seg = pool_segment_mut(&mut vg);
        seg.extra = crate::format::text::Section::new();
        if let Some(z) = zero {
            seg.extra.push("zero_new_blocks", text::Value::Int(z));
        }
        if let Some(d) = discards {
            seg.extra.push("discards", text::Value::Str(d.into()));
        }
        if ewf {
            let pool = vg.lvs.iter_mut().find(|l| l.name == "pool").unwrap();
            pool.flags.push("ERROR_WHEN_FULL".into());
        }
        let mut plan = plan_lv(&vg, "thin", &pvs).unwrap();
        resolve_as_in_fixture(&mut plan);
        assert_eq!(
            table_text(&plan.devices[2].table),
            format!("0 32768 thin-pool 253:8 253:9 128 0 {features}\n"),
            "{zero:?} {discards:?} {ewf}"
        );
    }
}

#[test]
fn unused_pool_is_the_pool_target_itself() {
    // lvm2 maps a pool no thin LV used yet (transaction id 0) without the -tpool
    // layer: `vg-pool` is the thin-pool target, with the -tpool uuid suffix.
    let (mut vg, pvs) = mixed();
    if let SegmentKind::ThinPool { transaction_id, .. } = &mut pool_segment_mut(&mut vg).kind {
        *transaction_id = 0;
    }
    let plan = plan_lv(&vg, "pool", &pvs).unwrap();
    let names: Vec<&str> = plan.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lvmd_mixed-pool_tmeta",
            "lvmd_mixed-pool_tdata",
            "lvmd_mixed-pool"
        ]
    );
    assert!(plan.top().uuid.ends_with("-tpool"));
    assert!(
        plan.top().visible,
        "lvm2 links /dev/VG/LV to an unused pool"
    );
    assert!(matches!(plan.top().table[0].target, Target::ThinPool(_)));
}

#[test]
fn external_origins_and_hidden_parts_are_refused_pending_messages_planned() {
    // Messages recorded are the activator's to send once the pool is up: the plan is
    // the ordinary one.
    let (mut vg, pvs) = mixed();
    let plain = plan_lv(&vg, "thin", &pvs).unwrap();
    let seg = pool_segment_mut(&mut vg);
    let mut msg = crate::format::text::Section::new();
    msg.push("create", text::Value::Str("thin".into()));
    seg.extra.push_section("message1", msg);
    assert_eq!(plan_lv(&vg, "thin", &pvs).unwrap(), plain);

    let (mut vg, pvs) = mixed();
    let thin = vg.lvs.iter_mut().find(|l| l.name == "thin").unwrap();
    thin.segments[0]
        .extra
        .push("external_origin", text::Value::Str("lin_a".into()));
    let e = plan_lv(&vg, "thin", &pvs).unwrap_err().to_string();
    assert!(e.contains("external_origin"), "{e}");

    let (vg, pvs) = mixed();
    assert!(matches!(
        plan_lv(&vg, "pool_tmeta", &pvs),
        Err(ActivateError::HiddenLv { .. })
    ));
}

#[test]
fn resolve_reaches_every_target_kind() {
    let mut plan = LvPlan {
        vg: "v".into(),
        lv: "l".into(),
        devices: vec![DevicePlan {
            name: "v-l".into(),
            uuid: "LVM-x".into(),
            table: vec![TableLine {
                start: Sectors::ZERO,
                length: Sectors(8),
                target: Target::Linear(Linear {
                    device: DevRef::planned(0, "v-x"),
                    offset: Sectors::ZERO,
                }),
            }],
            read_only: false,
            visible: true,
            read_ahead: None,
        }],
    };
    plan.resolve(1, DevNum { major: 1, minor: 1 });
    assert_eq!(
        plan.devices[0].table[0].target.params(),
        format!("{} 0", DevRef::planned(0, "v-x"))
    );
    plan.resolve(0, DevNum { major: 7, minor: 3 });
    assert_eq!(plan.devices[0].table[0].target.params(), "7:3 0");
}

#[test]
fn resolve_reaches_the_devices_of_every_kind_with_devices() {
    let p = || DevRef::planned(0, "v-low");
    let one = |target| TableLine {
        start: Sectors::ZERO,
        length: Sectors(8),
        target,
    };
    let table = vec![
        one(Target::Striped(crate::activate::target::Striped {
            chunk: Sectors(128),
            stripes: vec![crate::activate::target::StripeArea {
                device: p(),
                offset: Sectors::ZERO,
            }],
        })),
        one(Target::Raid(crate::activate::target::Raid {
            level: "raid1".into(),
            chunk: Sectors::ZERO,
            rebuild: vec![],
            min_recovery_rate: None,
            max_recovery_rate: None,
            write_mostly: vec![],
            max_write_behind: None,
            region_size: Some(Sectors(1024)),
            legs: vec![crate::activate::target::RaidLeg {
                meta: None,
                data: Some(p()),
            }],
        })),
        one(Target::parse("thin-pool", "1:1 1:2 128 0 0").unwrap()),
        one(Target::Thin(Thin {
            pool: p(),
            device_id: ThinDevId::new_u64(1).unwrap(),
            external_origin: Some(p()),
        })),
        one(Target::Zero(Zero)),
        one(Target::Error(Error)),
    ];
    let mut plan = LvPlan {
        vg: "v".into(),
        lv: "l".into(),
        devices: vec![DevicePlan {
            name: "v-l".into(),
            uuid: "LVM-x".into(),
            table,
            read_only: false,
            visible: true,
            read_ahead: None,
        }],
    };
    assert_eq!(unresolved(&plan.devices[0].table).len(), 4);
    plan.resolve(0, DevNum { major: 7, minor: 3 });
    assert!(unresolved(&plan.devices[0].table).is_empty());
    assert_eq!(
        table_text(&plan.devices[0].table),
        "0 8 striped 1 128 7:3 0\n\
         0 8 raid raid1 3 0 region_size 1024 1 - 7:3\n\
         0 8 thin-pool 1:1 1:2 128 0 0 \n\
         0 8 thin 7:3 1 7:3\n\
         0 8 zero\n\
         0 8 error\n"
    );
}
