//! Which paths a client may have lvmd mount on or bind from, and how they are reached.
//!
//! The daemon runs as root and mounts where it is told, so every target path must lie
//! below one of the configured roots (kubelet's directory by default) and be written
//! plainly (absolute, no `.` or `..` segments): [`check_path`] checks the string and
//! returns a [`ConfinedPath`]. That check alone proves nothing about the file system:
//! the directories below the root are writable by pods, which can swap a directory for
//! a symlink to `/` between any check and any use. So every use resolves the path
//! afresh beneath a descriptor of the root with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, creates with `mkdirat`/`openat` on the parent's descriptor,
//! and mounts and removes by descriptor: what is checked is what is used.
//! The root itself may be a symlink (some distributions move kubelet's directory):
//! it is followed once, when the root is opened.

use super::node::NodeError;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// A path checked to lie below `root`, to be resolved beneath it whenever used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfinedPath {
    /// The whole path as the client wrote it (normal form): for logs and as a key.
    path: PathBuf,
    root: PathBuf,
    /// Below the root; one component at least.
    rel: PathBuf,
}

impl std::fmt::Display for ConfinedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path.display().fmt(f)
    }
}

/// How many times a resolution is retried when the kernel saw a rename race
/// (`EAGAIN` from `openat2`).
const RETRIES: usize = 8;

impl ConfinedPath {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The last component.
    pub fn file_name(&self) -> &OsStr {
        self.rel.file_name().expect("one component at least")
    }

