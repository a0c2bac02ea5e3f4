//! `integrity`: dm-integrity, a checksum (tag) per block of a data device, the tags and
//! a journal on a separate metadata device; lvm2's `--raidintegrity` puts one under
//! each raid image (`<image>_iorig` data, `<image>_imeta` metadata).
//!
//! lvm2 loads `<data> 0 <tag size> <mode> <n> fix_padding block_size:<bytes>
//! internal_hash:<alg> meta_device:<dev> [recalculate]` (libdm's order), with a tuning
//! option only when the metadata sets it. The kernel reports another text for the
//! same device: its own values of every tuning option, `meta_device` first,
//! `block_size` only when it is not 512, no `fix_padding` (kept in the superblock
//! the first load formatted), and `recalculate` for as long as the superblock says
//! a recalculation ran. So both texts parse, and two tables are the same device when
//! what lvm2 chooses agrees (see [`PartialEq`]).

use super::{DevRef, Kind, ParseError, Words};
use crate::units::Sectors;
use std::fmt;
use std::str::FromStr;

/// The tuning options lvm2 passes only when set in the metadata (and the kernel always
/// reports), in libdm's order.
pub const TUNING: &[&str] = &[
    "journal_sectors",
    "interleave_sectors",
    "buffer_sectors",
    "journal_watermark",
    "commit_time",
    "bitmap_flush_interval",
    "sectors_per_bit",
];

#[derive(Debug, Clone, Eq)]
pub struct Integrity {
    pub device: DevRef,
    pub offset: Sectors,
    /// Bytes of checksum per block.
    pub tag_size: u32,
    /// `J` journal, `B` bitmap, `D` direct, `R` recovery (read-only).
    pub mode: char,
    /// Bytes per checksummed block (512 to 4096).
    pub block_size: u32,
    pub internal_hash: String,
    pub meta_device: Option<DevRef>,
    /// Compute the tags of data written before them (a new device's first load).
    pub recalculate: bool,
    pub fix_padding: bool,
    pub allow_discards: bool,
    /// Tuning options (one of [`TUNING`]) and their values.
    pub tuning: Vec<(String, u64)>,
}

impl Integrity {
    fn option_count(&self) -> usize {
        // fix_padding, block_size, internal_hash always (lvm2's habit).
        3 + usize::from(self.meta_device.is_some())
            + usize::from(self.recalculate)
            + usize::from(self.allow_discards)
            + self.tuning.len()
    }

    fn tuned(&self, key: &str) -> Option<u64> {
        self.tuning.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    #[cfg(test)]
    pub fn tuned_for_test(&self, key: &str) -> Option<u64> {
        self.tuned(key)
    }
}

/// The same device: data and metadata devices, offset, tag size, mode, block size,
/// hash and discards agree, and so does each tuning option both name. `recalculate` is
/// an order taken at load time (the superblock keeps the recalculation's progress),
/// `fix_padding` is recorded in the superblock when the first load formats it, and a
/// tuning option only one side names is the kernel reporting its own default.
impl PartialEq for Integrity {
    fn eq(&self, other: &Integrity) -> bool {
        self.device == other.device
            && self.offset == other.offset
            && self.tag_size == other.tag_size
            && self.mode == other.mode
            && self.block_size == other.block_size
            && self.internal_hash == other.internal_hash
            && self.meta_device == other.meta_device
            && self.allow_discards == other.allow_discards
            && TUNING
                .iter()
                .all(|k| match (self.tuned(k), other.tuned(k)) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                })
    }
}

