//! Whether staging a volume formats it, mounts it, or refuses: decided from lvmd's own
//! marks on the LV first ([`super::marks`]), the signature probe second. A probe alone
//! cannot decide: a damaged superblock probes as nothing, and formatting then destroys
//! what was there. lvmd formats only an LV it created blank and never handed out.
//!
//! | marks            | probe finds                      | then                           |
//! |------------------|----------------------------------|--------------------------------|
//! | `lvmd.fs=T`      | a T filesystem                   | mount as T                     |
//! | `lvmd.fs=T`      | nothing, or something else       | refuse                         |
//! | `lvmd.mkfs=T`    | anything (lvmd's cut-short mkfs) | mkfs T again, mount            |
//! | `lvmd.fresh`     | nothing                          | mkfs, mount                    |
//! | `lvmd.fresh`     | anything                         | refuse (written outside lvmd)  |
//! | none             | one ext4/xfs filesystem only     | record `lvmd.fs=T`, mount      |
//! | none             | nothing, or anything else        | refuse (may hold data)         |
//!
//! Every mount also needs the filesystem to fit its device (else refused with both
//! sizes), and a read-only stage never formats.

use super::marks;
use super::node::FILESYSTEMS;
use crate::probe::{Contents, Usage};

/// What staging does, once decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Mount the filesystem there as `fs_type`; `adopt`: record `lvmd.fs=` first (an LV
    /// lvmd did not format, e.g. lvm2's or an older lvmd's).
    Mount { fs_type: String, adopt: bool },
    /// Make a `fs_type` filesystem; `again`: after an mkfs of lvmd's that was cut short
    /// (`lvmd.mkfs=` still set), else from `lvmd.fresh`.
    Format { fs_type: String, again: bool },
}

/// Decides for an LV with `tags`, on which the probe `found` what it found, asked to be
/// mounted as `asked` (read-only or not). `Err`: why not, for FAILED_PRECONDITION.
pub fn decide(
    tags: &[String],
    found: &Contents,
    asked: &str,
    read_only: bool,
) -> Result<Plan, String> {
    let plan = if let Some(t) = marks::formatted_as(tags) {
        if found.filesystem(t).is_none() {
            return Err(format!(
                "lvmd formatted it as {t}, but the probe finds {}: it is damaged or was overwritten; lvmd never formats it again (repair it with the filesystem's tools, or delete the volume)",
                found.describe()
            ));
        }
        Plan::Mount {
            fs_type: t.to_owned(),
            adopt: false,
        }
    } else if let Some(t) = marks::formatting_as(tags) {
        // Nothing was mounted yet: what is there is lvmd's own unfinished mkfs.
        if read_only {
            return Err(format!(
                "lvmd's {t} mkfs on it was cut short and a read-only mount cannot make one; stage it read-write once"
            ));
        }
        Plan::Format {
            fs_type: t.to_owned(),
            again: true,
        }
    } else if marks::is_fresh(tags) {
        if !found.is_empty() {
            return Err(format!(
                "lvmd created it blank and never handed it out, yet it holds {}: written outside lvmd, so lvmd does not format it",
                found.describe()
            ));
        }
        if read_only {
            return Err("holds no filesystem, and a read-only mount cannot make one".into());
        }
        Plan::Format {
            fs_type: asked.to_owned(),
            again: false,
        }
    } else {
        match found.signatures.as_slice() {
            [one] if one.usage == Usage::Filesystem && FILESYSTEMS.contains(&one.name.as_str()) => {
                Plan::Mount {
                    fs_type: one.name.clone(),
                    adopt: true,
                }
            }
            [] => {
                return Err(
                    "lvmd did not create it blank (it carries no mark of lvmd's) and finds no filesystem on it: it may hold data (a raw block volume, another tool's), so lvmd does not format it"
                        .into(),
                )
            }
            _ => {
                return Err(format!(
                    "lvmd did not create it blank (it carries no mark of lvmd's) and it holds {}: not a single {} filesystem lvmd can mount, and lvmd does not format it",
                    found.describe(),
                    FILESYSTEMS.join(" or ")
                ))
            }
        }
    };
    if let Plan::Mount { fs_type, .. } = &plan {
        check_fits(found, fs_type)?;
    }
    Ok(plan)
}

