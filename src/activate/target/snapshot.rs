//! dm-snapshot's copy-on-write targets, as lvm2 loads them for an old-style snapshot:
//! `snapshot-origin <real device>` on the origin (a write first copies the chunk it
//! overwrites into every snapshot's store), and `snapshot <real device> <cow device>
//! P <chunk sectors>` on the snapshot (`P`: persistent, the exception table kept in
//! the store, as lvm2 always loads it).

use super::{DevRef, Kind, ParseError, Words};
use crate::units::Sectors;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOrigin {
    /// The origin's `-real` layer.
    pub real: DevRef,
}

impl fmt::Display for SnapshotOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.real)
    }
}

impl FromStr for SnapshotOrigin {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<SnapshotOrigin, ParseError> {
        let mut w = Words::new(s);
        let real = w.dev("origin device")?;
        w.end()?;
        Ok(SnapshotOrigin { real })
    }
}

impl Kind for SnapshotOrigin {
    const TYPE: &'static str = "snapshot-origin";

    fn refs(&self) -> Vec<&DevRef> {
        vec![&self.real]
    }

    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        vec![&mut self.real]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The origin's `-real` layer.
    pub real: DevRef,
    /// The snapshot's `-cow` store.
    pub cow: DevRef,
    pub chunk_size: Sectors,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} P {}", self.real, self.cow, self.chunk_size.0)
    }
}

impl FromStr for Snapshot {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Snapshot, ParseError> {
        let mut w = Words::new(s);
        let real = w.dev("origin device")?;
        let cow = w.dev("cow device")?;
        let kind = w.next_word("persistence")?;
        if kind != "P" {
            return Err(ParseError::new(format!(
                "persistence {kind:?}: lvmd loads persistent snapshots (P) only"
            )));
        }
        let chunk_size = w.sectors("chunk size")?;
        w.end()?;
        Ok(Snapshot {
            real,
            cow,
            chunk_size,
        })
    }
}

impl Kind for Snapshot {
    const TYPE: &'static str = "snapshot";

    fn refs(&self) -> Vec<&DevRef> {
        vec![&self.real, &self.cow]
    }

    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        vec![&mut self.real, &mut self.cow]
    }
}

/// What dm-snapshot reports of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// Working: sectors of the store used (exceptions and their metadata) of its size.
    Valid {
        used: Sectors,
        total: Sectors,
        metadata: Sectors,
    },
    /// The store ran full (or failed): the snapshot is dropped and reads fail. Only
    /// removing it helps; the origin is unharmed.
    Invalid,
    /// A write to the snapshot itself did not fit: the snapshot is still readable up to
    /// what it held, further writes to it fail.
    Overflow,
}

impl SnapshotStatus {
    /// Percent of the store used, as lvm2's `snap_percent`; 100 for a dropped one.
    pub fn percent_used(&self) -> f64 {
        match self {
            SnapshotStatus::Valid { used, total, .. } if total.0 > 0 => {
                used.0 as f64 * 100.0 / total.0 as f64
            }
            SnapshotStatus::Valid { .. } => 0.0,
            SnapshotStatus::Invalid | SnapshotStatus::Overflow => 100.0,
        }
    }
}

impl FromStr for SnapshotStatus {
    type Err = ParseError;
    /// `<used>/<total> <metadata>`, `Invalid` or `Overflow` (kernel 4.x and later).
    fn from_str(s: &str) -> Result<SnapshotStatus, ParseError> {
        let s = s.trim();
        match s {
            "Invalid" => return Ok(SnapshotStatus::Invalid),
            "Overflow" => return Ok(SnapshotStatus::Overflow),
            _ => {}
        }
        let mut w = Words::new(s);
        let ratio = w.next_word("used/total")?;
        let (used, total) = ratio
            .split_once('/')
            .and_then(|(u, t)| Some((u.parse().ok()?, t.parse().ok()?)))
            .ok_or_else(|| ParseError::new(format!("{ratio:?} is not used/total")))?;
        let metadata = w.sectors("metadata sectors")?;
        w.end()?;
        Ok(SnapshotStatus::Valid {
            used: Sectors(used),
            total: Sectors(total),
            metadata,
        })
    }
}
