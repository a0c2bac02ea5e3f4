//! What the daemon needs from device-mapper activation, as a trait.
//!
//! The real implementation lives in `crate::activate` (another branch); until it lands
//! the daemon runs with [`SimActivation`], which keeps active volumes in memory and
//! creates no device. Contract for the real one:
//!
//! - [`activate`](Activation::activate) builds the tables from the VG metadata given
//!   (the caller has just read it under the VG lock) and creates or reloads the dm
//!   device `<vg>-<lv>` (lvm2's name mangling, uuid `LVM-<vg uuid><lv uuid>`); it is
//!   idempotent: an active volume with the same table is left alone.
//! - [`refresh`](Activation::refresh) reloads an active volume's table after its
//!   metadata changed (a resize); a volume that is not active is left inactive.
//! - [`deactivate`](Activation::deactivate) removes the device; not active is success;
//!   open (mounted, held by a process) is [`ActivationError::Busy`].
//! - [`active_volumes`](Activation::active_volumes) lists the active LVs of a VG, from
//!   the kernel (dm uuids starting `LVM-<vg uuid>`), so the daemon's view survives a
//!   restart.

use crate::model::VolumeGroup;
use crate::units::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveVolume {
    pub vg: String,
    pub lv: String,
    /// The device node (`/dev/mapper/<vg>-<lv>` or `/dev/dm-N`).
    pub device: PathBuf,
    pub size: Bytes,
    /// How many openers the kernel counts (a mount, a process, another dm table).
    pub open_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// Device-mapper is not there or not usable (no kernel support, no permission).
    #[error("device-mapper unavailable: {0}")]
    Unavailable(String),
    #[error("logical volume {vg}/{lv} is open ({by}); refusing to deactivate it")]
    Busy { vg: String, lv: String, by: String },
    #[error("logical volume {vg}/{lv}: {why}")]
    Unsupported { vg: String, lv: String, why: String },
    #[error("activating {vg}/{lv}: {why}")]
    Failed { vg: String, lv: String, why: String },
}

pub trait Activation: Send + Sync + 'static {
    /// Makes `lv` of `vg` active; returns where its device is.
    fn activate(&self, vg: &VolumeGroup, lv: &str) -> Result<ActiveVolume, ActivationError>;
    /// Reloads an active volume's table from `vg`; `Ok(None)` when it is not active.
    fn refresh(&self, vg: &VolumeGroup, lv: &str) -> Result<Option<ActiveVolume>, ActivationError>;
    /// Removes the volume's device; not active is success (`Ok(false)`).
    fn deactivate(&self, vg: &str, lv: &str) -> Result<bool, ActivationError>;
    /// The active volumes of `vg`.
    fn active_volumes(&self, vg: &str) -> Result<Vec<ActiveVolume>, ActivationError>;
}

/// Activation in memory: devices are names under `dev_dir` that do not exist. For tests
/// and for running the daemon before the device-mapper layer lands.
#[derive(Debug)]
pub struct SimActivation {
    dev_dir: PathBuf,
    active: Mutex<BTreeMap<(String, String), ActiveVolume>>,
    unavailable: Mutex<Option<String>>,
}

impl Default for SimActivation {
    fn default() -> Self {
        SimActivation::new("/dev/lvmd-sim")
    }
}

impl SimActivation {
    pub fn new(dev_dir: impl Into<PathBuf>) -> SimActivation {
        SimActivation {
            dev_dir: dev_dir.into(),
            active: Mutex::new(BTreeMap::new()),
            unavailable: Mutex::new(None),
        }
    }

    /// Pretends something holds the volume open (a mount elsewhere), for tests.
    pub fn set_open_count(&self, vg: &str, lv: &str, count: u32) {
        if let Some(a) = self
            .active
            .lock()
            .unwrap()
            .get_mut(&(vg.to_owned(), lv.to_owned()))
        {
            a.open_count = count;
        }
    }

    /// Makes every call fail as if device-mapper were missing (`None`: works again).
    pub fn set_unavailable(&self, why: Option<&str>) {
        *self.unavailable.lock().unwrap() = why.map(str::to_owned);
    }

    fn check(&self) -> Result<(), ActivationError> {
        match &*self.unavailable.lock().unwrap() {
            Some(why) => Err(ActivationError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    fn volume(&self, vg: &VolumeGroup, lv: &str) -> Result<ActiveVolume, ActivationError> {
        let model = vg.lv(lv).ok_or_else(|| ActivationError::Failed {
            vg: vg.name.clone(),
            lv: lv.into(),
            why: "not in the metadata given".into(),
        })?;
        Ok(ActiveVolume {
            vg: vg.name.clone(),
            lv: lv.into(),
            device: self.dev_dir.join(format!("{}-{}", vg.name, lv)),
            size: vg.extent_size.span(model.extents()).to_bytes(),
            open_count: 0,
        })
    }
}

impl Activation for SimActivation {
    fn activate(&self, vg: &VolumeGroup, lv: &str) -> Result<ActiveVolume, ActivationError> {
        self.check()?;
        let mut active = self.active.lock().unwrap();
        let key = (vg.name.clone(), lv.to_owned());
        if let Some(a) = active.get(&key) {
            return Ok(a.clone());
        }
        let a = self.volume(vg, lv)?;
        active.insert(key, a.clone());
        Ok(a)
    }

    fn refresh(&self, vg: &VolumeGroup, lv: &str) -> Result<Option<ActiveVolume>, ActivationError> {
        self.check()?;
        let mut active = self.active.lock().unwrap();
        let key = (vg.name.clone(), lv.to_owned());
        let Some(old) = active.get(&key).cloned() else {
            return Ok(None);
        };
        let a = ActiveVolume {
            open_count: old.open_count,
            ..self.volume(vg, lv)?
        };
        active.insert(key, a.clone());
        Ok(Some(a))
    }

    fn deactivate(&self, vg: &str, lv: &str) -> Result<bool, ActivationError> {
        self.check()?;
        let mut active = self.active.lock().unwrap();
        let key = (vg.to_owned(), lv.to_owned());
        match active.get(&key) {
            None => Ok(false),
            Some(a) if a.open_count > 0 => Err(ActivationError::Busy {
                vg: vg.into(),
                lv: lv.into(),
                by: format!("open count {}", a.open_count),
            }),
            Some(_) => {
                active.remove(&key);
                Ok(true)
            }
        }
    }

    fn active_volumes(&self, vg: &str) -> Result<Vec<ActiveVolume>, ActivationError> {
        self.check()?;
        Ok(self
            .active
            .lock()
            .unwrap()
            .values()
            .filter(|a| a.vg == vg)
            .cloned()
            .collect())
    }
}
