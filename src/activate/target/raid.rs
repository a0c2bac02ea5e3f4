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

/// One leg's state in dm-raid's status (its health character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegHealth {
    /// `A`: alive and in sync.
    InSync,
    /// `a`: alive, not yet in sync (a resync or recovery is copying onto it).
    Syncing,
    /// `D`: dead, failed: dm-raid no longer reads or writes it.
    Dead,
    /// `-`: no device in this slot (activated without it, `- -` in the table).
    Absent,
}

/// What sync_action dm-raid reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncAction {
    Idle,
    Frozen,
    Resync,
    Recover,
    Check,
    Repair,
    Reshape,
    /// `undef`: the kernel has no sync thread (e.g. a set that cannot run).
    Undefined,
}

impl SyncAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncAction::Idle => "idle",
            SyncAction::Frozen => "frozen",
            SyncAction::Resync => "resync",
            SyncAction::Recover => "recover",
            SyncAction::Check => "check",
            SyncAction::Repair => "repair",
            SyncAction::Reshape => "reshape",
            SyncAction::Undefined => "undef",
        }
    }
}

impl FromStr for SyncAction {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<SyncAction, ParseError> {
        Ok(match s {
            "idle" => SyncAction::Idle,
            "frozen" => SyncAction::Frozen,
            "resync" => SyncAction::Resync,
            "recover" => SyncAction::Recover,
            "check" => SyncAction::Check,
            "repair" => SyncAction::Repair,
            "reshape" => SyncAction::Reshape,
            "undef" => SyncAction::Undefined,
            other => return Err(ParseError::new(format!("sync action {other:?} is unknown"))),
        })
    }
}

/// dm-raid's status line (`dmsetup status` after the target name), as the kernel's
/// `raid_status` prints it for STATUSTYPE_INFO: `<level> <#devs> <health chars>
/// <synced>/<total> <sync_action> <mismatch_cnt>`, then (dm-raid >= 1.9) `<data_offset>`
/// and (>= 1.13) a journal character, both ignored for raid1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaidStatus {
    pub level: String,
    pub legs: Vec<LegHealth>,
    /// Sectors of the array in sync (or checked), of `total`.
    pub synced: Sectors,
    pub total: Sectors,
    pub action: SyncAction,
    /// Mismatches the last check or repair counted.
    pub mismatches: u64,
}

impl RaidStatus {
    /// In sync, in hundredths of a percent as lvm2 rounds `sync_percent` (down, so
    /// 100.00 only when every region is): `None` for an empty array.
    pub fn sync_basis_points(&self) -> Option<u32> {
        if self.total.0 == 0 {
            return None;
        }
        let done = self.synced.0.min(self.total.0) as u128;
        Some((done * 10_000 / self.total.0 as u128) as u32)
    }

    /// The legs the kernel has failed (`D`), by index.
    pub fn dead_legs(&self) -> Vec<usize> {
        self.legs
            .iter()
            .enumerate()
            .filter(|(_, h)| **h == LegHealth::Dead)
            .map(|(i, _)| i)
            .collect()
    }
}

impl FromStr for RaidStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<RaidStatus, ParseError> {
        let mut w = Words::new(s);
        let level = w.next_word("raid level")?.to_owned();
        let count: usize = w.next("device count")?;
        let chars = w.next_word("health characters")?;
        if chars.len() != count {
            return Err(ParseError::new(format!(
                "{count} devices but health {chars:?}"
            )));
        }
        let legs = chars
            .chars()
            .map(|c| match c {
                'A' => Ok(LegHealth::InSync),
                'a' => Ok(LegHealth::Syncing),
                'D' => Ok(LegHealth::Dead),
                '-' => Ok(LegHealth::Absent),
                other => Err(ParseError::new(format!("health character {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ratio = w.next_word("sync ratio")?;
        let (a, b) = ratio
            .split_once('/')
            .ok_or_else(|| ParseError::new(format!("sync ratio {ratio:?} is not n/m")))?;
        let num = |x: &str| {
            x.parse::<u64>()
                .map(Sectors)
                .map_err(|_| ParseError::new(format!("sync ratio {ratio:?} is not n/m")))
        };
        let (synced, total) = (num(a)?, num(b)?);
        let action = w.next("sync action")?;
        let mismatches = w.next("mismatch count")?;
        // data_offset and the journal character may follow; nothing lvmd uses.
        Ok(RaidStatus {
            level,
            legs,
            synced,
            total,
            action,
            mismatches,
        })
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn a_healthy_set_in_sync() {
        let s: RaidStatus = "raid1 2 AA 65536/65536 idle 0 0 -".parse().unwrap();
        assert_eq!(s.legs, vec![LegHealth::InSync; 2]);
        assert_eq!(s.action, SyncAction::Idle);
        assert_eq!(s.sync_basis_points(), Some(10_000));
        assert!(s.dead_legs().is_empty());
    }

    #[test]
    fn a_grown_set_resyncing_rounds_down_as_lvm2() {
        // Old kernels print no data_offset or journal character.
        let s: RaidStatus = "raid1 2 aa 32768/65537 resync 0".parse().unwrap();
        assert_eq!(s.legs, vec![LegHealth::Syncing; 2]);
        assert_eq!(s.action, SyncAction::Resync);
        assert_eq!(s.sync_basis_points(), Some(4999));
        let s: RaidStatus = "raid1 2 Aa 65535/65536 recover 0 0 -".parse().unwrap();
        assert_eq!(
            s.sync_basis_points(),
            Some(9999),
            "never 100.00 before the end"
        );
    }

    #[test]
    fn dead_and_absent_legs_are_named_by_index() {
        let s: RaidStatus = "raid1 3 ADA 8192/8192 idle 0 0 -".parse().unwrap();
        assert_eq!(s.dead_legs(), vec![1]);
        let s: RaidStatus = "raid1 2 A- 8192/8192 idle 0 0 -".parse().unwrap();
        assert_eq!(s.legs[1], LegHealth::Absent);
        assert!(s.dead_legs().is_empty());
    }

    #[test]
    fn bad_status_lines_are_refused() {
        for bad in [
            "raid1 2 A 1/1 idle 0",
            "raid1 2 AX 1/1 idle 0",
            "raid1 2 AA 1-1 idle 0",
            "raid1 2 AA 1/1 dancing 0",
            "raid1 2 AA 1/1 idle",
        ] {
            assert!(bad.parse::<RaidStatus>().is_err(), "{bad}");
        }
    }
}