    fn bad(&self, why: impl Into<String>) -> NodeError {
        NodeError::BadPath {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    /// `openat2`'s refusals in words; `at` is the part being resolved.
    fn resolve_error(&self, at: &Path, e: Errno) -> NodeError {
        let root = self.root.display();
        match e {
            Errno::ENOENT => NodeError::NotFound {
                path: self.root.join(at),
            },
            Errno::ELOOP => self.bad(format!(
                "{} passes through a symlink below {root}; lvmd follows none there",
                self.root.join(at).display()
            )),
            Errno::EXDEV => self.bad(format!("leads out of {root}")),
            Errno::ENOTDIR => self.bad(format!(
                "a component of {} is not a directory",
                self.root.join(at).display()
            )),
            Errno::ENOSYS => NodeError::Io {
                path: self.path.clone(),
                what: "resolve (openat2 needs Linux 5.6 or later)",
                source: e.into(),
            },
            e => NodeError::Io {
                path: self.root.join(at),
                what: "resolve",
                source: e.into(),
            },
        }
    }

    /// The root, following symlinks in its own path (the configuration's, trusted).
    pub fn open_root(&self) -> Result<OwnedFd, NodeError> {
        nix::fcntl::open(
            &self.root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOENT => NodeError::NotFound {
                path: self.root.clone(),
            },
            e => NodeError::Io {
                path: self.root.clone(),
                what: "open",
                source: e.into(),
            },
        })
    }

    /// Opens `rel` (relative) beneath `dir`, which lies beneath the root, following no
    /// symlink and never leaving `dir`.
    fn open_beneath(&self, dir: &OwnedFd, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        // No O_NOFOLLOW: with it a final symlink would be opened itself (O_PATH) or
        // read as "not a directory"; without it RESOLVE_NO_SYMLINKS refuses it (ELOOP).
        let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        let mut tries = 0;
        loop {
            match nix::fcntl::openat2(dir, rel, how) {
                Err(Errno::EAGAIN) if tries < RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    /// The path itself, opened with `flags` (`O_PATH` to only point at it).
    pub fn open(&self, flags: OFlag) -> Result<OwnedFd, NodeError> {
        let root = self.open_root()?;
        self.open_beneath(&root, &self.rel, flags)
            .map_err(|e| self.resolve_error(&self.rel, e))
    }

    /// The path's last component opened beneath `parent`, a descriptor of
    /// [`open_parent`](Self::open_parent).
    pub fn open_in(&self, parent: &OwnedFd, flags: OFlag) -> Result<OwnedFd, NodeError> {
        self.open_beneath(parent, Path::new(self.file_name()), flags)
            .map_err(|e| self.resolve_error(&self.rel, e))
    }

    /// The directory holding the path (the root for a path one below it).
    pub fn open_parent(&self) -> Result<OwnedFd, NodeError> {
        let root = self.open_root()?;
        match self.rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            None => Ok(root),
            Some(p) => self
                .open_beneath(&root, p, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|e| self.resolve_error(p, e)),
        }
    }

    /// The directories from the root down to the path's parent (`with_self`: to the
    /// path itself), made where missing, one `mkdirat` on the parent's descriptor at a
    /// time; returns the last one.
    pub fn make_dirs(&self, with_self: bool) -> Result<OwnedFd, NodeError> {
        let mut dir = match self.open_root() {
            // The root too, as before: its path is the configuration's, not a client's.
            Err(NodeError::NotFound { .. }) => {
                std::fs::create_dir_all(&self.root).map_err(|source| NodeError::Io {
                    path: self.root.clone(),
                    what: "create",
                    source,
                })?;
                tracing::info!(root = %self.root.display(), "created the mount root");
                self.open_root()?
            }
            r => r?,
        };
        let comps: Vec<Component> = self.rel.components().collect();
        let upto = if with_self {
            comps.len()
        } else {
            comps.len() - 1
        };
        let mut at = PathBuf::new();
        for c in &comps[..upto] {
            at.push(c);
            let name = Path::new(c.as_os_str());
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
            let next = match self.open_beneath(&dir, name, flags) {
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o777)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(NodeError::Io {
                                path: self.root.join(&at),
                                what: "create",
                                source: e.into(),
                            })
                        }
                    }
                    tracing::debug!(dir = %self.root.join(&at).display(), "created");
                    self.open_beneath(&dir, name, flags)
                }
                r => r,
            };
            dir = next.map_err(|e| self.resolve_error(&at, e))?;
        }
        Ok(dir)
    }

    /// Where the path is now, with the root's symlinks resolved (as mountinfo shows
    /// mount points).
    pub fn real_path(&self) -> Result<PathBuf, NodeError> {
        let root = self.open_root()?;
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&root));
        let real = std::fs::read_link(&link).map_err(|source| NodeError::Io {
            path: self.root.clone(),
            what: "find where it is",
            source,
        })?;
        Ok(real.join(&self.rel))
    }

    /// Refuses a path whose existing part passes through a symlink or a non-directory:
    /// the early, cheap check before anything changes (each use checks again).
    fn check_existing(&self) -> Result<(), NodeError> {
        let mut dir = match self.open_root() {
            Ok(d) => d,
            // Nothing below a missing root can be a symlink yet.
            Err(NodeError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut at = PathBuf::new();
        let comps: Vec<Component> = self.rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            at.push(c);
            let last = i + 1 == comps.len();
            let flags = if last {
                OFlag::O_PATH
            } else {
                OFlag::O_PATH | OFlag::O_DIRECTORY
            };
            match self.open_beneath(&dir, Path::new(c.as_os_str()), flags) {
                Ok(fd) => dir = fd,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(self.resolve_error(&at, e)),
            }
        }
        Ok(())
    }
}

