//! Volume ids and LV names.
//!
//! A volume id is `<node>#<device class>#<lv name>`: everything needed to find the LV
//! again without a lookup, and the node it lives on (a volume is local to its node).
//! `#` cannot occur in Kubernetes node names, lvmd device class names or LV names.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeId {
    pub node: String,
    pub class: String,
    pub lv: String,
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}#{}", self.node, self.class, self.lv)
    }
}

impl VolumeId {
    /// None for anything lvmd-csi did not make.
    pub fn parse(id: &str) -> Option<VolumeId> {
        let mut it = id.split('#');
        let (node, class, lv) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || node.is_empty() || class.is_empty() || !valid_lv_name(lv) {
            return None;
        }
        Some(VolumeId {
            node: node.into(),
            class: class.into(),
            lv: lv.into(),
        })
    }
}

const MAX_PLAIN: usize = 64;

/// Prefixes of the names this module makes itself ([`lv_name`]'s hashed names,
/// [`ephemeral_lv_name`]'s): a CSI name that starts like one is hashed too, so no plain
/// name can ever equal another name's hashed form.
const MADE_PREFIXES: &[&str] = &["csi-", "eph-"];

/// The daemon's own LV name rules (lvm2's), so a name passed through is one lvmd takes.
fn valid_lv_name(n: &str) -> bool {
    crate::model::name::validate_lv_name(n).is_ok()
}

/// FNV-1a, 64 bits: stable across releases, unlike std's hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The LV name for a CSI volume name: the name itself when lvm2 takes it as is (the
/// provisioner's `pvc-<uid>`), otherwise a sanitised prefix and a hash of the whole name,
/// so the same CSI name always maps to the same LV (CreateVolume's idempotency).
pub fn lv_name(csi_name: &str) -> String {
    if csi_name.len() <= MAX_PLAIN
        && valid_lv_name(csi_name)
        && !MADE_PREFIXES.iter().any(|p| csi_name.starts_with(p))
    {
        return csi_name.into();
    }
    // '+' is a name character too, but kept out of made names for readability.
    let clean: String = csi_name
        .chars()
        .map(|c| {
            if c != '+' && crate::model::name::name_char_ok(c) {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let made = format!("csi-{clean}-{:016x}", fnv1a(csi_name));
    if valid_lv_name(&made) {
        return made;
    }
    // The sanitised prefix kept one of lvm2's reserved substrings (`_tmeta`, ...).
    format!("csi-{:016x}", fnv1a(csi_name))
}

/// The LV name of an inline ephemeral volume, from its kubelet-made volume id alone, so
/// unpublish finds it after any restart with no state kept. kubelet's ids are `csi-`
/// and a sha256 in hex: the hex is kept (`eph-<hex>`, 68 characters), readable next to
/// kubelet's logs. Any other id is hashed (two FNV-1a variants, 128 bits); the LV's
/// `csi.ephemeral=<id>` tag is what proves which volume it is, so a collision could
/// never remove another volume. The `eph-` prefix keeps these apart from [`lv_name`]'s
/// names (`pvc-…`, `csi-…`).
pub fn ephemeral_lv_name(volume_id: &str) -> String {
    let hex = volume_id.strip_prefix("csi-").filter(|h| {
        h.len() == 64
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    match hex {
        Some(h) => format!("eph-{h}"),
        None => format!(
            "eph-{:016x}{:016x}",
            fnv1a(volume_id),
            fnv1a(&format!("ephemeral:{volume_id}"))
        ),
    }
}

/// A value in lvm2's tag alphabet (`A-Za-z0-9._-+/=!:&#`): anything else becomes `_`.
pub fn tag_value(v: &str) -> String {
    v.chars()
        .map(|c| {
            if crate::model::name::tag_char_ok(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = VolumeId {
            node: "node-1".into(),
            class: "ssd".into(),
            lv: "pvc-0b1c".into(),
        };
        assert_eq!(id.to_string(), "node-1#ssd#pvc-0b1c");
        assert_eq!(VolumeId::parse("node-1#ssd#pvc-0b1c"), Some(id));
        for bad in [
            "", "a#b", "a#b#c#d", "#b#c", "a##c", "a#b#", "a#b#-x", "a#b#x y",
        ] {
            assert_eq!(VolumeId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn lv_names() {
        let uid = "pvc-6f0a3c1e-2b9d-4e0f-9a51-1c2d3e4f5a6b";
        assert_eq!(lv_name(uid), uid);
        let odd = lv_name("my volume/1");
        assert!(odd.starts_with("csi-my_volume_1-"), "{odd}");
        assert!(valid_lv_name(&odd));
        assert_eq!(odd, lv_name("my volume/1"));
        assert_ne!(odd, lv_name("my volume/2"));
        let long = lv_name(&"x".repeat(300));
        assert!(valid_lv_name(&long) && long.len() < 70, "{long}");
        assert!(lv_name("snapshot1").starts_with("csi-"));
        // lvm2's reserved substrings are hashed away, not passed to the daemon to be
        // refused on every retry.
        for reserved in ["db_tmeta", "pvc_mlog", "x_rimage_0", "a_pmspare"] {
            let n = lv_name(reserved);
            assert!(
                n.starts_with("csi-") && valid_lv_name(&n),
                "{reserved}: {n}"
            );
        }
        // A plain name shaped like another name's hashed form is hashed as well, so
        // two CSI names never share an LV.
        let hashed = lv_name("my volume/1");
        assert_ne!(lv_name(&hashed), hashed);
        assert!(lv_name("eph-0123").starts_with("csi-"));
        assert_eq!(tag_value("ns/a b"), "ns/a_b");
    }

    #[test]
    fn ephemeral_names() {
        let hex = "0123456789abcdef".repeat(4);
        let kubelet = format!("csi-{hex}");
        assert_eq!(ephemeral_lv_name(&kubelet), format!("eph-{hex}"));
        assert!(valid_lv_name(&ephemeral_lv_name(&kubelet)));
        // Not kubelet's form (upper case, short, odd characters): hashed, still stable.
        for other in [
            format!("csi-{}", hex.to_uppercase()),
            "csi-abc".to_string(),
            "my vol/1".to_string(),
            "x".repeat(500),
        ] {
            let n = ephemeral_lv_name(&other);
            assert!(
                valid_lv_name(&n) && n.starts_with("eph-") && n.len() == 36,
                "{n}"
            );
            assert_eq!(n, ephemeral_lv_name(&other));
        }
        assert_ne!(ephemeral_lv_name("a"), ephemeral_lv_name("b"));
        // Never a persistent volume's name, nor an id this plugin parses.
        assert_ne!(ephemeral_lv_name(&kubelet), lv_name(&kubelet));
        assert_eq!(VolumeId::parse(&kubelet), None);
    }
}
