//! A running mirror's legs added or removed (lvm2's `lvconvert -m N`), crash-safe and
//! with no data left readable on the extents a removed leg gives back.

use super::crash;
use super::engine::{EngineError, LvInfo, Result};
use super::marks;
use super::view;
use super::volumes::{lv_not_found, Metadata, VgRead, VolumeEngine};
use super::wipe;
use crate::lvm::edit::RemovedLegs;
use crate::lvm::Edit;
use crate::units::Extents;
use std::path::PathBuf;
use std::sync::Arc;

impl<M: Metadata> VolumeEngine<M> {
    /// [`super::engine::Engine::convert_logical_volume`] under the VG's write lock.
    ///
    /// Adding, in repair's order ([`Self::repair_locked`]'s mechanism): (1) the new
    /// legs' metadata areas (and integrity metadata) are zeroed while their extents
    /// are still free, so dm-raid finds no stale superblock and takes each leg as new;
    /// (2) one commit adds the legs flagged `REBUILD` (`converted`); (3) the legs'
    /// devices are made and the raid table reloaded with `rebuild K`, which starts
    /// the copy (`convert-reloaded`); (4) a commit drops the flags. A crash after (2):
    /// the start-up reconciliation reloads the table behind its metadata, and a retry
    /// of the same request drops the flags.
    ///
    /// Removing: (1) one commit takes the legs out of the mirror and keeps their
    /// linear sub-LVs as wipe LVs (`lvmd-wipe-<uuid>`, `lvmd.wipe`), so their extents
    /// stay allocated until zeroed, as lvm2 keeps extracted legs as LVs until it removes
    /// them (`converted`); (2) the raid table is reloaded without them, their devices
    /// removed, and the legs after them renamed as the metadata now names them
    /// (`convert-reloaded`); (3) the wiper zeroes the wipe LVs and removes them, but
    /// never while a device of one is still active (dm-raid might still write there).
    /// A crash after (1): the reconciliation reloads the table, and the wiper goes on
    /// once the old legs' devices are gone.
    pub(super) fn convert_locked(
        &self,
        vg: &str,
        lv: &str,
        mirrors: u32,
        pv_devices: &[PathBuf],
    ) -> Result<LvInfo> {
        let read = self.meta.read(vg)?;
        let current = self.info(&read, lv)?;
        let precondition = |why: String| EngineError::FailedPrecondition {
            what: "logical volume",
            name: format!("{vg}/{lv}"),
            why,
        };
        let model = read.vg.lv(lv).ok_or_else(|| lv_not_found(vg, lv))?;
        let Some(legs) = crate::lvm::raid_legs(model) else {
            return Err(precondition(format!(
                "is a {} volume; only raid1 mirrors have legs to add or remove",
                model.type_name()
            )));
        };
        let pvs = pv_names(&read, pv_devices)?;
        let active = current.device.is_some();
        if legs.len() == mirrors as usize + 1 {
            // Nothing to change; a conversion cut after its commit is finished: the
            // table brought in line, a rebuild's flags dropped, wipes resumed.
            if active {
                if !self.activation.table_current(&read, lv)? {
                    self.activation.refresh(&read, lv)?;
                }
                self.meta
                    .edit(vg, &Edit::RaidRebuildLoaded { lv: lv.into() })?;
                self.wiper.poke();
            }
            return self.info(&self.meta.read(vg)?, lv);
        }
        if !active {
            return Err(precondition(
                "is not active; activate it first (a mirror's legs change while it runs, as \
                 with lvm2's lvconvert -m)"
                    .into(),
            ));
        }
        let status = self.raid_status(&read, lv, true);
        if let Some(i) = (0..legs.len())
            .find(|&i| view::leg_fault(&read, i, &legs[i], status.as_ref()).is_some())
        {
            return Err(precondition(format!(
                "its leg {} has failed; repair the mirror first (lvmd-ctl lv repair)",
                legs[i].1
            )));
        }
        // lvm2 refuses too: a copy made from, or left as, a leg not yet in sync would
        // not hold the volume's data.
        match status.as_ref().and_then(|s| s.sync_basis_points()) {
            Some(10_000) => {}
            Some(bp) => {
                return Err(precondition(format!(
                    "is {}.{:02}% in sync; let it finish syncing before changing its legs",
                    bp / 100,
                    bp % 100
                )))
            }
            None => {
                return Err(precondition(
                    "its sync state cannot be read from the kernel; lvmd changes the legs of \
                     mirrors it knows to be in sync"
                        .into(),
                ))
            }
        }
        let edit = Edit::ConvertRaid {
            lv: lv.into(),
            mirrors,
            pvs,
            removed: RemovedLegs::Kept {
                name_prefix: marks::WIPE_NAME_PREFIX.into(),
                tags: vec![marks::WIPE.into()],
            },
        };
        let adding = mirrors as usize + 1 > legs.len();
        if adding {
            // The VG as the edit will leave it (pure; this lock holds the VG still):
            // where the new legs' metadata areas go.
            let origin = crate::lvm::edit::Origin {
                host: String::new(),
                time: 0,
                pv_block_sizes: Default::default(),
            };
            let planned = crate::lvm::edit::apply(&read.vg, &edit, &origin)
                .map_err(|e| self.no_space(vg, e))?;
            let planned = VgRead {
                vg: Arc::new(planned.vg),
                ..read.clone()
            };
            let new_legs =
                crate::lvm::raid_legs(planned.vg.lv(lv).expect("converted")).expect("still raid1");
            let ranges = self.new_leg_metadata_ranges(&planned, &new_legs[legs.len()..])?;
            self.zero_ranges(vg, lv, "new mirror legs' metadata areas", &ranges, None)?;
        }
        self.meta
            .edit(vg, &edit)
            .map_err(|e| self.no_space(vg, e))?;
        crash::point("converted");
        let read = self.meta.read(vg)?;
        self.activation.refresh(&read, lv)?;
        crash::point("convert-reloaded");
        if adding {
            self.meta
                .edit(vg, &Edit::RaidRebuildLoaded { lv: lv.into() })?;
        } else {
            // The removed legs' extents, now wipe LVs no device uses.
            self.wiper.poke();
        }
        tracing::info!(
            vg,
            lv,
            from = legs.len(),
            to = mirrors + 1,
            "mirror legs changed"
        );
        self.info(&self.meta.read(vg)?, lv)
    }

