//! Every target's table renders to the kernel's text and parses back to the same value,
//! lvm2's own tables (the fixtures' `dmsetup table`) included.

use super::*;
use crate::activate::test_fixture::read_fixture;
use devicemapper::{DataBlocks, ThinDevId};

fn dev(major: u32, minor: u32) -> DevRef {
    DevRef::Device(DevNum { major, minor })
}

fn line(start: u64, length: u64, target: Target) -> TableLine {
    TableLine {
        start: Sectors(start),
        length: Sectors(length),
        target,
    }
}

/// render -> parse -> equal, and the text is `text` exactly.
fn round_trip(l: &TableLine, text: &str) {
    assert_eq!(l.to_string(), text);
    let parsed = TableLine::from_kernel(&l.to_ioctl()).unwrap();
    assert_eq!(&parsed, l, "{text}");
    assert_eq!(parsed.to_string(), text);
}

fn features(zero: bool, discards: Discards, ro: bool, eins: bool) -> ThinPoolFeatures {
    ThinPoolFeatures {
        zero_new_blocks: zero,
        discards,
        read_only: ro,
        error_if_no_space: eins,
    }
}

#[test]
fn every_kind_round_trips() {
    round_trip(
        &line(
            0,
            16384,
            Target::Linear(Linear {
                device: dev(254, 0),
                offset: Sectors(2048),
            }),
        ),
        "0 16384 linear 254:0 2048",
    );
    round_trip(
        &line(
            16384,
            32768,
            Target::Striped(Striped {
                chunk: Sectors(128),
                stripes: vec![
                    StripeArea {
                        device: dev(7, 0),
                        offset: Sectors(83968),
                    },
                    StripeArea {
                        device: dev(7, 1),
                        offset: Sectors(28672),
                    },
                ],
            }),
        ),
        "16384 32768 striped 2 128 7:0 83968 7:1 28672",
    );
    round_trip(&line(0, 8, Target::Zero(Zero)), "0 8 zero");
    round_trip(&line(8, 8, Target::Error(Error)), "8 8 error");
    round_trip(
        &line(
            0,
            16384,
            Target::Raid(Raid {
                level: "raid1".into(),
                chunk: Sectors(0),
                rebuild: vec![1],
                min_recovery_rate: Some(100),
                max_recovery_rate: Some(2000),
                write_mostly: vec![0, 1],
                max_write_behind: Some(512),
                region_size: Some(Sectors(4096)),
                legs: vec![
                    RaidLeg {
                        meta: Some(dev(253, 3)),
                        data: Some(dev(253, 4)),
                    },
                    RaidLeg {
                        meta: None,
                        data: Some(dev(253, 6)),
                    },
                ],
            }),
        ),
        "0 16384 raid raid1 15 0 rebuild 1 min_recovery_rate 100 max_recovery_rate 2000 \
         write_mostly 0 write_mostly 1 max_write_behind 512 region_size 4096 2 \
         253:3 253:4 - 253:6",
    );
    for (f, words) in [
        (features(true, Discards::Passdown, false, false), "0 "),
        (
            features(false, Discards::Ignore, false, true),
            "3 skip_block_zeroing ignore_discard error_if_no_space ",
        ),
        (
            features(false, Discards::NoPassdown, true, true),
            "4 skip_block_zeroing no_discard_passdown read_only error_if_no_space ",
        ),
    ] {
        round_trip(
            &line(
                0,
                32768,
                Target::ThinPool(ThinPool {
                    metadata: dev(253, 8),
                    data: dev(253, 9),
                    block_size: Sectors(128),
                    low_water_mark: DataBlocks(7),
                    features: f,
                }),
            ),
            &format!("0 32768 thin-pool 253:8 253:9 128 7 {words}"),
        );
    }
    for (origin, text) in [
        (None, "0 65536 thin 253:10 1"),
        (Some(dev(253, 2)), "0 65536 thin 253:10 1 253:2"),
    ] {
        round_trip(
            &line(
                0,
                65536,
                Target::Thin(Thin {
                    pool: dev(253, 10),
                    device_id: ThinDevId::new_u64(1).unwrap(),
                    external_origin: origin,
                }),
            ),
            text,
        );
    }
}

