//! The real engine: lvmd's `Lvm` library for metadata, any [`Activation`] for
//! device-mapper, any [`Node`] for filesystems and mounts.
//!
//! Parsed VGs are cached: each read and each change takes lvm2's lock and reads only
//! each PV's label and metadata area headers (a few KiB, whatever the size of the
//! text; see [`crate::store::scan::Fingerprint`]). The same headers as when the VG was
//! read or last committed by lvmd mean nobody changed it, so the model is reused;
//! anything else (a commit by lvm2, a PV gone) means a full read and parse. A VG that
//! is not whole and clean (a stale or damaged copy, a missing PV) is read in full
//! every time, as before. A commit hands back the VG as written, so the cache is
//! current after lvmd's own changes without reading them back.

use super::activation::Activation;
use super::node::Node;
use super::node_work::NodeWork;
use super::volumes::{Metadata, MetadataUse, VgRead, VolumeEngine};
use crate::lvm::{Edit, Lvm, LvmError, MetadataSize};
use crate::store::scan::VgOnDisk;
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
    cache: Mutex<HashMap<String, Arc<VgOnDisk>>>,
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

    fn cached(&self, vg: &str) -> Option<Arc<VgOnDisk>> {
        self.cache.lock().unwrap().get(vg).cloned()
    }

    fn count(&self, reused: bool) {
        let counter = if reused { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Metadata for LvmMetadata {
    fn read_all(&self) -> Result<Vec<VgRead>, LvmError> {
        let found = self.lvm().volume_groups()?;
        let reads = found.iter().map(to_read).collect();
        let mut cache = self.cache.lock().unwrap();
        cache.clear();
        for f in found {
            cache.insert(f.vg.name.clone(), Arc::new(f));
        }
        Ok(reads)
    }

    fn read(&self, vg: &str) -> Result<VgRead, LvmError> {
        match self.lvm().read_vg_cached(vg, self.cached(vg).as_ref()) {
            Ok((found, reused)) => {
                self.count(reused);
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
        edit.check(vg)?;
        let cached = self.cached(vg);
        match self
            .lvm()
            .edit_group(vg, std::slice::from_ref(edit), cached.as_ref())
        {
            Ok((found, mut results)) => {
                // The VG as committed (or as read, when the edit was refused or changed
                // nothing): current either way.
                self.cache.lock().unwrap().insert(vg.to_owned(), found);
                results.pop().expect("one result per edit")
            }
            Err(e) => {
                // A commit cut short leaves headers the next check will not match;
                // forgetting costs one full read and proves nothing is assumed.
                self.forget(vg);
                Err(e)
            }
        }
    }

    fn has_stale_copies(&self, vg: &str) -> Result<bool, LvmError> {
        let found = self.lvm().read_vg(vg)?;
        Ok(!found.stale.is_empty() || !found.damaged.is_empty())
    }
}
