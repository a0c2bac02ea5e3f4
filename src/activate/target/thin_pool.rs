//! `thin-pool`: dm-thin's pool (`<metadata> <data> <block size> <low water mark>
//! <#features> <feature>..`). The kernel prints its features in a fixed order and ends
//! the line with a space; lvm2's table is the kernel's text, and the same text loads.

use super::{DevNum, DevRef, Kind, ParseError, Words};
use crate::units::Sectors;
use devicemapper::DataBlocks;
use std::fmt;
use std::str::FromStr;

/// What the pool does with discards: lvm2's `discards` setting, by its metadata names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Discards {
    /// Handled by the pool and passed down to the data device.
    Passdown,
    /// Handled by the pool, not passed down (`no_discard_passdown`).
    NoPassdown,
    /// Ignored (`ignore_discard`); lvm2's default when the metadata says nothing.
    #[default]
    Ignore,
}

impl Discards {
    /// lvm2's metadata word for it.
    pub fn from_lvm2(word: &str) -> Option<Discards> {
        match word {
            "passdown" => Some(Discards::Passdown),
            "nopassdown" => Some(Discards::NoPassdown),
            "ignore" => Some(Discards::Ignore),
            _ => None,
        }
    }
}

/// The pool's feature arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinPoolFeatures {
    /// Whether newly provisioned blocks are zeroed (`skip_block_zeroing` when not).
    pub zero_new_blocks: bool,
    pub discards: Discards,
    /// The pool refuses writes (`read_only`; the kernel also sets it on metadata errors).
    pub read_only: bool,
    /// Fail writes at once when full instead of queueing them (`error_if_no_space`).
    pub error_if_no_space: bool,
}

impl ThinPoolFeatures {
    /// The feature words in the kernel's order (dm-thin's `emit_flags`).
    fn words(&self) -> Vec<&'static str> {
        let mut words = Vec::new();
        if !self.zero_new_blocks {
            words.push("skip_block_zeroing");
        }
        match self.discards {
            Discards::Ignore => words.push("ignore_discard"),
            Discards::NoPassdown => words.push("no_discard_passdown"),
            Discards::Passdown => {}
        }
        if self.read_only {
            words.push("read_only");
        }
        if self.error_if_no_space {
            words.push("error_if_no_space");
        }
        words
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinPool {
    pub metadata: DevRef,
    pub data: DevRef,
    /// The pool's allocation unit (lvm2's chunk size).
    pub block_size: Sectors,
    /// Free data blocks below which the kernel raises an event.
    pub low_water_mark: DataBlocks,
    pub features: ThinPoolFeatures,
}

impl fmt::Display for ThinPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = self.features.words();
        write!(
            f,
            "{} {} {} {} {} ",
            self.metadata,
            self.data,
            self.block_size.0,
            *self.low_water_mark,
            words.len()
        )?;
        for w in words {
            write!(f, "{w} ")?;
        }
        Ok(())
    }
}

impl FromStr for ThinPool {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<ThinPool, ParseError> {
        let mut w = Words::new(s);
        let metadata = w.dev("metadata device")?;
        let data = w.dev("data device")?;
        let block_size = w.sectors("block size")?;
        let low_water_mark = DataBlocks(w.next("low water mark")?);
        let count: usize = w.next("feature count")?;
        let mut features = ThinPoolFeatures {
            zero_new_blocks: true,
            discards: Discards::Passdown,
            read_only: false,
            error_if_no_space: false,
        };
        for _ in 0..count {
            match w.next_word("feature")? {
                "skip_block_zeroing" => features.zero_new_blocks = false,
                "ignore_discard" => features.discards = Discards::Ignore,
                "no_discard_passdown" => features.discards = Discards::NoPassdown,
                "read_only" => features.read_only = true,
                "error_if_no_space" => features.error_if_no_space = true,
                other => return Err(ParseError::new(format!("unknown feature {other:?}"))),
            }
        }
        w.end()?;
        Ok(ThinPool {
            metadata,
            data,
            block_size,
            low_water_mark,
            features,
        })
    }
}

impl Kind for ThinPool {
    const TYPE: &'static str = "thin-pool";

    fn refs(&self) -> Vec<&DevRef> {
        vec![&self.metadata, &self.data]
    }

    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        vec![&mut self.metadata, &mut self.data]
    }

    fn device_ends(&self, length: Sectors) -> Vec<(DevNum, Sectors)> {
        self.data
            .devnum()
            .map(|d| (d, length))
            .into_iter()
            .collect()
    }
}
