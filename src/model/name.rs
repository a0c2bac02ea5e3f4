//! lvm2's naming rules for VGs, LVs and tags (`lib/misc/lvm-string.c`), so that every
//! name lvmd writes is one lvm2 accepts, and every refusal names the rule.

use std::fmt;

/// lvm2's NAME_LEN includes the terminating NUL: names have at most 127 characters.
pub const MAX_NAME_LEN: usize = 127;

/// Prefixes lvm2 keeps for its own LVs.
const RESERVED_LV_PREFIXES: &[&str] = &["pvmove", "snapshot"];
/// Substrings that mark lvm2's component (sub-)LVs (cache, writecache, mirror, raid,
/// thin, VDO and integrity layers), plus two more it refuses in LV names (lvm2's
/// `lib/misc/lvm-string.c`).
const RESERVED_LV_SUBSTRINGS: &[&str] = &[
    "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_wcorig", "_mimage", "_mlog", "_rimage",
    "_rmeta", "_tdata", "_tmeta", "_vdata", "_imeta", "_iorig", "_pmspare", "_vorigin",
];

/// device-mapper's `DM_NAME_LEN` less its NUL: the longest name of an LV's device.
pub const DM_NAME_MAX: usize = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Vg,
    Lv,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Vg => "volume group",
            NameKind::Lv => "logical volume",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: {why}")]
pub struct NameError {
    pub kind: NameKind,
    pub name: String,
    pub why: String,
}

/// A character lvm2 allows in VG and LV names.
pub fn name_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')
}

