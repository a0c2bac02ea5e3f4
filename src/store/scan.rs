//! Finding PVs on devices and assembling volume groups from their metadata copies.

use super::device::{Access, Device};
use super::mda_io::{header_in_head, read_mda, MdaOnDisk};
use super::StoreError;
use crate::format::label::{PvLabel, LABEL_SCAN_BYTES};
use crate::format::mda::{MdaHeader, MDA_HEADER_SIZE};
use crate::format::text;
use crate::model::{TextHeader, VolumeGroup};
use crate::units::Bytes;
use crate::uuid::Uuid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A device that carries a PV label.
#[derive(Debug)]
pub struct PvOnDisk {
    pub path: PathBuf,
    pub size: Bytes,
    pub label: PvLabel,
    /// The metadata areas that could be read.
    pub mdas: Vec<MdaOnDisk>,
    /// Areas that could not be read (bad header, checksum, text): as lvm2, the PV
    /// still counts and the VG is read from its other copies; the next commit rewrites
    /// these areas.
    pub damaged_mdas: Vec<DamagedMda>,
}

/// A metadata area (or the copy it holds) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedMda {
    pub start: Bytes,
    pub why: String,
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
    /// Shared: the daemon hands the cached model to every reader without copying it.
    pub vg: Arc<VolumeGroup>,
    pub header: TextHeader,
    /// The metadata text the VG was read from (the newest copy).
    pub text: String,
    /// Where each LV's entry lies in `text`, in `vg.lvs` order, when lvmd rendered it
    /// (see [`crate::model::render`]); empty for a text read from disk.
    pub lv_spans: Vec<std::ops::Range<usize>>,
    /// `vg` passed [`VolumeGroup::problems`] already: lvmd's commit checked it before
    /// writing it, so the next change need not check it again.
    pub checked: bool,
    /// For each PV of the VG by uuid, the device it was found on; absent ones are missing.
    pub devices: BTreeMap<Uuid, PathBuf>,
    /// Metadata copies older than `vg.seqno` (a crashed or interrupted commit, or a PV
    /// that was away): (device, seqno). The next commit brings them up to date.
    pub stale: Vec<(PathBuf, u64)>,
    /// Copies on this VG's PVs that cannot be read or parsed: (device, why). Read from
    /// the good copies; the next commit rewrites the damaged ones.
    pub damaged: Vec<(PathBuf, String)>,
    /// Why nothing may be written to this VG, though it can be read (two copies with
    /// one seqno that differ; a PV found on two devices).
    pub unwritable: Option<String>,
    /// The longest text the VG's metadata areas can all take (the smallest area's
    /// share: each keeps the old copy while the new one is written). 0 when no area
    /// could be read.
    pub metadata_capacity: Bytes,
    /// What proves the metadata unchanged later without reading it again; `None` when
    /// the VG is not whole and clean (a PV missing, a stale or damaged copy, read-only):
    /// such a VG is read in full every time.
    pub fingerprint: Option<Fingerprint>,
}

/// What proves a VG's metadata unchanged since it was read, without reading or parsing
/// its text: each PV's label and the headers of its metadata areas (where the live text
/// is, its size and checksum). Every commit, lvmd's or lvm2's, ends by rewriting the
/// header of each area it wrote the new text to, so the same headers on every PV mean
/// the same text. Compared under lvm2's lock, so no commit runs meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(pub Vec<PvHeaders>);

/// One PV's part of a [`Fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvHeaders {
    pub path: PathBuf,
    pub label: PvLabel,
    /// One per metadata area of the label, in its order.
    pub mdas: Vec<MdaHeader>,
}