impl fmt::Display for Integrity {
    /// libdm's text (what lvm2 loads).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}",
            self.device,
            self.offset.0,
            self.tag_size,
            self.mode,
            self.option_count()
        )?;
        if self.fix_padding {
            write!(f, " fix_padding")?;
        }
        write!(
            f,
            " block_size:{} internal_hash:{}",
            self.block_size, self.internal_hash
        )?;
        if let Some(m) = &self.meta_device {
            write!(f, " meta_device:{m}")?;
        }
        if self.recalculate {
            write!(f, " recalculate")?;
        }
        for k in TUNING {
            if let Some(v) = self.tuned(k) {
                write!(f, " {k}:{v}")?;
            }
        }
        if self.allow_discards {
            write!(f, " allow_discards")?;
        }
        Ok(())
    }
}

impl FromStr for Integrity {
    type Err = ParseError;
    /// lvm2's text or the kernel's; options in any order, each known.
    fn from_str(s: &str) -> Result<Integrity, ParseError> {
        let mut w = Words::new(s);
        let mut t = Integrity {
            device: w.dev("data device")?,
            offset: w.sectors("offset")?,
            tag_size: w.next("tag size")?,
            mode: w.next("mode")?,
            block_size: 512,
            internal_hash: String::new(),
            meta_device: None,
            recalculate: false,
            fix_padding: false,
            allow_discards: false,
            tuning: Vec::new(),
        };
        if !"JBDR".contains(t.mode) {
            return Err(ParseError::new(format!("mode {:?} is unknown", t.mode)));
        }
        let count: usize = w.next("option count")?;
        for _ in 0..count {
            let word = w.next_word("option")?;
            let (key, value) = word.split_once(':').unwrap_or((word, ""));
            let num = || {
                value
                    .parse::<u64>()
                    .map_err(|_| ParseError::new(format!("option {word:?} is not a number")))
            };
            match key {
                "fix_padding" => t.fix_padding = true,
                "recalculate" => t.recalculate = true,
                "allow_discards" => t.allow_discards = true,
                "block_size" => {
                    t.block_size = u32::try_from(num()?)
                        .map_err(|_| ParseError::new(format!("option {word:?} too large")))?
                }
                "internal_hash" if !value.is_empty() => t.internal_hash = value.into(),
                "meta_device" => t.meta_device = Some(value.parse()?),
                k if TUNING.contains(&k) => t.tuning.push((k.into(), num()?)),
                _ => {
                    return Err(ParseError::new(format!(
                        "option {word:?}, which lvmd does not load"
                    )))
                }
            }
        }
        w.end()?;
        if t.internal_hash.is_empty() {
            return Err(ParseError::new(
                "no internal_hash: lvmd loads only what lvm2 makes (an internal hash)",
            ));
        }
        Ok(t)
    }
}

impl Kind for Integrity {
    const TYPE: &'static str = "integrity";
    /// The kernel's text differs from the loaded one (see the module).
    const KERNEL_TEXT_IS_LOADED: bool = false;

    fn refs(&self) -> Vec<&DevRef> {
        std::iter::once(&self.device)
            .chain(self.meta_device.as_ref())
            .collect()
    }

    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        std::iter::once(&mut self.device)
            .chain(self.meta_device.as_mut())
            .collect()
    }
}

/// dm-integrity's status: `<mismatches> <provided data sectors> <recalculated up to
/// | ->`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityStatus {
    /// Blocks whose checksum did not match, since the device was loaded.
    pub mismatches: u64,
    pub data_sectors: Sectors,
    /// How far the tags were recalculated; `None` when no recalculation runs.
    pub recalculated: Option<Sectors>,
}

impl FromStr for IntegrityStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<IntegrityStatus, ParseError> {
        let mut w = Words::new(s);
        let mismatches = w.next("mismatch count")?;
        let data_sectors = w.sectors("data sectors")?;
        let recalculated = match w.next_word("recalculation")? {
            "-" => None,
            n => Some(Sectors(n.parse().map_err(|_| {
                ParseError::new(format!("recalculation {n:?} is not a number"))
            })?)),
        };
        w.end()?;
        Ok(IntegrityStatus {
            mismatches,
            data_sectors,
            recalculated,
        })
    }
}
