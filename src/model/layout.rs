//! How an LV's extents are laid out: the one description every layer uses, from the
//! API edge (which translates its wire enum once) down to the VG edits, with the one
//! rounding rule and the one set of checks.
//!
//! New layouts (raid1, thin) are added here first; the allocator only sees the part of
//! a layout that decides placement ([`Layout::shape`]).

use super::{LogicalVolume, SegmentKind};
use crate::alloc::Shape;
use crate::units::{human_bytes, Bytes, ExtentSize, Extents, Sectors};
use std::fmt;

/// The smallest stripe size lvm2 accepts (one 4 KiB page).
pub const MIN_STRIPE_SIZE: Sectors = Sectors(8);
/// lvm2's default stripe size (64 KiB).
pub const DEFAULT_STRIPE_SIZE: Sectors = Sectors(128);
/// lvm2's default raid region size (`activation/raid_region_size`, 2 MiB): the unit
/// dm-raid tracks as in sync or not.
pub const DEFAULT_REGION_SIZE: Sectors = Sectors(4096);
/// lvm2's limit on raid1 images (`DEFAULT_RAID1_MAX_IMAGES`).
pub const MAX_RAID1_LEGS: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Linear,
    /// `stripes` runs of equal length on distinct PVs, interleaved in `stripe_size`
    /// chunks.
    Striped {
        stripes: u32,
        stripe_size: Sectors,
    },
    /// `mirrors + 1` copies of the data (lvm2's `--type raid1 -m mirrors`), each leg on a
    /// PV of its own with a one-extent metadata area beside it, kept in step by dm-raid
    /// in regions of `region_size`. With `integrity` each copy has dm-integrity under it
    /// (lvm2's `--raidintegrity y`): a checksum per block, kept on a metadata sub-LV of
    /// its own beside the copy ([`integrity_meta_extents`]), so a block that one copy
    /// returns damaged is read from another.
    Raid1 {
        mirrors: u32,
        region_size: Sectors,
        integrity: bool,
    },
    /// A volume of a thin pool (lvm2's `--type thin`): its blocks are the pool's,
    /// provisioned on first write, none of them on PV extents of its own. Which pool is
    /// the device class's ([`crate::daemon::config::ThinPoolConfig`]).
    Thin,
}

/// A layout no volume can have (before any VG is looked at) or one this VG cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value}: {why}")]
pub struct LayoutError {
    pub what: &'static str,
    pub value: String,
    pub why: String,
}

impl Layout {
    /// A striped layout from a stripe size in bytes, as requests carry it. The size must
    /// be a whole number of sectors; the other rules are [`Layout::check`]'s.
    pub fn striped(stripes: u32, stripe_size: Bytes) -> Result<Layout, LayoutError> {
        let stripe_size = stripe_size.to_sectors_exact().ok_or_else(|| LayoutError {
            what: "stripe size",
            value: stripe_size.0.to_string(),
            why: "must be a power of two of at least 4KiB".into(),
        })?;
        Ok(Layout::Striped {
            stripes,
            stripe_size,
        })
    }

    /// The layout of a plain LV: its last segment's, as lvm2 extends with it.
    pub fn of(lv: &LogicalVolume) -> Layout {
        match lv.segments.last().map(|s| &s.kind) {
            Some(SegmentKind::Striped {
                stripe_size: Some(ss),
                stripes,
            }) if stripes.len() > 1 => Layout::Striped {
                stripes: stripes.len() as u32,
                stripe_size: *ss,
            },
            Some(SegmentKind::Raid1 { region_size, legs }) => Layout::Raid1 {
                mirrors: (legs.len() as u32).saturating_sub(1),
                region_size: region_size.unwrap_or(DEFAULT_REGION_SIZE),
                integrity: false,
            },
            Some(SegmentKind::Thin { .. }) => Layout::Thin,
            _ => Layout::Linear,
        }
    }

    /// [`Layout::of`], and for raid1 whether its images have dm-integrity under them
    /// (lvm2's `--raidintegrity`: each image an integrity layer), which only the VG's
    /// sub-LVs tell.
    pub fn of_in(vg: &super::VolumeGroup, lv: &LogicalVolume) -> Layout {
        match Layout::of(lv) {
            Layout::Raid1 {
                mirrors,
                region_size,
                ..
            } => {
                let integrity = lv.segments.iter().any(|s| match &s.kind {
                    SegmentKind::Raid1 { legs, .. } => legs.iter().any(|(_, image)| {
                        vg.lv(image).is_some_and(|i| i.integrity_layer().is_some())
                    }),
                    _ => false,
                });
                Layout::Raid1 {
                    mirrors,
                    region_size,
                    integrity,
                }
            }
            other => other,
        }
    }

