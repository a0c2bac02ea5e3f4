use super::*;
use crate::activate::planner::plan_lv;
use crate::activate::target::DevRef;
use crate::activate::target::{table_text, unresolved};
use crate::activate::test_fixture::{mixed, read, vg_from_text};

fn lvm2_table(dm_name: &str) -> String {
    let prefix = format!("{dm_name}: ");
    read("dmsetup-table.txt")
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn lvm2_uuid(dm_name: &str) -> String {
    read("dmsetup-uuids.txt")
        .lines()
        .find_map(|l| {
            let (name, uuid) = l.split_once(' ')?;
            (name == dm_name).then(|| uuid.to_owned())
        })
        .unwrap_or_else(|| panic!("no uuid for {dm_name}"))
}

/// The device numbers lvm2's raid table names, by leg device, in the table's order.
fn lvm2_leg_devnums() -> Vec<DevNum> {
    let table = lvm2_table("lvmd_mixed-mirrored");
    let words: Vec<&str> = table.split_whitespace().collect();
    words[words.len() - 4..]
        .iter()
        .map(|w| {
            let (major, minor) = w.split_once(':').unwrap();
            DevNum {
                major: major.parse().unwrap(),
                minor: minor.parse().unwrap(),
            }
        })
        .collect()
}

/// Plans `lv` and resolves its legs to the numbers lvm2's devices had.
fn planned_with_lvm2_numbers(
    vg: &VolumeGroup,
    lv: &str,
    devices: &BTreeMap<Uuid, DevNum>,
) -> LvPlan {
    let mut plan = plan_lv(vg, lv, devices).unwrap();
    // The legs are the devices before the raid one, in the table's order.
    for (i, number) in lvm2_leg_devnums().into_iter().enumerate() {
        plan.resolve(i, number);
    }
    assert!(unresolved(&plan.top().table).is_empty());
    plan
}

#[test]
fn fixture_raid1_devices_equal_lvm2s() {
    let (vg, devices) = mixed();
    let plan = planned_with_lvm2_numbers(&vg, "mirrored", &devices);
    let names: Vec<&str> = plan.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lvmd_mixed-mirrored_rmeta_0",
            "lvmd_mixed-mirrored_rimage_0",
            "lvmd_mixed-mirrored_rmeta_1",
            "lvmd_mixed-mirrored_rimage_1",
            "lvmd_mixed-mirrored",
        ]
    );
    for dev in &plan.devices {
        assert_eq!(dev.uuid, lvm2_uuid(&dev.name), "{}", dev.name);
        assert_eq!(
            table_text(&dev.table),
            lvm2_table(&dev.name),
            "{}",
            dev.name
        );
        assert!(!dev.read_only);
        // Only the LV itself gets /dev/VG/LV; its legs are hidden.
        assert_eq!(
            dev.visible,
            dev.name == "lvmd_mixed-mirrored",
            "{}",
            dev.name
        );
    }
    assert_eq!(
        table_text(&plan.top().table),
        "0 16384 raid raid1 3 0 region_size 4096 2 253:3 253:4 253:5 253:6\n"
    );
    assert_eq!(plan.top().size(), Sectors(16384));
}

#[test]
fn unresolved_legs_are_named_and_listed() {
    let (vg, devices) = mixed();
    let plan = plan_lv(&vg, "mirrored", &devices).unwrap();
    let Target::Raid(raid) = &plan.top().table[0].target else {
        panic!("not raid: {:?}", plan.top().table);
    };
    assert_eq!(unresolved(&plan.top().table).len(), 4);
    let planned: Vec<Option<usize>> = raid
        .legs
        .iter()
        .flat_map(|l| [&l.meta, &l.data])
        .map(|d| d.as_ref().and_then(DevRef::planned_index))
        .collect();
    assert_eq!(planned, [Some(0), Some(1), Some(2), Some(3)]);
    assert!(raid
        .legs
        .iter()
        .all(|l| l.meta.is_some() && l.data.is_some()));
    assert!(
        table_text(&plan.top().table).contains("/dev/mapper/lvmd_mixed-mirrored_rmeta_0"),
        "{}",
        table_text(&plan.top().table)
    );
}

#[test]
fn sub_lvs_are_the_legs_in_order() {
    let (vg, _) = mixed();
    let names: Vec<&str> = sub_lvs(&vg, vg.lv("mirrored").unwrap())
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "mirrored_rmeta_0",
            "mirrored_rimage_0",
            "mirrored_rmeta_1",
            "mirrored_rimage_1"
        ]
    );
    assert!(sub_lvs(&vg, vg.lv("lin_a").unwrap()).is_empty());
    assert!(is_raid(vg.lv("mirrored").unwrap()));
    assert!(!is_raid(vg.lv("mirrored_rimage_0").unwrap()));
}

