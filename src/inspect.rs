//! `lvmd-ctl inspect`: what is on a set of devices, read straight from disk with no
//! daemon and no lock, as a report for people (tables) or scripts (JSON).

use crate::model::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::store::scan::{scan_devices, PvOnDisk, VgOnDisk};
use crate::units::{human_bytes, Bytes};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct Report {
    pub devices: Vec<DeviceReport>,
    pub volume_groups: Vec<VgReport>,
    /// Problems that stopped a device or VG from being read.
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DeviceReport {
    pub path: PathBuf,
    pub size_bytes: Option<u64>,
    /// `None`: no PV label.
    pub pv: Option<PvReport>,
}

#[derive(Debug, Serialize)]
pub struct AreaReport {
    pub offset_bytes: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct MdaReport {
    pub offset_bytes: u64,
    pub size_bytes: u64,
    pub ignored: bool,
    /// Where the live metadata text sits, relative to the area.
    pub text_offset_bytes: Option<u64>,
    pub text_size_bytes: Option<u64>,
    pub text_checksum: Option<String>,
    pub vg_name: Option<String>,
    pub seqno: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct PvReport {
    pub uuid: String,
    pub label_sector: u64,
    pub device_size_bytes: u64,
    pub data_areas: Vec<AreaReport>,
    pub metadata_areas: Vec<MdaReport>,
    pub ext_version: u32,
    pub ext_flags: u32,
    pub in_use: bool,
}

#[derive(Debug, Serialize)]
pub struct VgReport {
    pub name: String,
    pub uuid: String,
    pub seqno: u64,
    pub extent_size_bytes: u64,
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub status: Vec<String>,
    pub tags: Vec<String>,
    pub pvs: Vec<VgPvReport>,
    pub lvs: Vec<LvReport>,
    /// Devices holding an older copy of the metadata, with its seqno.
    pub stale_copies: Vec<(PathBuf, u64)>,
    /// Copies that cannot be read or parsed: (device, why); the VG is read from the
    /// others and the next change rewrites these.
    pub damaged_copies: Vec<(PathBuf, String)>,
    /// Why lvmd would refuse to write this VG (copies that disagree, a PV on two
    /// devices).
    pub unwritable: Option<String>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct VgPvReport {
    pub name: String,
    pub uuid: String,
    /// Where the PV was found; `None` when it is missing.
    pub device: Option<PathBuf>,
    pub size_bytes: u64,
    pub pe_start_bytes: u64,
    pub pe_count: u64,
    pub free_extents: u64,
}

#[derive(Debug, Serialize)]
pub struct LvReport {
    pub name: String,
    pub uuid: String,
    pub size_bytes: u64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub visible: bool,
    pub status: Vec<String>,
    pub tags: Vec<String>,
    pub creation_host: Option<String>,
    pub creation_time: Option<i64>,
    pub segments: Vec<SegmentReport>,
}

#[derive(Debug, Serialize)]
pub struct SegmentReport {
    pub start_extent: u64,
    pub extent_count: u64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub stripe_size_bytes: Option<u64>,
    /// `name:first_extent` for each area (a PV or a sub-LV), or the LVs the segment uses.
    pub areas: Vec<String>,
}

fn pv_report(pv: &PvOnDisk) -> PvReport {
    PvReport {
        uuid: pv.label.pv_uuid.to_string(),
        label_sector: pv.label.sector,
        device_size_bytes: pv.label.device_size.0,
        data_areas: pv
            .label
            .data_areas
            .iter()
            .map(|a| AreaReport {
                offset_bytes: a.offset.0,
                size_bytes: a.size.0,
            })
            .collect(),
        metadata_areas: pv
            .mdas
            .iter()
            .map(|m| {
                let vg = m.text.as_deref().and_then(vg_name_and_seqno);
                MdaReport {
                    offset_bytes: m.header.start.0,
                    size_bytes: m.header.size.0,
                    ignored: m.header.is_ignored(),
                    text_offset_bytes: m.location.map(|l| l.offset.0),
                    text_size_bytes: m.location.map(|l| l.size.0),
                    text_checksum: m.location.map(|l| format!("{:#010x}", l.checksum)),
                    vg_name: vg.as_ref().map(|v| v.0.clone()),
                    seqno: vg.map(|v| v.1),
                }
            })
            .collect(),
        ext_version: pv.label.ext_version,
        ext_flags: pv.label.ext_flags,
        in_use: pv.label.is_used(),
    }
}

fn vg_name_and_seqno(text: &str) -> Option<(String, u64)> {
    let doc = crate::format::text::parse(text).ok()?;
    let (name, body) = doc.sections().next()?;
    Some((name.to_owned(), body.get_int("seqno")? as u64))
}

fn segment_report(vg: &VolumeGroup, seg: &crate::model::Segment) -> SegmentReport {
    let (stripe_size, areas) = match &seg.kind {
        SegmentKind::Striped {
            stripe_size,
            stripes,
        } => (
            stripe_size.map(|s| s.to_bytes().0),
            stripes
                .iter()
                .map(|a| format!("{}:{}", a.name, a.start.0))
                .collect(),
        ),
        other => (
            None,
            other
                .lv_references()
                .into_iter()
                .filter(|n| vg.lv(n).is_some())
                .map(str::to_owned)
                .collect(),
        ),
    };
    SegmentReport {
        start_extent: seg.start_extent.0,
        extent_count: seg.extent_count.0,
        type_name: seg.kind.display_type().to_owned(),
        stripe_size_bytes: stripe_size,
        areas,
    }
}

fn lv_report(vg: &VolumeGroup, lv: &LogicalVolume) -> LvReport {
    LvReport {
        name: lv.name.clone(),
        uuid: lv.id.to_string(),
        size_bytes: vg.extent_size.span(lv.extents()).to_bytes().0,
        type_name: lv.type_name().to_owned(),
        visible: lv.is_visible(),
        status: lv.status.clone(),
        tags: lv.tags.clone(),
        creation_host: lv.creation_host.clone(),
        creation_time: lv.creation_time,
        segments: lv.segments.iter().map(|s| segment_report(vg, s)).collect(),
    }
}

fn vg_report(found: &VgOnDisk) -> VgReport {
    let vg = &found.vg;
    let used = vg.used_extents();
    let es = vg.extent_size;
    VgReport {
        name: vg.name.clone(),
        uuid: vg.id.to_string(),
        seqno: vg.seqno,
        extent_size_bytes: es.bytes().0,
        size_bytes: es.span(vg.total_extents()).to_bytes().0,
        free_bytes: es.span(vg.free_extents()).to_bytes().0,
        status: vg.status.clone(),
        tags: vg.tags.clone(),
        pvs: vg
            .pvs
            .iter()
            .map(|pv| VgPvReport {
                name: pv.name.clone(),
                uuid: pv.id.to_string(),
                device: found.devices.get(&pv.id).cloned(),
                size_bytes: pv.dev_size.to_bytes().0,
                pe_start_bytes: pv.pe_start.to_bytes().0,
                pe_count: pv.pe_count.0,
                free_extents: pv
                    .pe_count
                    .0
                    .saturating_sub(used.get(pv.name.as_str()).map_or(0, |e| e.0)),
            })
            .collect(),
        lvs: vg.lvs.iter().map(|lv| lv_report(vg, lv)).collect(),
        stale_copies: found.stale.clone(),
        damaged_copies: found.damaged.clone(),
        unwritable: found.unwritable.clone(),
        problems: vg.problems().iter().map(|p| p.to_string()).collect(),
    }
}

/// Reads everything the devices hold.
pub fn inspect<P: AsRef<Path>>(paths: &[P]) -> Report {
    let scan = scan_devices(paths);
    let mut errors: Vec<String> = scan.errors.iter().map(|e| e.to_string()).collect();
    let mut devices: Vec<DeviceReport> = paths
        .iter()
        .map(|p| {
            let p = p.as_ref();
            let pv = scan.pvs.iter().find(|pv| pv.path == p);
            DeviceReport {
                path: p.to_owned(),
                size_bytes: pv.map(|pv| pv.size.0).or_else(|| {
                    crate::store::Device::open(p, crate::store::Access::Read)
                        .ok()
                        .map(|d| d.size().0)
                }),
                pv: pv.map(pv_report),
            }
        })
        .collect();
    devices.sort_by(|a, b| a.path.cmp(&b.path));
    let volume_groups = match scan.volume_groups() {
        Ok(vgs) => vgs.iter().map(vg_report).collect(),
        Err(e) => {
            errors.push(e.to_string());
            Vec::new()
        }
    };
    Report {
        devices,
        volume_groups,
        errors,
    }
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let l: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", l.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn b(bytes: u64) -> String {
    human_bytes(Bytes(bytes))
}

impl Report {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let rows: Vec<Vec<String>> = self
            .devices
            .iter()
            .map(|d| {
                let size = d.size_bytes.map_or("?".into(), b);
                match &d.pv {
                    None => vec![
                        d.path.display().to_string(),
                        size,
                        "-".into(),
                        "no PV label".into(),
                    ],
                    Some(pv) => {
                        let mdas: Vec<String> = pv
                            .metadata_areas
                            .iter()
                            .map(|m| {
                                let what = match (&m.vg_name, m.seqno) {
                                    _ if m.ignored => "ignored".to_string(),
                                    (Some(n), Some(s)) => format!("{n} seqno {s}"),
                                    _ => "empty".to_string(),
                                };
                                format!("{}+{} {what}", b(m.offset_bytes), b(m.size_bytes))
                            })
                            .collect();
                        vec![
                            d.path.display().to_string(),
                            size,
                            pv.uuid.clone(),
                            if mdas.is_empty() {
                                "no metadata areas".into()
                            } else {
                                mdas.join("; ")
                            },
                        ]
                    }
                }
            })
            .collect();
        out.push_str(&table(
            &["DEVICE", "SIZE", "PV UUID", "METADATA AREAS"],
            &rows,
        ));

        for vg in &self.volume_groups {
            let _ = writeln!(
                out,
                "\nVolume group {}  uuid {}  seqno {}  extent {}  size {}  free {}{}",
                vg.name,
                vg.uuid,
                vg.seqno,
                b(vg.extent_size_bytes),
                b(vg.size_bytes),
                b(vg.free_bytes),
                if vg.tags.is_empty() {
                    String::new()
                } else {
                    format!("  tags {}", vg.tags.join(","))
                }
            );
            let rows: Vec<Vec<String>> = vg
                .pvs
                .iter()
                .map(|pv| {
                    vec![
                        pv.name.clone(),
                        pv.device
                            .as_ref()
                            .map_or("MISSING".into(), |d| d.display().to_string()),
                        pv.uuid.clone(),
                        b(pv.size_bytes),
                        b(pv.pe_start_bytes),
                        pv.pe_count.to_string(),
                        pv.free_extents.to_string(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "PV", "DEVICE", "UUID", "SIZE", "PE START", "EXTENTS", "FREE",
                ],
                &rows,
            ));
            if !vg.lvs.is_empty() {
                out.push('\n');
                let rows: Vec<Vec<String>> = vg
                    .lvs
                    .iter()
                    .map(|lv| {
                        let segs: Vec<String> = lv
                            .segments
                            .iter()
                            .map(|s| {
                                format!(
                                    "{}+{} {}{} [{}]",
                                    s.start_extent,
                                    s.extent_count,
                                    s.type_name,
                                    s.stripe_size_bytes
                                        .map_or(String::new(), |ss| format!(" {}", b(ss))),
                                    s.areas.join(" ")
                                )
                            })
                            .collect();
                        vec![
                            if lv.visible {
                                lv.name.clone()
                            } else {
                                format!("[{}]", lv.name)
                            },
                            b(lv.size_bytes),
                            lv.type_name.clone(),
                            lv.tags.join(","),
                            segs.join("; "),
                        ]
                    })
                    .collect();
                out.push_str(&table(&["LV", "SIZE", "TYPE", "TAGS", "SEGMENTS"], &rows));
            }
            for (path, seqno) in &vg.stale_copies {
                let _ = writeln!(
                    out,
                    "note: {} holds an older copy (seqno {seqno}); the next change updates it",
                    path.display()
                );
            }
            for (path, why) in &vg.damaged_copies {
                let _ = writeln!(
                    out,
                    "WARNING: {}: {why}; read from the other copies, the next change rewrites it",
                    path.display()
                );
            }
            if let Some(why) = &vg.unwritable {
                let _ = writeln!(out, "PROBLEM: lvmd will not write this VG: {why}");
            }
            for p in &vg.problems {
                let _ = writeln!(out, "PROBLEM: {p}");
            }
        }
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
        out
    }
}
