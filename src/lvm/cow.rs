//! Old-style (copy-on-write) snapshots of linear and striped LVs, as lvm2 2.03's
//! `lvcreate -s -L SIZE vg/origin` writes them.
//!
//! Three LVs take part. The origin stays as it was (a visible linear or striped LV).
//! The COW store is an LV of its own with extents of its own, named as the user named
//! the snapshot and *hidden* (lvm2 shows it as the snapshot all the same: `lvs` lists
//! it with the `s` attribute and the origin). A hidden-by-name, `VISIBLE`-flagged LV
//! `snapshotN` (N one more than the highest in the VG, as lvm2's `generate_lv_name`)
//! carries the one `snapshot` segment: `chunk_size`, `origin`, `cow_store`, as long as
//! the origin. Activation layers them: the origin's own table goes under
//! `<origin>-real`, the origin becomes `snapshot-origin` over it, the store is
//! `<snap>-cow`, and the snapshot `<snap>` a `snapshot` table over both (see
//! `crate::activate::cow`).
//!
//! lvm2 checked in the VM: `lvcreate -s` refuses to run without device-mapper (even
//! under `activation=0`), so the layout here was read from what it wrote there.

use super::edit::Origin;
use super::segments::linear_segments;
use super::thin::{allocate_linear, check_new_name};
use super::{LvmError, Result};
use crate::model::{LogicalVolume, Segment, SegmentKind, VolumeGroup};
use crate::units::{Bytes, Extents, Sectors};

/// lvm2's default COW chunk: 4 KiB.
pub const DEFAULT_CHUNK_SIZE: Sectors = Sectors(8);
/// lvm2's limits for `-c`: a power of two from 4 KiB to 512 KiB.
pub const MIN_CHUNK_SIZE: Sectors = Sectors(8);
pub const MAX_CHUNK_SIZE: Sectors = Sectors(1024);

/// What [`create`] makes: snapshot `name` of `of` with a COW store of `cow_size`
/// (rounded up to extents) in chunks of `chunk_size`.
#[derive(Debug, Clone)]
pub struct CowSnapshot<'a> {
    pub name: &'a str,
    pub of: &'a str,
    pub cow_size: Bytes,
    pub chunk_size: Sectors,
    pub tags: &'a [String],
}

/// One COW snapshot as the metadata holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowInfo {
    /// The `snapshotN` LV that carries the segment.
    pub segment_lv: String,
    pub origin: String,
    /// The store: the LV users know as the snapshot.
    pub cow: String,
    pub chunk_size: Sectors,
}

fn info(lv: &LogicalVolume) -> Option<CowInfo> {
    match lv.segments.as_slice() {
        [Segment {
            kind:
                SegmentKind::Snapshot {
                    chunk_size,
                    origin,
                    cow_store,
                },
            ..
        }] => Some(CowInfo {
            segment_lv: lv.name.clone(),
            origin: origin.clone(),
            cow: cow_store.clone(),
            chunk_size: *chunk_size,
        }),
        _ => None,
    }
}

/// Every COW snapshot of the VG, in metadata order.
pub fn all(vg: &VolumeGroup) -> Vec<CowInfo> {
    vg.lvs.iter().filter_map(info).collect()
}

/// The COW snapshots of `origin`.
pub fn snapshots_of(vg: &VolumeGroup, origin: &str) -> Vec<CowInfo> {
    all(vg).into_iter().filter(|s| s.origin == origin).collect()
}

/// The snapshot whose store (the LV users name) is `cow`.
pub fn by_cow(vg: &VolumeGroup, cow: &str) -> Option<CowInfo> {
    all(vg).into_iter().find(|s| s.cow == cow)
}

/// Whether `lv` is one of the internal `snapshotN` LVs.
pub fn is_segment_lv(lv: &LogicalVolume) -> bool {
    info(lv).is_some()
}

fn invalid(what: &'static str, value: impl ToString, why: impl Into<String>) -> LvmError {
    LvmError::InvalidArgument {
        what,
        value: value.to_string(),
        why: why.into(),
    }
}

