//! No data remanence: what one volume wrote is never readable through another.
//!
//! lvmd zeroes extents when an LV gives them back (removal, shrink), on the PV devices
//! themselves at the offsets the metadata maps them to ([`crate::model::placement`]), so
//! no device-mapper device is needed and nothing is left for the next LV to read.
//! Small volumes are zeroed inside the removal, before its commit; larger ones become
//! *wipe LVs* in one commit (renamed `lvmd-wipe-<uuid>`, tagged `lvmd.wipe`, hidden from
//! clients) that keep their extents allocated until the [`Wiper`] thread has zeroed them
//! and removed the LV; it resumes every wipe LV at start-up. At creation lvmd also
//! clears the first and last MiB of every new LV, for extents whose history it cannot
//! know (lvm2's lvremove, what a disk held before it was a PV). `docs/data-safety.md`
//! says why this design and what it costs.

use super::crash;
use super::engine::{EngineError, Result};
use super::marks;
use super::volumes::{Metadata, VgRead, VolumeEngine};
use crate::lvm::Edit;
use crate::model::placement::{self, PvExtents, PvSpan};
use crate::model::LogicalVolume;
use crate::units::{human_bytes, Bytes, Extents};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// Zeroing goes in chunks of this size: progress is logged between them, and a crash
/// loses at most one chunk's work.
pub const CHUNK: Bytes = Bytes(64 << 20);

/// How much of each end of a new LV is cleared at creation.
pub const EDGE: Bytes = Bytes(1 << 20);

/// Volumes up to this size are zeroed inside the removal call; larger ones in the
/// background. Loop devices and SSDs with WRITE ZEROES zero 1 GiB in well under a
/// second; a disk that writes zeros at 150 MB/s takes about 7 s (see the doc).
pub const DEFAULT_INLINE_LIMIT: Bytes = Bytes(1 << 30);

/// How often a wipe that failed (a PV gone, an I/O error) is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// Writes zeros to PV devices. The real one zeroes devices (or image files); the
/// simulator's records what it was asked, and fails on demand.
pub trait Zeroer: Send + Sync + 'static {
    /// Makes `len` bytes at `offset` of `device` read as zeros.
    fn zero(&self, device: &Path, offset: Bytes, len: Bytes) -> io::Result<()>;
    /// Flushes what was zeroed on `device` to stable storage.
    fn sync(&self, device: &Path) -> io::Result<()>;
    /// Copies the first `len` bytes of block device `from` onto `to`, then flushes
    /// `to` (a restore from a COW snapshot: the same devices, the same trait).
    fn copy(&self, from: &Path, to: &Path, len: Bytes) -> io::Result<()>;
}

/// Zeroes PV block devices with `BLKZEROOUT`, image files with fallocate.
#[derive(Debug, Default)]
pub struct DeviceZeroer;

fn open_for_write(device: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device)
}

impl Zeroer for DeviceZeroer {
    fn zero(&self, device: &Path, offset: Bytes, len: Bytes) -> io::Result<()> {
        lvmd_sys::blkdev::zero_range(&open_for_write(device)?, offset.0, len.0)
    }

    fn sync(&self, device: &Path) -> io::Result<()> {
        // fsync of a block device flushes its write cache too.
        open_for_write(device)?.sync_all()
    }

    fn copy(&self, from: &Path, to: &Path, len: Bytes) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let src = std::fs::File::open(from)?;
        let dst = open_for_write(to)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len.0 {
            let n = (len.0 - at).min(buf.len() as u64) as usize;
            src.read_exact_at(&mut buf[..n], at)?;
            dst.write_all_at(&buf[..n], at)?;
            at += n as u64;
        }
        dst.sync_all()
    }
}

/// The simulator's zeroer: remembers every range, fails while told to.
#[derive(Debug, Default)]
pub struct SimZeroer {
    zeroed: Mutex<Vec<(PathBuf, Bytes, Bytes)>>,
    copied: Mutex<Vec<(PathBuf, PathBuf, Bytes)>>,
    fail: AtomicBool,
}

impl SimZeroer {
    /// Every (device, offset, length) zeroed so far, in order.
    pub fn zeroed(&self) -> Vec<(PathBuf, Bytes, Bytes)> {
        self.zeroed.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.zeroed.lock().unwrap().clear();
    }

    /// Every (from, to, length) copied so far, in order.
    pub fn copied(&self) -> Vec<(PathBuf, PathBuf, Bytes)> {
        self.copied.lock().unwrap().clone()
    }

    /// While set, every zeroing fails with EIO.
    pub fn set_fail(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }
}

impl Zeroer for SimZeroer {
    fn zero(&self, device: &Path, offset: Bytes, len: Bytes) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.zeroed
            .lock()
            .unwrap()
            .push((device.to_owned(), offset, len));
        Ok(())
    }

    fn sync(&self, _device: &Path) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn copy(&self, from: &Path, to: &Path, len: Bytes) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.copied
            .lock()
            .unwrap()
            .push((from.to_owned(), to.to_owned(), len));
        Ok(())
    }
}

/// Wakes the background wipe thread.
#[derive(Debug)]
pub struct Wiper {
    /// Something may be waiting to be wiped. Starts true: wipes left by an earlier run.
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Default for Wiper {
    fn default() -> Wiper {
        Wiper {
            pending: Mutex::new(true),
            cv: Condvar::new(),
        }
    }
}

impl Wiper {
    pub fn poke(&self) {
        *self.pending.lock().unwrap() = true;
        self.cv.notify_all();
    }

