//! `thin`: a volume of a thin pool (`<pool device> <device id> [<external origin>]`).

use super::{DevRef, Kind, ParseError, Words};
use devicemapper::ThinDevId;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thin {
    /// The pool's `-tpool` device.
    pub pool: DevRef,
    /// The volume's id in the pool (24 bits, as the kernel's and lvm2's).
    pub device_id: ThinDevId,
    /// A read-only device outside the pool that unprovisioned blocks read from.
    pub external_origin: Option<DevRef>,
}

impl fmt::Display for Thin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.pool, self.device_id)?;
        if let Some(origin) = &self.external_origin {
            write!(f, " {origin}")?;
        }
        Ok(())
    }
}

impl FromStr for Thin {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Thin, ParseError> {
        let mut w = Words::new(s);
        let pool = w.dev("pool device")?;
        let device_id = w.next("device id")?;
        let external_origin = match w.next_word("external origin") {
            Ok(word) => Some(word.parse()?),
            Err(_) => None,
        };
        w.end()?;
        Ok(Thin {
            pool,
            device_id,
            external_origin,
        })
    }
}

impl Kind for Thin {
    const TYPE: &'static str = "thin";

    fn refs(&self) -> Vec<&DevRef> {
        std::iter::once(&self.pool)
            .chain(&self.external_origin)
            .collect()
    }

    fn refs_mut(&mut self) -> Vec<&mut DevRef> {
        std::iter::once(&mut self.pool)
            .chain(&mut self.external_origin)
            .collect()
    }

    // No device ends: a thin volume may be larger than its pool.
}