    /// Where the metadata areas of mirror legs `legs` (as planned) lie: each leg's
    /// `_rmeta` whole, and with integrity its `_imeta` whole, as at creation and repair.
    pub(super) fn new_leg_metadata_ranges(
        &self,
        planned: &VgRead,
        legs: &[(String, String)],
    ) -> Result<Vec<wipe::DeviceRange>> {
        let vg = &planned.vg.name;
        let mut ranges = Vec::new();
        for (meta, image) in legs {
            let mut whole = vec![meta.clone()];
            if let Some((_, imeta)) = planned
                .vg
                .lv(image)
                .and_then(|image| image.integrity_layer())
            {
                whole.push(imeta.to_owned());
            }
            for name in &whole {
                let sub = planned.vg.lv(name).ok_or_else(|| lv_not_found(vg, name))?;
                ranges.extend(wipe::freed_ranges(planned, sub, Extents::ZERO)?);
            }
        }
        Ok(ranges)
    }
}

/// The VG's PV names of the devices a request names (where new legs may go, or which
/// legs go), each checked to be a PV of this VG.
fn pv_names(read: &VgRead, devices: &[PathBuf]) -> Result<Vec<String>> {
    devices
        .iter()
        .map(|d| {
            let canonical = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
            read.vg
                .pvs
                .iter()
                .find(|pv| {
                    read.devices.get(&pv.id).is_some_and(|found| {
                        found == d || std::fs::canonicalize(found).is_ok_and(|f| f == canonical)
                    })
                })
                .map(|pv| pv.name.clone())
                .ok_or_else(|| EngineError::InvalidArgument {
                    what: "physical volume",
                    value: d.display().to_string(),
                    why: format!("is not a PV of volume group {} found here", read.vg.name),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::activate::target::RaidStatus;
    use crate::daemon::engine::{Engine, EngineError, Layout, LvSpec};
    use crate::daemon::volumes::Metadata;
    use crate::daemon::wipe::{self, SimZeroer};
    use crate::daemon::SimEngine;
    use crate::model::layout::DEFAULT_REGION_SIZE;
    use crate::model::SegmentKind;
    use crate::units::{Bytes, Extents};
    use std::path::PathBuf;
    use std::sync::Arc;

    const MIB: u64 = 1 << 20;

    /// Three 128 MiB PVs, an active 12 MiB two-leg mirror `m` in sync (as the kernel
    /// says it), its legs' extents zeroed already on record cleared.
    fn engine(
        integrity: bool,
    ) -> (
        SimEngine,
        Arc<crate::daemon::activation::SimActivation>,
        Arc<SimZeroer>,
    ) {
        let devs: Vec<(PathBuf, Bytes)> = (0..3)
            .map(|i| (PathBuf::from(format!("/dev/sim{i}")), Bytes(128 * MIB)))
            .collect();
        let (e, act, _) = SimEngine::with_sims(&devs, vec![]);
        let z = Arc::new(SimZeroer::default());
        let e = e.with_zeroer(z.clone());
        let paths: Vec<PathBuf> = devs.iter().map(|d| d.0.clone()).collect();
        e.create_volume_group("vg", &paths).unwrap();
        let spec = LvSpec {
            name: "m".into(),
            size: Bytes(12 * MIB),
            layout: Layout::Raid1 {
                mirrors: 1,
                region_size: DEFAULT_REGION_SIZE,
                integrity,
            },
            tags: vec![],
        };
        e.create_logical_volume("vg", &spec).unwrap();
        e.activate("vg", "m").unwrap();
        in_sync(&act, 2);
        z.clear();
        (e, act, z)
    }

    fn in_sync(act: &crate::daemon::activation::SimActivation, legs: usize) {
        let status: RaidStatus = format!("raid1 {legs} {} 24576/24576 idle 0", "A".repeat(legs))
            .parse()
            .unwrap();
        act.set_raid_status("vg", "m", status);
    }

    fn pv_device(e: &SimEngine, sub: &str) -> PathBuf {
        let read = e.meta.read("vg").unwrap();
        let SegmentKind::Striped { stripes, .. } = &read.vg.lv(sub).unwrap().segments[0].kind
        else {
            panic!("{sub}")
        };
        let pv = read.vg.pv(&stripes[0].name).unwrap();
        read.devices[&pv.id].clone()
    }

    /// Where `sub` lies on its PVs, as the wiper and zeroing see it.
    fn ranges(e: &SimEngine, sub: &str) -> Vec<wipe::DeviceRange> {
        let read = e.meta.read("vg").unwrap();
        wipe::freed_ranges(&read, read.vg.lv(sub).unwrap(), Extents::ZERO).unwrap()
    }

    fn zeroed(z: &SimZeroer) -> Vec<wipe::DeviceRange> {
        z.zeroed()
            .into_iter()
            .map(|(device, offset, len)| wipe::DeviceRange {
                device,
                offset,
                len,
            })
            .collect()
    }

    /// A leg added: on the PV no leg used, its metadata area zeroed whole before the
    /// commit (nothing else), listed as a third copy, its `REBUILD` flags dropped once
    /// the table took them; asking again changes nothing.
    #[test]
    fn a_leg_is_added_on_the_free_pv_with_its_metadata_zeroed() {
        for integrity in [false, true] {
            let (e, _, z) = engine(integrity);
            let info = e.convert_logical_volume("vg", "m", 2, &[]).unwrap();
            assert_eq!(info.layout.copies(), 3, "{:?}", info.layout);
            let mut want = ranges(&e, "m_rmeta_2");
            if integrity {
                want.extend(ranges(&e, "m_rimage_2_imeta"));
            }
            assert_eq!(zeroed(&z), want);
            assert_eq!(pv_device(&e, "m_rmeta_2"), PathBuf::from("/dev/sim2"));
            let read = e.meta.read("vg").unwrap();
            assert!(read
                .vg
                .lvs
                .iter()
                .all(|l| !l.status.iter().any(|s| s == "REBUILD")));
            let seqno = read.vg.seqno;
            e.convert_logical_volume("vg", "m", 2, &[]).unwrap();
            assert_eq!(e.meta.read("vg").unwrap().vg.seqno, seqno);
        }
    }

    /// A leg removed by its PV: the others renamed into its place, its sub-LVs kept
    /// as wipe LVs (extents allocated, hidden from clients) until the wiper zeroed every
    /// extent it held and removed them.
    #[test]
    fn a_removed_leg_is_zeroed_before_its_extents_go_free() {
        for integrity in [false, true] {
            let (e, act, z) = engine(integrity);
            e.convert_logical_volume("vg", "m", 2, &[]).unwrap();
            in_sync(&act, 3);
            let before = e.meta.read("vg").unwrap();
            let old0 = pv_device(&e, "m_rmeta_0");
            let mut held = ranges(&e, "m_rmeta_0");
            if integrity {
                held.extend(ranges(&e, "m_rimage_0_iorig"));
                held.extend(ranges(&e, "m_rimage_0_imeta"));
            } else {
                held.extend(ranges(&e, "m_rimage_0"));
            }
            z.clear();
            e.convert_logical_volume("vg", "m", 1, std::slice::from_ref(&old0))
                .unwrap();
            let read = e.meta.read("vg").unwrap();
            assert_eq!(read.vg.free_extents(), before.vg.free_extents());
            let wipes = read
                .vg
                .lvs
                .iter()
                .filter(|l| crate::daemon::marks::is_wipe(&l.name, &l.tags))
                .count();
            assert_eq!(wipes, if integrity { 3 } else { 2 });
            let names: Vec<String> = e
                .logical_volumes("vg")
                .unwrap()
                .into_iter()
                .map(|l| l.name)
                .collect();
            assert_eq!(names, ["m"]);
            for (old, new) in [(1, 0), (2, 1)] {
                let was = before.vg.lv(&format!("m_rimage_{old}")).unwrap();
                assert_eq!(read.vg.lv(&format!("m_rimage_{new}")).unwrap().id, was.id);
            }
            assert!(zeroed(&z).is_empty(), "zeroed before the wiper ran");
            assert_eq!(e.finish_wipes().unwrap(), wipes);
            let mut got = zeroed(&z);
            got.sort_by_key(|r| (r.device.clone(), r.offset));
            held.sort_by_key(|r| (r.device.clone(), r.offset));
            let covered = |r: &wipe::DeviceRange| {
                got.iter().any(|g| {
                    g.device == r.device
                        && g.offset <= r.offset
                        && g.offset.0 + g.len.0 >= r.offset.0 + r.len.0
                })
            };
            assert!(held.iter().all(covered), "{held:?} not in {got:?}");
            let after = e.meta.read("vg").unwrap();
            let extents = if integrity { 1 + 3 + 2 } else { 1 + 3 };
            assert_eq!(
                after.vg.free_extents(),
                before.vg.free_extents() + Extents(extents)
            );
        }
    }

    /// Down to one copy (`-m 0`): a linear volume on the first leg's image extents,
    /// the other leg and both metadata areas wiped before they go free.
    #[test]
    fn a_mirror_made_linear_keeps_its_first_legs_extents() {
        let (e, _, z) = engine(false);
        let before = e.meta.read("vg").unwrap();
        let image0 = before.vg.lv("m_rimage_0").unwrap().segments.clone();
        let info = e.convert_logical_volume("vg", "m", 0, &[]).unwrap();
        assert_eq!(info.layout, Layout::Linear, "{info:?}");
        let read = e.meta.read("vg").unwrap();
        assert_eq!(read.vg.lv("m").unwrap().segments, image0);
        assert!(zeroed(&z).is_empty());
        assert_eq!(e.finish_wipes().unwrap(), 3);
        let after = e.meta.read("vg").unwrap();
        assert_eq!(
            after.vg.free_extents(),
            before.vg.free_extents() + Extents(1 + 1 + 3)
        );
        assert_eq!(after.vg.lvs.len(), 1);
    }

    /// Refused with the reason, the VG as it was: a mirror still syncing, one not
    /// active, no mirror at all, a device that is no PV of the VG.
    #[test]
    fn conversions_lvmd_cannot_make_safely_are_refused() {
        let (e, act, _) = engine(false);
        let seqno = || e.meta.read("vg").unwrap().vg.seqno;
        let before = seqno();
        let status: RaidStatus = "raid1 2 Aa 6144/24576 recover 0".parse().unwrap();
        act.set_raid_status("vg", "m", status);
        let err = e.convert_logical_volume("vg", "m", 2, &[]).unwrap_err();
        assert!(err.to_string().contains("25.00% in sync"), "{err}");
        in_sync(&act, 2);
        let err = e
            .convert_logical_volume("vg", "m", 2, &[PathBuf::from("/dev/nope")])
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::InvalidArgument { value, .. } if value == "/dev/nope"),
            "{err}"
        );
        e.deactivate("vg", "m").unwrap();
        let err = e.convert_logical_volume("vg", "m", 2, &[]).unwrap_err();
        assert!(err.to_string().contains("not active"), "{err}");
        let lin = LvSpec {
            name: "lin".into(),
            size: Bytes(4 * MIB),
            layout: Layout::Linear,
            tags: vec![],
        };
        e.create_logical_volume("vg", &lin).unwrap();
        let before_lin = seqno();
        let err = e.convert_logical_volume("vg", "lin", 1, &[]).unwrap_err();
        assert!(err.to_string().contains("linear"), "{err}");
        assert_eq!(seqno(), before_lin);
        assert!(before < before_lin);
    }
}
