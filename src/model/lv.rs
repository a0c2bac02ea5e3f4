//! Logical volumes and their segments.

use super::fields::{int, push_extra, push_list, push_tags, Fields};
use super::{ModelError, Path};
use crate::format::text::{Item, Section, Value};
use crate::units::{Extents, Sectors};
use crate::uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct LogicalVolume {
    pub name: String,
    pub id: Uuid,
    /// `READ`, `WRITE`, `VISIBLE`, ... kept as written, unknown ones included.
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    pub creation_time: Option<i64>,
    pub creation_host: Option<String>,
    pub segments: Vec<Segment>,
    /// Keys lvmd does not interpret (`allocation_policy`, `read_ahead`, `lock_args`, ...).
    pub extra: Section,
}

/// A run of extents on a PV, or of a sub-LV, that a segment maps: the pairs of a
/// `stripes` array. lvm2 writes both the same way and tells them apart by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    pub name: String,
    pub start: Extents,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SegmentKind {
    /// Linear is striped with one stripe; `stripe_size` is only written for more.
    Striped {
        stripe_size: Option<Sectors>,
        stripes: Vec<Area>,
    },
    /// raid1: metadata and image sub-LVs in pairs.
    Raid1 {
        region_size: Option<Sectors>,
        /// (`<lv>_rmeta_N`, `<lv>_rimage_N`) pairs.
        legs: Vec<(String, String)>,
    },
    ThinPool {
        metadata: String,
        pool: String,
        transaction_id: u64,
        chunk_size: Sectors,
    },
    Thin {
        thin_pool: String,
        transaction_id: u64,
        device_id: u64,
        origin: Option<String>,
    },
    /// An old-style (copy-on-write) snapshot.
    Snapshot {
        chunk_size: Sectors,
        origin: String,
        cow_store: String,
    },
    /// A segment type lvmd does not model (mirror, cache, vdo, other raid levels, ...):
    /// the whole section but its start and length, kept as read.
    Other { type_name: String, body: Section },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_extent: Extents,
    pub extent_count: Extents,
    pub kind: SegmentKind,
    pub tags: Vec<String>,
    /// Keys of a known segment type that lvmd does not interpret (e.g. `discards`).
    pub extra: Section,
}

impl SegmentKind {
    pub fn type_name(&self) -> &str {
        match self {
            SegmentKind::Striped { .. } => "striped",
            SegmentKind::Raid1 { .. } => "raid1",
            SegmentKind::ThinPool { .. } => "thin-pool",
            SegmentKind::Thin { .. } => "thin",
            SegmentKind::Snapshot { .. } => "snapshot",
            SegmentKind::Other { type_name, .. } => type_name,
        }
    }

    /// The type as `lvs` reports it: one-stripe `striped` is `linear`.
    pub fn display_type(&self) -> &str {
        match self {
            SegmentKind::Striped { stripes, .. } if stripes.len() == 1 => "linear",
            other => other.type_name(),
        }
    }

    /// Names of other LVs this segment depends on.
    pub fn lv_references(&self) -> Vec<&str> {
        match self {
            SegmentKind::Striped { .. } => Vec::new(),
            SegmentKind::Raid1 { legs, .. } => legs
                .iter()
                .flat_map(|(m, i)| [m.as_str(), i.as_str()])
                .collect(),
            SegmentKind::ThinPool { metadata, pool, .. } => vec![metadata, pool],
            SegmentKind::Thin {
                thin_pool, origin, ..
            } => std::iter::once(thin_pool.as_str())
                .chain(origin.as_deref())
                .collect(),
            SegmentKind::Snapshot {
                origin, cow_store, ..
            } => vec![origin, cow_store],
            // Unknown layouts: any string anywhere may name an LV; callers treat each
            // as a possible reference, which errs on the side of refusing.
            SegmentKind::Other { body, .. } => all_strings(body),
        }
    }
}

