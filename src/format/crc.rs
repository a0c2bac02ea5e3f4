//! lvm2's checksum (`lib/misc/crc.c`): the reflected CRC-32 of polynomial 0xEDB88320,
//! started from [`INITIAL_CRC`] and, unlike zlib's crc32, neither inverted on entry nor on
//! exit. Labels, mda headers and metadata texts all use it.

/// The starting value lvm2 uses for every checksum it stores.
pub const INITIAL_CRC: u32 = 0xf597_a6cf;

const POLY: u32 = 0xedb8_8320;

/// The byte-at-a-time table, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Continues a checksum over `data`. `calc_crc(calc_crc(i, a), b)` equals the checksum of
/// `a` followed by `b`, which is how lvm2 checks a metadata text split by the wrap.
pub fn calc_crc(initial: u32, data: &[u8]) -> u32 {
    data.iter().fold(initial, |crc, &b| {
        TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// The checksum lvm2 stores for `data`.
pub fn lvm_crc(data: &[u8]) -> u32 {
    calc_crc(INITIAL_CRC, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_published_crc32_table() {
        // Spot checks against the well-known CRC-32 table.
        assert_eq!(TABLE[0], 0);
        assert_eq!(TABLE[1], 0x7707_3096);
        assert_eq!(TABLE[128], 0xedb8_8320);
        assert_eq!(TABLE[255], 0x2d02_ef8d);
    }

    #[test]
    fn relates_to_standard_crc32() {
        // zlib's crc32("123456789") is 0xCBF43926 = !calc(!0, data).
        assert_eq!(!calc_crc(!0, b"123456789"), 0xcbf4_3926);
        assert_eq!(lvm_crc(b""), INITIAL_CRC);
    }

    #[test]
    fn chains_over_pieces() {
        let data = b"vg0 {\nid = \"x\"\n}\n\0";
        for cut in 0..data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(calc_crc(lvm_crc(a), b), lvm_crc(data));
        }
    }

    #[test]
    fn real_label_crc() {
        // The label sector lvm2 2.03.16 wrote on a test PV (see tests/fixtures/format).
        let sector = crate::format::test_fixtures::label_sector();
        let stored = u32::from_le_bytes(sector[16..20].try_into().unwrap());
        assert_eq!(lvm_crc(&sector[20..512]), stored);
    }
}
