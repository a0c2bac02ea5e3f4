//! What this process's mount namespace sees. lvmd mounts in the host's namespace; kubelet
//! then hands the target to the container runtime, so a mount the plugin cannot see is
//! one the pods will not get either when propagation is missing.

use std::path::{Path, PathBuf};

/// The mount points listed in a mountinfo text.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    crate::mountinfo::parse(mountinfo)
        .into_iter()
        .map(|m| m.point)
        .collect()
}

/// Whether `path` is a mount point in this process's namespace.
pub fn is_mounted_here(path: &Path) -> std::io::Result<bool> {
    crate::mountinfo::is_mount_point(path)
}

pub fn propagation_hint(path: &Path) -> String {
    format!(
        "lvmd mounted {} on the host, but it is not visible in lvmd-csi's mount namespace: \
         mount the host's kubelet directory into the plugin container at the same path with \
         `mountPropagation: HostToContainer` (see packaging/helm/lvmd-csi)",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    90 22 253:3 / /var/lib/kubelet/pods/x/volumes/a\\040b rw - ext4 /dev/dm-3 rw\n";
        let p = mount_points(text);
        assert_eq!(p[0], PathBuf::from("/"));
        assert_eq!(p[1], PathBuf::from("/var/lib/kubelet/pods/x/volumes/a b"));
        assert!(is_mounted_here(Path::new("/proc")).unwrap_or(true));
    }
}
