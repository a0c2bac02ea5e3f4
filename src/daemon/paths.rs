//! Which paths a client may have lvmd mount on or bind from.
//!
//! The daemon runs as root and mounts where it is told, so every target path must lie
//! below one of the configured roots (kubelet's directory by default), be written
//! plainly (absolute, no `.` or `..` segments), and not pass through a symlink below the
//! root: a symlink planted by a pod could otherwise point a mount anywhere on the host.
//! The root itself may be a symlink (some distributions move kubelet's directory).

use super::node::NodeError;
use std::path::{Component, Path, PathBuf};

/// Checks `path` and returns it in normal form.
pub fn check_path(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, NodeError> {
    let bad = |why: String| NodeError::BadPath {
        path: path.to_owned(),
        why,
    };
    let text = path
        .to_str()
        .ok_or_else(|| bad("is not valid UTF-8".into()))?;
    if !text.starts_with('/') {
        return Err(bad("is not absolute".into()));
    }
    if text.contains('\0') {
        return Err(bad("contains a NUL byte".into()));
    }
    // `Path::components` silently drops interior `.`; look at the raw segments.
    for seg in text.split('/') {
        if seg == ".." {
            return Err(bad("contains '..'".into()));
        }
        if seg == "." {
            return Err(bad("contains '.'".into()));
        }
    }
    let normal: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let root = roots
        .iter()
        .find(|r| normal.starts_with(r) && normal != **r)
        .ok_or_else(|| {
            let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            bad(format!(
                "is not below an allowed root ({})",
                list.join(", ")
            ))
        })?;
    // Walk down from the root; the first missing component ends the walk (nothing
    // below it exists to be a symlink).
    let mut at = root.clone();
    for c in normal
        .strip_prefix(root)
        .expect("checked above")
        .components()
    {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(bad(format!("{} is a symlink", at.display())));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => {
                return Err(NodeError::Io {
                    path: at,
                    what: "inspect",
                    source: e,
                })
            }
        }
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_below_a_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let roots = vec![root.clone()];
        std::fs::create_dir(root.join("pods")).unwrap();
        assert_eq!(
            check_path(&root.join("pods/x/mount"), &roots).unwrap(),
            root.join("pods/x/mount")
        );
        for (p, why) in [
            (root.join("pods/../../etc"), "'..'"),
            (root.join("pods/./x"), "'.'"),
            (PathBuf::from("relative/x"), "absolute"),
            (PathBuf::from("/etc/x"), "allowed root"),
            (root.clone(), "allowed root"),
        ] {
            let e = check_path(&p, &roots).unwrap_err().to_string();
            assert!(e.contains(why), "{p:?}: {e}");
        }
        // A root's sibling with the same prefix is not below it.
        let sibling = PathBuf::from(format!("{}x/y", root.display()));
        assert!(check_path(&sibling, &roots).is_err());
    }

    #[test]
    fn symlinks_below_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubelet");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        let e = check_path(&root.join("evil/passwd"), std::slice::from_ref(&root))
            .unwrap_err()
            .to_string();
        assert!(e.contains("symlink"), "{e}");
        // The final component too.
        let e = check_path(&root.join("evil"), std::slice::from_ref(&root))
            .unwrap_err()
            .to_string();
        assert!(e.contains("symlink"), "{e}");
        // A root that is itself a symlink is fine.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        check_path(&link.join("x"), std::slice::from_ref(&link)).unwrap();
    }
}