/// lvm2's rule for `-c`.
pub fn check_chunk_size(chunk: Sectors) -> Result<()> {
    if !chunk.0.is_power_of_two() || chunk < MIN_CHUNK_SIZE || chunk > MAX_CHUNK_SIZE {
        return Err(invalid(
            "chunk size",
            chunk.to_bytes().0,
            format!(
                "a COW snapshot's chunk is a power of two from {} to {} bytes",
                MIN_CHUNK_SIZE.to_bytes().0,
                MAX_CHUNK_SIZE.to_bytes().0
            ),
        ));
    }
    Ok(())
}

/// The checks that need no VG.
pub fn check(snap: &CowSnapshot) -> Result<()> {
    super::edit::check_size(snap.cow_size)?;
    check_chunk_size(snap.chunk_size)
}

/// The name lvm2 gives the next segment LV: `snapshot<highest N + 1>`.
fn next_segment_name(vg: &VolumeGroup) -> String {
    let high = vg
        .lvs
        .iter()
        .filter_map(|l| l.name.strip_prefix("snapshot")?.parse::<u64>().ok())
        .max();
    format!("snapshot{}", high.map_or(0, |h| h + 1))
}

/// Adds COW snapshot `snap` as lvm2 writes it: the store (hidden, linear, read-write)
/// after the VG's LVs, then its `snapshotN` (visible, the origin's length).
pub(super) fn create(vg: &mut VolumeGroup, snap: &CowSnapshot, origin: &Origin) -> Result<()> {
    check(snap)?;
    check_new_name(vg, snap.name)?;
    let of = vg.lv(snap.of).ok_or_else(|| LvmError::LvNotFound {
        vg: vg.name.clone(),
        lv: snap.of.into(),
    })?;
    let unsupported = |why: String| LvmError::LvUnsupported {
        vg: vg.name.clone(),
        lv: snap.of.into(),
        why,
    };
    if by_cow(vg, snap.of).is_some() {
        return Err(unsupported(
            "it is itself a COW snapshot; dm-snapshot does not stack them (as lvm2 refuses)".into(),
        ));
    }
    if !of.is_visible() || is_segment_lv(of) {
        return Err(unsupported(
            "it is a hidden or internal volume; snapshots are taken of volumes".into(),
        ));
    }
    if !of.is_plain() {
        return Err(unsupported(format!(
            "it is a {} volume; lvmd makes COW snapshots of linear and striped volumes \
             (thin volumes get thin snapshots)",
            of.type_name()
        )));
    }
    let length = of.extents();
    let cow_extents = vg.extent_size.extents_ceil(snap.cow_size.to_sectors_ceil());
    let areas = allocate_linear(vg, cow_extents)?;
    // Hidden: lvm2 shows the store through its `snapshotN`, which carries `VISIBLE`.
    let store = origin.new_lv(
        snap.name.to_owned(),
        false,
        snap.tags.to_vec(),
        linear_segments(vg, Extents::ZERO, &areas),
    );
    let segment_lv = origin.new_lv(
        next_segment_name(vg),
        true,
        vec![],
        vec![Segment {
            start_extent: Extents::ZERO,
            extent_count: length,
            kind: SegmentKind::Snapshot {
                chunk_size: snap.chunk_size,
                origin: snap.of.to_owned(),
                cow_store: snap.name.to_owned(),
            },
            tags: vec![],
            extra: Default::default(),
        }],
    );
    vg.lvs.push(store);
    vg.lvs.push(segment_lv);
    Ok(())
}

/// Removes the COW snapshot whose store is `cow`: the store and its `snapshotN`, as
/// `lvremove vg/<cow>` does. The origin stays as it is.
pub(super) fn remove(vg: &mut VolumeGroup, cow: &str) -> Result<()> {
    let Some(found) = by_cow(vg, cow) else {
        return Err(match vg.lv(cow) {
            None => LvmError::LvNotFound {
                vg: vg.name.clone(),
                lv: cow.into(),
            },
            Some(_) => LvmError::LvUnsupported {
                vg: vg.name.clone(),
                lv: cow.into(),
                why: "not a COW snapshot".into(),
            },
        });
    };
    vg.lvs
        .retain(|l| l.name != found.cow && l.name != found.segment_lv);
    Ok(())
}

