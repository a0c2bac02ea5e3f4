//! The volume group and its physical volumes, read from and written to the text tree.

use super::fields::{int, push_extra, push_list, push_tags, Fields};
use super::lv::LogicalVolume;
use super::ModelError;
use crate::format::text::{Document, Item, Section, Value};
use crate::units::{ExtentSize, Extents, Sectors};
use crate::uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct PhysicalVolume {
    /// The key in `physical_volumes` (`pv0`, ...); segments refer to PVs by it.
    pub name: String,
    pub id: Uuid,
    /// The path the writer last saw the PV at. A hint only: PVs are found by uuid.
    pub device: Option<String>,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    pub dev_size: Sectors,
    pub pe_start: Sectors,
    pub pe_count: Extents,
    /// `device_id`, `device_id_type`, `ba_start`, `ba_size`, ...
    pub extra: Section,
}

impl PhysicalVolume {
    pub fn is_allocatable(&self) -> bool {
        self.status.iter().any(|s| s == "ALLOCATABLE")
    }
    pub fn is_missing(&self) -> bool {
        self.flags.iter().any(|s| s == "MISSING") || self.status.iter().any(|s| s == "MISSING")
    }

    fn from_section(name: &str, section: &Section, vg_path: &str) -> Result<Self, ModelError> {
        let mut f = Fields::new(section, format!("{vg_path}/physical_volumes/{name}"));
        let pv = PhysicalVolume {
            name: name.to_owned(),
            id: f.uuid("id")?,
            device: f.opt_str("device")?,
            status: f.str_list("status")?,
            flags: f.str_list("flags")?,
            tags: f.str_list("tags")?,
            dev_size: Sectors(f.u64("dev_size")?),
            pe_start: Sectors(f.u64("pe_start")?),
            pe_count: Extents(f.u64("pe_count")?),
            extra: Section::new(),
        };
        Ok(PhysicalVolume {
            extra: f.rest(),
            ..pv
        })
    }

    fn to_section(&self) -> Section {
        let mut s = Section::new();
        s.push("id", Value::Str(self.id.to_string()));
        if let Some(d) = &self.device {
            s.push("device", Value::Str(d.clone()));
        }
        push_list(&mut s, "status", &self.status);
        push_list(&mut s, "flags", &self.flags);
        push_tags(&mut s, &self.tags);
        s.push("dev_size", int(self.dev_size.0));
        s.push("pe_start", int(self.pe_start.0));
        s.push("pe_count", int(self.pe_count.0));
        push_extra(&mut s, &self.extra);
        s
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeGroup {
    pub name: String,
    pub id: Uuid,
    pub seqno: u64,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    pub extent_size: ExtentSize,
    pub max_lv: u64,
    pub max_pv: u64,
    pub metadata_copies: u64,
    pub pvs: Vec<PhysicalVolume>,
    pub lvs: Vec<LogicalVolume>,
    /// VG keys and sections lvmd does not interpret (`system_id`, `lock_type`,
    /// `historical_logical_volumes`, ...).
    pub extra: Section,
}

/// The top-level keys that follow the VG section: who wrote it, when and why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextHeader {
    pub description: String,
    pub creation_host: String,
    pub creation_time: i64,
}

/// The `contents` value of every metadata text lvm2 writes (on disk and in backups).
pub const CONTENTS: &str = "Text Format Volume Group";

impl VolumeGroup {
    pub fn lv(&self, name: &str) -> Option<&LogicalVolume> {
        self.lvs.iter().find(|lv| lv.name == name)
    }
    pub fn lv_mut(&mut self, name: &str) -> Option<&mut LogicalVolume> {
        self.lvs.iter_mut().find(|lv| lv.name == name)
    }
    pub fn pv(&self, name: &str) -> Option<&PhysicalVolume> {
        self.pvs.iter().find(|pv| pv.name == name)
    }
    pub fn pv_by_id(&self, id: &Uuid) -> Option<&PhysicalVolume> {
        self.pvs.iter().find(|pv| &pv.id == id)
    }
    pub fn total_extents(&self) -> Extents {
        self.pvs
            .iter()
            .fold(Extents::ZERO, |acc, pv| acc + pv.pe_count)
    }
    pub fn is_writeable(&self) -> bool {
        self.status.iter().any(|s| s == "WRITE")
    }

