//! Tags lvmd keeps on its own LVs, in the LV's metadata (lvm2 keeps tags intact across
//! its own changes), so that what lvmd knows about a volume's contents survives
//! restarts, crashes and other tools.
//!
//! All start with [`PREFIX`]; clients may not set such tags themselves, and they are
//! left out when a create request's tags are compared with an existing LV's.

/// Every lvmd-owned tag starts with this.
pub const PREFIX: &str = "lvmd.";

/// lvmd created this LV, cleared what earlier volumes could have left at its edges,
/// and has not handed it to anyone yet: no filesystem made, never published or
/// activated for a client. Only such an LV may get a filesystem from lvmd.
pub const FRESH: &str = "lvmd.fresh";

/// `lvmd.mkfs=<fs>`: lvmd is making a filesystem of type `<fs>` (committed before
/// mkfs runs; nothing was mounted yet, so a crash here leaves nothing worth keeping).
pub const MKFS_PREFIX: &str = "lvmd.mkfs=";

/// `lvmd.fs=<fs>`: lvmd made a filesystem of type `<fs>` on this LV. Never formatted
/// again, whatever a signature probe says.
pub const FS_PREFIX: &str = "lvmd.fs=";

/// The volume is encrypted (LUKS2, [`crate::crypt`]): lvmd opens it with its key and
/// puts the filesystem (or the raw block device it hands out) on the opened mapping
/// `lvmd-crypt-<VG>-<LV>`, never on the LV itself. Set by the creating commit (asked
/// for), or when lvmd adopts a LUKS volume it did not format. The filesystem marks
/// (`lvmd.fresh`, `lvmd.mkfs=`, `lvmd.fs=`) then speak of what is inside.
pub const CRYPT: &str = "lvmd.crypt";

/// `lvmd.mkluks=<fs>`: lvmd is LUKS-formatting this fresh encrypted LV, to make a `<fs>`
/// filesystem inside (committed before the format, in place of `lvmd.fresh`; the LV
/// was never opened, so what a cut-short format left holds no data and is formatted
/// again).
pub const MKLUKS_PREFIX: &str = "lvmd.mkluks=";

/// An LV lvmd removed whose extents it is still zeroing (in the background, for
/// volumes too large to zero inside DeleteVolume): it keeps them allocated, so nothing
/// gets them before they are zeros. Such an LV is named [`WIPE_NAME_PREFIX`]`<uuid>`,
/// is hidden from clients, and lvmd removes it when the zeroing is done (also after a
/// restart).
pub const WIPE: &str = "lvmd.wipe";

/// LV names lvmd keeps for the LVs it is wiping; clients may not use them.
pub const WIPE_NAME_PREFIX: &str = "lvmd-wipe-";

/// Whether an LV with this name and these tags is one of lvmd's wipe LVs. Both must
/// hold: a client's LV with a look-alike name made by lvm2 is not wiped away.
pub fn is_wipe(name: &str, tags: &[String]) -> bool {
    name.starts_with(WIPE_NAME_PREFIX) && tags.iter().any(|t| t == WIPE)
}

/// `lvmd.snapshot-of=<lv>`: a snapshot lvmd took of volume `<lv>` (kept when `<lv>` is
/// removed, when lvm2's `origin` goes). Snapshots are not volumes: the volume calls do
/// not see them, the snapshot calls see only them.
pub const SNAPSHOT_OF_PREFIX: &str = "lvmd.snapshot-of=";

/// `lvmd.group=<name>`: a snapshot taken with others of the same pool at one instant,
/// in group `<name>` (`src/daemon/snapshot_groups.rs`). The group is its snapshots:
/// nothing else records it, and lvm2 keeps the tags.
pub const GROUP_PREFIX: &str = "lvmd.group=";

/// The group a snapshot was taken in; `None`: taken alone.
pub fn group_of(tags: &[String]) -> Option<&str> {
    tags.iter().find_map(|t| t.strip_prefix(GROUP_PREFIX))
}

/// On a COW snapshot's store (with [`SNAPSHOT_OF_PREFIX`]): committed, not yet known
/// to be active while its origin is. dm-snapshot copies only into active snapshots, so
/// one left so by a crash may have missed writes to its origin: a retry of its create
/// removes it and makes it again (it was never handed out).
pub const COW_PENDING: &str = "lvmd.cow-pending";

/// On a volume being restored from a COW snapshot (with [`FROM_PREFIX`]): committed,
/// its copy not known complete. Never handed out; a retry of its create copies again
/// from the start.
pub const COPYING: &str = "lvmd.copying";

