//! What this process's mount namespace sees. lvmd mounts in the host's namespace; kubelet
//! then hands the target to the container runtime, so a mount the plugin cannot see is
//! one the pods will not get either when propagation is missing.

use std::path::{Path, PathBuf};

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mount points listed in a mountinfo text.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape))
        .collect()
}

/// Whether `path` is a mount point in this process's namespace.
pub fn is_mounted_here(path: &Path) -> std::io::Result<bool> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_points(&text).iter().any(|p| p == path))
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