    /// Reads a whole metadata text tree.
    pub fn from_document(doc: &Document) -> Result<(VolumeGroup, TextHeader), ModelError> {
        let top = |why: String| ModelError::Invalid {
            path: "(top level)".into(),
            why,
        };
        match doc.get_str("contents") {
            Some(CONTENTS) => {}
            other => return Err(top(format!("contents is {other:?}, not {CONTENTS:?}"))),
        }
        match doc.get_int("version") {
            Some(1) => {}
            other => {
                return Err(ModelError::Unsupported {
                    path: "(top level)".into(),
                    why: format!("metadata version {other:?}; only 1 exists"),
                })
            }
        }
        let mut vgs = doc.sections();
        let (name, body) = vgs
            .next()
            .ok_or_else(|| top("no volume group section".into()))?;
        if let Some((other, _)) = vgs.next() {
            return Err(top(format!(
                "two volume group sections, {name:?} and {other:?}"
            )));
        }
        let header = TextHeader {
            description: doc.get_str("description").unwrap_or("").to_owned(),
            creation_host: doc.get_str("creation_host").unwrap_or("").to_owned(),
            creation_time: doc.get_int("creation_time").unwrap_or(0),
        };
        Ok((VolumeGroup::from_section(name, body)?, header))
    }

    fn from_section(name: &str, section: &Section) -> Result<VolumeGroup, ModelError> {
        let mut f = Fields::new(section, name.to_owned());
        let id = f.uuid("id")?;
        let seqno = f.u64("seqno")?;
        let format = f.opt_str("format")?;
        if let Some(fmt) = format.as_deref().filter(|f| *f != "lvm2") {
            return Err(ModelError::Unsupported {
                path: name.into(),
                why: format!("format {fmt:?}"),
            });
        }
        let status = f.str_list("status")?;
        let flags = f.str_list("flags")?;
        let tags = f.str_list("tags")?;
        let extent_sectors = f.u64("extent_size")?;
        let extent_size = ExtentSize::new(Sectors(extent_sectors)).ok_or_else(|| {
            f.invalid(format!(
                "extent_size {extent_sectors} is not a power of two of at least 2 sectors"
            ))
        })?;
        let max_lv = f.opt_u64("max_lv")?.unwrap_or(0);
        let max_pv = f.opt_u64("max_pv")?.unwrap_or(0);
        let metadata_copies = f.opt_u64("metadata_copies")?.unwrap_or(0);

        let mut pvs = Vec::new();
        if let Some(list) = f.subsection("physical_volumes") {
            for (pv_name, body) in list.sections() {
                pvs.push(PhysicalVolume::from_section(pv_name, body, name)?);
            }
        }
        let mut lvs = Vec::new();
        if let Some(list) = f.subsection("logical_volumes") {
            for (lv_name, body) in list.sections() {
                lvs.push(LogicalVolume::from_section(lv_name, body, name)?);
            }
        }
        let vg = VolumeGroup {
            name: name.to_owned(),
            id,
            seqno,
            status,
            flags,
            tags,
            extent_size,
            max_lv,
            max_pv,
            metadata_copies,
            pvs,
            lvs,
            extra: f.rest(),
        };
        Ok(vg)
    }

    /// The whole text tree. `backup_order` puts the header keys first, as lvm2's
    /// backup files do; on disk they follow the VG section.
    pub fn to_document(&self, header: &TextHeader, backup_order: bool) -> Document {
        self.document(header, backup_order, true)
    }

    /// `with_lvs: false`: the `logical_volumes` section is there when the VG has LVs,
    /// but empty (see [`super::render`], which writes its entries).
    pub(super) fn document(
        &self,
        header: &TextHeader,
        backup_order: bool,
        with_lvs: bool,
    ) -> Document {
        let mut head = Section::new();
        head.push("contents", Value::Str(CONTENTS.into()));
        head.push("version", Value::Int(1));
        head.push("description", Value::Str(header.description.clone()));
        head.push("creation_host", Value::Str(header.creation_host.clone()));
        head.push("creation_time", Value::Int(header.creation_time));
        let vg = Item::Section {
            name: self.name.clone(),
            body: self.to_section(with_lvs),
        };
        let mut doc = Document::new();
        if backup_order {
            doc.items = head.items;
            doc.items.push(vg);
        } else {
            doc.items.push(vg);
            doc.items.extend(head.items);
        }
        doc
    }

    fn to_section(&self, with_lvs: bool) -> Section {
        let mut s = Section::new();
        s.push("id", Value::Str(self.id.to_string()));
        s.push("seqno", int(self.seqno));
        s.push("format", Value::Str("lvm2".into()));
        push_list(&mut s, "status", &self.status);
        push_list(&mut s, "flags", &self.flags);
        push_tags(&mut s, &self.tags);
        s.push("extent_size", int(self.extent_size.sectors().0));
        s.push("max_lv", int(self.max_lv));
        s.push("max_pv", int(self.max_pv));
        s.push("metadata_copies", int(self.metadata_copies));
        let mut pvs = Section::new();
        for pv in &self.pvs {
            pvs.push_section(&pv.name, pv.to_section());
        }
        s.push_section("physical_volumes", pvs);
        // lvm2 omits an empty logical_volumes section.
        if !self.lvs.is_empty() {
            let mut lvs = Section::new();
            if with_lvs {
                for lv in &self.lvs {
                    lvs.push_section(&lv.name, lv.to_section());
                }
            }
            s.push_section("logical_volumes", lvs);
        }
        push_extra(&mut s, &self.extra);
        s
    }
}