    /// Runs the extents are spread over side by side (1 for linear and mirrors, whose
    /// legs are copies).
    pub fn stripes(self) -> u32 {
        match self {
            Layout::Linear | Layout::Raid1 { .. } | Layout::Thin => 1,
            Layout::Striped { stripes, .. } => stripes,
        }
    }

    /// Copies of the data (1 but for mirrors).
    pub fn copies(self) -> u32 {
        match self {
            Layout::Raid1 { mirrors, .. } => mirrors + 1,
            _ => 1,
        }
    }

    /// What the allocator needs to know to place the extents. A thin volume takes none
    /// (its pool's were placed when the pool was made); its one run is the pool's.
    pub fn shape(self) -> Shape {
        match self {
            Layout::Linear | Layout::Thin => Shape::Linear,
            Layout::Striped { stripes, .. } => Shape::Striped { stripes },
            Layout::Raid1 { mirrors, .. } => Shape::Mirrored { legs: mirrors + 1 },
        }
    }

    /// The rules that hold whatever the VG: at least 2 stripes, a stripe size that is a
    /// power of two of at least 4 KiB (lvm2's).
    pub fn check(self) -> Result<(), LayoutError> {
        if let Layout::Striped {
            stripes,
            stripe_size,
        } = self
        {
            if stripes < 2 {
                return Err(LayoutError {
                    what: "stripe count",
                    value: stripes.to_string(),
                    why: "striping needs at least 2 stripes (use linear for 1)".into(),
                });
            }
            if stripe_size < MIN_STRIPE_SIZE || !stripe_size.0.is_power_of_two() {
                return Err(LayoutError {
                    what: "stripe size",
                    value: stripe_size.to_bytes().0.to_string(),
                    why: "must be a power of two of at least 4KiB".into(),
                });
            }
        }
        if let Layout::Raid1 {
            mirrors,
            region_size,
            ..
        } = self
        {
            if mirrors == 0 || mirrors >= MAX_RAID1_LEGS {
                return Err(LayoutError {
                    what: "mirror count",
                    value: mirrors.to_string(),
                    why: format!(
                        "raid1 needs 1 to {} mirrors (legs besides the first)",
                        MAX_RAID1_LEGS - 1
                    ),
                });
            }
            if region_size < MIN_STRIPE_SIZE || !region_size.0.is_power_of_two() {
                return Err(LayoutError {
                    what: "region size",
                    value: region_size.to_bytes().0.to_string(),
                    why: "must be a power of two of at least 4KiB".into(),
                });
            }
        }
        Ok(())
    }

    /// [`Layout::check`], and what a VG with this extent size adds: a stripe is at most
    /// one extent.
    pub fn check_for(self, vg: &str, extent_size: ExtentSize) -> Result<(), LayoutError> {
        self.check()?;
        if let Layout::Striped { stripe_size, .. } = self {
            if stripe_size > extent_size.sectors() {
                return Err(LayoutError {
                    what: "stripe size",
                    value: stripe_size.to_bytes().0.to_string(),
                    why: format!(
                        "must not exceed the extent size of {vg} ({})",
                        human_bytes(extent_size.bytes())
                    ),
                });
            }
        }
        Ok(())
    }

    /// The extents a volume of `size` takes, as lvm2 rounds (see [`size_step`]).
    pub fn extents_for(self, size: Bytes, extent_size: ExtentSize) -> Extents {
        Extents(self.rounded_size(size, extent_size).0 / extent_size.bytes().0)
    }

    /// The extents a volume of `size` takes from the VG in all: every copy, and for
    /// raid1 each leg's one-extent metadata area (and with integrity each leg's
    /// integrity metadata, [`integrity_meta_extents`]).
    pub fn footprint(self, size: Bytes, extent_size: ExtentSize) -> Extents {
        Extents(
            self.per_copy(size, extent_size)
                .0
                .saturating_mul(u64::from(self.copies())),
        )
    }

    /// The extents one copy of a volume of `size` takes, on one PV for a mirror's leg:
    /// its data, and for raid1 the leg's metadata areas.
    pub fn per_copy(self, size: Bytes, extent_size: ExtentSize) -> Extents {
        let data = self.extents_for(size, extent_size);
        let meta = match self {
            Layout::Raid1 { integrity, .. } => {
                let imeta = if integrity {
                    integrity_meta_extents(data, extent_size).0
                } else {
                    0
                };
                1 + imeta
            }
            // Its blocks are the pool's.
            Layout::Thin => return Extents::ZERO,
            _ => 0,
        };
        Extents(data.0 + meta)
    }

