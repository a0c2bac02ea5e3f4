//! The device-mapper name of an encrypted volume's open mapping:
//! `lvmd-crypt-<VG>-<LV>`, each `-` inside the VG and LV names doubled as lvm2 does in
//! its own dm names.
//!
//! Why this shape:
//! - derived from the volume alone, so any lvmd (after a restart, on reconciliation)
//!   finds the mapping of a volume without remembering anything;
//! - reversible: the doubled dashes make the single `-` between VG and LV unambiguous,
//!   so a mapping found in the kernel names its LV, and an open mapping whose LV is
//!   gone can be recognised;
//! - the `lvmd-crypt-` prefix says who owns it: lvmd never closes a mapping someone
//!   opened with `cryptsetup` (an admin's, a crypttab's), and it stays out of lvm2's
//!   `VG-LV[-layer]` namespace (lvm2 layers are one dash-less word, and this name
//!   always has two more parts), so nothing lvm2 makes can take it;
//! - `/dev/mapper/lvmd-crypt-vg0-pvc--1234` is readable to an operator.
//!
//! The price: at most 127 characters with the prefix, 11 fewer than the LV's own dm name.

use super::CryptError;
use crate::activate::plan::{dm_name, DM_NAME_MAX};
use crate::activate::split_dm_name;
use crate::model::name::{validate_lv_name, validate_vg_name};
use std::fmt;

pub const CRYPT_NAME_PREFIX: &str = "lvmd-crypt-";

/// A valid name for an lvmd crypt mapping, and the volume it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CryptName {
    name: String,
    vg: String,
    lv: String,
}

impl CryptName {
    /// The mapping name of `vg/lv`; refused when either is no lvm2 name or the result
    /// is longer than device-mapper takes.
    pub fn for_volume(vg: &str, lv: &str) -> Result<CryptName, CryptError> {
        let invalid = |why: String| CryptError::InvalidName {
            name: format!("{vg}/{lv}"),
            why,
        };
        validate_vg_name(vg).map_err(|e| invalid(e.to_string()))?;
        validate_lv_name(lv).map_err(|e| invalid(e.to_string()))?;
        let name = format!("{CRYPT_NAME_PREFIX}{}", dm_name(vg, lv, None));
        if name.len() > DM_NAME_MAX {
            return Err(invalid(format!(
                "its crypt mapping name {name:?} would have {} characters, at most {DM_NAME_MAX} allowed",
                name.len()
            )));
        }
        Ok(CryptName {
            name,
            vg: vg.to_owned(),
            lv: lv.to_owned(),
        })
    }

    /// A device-mapper name read from the kernel: `Some` when it is an lvmd crypt
    /// mapping (exactly the name [`for_volume`](Self::for_volume) makes), `None` for
    /// anything else, which lvmd leaves alone.
    pub fn parse(dm_name: &str) -> Option<CryptName> {
        let rest = dm_name.strip_prefix(CRYPT_NAME_PREFIX)?;
        let (vg, lv) = split_dm_name(rest)?;
        let name = CryptName::for_volume(&vg, &lv).ok()?;
        // A third part (`VG-LV-x`) or other escaping would not round-trip.
        (name.name == dm_name).then_some(name)
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
    pub fn vg(&self) -> &str {
        &self.vg
    }
    pub fn lv(&self) -> &str {
        &self.lv
    }
    /// `/dev/mapper/<name>`: the device everything above the crypt layer uses.
    pub fn device_path(&self) -> std::path::PathBuf {
        std::path::Path::new("/dev/mapper").join(&self.name)
    }
}

impl fmt::Display for CryptName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_double_inner_dashes_and_round_trip() {
        let n = CryptName::for_volume("vg0", "pvc-1234").unwrap();
        assert_eq!(n.as_str(), "lvmd-crypt-vg0-pvc--1234");
        assert_eq!(
            n.device_path().to_str(),
            Some("/dev/mapper/lvmd-crypt-vg0-pvc--1234")
        );
        assert_eq!(CryptName::parse(n.as_str()), Some(n));
        // The two volumes a naive join would confuse get different names.
        let a = CryptName::for_volume("a-b", "c").unwrap();
        let b = CryptName::for_volume("a", "b-c").unwrap();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(CryptName::parse(a.as_str()).unwrap().vg(), "a-b");
        assert_eq!(CryptName::parse(b.as_str()).unwrap().lv(), "b-c");
    }

    #[test]
    fn foreign_mappings_are_not_lvmd_s() {
        for other in [
            "luks-3f1c",              // systemd-cryptsetup's
            "vg0-lv0",                // an LV
            "lvmd-crypt",             // no volume
            "lvmd-crypt-vg0",         // no LV
            "lvmd-crypt-vg0-lv-x",    // a third part
            "lvmd-crypt--vg-lv",      // a VG starting with '-'
            "lvmd-crypt-vg0-a_tmeta", // an lvm2 component name
            "xlvmd-crypt-vg0-lv0",
        ] {
            assert_eq!(CryptName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn invalid_volumes_and_overlong_names_are_refused() {
        for (vg, lv) in [
            ("", "lv"),
            ("vg", ""),
            ("v/g", "lv"),
            ("vg", "l v"),
            ("vg", "snapshot0"),
        ] {
            let e = CryptName::for_volume(vg, lv).unwrap_err();
            assert!(
                matches!(e, CryptError::InvalidName { .. }),
                "{vg}/{lv}: {e}"
            );
        }
        // 11 + 3 + 1 + 112 = 127: the longest that fits.
        CryptName::for_volume("vg0", &"l".repeat(112)).unwrap();
        let e = CryptName::for_volume("vg0", &"l".repeat(113))
            .unwrap_err()
            .to_string();
        assert!(e.contains("128 characters") && e.contains("127"), "{e}");
        // Doubled dashes count.
        assert!(CryptName::for_volume("vg0", "-l".repeat(40).trim_start_matches('-')).is_err());
    }
}