/// Where the header chunk of snapshot `cow`'s store lies on its PVs: what must read as
/// zeros before the snapshot's first activation. dm-snapshot takes a store without a
/// header for a new, empty snapshot (and writes one), but a store holding an older
/// snapshot's header for that snapshot's exceptions: their chunks would show through.
/// lvm2 zeroes the store's start at `lvcreate -s`; the daemon's clearing of a new LV's
/// edges covers it (its edge is larger than any chunk).
pub fn header_spans(
    vg: &VolumeGroup,
    cow: &str,
) -> std::result::Result<Vec<crate::model::placement::PvSpan>, LvmError> {
    let snap = by_cow(vg, cow).ok_or_else(|| LvmError::LvUnsupported {
        vg: vg.name.clone(),
        lv: cow.into(),
        why: "not a COW snapshot".into(),
    })?;
    let store = vg.lv(cow).expect("by_cow found it");
    crate::model::placement::spans_of(vg, store, Sectors::ZERO, snap.chunk_size).map_err(|e| {
        LvmError::LvUnsupported {
            vg: vg.name.clone(),
            lv: cow.into(),
            why: e.to_string(),
        }
    })
}

/// Refuses a change to `lv` that its COW snapshots forbid: removing or resizing their
/// origin. lvm2's `lvremove` of an origin asks to remove its snapshots too; lvmd never
/// removes volumes nobody named, so it refuses until they are gone. lvm2 resizes an
/// origin only while it is inactive (the `snapshot` segment is then resized with it);
/// lvmd's origins are active when in use and the library does not know, so it refuses
/// always.
pub(super) fn check_not_origin(vg: &VolumeGroup, lv: &str, doing: &str) -> Result<()> {
    let snaps = snapshots_of(vg, lv);
    if snaps.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = snaps.iter().map(|s| s.cow.as_str()).collect();
    Err(LvmError::LvUnsupported {
        vg: vg.name.clone(),
        lv: lv.into(),
        why: format!(
            "it is the origin of the COW snapshots {}; remove them before {doing} it",
            names.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvm::edit::{apply, Edit};
    use crate::model::Layout;

    fn fixture() -> VolumeGroup {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lvm2/mixed/vgcfgbackup.txt");
        let text = std::fs::read_to_string(dir).unwrap();
        let doc = crate::format::text::parse(&text).unwrap();
        VolumeGroup::from_document(&doc).unwrap().0
    }

    fn at() -> Origin {
        Origin {
            host: "h".into(),
            time: 7,
            pv_block_sizes: Default::default(),
        }
    }

    /// The fixture without lvm2's snapshot, removed by lvmd.
    fn without_lin_b_snap(vg: &VolumeGroup) -> VolumeGroup {
        let edit = Edit::RemoveCowSnapshot {
            lv: "lin_b_snap".into(),
        };
        apply(vg, &edit, &at()).unwrap().vg
    }

    fn create(name: &str, of: &str, cow: Bytes) -> Edit {
        Edit::CreateCowSnapshot {
            name: name.into(),
            origin: of.into(),
            cow_size: cow,
            chunk_size: DEFAULT_CHUNK_SIZE,
            tags: vec!["t1".into()],
        }
    }

    #[test]
    fn lvm2s_snapshot_is_read_and_lvmds_is_laid_out_the_same() {
        let vg = fixture();
        let theirs = by_cow(&vg, "lin_b_snap").unwrap();
        assert_eq!(
            theirs,
            CowInfo {
                segment_lv: "snapshot0".into(),
                origin: "lin_b".into(),
                cow: "lin_b_snap".into(),
                chunk_size: Sectors(8),
            }
        );
        assert_eq!(snapshots_of(&vg, "lin_b"), vec![theirs.clone()]);
        // Removed as lvremove does: the store and its snapshotN, the origin kept.
        let removed = without_lin_b_snap(&vg);
        assert!(removed.lv("lin_b_snap").is_none() && removed.lv("snapshot0").is_none());
        assert_eq!(removed.lv("lin_b"), vg.lv("lin_b"));
        assert_eq!(removed.lvs.len(), vg.lvs.len() - 2);
        // Made again by lvmd with lvm2's size: the same shape but for ids, times and
        // where the store's extents land.
        let es = vg.extent_size;
        let cow = es.span(Extents(2)).to_bytes();
        let again = apply(&removed, &create("lin_b_snap", "lin_b", cow), &at())
            .unwrap()
            .vg;
        let (ours, old) = (again.lv("snapshot0").unwrap(), vg.lv("snapshot0").unwrap());
        assert_eq!(ours.status, old.status);
        assert_eq!(ours.segments, old.segments);
        let (store, old_store) = (
            again.lv("lin_b_snap").unwrap(),
            vg.lv("lin_b_snap").unwrap(),
        );
        assert_eq!(store.status, old_store.status);
        assert!(!store.is_visible() && ours.is_visible());
        assert_eq!(store.extents(), Extents(2));
        assert_eq!(Layout::of(store), Layout::Linear);
        assert_eq!(store.tags, vec!["t1".to_owned()]);
        assert_eq!(by_cow(&again, "lin_b_snap").unwrap(), theirs);
    }

    #[test]
    fn segment_lvs_are_numbered_past_the_highest_and_the_cow_rounds_up() {
        let vg = fixture();
        // 1 byte of COW is one extent; the segment is as long as the origin (3 extents).
        let vg = apply(&vg, &create("s1", "lin_b", Bytes(1)), &at())
            .unwrap()
            .vg;
        let s1 = by_cow(&vg, "s1").unwrap();
        assert_eq!(s1.segment_lv, "snapshot1");
        assert_eq!(vg.lv("s1").unwrap().extents(), Extents(1));
        assert_eq!(
            vg.lv("snapshot1").unwrap().extents(),
            vg.lv("lin_b").unwrap().extents()
        );
        let vg = apply(&vg, &create("s2", "lin_a", Bytes(1)), &at())
            .unwrap()
            .vg;
        assert_eq!(by_cow(&vg, "s2").unwrap().segment_lv, "snapshot2");
        assert_eq!(snapshots_of(&vg, "lin_b").len(), 2);
    }

    #[test]
    fn an_origin_with_snapshots_is_neither_removed_nor_resized_and_bad_requests_are_named() {
        let vg = fixture();
        let refused = |e: Edit, has: &[&str]| {
            let err = apply(&vg, &e, &at()).unwrap_err().to_string();
            for h in has {
                assert!(err.contains(h), "{err} lacks {h}");
            }
        };
        refused(
            Edit::RemoveLv { lv: "lin_b".into() },
            &["lin_b", "lin_b_snap", "remove them"],
        );
        refused(
            Edit::ResizeLv {
                lv: "lin_b".into(),
                size: Bytes(64 << 20),
            },
            &["lin_b", "lin_b_snap", "resizing"],
        );
        // The store is not removed as a plain volume.
        refused(
            Edit::RemoveLv {
                lv: "lin_b_snap".into(),
            },
            &["COW snapshot of lin_b"],
        );
        refused(
            create("x", "lin_b_snap", Bytes(1)),
            &["lin_b_snap", "COW snapshot"],
        );
        refused(create("x", "thin", Bytes(1)), &["thin", "thin snapshots"]);
        refused(create("x", "snapshot0", Bytes(1)), &["snapshot0"]);
        refused(create("x", "nope", Bytes(1)), &["nope"]);
        refused(create("lin_a", "lin_b", Bytes(1)), &["lin_a", "exists"]);
        refused(create("x", "lin_b", Bytes(0)), &["size"]);
        refused(create("x", "lin_b", Bytes(1 << 40)), &["lvmd_mixed"]);
        let mut odd = create("x", "lin_b", Bytes(1));
        if let Edit::CreateCowSnapshot { chunk_size, .. } = &mut odd {
            *chunk_size = Sectors(24);
        }
        refused(odd, &["chunk size", "12288"]);
        refused(
            Edit::RemoveCowSnapshot { lv: "lin_a".into() },
            &["lin_a", "not a COW snapshot"],
        );
        // Without its snapshot the origin is an ordinary volume again.
        let vg = without_lin_b_snap(&vg);
        apply(&vg, &Edit::RemoveLv { lv: "lin_b".into() }, &at()).unwrap();
    }
}