/// Checks `path` as a string (absolute, plain, below a root) and what exists of it
/// (no symlink below the root), and returns it confined to its root.
pub fn check_path(path: &Path, roots: &[PathBuf]) -> Result<ConfinedPath, NodeError> {
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
    let rel = normal.strip_prefix(root).expect("checked above").to_owned();
    let c = ConfinedPath {
        path: normal,
        root: root.clone(),
        rel,
    };
    c.check_existing()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn confined(root: &Path, rel: &str) -> ConfinedPath {
        check_path(&root.join(rel), &[root.to_owned()]).unwrap()
    }

    fn why(r: Result<impl std::fmt::Debug, NodeError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn plain_paths_below_a_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let roots = vec![root.clone()];
        std::fs::create_dir(root.join("pods")).unwrap();
        let c = check_path(&root.join("pods/x/mount"), &roots).unwrap();
        assert_eq!(c.path(), root.join("pods/x/mount"));
        assert_eq!(c.root(), root);
        assert_eq!(c.file_name(), "mount");
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
    fn symlinks_below_the_root_are_refused_at_check_and_at_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubelet");
        std::fs::create_dir_all(root.join("pods")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, root.join("evil")).unwrap();
        let roots = std::slice::from_ref(&root);
        // A middle component and the final one, at check time.
        for p in ["evil/x", "evil"] {
            let e = why(check_path(&root.join(p), roots));
            assert!(e.contains("symlink"), "{p}: {e}");
        }
        // At use: the check passed while pods/x was a directory, then it became a
        // symlink to a directory outside the root.
        let middle = confined(&root, "pods/x/mnt");
        let last = confined(&root, "pods/x");
        symlink(&outside, root.join("pods/x")).unwrap();
        for c in [&middle, &last] {
            let e = why(c.open(OFlag::O_PATH));
            assert!(e.contains("symlink"), "{c}: {e}");
            let e = why(c.make_dirs(true));
            assert!(e.contains("symlink"), "{c}: {e}");
        }
        let e = why(middle.open_parent());
        assert!(e.contains("symlink"), "{e}");
        // Nothing was made through it.
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_symlinked_root_is_followed_once() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("data/kubelet");
        std::fs::create_dir_all(&real).unwrap();
        let link = dir.path().join("kubelet");
        symlink(&real, &link).unwrap();
        let c = confined(&link, "pods/p1/mount");
        c.make_dirs(true).unwrap();
        assert!(real.join("pods/p1/mount").is_dir());
        c.open(OFlag::O_PATH | OFlag::O_DIRECTORY).unwrap();
        assert_eq!(
            c.real_path().unwrap(),
            real.canonicalize().unwrap().join("pods/p1/mount")
        );
    }

    #[test]
    fn dot_dot_through_a_symlink_does_not_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        // root/up -> .. (the root's parent), so root/up/etc is the outer etc.
        let c = confined(&root, "up/etc");
        symlink("..", root.join("up")).unwrap();
        let e = why(c.open(OFlag::O_PATH));
        assert!(e.contains("symlink"), "{e}");
        // And a relative symlink that stays inside is refused all the same.
        symlink("a", root.join("same")).unwrap();
        let e = why(confined(&root, "x")
            .make_dirs(true)
            .and_then(|_| check_path(&root.join("same/y"), std::slice::from_ref(&root)).map(drop)));
        assert!(e.contains("symlink"), "{e}");
    }

    #[test]
    fn a_file_where_a_directory_is_expected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        std::fs::write(root.join("f"), b"x").unwrap();
        let e = why(check_path(&root.join("f/x"), std::slice::from_ref(&root)));
        assert!(e.contains("not a directory"), "{e}");
        let c = confined(&root, "g/x");
        std::fs::write(root.join("g"), b"x").unwrap();
        let e = why(c.make_dirs(true));
        assert!(e.contains("not a directory"), "{e}");
        let e = why(c.open(OFlag::O_PATH));
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn missing_parts_are_made_and_a_missing_root_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let c = confined(&root, "a/b/c");
        // Not there yet: a resolution says which part is missing.
        assert!(matches!(
            c.open(OFlag::O_PATH),
            Err(NodeError::NotFound { .. })
        ));
        c.make_dirs(false).unwrap();
        assert!(root.join("a/b").is_dir() && !root.join("a/b/c").exists());
        c.make_dirs(true).unwrap();
        assert!(root.join("a/b/c").is_dir());
        // A path under a root that does not exist yet passes the check (nothing there
        // can be a symlink); the root is made with it (the configuration names it).
        let later = dir.path().join("later/kubelet");
        let c = check_path(&later.join("x"), std::slice::from_ref(&later)).unwrap();
        assert!(matches!(
            c.open(OFlag::O_PATH),
            Err(NodeError::NotFound { .. })
        ));
        c.make_dirs(true).unwrap();
        assert!(later.join("x").is_dir());
    }
}
