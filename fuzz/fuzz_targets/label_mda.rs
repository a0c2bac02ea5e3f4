//! Arbitrary bytes as a label area and an mda header: parsing, re-rendering and placing
//! texts must never panic, and whatever parses must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvmd::format::crc::lvm_crc;
use lvmd::format::label::{PvLabel, LABEL_SCAN_BYTES};
use lvmd::format::mda::{MdaHeader, MDA_HEADER_SIZE};
use lvmd::units::Bytes;

fuzz_target!(|data: &[u8]| {
    // The first byte picks what the rest is (bit 0: the label area, or an mda header) and
    // whether to fix the checksums first (bit 1), so that mutations reach past them.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    let reseal = mode & 2 != 0;
    if mode & 1 == 1 {
        if reseal {
            for s in bytes.chunks_exact_mut(512).take(4) {
                let crc = lvm_crc(&s[20..]);
                s[16..20].copy_from_slice(&crc.to_le_bytes());
            }
        }
        label(&bytes);
    } else {
        if reseal && bytes.len() >= 512 {
            let crc = lvm_crc(&bytes[4..512]);
            bytes[..4].copy_from_slice(&crc.to_le_bytes());
        }
        mda(&bytes);
    }
});

fn label(data: &[u8]) {
    if let Ok(Some(label)) = PvLabel::find(data) {
        let sector = label.to_sector();
        let mut area = vec![0u8; LABEL_SCAN_BYTES];
        let at = (label.sector * 512) as usize;
        area[at..at + 512].copy_from_slice(&sector);
        assert_eq!(PvLabel::find(&area).unwrap(), Some(label));
    }
}

fn mda(data: &[u8]) {
    // The mda header: the start it claims (bytes 24..32) so that parsing gets past that
    // check; the bytes after the header are lengths of texts to commit.
    if data.len() < MDA_HEADER_SIZE as usize {
        return;
    }
    let (hdr, rest) = data.split_at(MDA_HEADER_SIZE as usize);
    let start = Bytes(u64::from_le_bytes(hdr[24..32].try_into().unwrap()));
    let _ = MdaHeader::parse(hdr, Bytes(start.0.wrapping_add(1)));
    let Ok(mut h) = MdaHeader::parse(hdr, start) else {
        return;
    };
    assert_eq!(MdaHeader::parse(&h.to_bytes(), start).unwrap(), h);
    let _ = h.precommitted_text();
    let _ = h.committed_text();
    for len in rest.chunks(3) {
        let len = len.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
        let live = h.live_text();
        let Ok(loc) = h.next_text_location(len) else {
            continue;
        };
        // Inside the buffer, and clear of the live text.
        let spans: Vec<(u64, u64)> = loc.ranges().map(|r| (r.start.0, r.end().0)).collect();
        for &(a, b) in &spans {
            assert!(a >= h.start.0 + MDA_HEADER_SIZE && b <= h.end().0 && a < b);
        }
        if let Some(live) = live {
            for r in live.ranges() {
                for &(a, b) in &spans {
                    assert!(
                        b <= r.start.0 || r.end().0 <= a,
                        "{loc:?} overlaps {live:?}"
                    );
                }
            }
        }
        let pre = h.with_precommitted_text(&loc);
        assert_eq!(pre.precommitted_text(), Some(loc));
        h = pre.with_live_text(&loc);
        if !h.is_ignored() {
            assert_eq!(h.live_text(), Some(loc));
        }
        assert_eq!(MdaHeader::parse(&h.to_bytes(), start).unwrap(), h);
    }
}
