//! Typed views of the segment keys the planners read but the model keeps untyped in
//! `Segment::extra` (raid1's `stripe_size`, `writebehind`, recovery rates; a thin pool's
//! `zero_new_blocks`, `discards` and pending messages; a thin LV's `external_origin`
//! and `merge`). One place reads them, with lvm2's defaults for absent keys; errors
//! are the reason, for the caller to put in its metadata error.

use super::target::Discards;
use crate::format::text::{Section, Value};
use crate::model::Segment;

/// A non-negative integer key; absent is `None`.
fn u64_key(extra: &Section, key: &str, seg_type: &str) -> Result<Option<u64>, String> {
    match extra.get(key) {
        None => Ok(None),
        Some(Value::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
        Some(_) => Err(format!("its {seg_type} segment's {key} is not a number")),
    }
}

/// The keys of a raid1 segment beyond its region size and legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raid1Fields {
    /// lvm2 passes it as dm-raid's chunk size (absent: 0).
    pub stripe_size: u64,
    pub writebehind: Option<u64>,
    pub min_recovery_rate: Option<u64>,
    pub max_recovery_rate: Option<u64>,
    /// A reshape in progress (a `data_offset` key).
    pub reshaping: bool,
}

impl Raid1Fields {
    pub fn of(seg: &Segment) -> Result<Raid1Fields, String> {
        let get = |key| u64_key(&seg.extra, key, "raid1");
        Ok(Raid1Fields {
            stripe_size: get("stripe_size")?.unwrap_or(0),
            writebehind: get("writebehind")?,
            min_recovery_rate: get("min_recovery_rate")?,
            max_recovery_rate: get("max_recovery_rate")?,
            reshaping: seg.extra.get("data_offset").is_some(),
        })
    }
}

/// An `integrity` segment as lvm2 writes it under a raid image (`--raidintegrity`),
/// which the model keeps untyped ([`crate::model::SegmentKind::Other`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityFields {
    /// The data sub-LV (`<image>_iorig`).
    pub origin: String,
    /// The metadata sub-LV (`<image>_imeta`); lvm2's raid images always have one.
    pub meta_dev: String,
    pub data_sectors: u64,
    pub mode: char,
    pub tag_size: u32,
    pub block_size: u32,
    pub internal_hash: String,
    /// Only until the first activation started the kernel's recalculation.
    pub recalculate: bool,
    pub allow_discards: bool,
    /// Tuning keys present (of [`super::target::integrity::TUNING`]), with their values.
    pub tuning: Vec<(String, u64)>,
}

impl IntegrityFields {
    pub fn of(body: &Section) -> Result<IntegrityFields, String> {
        let text = |key: &str| {
            body.get_str(key)
                .map(str::to_owned)
                .ok_or_else(|| format!("its integrity segment has no {key}"))
        };
        let num = |key: &str| {
            u64_key(body, key, "integrity")?
                .ok_or_else(|| format!("its integrity segment has no {key}"))
        };
        let small = |key: &str| {
            u32::try_from(num(key)?)
                .map_err(|_| format!("its integrity segment's {key} is too large"))
        };
        let mode = text("mode")?;
        let mode = match mode.as_str() {
            "J" | "B" | "D" | "R" => mode.chars().next().expect("one letter"),
            other => return Err(format!("its integrity segment's mode {other:?} is unknown")),
        };
        let mut tuning = Vec::new();
        for key in super::target::INTEGRITY_TUNING {
            if let Some(v) = u64_key(body, key, "integrity")? {
                tuning.push(((*key).to_owned(), v));
            }
        }
        Ok(IntegrityFields {
            origin: text("origin")?,
            meta_dev: text("meta_dev").map_err(|_| {
                "its integrity segment has no meta_dev (internal metadata, which lvm2 does \
                 not make under raid images)"
                    .to_owned()
            })?,
            data_sectors: num("data_sectors")?,
            mode,
            tag_size: small("tag_size")?,
            block_size: small("block_size")?,
            internal_hash: text("internal_hash")?,
            recalculate: u64_key(body, "recalculate", "integrity")?.unwrap_or(0) != 0,
            allow_discards: u64_key(body, "allow_discards", "integrity")?.unwrap_or(0) != 0,
            tuning,
        })
    }
}

