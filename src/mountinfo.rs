//! `/proc/self/mountinfo`: the mounts this process's mount namespace sees. One parser
//! for the daemon (what is mounted where, by mount id) and the CSI plugin (whether a
//! path is a mount point it can see).

use std::path::{Path, PathBuf};

/// One line of mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id (what `statx` reports as `stx_mnt_id`).
    pub id: u64,
    pub parent: u64,
    /// `major:minor` of the mounted filesystem.
    pub dev: String,
    /// The path inside that filesystem mounted here (`/loop3` for a bind of
    /// `/dev/loop3`).
    pub root: PathBuf,
    pub point: PathBuf,
    /// The mount's own `ro` flag (a bind can be read-only on a read-write filesystem).
    pub read_only: bool,
    pub fs: String,
    pub source: String,
}

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

fn line(l: &str) -> Option<Mount> {
    let f: Vec<&str> = l.split(' ').collect();
    // Optional fields (shared:N, master:N) sit between the sixth field and "-".
    let dash = f.iter().skip(6).position(|x| *x == "-")? + 6;
    Some(Mount {
        id: f.first()?.parse().ok()?,
        parent: f.get(1)?.parse().ok()?,
        dev: f.get(2)?.to_string(),
        root: unescape(f.get(3)?),
        point: unescape(f.get(4)?),
        read_only: f.get(5)?.split(',').any(|o| o == "ro"),
        fs: f.get(dash + 1)?.to_string(),
        source: f.get(dash + 2)?.to_string(),
    })
}

/// The mounts in a mountinfo text, in its order (a mount stacked on another comes
/// after it).
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(line).collect()
}

/// This process's mounts.
pub fn read() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The mount with id `id`, if this namespace has it.
pub fn by_id(id: u64) -> std::io::Result<Option<Mount>> {
    Ok(read()?.into_iter().find(|m| m.id == id))
}

/// Whether `path` is a mount point in this process's namespace (as written in
/// mountinfo: symlinks resolved).
pub fn is_mount_point(path: &Path) -> std::io::Result<bool> {
    Ok(read()?.iter().any(|m| m.point == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_and_without_optional_fields() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    36 22 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 shared:4 - ext4 /dev/dm-0 rw\n\
                    37 36 0:5 /loop3 /pod ro,relatime - devtmpfs udev rw,size=10k\n\
                    garbage\n";
        let m = parse(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].id, m[0].parent, m[0].point.as_path()),
            (22, 1, Path::new("/"))
        );
        assert_eq!(m[1].point, PathBuf::from("/mnt/a b"));
        assert_eq!(
            (m[1].fs.as_str(), m[1].source.as_str()),
            ("ext4", "/dev/dm-0")
        );
        assert!(!m[1].read_only);
        assert_eq!(m[2].root, PathBuf::from("/loop3"));
        assert_eq!((m[2].dev.as_str(), m[2].read_only), ("0:5", true));
        assert_eq!(m[2].fs, "devtmpfs");
    }

    #[test]
    fn this_process_sees_proc() {
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        assert!(!is_mount_point(Path::new("/proc/self")).unwrap());
    }
}
