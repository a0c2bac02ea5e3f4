//! `linear`: a range of one device (`<device> <offset>`).

use super::{DevNum, DevRef, Kind, ParseError, Words};
use crate::units::Sectors;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linear {
    pub device: DevRef,
    pub offset: Sectors,
}

impl fmt::Display for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.device, self.offset.0)
    }
}

impl FromStr for Linear {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Linear, ParseError> {
        let mut w = Words::new(s);
        let linear = Linear {
            device: w.dev("device")?,
            offset: w.sectors("offset")?,
        };
        w.end()?;
        Ok(linear)
    }
}

impl Kind for Linear {
    const TYPE: &'static str = "linear";

    fn refs(&self) -> Vec<&DevRef> {
        vec![&self.device]
    }

    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        vec![&mut self.device]
    }

    fn device_ends(&self, length: Sectors) -> Vec<(DevNum, Sectors)> {
        self.device
            .devnum()
            .map(|d| (d, self.offset + length))
            .into_iter()
            .collect()
    }
}
