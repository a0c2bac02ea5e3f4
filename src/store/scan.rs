//! Finding PVs on devices and assembling volume groups from their metadata copies.

use super::device::{Access, Device};
use super::mda_io::{read_mda, MdaOnDisk};
use super::StoreError;
use crate::format::label::{PvLabel, LABEL_SCAN_BYTES};
use crate::format::text;
use crate::model::{TextHeader, VolumeGroup};
use crate::units::Bytes;
use crate::uuid::Uuid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A device that carries a PV label.
#[derive(Debug)]
pub struct PvOnDisk {
    pub path: PathBuf,
    pub size: Bytes,
    pub label: PvLabel,
    pub mdas: Vec<MdaOnDisk>,
}

/// What a scan of a list of devices found.
#[derive(Debug, Default)]
pub struct Scan {
    pub pvs: Vec<PvOnDisk>,
    /// Devices that could be read but carry no PV label.
    pub unlabelled: Vec<PathBuf>,
    /// Devices that could not be read, or whose label is damaged.
    pub errors: Vec<StoreError>,
}

/// A volume group as found on disk: the newest copy of its metadata and where its PVs are.
#[derive(Debug, Clone)]
pub struct VgOnDisk {
    pub vg: VolumeGroup,
    pub header: TextHeader,
    /// The metadata text the VG was read from (the newest copy).
    pub text: String,
    /// For each PV of the VG by uuid, the device it was found on; absent ones are missing.
    pub devices: BTreeMap<Uuid, PathBuf>,
    /// Metadata copies older than `vg.seqno` (a crashed or interrupted commit, or a PV
    /// that was away): (device, seqno). The next commit brings them up to date.
    pub stale: Vec<(PathBuf, u64)>,
}

impl VgOnDisk {
    pub fn missing_pvs(&self) -> Vec<&crate::model::PhysicalVolume> {
        self.vg
            .pvs
            .iter()
            .filter(|pv| !self.devices.contains_key(&pv.id))
            .collect()
    }
}

/// Reads the label and metadata areas of one device. `Ok(None)`: no PV label.
pub fn read_pv(path: &Path) -> Result<Option<PvOnDisk>, StoreError> {
    let dev = Device::open(path, Access::Read)?;
    read_pv_from(&dev)
}

pub fn read_pv_from(dev: &Device) -> Result<Option<PvOnDisk>, StoreError> {
    let head_len = (LABEL_SCAN_BYTES as u64).min(dev.size().0);
    let head = dev.read_at(Bytes(0), head_len)?;
    let label = match PvLabel::find(&head) {
        Ok(Some(label)) => label,
        Ok(None) => return Ok(None),
        Err(source) => {
            return Err(StoreError::Label {
                path: dev.path().to_owned(),
                source,
            })
        }
    };
    let mdas = label
        .metadata_areas
        .iter()
        .map(|area| read_mda(dev, area))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(PvOnDisk {
        path: dev.path().to_owned(),
        size: dev.size(),
        label,
        mdas,
    }))
}

/// Reads every device; failures are collected, not fatal, so one bad disk does not hide
/// the rest.
pub fn scan_devices<P: AsRef<Path>>(paths: &[P]) -> Scan {
    let mut scan = Scan::default();
    for p in paths {
        let p = p.as_ref();
        match read_pv(p) {
            Ok(Some(pv)) => scan.pvs.push(pv),
            Ok(None) => scan.unlabelled.push(p.to_owned()),
            Err(e) => scan.errors.push(e),
        }
    }
    scan
}

/// One parsed metadata copy.
struct Copy<'a> {
    path: &'a Path,
    text: &'a str,
    vg: VolumeGroup,
    header: TextHeader,
}

impl Scan {
    /// PVs whose metadata areas hold no VG (and that are not listed by any VG found).
    pub fn orphans(&self) -> Result<Vec<&PvOnDisk>, StoreError> {
        let vgs = self.volume_groups()?;
        Ok(self
            .pvs
            .iter()
            .filter(|pv| {
                !vgs.iter()
                    .any(|vg| vg.devices.contains_key(&pv.label.pv_uuid))
            })
            .collect())
    }

    /// Assembles VGs from all copies: per VG uuid the highest seqno wins, as in lvm2.
    /// Two copies with the same seqno and different content are an error: lvmd will
    /// not guess which one is right.
    pub fn volume_groups(&self) -> Result<Vec<VgOnDisk>, StoreError> {
        let mut parsed: BTreeMap<&str, (VolumeGroup, TextHeader)> = BTreeMap::new();
        let mut copies: Vec<Copy> = Vec::new();
        for pv in &self.pvs {
            for mda in &pv.mdas {
                let Some(text) = mda.text.as_deref() else {
                    continue;
                };
                if !parsed.contains_key(text) {
                    let doc = text::parse(text).map_err(|source| StoreError::Text {
                        path: pv.path.clone(),
                        mda_start: mda.header.start,
                        source,
                    })?;
                    let vg =
                        VolumeGroup::from_document(&doc).map_err(|source| StoreError::Model {
                            path: pv.path.clone(),
                            source,
                        })?;
                    parsed.insert(text, vg);
                }
                let (vg, header) = parsed[text].clone();
                copies.push(Copy {
                    path: &pv.path,
                    text,
                    vg,
                    header,
                });
            }
        }

        let mut by_id: BTreeMap<Uuid, Vec<Copy>> = BTreeMap::new();
        for c in copies {
            by_id.entry(c.vg.id).or_default().push(c);
        }
        let mut out = Vec::new();
        for (_, mut list) in by_id {
            list.sort_by_key(|c| std::cmp::Reverse(c.vg.seqno));
            let newest = &list[0];
            if let Some(conflict) = list[1..]
                .iter()
                .find(|c| c.vg.seqno == newest.vg.seqno && c.vg != newest.vg)
            {
                return Err(StoreError::Inconsistent {
                    vg: newest.vg.name.clone(),
                    why: format!(
                        "{} and {} hold different metadata with the same seqno {}",
                        newest.path.display(),
                        conflict.path.display(),
                        newest.vg.seqno
                    ),
                });
            }
            let mut devices = BTreeMap::new();
            for pv in &newest.vg.pvs {
                if let Some(found) = self.pvs.iter().find(|d| d.label.pv_uuid == pv.id) {
                    devices.insert(pv.id, found.path.clone());
                }
            }
            let stale = list
                .iter()
                .filter(|c| c.vg.seqno < newest.vg.seqno)
                .map(|c| (c.path.to_owned(), c.vg.seqno))
                .collect();
            out.push(VgOnDisk {
                vg: newest.vg.clone(),
                header: newest.header.clone(),
                text: newest.text.to_owned(),
                devices,
                stale,
            });
        }
        out.sort_by(|a, b| a.vg.name.cmp(&b.vg.name));
        Ok(out)
    }
}
