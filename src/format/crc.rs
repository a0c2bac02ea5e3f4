//! lvm2's checksum (`lib/misc/crc.c`): the reflected CRC-32 of polynomial 0xEDB88320,
//! started from [`INITIAL_CRC`] and, unlike zlib's crc32, neither inverted on entry nor on
//! exit. Labels, mda headers and metadata texts all use it.

/// The starting value lvm2 uses for every checksum it stores.
pub const INITIAL_CRC: u32 = 0xf597_a6cf;

/// Continues a checksum over `data`. `calc_crc(calc_crc(i, a), b)` equals the checksum of
/// `a` followed by `b`, which is how lvm2 checks a metadata text split by the wrap.
///
/// crc32fast computes the same reflected CRC-32, inverted on entry and on exit, with
/// the CPU's carry-less multiply where there is one (metadata texts reach megabytes and
/// are checksummed on every read and commit); lvm2's form is that with both inversions
/// undone.
pub fn calc_crc(initial: u32, data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(!initial);
    hasher.update(data);
    !hasher.finalize()
}

/// The checksum lvm2 stores for `data`.
pub fn lvm_crc(data: &[u8]) -> u32 {
    calc_crc(INITIAL_CRC, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lvm2's `calc_crc` as `lib/misc/crc.c` defines it, a bit at a time: the
    /// reference the fast one is checked against.
    fn bitwise_crc(initial: u32, data: &[u8]) -> u32 {
        let mut crc = initial;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn agrees_with_the_bitwise_definition() {
        // Lengths around the fast path's block sizes, from several starting values.
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [
            0, 1, 7, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1023, 4096, 5000,
        ] {
            for init in [INITIAL_CRC, 0, !0, 0x1234_5678] {
                assert_eq!(
                    calc_crc(init, &data[..len]),
                    bitwise_crc(init, &data[..len]),
                    "len {len}, init {init:#x}"
                );
            }
        }
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
