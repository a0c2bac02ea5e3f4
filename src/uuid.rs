//! LVM2 identifiers: 32 characters from lvm2's alphabet, stored without dashes on disk and
//! in device-mapper UUIDs, shown as 6-4-4-4-4-4-6 groups in text metadata.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// lvm2's uuid alphabet (`lib/uuid/uuid.c`): what it accepts when reading.
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#";
/// What lvm2 draws new uuids from: the alphabet without `!` and `#` (no uuid lvm2
/// 2.03 wrote has them, and its reports mangle one that starts with `#`).
const GENERATED: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const GROUPS: [usize; 7] = [6, 4, 4, 4, 4, 4, 6];
pub const UUID_LEN: usize = 32;
/// The dashed form's length: the characters and a dash between groups.
const DASHED_LEN: usize = UUID_LEN + GROUPS.len() - 1;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid([u8; UUID_LEN]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LVM uuid {text:?}: {why}")]
pub struct UuidError {
    pub text: String,
    pub why: &'static str,
}

impl Uuid {
    /// A fresh random uuid, as lvm2 makes them.
    pub fn random() -> Uuid {
        let mut raw = [0u8; UUID_LEN];
        getrandom::fill(&mut raw).expect("the kernel's random source failed");
        for b in &mut raw {
            // 256 is not a multiple of 62: reject the top values so every character is
            // equally likely.
            while *b as usize >= 256 - 256 % GENERATED.len() {
                let mut one = [0u8; 1];
                getrandom::fill(&mut one).expect("the kernel's random source failed");
                *b = one[0];
            }
            *b = GENERATED[(*b as usize) % GENERATED.len()];
        }
        Uuid(raw)
    }

    /// From the 32 raw bytes as stored in a PV header.
    pub fn from_raw(raw: &[u8]) -> Result<Uuid, UuidError> {
        let text = || String::from_utf8_lossy(raw).into_owned();
        let arr: [u8; UUID_LEN] = raw.try_into().map_err(|_| UuidError {
            text: text(),
            why: "not 32 characters",
        })?;
        if !arr.iter().all(|b| ALPHABET.contains(b)) {
            return Err(UuidError {
                text: text(),
                why: "character outside lvm2's uuid alphabet",
            });
        }
        Ok(Uuid(arr))
    }

    pub fn as_raw(&self) -> &[u8; UUID_LEN] {
        &self.0
    }

    /// Without dashes, as on disk and in device-mapper uuids.
    pub fn compact(&self) -> &str {
        std::str::from_utf8(&self.0).expect("alphabet is ASCII")
    }
}

impl FromStr for Uuid {
    type Err = UuidError;
    /// Accepts the dashed form lvm2 prints and the compact form. Dashes must sit
    /// exactly where lvm2 puts them, or nowhere.
    fn from_str(s: &str) -> Result<Uuid, UuidError> {
        if s.len() == UUID_LEN {
            return Uuid::from_raw(s.as_bytes());
        }
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() != GROUPS.len() || parts.iter().zip(GROUPS).any(|(p, n)| p.len() != n) {
            return Err(UuidError {
                text: s.to_owned(),
                why: "expected 32 characters, or 6-4-4-4-4-4-6 groups",
            });
        }
        Uuid::from_raw(parts.concat().as_bytes())
    }
}

impl fmt::Display for Uuid {
    /// The dashed form used in text metadata.
    /// Written in one piece: `to_string` then allocates once, where a write per
    /// group grew the string four times (a listing formats thousands).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [b'-'; DASHED_LEN];
        let (mut from, mut to) = (0, 0);
        for n in GROUPS {
            out[to..to + n].copy_from_slice(&self.0[from..from + n]);
            from += n;
            to += n + 1;
        }
        f.write_str(std::str::from_utf8(&out).expect("alphabet is ASCII"))
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

impl Serialize for Uuid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_and_compact_forms_round_trip() {
        let u = Uuid::random();
        let dashed = u.to_string();
        assert_eq!(dashed.len(), 38);
        assert_eq!(dashed.parse::<Uuid>().unwrap(), u);
        assert_eq!(u.compact().parse::<Uuid>().unwrap(), u);
        let known: Uuid = "Jpw4ZBAE1XxX1kxGlBJc0clGsAUR!DXp".parse().unwrap();
        assert_eq!(known.to_string(), "Jpw4ZB-AE1X-xX1k-xGlB-Jc0c-lGsA-UR!DXp");
    }

    #[test]
    fn generated_uuids_use_only_what_lvm2_generates() {
        for _ in 0..200 {
            let u = Uuid::random();
            assert!(
                u.compact().bytes().all(|b| b.is_ascii_alphanumeric()),
                "{u}"
            );
        }
    }

    #[test]
    fn rejects_bad_text() {
        assert!("abc".parse::<Uuid>().is_err());
        assert!("Jpw4ZB-AE1X-xX1k-xGlB-Jc0c-lGsA-UR!DX"
            .parse::<Uuid>()
            .is_err());
        let e = "Jpw4ZB-AE1X-xX1k-xGlB-Jc0c-lGsA-UR?DXp"
            .parse::<Uuid>()
            .unwrap_err();
        assert!(e.why.contains("alphabet"));
        assert!("Jpw4ZB-AE1X-xX1k-xGlB-Jc0c-lGsA-UR!DXp"
            .parse::<Uuid>()
            .is_ok());
    }
}