    /// Waits until poked or `timeout` passed; clears the poke.
    fn wait(&self, timeout: Duration) {
        let g = self.pending.lock().unwrap();
        let (mut g, _) = self.cv.wait_timeout_while(g, timeout, |p| !*p).unwrap();
        *g = false;
    }
}

/// A range of a PV device to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRange {
    pub device: PathBuf,
    pub offset: Bytes,
    pub len: Bytes,
}

/// The name an LV takes while lvmd wipes it: fixed by its uuid, so a retry finds it.
pub fn wipe_name(lv: &LogicalVolume) -> String {
    format!("{}{}", marks::WIPE_NAME_PREFIX, lv.id.compact())
}

/// Bytes held by wipe LVs of the VG: space that frees up once they are zeroed.
pub fn wiping(vg: &crate::model::VolumeGroup) -> Bytes {
    let e = vg
        .lvs
        .iter()
        .filter(|l| marks::is_wipe(&l.name, &l.tags))
        .fold(Extents::ZERO, |a, l| a + l.extents());
    vg.extent_size.span(e).to_bytes()
}

fn placement_err(vg: &str, lv: &str, e: placement::PlacementError) -> EngineError {
    EngineError::FailedPrecondition {
        what: "logical volume",
        name: format!("{vg}/{lv}"),
        why: format!("cannot tell which PV extents to zero: {e}"),
    }
}

/// The device ranges of `spans`, each PV resolved to the device it was found on. A
/// missing PV is refused: lvmd does not give back extents it could not zero.
fn device_ranges(read: &VgRead, lv: &str, spans: &[PvSpan]) -> Result<Vec<DeviceRange>> {
    let vg = &read.vg.name;
    spans
        .iter()
        .map(|s| {
            let device = read
                .vg
                .pv(&s.pv)
                .and_then(|pv| read.devices.get(&pv.id))
                .ok_or_else(|| EngineError::FailedPrecondition {
                    what: "physical volume",
                    name: format!("{vg}/{}", s.pv),
                    why: format!(
                        "is missing, so the extents of {vg}/{lv} on it cannot be zeroed (lvmd gives back only extents it zeroed)"
                    ),
                })?;
            Ok(DeviceRange {
                device: device.clone(),
                offset: s.offset.to_bytes(),
                len: s.len.to_bytes(),
            })
        })
        .collect()
}

fn extent_ranges(read: &VgRead, lv: &str, list: &[PvExtents]) -> Result<Vec<DeviceRange>> {
    let spans: Vec<PvSpan> = list
        .iter()
        .filter(|e| e.count > Extents::ZERO)
        .map(|e| {
            placement::extents_span(&read.vg, e).ok_or_else(|| {
                placement_err(
                    &read.vg.name,
                    lv,
                    placement::PlacementError::NoPv {
                        lv: lv.into(),
                        at: e.start.0,
                        pv: e.pv.clone(),
                    },
                )
            })
        })
        .collect::<Result<_>>()?;
    device_ranges(read, lv, &spans)
}

/// Where the LV's extents from `keep` on lie: all of them for 0 (a removal), what a
/// shrink to `keep` extents gives back otherwise.
pub(crate) fn freed_ranges(
    read: &VgRead,
    lv: &LogicalVolume,
    keep: Extents,
) -> Result<Vec<DeviceRange>> {
    let list = placement::freed_extents(&read.vg, lv, keep)
        .map_err(|e| placement_err(&read.vg.name, &lv.name, e))?;
    extent_ranges(read, &lv.name, &list)
}

/// Where the grown part of every image of raid1 LV `lv` (as committed or about to be)
/// lies, past its old size of `from` extents ([`placement::raid1_grown_extents`]);
/// empty for any other LV.
pub(crate) fn raid1_grown_ranges(
    read: &VgRead,
    lv: &LogicalVolume,
    from: Extents,
) -> Result<Vec<DeviceRange>> {
    match placement::raid1_grown_extents(&read.vg, lv, from) {
        None => Ok(Vec::new()),
        Some(list) => {
            let list = list.map_err(|e| placement_err(&read.vg.name, &lv.name, e))?;
            extent_ranges(read, &lv.name, &list)
        }
    }
}

/// What is cleared on a new LV: where its first and last [`EDGE`] lie (of each copy,
/// for raid1, and its legs' metadata areas whole).
pub(crate) fn edge_ranges(read: &VgRead, lv: &LogicalVolume) -> Result<Vec<DeviceRange>> {
    let spans = placement::clear_on_create(&read.vg, lv, EDGE.to_sectors_floor())
        .map_err(|e| placement_err(&read.vg.name, &lv.name, e))?;
    device_ranges(read, &lv.name, &spans)
}

/// Where `spans` of `lv` (a COW store's header chunk, [`crate::lvm::cow::header_spans`])
/// lie on `read`'s devices.
pub(crate) fn header_ranges(read: &VgRead, lv: &str, spans: &[PvSpan]) -> Result<Vec<DeviceRange>> {
    device_ranges(read, lv, spans)
}

fn total(ranges: &[DeviceRange]) -> Bytes {
    Bytes(ranges.iter().map(|r| r.len.0).sum())
}

impl<M: Metadata> VolumeEngine<M> {
    /// Zeroes `ranges` in chunks, then flushes each device, and logs what it did.
    /// `crash_at`: the crash point (for tests) reached after the first chunk.
    pub(crate) fn zero_ranges(
        &self,
        vg: &str,
        lv: &str,
        why: &str,
        ranges: &[DeviceRange],
        crash_at: Option<&str>,
    ) -> Result<()> {
        let secs = self.zero(vg, lv, ranges, crash_at)?;
        let all = total(ranges);
        tracing::info!(
            vg,
            lv,
            bytes = all.0,
            ranges = ranges.len(),
            seconds = format!("{secs:.3}"),
            "zeroed {} ({why})",
            human_bytes(all)
        );
        Ok(())
    }

