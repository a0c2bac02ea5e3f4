//! Putting the daemon together: the engine (real or simulated) a config describes. The
//! binary serves it (`src/bin/lvmd.rs`).

use super::activation::{Activation, DmActivation, NoDeviceMapper};
use super::config::Config;
use super::engine::Engine;
use super::node::HostNode;
use super::real::RealEngine;
use super::setup;
use super::sim::SimEngine;
use crate::lvm::Lvm;
use crate::socket::listen::Source;
use crate::store::backup::BackupDirs;
use crate::store::backup_writer::{BackupWriter, Hook};
use crate::store::lock::Locker;
use crate::units::Bytes;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The real engine on this machine's devices, with each class's VG prepared and
/// reconciled with the kernel's device-mapper state ([`super::reconcile`]). An error:
/// a class's thin pool lvmd must not touch (not what the config says), nothing changed.
pub fn real_engine(config: &Config) -> Result<Arc<dyn Engine>, StartError> {
    let class_devices = setup::class_devices(config);
    let mut devices: BTreeSet<PathBuf> = setup::expand_globs(&config.scan_devices)
        .into_iter()
        .collect();
    for (_, devs) in &class_devices {
        devices.extend(devs.iter().cloned());
    }
    let mut lvm = Lvm::new(devices.into_iter().collect());
    lvm.locker = Locker::new(&config.lock_dir);
    let devices_file = &config.lvm2_devices_file;
    lvm.lvm2_devices_file = crate::store::devices_file::DevicesFileLocation {
        dir: devices_file
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf(),
        name: devices_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    lvm.inject = super::crash::injector();
    let dirs = BackupDirs {
        backup: config.backup_dir.clone(),
        archive: Some(config.archive_dir.clone()),
    };
    refresh_backups(&lvm, &dirs);
    lvm.backup = Some(dirs.clone());
    // Written after answering; what a crash loses there, `refresh_backups` at the
    // next start writes before serving.
    let hold: Hook = Box::new(super::crash::hold_backups);
    let trim: Hook = Box::new(release_freed_memory);
    lvm.backup_writer = Some(BackupWriter::new(dirs, Some(hold), Some(trim)));
    let activation: Arc<dyn Activation> = match DmActivation::new() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            // Metadata work still goes on; activating answers with why it cannot.
            tracing::error!("{e}; volumes can be created and removed but not activated");
            Arc::new(NoDeviceMapper { why: e.to_string() })
        }
    };
    let engine = RealEngine::real(
        lvm,
        activation,
        Arc::new(HostNode),
        config.mount_roots.clone(),
    )
    .with_inline_wipe_limit(config.inline_wipe_limit);
    let engine = config.device_classes.values().fold(engine, |e, c| {
        let size = c.metadata_size.map_or(
            crate::lvm::MetadataSize::Auto,
            crate::lvm::MetadataSize::Exactly,
        );
        e.with_metadata_size(&c.volume_group, size)
    });
    let engine = with_thin_pools(engine, config);
    setup::prepare_classes(config, &engine, &class_devices);
    setup::prepare_thin_pools(config, &engine)?;
    // After a crash: tables behind their metadata, devices of removed volumes.
    let vgs: BTreeSet<String> = config
        .device_classes
        .values()
        .map(|c| c.volume_group.clone())
        .collect();
    let repairs = engine.reconcile(&vgs.into_iter().collect::<Vec<_>>());
    if !repairs.is_empty() {
        tracing::info!(
            count = repairs.len(),
            "start-up reconciliation: {repairs:?}"
        );
    }
    // Wipes an earlier run left (killed mid-wipe) resume at once.
    let engine = Arc::new(engine);
    engine.start_wiper();
    Ok(engine)
}

