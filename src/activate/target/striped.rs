//! `striped`: chunks spread over several devices (`<#stripes> <chunk> (<device> <offset>)..`).

use super::{DevNum, DevRef, Kind, ParseError, Words};
use crate::units::Sectors;
use std::fmt;
use std::str::FromStr;

/// One stripe: where its chunks live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeArea {
    pub device: DevRef,
    pub offset: Sectors,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Striped {
    pub chunk: Sectors,
    pub stripes: Vec<StripeArea>,
}

impl fmt::Display for Striped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.stripes.len(), self.chunk.0)?;
        for area in &self.stripes {
            write!(f, " {} {}", area.device, area.offset.0)?;
        }
        Ok(())
    }
}

impl FromStr for Striped {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Striped, ParseError> {
        let mut w = Words::new(s);
        let count: usize = w.next("stripe count")?;
        let chunk = w.sectors("chunk size")?;
        let mut stripes = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            stripes.push(StripeArea {
                device: w.dev("stripe device")?,
                offset: w.sectors("stripe offset")?,
            });
        }
        w.end()?;
        Ok(Striped { chunk, stripes })
    }
}

impl Kind for Striped {
    const TYPE: &'static str = "striped";

    fn refs(&self) -> Vec<&DevRef> {
        self.stripes.iter().map(|a| &a.device).collect()
    }

    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        self.stripes.iter_mut().map(|a| &mut a.device).collect()
    }

    /// Each stripe holds an equal share of the line.
    fn device_ends(&self, length: Sectors) -> Vec<(DevNum, Sectors)> {
        let per = Sectors(length.0 / self.stripes.len().max(1) as u64);
        self.stripes
            .iter()
            .filter_map(|a| Some((a.device.devnum()?, a.offset + per)))
            .collect()
    }
}