    /// Whether copies carry dm-integrity (a raid1 layout's `integrity`).
    pub fn integrity(self) -> bool {
        matches!(
            self,
            Layout::Raid1 {
                integrity: true,
                ..
            }
        )
    }

    /// The size a request for `size` gets.
    pub fn rounded_size(self, size: Bytes, extent_size: ExtentSize) -> Bytes {
        round_up(size, size_step(self.stripes(), extent_size.bytes()))
    }
}

/// The extents of the dm-integrity metadata sub-LV (`<image>_imeta`) of a raid image of
/// `data` extents, as lvm2 sizes it (`_lv_size_bytes_to_integrity_meta_bytes`, found by
/// its authors by trial): 4 MiB per started 500 MiB of data, plus room for the journal
/// (4 MiB up to 512 MiB of data, 8 MiB up to 1 GiB, 32 MiB up to 4 GiB, 64 MiB above),
/// in whole extents rounded down as lvm2 rounds, and at least one (as lvm2 takes since
/// it grows them; 2.03.16's lvcreate failed on a VG whose extents are larger).
pub fn integrity_meta_extents(data: Extents, extent_size: ExtentSize) -> Extents {
    const MIB: u64 = 1 << 20;
    let bytes = extent_size.span(data).to_bytes().0;
    let tags = (bytes / (500 * MIB) + 1) * 4 * MIB;
    let journal = match bytes {
        b if b <= 512 * MIB => 4 * MIB,
        b if b <= 1024 * MIB => 8 * MIB,
        b if b <= 4096 * MIB => 32 * MIB,
        _ => 64 * MIB,
    };
    Extents(((tags + journal) / extent_size.bytes().0).max(1))
}

/// The most data extents a raid image with integrity can have when its leg may take
/// `per_leg` extents on its PV: its data, one raid metadata extent and its integrity
/// metadata must all fit.
pub fn largest_integrity_data(per_leg: Extents, extent_size: ExtentSize) -> Extents {
    let fits = |d: u64| d + 1 + integrity_meta_extents(Extents(d), extent_size).0 <= per_leg.0;
    if !fits(1) {
        return Extents::ZERO;
    }
    // The leg's need grows with its data: the largest that fits, by bisection
    // (`lo` fits, nothing above `hi` does).
    let (mut lo, mut hi) = (1, per_leg.0);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Extents(lo)
}

/// The step volume sizes come in: one extent on every stripe. lvm2 rounds a size up to
/// whole extents, then up to a whole number of extents per stripe, which is rounding up
/// to this step: the one rounding rule, also for clients that know only a class's
/// extent size and stripes (the CSI controller).
pub fn size_step(stripes: u32, extent_size: Bytes) -> Bytes {
    Bytes(extent_size.0.saturating_mul(u64::from(stripes.max(1))))
}

