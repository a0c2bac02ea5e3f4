//! The simulated engine and the real one cannot disagree: the same random sequence of
//! operations (create linear, striped and raid1 volumes, grow, shrink, remove, rename, tags,
//! until space runs out) goes to `lvmd --simulate`'s engine and to the real engine on
//! this host's loop devices (metadata written to the PVs and read back, removals
//! zeroed on them), and after every operation both give the same answer and hold the
//! same VG: every PV, LV, segment, area, tag and flag, and the seqno. Only what is
//! random or of the moment is left out: uuids, creation times and hosts. lvm2's `vgck`
//! then checks the real VG. Needs root and loop devices; `LVMD_SKIP_HOST_TESTS=1`
//! skips it.

mod common;

use common::{host_tests_enabled, vg_name, Loops};
use lvmd::daemon::engine::{Engine, Layout, LvSpec};
use lvmd::daemon::volumes::Metadata;
use lvmd::daemon::{RealEngine, SimActivation, SimEngine, SimNode};
use lvmd::lvm::Edit;
use lvmd::model::VolumeGroup;
use lvmd::units::{Bytes, Sectors};
use lvmd::uuid::Uuid;
use proptest::prelude::*;
use std::sync::Arc;

const MIB: u64 = 1 << 20;
/// Two PVs of different sizes, so striping and "no space" come at different points.
const PV_MIB: [u64; 2] = [48, 36];
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
const TAGS: [&str; 3] = ["t1", "owner=x", "t3"];

