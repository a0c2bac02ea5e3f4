//! The real engine: lvmd's `Lvm` library for metadata, any [`Activation`] for
//! device-mapper, any [`Node`] for filesystems and mounts.
//!
//! Parsed VGs are cached. Before a cached VG is used, each of its PVs' labels and
//! metadata texts are read again (a few KiB each, no parsing) and compared with the
//! text the cache was parsed from: the same text on every PV means the same seqno and
//! content, so the model is reused; anything else (a commit by lvm2, a stale copy, a
//! PV gone) means a full read under lvm2's lock.

use super::activation::Activation;
use super::node::Node;
use super::node_work::NodeWork;
use super::volumes::{Metadata, MetadataUse, VgRead, VolumeEngine};
use crate::lvm::{Edit, Lvm, LvmError, MetadataSize};
use crate::store::scan::{read_pv, VgOnDisk};
use crate::units::{Bytes, ExtentSize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub struct LvmMetadata {
    lvm: RwLock<Lvm>,
    /// Accept regular files as PVs of VGs created or extended through the API. Off in
    /// the daemon: a client must not make lvmd write a PV label into any file it names.
    pub allow_files: bool,
    cache: Mutex<HashMap<String, VgOnDisk>>,
    /// The metadata area of PVs made for a VG (a device class's `metadata_size`).
    metadata_sizes: HashMap<String, MetadataSize>,
    hits: AtomicU64,
    misses: AtomicU64,
}

pub type RealEngine = VolumeEngine<LvmMetadata>;

impl RealEngine {
    pub fn real(
        lvm: Lvm,
        activation: Arc<dyn Activation>,
        node: Arc<dyn Node>,
        roots: Vec<PathBuf>,
    ) -> RealEngine {
        VolumeEngine::new(
            LvmMetadata::new(lvm),
            activation,
            NodeWork::new(node, roots),
            Arc::new(super::wipe::DeviceZeroer),
        )
    }

    /// PVs lvmd creates for `vg` get metadata areas of `size`.
    pub fn with_metadata_size(mut self, vg: &str, size: MetadataSize) -> RealEngine {
        self.meta.metadata_sizes.insert(vg.into(), size);
        self
    }

    /// For tests on image files: accept regular files as new PVs.
    pub fn allow_image_files(mut self) -> RealEngine {
        self.meta.allow_files = true;
        self
    }
}

fn to_read(found: &VgOnDisk) -> VgRead {
    VgRead {
        vg: found.vg.clone(),
        devices: found.devices.clone(),
        metadata: MetadataUse {
            used: Bytes(found.text.len() as u64),
            capacity: found.metadata_capacity,
        },
    }
}

impl LvmMetadata {
    pub fn new(lvm: Lvm) -> LvmMetadata {
        LvmMetadata {
            lvm: RwLock::new(lvm),
            allow_files: false,
            cache: Mutex::new(HashMap::new()),
            metadata_sizes: HashMap::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The devices scanned for PVs.
    pub fn devices(&self) -> Vec<PathBuf> {
        self.lvm.read().unwrap().devices.clone()
    }

    /// Adds devices to scan (new PVs of a VG created or extended through the API).
    pub fn add_devices(&self, devices: &[PathBuf]) {
        let mut lvm = self.lvm.write().unwrap();
        for d in devices {
            if !lvm.devices.contains(d) {
                lvm.devices.push(d.clone());
            }
        }
    }

    /// (cache hits, full reads) so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn check_block_devices(&self, devices: &[PathBuf]) -> Result<(), LvmError> {
        if self.allow_files {
            return Ok(());
        }
        for d in devices {
            match lvmd_sys::blkdev::is_block_device(d) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(LvmError::InvalidArgument {
                        what: "device",
                        value: d.display().to_string(),
                        why: "not a block device".into(),
                    })
                }
                Err(source) => {
                    return Err(LvmError::Store(crate::store::StoreError::Io {
                        path: d.clone(),
                        what: "open",
                        source,
                    }))
                }
            }
        }
        Ok(())
    }

    fn metadata_size(&self, vg: &str) -> MetadataSize {
        self.metadata_sizes.get(vg).copied().unwrap_or_default()
    }

    fn lvm(&self) -> Lvm {
        self.lvm.read().unwrap().clone()
    }

    fn forget(&self, vg: &str) {
        self.cache.lock().unwrap().remove(vg);
    }

    /// Whether every PV of the cached VG still carries exactly the text it was read from.
    fn unchanged(cached: &VgOnDisk) -> bool {
        if !cached.stale.is_empty()
            || !cached.damaged.is_empty()
            || cached.devices.len() != cached.vg.pvs.len()
        {
            return false;
        }
        cached
            .devices
            .iter()
            .all(|(uuid, path)| match read_pv(path) {
                Ok(Some(pv)) => {
                    pv.label.pv_uuid == *uuid
                        && pv
                            .mdas
                            .iter()
                            .all(|m| m.text.as_deref().is_none_or(|t| t == cached.text))
                }
                _ => false,
            })
    }

    /// Runs a change; a committed one drops the VG from the cache. (A refused one
    /// wrote nothing; a failed commit leaves texts the next read's check will not
    /// match, so the cache cannot serve a stale VG either way.)
    fn change<T>(
        &self,
        vg: &str,
        f: impl FnOnce(&Lvm) -> Result<T, LvmError>,
    ) -> Result<(), LvmError> {
        let r = f(&self.lvm());
        if r.is_ok() {
            self.forget(vg);
        }
        r.map(drop)
    }
}