#[test]
fn a_missing_leg_pv_activates_degraded_as_lvm2_does() {
    let (vg, mut devices) = mixed();
    let pv2 = vg.pv("pv2").unwrap().id;
    devices.remove(&pv2);
    let plan = plan_lv(&vg, "mirrored", &devices).unwrap();
    let names: Vec<&str> = plan.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lvmd_mixed-mirrored_rmeta_0",
            "lvmd_mixed-mirrored_rimage_0",
            "lvmd_mixed-mirrored_rmeta_1",
            "lvmd_mixed-mirrored_rimage_1",
            "lvmd_mixed-mirrored"
        ]
    );
    // Leg 0 keeps lvm2's tables; leg 1 (on pv2) is an error device of each sub-LV's
    // length, as lvm2's degraded activation loads it.
    for i in 0..2 {
        assert_eq!(
            table_text(&plan.devices[i].table),
            lvm2_table(&plan.devices[i].name),
            "{}",
            plan.devices[i].name
        );
    }
    for (i, sub) in [(2, "mirrored_rmeta_1"), (3, "mirrored_rimage_1")] {
        let sectors = vg.extent_size.span(vg.lv(sub).unwrap().extents()).0;
        assert_eq!(
            table_text(&plan.devices[i].table),
            format!("0 {sectors} error\n"),
            "{sub}"
        );
    }
    // The raid table still names both legs: dm-raid fails the one it cannot read.
    let top = &plan.top().table;
    assert_eq!(unresolved(top).len(), 4);
}

#[test]
fn no_whole_leg_left_refuses_naming_the_raid_lv() {
    let (vg, mut devices) = mixed();
    for pv in ["pv1", "pv2"] {
        devices.remove(&vg.pv(pv).unwrap().id);
    }
    match plan_lv(&vg, "mirrored", &devices) {
        Err(ActivateError::MissingPv { lv, .. }) => assert_eq!(lv, "mirrored"),
        other => panic!("expected MissingPv, got {other:?}"),
    }
}

/// Edits the fixture's metadata text: the raid LV's segment, or one of its sub-LVs.
fn edited(from: &str, to: &str) -> VolumeGroup {
    let text = read("vgcfgbackup.txt");
    assert!(text.contains(from), "{from}");
    vg_from_text(&text.replacen(from, to, 1))
}

#[test]
fn flags_and_options_are_lvm2s_parameters_in_its_order() {
    let (_, devices) = mixed();
    // Image 1 rebuilding and write-mostly, with rates and write-behind on the segment.
    let seg = "\t\t\t\tregion_size = 4096\n";
    let text = read("vgcfgbackup.txt")
        .replacen(
            seg,
            "\t\t\t\tregion_size = 4096\n\t\t\t\twritebehind = 512\n\
             \t\t\t\tmin_recovery_rate = 100\n\t\t\t\tmax_recovery_rate = 2000\n",
            1,
        )
        .replacen(
            "\t\tmirrored_rimage_1 {\n\t\t\tid = \"C1fpmS-FRKd-CReA-sKyK-yNDo-0uXb-NwSPEU\"\n\t\t\tstatus = [\"READ\", \"WRITE\"]",
            "\t\tmirrored_rimage_1 {\n\t\t\tid = \"C1fpmS-FRKd-CReA-sKyK-yNDo-0uXb-NwSPEU\"\n\t\t\tstatus = [\"READ\", \"WRITE\", \"REBUILD\", \"WRITEMOSTLY\"]",
            1,
        );
    let vg = vg_from_text(&text);
    let plan = planned_with_lvm2_numbers(&vg, "mirrored", &devices);
    assert_eq!(
        table_text(&plan.top().table),
        "0 16384 raid raid1 13 0 rebuild 1 min_recovery_rate 100 max_recovery_rate 2000 \
         write_mostly 1 max_write_behind 512 region_size 4096 2 253:3 253:4 253:5 253:6\n"
    );
}

#[test]
fn odd_raid_metadata_is_refused() {
    let (_, devices) = mixed();
    let no_region = edited("\t\t\t\tregion_size = 4096\n", "");
    assert!(matches!(
        plan_lv(&no_region, "mirrored", &devices),
        Err(ActivateError::InvalidMetadata { .. })
    ));
    let reshaping = edited(
        "\t\t\t\tregion_size = 4096\n",
        "\t\t\t\tregion_size = 4096\n\t\t\t\tdata_offset = 0\n",
    );
    assert!(matches!(
        plan_lv(&reshaping, "mirrored", &devices),
        Err(ActivateError::Unsupported { .. })
    ));
    // The legs themselves stay hidden LVs.
    let (vg, _) = mixed();
    assert!(matches!(
        plan_lv(&vg, "mirrored_rimage_0", &devices),
        Err(ActivateError::HiddenLv { .. })
    ));
}