#[derive(Debug, Clone)]
enum Op {
    /// `stripes` 1: linear; 2: two stripes; 0: raid1 with one mirror.
    Create {
        lv: usize,
        mib: u64,
        stripes: u32,
    },
    Resize {
        lv: usize,
        mib: u64,
    },
    Remove {
        lv: usize,
    },
    Rename {
        lv: usize,
        to: usize,
    },
    Tags {
        lv: usize,
        add: usize,
        del: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let lv = 0..NAMES.len();
    prop_oneof![
        4 => (lv.clone(), 1u64..30, 0u32..3)
            .prop_map(|(lv, mib, stripes)| Op::Create { lv, mib, stripes }),
        3 => (lv.clone(), 1u64..40).prop_map(|(lv, mib)| Op::Resize { lv, mib }),
        2 => lv.clone().prop_map(|lv| Op::Remove { lv }),
        1 => (lv.clone(), lv.clone()).prop_map(|(lv, to)| Op::Rename { lv, to }),
        1 => (lv, 0..TAGS.len(), 0..TAGS.len())
            .prop_map(|(lv, add, del)| Op::Tags { lv, add, del }),
    ]
}

/// Runs one operation as a user would: through the engine where it has a call for it,
/// through the store's edit where only lvmd itself makes it (renames, tag changes).
fn run<M: Metadata>(e: &lvmd::daemon::volumes::VolumeEngine<M>, vg: &str, op: &Op) -> String {
    let answer = match op {
        Op::Create { lv, mib, stripes } => {
            let layout = match stripes {
                0 => Layout::Raid1 {
                    mirrors: 1,
                    region_size: lvmd::model::layout::DEFAULT_REGION_SIZE,
                    integrity: false,
                },
                1 => Layout::Linear,
                n => Layout::Striped {
                    stripes: *n,
                    stripe_size: Sectors(128),
                },
            };
            let spec = LvSpec {
                name: NAMES[*lv].into(),
                size: Bytes(mib * MIB),
                layout,
                tags: vec![],
            };
            e.create_logical_volume(vg, &spec)
                .map(|c| format!("created={} size={}", c.created, c.value.size))
        }
        Op::Resize { lv, mib } => e
            .resize_logical_volume(vg, NAMES[*lv], Bytes(mib * MIB))
            .map(|l| format!("size={}", l.size)),
        Op::Remove { lv } => e
            .remove_logical_volume(vg, NAMES[*lv])
            .map(|r| format!("removed={r}")),
        Op::Rename { lv, to } => {
            let edit = Edit::RenameLv {
                lv: NAMES[*lv].into(),
                to: NAMES[*to].into(),
                tags: None,
            };
            e.metadata()
                .edit(vg, &edit)
                .map(|()| "renamed".into())
                .map_err(Into::into)
        }
        Op::Tags { lv, add, del } => {
            let edit = Edit::lv_tags(NAMES[*lv], &[TAGS[*add].into()], &[TAGS[*del].into()]);
            e.metadata()
                .edit(vg, &edit)
                .map(|()| "tagged".into())
                .map_err(Into::into)
        }
    };
    match answer {
        Ok(a) => a,
        Err(e) => format!("error: {e}"),
    }
}

/// The VG with what is random or of the moment blanked.
fn comparable(mut vg: VolumeGroup) -> VolumeGroup {
    let blank = Uuid::from_raw(&[b'0'; 32]).unwrap();
    vg.id = blank;
    for pv in &mut vg.pvs {
        pv.id = blank;
    }
    for lv in &mut vg.lvs {
        lv.id = blank;
        lv.creation_time = None;
        lv.creation_host = None;
    }
    vg
}

fn check_sequence(ops: &[Op]) {
    let loops = Loops::new(&PV_MIB);
    let vg = vg_name("sim_vs_real");
    let root = loops.dir.path().join("kubelet");
    std::fs::create_dir(&root).unwrap();
    let real = RealEngine::real(
        loops.lvmd(),
        Arc::new(SimActivation::default()),
        Arc::new(SimNode::default()),
        vec![root.clone()],
    );
    let sizes: Vec<_> = loops
        .devs
        .iter()
        .zip(PV_MIB)
        .map(|(d, mib)| (d.clone(), Bytes(mib * MIB)))
        .collect();
    let (sim, _, _) = SimEngine::with_sims(&sizes, vec![root]);
    real.create_volume_group(&vg, &loops.devs).unwrap();
    sim.create_volume_group(&vg, &loops.devs).unwrap();
    let same = |step: &str| {
        let r = comparable(VolumeGroup::clone(&real.metadata().read(&vg).unwrap().vg));
        let s = comparable(VolumeGroup::clone(&sim.metadata().read(&vg).unwrap().vg));
        assert_eq!(r, s, "the VGs differ after {step}");
    };
    same("vgcreate");
    for (i, op) in ops.iter().enumerate() {
        let (r, s) = (run(&real, &vg, op), run(&sim, &vg, op));
        assert_eq!(r, s, "step {i} {op:?}: the engines answered differently");
        same(&format!("step {i} {op:?} ({r})"));
    }
    loops.vgck(&vg);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_simulator_runs_the_real_edits(ops in prop::collection::vec(op(), 1..24)) {
        if !host_tests_enabled("sim_matches_real") {
            return Ok(());
        }
        check_sequence(&ops);
    }
}

/// A grow that can continue the last run on its PV stays one segment in both: the
/// simulator used to append a second segment where the real store merged.
#[test]
fn a_contiguous_grow_is_one_segment_in_both() {
    if !host_tests_enabled("sim_matches_real") {
        return;
    }
    check_sequence(&[
        Op::Create {
            lv: 0,
            mib: 8,
            stripes: 1,
        },
        Op::Resize { lv: 0, mib: 16 },
        Op::Create {
            lv: 1,
            mib: 40,
            stripes: 1,
        },
        Op::Resize { lv: 0, mib: 64 },
        Op::Remove { lv: 1 },
        Op::Create {
            lv: 2,
            mib: 12,
            stripes: 2,
        },
        Op::Resize { lv: 2, mib: 4 },
        Op::Create {
            lv: 3,
            mib: 8,
            stripes: 0,
        },
        Op::Rename { lv: 3, to: 4 },
        Op::Remove { lv: 4 },
    ]);
}
