//! Device classes: the names clients use for volume groups, with their defaults.

use super::config::Config;
use super::engine::{EngineError, Layout, Result};
use crate::lvm::LvmError;
use crate::model::name::validate_vg_name;
use crate::units::Sectors;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub vg: String,
    pub stripes: u32,
    pub stripe_size: Sectors,
    pub is_default: bool,
    /// LUKS2 settings of its encrypted volumes (`None`: the defaults).
    pub encryption: Option<crate::crypt::LuksConfig>,
    /// Its thin pool: its volumes are thin unless a request names another layout.
    pub thin: Option<super::thin::ThinPolicy>,
    /// Its mirrors get dm-integrity under each copy unless a request says otherwise.
    pub integrity: bool,
}

impl Class {
    /// The layout of a volume created without one.
    pub fn default_layout(&self) -> Layout {
        if self.thin.is_some() {
            Layout::Thin
        } else if self.stripes > 1 {
            Layout::Striped {
                stripes: self.stripes,
                stripe_size: self.stripe_size,
            }
        } else {
            Layout::Linear
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceClasses {
    classes: BTreeMap<String, Class>,
    /// Whether LVs of VGs that are no class's may be changed through the API (config
    /// `manage_other_volume_groups`). Off by default: lvmd's clients own its classes'
    /// VGs, not every VG on a scanned device.
    pub manage_other_vgs: bool,
}

/// Where a request's volume lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub vg: String,
    pub class: Option<Class>,
}

impl DeviceClasses {
    pub fn from_config(config: &Config) -> DeviceClasses {
        let default = config.default_class();
        DeviceClasses {
            classes: config
                .device_classes
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        Class {
                            name: name.clone(),
                            vg: c.volume_group.clone(),
                            stripes: c.stripes,
                            // Whole sectors: the config's check refused anything else.
                            stripe_size: c.stripe_size.to_sectors_floor(),
                            is_default: default == Some(name.as_str()),
                            encryption: c.encryption.clone(),
                            integrity: c.integrity,
                            thin: c.thin_pool.as_ref().map(super::thin::ThinPolicy::of),
                        },
                    )
                })
                .collect(),
            manage_other_vgs: config.manage_other_volume_groups,
        }
    }

    pub fn new(classes: Vec<Class>) -> DeviceClasses {
        DeviceClasses {
            classes: classes.into_iter().map(|c| (c.name.clone(), c)).collect(),
            manage_other_vgs: false,
        }
    }

    /// Refuses a change to a volume of a VG no device class names, unless configured:
    /// a request naming another VG (one lvm2 made, another tool's) changes nothing.
    pub fn check_changeable(&self, resolved: &Resolved) -> Result<()> {
        if resolved.class.is_some() || self.manage_other_vgs {
            return Ok(());
        }
        Err(EngineError::FailedPrecondition {
            what: "volume group",
            name: resolved.vg.clone(),
            why: "belongs to no device class; lvmd changes volumes only in its device \
                  classes' volume groups (set manage_other_volume_groups = true to allow it)"
                .into(),
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &Class> {
        self.classes.values()
    }

    pub fn by_vg(&self, vg: &str) -> Option<&Class> {
        self.classes.values().find(|c| c.vg == vg)
    }

    pub fn get(&self, name: &str) -> Result<&Class> {
        self.classes.get(name).ok_or_else(|| EngineError::NotFound {
            what: "device class",
            name: name.into(),
        })
    }

    fn default_class(&self) -> Result<&Class> {
        self.classes
            .values()
            .find(|c| c.is_default)
            .ok_or_else(|| EngineError::InvalidArgument {
                what: "device class",
                value: String::new(),
                why: "none given, and no default device class is configured".into(),
            })
    }

    /// A device class name (empty: the default) or a VG name; both must agree.
    pub fn resolve(&self, class: &str, vg: &str) -> Result<Resolved> {
        if !vg.is_empty() {
            validate_vg_name(vg).map_err(LvmError::from)?;
            let by_vg = self.by_vg(vg).cloned();
            if !class.is_empty() {
                let c = self.get(class)?;
                if c.vg != vg {
                    return Err(EngineError::InvalidArgument {
                        what: "volume group",
                        value: vg.into(),
                        why: format!("device class {class} maps to volume group {}", c.vg),
                    });
                }
            }
            return Ok(Resolved {
                vg: vg.into(),
                class: by_vg,
            });
        }
        let c = if class.is_empty() {
            self.default_class()?
        } else {
            self.get(class)?
        };
        Ok(Resolved {
            vg: c.vg.clone(),
            class: Some(c.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> DeviceClasses {
        DeviceClasses::new(vec![
            Class {
                name: "ssd".into(),
                vg: "vg1".into(),
                stripes: 1,
                stripe_size: Sectors(128),
                is_default: true,
                encryption: None,
                integrity: false,
                thin: None,
            },
            Class {
                name: "hdd".into(),
                vg: "vg2".into(),
                stripes: 2,
                stripe_size: Sectors(128),
                is_default: false,
                encryption: None,
                integrity: false,
                thin: None,
            },
        ])
    }

    #[test]
    fn resolution() {
        let c = classes();
        assert_eq!(c.resolve("", "").unwrap().vg, "vg1");
        assert_eq!(c.resolve("hdd", "").unwrap().vg, "vg2");
        assert_eq!(c.resolve("", "vg2").unwrap().class.unwrap().name, "hdd");
        assert_eq!(c.resolve("", "other").unwrap().class, None);
        assert!(matches!(
            c.resolve("nvme", ""),
            Err(EngineError::NotFound { .. })
        ));
        assert!(c.resolve("ssd", "vg2").is_err());
        assert!(c.resolve("", "bad/name").is_err());
        let none = DeviceClasses::default();
        assert!(none
            .resolve("", "")
            .unwrap_err()
            .to_string()
            .contains("no default"));
    }
}