#[test]
fn lvm2s_tables_parse_and_render_back_to_their_text() {
    // Every line lvm2 loaded in the fixtures whose target lvmd knows; the others are
    // refused by name.
    let mut known = 0;
    for fixture in ["mixed", "simple"] {
        for l in read_fixture(fixture, "dmsetup-table.txt").lines() {
            let (_, table) = l.split_once(": ").unwrap();
            let mut words = table.splitn(4, ' ');
            let start: u64 = words.next().unwrap().parse().unwrap();
            let length: u64 = words.next().unwrap().parse().unwrap();
            let ty = words.next().unwrap().to_owned();
            let params = words.next().unwrap_or("").to_owned();
            let kernel = (start, length, ty.clone(), params.clone());
            match TableLine::from_kernel(&kernel) {
                Ok(parsed) => {
                    known += 1;
                    // Exactly the kernel's text, trailing space of the pool included.
                    assert_eq!(parsed.to_string(), table, "{l}");
                    assert_eq!(parsed.to_ioctl(), kernel, "{l}");
                    assert_eq!(TableLine::from_kernel(&parsed.to_ioctl()), Ok(parsed));
                }
                Err(e) => {
                    assert!(matches!(ty.as_str(), "cache"), "{l}: {e}");
                    assert!(e.to_string().contains(&ty), "{e}");
                }
            }
        }
    }
    // linear, striped, raid, thin-pool, thin, snapshot-origin and snapshot lines of the
    // mixed fixture at least.
    assert!(known >= 19, "{known}");
}

#[test]
fn parsed_tables_compare_by_value_not_spacing() {
    // The kernel ends a pool's line with a space; lvmd's plan compares equal without.
    let spaced = (0, 8, "thin-pool".to_owned(), "1:2 1:3 128 0 0 ".to_owned());
    let bare = (0, 8, "thin-pool".to_owned(), "1:2 1:3 128 0 0".to_owned());
    assert_eq!(
        TableLine::from_kernel(&spaced).unwrap(),
        TableLine::from_kernel(&bare).unwrap()
    );
}

#[test]
fn non_canonical_or_odd_tables_are_refused() {
    for (ty, params) in [
        // Features out of the kernel's order, or twice: not what lvmd would load.
        (
            "thin-pool",
            "1:2 1:3 128 0 2 ignore_discard skip_block_zeroing",
        ),
        ("thin-pool", "1:2 1:3 128 0 2 ignore_discard ignore_discard"),
        ("thin-pool", "1:2 1:3 128 0 1 metadata2"),
        ("thin-pool", "1:2 1:3 128 0 2 skip_block_zeroing"),
        ("linear", "1:2"),
        ("linear", "1:2 0 9"),
        ("linear", "sda 0"),
        ("striped", "2 128 1:2 0"),
        ("zero", "1"),
        ("raid", "raid1 3 0 sync 4096 2 1:1 1:2 1:3 1:4"),
        ("raid", "raid1 2 0 region_size 2 1:1 1:2 1:3 1:4"),
        ("raid", "raid1 3 0 region_size 4096 2 1:1 1:2 1:3"),
        ("thin", "1:2 16777216"),
        // A transient snapshot (N) is never lvm2's; nor an origin over two devices.
        ("snapshot", "1:2 1:3 N 8"),
        ("snapshot", "1:2 1:3 P"),
        ("snapshot-origin", "1:2 1:3"),
        ("crypt", "aes-xts-plain64 :64:logon:k 0 1:2 0"),
    ] {
        let kernel = (0, 8, ty.to_owned(), params.to_owned());
        assert!(
            TableLine::from_kernel(&kernel).is_err(),
            "{ty} {params} parsed"
        );
    }
}

#[test]
fn planned_devices_are_named_until_resolved() {
    let mut table = vec![line(
        0,
        8,
        Target::Thin(Thin {
            pool: DevRef::planned(2, "vg-pool-tpool"),
            device_id: ThinDevId::new_u64(3).unwrap(),
            external_origin: None,
        }),
    )];
    assert_eq!(table_text(&table), "0 8 thin /dev/mapper/vg-pool-tpool 3\n");
    assert_eq!(unresolved(&table).len(), 1);
    assert_eq!(DevRef::planned(2, "x").planned_index(), Some(2));
    assert_eq!(dev(253, 2).planned_index(), None);
    for r in table[0].target.refs_mut() {
        *r = dev(253, 10);
    }
    assert!(unresolved(&table).is_empty());
    assert_eq!(table_text(&table), "0 8 thin 253:10 3\n");
    assert_eq!(table_size(&table), Sectors(8));
}

#[test]
fn device_ends_are_each_device_s_last_sector_used() {
    let striped = Target::Striped(Striped {
        chunk: Sectors(128),
        stripes: vec![
            StripeArea {
                device: dev(7, 0),
                offset: Sectors(100),
            },
            StripeArea {
                device: DevRef::planned(0, "x"),
                offset: Sectors(0),
            },
        ],
    });
    // Planned devices have no size to check yet.
    assert_eq!(
        striped.device_ends(Sectors(64)),
        vec![(DevNum { major: 7, minor: 0 }, Sectors(132))]
    );
    let pool = Target::parse("thin-pool", "1:2 1:3 128 0 0").unwrap();
    assert_eq!(
        pool.device_ends(Sectors(64)),
        vec![(DevNum { major: 1, minor: 3 }, Sectors(64))]
    );
    assert!(Target::parse("thin", "1:2 1")
        .unwrap()
        .device_ends(Sectors(64))
        .is_empty());
}

