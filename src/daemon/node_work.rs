//! The node-side flows both engines share: check the request, then mount, bind,
//! unmount through a [`Node`] (whether to format is the engine's: `formatting`). Every
//! check runs before anything changes, and a repeated request that is already done is
//! success (kubelet retries).

use super::engine::{EngineError, MountSpec, Mounted, PathStats, Result};
use super::node::{
    parse_mount_options, LoopDev, MountKind, MountRequest, MountSource, MountState, Node,
    NodeError, TargetKind, FILESYSTEMS,
};
use super::paths::{check_path, ConfinedPath};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// lvmd's default filesystem, as most CSI drivers.
pub const DEFAULT_FS: &str = "ext4";

/// `source` is already mounted at `target`, but read-only where read-write was asked
/// or the other way round: the caller must unmount first (CSI: ALREADY_EXISTS).
/// Whether `spec` asks for a read-only mount: its flag, or `ro` among its options.
pub(super) fn asks_read_only(spec: &MountSpec) -> Result<bool> {
    Ok(spec.read_only || parse_mount_options(&spec.options)?.0 & libc::MS_RDONLY != 0)
}

fn incompatible(target: &Path, source: &Path, mounted_read_only: bool) -> EngineError {
    let (is, asked) = if mounted_read_only {
        ("read-only", "read-write")
    } else {
        ("read-write", "read-only")
    };
    EngineError::AlreadyExists {
        what: "mount at",
        name: target.display().to_string(),
        why: format!(
            "of {} {is}; it cannot be made {asked} in place: unmount it first",
            source.display()
        ),
    }
}

#[derive(Clone)]
pub struct NodeWork {
    pub node: Arc<dyn Node>,
    /// Where clients may have lvmd mount (see `paths`).
    pub roots: Vec<PathBuf>,
}

impl std::fmt::Debug for NodeWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeWork")
            .field("roots", &self.roots)
            .finish()
    }
}

impl NodeWork {
    pub fn new(node: Arc<dyn Node>, roots: Vec<PathBuf>) -> NodeWork {
        NodeWork { node, roots }
    }

    pub fn check_path(&self, path: &Path) -> Result<ConfinedPath> {
        Ok(check_path(path, &self.roots)?)
    }

    /// Checks a mount request completely (path, filesystem, options): call before
    /// activating anything for it. Returns it in normal form, fs type filled in.
    pub fn check_mount(&self, spec: &MountSpec) -> Result<MountSpec> {
        let target = self.check_path(&spec.target)?.path().to_owned();
        let fs_type = if spec.fs_type.is_empty() {
            DEFAULT_FS.to_owned()
        } else {
            spec.fs_type.clone()
        };
        if !FILESYSTEMS.contains(&fs_type.as_str()) {
            return Err(NodeError::UnsupportedFs { fs_type }.into());
        }
        parse_mount_options(&spec.options)?;
        Ok(MountSpec {
            target,
            fs_type,
            options: spec.options.clone(),
            read_only: spec.read_only,
        })
    }

    /// Refuses a target that something is mounted on when the volume to go there is not
    /// even active yet (so it cannot be the volume): checked before activating it.
    pub fn check_free_target(&self, target: &ConfinedPath, active: bool) -> Result<()> {
        if !active && self.node.is_mount_point(target)? {
            return Err(NodeError::Busy {
                path: target.path().to_owned(),
                why: "something else is mounted there".into(),
            }
            .into());
        }
        Ok(())
    }