/// lvm2's `--raidintegrity y` mirror (tests/fixtures/lvm2/raid1-integrity): lvmd plans
/// the devices lvm2 made, in its order (so with its device numbers), with its names
/// and uuids, each leg's integrity metadata and data sub-LVs before the image's
/// dm-integrity device over them, and tables equal to
/// what the kernel reports of lvm2's devices once each planned device has the number
/// lvm2's had. A leg on a missing PV is an error image (no integrity over nothing).
#[test]
fn fixture_raid1_with_integrity_devices_equal_lvm2s() {
    use crate::activate::target::parse_table;
    use crate::activate::test_fixture::read_fixture;
    let vg = vg_from_text(&read_fixture("raid1-integrity", "vgcfgbackup.txt"));
    let pv = |name: &str| vg.pvs.iter().find(|p| p.name == name).unwrap().id;
    let mut pvs = BTreeMap::new();
    pvs.insert(pv("pv0"), DevNum { major: 7, minor: 0 });
    pvs.insert(pv("pv1"), DevNum { major: 7, minor: 1 });
    // name -> (uuid, number, kernel table) of lvm2's devices.
    let table = read_fixture("raid1-integrity", "dmsetup-table.txt");
    let uuids = read_fixture("raid1-integrity", "dmsetup-uuids.txt");
    let lvm2 = |name: &str| {
        let uuid = uuids
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().unwrap().to_owned())
            })
            .unwrap();
        let lines: Vec<(u64, u64, String, String)> = table
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(|l| {
                let mut w = l.splitn(4, ' ');
                let (s, n, t) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
                (
                    s.parse().unwrap(),
                    n.parse().unwrap(),
                    t.to_owned(),
                    w.next().unwrap_or("").to_owned(),
                )
            })
            .collect();
        (uuid, parse_table(&lines).unwrap())
    };
    // lvm2's device numbers, from its raid and integrity tables.
    let number = |name: &str| -> DevNum {
        let n: u32 = match name {
            "rint-m_rmeta_0" => 0,
            "rint-m_rimage_0_imeta" => 1,
            "rint-m_rimage_0_iorig" => 2,
            "rint-m_rimage_0" => 3,
            "rint-m_rmeta_1" => 4,
            "rint-m_rimage_1_imeta" => 5,
            "rint-m_rimage_1_iorig" => 6,
            "rint-m_rimage_1" => 7,
            other => panic!("{other}"),
        };
        DevNum {
            major: 253,
            minor: n,
        }
    };
    let mut plan = plan_lv(&vg, "m", &pvs).unwrap();
    let names: Vec<String> = plan.devices.iter().map(|d| d.name.clone()).collect();
    assert_eq!(
        names,
        [
            "rint-m_rmeta_0",
            "rint-m_rimage_0_imeta",
            "rint-m_rimage_0_iorig",
            "rint-m_rimage_0",
            "rint-m_rmeta_1",
            "rint-m_rimage_1_imeta",
            "rint-m_rimage_1_iorig",
            "rint-m_rimage_1",
            "rint-m",
        ]
    );
    for (i, name) in names.iter().enumerate().take(names.len() - 1) {
        plan.resolve(i, number(name));
    }
    for dev in &plan.devices {
        let (uuid, theirs) = lvm2(&dev.name);
        assert_eq!(dev.uuid, uuid, "{}", dev.name);
        assert_eq!(dev.table, theirs, "{}", dev.name);
        assert!(!dev.visible || dev.name == "rint-m", "{}", dev.name);
        // lvm2 writes read_ahead = -1 (None) on the metadata sub-LVs: 0, as it sets.
        let want = dev.name.ends_with("_imeta").then_some(0);
        assert_eq!(dev.read_ahead, want, "{}", dev.name);
    }
    // The layer's text is lvm2's own (as it loads it once the metadata lost recalculate).
    assert_eq!(
        table_text(&plan.devices[3].table),
        "0 16384 integrity 253:2 0 4 J 4 fix_padding block_size:512 internal_hash:crc32c \
         meta_device:253:1\n"
    );
    // Deactivation's order: each image after its layer's sub-LVs.
    let subs: Vec<&str> = sub_lvs(&vg, vg.lv("m").unwrap())
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        &subs[..4],
        [
            "m_rmeta_0",
            "m_rimage_0_imeta",
            "m_rimage_0_iorig",
            "m_rimage_0"
        ]
    );

    // pv1 missing: leg 1 is two error devices, leg 0 its four.
    pvs.remove(&pv("pv1"));
    let plan = plan_lv(&vg, "m", &pvs).unwrap();
    let names: Vec<&str> = plan.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names[4..], ["rint-m_rmeta_1", "rint-m_rimage_1", "rint-m"]);
    for dev in &plan.devices[4..6] {
        assert!(
            matches!(
                dev.table[..],
                [TableLine {
                    target: Target::Error(_),
                    ..
                }]
            ),
            "{}: {:?}",
            dev.name,
            dev.table
        );
    }
}
