//! device-mapper targets with typed parameters, one file per target kind. Each renders
//! to the kernel's table text (exactly lvm2's, since lvm2 and lvmd must load identical
//! tables) and parses back from what the kernel reports, so tables are compared as
//! values, not as text.
//!
//! A new kind (crypt, integrity, ...) is a file here with a type implementing [`Kind`]
//! and one line in the [`targets!`] list below.
//!
//! Devices are named by [`DevRef`]: a device number, or a device of the same plan that
//! has no number before it is made ([`DevRef::Planned`]), which the activator resolves.

mod integrity;
mod linear;
mod raid;
mod snapshot;
mod striped;
mod thin;
mod thin_pool;
mod zero_error;

pub use integrity::{Integrity, IntegrityStatus, TUNING as INTEGRITY_TUNING};
pub use linear::Linear;
pub use raid::{LegHealth, Raid, RaidLeg, RaidStatus, SyncAction};
pub use snapshot::{Snapshot, SnapshotOrigin, SnapshotStatus};
pub use striped::{StripeArea, Striped};
pub use thin::Thin;
pub use thin_pool::{Discards, ThinPool, ThinPoolFeatures};
pub use zero_error::{Error, Zero};

use crate::units::Sectors;
use std::fmt;
use std::str::FromStr;

/// A block device number, as device-mapper tables name devices (`254:16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for DevNum {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<DevNum, ParseError> {
        let bad = || ParseError::new(format!("{s:?} is not a device number (major:minor)"));
        let (major, minor) = s.split_once(':').ok_or_else(bad)?;
        Ok(DevNum {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

impl From<devicemapper::Device> for DevNum {
    fn from(d: devicemapper::Device) -> DevNum {
        DevNum {
            major: d.major,
            minor: d.minor,
        }
    }
}

/// How a table line names a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevRef {
    /// Device `index` of the same plan, with its device-mapper name: it has no number
    /// until it is made (or found active). The activator puts the number in
    /// ([`super::plan::LvPlan::resolve`]) before anything loads a table naming it.
    Planned { index: usize, name: String },
    /// A device number, as the kernel takes and prints it.
    Device(DevNum),
}

impl DevRef {
    pub fn planned(index: usize, name: impl Into<String>) -> DevRef {
        DevRef::Planned {
            index,
            name: name.into(),
        }
    }

    /// Which device of its plan a planned reference names; `None` for a device number.
    pub fn planned_index(&self) -> Option<usize> {
        match self {
            DevRef::Planned { index, .. } => Some(*index),
            DevRef::Device(_) => None,
        }
    }

    /// The device number, once known.
    pub fn devnum(&self) -> Option<DevNum> {
        match self {
            DevRef::Device(n) => Some(*n),
            DevRef::Planned { .. } => None,
        }
    }
}

impl From<DevNum> for DevRef {
    fn from(n: DevNum) -> DevRef {
        DevRef::Device(n)
    }
}

impl fmt::Display for DevRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Only shown in errors and plans not yet resolved: never loaded.
            DevRef::Planned { name, .. } => write!(f, "/dev/mapper/{name}"),
            DevRef::Device(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for DevRef {
    type Err = ParseError;
    /// The kernel prints every device as `major:minor`.
    fn from_str(s: &str) -> Result<DevRef, ParseError> {
        s.parse().map(DevRef::Device)
    }
}

/// A table text that is not what lvmd (or lvm2) would load for its target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub fn new(why: impl Into<String>) -> ParseError {
        ParseError(why.into())
    }
}

/// The words of a parameter text, one at a time, with errors that say what was missing.
struct Words<'a> {
    words: std::str::SplitWhitespace<'a>,
}

impl<'a> Words<'a> {
    fn new(params: &'a str) -> Words<'a> {
        Words {
            words: params.split_whitespace(),
        }
    }

    fn next_word(&mut self, what: &str) -> Result<&'a str, ParseError> {
        self.words
            .next()
            .ok_or_else(|| ParseError::new(format!("{what} missing")))
    }

    fn next<T: FromStr>(&mut self, what: &str) -> Result<T, ParseError> {
        let word = self.next_word(what)?;
        word.parse()
            .map_err(|_| ParseError::new(format!("{what} {word:?} is not valid")))
    }

    fn sectors(&mut self, what: &str) -> Result<Sectors, ParseError> {
        self.next(what).map(Sectors)
    }

    fn dev(&mut self, what: &str) -> Result<DevRef, ParseError> {
        let word = self.next_word(what)?;
        word.parse()
    }

    /// Nothing may follow the last parameter.
    fn end(mut self) -> Result<(), ParseError> {
        match self.words.next() {
            None => Ok(()),
            Some(w) => Err(ParseError::new(format!("unexpected {w:?} at the end"))),
        }
    }
}

/// What the parameters of every target kind do. `Display` is the parameter text as
/// lvm2 loads it; `FromStr` reads it back from the kernel's table.
pub trait Kind: fmt::Display + FromStr<Err = ParseError> + Clone + fmt::Debug + Eq {
    /// The kernel's name of the target type (also the dm-NAME module that provides it).
    const TYPE: &'static str;

    /// Whether the kernel reports the very text loaded (up to spaces), so a parsed
    /// table is checked against it. dm-integrity reports its own defaults instead.
    const KERNEL_TEXT_IS_LOADED: bool = true;

    /// Every device the parameters name.
    fn refs(&self) -> Vec<&DevRef> {
        Vec::new()
    }

    /// The same, to resolve planned ones.
    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        Vec::new()
    }

    /// The block devices the target maps onto, with the end (in sectors) of the range
    /// it uses on each, given the line's length; only those it can tell.
    fn device_ends(&self, _length: Sectors) -> Vec<(DevNum, Sectors)> {
        Vec::new()
    }
}