/// Gives the pages malloc keeps free back to the kernel. A commit of a VG of thousands
/// of volumes renders and checks megabytes of text in short-lived pieces; glibc keeps
/// the freed chunks scattered through its heaps, so the daemon's resident memory stayed
/// at its peak (tens of MiB) between commits. Called by the backup writer once it has
/// written everything queued (after the commits, never on a caller's path), and after
/// a full read of a VG (`super::real`), whose parse costs far more than this.
pub(super) fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory to the kernel; safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Backups older than their VG (a crash after a commit and before its backup was
/// written) are brought up to date, as lvm2 does when it reads a VG, before anything
/// is served. A failure is a warning: the VGs are fine, only `vgcfgrestore` lacks
/// the newest version until the next commit writes it.
fn refresh_backups(lvm: &Lvm, dirs: &BackupDirs) {
    let found = match lvm.volume_groups() {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!("could not read the volume groups to check their backups: {e}");
            return;
        }
    };
    for f in found {
        // A VG read whole and clean only: otherwise the backup may be the better copy.
        if !f.stale.is_empty() || !f.damaged.is_empty() || f.unwritable.is_some() {
            continue;
        }
        match dirs.refresh(&f.vg, &f.header) {
            Ok(true) => tracing::info!(
                vg = f.vg.name,
                seqno = f.vg.seqno,
                "backup was older than the volume group: rewritten"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(vg = f.vg.name, "could not bring its backup up to date: {e}"),
        }
    }
}

/// A class's thin pool at start: refused as the config asks (see
/// [`super::setup::prepare_thin_pools`]).
#[derive(Debug, thiserror::Error)]
#[error("device class {class}: {source}")]
pub struct StartError {
    pub class: String,
    #[source]
    pub source: Box<super::engine::EngineError>,
}

/// Each thin class's pool and guards, for the engine's thin volumes.
fn with_thin_pools<M: super::volumes::Metadata>(
    engine: super::volumes::VolumeEngine<M>,
    config: &Config,
) -> super::volumes::VolumeEngine<M> {
    config
        .device_classes
        .values()
        .fold(engine, |e, c| match &c.thin_pool {
            Some(t) => e.with_thin_pool(&c.volume_group, super::thin::ThinPolicy::of(t)),
            None => e,
        })
}

/// Everything in memory: per class, as many devices as its default stripes, 100 GiB in
/// all (or its loop file's size).
pub fn simulated_engine(config: &Config) -> Result<Arc<dyn Engine>, StartError> {
    let mut devices: Vec<(PathBuf, Bytes)> = Vec::new();
    let mut per_class: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for (name, c) in &config.device_classes {
        let total = c.loop_file.as_ref().map_or(Bytes(100 << 30), |l| l.size);
        let n = u64::from(c.stripes.max(1));
        let devs: Vec<PathBuf> = (0..n)
            .map(|i| PathBuf::from(format!("/dev/lvmd-sim/{name}{i}")))
            .collect();
        devices.extend(devs.iter().map(|d| (d.clone(), Bytes(total.0 / n))));
        per_class.push((c.volume_group.clone(), devs));
    }
    let (engine, _, _) = SimEngine::on_disk(&devices, config.mount_roots.clone());
    let engine = with_thin_pools(
        engine.with_inline_wipe_limit(config.inline_wipe_limit),
        config,
    );
    for (vg, devs) in &per_class {
        if let Err(e) = engine.create_volume_group(vg, devs) {
            tracing::error!(vg, "simulated volume group: {e}");
        }
    }
    setup::prepare_thin_pools(config, &engine)?;
    let engine = Arc::new(engine);
    tracing::warn!(
        "running the simulated engine: no device is touched; targets are plain directories and files"
    );
    engine.start_wiper();
    Ok(engine)
}

/// Why peers the config lets in could still not connect: lvmd binds its socket 0660
/// with root's group unless `socket_group` names another, so a non-root uid or gid in
/// the allow lists cannot even open it. (A socket systemd made has the unit's mode and
/// group, which lvmd does not second-guess.)
pub fn unreachable_peers(config: &Config, source: &Source) -> Option<String> {
    let others = config.allowed_uids.iter().any(|u| *u != 0) || !config.allowed_gids.is_empty();
    (others && config.socket_group.is_none() && *source == Source::Bound).then(|| {
        format!(
            "allowed_uids {:?} / allowed_gids {:?} are let in by lvmd, but the socket is \
             mode 0660 with root's group: they cannot open it. Set socket_group to a group \
             they are in",
            config.allowed_uids, config.allowed_gids
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_without_a_socket_group_are_pointed_out() {
        let with = |text: &str| Config::parse(text).unwrap();
        assert!(unreachable_peers(&with("allowed_uids = [1000]"), &Source::Bound).is_some());
        assert!(unreachable_peers(&with("allowed_gids = [50]"), &Source::Bound).is_some());
        let grouped = with("allowed_uids = [1000]\nsocket_group = \"lvmd\"");
        assert!(unreachable_peers(&grouped, &Source::Bound).is_none());
        assert!(unreachable_peers(&with(""), &Source::Bound).is_none());
        assert!(unreachable_peers(&with("allowed_uids = [1000]"), &Source::Systemd).is_none());
    }
}