impl Metadata for LvmMetadata {
    fn read_all(&self) -> Result<Vec<VgRead>, LvmError> {
        let found = self.lvm().volume_groups()?;
        let mut cache = self.cache.lock().unwrap();
        cache.clear();
        for f in &found {
            cache.insert(f.vg.name.clone(), f.clone());
        }
        Ok(found.iter().map(to_read).collect())
    }

    fn read(&self, vg: &str) -> Result<VgRead, LvmError> {
        let cached = self.cache.lock().unwrap().get(vg).cloned();
        if let Some(c) = cached {
            if Self::unchanged(&c) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(to_read(&c));
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        match self.lvm().read_vg(vg) {
            Ok(found) => {
                let r = to_read(&found);
                self.cache.lock().unwrap().insert(vg.to_owned(), found);
                Ok(r)
            }
            Err(e) => {
                self.forget(vg);
                Err(e)
            }
        }
    }

    fn vg_create(&self, vg: &str, devices: &[PathBuf]) -> Result<(), LvmError> {
        self.check_block_devices(devices)?;
        let mut lvm = self.lvm();
        for d in devices {
            if !lvm.devices.contains(d) {
                lvm.devices.push(d.clone());
            }
        }
        lvm.metadata_size = self.metadata_size(vg);
        let r = lvm.vg_create(vg, devices, ExtentSize::DEFAULT);
        self.forget(vg);
        r?;
        self.add_devices(devices);
        Ok(())
    }

    fn vg_extend(&self, vg: &str, devices: &[PathBuf]) -> Result<(), LvmError> {
        self.check_block_devices(devices)?;
        let mut lvm = self.lvm();
        for d in devices {
            if !lvm.devices.contains(d) {
                lvm.devices.push(d.clone());
            }
        }
        lvm.metadata_size = self.metadata_size(vg);
        let r = lvm.vg_extend(vg, devices);
        self.forget(vg);
        r?;
        self.add_devices(devices);
        Ok(())
    }

    fn edit(&self, vg: &str, edit: &Edit) -> Result<(), LvmError> {
        self.change(vg, |lvm| lvm.edit(vg, edit))
    }

    fn has_stale_copies(&self, vg: &str) -> Result<bool, LvmError> {
        let found = self.lvm().read_vg(vg)?;
        Ok(!found.stale.is_empty() || !found.damaged.is_empty())
    }
}