    /// Zeroes and flushes; returns the seconds it took.
    fn zero(
        &self,
        vg: &str,
        lv: &str,
        ranges: &[DeviceRange],
        crash_at: Option<&str>,
    ) -> Result<f64> {
        let all = total(ranges);
        let started = Instant::now();
        let mut done = Bytes(0);
        for r in ranges {
            let mut at = 0;
            while at < r.len.0 {
                let n = CHUNK.0.min(r.len.0 - at);
                let offset = Bytes(r.offset.0 + at);
                self.zeroer
                    .zero(&r.device, offset, Bytes(n))
                    .map_err(|source| EngineError::Zero {
                        device: r.device.clone(),
                        offset,
                        len: Bytes(n),
                        source,
                    })?;
                at += n;
                done.0 += n;
                if let Some(p) = crash_at {
                    crash::point(p);
                }
                if all > CHUNK {
                    tracing::debug!(vg, lv, done = done.0, of = all.0, "zeroing");
                }
            }
        }
        let devices: BTreeSet<&PathBuf> = ranges.iter().map(|r| &r.device).collect();
        for d in devices {
            self.zeroer.sync(d).map_err(|source| EngineError::Zero {
                device: d.clone(),
                offset: Bytes(0),
                len: Bytes(0),
                source,
            })?;
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// Clears the first and last MiB of a new LV (committed with [`marks::FRESH`]).
    pub(crate) fn clear_edges(&self, read: &VgRead, lv: &LogicalVolume) -> Result<()> {
        let ranges = edge_ranges(read, lv)?;
        let secs = self.zero(&read.vg.name, &lv.name, &ranges, None)?;
        // Every create does this: the create's own log line is enough at info.
        tracing::debug!(
            vg = read.vg.name,
            lv = lv.name,
            bytes = total(&ranges).0,
            seconds = format!("{secs:.3}"),
            "cleared the edges of a new volume"
        );
        Ok(())
    }

    /// Zeroes every wipe LV of every VG and removes it; returns how many were finished.
    /// A wipe that fails is logged and left for the next round; the others go on.
    pub fn finish_wipes(&self) -> Result<usize> {
        let mut done = 0;
        let mut failed = None;
        for read in self.meta.read_all()? {
            let vg = read.vg.name.clone();
            let wipes: Vec<LogicalVolume> = read
                .vg
                .lvs
                .iter()
                .filter(|l| marks::is_wipe(&l.name, &l.tags))
                .cloned()
                .collect();
            for lv in wipes {
                match self.finish_wipe(&read, &lv) {
                    Ok(true) => done += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(
                            vg,
                            lv = lv.name,
                            "background wipe failed, retried later: {e}"
                        );
                        failed = Some(e);
                    }
                }
            }
        }
        match failed {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    fn finish_wipe(&self, read: &VgRead, lv: &LogicalVolume) -> Result<bool> {
        let vg = &read.vg.name;
        if self.devices(read).contains_key(&lv.name) {
            // A mirror's removed leg whose device dm-raid may still write to (a crash
            // before the raid table was reloaded without it): zeroed once it is gone.
            return Err(EngineError::FailedPrecondition {
                what: "logical volume",
                name: format!("{vg}/{}", lv.name),
                why: "its device is still active (a removed mirror leg not yet let go); \
                      it is zeroed once the device is gone"
                    .into(),
            });
        }
        let ranges = freed_ranges(read, lv, Extents::ZERO)?;
        crash::hold_wipes();
        tracing::info!(
            vg,
            lv = lv.name,
            bytes = total(&ranges).0,
            "background wipe started"
        );
        // No lock while zeroing: the extents belong to the wipe LV, which no client can
        // name, so nothing else of lvmd's writes there.
        self.zero_ranges(
            vg,
            &lv.name,
            "a removed volume, in the background",
            &ranges,
            Some("wipe-chunk"),
        )?;
        crash::point("wiped");
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        let now = self.meta.read(vg)?;
        match now.vg.lv(&lv.name) {
            Some(l) if l.segments == lv.segments && marks::is_wipe(&l.name, &l.tags) => {}
            Some(_) => {
                // Changed by someone else while zeroing: zero it again as it is now.
                tracing::warn!(
                    vg,
                    lv = lv.name,
                    "wipe LV changed while it was zeroed; zeroing again"
                );
                self.wiper.poke();
                return Ok(false);
            }
            None => {
                tracing::warn!(vg, lv = lv.name, "wipe LV removed by someone else");
                return Ok(false);
            }
        }
        let edit = Edit::RemoveLv {
            lv: lv.name.clone(),
        };
        self.meta.edit(vg, &edit)?;
        crash::point("committed");
        tracing::info!(vg, lv = lv.name, "background wipe done; extents free");
        Ok(true)
    }

    /// Starts the thread that finishes wipe LVs: at once (wipes an earlier run left),
    /// whenever a removal makes one, and every 30 s while one fails.
    pub fn start_wiper(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let wiper = self.wiper.clone();
        std::thread::Builder::new()
            .name("lvmd-wipe".into())
            .spawn(move || loop {
                wiper.wait(RETRY);
                let Some(engine) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = engine.finish_wipes() {
                    tracing::error!("background wipes: {e}");
                }
            })
            .expect("spawn the wipe thread")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::{Engine, Layout, LvSpec};
    use crate::daemon::SimEngine;

    const MIB: u64 = 1 << 20;

    fn engine(limit: u64) -> (SimEngine, Arc<SimZeroer>) {
        let devs = vec![
            (PathBuf::from("/dev/sim0"), Bytes(256 * MIB)),
            (PathBuf::from("/dev/sim1"), Bytes(256 * MIB)),
        ];
        let z = Arc::new(SimZeroer::default());
        let (e, _, _) = SimEngine::with_sims(&devs, vec![]);
        let e = e
            .with_zeroer(z.clone())
            .with_inline_wipe_limit(Bytes(limit));
        e.create_volume_group("vg", &[devs[0].0.clone(), devs[1].0.clone()])
            .unwrap();
        (e, z)
    }

    fn spec(name: &str, mib: u64, layout: Layout) -> LvSpec {
        LvSpec {
            name: name.into(),
            size: Bytes(mib * MIB),
            layout,
            tags: vec!["pvc=x".into()],
        }
    }

    /// The (device, byte offset, length) runs an LV holds, from lvm2's view of the
    /// metadata: `pe_start + extent * extent_size` on each area's PV.
    fn held(e: &SimEngine, lv: &str) -> Vec<(PathBuf, Bytes, Bytes)> {
        let read = e.meta.read("vg").unwrap();
        let model = read.vg.lv(lv).unwrap();
        let mut out = Vec::new();
        for s in &model.segments {
            let crate::model::SegmentKind::Striped { stripes, .. } = &s.kind else {
                panic!()
            };
            for a in stripes {
                let pv = read.vg.pv(&a.name).unwrap();
                let es = read.vg.extent_size.bytes().0;
                out.push((
                    PathBuf::from(pv.device.clone().unwrap()),
                    Bytes(pv.pe_start.to_bytes().0 + a.start.0 * es),
                    Bytes(s.extent_count.0 / stripes.len() as u64 * es),
                ));
            }
        }
        out
    }

    /// Coalesced per device, so chunking does not matter.
    fn runs(mut v: Vec<(PathBuf, Bytes, Bytes)>) -> Vec<(PathBuf, u64, u64)> {
        v.sort();
        let mut out: Vec<(PathBuf, u64, u64)> = Vec::new();
        for (d, o, l) in v {
            if let Some(last) = out.last_mut() {
                if last.0 == d && last.1 + last.2 >= o.0 {
                    last.2 = last.2.max(o.0 + l.0 - last.1);
                    continue;
                }
            }
            out.push((d, o.0, l.0));
        }
        out
    }

    #[test]
    fn a_small_removal_zeroes_every_extent_before_its_commit() {
        let (e, z) = engine(64 * MIB);
        e.create_logical_volume("vg", &spec("a", 40, Layout::Linear))
            .unwrap();
        // Grown onto a second segment, so the LV has two runs.
        e.create_logical_volume("vg", &spec("b", 8, Layout::Linear))
            .unwrap();
        e.resize_logical_volume("vg", "a", Bytes(60 * MIB)).unwrap();
        let want = held(&e, "a");
        assert_eq!(want.len(), 2, "{want:?}");
        z.clear();
        // A failing zeroing keeps the LV: nothing is given back unzeroed.
        z.set_fail(true);
        let err = e.remove_logical_volume("vg", "a").unwrap_err();
        assert!(matches!(err, EngineError::Zero { .. }), "{err:?}");
        assert!(err.to_string().contains("/dev/sim"), "{err}");
        assert!(e.logical_volume("vg", "a").is_ok());
        z.set_fail(false);
        assert!(e.remove_logical_volume("vg", "a").unwrap());
        assert_eq!(runs(z.zeroed()), runs(want));
        assert!(e.logical_volume("vg", "a").is_err());
        assert_eq!(e.space("vg", 1).unwrap().wiping, Bytes(0));
        // Each chunk at most 64 MiB.
        assert!(z.zeroed().iter().all(|(_, _, l)| *l <= CHUNK));
    }

    #[test]
    fn a_large_removal_holds_its_extents_until_the_background_wipe_is_done() {
        let (e, z) = engine(16 * MIB);
        let striped = Layout::striped(2, Bytes(64 << 10)).unwrap();
        e.create_logical_volume("vg", &spec("big", 200, striped))
            .unwrap();
        let want = held(&e, "big");
        let free_before = e.space("vg", 1).unwrap().free;
        z.clear();
        assert!(e.remove_logical_volume("vg", "big").unwrap());
        // Nothing zeroed yet: the caller did not wait for it.
        assert!(z.zeroed().is_empty());
        // Gone for clients, idempotently; its space held and shown as being wiped.
        assert!(e.logical_volumes("vg").unwrap().is_empty());
        assert!(!e.remove_logical_volume("vg", "big").unwrap());
        assert_eq!(e.volume_group("vg").unwrap().lv_count, 0);
        let space = e.space("vg", 1).unwrap();
        assert_eq!(space.wiping, Bytes(200 * MIB));
        assert_eq!(space.free, free_before);
        // Its name is lvmd's: not a client's to create, activate or remove.
        let read = e.meta.read("vg").unwrap();
        let wipe = read
            .vg
            .lvs
            .iter()
            .find(|l| marks::is_wipe(&l.name, &l.tags))
            .unwrap();
        assert_eq!(wipe.tags, vec![marks::WIPE.to_string()]);
        let name = wipe.name.clone();
        assert!(e.activate("vg", &name).is_err());
        assert!(!e.remove_logical_volume("vg", &name).unwrap());
        let err = e
            .create_logical_volume("vg", &spec(&name, 4, Layout::Linear))
            .unwrap_err();
        assert!(err.to_string().contains("lvmd's own"), "{err}");
        // No space for a volume that needs the held extents, saying how much is still
        // being wiped (RESOURCE_EXHAUSTED: api::status's tests).
        let err = e
            .create_logical_volume("vg", &spec("next", 400, Layout::Linear))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::NoSpaceWhileWiping { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("200MiB") || err.to_string().contains("200 MiB"),
            "{err}"
        );
        // A failed wipe keeps the LV for the next round.
        z.set_fail(true);
        assert!(e.finish_wipes().is_err());
        assert_eq!(e.space("vg", 1).unwrap().wiping, Bytes(200 * MIB));
        z.set_fail(false);
        z.clear();
        assert_eq!(e.finish_wipes().unwrap(), 1);
        assert_eq!(runs(z.zeroed()), runs(want));
        let space = e.space("vg", 1).unwrap();
        assert_eq!(space.wiping, Bytes(0));
        assert_eq!(space.free, free_before + Bytes(200 * MIB));
        assert_eq!(e.finish_wipes().unwrap(), 0);
    }

    #[test]
    fn a_new_volume_gets_its_edges_cleared_and_a_fresh_retry_clears_them_again() {
        let (e, z) = engine(64 * MIB);
        z.clear();
        let made = e
            .create_logical_volume("vg", &spec("a", 12, Layout::Linear))
            .unwrap();
        assert!(made.created);
        assert!(marks::is_fresh(&made.value.tags), "{:?}", made.value.tags);
        let (dev, start, _) = held(&e, "a")[0].clone();
        let edges = vec![
            (dev.clone(), start.0, MIB),
            (dev.clone(), start.0 + 11 * MIB, MIB),
        ];
        assert_eq!(runs(z.zeroed()), edges);
        // A retry finds it fresh and inactive: the edges again, nothing else.
        z.clear();
        assert!(
            !e.create_logical_volume("vg", &spec("a", 12, Layout::Linear))
                .unwrap()
                .created
        );
        assert_eq!(runs(z.zeroed()), edges);
        // Active (handed out) or not fresh: never zeroed by a retry.
        e.activate("vg", "a").unwrap();
        z.clear();
        e.create_logical_volume("vg", &spec("a", 12, Layout::Linear))
            .unwrap();
        assert!(z.zeroed().is_empty());
        e.deactivate("vg", "a").unwrap();
        let edit = Edit::lv_tags("a", &[], &[marks::FRESH.into()]);
        e.meta.edit("vg", &edit).unwrap();
        e.create_logical_volume("vg", &spec("a", 12, Layout::Linear))
            .unwrap();
        assert!(z.zeroed().is_empty());
        // A zeroing that fails fails the create; the retry clears and succeeds.
        z.set_fail(true);
        assert!(e
            .create_logical_volume("vg", &spec("b", 4, Layout::Linear))
            .is_err());
        z.set_fail(false);
        assert!(
            !e.create_logical_volume("vg", &spec("b", 4, Layout::Linear))
                .unwrap()
                .created
        );
        let (dev, start, _) = held(&e, "b")[0].clone();
        assert_eq!(
            runs(z.zeroed()),
            vec![(dev.clone(), start.0, MIB), (dev, start.0 + 3 * MIB, MIB)]
        );
    }

    #[test]
    fn a_shrink_zeroes_exactly_what_it_gives_back() {
        let (e, z) = engine(64 * MIB);
        e.create_logical_volume("vg", &spec("a", 40, Layout::Linear))
            .unwrap();
        let (dev, start, _) = held(&e, "a")[0].clone();
        z.clear();
        e.resize_logical_volume("vg", "a", Bytes(16 * MIB)).unwrap();
        assert_eq!(runs(z.zeroed()), vec![(dev, start.0 + 16 * MIB, 24 * MIB)]);
        // Refused while active, before any zero is written.
        e.activate("vg", "a").unwrap();
        z.clear();
        assert!(e.resize_logical_volume("vg", "a", Bytes(8 * MIB)).is_err());
        assert!(z.zeroed().is_empty());
        // Growing zeroes nothing (new extents get no edge clearing either: they were
        // zeroed when given back, or are the LV's own to write).
        e.resize_logical_volume("vg", "a", Bytes(32 * MIB)).unwrap();
        assert!(z.zeroed().is_empty());
    }

    #[test]
    fn extents_on_a_missing_pv_are_refused() {
        let (e, _z) = engine(64 * MIB);
        e.create_logical_volume("vg", &spec("a", 8, Layout::Linear))
            .unwrap();
        e.activate("vg", "a").unwrap();
        let mut read = e.meta.read("vg").unwrap();
        read.devices.clear();
        let model = read.vg.lv("a").unwrap();
        let err = freed_ranges(&read, model, Extents::ZERO).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    fn mirror(mirrors: u32) -> Layout {
        Layout::Raid1 {
            mirrors,
            region_size: crate::model::layout::DEFAULT_REGION_SIZE,
            integrity: false,
        }
    }

    /// A new mirror: each leg on its own PV, every metadata area zeroed whole (an old
    /// dm-raid superblock there could pass stale legs as in sync), each copy's edges
    /// cleared; its removal zeroes every extent of every leg, and takes the legs along.
    #[test]
    fn a_mirror_is_cleared_as_made_and_zeroed_whole_when_removed() {
        let (e, z) = engine(64 * MIB);
        let made = e
            .create_logical_volume("vg", &spec("m", 12, mirror(1)))
            .unwrap();
        assert_eq!(made.value.size, Bytes(12 * MIB));
        assert_eq!(made.value.layout, mirror(1));
        let legs: Vec<_> = (0..2)
            .flat_map(|i| [format!("m_rmeta_{i}"), format!("m_rimage_{i}")])
            .collect();
        let devices: BTreeSet<PathBuf> = legs.iter().map(|l| held(&e, l)[0].0.clone()).collect();
        assert_eq!(devices.len(), 2, "the two legs share a PV");
        let cleared = runs(z.zeroed());
        for i in 0..2 {
            let meta = runs(held(&e, &format!("m_rmeta_{i}")));
            assert!(
                meta.iter().all(|m| cleared
                    .iter()
                    .any(|c| c.0 == m.0 && c.1 <= m.1 && c.1 + c.2 >= m.1 + m.2)),
                "metadata of leg {i} {meta:?} not zeroed whole: {cleared:?}"
            );
            let image = runs(held(&e, &format!("m_rimage_{i}")))[0].clone();
            assert!(
                cleared
                    .iter()
                    .any(|c| c.0 == image.0 && c.1 <= image.1 && c.1 + c.2 >= image.1 + MIB),
                "first MiB of copy {i} not cleared: {cleared:?}"
            );
        }
        // Only the visible LV is listed; the legs are its.
        let names: Vec<_> = e
            .logical_volumes("vg")
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, vec!["m".to_string()]);
        let want = runs(legs.iter().flat_map(|l| held(&e, l)).collect());
        z.clear();
        assert!(e.remove_logical_volume("vg", "m").unwrap());
        assert_eq!(runs(z.zeroed()), want);
        let read = e.meta.read("vg").unwrap();
        assert!(read.vg.lvs.is_empty(), "{:?}", read.vg.lvs);
        assert_eq!(read.vg.free_extents(), read.vg.total_extents());
    }

    /// A new mirror with integrity: each leg's `_imeta` is zeroed whole before anything
    /// can load it (dm-integrity would take an old superblock, journal or tags there
    /// for its own), beside the raid metadata and the copies' edges; its first
    /// activation takes `recalculate` and the commit after drops it; its removal
    /// zeroes and frees every extent of every sub-LV, layers included; capacity and
    /// refusals count the integrity metadata.
    #[test]
    fn an_integrity_mirror_has_its_integrity_metadata_zeroed_and_counted() {
        let (e, z) = engine(64 * MIB);
        let im = Layout::Raid1 {
            mirrors: 1,
            region_size: crate::model::layout::DEFAULT_REGION_SIZE,
            integrity: true,
        };
        // 256 MiB PVs: 63 extents each; a leg of 60 data extents needs 1 + 2 more.
        let space = e.space("vg", 1).unwrap();
        assert_eq!(space.largest_raid1_integrity, vec![Bytes(60 * 4 * MIB)]);
        assert_eq!(space.largest_raid1, vec![Bytes(62 * 4 * MIB)]);
        // 10 extents taken on one PV: 50 data extents per leg are left, though the VG
        // has room for 51 and their metadata in all: "no space", not a bad request.
        e.create_logical_volume("vg", &spec("x", 40, Layout::Linear))
            .unwrap();
        let space = e.space("vg", 1).unwrap();
        assert_eq!(space.largest_raid1_integrity, vec![Bytes(50 * 4 * MIB)]);
        assert!(2 * (51 + 3) * 4 * MIB <= space.free.0);
        let no = e
            .create_logical_volume("vg", &spec("m", 51 * 4, im))
            .unwrap_err();
        assert!(
            matches!(no, EngineError::Lvm(crate::lvm::LvmError::Alloc { .. })),
            "{no:?}"
        );
        e.create_logical_volume("vg", &spec("m", 50 * 4, im))
            .unwrap();
        // Larger than the inline limit: a wipe LV, its layers renamed along, zeroed
        // and removed whole in the background.
        assert!(e.remove_logical_volume("vg", "m").unwrap());
        let read = e.meta.read("vg").unwrap();
        assert_eq!(read.vg.lvs.len(), 10, "x, the wipe LV and its 8 sub-LVs");
        assert_eq!(e.finish_wipes().unwrap(), 1);
        assert!(e.remove_logical_volume("vg", "x").unwrap());
        assert!(e.meta.read("vg").unwrap().vg.lvs.is_empty());
        z.clear();
        let made = e.create_logical_volume("vg", &spec("m", 12, im)).unwrap();
        assert_eq!(made.value.layout, im);
        assert_eq!(made.value.size, Bytes(12 * MIB));
        let cleared = runs(z.zeroed());
        let covered = |r: &(PathBuf, u64, u64)| {
            cleared
                .iter()
                .any(|c| c.0 == r.0 && c.1 <= r.1 && c.1 + c.2 >= r.1 + r.2)
        };
        for i in 0..2 {
            for whole in [format!("m_rmeta_{i}"), format!("m_rimage_{i}_imeta")] {
                let held = runs(held(&e, &whole));
                assert_eq!(
                    held.iter().map(|r| r.2).sum::<u64>(),
                    if whole.contains("imeta") {
                        8 * MIB
                    } else {
                        4 * MIB
                    }
                );
                assert!(
                    held.iter().all(covered),
                    "{whole} {held:?} not zeroed whole: {cleared:?}"
                );
            }
            let data = runs(held(&e, &format!("m_rimage_{i}_iorig")))[0].clone();
            assert!(
                covered(&(data.0.clone(), data.1, MIB)),
                "copy {i}: {cleared:?}"
            );
            // Not the whole copy: only its edges.
            assert!(!covered(&data), "copy {i} zeroed whole: {cleared:?}");
        }
        // The create over again: the same volume, found.
        let again = e.create_logical_volume("vg", &spec("m", 12, im)).unwrap();
        assert!(!again.created);
        let plain = e
            .create_logical_volume("vg", &spec("m", 12, mirror(1)))
            .unwrap_err();
        assert!(plain.to_string().contains("integrity"), "{plain}");
        // First activation: recalculate goes from the metadata after it.
        let recalc = |e: &SimEngine| {
            let read = e.meta.read("vg").unwrap();
            (0..2)
                .filter(|i| {
                    let image = read.vg.lv(&format!("m_rimage_{i}")).unwrap();
                    matches!(&image.segments[0].kind,
                        crate::model::SegmentKind::Other { body, .. } if body.get("recalculate").is_some())
                })
                .count()
        };
        assert_eq!(recalc(&e), 2);
        e.activate("vg", "m").unwrap();
        assert_eq!(recalc(&e), 0);
        // Grown online: the new part of each leg's data is zeroed (before the commit),
        // nothing else; every layer follows.
        let before: Vec<_> = (0..2)
            .map(|i| runs(held(&e, &format!("m_rimage_{i}_iorig"))))
            .collect();
        z.clear();
        let grown = e.resize_logical_volume("vg", "m", Bytes(20 * MIB)).unwrap();
        assert_eq!((grown.size, grown.layout), (Bytes(20 * MIB), im));
        let mut want = Vec::new();
        for (i, old) in before.iter().enumerate() {
            let now = runs(held(&e, &format!("m_rimage_{i}_iorig")));
            assert_eq!(now.iter().map(|r| r.2).sum::<u64>(), 20 * MIB);
            let kept: u64 = old.iter().map(|r| r.2).sum();
            assert_eq!(kept, 12 * MIB);
            // What the leg did not hold before: the grown part.
            for r in now {
                if !old.contains(&r) {
                    let o = old.iter().find(|o| o.0 == r.0 && o.1 == r.1);
                    match o {
                        Some(o) => want.push((r.0.clone(), r.1 + o.2, r.2 - o.2)),
                        None => want.push(r),
                    }
                }
            }
        }
        want.sort();
        assert_eq!(
            runs(z.zeroed()),
            runs(
                want.into_iter()
                    .map(|(d, o, l)| (d, Bytes(o), Bytes(l)))
                    .collect()
            )
        );
        e.deactivate("vg", "m").unwrap();
        let subs = [
            "m_rmeta_0",
            "m_rmeta_1",
            "m_rimage_0_iorig",
            "m_rimage_1_iorig",
            "m_rimage_0_imeta",
            "m_rimage_1_imeta",
        ];
        let want = runs(subs.iter().flat_map(|l| held(&e, l)).collect());
        z.clear();
        assert!(e.remove_logical_volume("vg", "m").unwrap());
        assert_eq!(runs(z.zeroed()), want);
        let read = e.meta.read("vg").unwrap();
        assert!(read.vg.lvs.is_empty(), "{:?}", read.vg.lvs);
        assert_eq!(read.vg.free_extents(), read.vg.total_extents());
    }

    /// A grown mirror: the grown part of every leg's copy is zeroed, exactly that, and
    /// before the commit (a failed zeroing leaves the VG as it was), so nothing those
    /// extents held reads back through the mirror or is resynced onto a leg.
    #[test]
    fn a_grown_mirror_has_the_new_part_of_every_leg_zeroed_before_its_commit() {
        let (e, z) = engine(64 * MIB);
        e.create_logical_volume("vg", &spec("m", 12, mirror(1)))
            .unwrap();
        let images = ["m_rimage_0", "m_rimage_1"];
        let before: Vec<_> = images.iter().map(|l| runs(held(&e, l))).collect();
        let seqno = e.meta.read("vg").unwrap().vg.seqno;
        z.clear();
        z.set_fail(true);
        e.resize_logical_volume("vg", "m", Bytes(20 * MIB))
            .unwrap_err();
        assert_eq!(e.meta.read("vg").unwrap().vg.seqno, seqno, "committed");
        z.set_fail(false);
        z.clear();
        let grown = e.resize_logical_volume("vg", "m", Bytes(20 * MIB)).unwrap();
        assert_eq!(grown.size, Bytes(20 * MIB));
        let mut want = Vec::new();
        for (i, l) in images.iter().enumerate() {
            let after = runs(held(&e, l));
            assert_eq!(after.len(), 1, "{l} continued in one run: {after:?}");
            let (d, o, len) = after[0].clone();
            let old = &before[i][0];
            assert_eq!((&d, o), (&old.0, old.1), "{l} moved");
            want.push((d, o + old.2, len - old.2));
        }
        want.sort();
        assert_eq!(runs(z.zeroed()), want);
        // Growing to the size it has: nothing zeroed again, nothing committed.
        z.clear();
        e.resize_logical_volume("vg", "m", Bytes(20 * MIB)).unwrap();
        assert!(z.zeroed().is_empty(), "{:?}", z.zeroed());
    }

    #[test]
    fn mirrors_count_every_copy_in_capacity_and_refusals() {
        let (e, _) = engine(64 * MIB);
        let space = e.space("vg", 1).unwrap();
        // Two equal PVs: each leg needs its extent of metadata beside its copy.
        let per_pv = space.total.0 / 2;
        assert_eq!(space.largest_raid1, vec![Bytes(per_pv - 4 * MIB)]);
        // More copies than PVs can never be made.
        let e3 = e
            .create_logical_volume("vg", &spec("m3", 4, mirror(2)))
            .unwrap_err();
        assert!(e3.to_string().contains("3 copies need as many PVs"), "{e3}");
        // Space taken on one PV bounds the mirror, though the VG has more free.
        e.create_logical_volume("vg", &spec("x", 40, Layout::Linear))
            .unwrap();
        let space = e.space("vg", 1).unwrap();
        let largest = space.largest_raid1[0];
        assert_eq!(largest, Bytes(per_pv - 44 * MIB));
        let mut big = spec("big", 0, mirror(1));
        big.size = Bytes(largest.0 + 4 * MIB);
        assert!(2 * (big.size.0 + 4 * MIB) <= space.free.0);
        let no = e.create_logical_volume("vg", &big).unwrap_err();
        assert!(no.to_string().contains("mirror legs need 2 PVs"), "{no}");
        // "No space" (RESOURCE_EXHAUSTED), not a request that could never fit.
        assert!(
            matches!(no, EngineError::Lvm(crate::lvm::LvmError::Alloc { .. })),
            "{no:?}"
        );
        big.size = largest;
        e.create_logical_volume("vg", &big).unwrap();
        assert_eq!(e.space("vg", 1).unwrap().largest_raid1, vec![Bytes(0)]);
    }

    /// A large mirror's removal becomes a wipe LV with its legs, renamed along, and
    /// the name is free again at once, for a mirror too.
    #[test]
    fn a_large_mirror_is_wiped_in_the_background_with_its_legs() {
        let (e, z) = engine(16 * MIB);
        e.create_logical_volume("vg", &spec("m", 40, mirror(1)))
            .unwrap();
        z.clear();
        assert!(e.remove_logical_volume("vg", "m").unwrap());
        let read = e.meta.read("vg").unwrap();
        let names: Vec<&str> = read.vg.lvs.iter().map(|l| l.name.as_str()).collect();
        assert!(
            names.iter().all(|n| n.starts_with(marks::WIPE_NAME_PREFIX)),
            "{names:?}"
        );
        assert_eq!(names.len(), 5, "{names:?}");
        e.create_logical_volume("vg", &spec("m", 8, mirror(1)))
            .unwrap();
        assert_eq!(e.finish_wipes().unwrap(), 1);
        let read = e.meta.read("vg").unwrap();
        assert_eq!(read.vg.lvs.len(), 5, "the new mirror and its 4 legs");
        assert!(z.zeroed().iter().map(|(_, _, l)| l.0).sum::<u64>() >= 2 * 44 * MIB);
    }

    /// A PV gone: the mirror with a leg on it is degraded (one copy left, naming the
    /// leg and the PV), a linear volume on it has failed, one elsewhere is fine.
    #[test]
    fn health_names_what_a_missing_pv_takes() {
        use crate::daemon::engine::Health;
        let (e, _) = engine(64 * MIB);
        e.create_logical_volume("vg", &spec("m", 12, mirror(1)))
            .unwrap();
        e.create_logical_volume("vg", &spec("a", 8, Layout::Linear))
            .unwrap();
        let read = e.meta.read("vg").unwrap();
        let on_a = read.vg.lv("a").unwrap().segments[0].clone();
        let crate::model::SegmentKind::Striped { stripes, .. } = &on_a.kind else {
            panic!()
        };
        let gone = stripes[0].name.clone();
        let mut vg = crate::model::VolumeGroup::clone(&read.vg);
        vg.pvs.iter_mut().find(|p| p.name == gone).unwrap().device = None;
        e.insert_vg(vg);
        let info = |lv: &str| e.logical_volume("vg", lv).unwrap().health;
        match info("m") {
            Health::Degraded(m) => {
                assert!(m.contains("1 of 2 copies left"), "{m}");
                assert!(m.contains("_rimage_") && m.contains(&gone), "{m}");
            }
            other => panic!("{other:?}"),
        }
        match info("a") {
            Health::Failed(m) => assert!(m.contains(&gone), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// An active mirror: the kernel's status gives the sync figures, and a leg dm-raid
    /// failed (`D`) makes the volume degraded, naming the leg and its PV, even with
    /// every PV present; inactive, the kernel has nothing to say.
    #[test]
    fn health_from_the_kernel_names_a_failed_leg() {
        use crate::activate::target::RaidStatus;
        use crate::daemon::engine::Health;
        let devs = vec![
            (PathBuf::from("/dev/sim0"), Bytes(256 * MIB)),
            (PathBuf::from("/dev/sim1"), Bytes(256 * MIB)),
        ];
        let (e, act, _) = SimEngine::with_sims(&devs, vec![]);
        e.create_volume_group("vg", &[devs[0].0.clone(), devs[1].0.clone()])
            .unwrap();
        e.create_logical_volume("vg", &spec("m", 12, mirror(1)))
            .unwrap();
        let status: RaidStatus = "raid1 2 AD 24576/24576 idle 0".parse().unwrap();
        act.set_raid_status("vg", "m", status);
        let info = e.logical_volume("vg", "m").unwrap();
        assert_eq!(info.health, Health::Ok, "inactive: metadata only");
        assert_eq!(info.sync, None);
        e.activate("vg", "m").unwrap();
        let info = e.logical_volume("vg", "m").unwrap();
        let read = e.meta.read("vg").unwrap();
        let crate::model::SegmentKind::Striped { stripes, .. } =
            &read.vg.lv("m_rimage_1").unwrap().segments[0].kind
        else {
            panic!()
        };
        match &info.health {
            Health::Degraded(m) => {
                assert!(m.contains("1 of 2 copies left"), "{m}");
                assert!(m.contains("m_rimage_1") && !m.contains("m_rimage_0"), "{m}");
                assert!(m.contains(&stripes[0].name), "{m}");
                assert!(m.contains("failed in the kernel"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let sync = info.sync.unwrap();
        assert_eq!(
            (
                sync.sync_basis_points,
                sync.action.as_str(),
                sync.legs.as_str()
            ),
            (10_000, "idle", "AD")
        );
        // Recovering onto a new leg: healthy copies, sync below 100%.
        let status: RaidStatus = "raid1 2 Aa 6144/24576 recover 0".parse().unwrap();
        act.set_raid_status("vg", "m", status);
        let info = e.logical_volumes("vg").unwrap().remove(0);
        assert_eq!(info.health, Health::Ok);
        let sync = info.sync.unwrap();
        assert_eq!(
            (sync.sync_basis_points, sync.action.as_str()),
            (2500, "recover")
        );
    }
}
