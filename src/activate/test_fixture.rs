//! The lvm2-made fixtures (`tests/fixtures/lvm2/`) for the planners' tests, `mixed`
//! above all.

use super::target::DevNum;
use crate::format::text;
use crate::model::VolumeGroup;
use crate::uuid::Uuid;
use std::collections::BTreeMap;
use std::path::Path;

/// A file of the `mixed` fixture.
pub fn read(name: &str) -> String {
    read_fixture("mixed", name)
}

/// A file of the fixture `fixture`.
pub fn read_fixture(fixture: &str, name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lvm2");
    std::fs::read_to_string(dir.join(fixture).join(name)).unwrap()
}

pub fn vg_from_text(metadata: &str) -> VolumeGroup {
    let doc = text::parse(metadata).unwrap();
    VolumeGroup::from_document(&doc).unwrap().0
}

/// The fixture VG `lvmd_mixed` with the device numbers its PVs had in the VM where lvm2
/// activated it: `/dev/vda`.. are virtio disks 254:0, 254:16, ... (fixture README).
pub fn mixed() -> (VolumeGroup, BTreeMap<Uuid, DevNum>) {
    let vg = vg_from_text(&read("vgcfgbackup.txt"));
    let mut devices = BTreeMap::new();
    for line in read("manifest.tsv").lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields[0] != "pv" {
            continue;
        }
        let uuid: Uuid = fields[4].parse().unwrap();
        let disk = fields[5].strip_prefix("/dev/vd").unwrap().as_bytes()[0];
        devices.insert(
            uuid,
            DevNum {
                major: 254,
                minor: 16 * u32::from(disk - b'a'),
            },
        );
    }
    assert_eq!(devices.len(), 3);
    (vg, devices)
}
