//! The simulated engine: volume groups in memory, on devices that are only names with
//! sizes. Allocation is lvmd's real allocator on the real VG model, so capacity numbers
//! and "no space" answers are those the real engine would give on the same layout;
//! errors are the `Lvm` library's own variants, so the status mapping is exercised too.

use super::activation::{Activation, SimActivation};
use super::engine::{LvLayout, LvSpec};
use super::node::{Node, SimNode};
use super::node_work::NodeWork;
use super::view::pv_spaces;
use super::volumes::{Metadata, VgRead, VolumeEngine};
use crate::alloc::{self, Allocation, Request};
use crate::format::text::Section;
use crate::lvm::LvmError;
use crate::model::{Area, LogicalVolume, PhysicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::store::StoreError;
use crate::units::{Bytes, ExtentSize, Extents, Sectors, SECTOR_SIZE};
use crate::uuid::Uuid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where extents start on a simulated PV, as lvm2's default.
const PE_START: Sectors = Sectors(2048);

#[derive(Debug, Default)]
struct State {
    /// Devices that exist, with their sizes.
    devices: BTreeMap<PathBuf, Bytes>,
    vgs: BTreeMap<String, VolumeGroup>,
}

#[derive(Debug, Default)]
pub struct SimMetadata {
    state: Mutex<State>,
}

pub type SimEngine = VolumeEngine<SimMetadata>;

impl SimEngine {
    /// A simulated engine with these devices (path, size), the given activation and
    /// node, mounting only below `roots`.
    pub fn simulated(
        devices: &[(PathBuf, Bytes)],
        activation: Arc<dyn Activation>,
        node: Arc<dyn Node>,
        roots: Vec<PathBuf>,
    ) -> SimEngine {
        let meta = SimMetadata::default();
        meta.state.lock().unwrap().devices = devices.iter().cloned().collect();
        VolumeEngine::new(
            meta,
            activation,
            NodeWork::new(node, roots),
            Arc::new(super::wipe::SimZeroer::default()),
        )
    }

    /// With [`SimActivation`] and [`SimNode`], returned for inspection.
    pub fn with_sims(
        devices: &[(PathBuf, Bytes)],
        roots: Vec<PathBuf>,
    ) -> (SimEngine, Arc<SimActivation>, Arc<SimNode>) {
        let act = Arc::new(SimActivation::default());
        let node = Arc::new(SimNode::default());
        (
            SimEngine::simulated(devices, act.clone(), node.clone(), roots),
            act,
            node,
        )
    }

    /// Puts a VG model (one lvm2 made, say) into the simulated store as it is.
    #[cfg(test)]
    pub(crate) fn insert_vg(&self, vg: VolumeGroup) {
        self.meta
            .state
            .lock()
            .unwrap()
            .vgs
            .insert(vg.name.clone(), vg);
    }

    /// Makes another device appear.
    pub fn add_device(&self, path: &Path, size: Bytes) {
        self.meta
            .state
            .lock()
            .unwrap()
            .devices
            .insert(path.to_owned(), size);
    }
}

fn no_device(path: &Path) -> LvmError {
    LvmError::Store(StoreError::Io {
        path: path.to_owned(),
        what: "open",
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl State {
    fn vg(&self, name: &str) -> Result<&VolumeGroup, LvmError> {
        self.vgs
            .get(name)
            .ok_or_else(|| LvmError::VgNotFound(name.into()))
    }

    fn read(&self, vg: &VolumeGroup) -> VgRead {
        let devices = vg
            .pvs
            .iter()
            .filter_map(|pv| Some((pv.id, PathBuf::from(pv.device.as_ref()?))))
            .collect();
        VgRead {
            vg: vg.clone(),
            devices,
        }
    }

    /// New PV entries for `devices`, checked as `Lvm::vg_create` checks them.
    fn new_pvs(
        &self,
        devices: &[PathBuf],
        extent_size: ExtentSize,
        taken: usize,
    ) -> Result<Vec<PhysicalVolume>, LvmError> {
        let mut out: Vec<PhysicalVolume> = Vec::new();
        for (i, path) in devices.iter().enumerate() {
            if devices[..i].contains(path) {
                return Err(LvmError::InvalidArgument {
                    what: "device",
                    value: path.display().to_string(),
                    why: "named twice".into(),
                });
            }
            let size = *self.devices.get(path).ok_or_else(|| no_device(path))?;
            let hint = path.display().to_string();
            if let Some(vg) = self
                .vgs
                .values()
                .find(|vg| vg.pvs.iter().any(|p| p.device.as_deref() == Some(&hint)))
            {
                return Err(LvmError::PvInUse {
                    path: path.clone(),
                    vg: vg.name.clone(),
                });
            }
            let dev_size = size.to_sectors_floor();
            let pe_count =
                extent_size.extents_floor(Sectors(dev_size.0.saturating_sub(PE_START.0)));
            if pe_count == Extents::ZERO {
                return Err(LvmError::DeviceTooSmall {
                    path: path.clone(),
                    size,
                    min: PE_START.to_bytes() + extent_size.bytes(),
                });
            }
            out.push(PhysicalVolume {
                name: format!("pv{}", taken + i),
                id: Uuid::random(),
                device: Some(hint),
                status: vec!["ALLOCATABLE".into()],
                flags: vec![],
                tags: vec![],
                dev_size,
                pe_start: PE_START,
                pe_count,
                extra: Section::new(),
            });
        }
        Ok(out)
    }
}

fn alloc_err(vg: &VolumeGroup) -> impl FnOnce(alloc::AllocError) -> LvmError + '_ {
    move |source| LvmError::Alloc {
        vg: vg.name.clone(),
        source,
    }
}

/// Extents for `size` in `layout`, rounded as lvm2 rounds.
fn extents_for(vg: &VolumeGroup, size: Bytes, layout: LvLayout) -> Extents {
    let mut e = vg.extent_size.extents_ceil(size.to_sectors_ceil());
    if let LvLayout::Striped { stripes, .. } = layout {
        e = Extents(e.0.div_ceil(u64::from(stripes)) * u64::from(stripes));
    }
    e
}

fn segments(vg: &VolumeGroup, start: Extents, a: &Allocation, layout: LvLayout) -> Vec<Segment> {
    let area = |x: &alloc::Area| Area {
        name: vg.pvs[x.pv].name.clone(),
        start: x.start,
    };
    let seg = |start, count, kind| Segment {
        start_extent: start,
        extent_count: count,
        kind,
        tags: vec![],
        extra: Section::new(),
    };
    match (a, layout) {
        (Allocation::Striped { stripes }, LvLayout::Striped { stripe_size, .. }) => {
            let per = stripes.first().map_or(0, |s| s.count.0);
            vec![seg(
                start,
                Extents(per * stripes.len() as u64),
                SegmentKind::Striped {
                    stripe_size: Some(Sectors(stripe_size.0 / SECTOR_SIZE)),
                    stripes: stripes.iter().map(area).collect(),
                },
            )]
        }
        _ => {
            let mut at = start;
            a.areas()
                .iter()
                .map(|x| {
                    let s = seg(
                        at,
                        x.count,
                        SegmentKind::Striped {
                            stripe_size: None,
                            stripes: vec![area(x)],
                        },
                    );
                    at += x.count;
                    s
                })
                .collect()
        }
    }
}

fn allocate(vg: &VolumeGroup, extents: Extents, layout: LvLayout) -> Result<Allocation, LvmError> {
    let req = match layout {
        LvLayout::Linear => Request::linear(extents),
        LvLayout::Striped { stripes, .. } => Request::striped(extents, stripes),
    };
    alloc::allocate(&pv_spaces(vg), &req).map_err(alloc_err(vg))
}

impl Metadata for SimMetadata {
    fn read_all(&self) -> Result<Vec<VgRead>, LvmError> {
        let s = self.state.lock().unwrap();
        Ok(s.vgs.values().map(|vg| s.read(vg)).collect())
    }

    fn read(&self, vg: &str) -> Result<VgRead, LvmError> {
        let s = self.state.lock().unwrap();
        let vg = s.vg(vg)?;
        Ok(s.read(vg))
    }

    fn vg_create(&self, name: &str, devices: &[PathBuf]) -> Result<(), LvmError> {
        let mut s = self.state.lock().unwrap();
        if devices.is_empty() {
            return Err(LvmError::InvalidArgument {
                what: "device list",
                value: "[]".into(),
                why: "a volume group needs at least one PV".into(),
            });
        }
        if s.vgs.contains_key(name) {
            return Err(LvmError::VgExists(name.into()));
        }
        let pvs = s.new_pvs(devices, ExtentSize::DEFAULT, 0)?;
        let vg = VolumeGroup {
            name: name.into(),
            id: Uuid::random(),
            seqno: 1,
            status: vec!["RESIZEABLE".into(), "READ".into(), "WRITE".into()],
            flags: vec![],
            tags: vec![],
            extent_size: ExtentSize::DEFAULT,
            max_lv: 0,
            max_pv: 0,
            metadata_copies: 0,
            pvs,
            lvs: vec![],
            extra: Section::new(),
        };
        s.vgs.insert(name.into(), vg);
        Ok(())
    }

    fn vg_extend(&self, name: &str, devices: &[PathBuf]) -> Result<(), LvmError> {
        let mut s = self.state.lock().unwrap();
        let vg = s.vg(name)?;
        let pvs = s.new_pvs(devices, vg.extent_size, vg.pvs.len())?;
        let vg = s.vgs.get_mut(name).expect("checked");
        vg.pvs.extend(pvs);
        vg.seqno += 1;
        Ok(())
    }

    fn lv_create(&self, vg_name: &str, spec: &LvSpec) -> Result<(), LvmError> {
        let mut s = self.state.lock().unwrap();
        let vg = s.vg(vg_name)?;
        if vg.lv(&spec.name).is_some() {
            return Err(LvmError::LvExists {
                vg: vg_name.into(),
                lv: spec.name.clone(),
            });
        }
        let extents = extents_for(vg, spec.size, spec.layout);
        let a = allocate(vg, extents, spec.layout)?;
        let lv = LogicalVolume {
            name: spec.name.clone(),
            id: Uuid::random(),
            status: vec!["READ".into(), "WRITE".into(), "VISIBLE".into()],
            flags: vec![],
            tags: spec.tags.clone(),
            creation_time: Some(now()),
            creation_host: Some("sim".into()),
            segments: segments(vg, Extents::ZERO, &a, spec.layout),
            extra: Section::new(),
        };
        let vg = s.vgs.get_mut(vg_name).expect("checked");
        vg.lvs.push(lv);
        vg.seqno += 1;
        Ok(())
    }

    fn lv_remove(&self, vg_name: &str, lv: &str) -> Result<(), LvmError> {
        let mut s = self.state.lock().unwrap();
        s.vg(vg_name)?;
        let vg = s.vgs.get_mut(vg_name).expect("checked");
        let before = vg.lvs.len();
        vg.lvs.retain(|l| l.name != lv);
        if vg.lvs.len() == before {
            return Err(LvmError::LvNotFound {
                vg: vg_name.into(),
                lv: lv.into(),
            });
        }
        vg.seqno += 1;
        Ok(())
    }

    fn lv_resize(&self, vg_name: &str, lv_name: &str, size: Bytes) -> Result<(), LvmError> {
        let mut s = self.state.lock().unwrap();
        let vg = s.vg(vg_name)?;
        let lv = vg.lv(lv_name).ok_or_else(|| LvmError::LvNotFound {
            vg: vg_name.into(),
            lv: lv_name.into(),
        })?;
        let layout = super::view::layout_of(lv);
        let target = extents_for(vg, size, layout);
        let current = lv.extents();
        let mut segs = lv.segments.clone();
        if target > current {
            let a = allocate(vg, target - current, layout)?;
            segs.extend(segments(vg, current, &a, layout));
        } else {
            segs.retain(|sg| sg.start_extent < target);
            if let Some(last) = segs.last_mut() {
                last.extent_count = target - last.start_extent;
            }
        }
        let vg = s.vgs.get_mut(vg_name).expect("checked");
        vg.lv_mut(lv_name).expect("checked").segments = segs;
        vg.seqno += 1;
        Ok(())
    }

    fn lv_change_tags(
        &self,
        vg_name: &str,
        lv_name: &str,
        add: &[String],
        del: &[String],
    ) -> Result<(), LvmError> {
        for t in add.iter().chain(del) {
            crate::model::name::validate_tag(t)?;
        }
        let mut s = self.state.lock().unwrap();
        s.vg(vg_name)?;
        let vg = s.vgs.get_mut(vg_name).expect("checked");
        let lv = vg.lv_mut(lv_name).ok_or_else(|| LvmError::LvNotFound {
            vg: vg_name.into(),
            lv: lv_name.into(),
        })?;
        crate::lvm::change_tags(&mut lv.tags, add, del);
        vg.seqno += 1;
        Ok(())
    }

    fn lv_rename_retag(
        &self,
        vg_name: &str,
        lv_name: &str,
        new: &str,
        tags: &[String],
    ) -> Result<(), LvmError> {
        crate::model::name::validate_lv_name(new)?;
        for t in tags {
            crate::model::name::validate_tag(t)?;
        }
        let mut s = self.state.lock().unwrap();
        s.vg(vg_name)?;
        let vg = s.vgs.get_mut(vg_name).expect("checked");
        if vg.lv(new).is_some() {
            return Err(LvmError::LvExists {
                vg: vg_name.into(),
                lv: new.into(),
            });
        }
        let lv = vg.lv_mut(lv_name).ok_or_else(|| LvmError::LvNotFound {
            vg: vg_name.into(),
            lv: lv_name.into(),
        })?;
        lv.name = new.into();
        lv.tags = tags.to_vec();
        vg.seqno += 1;
        Ok(())
    }
}