    /// Whether `device` is mounted at `spec.target` already (a retry): its mount, if it
    /// is there as asked; an error if it is there the other way (read-only or not) or
    /// something else is. `spec` as returned by [`check_mount`](Self::check_mount).
    pub fn mounted_already(&self, device: &Path, spec: &MountSpec) -> Result<Option<Mounted>> {
        let target = self.check_path(&spec.target)?;
        match self
            .node
            .mount_state(&target, &MountSource::Device(device.to_owned()))?
        {
            MountState::Same { read_only } => {
                let asked = asks_read_only(spec)?;
                if read_only != asked {
                    return Err(incompatible(&spec.target, device, read_only));
                }
                let found = self.node.probe(device)?;
                let fs = found
                    .signatures
                    .iter()
                    .find(|s| s.usage == crate::probe::Usage::Filesystem)
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                Ok(Some(Mounted {
                    device: device.to_owned(),
                    fs_type: fs,
                    formatted: false,
                }))
            }
            MountState::Other(what) => Err(NodeError::Busy {
                path: spec.target.clone(),
                why: what,
            }
            .into()),
            MountState::NotMounted => Ok(None),
        }
    }

    /// Mounts the `fs_type` filesystem on `device` at `spec.target` (whether to format
    /// first is the engine's to decide, from the LV's marks: see `formatting`).
    pub fn mount_as(
        &self,
        device: &Path,
        spec: &MountSpec,
        fs_type: &str,
        formatted: bool,
    ) -> Result<Mounted> {
        let node = &self.node;
        let target = self.check_path(&spec.target)?;
        node.create_target(&target, TargetKind::Directory)?;
        node.mount(&MountRequest {
            source: MountSource::Device(device.to_owned()),
            target,
            kind: MountKind::Filesystem {
                fs_type: fs_type.to_owned(),
            },
            read_only: spec.read_only,
            options: spec.options.clone(),
        })?;
        tracing::info!(device = %device.display(), target = %spec.target.display(), fs_type, formatted, "mounted");
        Ok(Mounted {
            device: device.to_owned(),
            fs_type: fs_type.to_owned(),
            formatted,
        })
    }

    pub fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<()> {
        let source = MountSource::Confined(self.check_path(source)?);
        let target = self.check_path(target)?;
        self.bind_checked(&source, &target, TargetKind::Directory, read_only)
    }

    /// Bind-mounts an active volume's device node onto the file `target`, which must
    /// have been checked.
    ///
    /// Read-only, it binds a read-only loop device over the volume instead: a
    /// read-only bind mount of a device node stops nobody from opening the node for
    /// writing (the mount's flag covers the file, not the device behind it), while a
    /// read-only loop device refuses every write. Kubelet attaches loop devices to
    /// block volumes the same way. One loop device per target; a retry finds it bound
    /// there and is done.
    pub fn publish_block(
        &self,
        device: &Path,
        target: &ConfinedPath,
        read_only: bool,
    ) -> Result<()> {
        let node = &self.node;
        let source = MountSource::Device(device.to_owned());
        let ro_loop_here = |l: &LoopDev| -> Result<bool> {
            Ok(l.read_only && node.same_device(&l.backing, device)?)
        };
        if !read_only {
            if let Some(l) = node.loop_at(target)? {
                if ro_loop_here(&l)? {
                    return Err(incompatible(target.path(), device, true));
                }
            }
            return self.bind_checked(&source, target, TargetKind::File, false);
        }
        if node.is_mount_point(target)? {
            if let Some(l) = node.loop_at(target)? {
                if ro_loop_here(&l)? {
                    return Ok(());
                }
            }
            let why = match node.mount_state(target, &source)? {
                MountState::Same { .. } => return Err(incompatible(target.path(), device, false)),
                MountState::Other(what) => what,
                MountState::NotMounted => "something is mounted there".into(),
            };
            return Err(NodeError::Busy {
                path: target.path().to_owned(),
                why,
            }
            .into());
        }
        node.create_target(target, TargetKind::File)?;
        let lo = node.attach_read_only_loop(device)?;
        let bound = node.mount(&MountRequest {
            source: MountSource::Device(lo.clone()),
            target: target.clone(),
            kind: MountKind::Bind,
            read_only: true,
            options: vec![],
        });
        if let Err(e) = bound {
            // Nothing half-done: the loop device goes with the failed bind.
            if let Err(d) = node.detach_loop(&lo) {
                tracing::warn!(loop_device = %lo.display(), "cannot detach after a failed bind: {d}");
            }
            return Err(e.into());
        }
        tracing::info!(device = %device.display(), loop_device = %lo.display(),
            target = %target, "published read-only through a loop device");
        Ok(())
    }