/// `lvmd.from=<lv>`: a volume lvmd made from snapshot or volume `<lv>` (restore,
/// clone); a create of the same name from another source is another request.
pub const FROM_PREFIX: &str = "lvmd.from=";

/// The volume a snapshot was taken of; `None`: not a snapshot.
pub fn snapshot_of(tags: &[String]) -> Option<&str> {
    tags.iter().find_map(|t| t.strip_prefix(SNAPSHOT_OF_PREFIX))
}

/// The snapshot or volume a volume was made from (`lvmd.from=`).
pub fn made_from(tags: &[String]) -> Option<&str> {
    tags.iter().find_map(|t| t.strip_prefix(FROM_PREFIX))
}

/// What a snapshot, and a volume made from it, inherits of its source's marks: what
/// lvmd knows of the contents (formatted as, encrypted, never handed out), which are
/// the source's block for block.
pub fn content_marks(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter(|t| is_internal(t))
        .filter(|t| {
            !t.starts_with(SNAPSHOT_OF_PREFIX)
                && !t.starts_with(FROM_PREFIX)
                && !t.starts_with(GROUP_PREFIX)
        })
        .filter(|t| *t != WIPE)
        .cloned()
        .collect()
}

/// Whether `tag` is one of lvmd's own.
pub fn is_internal(tag: &str) -> bool {
    tag.starts_with(PREFIX)
}

/// The tags a client set: lvmd's own left out.
pub fn client_tags(tags: &[String]) -> Vec<String> {
    tags.iter().filter(|t| !is_internal(t)).cloned().collect()
}

/// The filesystem type lvmd recorded as made (`lvmd.fs=`).
pub fn formatted_as(tags: &[String]) -> Option<&str> {
    tags.iter().find_map(|t| t.strip_prefix(FS_PREFIX))
}

/// The filesystem type lvmd was making when it last stopped (`lvmd.mkfs=`).
pub fn formatting_as(tags: &[String]) -> Option<&str> {
    tags.iter().find_map(|t| t.strip_prefix(MKFS_PREFIX))
}

/// The filesystem type lvmd was LUKS-formatting for when it last stopped (`lvmd.mkluks=`).
pub fn luks_formatting_for(tags: &[String]) -> Option<&str> {
    tags.iter().find_map(|t| t.strip_prefix(MKLUKS_PREFIX))
}

pub fn is_encrypted(tags: &[String]) -> bool {
    tags.iter().any(|t| t == CRYPT)
}

pub fn is_fresh(tags: &[String]) -> bool {
    tags.iter().any(|t| t == FRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_tags_are_told_apart() {
        let tags: Vec<String> = ["csi.pv=x", "lvmd.fresh", "lvmd.fs=xfs", "lvmdx"]
            .map(String::from)
            .to_vec();
        assert_eq!(client_tags(&tags), vec!["csi.pv=x", "lvmdx"]);
        assert!(is_fresh(&tags));
        assert_eq!(formatted_as(&tags), Some("xfs"));
        assert_eq!(formatting_as(&tags), None);
        assert!(!is_encrypted(&tags));
        let crypt: Vec<String> = ["lvmd.crypt", "lvmd.mkluks=xfs"].map(String::from).to_vec();
        assert!(is_encrypted(&crypt));
        assert_eq!(luks_formatting_for(&crypt), Some("xfs"));
        assert!(client_tags(&crypt).is_empty());
        // Every mark is a tag lvm2 accepts.
        for t in [
            FRESH,
            WIPE,
            CRYPT,
            "lvmd.mkluks=xfs",
            "lvmd.mkfs=ext4",
            "lvmd.fs=ext4",
            "lvmd.snapshot-of=data_1",
            "lvmd.from=snap-1.x+y",
        ] {
            crate::model::name::validate_tag(t).unwrap();
        }
        crate::model::name::validate_lv_name(&format!(
            "{WIPE_NAME_PREFIX}{}",
            crate::uuid::Uuid::random()
        ))
        .unwrap();
        assert!(is_wipe("lvmd-wipe-x", &[WIPE.into()]));
        assert!(!is_wipe("lvmd-wipe-x", &[]));
        assert!(!is_wipe("data", &[WIPE.into()]));
        let snap: Vec<String> = ["lvmd.snapshot-of=a", "lvmd.fs=xfs", "lvmd.crypt", "t"]
            .map(String::from)
            .to_vec();
        assert_eq!(snapshot_of(&snap), Some("a"));
        assert_eq!(made_from(&snap), None);
        assert_eq!(content_marks(&snap), vec!["lvmd.fs=xfs", "lvmd.crypt"]);
    }
}