impl Fingerprint {
    /// The fingerprint of the PVs `devices` (by uuid) as they are now; `None` when one
    /// cannot be read or no longer carries its PV (so nothing can be proven).
    ///
    /// The label's sectors and the header of an area at 4 KiB (where pvcreate puts the
    /// first one, lvm2's and lvmd's) come in one read: every request of the daemon
    /// starts with this, and each O_DIRECT read is a round trip to the device.
    pub fn read(devices: &BTreeMap<Uuid, PathBuf>) -> Option<Fingerprint> {
        let mut pvs = Vec::with_capacity(devices.len());
        for (uuid, path) in devices {
            let dev = Device::open(path, Access::Read).ok()?;
            let head = dev
                .read_at(Bytes(0), FINGERPRINT_HEAD.min(dev.size().0))
                .ok()?;
            let label = label_in(&dev, &head).ok()??;
            if label.pv_uuid != *uuid {
                return None;
            }
            let mdas = label
                .metadata_areas
                .iter()
                .map(|area| header_in_head(&dev, area, &head))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            pvs.push(PvHeaders {
                path: path.clone(),
                label,
                mdas,
            });
        }
        Some(Fingerprint(pvs))
    }
}

impl VgOnDisk {
    /// The text as a previous rendering for the next commit's (see
    /// [`crate::model::render`]): with no spans (a text read from disk), nothing of it
    /// is reused.
    pub fn as_previous(&self) -> crate::model::render::Previous<'_> {
        crate::model::render::Previous {
            vg: &self.vg,
            text: &self.text,
            layout: text::Layout::Disk,
            lv_spans: &self.lv_spans,
        }
    }

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

/// What a fingerprint reads of each PV at once: the label's sectors and the header of
/// a first metadata area at lvm2's 4 KiB.
const FINGERPRINT_HEAD: u64 = 4096 + MDA_HEADER_SIZE;

/// The PV label of a device; `Ok(None)`: none.
pub fn read_label(dev: &Device) -> Result<Option<PvLabel>, StoreError> {
    let head_len = (LABEL_SCAN_BYTES as u64).min(dev.size().0);
    let head = dev.read_at(Bytes(0), head_len)?;
    label_in(dev, &head)
}

/// The PV label in `head`, the device's first bytes (at least its label sectors, or
/// all of a smaller device).
fn label_in(dev: &Device, head: &[u8]) -> Result<Option<PvLabel>, StoreError> {
    let head = &head[..head.len().min(LABEL_SCAN_BYTES)];
    PvLabel::find(head).map_err(|source| StoreError::Label {
        path: dev.path().to_owned(),
        source,
    })
}