/// `size` rounded up to a multiple of `step` (a zero step leaves it as it is).
pub fn round_up(size: Bytes, step: Bytes) -> Bytes {
    if step.0 == 0 {
        return size;
    }
    Bytes(size.0.div_ceil(step.0).saturating_mul(step.0))
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::Linear => f.write_str("linear"),
            Layout::Striped {
                stripes,
                stripe_size,
            } => write!(
                f,
                "striped ({stripes} stripes of {})",
                human_bytes(stripe_size.to_bytes())
            ),
            Layout::Raid1 {
                mirrors, integrity, ..
            } => write!(
                f,
                "raid1 ({} legs{})",
                mirrors + 1,
                if *integrity { ", with integrity" } else { "" }
            ),
            Layout::Thin => f.write_str("thin"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn rounding_matches_lvm2() {
        let es = ExtentSize::DEFAULT;
        assert_eq!(Layout::Linear.rounded_size(Bytes(1), es), Bytes(4 * MIB));
        assert_eq!(
            Layout::Linear.rounded_size(Bytes(4 * MIB), es),
            Bytes(4 * MIB)
        );
        let striped = Layout::Striped {
            stripes: 3,
            stripe_size: DEFAULT_STRIPE_SIZE,
        };
        // 5 extents round up to 6 for 3 stripes (lvm2: "Rounding size ... up to stripe
        // boundary size").
        assert_eq!(striped.rounded_size(Bytes(17 * MIB), es), Bytes(24 * MIB));
        assert_eq!(striped.extents_for(Bytes(12 * MIB), es), Extents(3));
        // Whole extents first, then whole stripes: the same as one step of 3 extents.
        for mib in 1..40 {
            let e = es.extents_ceil(Bytes(mib * MIB).to_sectors_ceil()).0;
            let want = e.div_ceil(3) * 3;
            assert_eq!(striped.extents_for(Bytes(mib * MIB), es), Extents(want));
        }
        assert_eq!(round_up(Bytes(5), Bytes(0)), Bytes(5));
    }

    #[test]
    fn checks_name_the_offending_value() {
        let bad = |stripes, ss: u64| Layout::striped(stripes, Bytes(ss)).and_then(|l| l.check());
        assert_eq!(bad(1, 65536).unwrap_err().what, "stripe count");
        assert_eq!(bad(2, 2048).unwrap_err().value, "2048");
        assert_eq!(bad(2, 3 << 12).unwrap_err().what, "stripe size");
        // Not a whole number of sectors: refused at translation, not truncated.
        assert_eq!(bad(2, 4097).unwrap_err().value, "4097");
        assert!(bad(2, 4096).is_ok());
        let big = Layout::striped(2, Bytes(8 * MIB)).unwrap();
        assert!(big.check().is_ok());
        let e = big.check_for("vg", ExtentSize::DEFAULT).unwrap_err();
        assert!(e.why.contains("extent size of vg"), "{e}");
    }

    #[test]
    fn a_mirror_takes_every_copy_and_its_metadata() {
        let es = ExtentSize::DEFAULT;
        let m = Layout::Raid1 {
            mirrors: 2,
            region_size: DEFAULT_REGION_SIZE,
            integrity: false,
        };
        assert_eq!(m.rounded_size(Bytes(5 * MIB), es), Bytes(8 * MIB));
        // 3 copies of 2 extents, and 3 metadata extents.
        assert_eq!(m.footprint(Bytes(5 * MIB), es), Extents(9));
        assert_eq!(Layout::Linear.footprint(Bytes(5 * MIB), es), Extents(2));
        let one = Layout::Raid1 {
            mirrors: 0,
            region_size: DEFAULT_REGION_SIZE,
            integrity: false,
        };
        assert_eq!(one.check().unwrap_err().what, "mirror count");
        let odd = Layout::Raid1 {
            mirrors: 1,
            region_size: Sectors(3000),
            integrity: false,
        };
        assert_eq!(odd.check().unwrap_err().what, "region size");
    }

    /// lvm2's `_imeta` sizes: 8 MiB of data got 2 extents (tests/fixtures/lvm2/
    /// raid1-integrity), and the steps of its formula on either side of each bound.
    #[test]
    fn integrity_metadata_is_sized_as_lvm2_sizes_it() {
        let es = ExtentSize::DEFAULT;
        let imeta = |data_mib: u64| integrity_meta_extents(Extents(data_mib / 4), es).0;
        assert_eq!(imeta(8), 2);
        // 4 MiB per started 500 MiB, plus the journal's 4, 8, 32 or 64 MiB.
        assert_eq!(imeta(496), 2);
        assert_eq!(imeta(512), 3);
        assert_eq!(imeta(516), 4);
        assert_eq!(imeta(1024), 5);
        assert_eq!(imeta(1028), 11);
        assert_eq!(imeta(4096), 17);
        assert_eq!(imeta(4100), 25);
        // Extents larger than lvm2's result: one extent, not none.
        let big = ExtentSize::new(Sectors(65536)).unwrap();
        assert_eq!(integrity_meta_extents(Extents(1), big), Extents(1));
        let m = Layout::Raid1 {
            mirrors: 1,
            region_size: DEFAULT_REGION_SIZE,
            integrity: true,
        };
        // Per leg: 2 data, 1 raid metadata, 2 integrity metadata.
        assert_eq!(m.per_copy(Bytes(8 * MIB), es), Extents(5));
        assert_eq!(m.footprint(Bytes(8 * MIB), es), Extents(10));
        assert!(m.integrity() && !Layout::Linear.integrity());
        // A 15-extent PV per leg: 12 of data (with 1 + 2 beside it), not 13.
        assert_eq!(largest_integrity_data(Extents(15), es), Extents(12));
        assert_eq!(largest_integrity_data(Extents(3), es), Extents(0));
        assert_eq!(largest_integrity_data(Extents(4), es), Extents(1));
        for leg in [5u64, 100, 140, 1000, 5000] {
            let d = largest_integrity_data(Extents(leg), es).0;
            let need = |d: u64| d + 1 + integrity_meta_extents(Extents(d), es).0;
            assert!(need(d) <= leg && need(d + 1) > leg, "{leg}: {d}");
        }
    }

    #[test]
    fn linear_is_one_stripe() {
        assert_eq!(Layout::Linear.stripes(), 1);
        assert_eq!(Layout::Linear.shape(), Shape::Linear);
        assert!(Layout::Linear.check().is_ok());
    }
}
