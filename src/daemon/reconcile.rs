//! Start-up reconciliation: brings the kernel's device-mapper state in line with the
//! metadata on disk after a crash (or another tool) left them apart.
//!
//! For each VG the daemon manages, once, before it serves:
//!
//! - a VG whose metadata areas hold different versions (killed between the headers of
//!   a commit) is written again, so every area has the newest and lvm2 stops warning;
//! - an active LV whose table is not the one its metadata makes (a resize committed,
//!   then the daemon died before the table reload) is refreshed, so the space is there;
//! - a device of the VG whose LV the metadata no longer has is removed when nothing
//!   holds it open, and logged when something does (lvmd never pulls a device from
//!   under a mount); only a plain volume's device (linear, striped), never a raid,
//!   thin, ... device or a layer, which is logged and left;
//! - devices of LVs lvmd does not resize (thin pools, other kinds) are never reloaded:
//!   a table that differs from their metadata is reported, not refreshed (raid1 and
//!   thin LVs, which lvmd grows, are refreshed as plain ones are);
//! - the devices of a COW snapshot whose deletion was committed but not finished are
//!   removed, and an origin left with no snapshot is switched back to its own table
//!   (`Activator::release_cow`);
//! - a read-only loop device lvmd attached over an active LV for a read-only block
//!   publish, that is now mounted nowhere (lvmd died between attaching and binding it,
//!   or an unpublish could not detach it), is detached. Only lvmd's (its label),
//!   read-only, over an LV of the VG, and with no mount and no holder; an open file
//!   descriptor, which the kernel does not show, only makes the detach lazy (it lands
//!   on the last close). This assumes lvmd sees the mounts it made, i.e. runs in the
//!   host's mount namespace, as it must to publish anyway.
//!
//! - an lvmd crypt mapping (`lvmd-crypt-<VG>-<LV>`) whose LV the metadata no longer
//!   has is closed (before the leftovers above: it holds the LV's device); one in use
//!   (mounted) is logged and left. Mappings of existing LVs, and every mapping that is
//!   not lvmd's, are not touched.
//!
//! Every repair is logged and returned. Problems are logged too; the daemon starts
//! anyway. See [`VolumeEngine`]'s doc comment for why these two are all a crash of
//! lvmd can leave behind.

use super::activation::{ActivationError, ActiveVolume};
use super::volumes::{Metadata, VolumeEngine};
use crate::lvm::Edit;

/// What reconciliation did or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The newest metadata written to every area again.
    Rewrote { vg: String },
    /// An active LV's table reloaded from the metadata.
    Refreshed { vg: String, lv: String },
    /// A device whose LV is gone from the metadata, removed.
    RemovedLeftover { vg: String, device: String },
    /// Such a device, left alone because it is open.
    LeftoverOpen {
        vg: String,
        device: String,
        open_count: u32,
    },
    /// Such a device, left alone because it is not a plain volume's (a raid, thin,
    /// ... device, or a layer): lvmd does not remove what it does not manage.
    LeftoverKept {
        vg: String,
        device: String,
        why: String,
    },
    /// A read-only loop device over an LV, attached by lvmd and mounted nowhere,
    /// detached.
    DetachedLoop {
        vg: String,
        lv: String,
        device: String,
    },
    /// An lvmd crypt mapping whose LV is gone, closed.
    ClosedCrypt { vg: String, mapping: String },
    /// Something could not be checked or repaired.
    Failed {
        vg: String,
        what: String,
        why: String,
    },
}

