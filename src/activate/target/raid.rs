//! `raid` (dm-raid), as far as lvm2 uses it for raid1: `<level> <#params> <chunk>
//! [rebuild N].. [min_recovery_rate R] [max_recovery_rate R] [write_mostly N]..
//! [max_write_behind N] [region_size S] <#legs> (<meta> <data>)..`, in the order of
//! lvm2's `_raid_add_target_line` and libdm's `_raid_emit_segment_line` for dm-raid >=
//! 1.11, which is also the order the kernel prints back.

use super::{DevRef, Kind, ParseError, Words};
use crate::units::Sectors;
use std::fmt;
use std::str::FromStr;

/// One metadata/data pair of a raid set; `None` is `-`, no device (a leg without
/// metadata area, or a missing one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaidLeg {
    pub meta: Option<DevRef>,
    pub data: Option<DevRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raid {
    /// The kernel's raid type: `raid1`.
    pub level: String,
    /// The mandatory chunk size (lvm2 passes the segment's stripe_size: 0 for raid1).
    pub chunk: Sectors,
    /// Leg indexes to rebuild (sub-LVs flagged `REBUILD`).
    pub rebuild: Vec<usize>,
    pub min_recovery_rate: Option<u64>,
    pub max_recovery_rate: Option<u64>,
    /// Leg indexes flagged `WRITEMOSTLY`.
    pub write_mostly: Vec<usize>,
    pub max_write_behind: Option<u64>,
    pub region_size: Option<Sectors>,
    pub legs: Vec<RaidLeg>,
}

impl Raid {
    /// The optional parameters as key/value pairs, in lvm2's order.
    fn options(&self) -> Vec<(&'static str, u64)> {
        let mut opts = Vec::new();
        opts.extend(self.rebuild.iter().map(|&i| ("rebuild", i as u64)));
        opts.extend(self.min_recovery_rate.map(|r| ("min_recovery_rate", r)));
        opts.extend(self.max_recovery_rate.map(|r| ("max_recovery_rate", r)));
        opts.extend(
            self.write_mostly
                .iter()
                .map(|&i| ("write_mostly", i as u64)),
        );
        opts.extend(self.max_write_behind.map(|w| ("max_write_behind", w)));
        opts.extend(self.region_size.map(|r| ("region_size", r.0)));
        opts
    }
}

fn leg_dev(dev: &Option<DevRef>) -> String {
    dev.as_ref()
        .map_or_else(|| "-".to_owned(), DevRef::to_string)
}

impl fmt::Display for Raid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opts = self.options();
        // Every option is a key and a value: the count is of words, the chunk included.
        write!(f, "{} {} {}", self.level, 1 + 2 * opts.len(), self.chunk.0)?;
        for (key, value) in opts {
            write!(f, " {key} {value}")?;
        }
        write!(f, " {}", self.legs.len())?;
        for leg in &self.legs {
            write!(f, " {} {}", leg_dev(&leg.meta), leg_dev(&leg.data))?;
        }
        Ok(())
    }
}

impl FromStr for Raid {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Raid, ParseError> {
        let mut w = Words::new(s);
        let level = w.next_word("raid level")?.to_owned();
        let count: usize = w.next("parameter count")?;
        if count % 2 != 1 {
            return Err(ParseError::new(format!(
                "{count} parameters: lvmd loads a chunk size and key/value pairs"
            )));
        }
        let mut raid = Raid {
            level,
            chunk: w.sectors("chunk size")?,
            rebuild: Vec::new(),
            min_recovery_rate: None,
            max_recovery_rate: None,
            write_mostly: Vec::new(),
            max_write_behind: None,
            region_size: None,
            legs: Vec::new(),
        };
        for _ in 0..count / 2 {
            let key = w.next_word("parameter")?;
            match key {
                "rebuild" => raid.rebuild.push(w.next(key)?),
                "min_recovery_rate" => raid.min_recovery_rate = Some(w.next(key)?),
                "max_recovery_rate" => raid.max_recovery_rate = Some(w.next(key)?),
                "write_mostly" => raid.write_mostly.push(w.next(key)?),
                "max_write_behind" => raid.max_write_behind = Some(w.next(key)?),
                "region_size" => raid.region_size = Some(w.sectors(key)?),
                other => {
                    return Err(ParseError::new(format!(
                        "parameter {other:?}, which lvmd does not load"
                    )))
                }
            }
        }
        let legs: usize = w.next("leg count")?;
        for _ in 0..legs {
            let mut dev = |what| match w.next_word(what)? {
                "-" => Ok(None),
                d => d.parse().map(Some),
            };
            let meta = dev("leg metadata device")?;
            let data = dev("leg data device")?;
            raid.legs.push(RaidLeg { meta, data });
        }
        w.end()?;
        Ok(raid)
    }
}

impl Kind for Raid {
    const TYPE: &'static str = "raid";

    fn refs(&self) -> Vec<&DevRef> {
        self.legs
            .iter()
            .flat_map(|l| [&l.meta, &l.data])
            .flatten()
            .collect()
    }

    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        self.legs
            .iter_mut()
            .flat_map(|l| [&mut l.meta, &mut l.data])
            .flatten()
            .collect()
    }

    // No device ends: the kernel checks each leg is big enough for its part, which the
    // legs' own tables already are.
}
