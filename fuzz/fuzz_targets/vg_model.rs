//! Any metadata text, however odd, is read into the VG model or refused, never a panic;
//! what the model accepts survives a write and a re-read unchanged, and the checks run
//! on every VG read (usage, problems, free space) never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvmd::format::text::{parse, write_document, Layout};
use lvmd::model::VolumeGroup;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = parse(s) else {
        return;
    };
    let Ok((vg, header)) = VolumeGroup::from_document(&doc) else {
        return;
    };
    let _ = vg.problems();
    let _ = vg.free_extents();
    let text = write_document(&vg.to_document(&header, false), Layout::Disk);
    let (again, _) = VolumeGroup::from_document(&parse(&text).expect("own output parses"))
        .expect("own output reads");
    assert_eq!(again, vg);
});