    fn bind_checked(
        &self,
        source: &MountSource,
        target: &ConfinedPath,
        kind: TargetKind,
        read_only: bool,
    ) -> Result<()> {
        match self.node.mount_state(target, source)? {
            MountState::Same { read_only: ro } if ro == read_only => return Ok(()),
            MountState::Same { read_only: ro } => {
                return Err(incompatible(target.path(), source.path(), ro))
            }
            MountState::Other(what) => {
                return Err(NodeError::Busy {
                    path: target.path().to_owned(),
                    why: what,
                }
                .into())
            }
            MountState::NotMounted => {}
        }
        self.node.create_target(target, kind)?;
        self.node.mount(&MountRequest {
            source: source.clone(),
            target: target.clone(),
            kind: MountKind::Bind,
            read_only,
            options: vec![],
        })?;
        tracing::info!(source = %source.path().display(), target = %target, read_only, "bind-mounted");
        Ok(())
    }

    pub fn unmount(&self, target: &Path, remove_target: bool) -> Result<bool> {
        let target = self.check_path(target)?;
        let mut was = false;
        // Stacked mounts (a retried publish) come off one by one.
        while self.node.is_mount_point(&target)? {
            self.node.unmount(&target)?;
            was = true;
        }
        if remove_target {
            self.node.remove_target(&target)?;
        }
        if was {
            tracing::info!(target = %target, "unmounted");
        }
        Ok(was)
    }

    /// Checks that `target` (checked already) is where `device` is mounted, and returns
    /// the type of the filesystem there. Call before changing anything.
    pub fn check_grow_target(&self, device: &Path, target: &ConfinedPath) -> Result<String> {
        let source = MountSource::Device(device.to_owned());
        match self.node.mount_state(target, &source)? {
            MountState::Same { .. } => {}
            MountState::NotMounted => {
                return Err(EngineError::FailedPrecondition {
                    what: "path",
                    name: target.to_string(),
                    why: format!("is not a mount point of {}", device.display()),
                })
            }
            MountState::Other(what) => {
                return Err(EngineError::FailedPrecondition {
                    what: "path",
                    name: target.to_string(),
                    why: format!("{what}, not {}", device.display()),
                })
            }
        }
        let found = self.node.probe(device)?;
        let fs = found
            .signatures
            .iter()
            .find(|s| s.usage == crate::probe::Usage::Filesystem);
        match fs.map(|s| s.name.clone()) {
            Some(fs) if FILESYSTEMS.contains(&fs.as_str()) => Ok(fs),
            Some(fs) => Err(NodeError::UnsupportedFs { fs_type: fs }.into()),
            None => Err(EngineError::FailedPrecondition {
                what: "device",
                name: device.display().to_string(),
                why: "holds no filesystem to grow".into(),
            }),
        }
    }

    /// Grows the filesystem on `device` mounted at `target` (both checked by
    /// [`check_grow_target`](Self::check_grow_target)); returns its new size.
    pub fn grow_filesystem(
        &self,
        device: &Path,
        target: &ConfinedPath,
        fs_type: &str,
    ) -> Result<PathStats> {
        self.node.grow_filesystem(device, target, fs_type)?;
        let stats = self.node.stats(target)?;
        tracing::info!(device = %device.display(), target = %target, fs_type,
            size = stats.total.0, "grew filesystem");
        Ok(stats)
    }

    pub fn stats(&self, path: &Path) -> Result<PathStats> {
        let path = self.check_path(path)?;
        Ok(self.node.stats(&path)?)
    }
}
