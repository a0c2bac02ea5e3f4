//! Damaged and cloned metadata, as a failing disk or a careless `dd` leaves it: lvmd
//! reads around one bad copy and repairs it on the next change (as lvm2 does), a bad
//! device outside its VGs hides nothing, and a PV found on two devices is never written
//! through. lvm2 (activation off) checks the result.

mod common;

use common::{host_tests_enabled, vg_name, Loops};
use lvmd::lvm::{Edit, Layout, LvSpec, LvmError};
use lvmd::store::scan::{read_pv, Fingerprint};
use lvmd::units::{Bytes, ExtentSize};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const MIB: u64 = 1 << 20;

/// Writes `bytes` at `offset` of a device and flushes, as a failing disk or a stray
/// write would leave it.
fn scribble(dev: &Path, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// Where the live metadata text of the device's first area starts, in bytes.
fn live_text_offset(dev: &Path) -> u64 {
    let pv = read_pv(dev).unwrap().expect("a PV");
    pv.mdas[0].location.expect("a live text").first.start.0
}

#[test]
fn one_damaged_copy_is_read_around_and_repaired_by_the_next_change() {
    if !host_tests_enabled("one_damaged_copy_is_read_around_and_repaired_by_the_next_change") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let vg = vg_name("damaged");
    let lvm = loops.lvmd();
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    lvm.lv_create(&vg, "a", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();

    // The area header (magic, checksum) on the first PV, then the live text itself on
    // the second PV (its checksum no longer matches).
    for what in ["header", "text"] {
        let (dev, damage) = if what == "header" {
            (&loops.devs[0], 4096)
        } else {
            (&loops.devs[1], live_text_offset(&loops.devs[1]))
        };
        scribble(dev, damage, &[0xa5; 64]);
        let found = lvm.read_vg(&vg).unwrap();
        assert!(found.vg.lv("a").is_some(), "{what}");
        assert_eq!(found.devices.len(), 2, "{what}: the PV still counts");
        assert_eq!(found.damaged.len(), 1, "{what}: {:?}", found.damaged);
        assert_eq!(&found.damaged[0].0, dev, "{what}");
        assert!(found.unwritable.is_none(), "{what}");
        // The VG is not read-only: the next change goes through and rewrites the copy.
        let lv = format!("after_{what}");
        lvm.lv_create(&vg, &lv, Bytes(4 * MIB), Layout::Linear, &[])
            .unwrap();
        let found = lvm.read_vg(&vg).unwrap();
        assert!(found.damaged.is_empty(), "{what}: {:?}", found.damaged);
        assert!(found.stale.is_empty(), "{what}: {:?}", found.stale);
        // lvm2 finds both copies good and agrees on the LVs.
        loops.vgck(&vg);
        let names: Vec<String> = loops
            .report(&["lvs", "-o", "lv_name", &vg], "lv")
            .iter()
            .map(|r| common::text(r, "lv_name"))
            .collect();
        assert!(
            names.contains(&lv) && names.contains(&"a".to_string()),
            "{names:?}"
        );
    }
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

#[test]
fn a_bad_device_outside_the_vg_hides_nothing() {
    if !host_tests_enabled("a_bad_device_outside_the_vg_hides_nothing") {
        return;
    }
    let loops = Loops::new(&[64, 64, 64]);
    let (ours, foreign) = (vg_name("ours"), vg_name("foreign"));
    loops.lvm_ok(&["vgcreate", &foreign, loops.devs[1].to_str().unwrap()]);
    let lvm = loops.lvmd();
    lvm.vg_create(&ours, &loops.devs[..1], ExtentSize::DEFAULT)
        .unwrap();
    // The foreign VG's only copy goes bad.
    scribble(&loops.devs[1], live_text_offset(&loops.devs[1]), &[0; 64]);
    let names: Vec<String> = lvm
        .volume_groups()
        .unwrap()
        .into_iter()
        .map(|v| v.vg.name.clone())
        .collect();
    assert_eq!(names, vec![ours.clone()]);
    lvm.lv_create(&ours, "a", Bytes(4 * MIB), Layout::Linear, &[])
        .unwrap();
    // The bad device is left exactly as it is: not a blank device to take over.
    let err = lvm.vg_extend(&ours, &loops.devs[1..]).unwrap_err();
    assert!(matches!(err, LvmError::PvInUse { .. }), "{err}");
    // An orphan PV whose area header is damaged could belong to a VG nobody can read
    // now: never taken into a VG either.
    lvm.pv_create(&loops.devs[2]).unwrap();
    scribble(&loops.devs[2], 4096, &[0xa5; 64]);
    let before = std::fs::read(&loops.devs[2]).unwrap();
    let err = lvm.vg_extend(&ours, &loops.devs[2..]).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(before == std::fs::read(&loops.devs[2]).unwrap());
    loops.lvm_ok(&["vgremove", "-f", &ours]);
}

#[test]
fn a_pv_found_on_two_devices_is_never_written_through() {
    if !host_tests_enabled("a_pv_found_on_two_devices_is_never_written_through") {
        return;
    }
    let loops = Loops::new(&[64, 64, 64]);
    let vg = vg_name("cloned");
    let lvm = loops.lvmd();
    lvm.vg_create(&vg, &loops.devs[..2], ExtentSize::DEFAULT)
        .unwrap();
    lvm.lv_create(&vg, "a", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();
    // `dd` of the second PV onto the third device.
    let image = std::fs::read(&loops.devs[1]).unwrap();
    scribble(&loops.devs[2], 0, &image);
    let before: Vec<Vec<u8>> = loops
        .devs
        .iter()
        .map(|d| std::fs::read(d).unwrap()[..MIB as usize].to_vec())
        .collect();
    let found = lvm.read_vg(&vg).unwrap();
    let why = found.unwritable.clone().expect("refused");
    for d in &loops.devs[1..] {
        assert!(why.contains(&d.display().to_string()), "{why}");
    }
    // The PV is treated as missing: nothing is activated or written through either copy.
    assert_eq!(found.devices.len(), 1, "{:?}", found.devices);
    let err = lvm
        .lv_create(&vg, "b", Bytes(4 * MIB), Layout::Linear, &[])
        .unwrap_err();
    assert!(
        matches!(err, LvmError::VgNotWritable { ref why, .. } if why.contains("on both")),
        "{err}"
    );
    let err = lvm.lv_remove(&vg, "a").unwrap_err();
    assert!(matches!(err, LvmError::VgNotWritable { .. }), "{err}");
    let after: Vec<Vec<u8>> = loops
        .devs
        .iter()
        .map(|d| std::fs::read(d).unwrap()[..MIB as usize].to_vec())
        .collect();
    assert!(before == after, "a refused change wrote to a device");
    // The clone gone (wiped), lvmd writes again.
    scribble(&loops.devs[2], 0, &vec![0; MIB as usize]);
    lvm.lv_create(&vg, "b", Bytes(4 * MIB), Layout::Linear, &[])
        .unwrap();
    loops.vgck(&vg);
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// A device that shrank under its PV (a smaller LUN, a truncated image): lvmd never
/// hands out extents past its end, and still removes what is there.
#[test]
fn no_extent_is_handed_out_past_the_end_of_a_shrunk_device() {
    if !host_tests_enabled("no_extent_is_handed_out_past_the_end_of_a_shrunk_device") {
        return;
    }
    let loops = Loops::new(&[64]);
    let vg = vg_name("shrunk");
    let lvm = loops.lvmd();
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    lvm.lv_create(&vg, "a", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();
    // The image shrinks to 32 MiB: 1 MiB of metadata, room for 7 extents of 4 MiB.
    let image = loops.dir.path().join("disk0.img");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    common::run_ok("losetup", &["-c", loops.devs[0].to_str().unwrap()]);
    // Within the device: fine.
    lvm.lv_create(&vg, "b", Bytes(8 * MIB), Layout::Linear, &[])
        .unwrap();
    let before = lvm.read_vg(&vg).unwrap().text;
    let err = lvm
        .lv_create(&vg, "c", Bytes(24 * MIB), Layout::Linear, &[])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, LvmError::VgNotWritable { .. })
            && msg.contains("shrink")
            && msg.contains("room for 7"),
        "{msg}"
    );
    let err = lvm.lv_resize(&vg, "b", Bytes(40 * MIB)).unwrap_err();
    assert!(err.to_string().contains("past the device's end"), "{err}");
    assert_eq!(
        lvm.read_vg(&vg).unwrap().text,
        before,
        "a refused change wrote"
    );
    // Removing is always possible.
    lvm.lv_remove(&vg, "a").unwrap();
    lvm.lv_remove(&vg, "b").unwrap();
}

/// The daemon's cached VG (proven current by the area headers) does not hide damage:
/// a damaged header makes the next read a full one that reads around it, damage to the
/// live text behind an unchanged header is served from the copy the cache was parsed
/// from; either way the next change rewrites the copy and lvm2 finds it good.
#[test]
fn the_daemons_cache_reads_around_a_damaged_copy_and_its_next_change_repairs_it() {
    use lvmd::daemon::activation::NoDeviceMapper;
    use lvmd::daemon::engine::{Engine, LvSpec};
    use lvmd::daemon::{HostNode, RealEngine};
    use std::sync::Arc;
    if !host_tests_enabled(
        "the_daemons_cache_reads_around_a_damaged_copy_and_its_next_change_repairs_it",
    ) {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let vg = vg_name("damcache");
    let lvm = loops.lvmd();
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
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
        size: Bytes(4 * MIB),
        layout: Layout::Linear,
        tags: vec![],
    };
    engine.create_logical_volume(&vg, &spec("a")).unwrap();
    for what in ["header", "text"] {
        let (dev, damage) = if what == "header" {
            (&loops.devs[0], 4096)
        } else {
            (&loops.devs[1], live_text_offset(&loops.devs[1]))
        };
        scribble(dev, damage, &[0xa5; 64]);
        let names: Vec<String> = engine
            .logical_volumes(&vg)
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert!(names.contains(&"a".to_string()), "{what}: {names:?}");
        assert_eq!(lvm.read_vg(&vg).unwrap().damaged.len(), 1, "{what}");
        let lv = format!("after_{what}");
        engine.create_logical_volume(&vg, &spec(&lv)).unwrap();
        let found = lvm.read_vg(&vg).unwrap();
        assert!(found.damaged.is_empty(), "{what}: {:?}", found.damaged);
        assert!(found.stale.is_empty(), "{what}: {:?}", found.stale);
        assert!(found.vg.lv(&lv).is_some() && found.vg.lv("a").is_some());
        loops.vgck(&vg);
    }
    loops.lvm_ok(&["vgremove", "-f", &vg]);
}

/// The daemon's proof that its cached VG is current (`Fingerprint::read`: each PV's
/// label and the header of its area at 4 KiB, in one read) is what a scan and a commit
/// record for the same disks; another commit, or a header scribbled over, makes it
/// differ, so the cached copy is not used.
#[test]
fn the_cache_check_matches_scan_and_commit_and_sees_changes() {
    if !host_tests_enabled("the_cache_check_matches_scan_and_commit_and_sees_changes") {
        return;
    }
    let loops = Loops::new(&[64, 64]);
    let vg = vg_name("fingerprint");
    let lvm = loops.lvmd();
    lvm.vg_create(&vg, &loops.devs, ExtentSize::DEFAULT)
        .unwrap();
    let scanned = lvm.read_vg(&vg).unwrap();
    let recorded = scanned.fingerprint.clone().expect("a whole, clean VG");
    assert_eq!(recorded.0.len(), 2);
    assert_eq!(
        Fingerprint::read(&scanned.devices).as_ref(),
        Some(&recorded)
    );

    let create = Edit::CreateLv(LvSpec {
        name: "a".into(),
        size: Bytes(8 * MIB),
        layout: Layout::Linear,
        tags: vec![],
    });
    let (committed, results) = lvm.edit_group(&vg, &[create], None).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let after_commit = committed.fingerprint.clone().expect("written whole");
    assert_ne!(after_commit, recorded, "the commit moved the area headers");
    assert_eq!(
        Fingerprint::read(&committed.devices).as_ref(),
        Some(&after_commit)
    );

    scribble(&loops.devs[0], 4096, &[0xa5; 64]);
    assert_ne!(
        Fingerprint::read(&committed.devices).as_ref(),
        Some(&after_commit)
    );
}