/// Declares [`Target`], one variant per kind, and its dispatch to the kinds.
macro_rules! targets {
    ($($(#[$doc:meta])* $variant:ident($kind:ty),)+) => {
        /// A device-mapper target with typed parameters.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Target {
            $($(#[$doc])* $variant($kind),)+
        }

        impl Target {
            /// The kernel's name of the target type (also the dm-NAME module).
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Target::$variant(_) => <$kind as Kind>::TYPE,)+
                }
            }

            /// See [`Kind::KERNEL_TEXT_IS_LOADED`].
            pub fn kernel_text_is_loaded(&self) -> bool {
                match self {
                    $(Target::$variant(_) => <$kind as Kind>::KERNEL_TEXT_IS_LOADED,)+
                }
            }

            /// The parameter string of a table line.
            pub fn params(&self) -> String {
                match self {
                    $(Target::$variant(t) => t.to_string(),)+
                }
            }

            /// The target of a kernel table line's type and parameters.
            pub fn parse(type_name: &str, params: &str) -> Result<Target, ParseError> {
                match type_name {
                    $(<$kind as Kind>::TYPE => Ok(Target::$variant(params.parse()?)),)+
                    other => Err(ParseError::new(format!("unknown target type {other:?}"))),
                }
            }

            /// Every device the target names.
            pub fn refs(&self) -> Vec<&DevRef> {
                match self {
                    $(Target::$variant(t) => t.refs(),)+
                }
            }

            /// The same, to resolve planned ones.
            pub fn refs_mut(&mut self) -> Vec<&mut DevRef> {
                match self {
                    $(Target::$variant(t) => t.refs_mut(),)+
                }
            }

            /// The block devices the target maps onto, with the end (in sectors) of the
            /// range it uses on each, given the line's length.
            pub fn device_ends(&self, length: Sectors) -> Vec<(DevNum, Sectors)> {
                match self {
                    $(Target::$variant(t) => t.device_ends(length),)+
                }
            }
        }
    };
}

targets! {
    Linear(Linear),
    Striped(Striped),
    /// Reads zeros, drops writes: lvm2's `zero` segment type (`lvcreate --type zero`).
    Zero(Zero),
    /// Fails every I/O: lvm2's `error` segment type.
    Error(Error),
    /// dm-raid over metadata/data leg pairs: lvm2's raid1 ([`super::raid`]).
    Raid(Raid),
    /// dm-thin's pool (lvm2's `-tpool` layer).
    ThinPool(ThinPool),
    /// A thin volume of a pool.
    Thin(Thin),
    /// dm-integrity under a raid image (lvm2's `--raidintegrity`).
    Integrity(Integrity),
    /// An old-style snapshot's origin, over its `-real` layer.
    SnapshotOrigin(SnapshotOrigin),
    /// An old-style (copy-on-write) snapshot.
    Snapshot(Snapshot),
}

/// One line of a table: `<start> <length> <type> <params>`, sectors on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLine {
    pub start: Sectors,
    pub length: Sectors,
    pub target: Target,
}

impl TableLine {
    /// The line as the kernel's table-load ioctl wants it.
    pub fn to_ioctl(&self) -> (u64, u64, String, String) {
        (
            self.start.0,
            self.length.0,
            self.target.type_name().to_owned(),
            self.target.params(),
        )
    }

    /// A line as the kernel's table-status ioctl reports it. Only the canonical text of
    /// its target is accepted (the one lvmd renders, up to spaces), so comparing
    /// parsed lines is as strict as comparing texts; for a target whose kernel text is
    /// not the loaded one, its strict parser and its own equality stand in.
    pub fn from_kernel(line: &(u64, u64, String, String)) -> Result<TableLine, ParseError> {
        let (start, length, type_name, params) = line;
        let target = Target::parse(type_name, params)
            .map_err(|e| ParseError::new(format!("{type_name} {params:?}: {}", e.0)))?;
        let rendered = target.params();
        if target.kernel_text_is_loaded()
            && !rendered.split_whitespace().eq(params.split_whitespace())
        {
            return Err(ParseError::new(format!(
                "{type_name} {params:?} is not in the form lvmd loads ({rendered:?})"
            )));
        }
        Ok(TableLine {
            start: Sectors(*start),
            length: Sectors(*length),
            target,
        })
    }
}

impl fmt::Display for TableLine {
    /// As `dmsetup table` prints it (without the device name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.start.0,
            self.length.0,
            self.target.type_name()
        )?;
        let params = self.target.params();
        if !params.is_empty() {
            write!(f, " {params}")?;
        }
        Ok(())
    }
}

/// A whole table as the kernel reports it, parsed.
pub fn parse_table(lines: &[(u64, u64, String, String)]) -> Result<Vec<TableLine>, ParseError> {
    lines.iter().map(TableLine::from_kernel).collect()
}

/// The text of a whole table, one line per target, as `dmsetup table` prints it.
pub fn table_text(table: &[TableLine]) -> String {
    table.iter().map(|l| format!("{l}\n")).collect()
}

/// The size of the device a table makes.
pub fn table_size(table: &[TableLine]) -> Sectors {
    table
        .iter()
        .map(|l| l.start + l.length)
        .max()
        .unwrap_or(Sectors::ZERO)
}

/// The planned devices a table still names (none once resolved).
pub fn unresolved(table: &[TableLine]) -> Vec<&DevRef> {
    table
        .iter()
        .flat_map(|l| l.target.refs())
        .filter(|r| r.planned_index().is_some())
        .collect()
}

#[cfg(test)]
mod tests;
