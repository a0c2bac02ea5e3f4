//! Start-up: which devices to scan, loop-backed trial devices, and each device class's
//! VG created from (or extended with) the devices its globs match.
//!
//! Devices that cannot become PVs (they hold data, show traces of LVM, or belong to
//! another VG) are left alone and logged; the daemon starts anyway, serving what it
//! can. Nothing that holds anything is ever initialised automatically: an admin decides.

use super::config::{Config, LoopFile};
use super::engine::{Engine, EngineError};
use super::run::StartError;
use super::volumes::{Metadata, VolumeEngine};
use crate::lvm::LvmError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Devices matching the globs, sorted, symlinks (`/dev/disk/by-id/...`) resolved so the
/// same disk is not seen twice.
pub fn expand_globs(globs: &[String]) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    for g in globs {
        match glob::glob(g) {
            Ok(paths) => {
                for p in paths.flatten() {
                    out.insert(std::fs::canonicalize(&p).unwrap_or(p));
                }
            }
            Err(e) => tracing::warn!(glob = g, "bad glob: {e}"),
        }
    }
    out.into_iter().collect()
}

/// The loop device already backed by `file`, if any.
fn attached_loop(file: &Path) -> Option<PathBuf> {
    let file = std::fs::canonicalize(file).ok()?;
    let entries = std::fs::read_dir("/sys/block").ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let dev = PathBuf::from(format!("/dev/{name}"));
        if let Ok(Some(backing)) = lvmd_sys::loopdev::backing_file(&dev) {
            if backing == file {
                return Some(dev);
            }
        }
    }
    None
}

/// A sparse file of the configured size attached as a loop device (the existing
/// attachment after a restart). The attachment outlives the daemon, as a disk would.
pub fn loop_device(l: &LoopFile) -> std::io::Result<PathBuf> {
    if let Some(dev) = attached_loop(&l.path) {
        return Ok(dev);
    }
    if let Some(dir) = l.path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&l.path)?;
    if f.metadata()?.len() < l.size.0 {
        f.set_len(l.size.0)?;
    }
    drop(f);
    let dev = lvmd_sys::loopdev::attach(&l.path, &Default::default())?;
    tracing::info!(file = %l.path.display(), device = %dev.path().display(), "attached loop device");
    Ok(dev.into_path())
}

/// Each class's devices: its globs, and its loop file's device.
pub fn class_devices(config: &Config) -> Vec<(String, Vec<PathBuf>)> {
    config
        .device_classes
        .iter()
        .map(|(name, c)| {
            let mut devs = expand_globs(&c.devices);
            if let Some(l) = &c.loop_file {
                match loop_device(l) {
                    Ok(d) => devs.push(d),
                    Err(e) => tracing::error!(class = name, file = %l.path.display(), "cannot attach the loop file: {e}"),
                }
            }
            (name.clone(), devs)
        })
        .collect()
}

/// Makes each class's VG exist on its devices: creates it, or extends it with devices
/// not yet in it. Problems are logged, not fatal.
pub fn prepare_classes(config: &Config, engine: &dyn Engine, devices: &[(String, Vec<PathBuf>)]) {
    for (name, devs) in devices {
        let Some(class) = config.device_classes.get(name) else {
            continue;
        };
        let vg = &class.volume_group;
        match engine.volume_group(vg) {
            Ok(info) => {
                let have: BTreeSet<PathBuf> = info
                    .pvs
                    .iter()
                    .map(|p| std::fs::canonicalize(&p.device).unwrap_or_else(|_| p.device.clone()))
                    .collect();
                for d in devs.iter().filter(|d| !have.contains(*d)) {
                    match engine.extend_volume_group(vg, std::slice::from_ref(d)) {
                        Ok(_) => {
                            tracing::info!(class = name, vg, device = %d.display(), "extended volume group")
                        }
                        Err(e) => not_using(name, vg, d, &e),
                    }
                }
            }
            Err(EngineError::Lvm(LvmError::VgNotFound(_))) => {
                if devs.is_empty() {
                    tracing::warn!(
                        class = name,
                        vg,
                        "volume group not found and no devices configured to create it from"
                    );
                    continue;
                }
                create(name, vg, devs, engine);
            }
            Err(e) => tracing::error!(class = name, vg, "cannot read the volume group: {e}"),
        }
    }
}

/// Each thin class's pool, made or adopted ([`VolumeEngine::prepare_thin_pool`]), once
/// its VG exists (a class whose VG is not there yet has nothing to prepare; it is
/// logged). A pool that exists and is not what the config says stops the start:
/// changing it, or serving volumes from it under other rules, is an admin's call.
pub fn prepare_thin_pools<M: Metadata>(
    config: &Config,
    engine: &VolumeEngine<M>,
) -> Result<(), StartError> {
    for (name, class) in &config.device_classes {
        let Some(pool) = &class.thin_pool else {
            continue;
        };
        let vg = &class.volume_group;
        match engine.prepare_thin_pool(vg, pool) {
            Ok(info) => tracing::info!(
                class = name,
                vg,
                pool = info.name,
                data = info.data_size.0,
                thin_volumes = info.thin_volumes,
                "thin pool ready"
            ),
            Err(EngineError::Lvm(LvmError::VgNotFound(_))) => {
                tracing::warn!(
                    class = name,
                    vg,
                    "no volume group yet: its thin pool is made once it exists (at the next start)"
                )
            }
            Err(source) => {
                return Err(StartError {
                    class: name.clone(),
                    source: Box::new(source),
                })
            }
        }
    }
    Ok(())
}

/// Logs why a class device is not used; one that holds something (data, a damaged
/// PV) as an error, with where to look.
fn not_using(class: &str, vg: &str, device: &Path, e: &EngineError) {
    match e {
        EngineError::Lvm(LvmError::DeviceNotEmpty { .. } | LvmError::LvmTraces { .. }) => {
            tracing::error!(class, vg, device = %device.display(),
                "refusing the device: {e}; lvmd never initialises a device that holds anything (`lvmd-ctl inspect {}` shows its LVM side; wipe it yourself if it is meant for lvmd)",
                device.display())
        }
        _ => tracing::warn!(class, vg, device = %device.display(), "not using the device: {e}"),
    }
}

/// Creates the VG from the devices that can be PVs: all at once if they all can, else
/// one by one, so one disk with data on it does not keep the others unused.
fn create(class: &str, vg: &str, devs: &[PathBuf], engine: &dyn Engine) {
    match engine.create_volume_group(vg, devs) {
        Ok(_) => {
            tracing::info!(class, vg, devices = ?devs, "created volume group");
            return;
        }
        Err(e) => tracing::warn!(
            class,
            vg,
            "cannot create the volume group from all devices: {e}"
        ),
    }
    let mut exists = false;
    for d in devs {
        let one = std::slice::from_ref(d);
        let r = if exists {
            engine.extend_volume_group(vg, one)
        } else {
            engine.create_volume_group(vg, one)
        };
        match r {
            Ok(_) => {
                exists = true;
                tracing::info!(class, vg, device = %d.display(), "added device to volume group");
            }
            Err(e) => not_using(class, vg, d, &e),
        }
    }
}
