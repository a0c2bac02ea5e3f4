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
//!
//! Edits of one VG that arrive while a commit of it runs wait and then go in one
//! commit together (a group commit, [`Lvm::edit_group`]): one metadata write, one
//! archive and backup for the lot, each caller still getting its own edit's result.

use super::activation::Activation;
use super::node::Node;
use super::node_work::NodeWork;
use super::volumes::{Metadata, MetadataUse, VgRead, VolumeEngine};
use crate::lvm::{Edit, Lvm, LvmError, MetadataSize, VgCache};
use crate::store::scan::VgOnDisk;
use crate::units::{Bytes, ExtentSize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

pub struct LvmMetadata {
    lvm: RwLock<Lvm>,
    /// Accept regular files as PVs of VGs created or extended through the API. Off in
    /// the daemon: a client must not make lvmd write a PV label into any file it names.
    pub allow_files: bool,
    cache: Cache,
    /// The metadata area of PVs made for a VG (a device class's `metadata_size`).
    metadata_sizes: HashMap<String, MetadataSize>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Per VG: edits waiting for the next group commit.
    queues: Mutex<HashMap<String, Arc<CommitQueue>>>,
    commits: AtomicU64,
}

/// The parsed VGs by name (see the module's comment).
#[derive(Default)]
struct Cache(Mutex<HashMap<String, Arc<VgOnDisk>>>);

impl VgCache for Cache {
    fn get(&self, vg: &str) -> Option<Arc<VgOnDisk>> {
        self.0.lock().unwrap().get(vg).cloned()
    }

    fn put(&self, vg: &str, found: &Arc<VgOnDisk>) {
        self.0
            .lock()
            .unwrap()
            .insert(vg.to_owned(), Arc::clone(found));
    }
}

/// Edits of one VG waiting to be committed together, and the results of those done.
#[derive(Default)]
struct CommitQueue {
    state: Mutex<QueueState>,
    done: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// Edits for the next commit, each under the ticket its result is filed by.
    waiting: Vec<(u64, Edit)>,
    results: HashMap<u64, Result<(), LvmError>>,
    next_ticket: u64,
    /// A caller is committing a group now; the others wait for it to finish.
    committing: bool,
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
            cache: Cache::default(),
            metadata_sizes: HashMap::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            queues: Mutex::new(HashMap::new()),
            commits: AtomicU64::new(0),
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

    /// Group commits run so far (each one metadata write, whatever number of edits).
    pub fn group_commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
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
        self.cache.0.lock().unwrap().remove(vg);
    }

    fn queue(&self, vg: &str) -> Arc<CommitQueue> {
        let mut queues = self.queues.lock().unwrap();
        Arc::clone(queues.entry(vg.to_owned()).or_default())
    }

    /// Commits `group` in one go; one result per edit, in order.
    fn commit_group(&self, vg: &str, group: &[(u64, Edit)]) -> Vec<Result<(), LvmError>> {
        let edits: Vec<Edit> = group.iter().map(|(_, e)| e.clone()).collect();
        self.commits.fetch_add(1, Ordering::Relaxed);
        // The cache gets the VG as committed (or as read, when every edit was refused
        // or changed nothing) before lvm2's lock is released.
        match self.lvm().edit_group(vg, &edits, Some(&self.cache)) {
            Ok((_, results)) => results,
            Err(e) => {
                // A commit cut short leaves headers the next check will not match;
                // forgetting costs one full read and proves nothing is assumed.
                self.forget(vg);
                if edits.len() == 1 {
                    return vec![Err(e)];
                }
                // What stopped the whole group (the lock, the read, the commit) is
                // each edit's own error only if it stops that edit alone too.
                tracing::warn!(
                    vg,
                    edits = edits.len(),
                    "group commit failed, committing its edits one by one: {e}"
                );
                edits
                    .iter()
                    .map(|edit| {
                        match self.lvm().edit_group(
                            vg,
                            std::slice::from_ref(edit),
                            Some(&self.cache),
                        ) {
                            Ok((_, mut results)) => results.pop().expect("one result per edit"),
                            Err(e) => {
                                self.forget(vg);
                                Err(e)
                            }
                        }
                    })
                    .collect()
            }
        }
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
        let mut cache = self.cache.0.lock().unwrap();
        cache.clear();
        for f in found {
            cache.insert(f.vg.name.clone(), Arc::new(f));
        }
        Ok(reads)
    }

    fn read(&self, vg: &str) -> Result<VgRead, LvmError> {
        match self.lvm().read_vg_cached(vg, &self.cache) {
            Ok((found, reused)) => {
                self.count(reused);
                if !reused {
                    // A full read parsed the whole text through a document tree, whose
                    // pieces lie between the model's in malloc's heaps; at thousands of
                    // volumes that is MiBs kept resident until the next commit's trim.
                    super::run::release_freed_memory();
                }
                Ok(to_read(&found))
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

    /// Group commit: the first caller to find no commit of `vg` running commits every
    /// edit waiting then (its own among them); callers arriving meanwhile wait, and the
    /// first of them to wake commits the next group. Each caller returns its own
    /// edit's result.
    fn edit(&self, vg: &str, edit: &Edit) -> Result<(), LvmError> {
        edit.check(vg)?;
        let queue = self.queue(vg);
        let mut state = queue.state.lock().unwrap();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push((ticket, edit.clone()));
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.committing {
                state = queue.done.wait(state).unwrap();
                continue;
            }
            state.committing = true;
            let group = std::mem::take(&mut state.waiting);
            drop(state);
            // Committing never panics past here without the flag being cleared: a
            // panic in the commit would leave the others waiting, so it is caught.
            let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.commit_group(vg, &group)
            }));
            state = queue.state.lock().unwrap();
            state.committing = false;
            match results {
                Ok(results) => {
                    for ((t, _), r) in group.iter().zip(results) {
                        state.results.insert(*t, r);
                    }
                }
                Err(panic) => {
                    for (t, _) in &group {
                        state.results.insert(
                            *t,
                            Err(LvmError::VgNotWritable {
                                vg: vg.into(),
                                why: "its commit failed unexpectedly (see lvmd's log)".into(),
                            }),
                        );
                    }
                    queue.done.notify_all();
                    drop(state);
                    std::panic::resume_unwind(panic);
                }
            }
            queue.done.notify_all();
        }
    }

    fn flush_background_writes(&self) {
        if let Some(w) = &self.lvm.read().unwrap().backup_writer {
            w.flush();
        }
    }

    fn has_stale_copies(&self, vg: &str) -> Result<bool, LvmError> {
        let found = self.lvm().read_vg(vg)?;
        Ok(!found.stale.is_empty() || !found.damaged.is_empty())
    }
}