pub fn read_pv_from(dev: &Device) -> Result<Option<PvOnDisk>, StoreError> {
    let Some(label) = read_label(dev)? else {
        return Ok(None);
    };
    let mut mdas = Vec::new();
    let mut damaged_mdas = Vec::new();
    for area in &label.metadata_areas {
        match read_mda(dev, area) {
            Ok(m) => mdas.push(m),
            Err(e) => {
                tracing::warn!(device = %dev.path().display(), mda = area.offset.0,
                    "metadata area cannot be read, using the other copies: {e}");
                damaged_mdas.push(DamagedMda {
                    start: area.offset,
                    why: e.to_string(),
                });
            }
        }
    }
    Ok(Some(PvOnDisk {
        path: dev.path().to_owned(),
        size: dev.size(),
        label,
        mdas,
        damaged_mdas,
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
    /// Shared by the copies of one text (parsed once): at thousands of LVs each model
    /// is megabytes, and a copy per area put three or four of them in memory at once.
    vg: Arc<VolumeGroup>,
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
    ///
    /// Nothing on one device stops the others from being read: a copy that does not
    /// parse is skipped (and listed in its VG's `damaged`, when another copy says which
    /// VG its PV belongs to); a VG whose copies disagree at one seqno, or with a PV found
    /// on two devices, is listed `unwritable` with the reason: lvmd will not guess which
    /// one is right, and never writes through a clone.
    pub fn volume_groups(&self) -> Result<Vec<VgOnDisk>, StoreError> {
        let mut parsed: BTreeMap<&str, Option<(Arc<VolumeGroup>, TextHeader)>> = BTreeMap::new();
        let mut copies: Vec<Copy> = Vec::new();
        // Copies that did not parse, by the PV they are on.
        let mut unparsed: Vec<(&PvOnDisk, String)> = Vec::new();
        for pv in &self.pvs {
            for mda in &pv.mdas {
                let Some(text) = mda.text.as_deref() else {
                    continue;
                };
                let entry = parsed.entry(text).or_insert_with(|| {
                    match parse_copy(text, &pv.path, mda.header.start) {
                        Ok((vg, header)) => Some((Arc::new(vg), header)),
                        Err(e) => {
                            tracing::warn!("skipping a metadata copy: {e}");
                            None
                        }
                    }
                });
                match entry {
                    Some((vg, header)) => copies.push(Copy {
                        path: &pv.path,
                        text,
                        vg: Arc::clone(vg),
                        header: header.clone(),
                    }),
                    None => unparsed.push((
                        pv,
                        format!(
                            "metadata area at byte {}: the text does not parse",
                            mda.header.start
                        ),
                    )),
                }
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
            let mut unwritable = list[1..]
                .iter()
                .find(|c| c.vg.seqno == newest.vg.seqno && c.vg != newest.vg)
                .map(|conflict| {
                    format!(
                        "{} and {} hold different metadata with the same seqno {}",
                        newest.path.display(),
                        conflict.path.display(),
                        newest.vg.seqno
                    )
                });
            let mut devices = BTreeMap::new();
            let mut damaged = Vec::new();
            let mut metadata_capacity: Option<u64> = None;
            for pv in &newest.vg.pvs {
                let found: Vec<&PvOnDisk> = self
                    .pvs
                    .iter()
                    .filter(|d| d.label.pv_uuid == pv.id)
                    .collect();
                match found.as_slice() {
                    [] => {}
                    [one] => {
                        devices.insert(pv.id, one.path.clone());
                    }
                    [a, b, ..] => {
                        // A `dd` copy of a disk, or one disk seen twice. Either could
                        // be the one the VG's other PVs go with: the PV counts as
                        // missing, so nothing is activated or written through it.
                        let why = format!(
                            "PV {} ({}) is on both {} and {}; lvmd uses neither (remove \
                             or change the copy, e.g. with lvm2's vgimportclone)",
                            pv.name,
                            pv.id,
                            a.path.display(),
                            b.path.display()
                        );
                        tracing::warn!(vg = %newest.vg.name, "{why}");
                        unwritable.get_or_insert(why);
                    }
                }
                for d in &found {
                    for m in d.mdas.iter().filter(|m| !m.header.is_ignored()) {
                        let cap = m.header.max_text_size();
                        metadata_capacity = Some(metadata_capacity.map_or(cap, |c| c.min(cap)));
                    }
                    damaged.extend(d.damaged_mdas.iter().map(|m| {
                        (
                            d.path.clone(),
                            format!("metadata area at byte {}: {}", m.start, m.why),
                        )
                    }));
                    damaged.extend(
                        unparsed
                            .iter()
                            .filter(|(u, _)| std::ptr::eq(*u, *d))
                            .map(|(_, why)| (d.path.clone(), why.clone())),
                    );
                }
            }
            if let Some(why) = &unwritable {
                tracing::warn!(vg = %newest.vg.name, "volume group is read-only to lvmd: {why}");
            }
            let stale: Vec<(PathBuf, u64)> = list
                .iter()
                .filter(|c| c.vg.seqno < newest.vg.seqno)
                .map(|c| (c.path.to_owned(), c.vg.seqno))
                .collect();
            let whole = unwritable.is_none()
                && stale.is_empty()
                && damaged.is_empty()
                && devices.len() == newest.vg.pvs.len();
            let fingerprint = whole.then(|| self.fingerprint_of(&devices)).flatten();
            out.push(VgOnDisk {
                vg: Arc::clone(&newest.vg),
                header: newest.header.clone(),
                text: newest.text.to_owned(),
                lv_spans: Vec::new(),
                checked: false,
                devices,
                stale,
                damaged,
                unwritable,
                metadata_capacity: Bytes(metadata_capacity.unwrap_or(0)),
                fingerprint,
            });
        }
        out.sort_by(|a, b| a.vg.name.cmp(&b.vg.name));
        Ok(out)
    }
}

impl Scan {
    /// The fingerprint of `devices` from what this scan read of them.
    fn fingerprint_of(&self, devices: &BTreeMap<Uuid, PathBuf>) -> Option<Fingerprint> {
        let pvs = devices.values().map(|path| {
            let pv = self.pvs.iter().find(|p| &p.path == path)?;
            // Every area read: else the scan's damaged list was not empty.
            (pv.mdas.len() == pv.label.metadata_areas.len()).then(|| PvHeaders {
                path: path.clone(),
                label: pv.label.clone(),
                mdas: pv.mdas.iter().map(|m| m.header.clone()).collect(),
            })
        });
        pvs.collect::<Option<Vec<_>>>().map(Fingerprint)
    }
}

/// One copy's text, parsed into a VG.
fn parse_copy(
    text: &str,
    path: &Path,
    mda_start: Bytes,
) -> Result<(VolumeGroup, TextHeader), StoreError> {
    let doc = text::parse(text).map_err(|source| StoreError::Text {
        path: path.to_owned(),
        mda_start,
        source,
    })?;
    VolumeGroup::from_document(&doc).map_err(|source| StoreError::Model {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::mda::MdaHeader;

    fn fixture_text() -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lvm2/simple/vgcfgbackup.txt");
        std::fs::read_to_string(p).unwrap()
    }

    /// The fixture VG's first PV, holding one copy per text given.
    fn pv_with_copies(texts: &[&str]) -> PvOnDisk {
        let doc = text::parse(&fixture_text()).unwrap();
        let vg = VolumeGroup::from_document(&doc).unwrap().0;
        let mdas = texts
            .iter()
            .enumerate()
            .map(|(i, t)| MdaOnDisk {
                header: MdaHeader::new_empty(Bytes(4096 + i as u64 * 1024), Bytes(1024)),
                text: Some(t.to_string()),
                location: None,
            })
            .collect();
        PvOnDisk {
            path: PathBuf::from("/dev/fake0"),
            size: Bytes(1 << 30),
            label: PvLabel::new(vg.pvs[0].id, Bytes(1 << 30), vec![], vec![]),
            mdas,
            damaged_mdas: vec![],
        }
    }

    #[test]
    fn a_copy_that_does_not_parse_is_skipped_and_named() {
        let good = fixture_text();
        let scan = Scan {
            pvs: vec![pv_with_copies(&["garbage { {", &good])],
            ..Default::default()
        };
        let vgs = scan.volume_groups().unwrap();
        assert_eq!(vgs.len(), 1);
        assert_eq!(vgs[0].damaged.len(), 1, "{:?}", vgs[0].damaged);
        assert!(vgs[0].damaged[0].1.contains("does not parse"));
        assert!(vgs[0].unwritable.is_none());
        // Alone, it hides nothing else and fails nothing.
        let scan = Scan {
            pvs: vec![pv_with_copies(&["garbage { {"])],
            ..Default::default()
        };
        assert!(scan.volume_groups().unwrap().is_empty());
    }

    #[test]
    fn copies_that_disagree_at_one_seqno_make_the_vg_unwritable_not_the_scan_fail() {
        let good = fixture_text();
        let other = good.replacen("extent_size = ", "max_lv = 7\nextent_size = ", 1);
        assert_ne!(good, other);
        let scan = Scan {
            pvs: vec![pv_with_copies(&[&good, &other])],
            ..Default::default()
        };
        let vgs = scan.volume_groups().unwrap();
        assert_eq!(vgs.len(), 1);
        let why = vgs[0].unwritable.as_deref().unwrap();
        assert!(why.contains("same seqno"), "{why}");
    }
}
