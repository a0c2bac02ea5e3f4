//! Whatever the metadata text parser accepts must come back the same after writing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(doc) = lvmd::format::text::parse(s) {
            let out = lvmd::format::text::write_document(&doc, lvmd::format::text::Layout::Disk);
            assert_eq!(lvmd::format::text::parse(&out).unwrap(), doc);
        }
    }
});