fn all_strings(section: &Section) -> Vec<&str> {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Str(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for item in &section.items {
        match item {
            Item::Pair { value, .. } => walk(value, &mut out),
            Item::Section { body, .. } => out.extend(all_strings(body)),
        }
    }
    out
}

impl Segment {
    /// Names of other LVs this segment may depend on: the known references of its type,
    /// plus any string among the keys lvmd does not interpret (`external_origin`, ...).
    pub fn lv_references(&self) -> Vec<&str> {
        let mut refs = self.kind.lv_references();
        refs.extend(all_strings(&self.extra));
        refs
    }
}

impl LogicalVolume {
    pub fn extents(&self) -> Extents {
        self.segments
            .iter()
            .fold(Extents::ZERO, |acc, s| acc + s.extent_count)
    }
    pub fn is_visible(&self) -> bool {
        self.status.iter().any(|s| s == "VISIBLE")
    }
    /// The segment type of the LV as `lvs` shows it: the first segment's type.
    pub fn type_name(&self) -> &str {
        self.segments
            .first()
            .map(|s| s.kind.display_type())
            .unwrap_or("")
    }
    /// True when every segment is striped (linear included): the layouts lvmd can
    /// resize and remove without understanding anything more.
    pub fn is_plain(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s.kind, SegmentKind::Striped { .. }))
    }

    /// The (data, metadata) sub-LV names of an LV that is one `integrity` segment with
    /// an external metadata device (lvm2's raid image under `--raidintegrity`: its
    /// `_iorig` and `_imeta`); `None` for anything else.
    pub fn integrity_layer(&self) -> Option<(&str, &str)> {
        let [seg] = self.segments.as_slice() else {
            return None;
        };
        match &seg.kind {
            SegmentKind::Other { type_name, body } if type_name == "integrity" => {
                Some((body.get_str("origin")?, body.get_str("meta_dev")?))
            }
            _ => None,
        }
    }

    pub(crate) fn from_section(
        name: &str,
        section: &Section,
        vg_path: &str,
    ) -> Result<LogicalVolume, ModelError> {
        let path: Path = format!("{vg_path}/logical_volumes/{name}");
        let mut f = Fields::new(section, path.clone());
        let id = f.uuid("id")?;
        let status = f.str_list("status")?;
        let flags = f.str_list("flags")?;
        let tags = f.str_list("tags")?;
        let creation_time = f.opt_i64("creation_time")?;
        let creation_host = f.opt_str("creation_host")?;
        let segment_count = f.u64("segment_count")?;
        // Sized once (bounded: the count comes from the text): a VG keeps thousands of
        // these for as long as it is cached.
        let mut segments = Vec::with_capacity(segment_count.min(64) as usize);
        for n in 1..=segment_count {
            let key = format!("segment{n}");
            let body = section.section(&key).ok_or_else(|| ModelError::Invalid {
                path: path.clone(),
                why: format!("segment_count is {segment_count} but {key} is missing"),
            })?;
            segments.push(Segment::from_section(body, format!("{path}/{key}"))?);
        }
        // Segment sections are consumed by number; any beyond segment_count is an error
        // as in lvm2, not something to carry along silently.
        let mut extra = f.rest();
        extra.items.retain(|item| match item {
            Item::Section { name, .. } => !is_segment_key(name),
            _ => true,
        });
        extra.items.shrink_to_fit();
        if let Some((n, _)) = section
            .sections()
            .find(|(n, _)| is_segment_key(n) && segment_number(n) > Some(segment_count))
        {
            return Err(ModelError::Invalid {
                path,
                why: format!("{n} beyond segment_count {segment_count}"),
            });
        }
        let mut expected = Extents::ZERO;
        for (i, seg) in segments.iter().enumerate() {
            if seg.start_extent != expected {
                return Err(ModelError::Invalid {
                    path: format!("{path}/segment{}", i + 1),
                    why: format!(
                        "start_extent is {} but the previous segments end at {}",
                        seg.start_extent.0, expected.0
                    ),
                });
            }
            expected += seg.extent_count;
        }
        Ok(LogicalVolume {
            name: name.to_owned(),
            id,
            status,
            flags,
            tags,
            creation_time,
            creation_host,
            segments,
            extra,
        })
    }

    pub(crate) fn to_section(&self) -> Section {
        let mut s = Section::new();
        s.push("id", Value::Str(self.id.to_string()));
        push_list(&mut s, "status", &self.status);
        push_list(&mut s, "flags", &self.flags);
        push_tags(&mut s, &self.tags);
        if let Some(t) = self.creation_time {
            s.push("creation_time", Value::Int(t));
        }
        if let Some(h) = &self.creation_host {
            s.push("creation_host", Value::Str(h.clone()));
        }
        s.push("segment_count", int(self.segments.len() as u64));
        for (i, seg) in self.segments.iter().enumerate() {
            s.push_section(&format!("segment{}", i + 1), seg.to_section());
        }
        push_extra(&mut s, &self.extra);
        s
    }
}

fn is_segment_key(name: &str) -> bool {
    segment_number(name).is_some()
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("segment")?.parse().ok()
}

fn read_areas(f: &Fields, values: &[Value], what: &str) -> Result<Vec<Area>, ModelError> {
    if values.len() % 2 != 0 {
        return Err(f.invalid(format!("{what} must hold name/extent pairs")));
    }
    values
        .chunks(2)
        .map(|pair| match (&pair[0], &pair[1]) {
            (Value::Str(name), Value::Int(start)) if *start >= 0 => Ok(Area {
                name: name.clone(),
                start: Extents(*start as u64),
            }),
            _ => Err(f.invalid(format!("{what} must hold name/extent pairs"))),
        })
        .collect()
}

