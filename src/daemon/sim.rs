//! The simulated engine: volume groups in memory, on devices that are only names with
//! sizes. Every VG change is the real store's own code ([`crate::lvm::edit`]) on the
//! real VG model, so the simulator cannot drift from the real engine: capacity numbers,
//! "no space" answers, layouts after a grow and errors are the real ones (the last are
//! the `Lvm` library's own variants, so the status mapping is exercised too). Only the
//! devices are simulated.

use super::activation::{Activation, SimActivation};
use super::node::{Node, SimNode};
use super::node_work::NodeWork;
use super::volumes::{Metadata, MetadataUse, VgRead, VolumeEngine};
use crate::format::mda::MdaHeader;
use crate::lvm::edit::{self, Edit, NewPv, Origin};
use crate::lvm::LvmError;
use crate::lvm::{MetadataSize, MDA_OFFSET};
use crate::model::TextHeader;
use crate::model::VolumeGroup;
use crate::store::commit::render_disk_text;
use crate::store::StoreError;
use crate::units::{Bytes, ExtentSize};
use crate::uuid::Uuid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

    /// As [`SimEngine::with_sims`], with a node whose targets are real directories and
    /// files ([`SimNode::on_disk`]): what `lvmd --simulate` runs, for kubelet.
    pub fn on_disk(
        devices: &[(PathBuf, Bytes)],
        roots: Vec<PathBuf>,
    ) -> (SimEngine, Arc<SimActivation>, Arc<SimNode>) {
        let act = Arc::new(SimActivation::default());
        let node = Arc::new(SimNode::on_disk(act.clone()));
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
        // As the real store measures it: the text lvmd would write, and the smallest
        // area's share (each PV's area runs from 4 KiB to its data start).
        let capacity = vg
            .pvs
            .iter()
            .map(|pv| {
                let size = pv.pe_start.to_bytes().0.saturating_sub(MDA_OFFSET.0);
                MdaHeader::new_empty(MDA_OFFSET, Bytes(size)).max_text_size()
            })
            .min()
            .unwrap_or(0);
        let text = render_disk_text(vg, &TextHeader::default(), None).text;
        VgRead {
            vg: std::sync::Arc::new(vg.clone()),
            devices,
            metadata: MetadataUse {
                used: Bytes(text.len() as u64),
                capacity: Bytes(capacity),
            },
        }
    }

    /// PVs for `devices`, checked as `Lvm::vg_create` checks them.
    fn new_pvs(&self, devices: &[PathBuf]) -> Result<Vec<NewPv>, LvmError> {
        let mut out = Vec::new();
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
            out.push(NewPv {
                id: Uuid::random(),
                device: hint,
                dev_size: size.to_sectors_floor(),
                // Where the real store would start the data on a device this size.
                pe_start: MetadataSize::Auto.pe_start(size).to_sectors_floor(),
            });
        }
        Ok(out)
    }
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
        let pvs = s.new_pvs(devices)?;
        let mut vg = edit::new_vg(name, ExtentSize::DEFAULT);
        edit::add_pvs(&mut vg, &pvs)?;
        vg.seqno = 1;
        s.vgs.insert(name.into(), vg);
        Ok(())
    }

    fn vg_extend(&self, name: &str, devices: &[PathBuf]) -> Result<(), LvmError> {
        let mut s = self.state.lock().unwrap();
        s.vg(name)?;
        let pvs = s.new_pvs(devices)?;
        let mut vg = s.vg(name)?.clone();
        edit::add_pvs(&mut vg, &pvs)?;
        vg.seqno += 1;
        s.vgs.insert(name.into(), vg);
        Ok(())
    }

    fn edit(&self, vg: &str, edit: &Edit) -> Result<(), LvmError> {
        edit.check(vg)?;
        let mut s = self.state.lock().unwrap();
        let current = s.vg(vg)?;
        let edited = edit::apply(current, edit, &Origin::now("sim"))?;
        if edited.changed {
            let mut new = edited.vg;
            new.seqno = current.seqno + 1;
            s.vgs.insert(vg.into(), new);
        }
        Ok(())
    }
}