fn validate_common(kind: NameKind, name: &str) -> Result<(), NameError> {
    let err = |why: String| NameError {
        kind,
        name: name.to_owned(),
        why,
    };
    if name.is_empty() {
        return Err(err("empty".into()));
    }
    // A leading hyphen would be ambiguous in device-mapper's `VG-LV` names.
    if name.starts_with('-') {
        return Err(err("must not start with '-'".into()));
    }
    if name == "." || name == ".." {
        return Err(err("'.' and '..' are not names".into()));
    }
    if let Some(c) = name.chars().find(|c| !name_char_ok(*c)) {
        return Err(err(format!(
            "character {c:?} is not allowed (only a-z A-Z 0-9 + _ . -)"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err(format!(
            "{} characters, at most {MAX_NAME_LEN} allowed",
            name.len()
        )));
    }
    Ok(())
}

pub fn validate_vg_name(name: &str) -> Result<(), NameError> {
    validate_common(NameKind::Vg, name)
}

/// The rules for an LV name a user chooses. Names of lvm2's own hidden sub-LVs
/// (`pool_tmeta`, `lvol0_pmspare`, ...) fail here on purpose; they are read, never made.
pub fn validate_lv_name(name: &str) -> Result<(), NameError> {
    validate_common(NameKind::Lv, name)?;
    let err = |why: String| NameError {
        kind: NameKind::Lv,
        name: name.to_owned(),
        why,
    };
    if let Some(p) = RESERVED_LV_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(err(format!("names starting {p:?} are reserved by lvm2")));
    }
    if let Some(s) = RESERVED_LV_SUBSTRINGS.iter().find(|s| name.contains(*s)) {
        return Err(err(format!("names containing {s:?} are reserved by lvm2")));
    }
    Ok(())
}

/// An LV name in `vg`: the rules of [`validate_lv_name`], and a device-mapper name
/// (`VG-LV`, with each `-` inside doubled) the kernel takes, so the LV can be activated.
pub fn validate_lv_name_in(vg: &str, lv: &str) -> Result<(), NameError> {
    validate_lv_name(lv)?;
    check_dm_name(vg, lv)
}

/// Whether `VG-LV` (each `-` inside doubled) is a device-mapper name the kernel takes:
/// also for the hidden sub-LVs lvmd makes (`<lv>_rimage_N`), whose names are lvmd's.
pub fn check_dm_name(vg: &str, lv: &str) -> Result<(), NameError> {
    let escaped = |s: &str| s.len() + s.matches('-').count();
    let len = escaped(vg) + 1 + escaped(lv);
    if len > DM_NAME_MAX {
        return Err(NameError {
            kind: NameKind::Lv,
            name: lv.to_owned(),
            why: format!(
                "with volume group {vg:?} its device-mapper name would have {len} characters, \
                 at most {DM_NAME_MAX} allowed"
            ),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tag {tag:?}: {why}")]
pub struct TagError {
    pub tag: String,
    pub why: String,
}

/// A character of lvm2's tag alphabet (`A-Za-z0-9._-+/=!:&#`).
pub fn tag_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '.' | '_' | '-' | '+' | '/' | '=' | '!' | ':' | '&' | '#')
}

/// lvm2's tag alphabet: `A-Za-z0-9._-+/=!:&#`, non-empty.
pub fn validate_tag(tag: &str) -> Result<(), TagError> {
    let err = |why: String| TagError {
        tag: tag.to_owned(),
        why,
    };
    if tag.is_empty() {
        return Err(err("empty".into()));
    }
    if let Some(c) = tag.chars().find(|c| !tag_char_ok(*c)) {
        return Err(err(format!(
            "character {c:?} is not allowed (only A-Z a-z 0-9 . _ - + / = ! : & #)"
        )));
    }
    // lvm2 sets no limit; 1024 keeps a metadata area from filling with one tag.
    if tag.len() > 1024 {
        return Err(err(format!(
            "{} characters, at most 1024 allowed",
            tag.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvm2_name_rules() {
        for ok in ["vg0", "my-vg", "a.b+c_d", "x", &"v".repeat(127)] {
            validate_vg_name(ok).unwrap();
        }
        for bad in ["", "-vg", ".", "..", "a/b", "a b", "ä", &"v".repeat(128)] {
            assert!(validate_vg_name(bad).is_err(), "{bad:?} accepted");
        }
        validate_lv_name("data.1").unwrap();
        assert!(validate_lv_name("snapshot1")
            .unwrap_err()
            .why
            .contains("snapshot"));
        assert!(validate_lv_name("pool_tmeta")
            .unwrap_err()
            .why
            .contains("_tmeta"));
        assert!(validate_lv_name("x_pmspare").is_err());
        assert!(validate_lv_name("pvmove0").is_err());
        // "snapshot" is reserved only as a prefix.
        validate_lv_name("my_snapshot").unwrap();
        // Newer component suffixes (cache pools and volumes, writecache, integrity).
        for s in ["_cpool", "_cvol", "_wcorig", "_imeta", "_iorig", "_vdata"] {
            let e = validate_lv_name(&format!("x{s}")).unwrap_err();
            assert!(e.why.contains(s), "{s}: {e}");
        }
        validate_lv_name("cvol").unwrap();
    }

    #[test]
    fn lv_names_must_leave_room_for_the_dm_name() {
        // "vg-" + 124 = 127: the longest that fits.
        validate_lv_name_in("vg", &"l".repeat(124)).unwrap();
        let e = validate_lv_name_in("vg", &"l".repeat(125)).unwrap_err();
        assert!(e.why.contains("128 characters"), "{e}");
        // 127 characters is a valid LV name alone, never with a VG.
        validate_lv_name(&"l".repeat(127)).unwrap();
        assert!(validate_lv_name_in("v", &"l".repeat(127)).is_err());
        // Hyphens count twice (dm doubles them).
        let e = validate_lv_name_in("my-vg", &"a-".repeat(41)).unwrap_err();
        assert!(e.why.contains("my-vg") && e.why.contains("127"), "{e}");
        validate_lv_name_in("my-vg", &"a-".repeat(40)).unwrap();
    }

    #[test]
    fn error_names_the_value() {
        let e = validate_lv_name("a b").unwrap_err().to_string();
        assert!(e.contains("\"a b\"") && e.contains("' '"), "{e}");
    }

    #[test]
    fn tags() {
        validate_tag("pvc/ns=default:x&y#1!").unwrap();
        assert!(validate_tag("").is_err());
        assert!(validate_tag("a b").is_err());
        assert!(validate_tag("a,b").is_err());
    }
}