/// The keys of a thin-pool segment beyond its sub-LVs, transaction id and chunk size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinPoolFields {
    /// lvm2: absent (or not a number) means 0, no zeroing.
    pub zero_new_blocks: bool,
    pub discards: Discards,
    /// `messageN` sections: thin LVs being created or removed, not yet sent.
    pub messages_pending: bool,
}

impl ThinPoolFields {
    pub fn of(seg: &Segment) -> Result<ThinPoolFields, String> {
        // lvm2: discards absent (or not a string) means "ignore".
        let discards = seg.extra.get_str("discards").unwrap_or("ignore");
        Ok(ThinPoolFields {
            zero_new_blocks: seg.extra.get_int("zero_new_blocks").unwrap_or(0) != 0,
            discards: Discards::from_lvm2(discards)
                .ok_or_else(|| format!("unknown discards {discards:?}"))?,
            messages_pending: seg.extra.sections().next().is_some(),
        })
    }
}

/// The keys of a thin segment that lvmd does not map: the first one present.
pub fn thin_unmapped_key(seg: &Segment) -> Option<&'static str> {
    ["external_origin", "merge"]
        .into_iter()
        .find(|key| seg.extra.get(key).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Extents;

    fn seg(extra: &[(&str, Value)]) -> Segment {
        let mut section = Section::new();
        for (k, v) in extra {
            section.push(k, v.clone());
        }
        Segment {
            start_extent: Extents(0),
            extent_count: Extents(1),
            kind: crate::model::SegmentKind::Other {
                type_name: "x".into(),
                body: Section::new(),
            },
            tags: vec![],
            extra: section,
        }
    }

    #[test]
    fn raid1_keys_typed_with_lvm2_defaults() {
        let f = Raid1Fields::of(&seg(&[])).unwrap();
        assert_eq!(
            f,
            Raid1Fields {
                stripe_size: 0,
                writebehind: None,
                min_recovery_rate: None,
                max_recovery_rate: None,
                reshaping: false
            }
        );
        let f = Raid1Fields::of(&seg(&[
            ("stripe_size", Value::Int(64)),
            ("writebehind", Value::Int(512)),
            ("data_offset", Value::Int(0)),
        ]))
        .unwrap();
        assert_eq!(
            (f.stripe_size, f.writebehind, f.reshaping),
            (64, Some(512), true)
        );
        let e = Raid1Fields::of(&seg(&[("writebehind", Value::Str("x".into()))])).unwrap_err();
        assert!(e.contains("writebehind"), "{e}");
        assert!(Raid1Fields::of(&seg(&[("min_recovery_rate", Value::Int(-1))])).is_err());
    }

    #[test]
    fn thin_pool_keys_typed_with_lvm2_defaults() {
        let f = ThinPoolFields::of(&seg(&[])).unwrap();
        assert!(!f.zero_new_blocks && f.discards == Discards::Ignore && !f.messages_pending);
        let f = ThinPoolFields::of(&seg(&[
            ("zero_new_blocks", Value::Int(1)),
            ("discards", Value::Str("nopassdown".into())),
        ]))
        .unwrap();
        assert!(f.zero_new_blocks && f.discards == Discards::NoPassdown);
        let e = ThinPoolFields::of(&seg(&[("discards", Value::Str("some".into()))])).unwrap_err();
        assert!(e.contains("\"some\""), "{e}");
    }

    #[test]
    fn thin_keys_lvmd_does_not_map_are_named() {
        assert_eq!(thin_unmapped_key(&seg(&[])), None);
        assert_eq!(
            thin_unmapped_key(&seg(&[("merge", Value::Int(1))])),
            Some("merge")
        );
    }
}