impl Segment {
    fn from_section(section: &Section, path: Path) -> Result<Segment, ModelError> {
        let mut f = Fields::new(section, path);
        let start_extent = Extents(f.u64("start_extent")?);
        let extent_count = Extents(f.u64("extent_count")?);
        let type_name = f.str("type")?;
        let tags = f.str_list("tags")?;
        if extent_count == Extents::ZERO {
            return Err(f.invalid("extent_count is 0"));
        }
        let kind = match type_name.as_str() {
            "striped" => {
                let stripe_count = f.u64("stripe_count")?;
                let stripe_size = f.opt_u64("stripe_size")?.map(Sectors);
                let values = f.array("stripes")?;
                let stripes = read_areas(&f, values, "stripes")?;
                if stripes.len() as u64 != stripe_count || stripe_count == 0 {
                    return Err(f.invalid(format!(
                        "stripe_count is {stripe_count} but stripes lists {} areas",
                        stripes.len()
                    )));
                }
                if extent_count.0 % stripe_count != 0 {
                    return Err(f.invalid(format!(
                        "extent_count {} does not divide into {stripe_count} stripes",
                        extent_count.0
                    )));
                }
                if stripe_count > 1 && stripe_size.is_none() {
                    return Err(f.invalid("stripe_size is missing for a striped segment"));
                }
                SegmentKind::Striped {
                    stripe_size,
                    stripes,
                }
            }
            "raid1" => {
                let device_count = f.u64("device_count")?;
                let region_size = f.opt_u64("region_size")?.map(Sectors);
                let raids = f.array("raids")?;
                let names: Option<Vec<&str>> = raids.iter().map(Value::as_str).collect();
                let names = names.ok_or_else(|| f.invalid("raids must hold LV names"))?;
                if device_count.checked_mul(2) != Some(names.len() as u64) {
                    return Err(f.invalid(format!(
                        "device_count is {device_count} but raids lists {} names",
                        names.len()
                    )));
                }
                SegmentKind::Raid1 {
                    region_size,
                    legs: names
                        .chunks(2)
                        .map(|p| (p[0].to_owned(), p[1].to_owned()))
                        .collect(),
                }
            }
            "thin-pool" => SegmentKind::ThinPool {
                metadata: f.str("metadata")?,
                pool: f.str("pool")?,
                transaction_id: f.u64("transaction_id")?,
                chunk_size: Sectors(f.u64("chunk_size")?),
            },
            "thin" => SegmentKind::Thin {
                thin_pool: f.str("thin_pool")?,
                transaction_id: f.u64("transaction_id")?,
                device_id: f.u64("device_id")?,
                origin: f.opt_str("origin")?,
            },
            "snapshot" => SegmentKind::Snapshot {
                chunk_size: Sectors(f.u64("chunk_size")?),
                origin: f.str("origin")?,
                cow_store: f.str("cow_store")?,
            },
            _ => {
                // Everything but the keys every segment has (read above) stays in the body.
                let body = f.rest();
                return Ok(Segment {
                    start_extent,
                    extent_count,
                    kind: SegmentKind::Other { type_name, body },
                    tags,
                    extra: Section::new(),
                });
            }
        };
        Ok(Segment {
            start_extent,
            extent_count,
            kind,
            tags,
            extra: f.rest(),
        })
    }

    fn to_section(&self) -> Section {
        let mut s = Section::new();
        s.push("start_extent", int(self.start_extent.0));
        s.push("extent_count", int(self.extent_count.0));
        s.push("type", Value::Str(self.kind.type_name().to_owned()));
        push_tags(&mut s, &self.tags);
        match &self.kind {
            SegmentKind::Striped {
                stripe_size,
                stripes,
            } => {
                s.push("stripe_count", int(stripes.len() as u64));
                if let Some(size) = stripe_size {
                    s.push("stripe_size", int(size.0));
                }
                s.push(
                    "stripes",
                    Value::Array(
                        stripes
                            .iter()
                            .flat_map(|a| [Value::Str(a.name.clone()), int(a.start.0)])
                            .collect(),
                    ),
                );
            }
            SegmentKind::Raid1 { region_size, legs } => {
                s.push("device_count", int(legs.len() as u64));
                if let Some(r) = region_size {
                    s.push("region_size", int(r.0));
                }
                s.push(
                    "raids",
                    Value::str_array(legs.iter().flat_map(|(m, i)| [m.clone(), i.clone()])),
                );
            }
            SegmentKind::ThinPool {
                metadata,
                pool,
                transaction_id,
                chunk_size,
            } => {
                s.push("metadata", Value::Str(metadata.clone()));
                s.push("pool", Value::Str(pool.clone()));
                s.push("transaction_id", int(*transaction_id));
                s.push("chunk_size", int(chunk_size.0));
            }
            SegmentKind::Thin {
                thin_pool,
                transaction_id,
                device_id,
                origin,
            } => {
                s.push("thin_pool", Value::Str(thin_pool.clone()));
                s.push("transaction_id", int(*transaction_id));
                // lvm2's `_thin_text_export` order: the origin after the device id.
                s.push("device_id", int(*device_id));
                if let Some(o) = origin {
                    s.push("origin", Value::Str(o.clone()));
                }
            }
            SegmentKind::Snapshot {
                chunk_size,
                origin,
                cow_store,
            } => {
                s.push("chunk_size", int(chunk_size.0));
                s.push("origin", Value::Str(origin.clone()));
                s.push("cow_store", Value::Str(cow_store.clone()));
            }
            SegmentKind::Other { body, .. } => s.items.extend(body.items.iter().cloned()),
        }
        push_extra(&mut s, &self.extra);
        s
    }
}
