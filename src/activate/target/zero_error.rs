//! `zero` and `error`: targets without parameters or devices (lvm2's `zero` and `error`
//! segment types).

use super::{Kind, ParseError, Words};
use std::fmt;
use std::str::FromStr;

/// Reads zeros, drops writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zero;

/// Fails every I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

macro_rules! without_params {
    ($kind:ident, $type:literal) => {
        impl fmt::Display for $kind {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Ok(())
            }
        }

        impl FromStr for $kind {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<$kind, ParseError> {
                Words::new(s).end().map(|()| $kind)
            }
        }

        impl Kind for $kind {
            const TYPE: &'static str = $type;
        }
    };
}

without_params!(Zero, "zero");
without_params!(Error, "error");