/// lvm2's integrity line renders as lvm2 loaded it (`lvm2-loaded.txt`), and the
/// kernel's report of that device (`dmsetup-table.txt`: its defaults, no fix_padding,
/// no block_size) parses and is the same device; another metadata device, hash or
/// block size is not.
#[test]
fn integrity_lvm2s_text_and_the_kernels_are_one_device() {
    let ours = Integrity {
        device: dev(253, 2),
        offset: Sectors(0),
        tag_size: 4,
        mode: 'J',
        block_size: 512,
        internal_hash: "crc32c".into(),
        meta_device: Some(dev(253, 1)),
        recalculate: true,
        fix_padding: true,
        allow_discards: false,
        tuning: vec![],
    };
    let loaded = read_fixture("raid1-integrity", "lvm2-loaded.txt");
    let text = loaded
        .lines()
        .filter(|l| l.contains(" integrity 253:2 "))
        .find_map(|l| l.strip_prefix("Adding target to (253:3): "))
        .unwrap();
    round_trip(&line(0, 16384, Target::Integrity(ours.clone())), text);

    let table = read_fixture("raid1-integrity", "dmsetup-table.txt");
    let kernel = table
        .lines()
        .find_map(|l| l.strip_prefix("rint-m_rimage_0: 0 16384 integrity "))
        .unwrap();
    let parsed = TableLine::from_kernel(&(0, 16384, "integrity".into(), kernel.into())).unwrap();
    let Target::Integrity(k) = &parsed.target else {
        panic!("{parsed:?}")
    };
    assert_eq!(k.tuned_for_test("journal_sectors"), Some(176));
    assert!(!k.fix_padding);
    assert_eq!(k, &ours);
    // Without recalculate, as every later activation loads it: the same device.
    let later = Integrity {
        recalculate: false,
        ..ours.clone()
    };
    assert_eq!(k, &later);
    for other in [
        Integrity {
            meta_device: Some(dev(253, 5)),
            ..ours.clone()
        },
        Integrity {
            internal_hash: "sha256".into(),
            ..ours.clone()
        },
        Integrity {
            block_size: 4096,
            ..ours.clone()
        },
        Integrity {
            tuning: vec![("journal_sectors".into(), 1024)],
            ..ours.clone()
        },
    ] {
        assert_ne!(k, &other);
    }
    // Status: mismatches, data sectors, recalculated up to.
    let status: IntegrityStatus = "3 16384 -".parse().unwrap();
    assert_eq!(
        (status.mismatches, status.data_sectors, status.recalculated),
        (3, Sectors(16384), None)
    );
    for bad in [
        "253:2 0 4 J 1 journal_crypt:aes",
        "253:2 0 4 X 0",
        "253:2 0 4 J 0",
    ] {
        assert!(bad.parse::<Integrity>().is_err(), "{bad}");
    }
}

#[test]
fn snapshot_tables_and_statuses_are_dm_snapshots() {
    round_trip(
        &line(
            0,
            16384,
            Target::Snapshot(Snapshot {
                real: dev(253, 13),
                cow: dev(253, 14),
                chunk_size: Sectors(8),
            }),
        ),
        "0 16384 snapshot 253:13 253:14 P 8",
    );
    round_trip(
        &line(
            0,
            16384,
            Target::SnapshotOrigin(SnapshotOrigin { real: dev(253, 13) }),
        ),
        "0 16384 snapshot-origin 253:13",
    );
    let used: SnapshotStatus = "48/24576 16".parse().unwrap();
    assert_eq!(
        used,
        SnapshotStatus::Valid {
            used: Sectors(48),
            total: Sectors(24576),
            metadata: Sectors(16)
        }
    );
    assert!((used.percent_used() - 0.1953125).abs() < 1e-9);
    assert_eq!("Invalid".parse(), Ok(SnapshotStatus::Invalid));
    assert_eq!("Overflow".parse(), Ok(SnapshotStatus::Overflow));
    assert_eq!(SnapshotStatus::Invalid.percent_used(), 100.0);
    assert!("48 24576 16".parse::<SnapshotStatus>().is_err());
    assert!("48/x 16".parse::<SnapshotStatus>().is_err());
}