impl<M: Metadata> VolumeEngine<M> {
    fn unused_read_only_loops(&self, vg: &str, active: &[ActiveVolume], out: &mut Vec<Repair>) {
        let node = &self.node.node;
        for a in active {
            let loops = match node.loops_over(&a.device) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(
                        vg,
                        lv = a.lv,
                        "reconciliation: cannot list loop devices: {e}"
                    );
                    out.push(Repair::Failed {
                        vg: vg.into(),
                        what: format!("loop devices over {}", a.lv),
                        why: e.to_string(),
                    });
                    continue;
                }
            };
            for l in loops.into_iter().filter(|l| l.read_only && l.lvmd) {
                let done = node.loop_users(&l.path).and_then(|users| {
                    if users.is_empty() {
                        node.detach_loop(&l.path).map(|()| true)
                    } else {
                        Ok(false)
                    }
                });
                match done {
                    Ok(false) => {}
                    Ok(true) => {
                        tracing::warn!(vg, lv = a.lv, loop_device = %l.path.display(),
                            "reconciliation: detached a read-only loop device lvmd attached that nothing mounts");
                        out.push(Repair::DetachedLoop {
                            vg: vg.into(),
                            lv: a.lv.clone(),
                            device: l.path.display().to_string(),
                        });
                    }
                    Err(e) => out.push(Repair::Failed {
                        vg: vg.into(),
                        what: l.path.display().to_string(),
                        why: e.to_string(),
                    }),
                }
            }
        }
    }

    /// Closes the lvmd crypt mappings of `vg` whose LV the metadata does not have.
    fn orphan_crypt_mappings(&self, read: &super::volumes::VgRead, out: &mut Vec<Repair>) {
        let vg = read.vg.name.as_str();
        let node = &self.node.node;
        let names = match node.crypt_mappings() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(vg, "reconciliation: cannot list crypt mappings: {e}");
                return out.push(Repair::Failed {
                    vg: vg.into(),
                    what: "crypt mappings".into(),
                    why: e.to_string(),
                });
            }
        };
        for name in names
            .iter()
            .filter(|n| n.vg() == vg && read.vg.lv(n.lv()).is_none())
        {
            match node.luks_close(name) {
                Ok(_) => {
                    tracing::warn!(vg, mapping = %name,
                        "reconciliation: closed the crypt mapping of a volume that is gone");
                    out.push(Repair::ClosedCrypt {
                        vg: vg.into(),
                        mapping: name.to_string(),
                    });
                }
                Err(e) => {
                    tracing::warn!(vg, mapping = %name, "reconciliation: the crypt mapping of a volume that is gone stays: {e}");
                    out.push(Repair::Failed {
                        vg: vg.into(),
                        what: name.to_string(),
                        why: e.to_string(),
                    });
                }
            }
        }
    }

    /// Reconciles each VG of `vgs` (see the module doc). Takes each VG's write lock.
    pub fn reconcile(&self, vgs: &[String]) -> Vec<Repair> {
        let mut out = Vec::new();
        for vg in vgs {
            let lock = self.locks.get(vg);
            let _g = lock.write().unwrap();
            self.reconcile_vg(vg, &mut out);
        }
        out
    }

    fn reconcile_vg(&self, vg: &str, out: &mut Vec<Repair>) {
        let failed = |what: &str, why: String| {
            tracing::warn!(vg, what, "reconciliation: {why}");
            Repair::Failed {
                vg: vg.into(),
                what: what.into(),
                why,
            }
        };
        match self.meta.has_stale_copies(vg) {
            Ok(false) => {}
            Ok(true) => match self.meta.edit(vg, &Edit::Rewrite) {
                Ok(()) => {
                    tracing::warn!(
                        vg,
                        "reconciliation: metadata areas held different versions (a commit cut short); wrote the newest to all"
                    );
                    out.push(Repair::Rewrote { vg: vg.into() });
                }
                Err(e) => out.push(failed("rewrite", e.to_string())),
            },
            Err(e) => return out.push(failed("read", e.to_string())),
        }
        let read = match self.meta.read(vg) {
            Ok(r) => r,
            Err(e) => return out.push(failed("read", e.to_string())),
        };
        self.orphan_crypt_mappings(&read, out);
        let act = &self.activation;
        match act.active_volumes(&read) {
            Ok(active) => {
                self.unused_read_only_loops(vg, &active, out);
                // Devices whose LV is gone are leftovers, below.
                for a in active.into_iter().filter(|a| read.vg.lv(&a.lv).is_some()) {
                    let model = read.vg.lv(&a.lv).expect("filtered");
                    match act.table_current(&read, &a.lv) {
                        Ok(true) => {}
                        // Thin pools (and other kinds): lvmd never resizes them, so a
                        // difference is not a resize of its own cut short; lvm2's to fix.
                        // (Raid1 and thin LVs lvmd grows: refreshed below like a plain
                        // one; the refresh refuses to shrink an open device.)
                        Ok(false)
                            if !model.is_plain()
                                && !matches!(model.type_name(), "raid1" | "thin") =>
                        {
                            out.push(failed(
                                &a.lv,
                                format!(
                                    "its active devices differ from its metadata; lvmd does not \
                                 reload {} volumes (lvm2's lvchange --refresh does)",
                                    model.type_name()
                                ),
                            ))
                        }
                        Ok(false) => match act.refresh(&read, &a.lv) {
                            Ok(now) => {
                                tracing::warn!(
                                    vg,
                                    lv = a.lv,
                                    from = a.size.0,
                                    to = now.map_or(0, |n| n.size.0),
                                    "reconciliation: active table differed from the metadata; refreshed"
                                );
                                out.push(Repair::Refreshed {
                                    vg: vg.into(),
                                    lv: a.lv,
                                });
                            }
                            Err(e) => out.push(failed(&a.lv, e.to_string())),
                        },
                        // Types lvmd does not activate (raid, thin, ...): not ours to fix.
                        Err(e) if e.is_unsupported() => {}
                        Err(e) => out.push(failed(&a.lv, e.to_string())),
                    }
                }
            }
            Err(ActivationError::Unavailable(_)) => return,
            Err(e) => return out.push(failed("active volumes", e.to_string())),
        }
        // COW snapshot devices whose snapshot a deletion cut short already removed from
        // the metadata (`cow-removed`): released, the origin back on its own table if
        // it has no other; before the leftovers, which leave snapshot devices alone.
        if let Err(e) = act.release_cow(&read, None) {
            out.push(failed("COW snapshot devices", e.to_string()));
        }
        let leftovers = match act.leftovers(&read) {
            Ok(l) => l,
            Err(e) => return out.push(failed("leftover devices", e.to_string())),
        };
        for l in leftovers {
            let open = |open_count| {
                tracing::warn!(
                    vg,
                    device = l.dm_name,
                    open_count,
                    "reconciliation: device of a logical volume no longer in the metadata is open; left alone"
                );
                Repair::LeftoverOpen {
                    vg: vg.into(),
                    device: l.dm_name.clone(),
                    open_count,
                }
            };
            if l.open_count > 0 {
                out.push(open(l.open_count));
                continue;
            }
            match act.remove_leftover(&read, &l) {
                Ok(true) => {
                    tracing::warn!(
                        vg,
                        device = l.dm_name,
                        "reconciliation: removed the device of a logical volume no longer in the metadata"
                    );
                    out.push(Repair::RemovedLeftover {
                        vg: vg.into(),
                        device: l.dm_name.clone(),
                    });
                }
                Ok(false) => {}
                Err(ActivationError::Busy { .. }) => out.push(open(1)),
                // A raid, thin, ... device or a layer: not lvmd's to remove.
                Err(e) if e.is_unsupported() => {
                    tracing::warn!(
                        vg,
                        device = l.dm_name,
                        "reconciliation: device of a logical volume no longer in the metadata left alone: {e}"
                    );
                    out.push(Repair::LeftoverKept {
                        vg: vg.into(),
                        device: l.dm_name.clone(),
                        why: e.to_string(),
                    });
                }
                Err(e) => out.push(failed(&l.dm_name, e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::{Engine, Layout, LvSpec};
    use crate::daemon::SimEngine;
    use crate::units::Bytes;
    use std::path::PathBuf;

    const MIB: u64 = 1 << 20;

    fn engine() -> (SimEngine, std::sync::Arc<crate::daemon::SimActivation>) {
        let devs = vec![(PathBuf::from("/dev/sim0"), Bytes(256 * MIB))];
        let (e, act, _) = SimEngine::with_sims(&devs, vec![]);
        e.create_volume_group("vg", &[PathBuf::from("/dev/sim0")])
            .unwrap();
        (e, act)
    }

    fn create(e: &SimEngine, name: &str) {
        e.create_logical_volume(
            "vg",
            &LvSpec {
                name: name.into(),
                size: Bytes(8 * MIB),
                layout: Layout::Linear,
                tags: vec![],
            },
        )
        .unwrap();
    }

    #[test]
    fn nothing_to_do_is_quiet() {
        let (e, _) = engine();
        create(&e, "a");
        e.activate("vg", "a").unwrap();
        assert_eq!(e.reconcile(&["vg".into()]), vec![]);
    }

    #[test]
    fn a_grow_committed_before_the_reload_is_refreshed() {
        let (e, act) = engine();
        create(&e, "a");
        e.activate("vg", "a").unwrap();
        // The commit of a resize, then a crash before the table reload.
        let size = Bytes(20 * MIB);
        let grow = Edit::ResizeLv {
            lv: "a".into(),
            size,
        };
        e.meta.edit("vg", &grow).unwrap();
        assert_eq!(act.active_in("vg")[0].size, Bytes(8 * MIB));
        let r = e.reconcile(&["vg".into()]);
        assert_eq!(
            r,
            vec![Repair::Refreshed {
                vg: "vg".into(),
                lv: "a".into()
            }]
        );
        assert_eq!(act.active_in("vg")[0].size, Bytes(20 * MIB));
        // Done once: a second pass finds nothing.
        assert_eq!(e.reconcile(&["vg".into()]), vec![]);
    }

    #[test]
    fn devices_of_removed_volumes_go_unless_open() {
        let (e, act) = engine();
        for n in ["gone", "held", "kept"] {
            create(&e, n);
            e.activate("vg", n).unwrap();
        }
        act.set_open_count("vg", "held", 1);
        // Removed from the metadata behind the daemon's back while active.
        for lv in ["gone", "held"] {
            e.meta
                .edit("vg", &Edit::RemoveLv { lv: lv.into() })
                .unwrap();
        }
        let r = e.reconcile(&["vg".into()]);
        assert!(r.contains(&Repair::RemovedLeftover {
            vg: "vg".into(),
            device: "vg-gone".into()
        }));
        assert!(r.contains(&Repair::LeftoverOpen {
            vg: "vg".into(),
            device: "vg-held".into(),
            open_count: 1
        }));
        assert_eq!(r.len(), 2, "{r:?}");
        let left: Vec<String> = act.active_in("vg").into_iter().map(|a| a.lv).collect();
        assert_eq!(left, ["held", "kept"]);
    }

    #[test]
    fn a_commit_cut_between_headers_is_rewritten() {
        use crate::daemon::{RealEngine, SimActivation, SimNode};
        use crate::lvm::{FaultInjector, Layout, Lvm};
        use crate::store::lock::Locker;
        use crate::store::CommitStep;
        use crate::units::ExtentSize;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let images: Vec<PathBuf> = (0..2)
            .map(|i| {
                let p = dir.path().join(format!("disk{i}.img"));
                std::fs::File::create(&p)
                    .unwrap()
                    .set_len(16 * MIB)
                    .unwrap();
                p
            })
            .collect();
        let mut lvm = Lvm::new(images.clone());
        lvm.locker = Locker::new(dir.path().join("locks"));
        lvm.backup = None;
        lvm.lvm2_run_dir = dir.path().join("lvm2-run");
        lvm.lvm2_devices_file.dir = dir.path().join("lvm2-devices");
        lvm.vg_create("vg", &images, ExtentSize::DEFAULT).unwrap();
        // The process "dies" after the first PV's header points at the new text.
        let mut cut = lvm.clone();
        cut.inject = Some(FaultInjector(Arc::new(|step| {
            !matches!(step, CommitStep::HeaderWritten { .. })
        })));
        cut.lv_create("vg", "a", Bytes(4 * MIB), Layout::Linear, &[])
            .unwrap_err();
        assert!(!lvm.read_vg("vg").unwrap().stale.is_empty());

        let engine = RealEngine::real(
            lvm.clone(),
            Arc::new(SimActivation::default()),
            Arc::new(SimNode::default()),
            vec![],
        );
        assert_eq!(
            engine.reconcile(&["vg".into()]),
            vec![Repair::Rewrote { vg: "vg".into() }]
        );
        let found = lvm.read_vg("vg").unwrap();
        assert!(found.stale.is_empty(), "{:?}", found.stale);
        assert!(found.vg.lv("a").is_some(), "the newest copy wins");
        assert_eq!(engine.reconcile(&["vg".into()]), vec![]);
    }

    #[test]
    fn unused_read_only_loops_of_lvmd_are_detached_others_kept() {
        use crate::daemon::node::Node;
        use crate::daemon::SimNode;
        use std::path::Path;
        let devs = vec![(PathBuf::from("/dev/sim0"), Bytes(256 * MIB))];
        let (e, _, node): (SimEngine, _, std::sync::Arc<SimNode>) =
            SimEngine::with_sims(&devs, vec![PathBuf::from("/k")]);
        e.create_volume_group("vg", &[PathBuf::from("/dev/sim0")])
            .unwrap();
        for n in ["a", "b"] {
            create(&e, n);
        }
        // Published read-only: bound, so in use.
        e.publish_block("vg", "a", Path::new("/k/a"), true).unwrap();
        let dev = e.activate("vg", "b").unwrap().device.unwrap();
        // Attached, then lvmd died before binding it: a leftover.
        let leftover = node.attach_read_only_loop(&dev).unwrap();
        // Someone else's, unused: not ours to detach.
        let theirs = node.attach_foreign_loop(&dev, true);
        let r = e.reconcile(&["vg".into()]);
        assert_eq!(
            r,
            vec![Repair::DetachedLoop {
                vg: "vg".into(),
                lv: "b".into(),
                device: leftover.display().to_string(),
            }]
        );
        let left: Vec<PathBuf> = node.loops().into_iter().map(|l| l.path).collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&theirs));
        assert!(!left.contains(&leftover));
        assert_eq!(e.reconcile(&["vg".into()]), vec![]);
    }

    #[test]
    fn grown_thin_volumes_and_mirrors_are_reloaded_pools_never() {
        use crate::format::text;
        use crate::model::VolumeGroup;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lvm2/mixed/vgcfgbackup.txt");
        let doc = text::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut vg = VolumeGroup::from_document(&doc).unwrap().0;
        let name = vg.name.clone();
        let (e, act, _) = SimEngine::with_sims(&[], vec![]);
        e.insert_vg(vg.clone());
        for lv in ["mirrored", "thin", "pool", "lin_a"] {
            e.activate(&name, lv).unwrap();
        }
        assert_eq!(e.reconcile(std::slice::from_ref(&name)), vec![]);
        // Their metadata changed behind the daemon's back (a grow cut before its
        // reload, or lvm2 extended them).
        for lv in ["mirrored", "thin", "pool"] {
            let seg = &mut vg.lv_mut(lv).unwrap().segments[0];
            seg.extent_count = seg.extent_count + seg.extent_count;
        }
        e.insert_vg(vg);
        let before = act.active_in(&name);
        let r = e.reconcile(std::slice::from_ref(&name));
        // The mirror and the thin volume are ones lvmd grows itself, so their tables
        // follow the metadata; the pool is lvm2's to reload.
        assert_eq!(r.len(), 3, "{r:?}");
        for grown in ["mirrored", "thin"] {
            assert!(
                r.iter()
                    .any(|x| matches!(x, Repair::Refreshed { lv, .. } if lv == grown)),
                "{grown}: {r:?}"
            );
        }
        assert!(
            r.iter()
                .any(|x| matches!(x, Repair::Failed { what, why, .. }
                if what == "pool" && why.contains("does not reload thin-pool volumes"))),
            "{r:?}"
        );
        let after = act.active_in(&name);
        let pool = |v: &[crate::daemon::activation::ActiveVolume]| {
            v.iter()
                .filter(|a| a.lv == "pool")
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(pool(&after), pool(&before), "reloaded");
    }

    #[test]
    fn unreadable_vg_and_missing_dm_are_reported_not_fatal() {
        let (e, act) = engine();
        let r = e.reconcile(&["nope".into()]);
        assert!(matches!(&r[..], [Repair::Failed { what, .. }] if what == "read"));
        act.set_unavailable(Some("no device-mapper"));
        assert_eq!(e.reconcile(&["vg".into()]), vec![]);
    }
}