/// A filesystem larger than its device cannot be mounted (ext4: "bad geometry"): say so
/// with both sizes (a volume that was grown, deleted and its extents reused by a smaller
/// one shows this).
fn check_fits(found: &Contents, fs_type: &str) -> Result<(), String> {
    let fs = found.filesystem(fs_type);
    if let (Some(fs_size), Some(dev)) = (fs.and_then(|s| s.size), found.device_size) {
        if fs_size > dev {
            return Err(format!(
                "its {fs_type} filesystem is {} bytes, larger than the device's {} bytes: it belongs to a larger volume (grown, or from extents used before); not mounting it",
                fs_size.0, dev.0
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Signature;
    use crate::units::Bytes;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn sig(name: &str, usage: Usage, size: Option<u64>) -> Signature {
        Signature {
            name: name.into(),
            usage,
            offset: Some(Bytes(1080)),
            size: size.map(Bytes),
            bad_checksum: false,
        }
    }

    fn holding(sigs: Vec<Signature>) -> Contents {
        Contents {
            device_size: Some(Bytes(64 << 20)),
            signatures: sigs,
        }
    }

    #[test]
    fn the_table() {
        let empty = holding(vec![]);
        let ext4 = holding(vec![sig("ext4", Usage::Filesystem, Some(64 << 20))]);
        let xfs = holding(vec![sig("xfs", Usage::Filesystem, None)]);
        let luks = holding(vec![sig("crypto_LUKS", Usage::Crypto, None)]);
        let gpt = holding(vec![sig("gpt", Usage::PartitionTable, None)]);
        let mount = |t: &str, adopt| {
            Ok(Plan::Mount {
                fs_type: t.into(),
                adopt,
            })
        };
        let format = |t: &str, again| {
            Ok(Plan::Format {
                fs_type: t.into(),
                again,
            })
        };
        let fs = tags(&["lvmd.fs=ext4", "csi.x"]);
        // Formatted by lvmd: mounted as recorded whatever was asked; never formatted.
        assert_eq!(decide(&fs, &ext4, "ext4", false), mount("ext4", false));
        assert_eq!(decide(&fs, &ext4, "xfs", true), mount("ext4", false));
        for other in [&empty, &xfs, &luks] {
            let e = decide(&fs, other, "ext4", false).unwrap_err();
            assert!(
                e.contains("lvmd formatted it as ext4") && e.contains("never formats"),
                "{e}"
            );
        }
        assert!(decide(&fs, &empty, "ext4", false)
            .unwrap_err()
            .contains("no signature"));
        // mkfs cut short: again, as recorded; not read-only.
        let mk = tags(&["lvmd.mkfs=xfs"]);
        for any in [&empty, &xfs, &luks] {
            assert_eq!(decide(&mk, any, "ext4", false), format("xfs", true));
        }
        assert!(decide(&mk, &empty, "xfs", true).is_err());
        // Fresh: formatted only when the probe finds nothing.
        let fresh = tags(&["lvmd.fresh"]);
        assert_eq!(decide(&fresh, &empty, "xfs", false), format("xfs", false));
        for sigs in [&ext4, &luks, &gpt] {
            let e = decide(&fresh, sigs, "ext4", false).unwrap_err();
            assert!(e.contains("written outside lvmd"), "{e}");
        }
        assert!(decide(&fresh, &empty, "ext4", true)
            .unwrap_err()
            .contains("read-only"));
        // No mark: adopt one supported filesystem, refuse everything else.
        assert_eq!(decide(&[], &ext4, "xfs", false), mount("ext4", true));
        assert_eq!(decide(&[], &xfs, "ext4", true), mount("xfs", true));
        let e = decide(&[], &empty, "ext4", false).unwrap_err();
        assert!(e.contains("may hold data"), "{e}");
        let btrfs = holding(vec![sig("btrfs", Usage::Filesystem, None)]);
        let two = holding(vec![
            sig("ext4", Usage::Filesystem, None),
            sig("gpt", Usage::PartitionTable, None),
        ]);
        for sigs in [&btrfs, &luks, &gpt, &two] {
            let e = decide(&[], sigs, "ext4", false).unwrap_err();
            assert!(e.contains("does not format"), "{e}");
        }
        assert!(decide(&[], &two, "ext4", false)
            .unwrap_err()
            .contains("a gpt partition table"));
    }

    #[test]
    fn a_filesystem_larger_than_its_device_is_refused_with_both_sizes() {
        let big = holding(vec![sig("ext4", Usage::Filesystem, Some(128 << 20))]);
        for t in [tags(&["lvmd.fs=ext4"]), vec![]] {
            let e = decide(&t, &big, "ext4", false).unwrap_err();
            assert!(e.contains("134217728") && e.contains("67108864"), "{e}");
        }
        // Exactly the device's size mounts.
        let fits = holding(vec![sig("ext4", Usage::Filesystem, Some(64 << 20))]);
        assert!(decide(&[], &fits, "ext4", false).is_ok());
    }
}
