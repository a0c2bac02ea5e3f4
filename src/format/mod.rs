//! LVM2's on-disk structures, parsed from and rendered to bytes. Nothing here does I/O.

pub mod crc;
pub mod label;
pub mod mda;
pub mod text;

/// Bytes lvm2 2.03.16 wrote, made by `tests/fixtures/format/make-fixtures.sh` (its README
/// says how).
#[cfg(test)]
pub(crate) mod test_fixtures {
    /// The first 4 KiB of a 64 MiB PV holding VG `vgfmt` (label in sector 1).
    pub fn first_4k() -> &'static [u8] {
        include_bytes!("../../tests/fixtures/format/pv.first4k.bin")
    }
    pub const PV_UUID: &str = "cL6AhA-gF3e-xBgT-U64g-Cw8B-InUb-Mwnbzk";
    /// That PV's metadata area from its header (at 4096) to the end of the live text.
    pub fn mda_region() -> &'static [u8] {
        include_bytes!("../../tests/fixtures/format/pv.mda.bin")
    }
    /// Where the live text is, relative to the area (vgcreate + 3 lvcreate).
    pub const LIVE_OFFSET: u64 = 4608;
    pub fn label_sector() -> &'static [u8] {
        &first_4k()[512..1024]
    }
    /// A PV made with `--pvmetadatacopies 2`.
    pub fn mda2_first_4k() -> &'static [u8] {
        include_bytes!("../../tests/fixtures/format/pv2.first4k.bin")
    }
    /// Its second metadata area, from the header to the end of the live text.
    pub fn mda2_region() -> &'static [u8] {
        include_bytes!("../../tests/fixtures/format/pv2.mda2.bin")
    }
    pub const MDA2_START: u64 = (64 << 20) - (1 << 20);
    /// A whole 32 KiB metadata area (at 4096) whose live text wraps.
    pub fn wrapped_mda() -> &'static [u8] {
        include_bytes!("../../tests/fixtures/format/pvw.mda.bin")
    }
}
