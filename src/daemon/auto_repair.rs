//! Automatic repair of degraded mirrors, for the device classes configured with
//! `auto_repair = true` (lvm2's `raid_fault_policy = "allocate"`, which dmeventd acts
//! on). Every [`INTERVAL`], each such class's active raid1 volumes whose health is
//! degraded (a leg on a missing PV, or failed by the kernel) are repaired through the
//! engine's own [`Engine::repair_logical_volume`]: the same crash-safe steps and
//! checks as a repair by request, so a repair that cannot be done (no PV with room
//! for the leg) changes nothing and is tried again at the next round. Each attempt
//! is logged; a failure is logged again only when its reason changes.

use super::config::Config;
use super::engine::{Engine, Health};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often degraded mirrors are looked for: the kernel tells nobody when a leg
/// fails, so it is asked (lvm2's dmeventd waits for dm events instead).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The VGs of the classes that want it.
pub fn vgs(config: &Config) -> Vec<String> {
    config
        .device_classes
        .values()
        .filter(|c| c.auto_repair)
        .map(|c| c.volume_group.clone())
        .collect()
}

/// One round over `vgs`. `last` keeps the last failure per volume, so a repair that
/// keeps failing for one reason is logged once.
pub fn round(engine: &dyn Engine, vgs: &[String], last: &mut BTreeMap<(String, String), String>) {
    for vg in vgs {
        let lvs = match engine.logical_volumes(vg) {
            Ok(l) => l,
            Err(e) => {
                let key = (vg.clone(), String::new());
                if last.get(&key) != Some(&e.to_string()) {
                    tracing::warn!(vg, "automatic repair: cannot list volumes: {e}");
                    last.insert(key, e.to_string());
                }
                continue;
            }
        };
        for lv in lvs {
            let Health::Degraded(why) = &lv.health else {
                continue;
            };
            if lv.device.is_none() || lv.sync.is_none() {
                // Inactive: repaired when it runs (a repair rebuilds into a live table).
                continue;
            }
            let key = (vg.clone(), lv.name.clone());
            match engine.repair_logical_volume(vg, &lv.name) {
                Ok(now) => {
                    tracing::info!(vg, lv = lv.name, was = %why, health = ?now.health,
                        "automatic repair: degraded mirror repaired, legs rebuilding");
                    last.remove(&key);
                }
                Err(e) => {
                    let text = e.to_string();
                    if last.get(&key) != Some(&text) {
                        tracing::warn!(vg, lv = lv.name, was = %why,
                            "automatic repair: degraded mirror not repaired: {text}");
                        last.insert(key, text);
                    }
                }
            }
        }
    }
}

/// Runs rounds until the runtime ends; nothing when no class asks for it.
pub fn spawn(engine: Arc<dyn Engine>, config: &Config) {
    let vgs = vgs(config);
    if vgs.is_empty() {
        return;
    }
    tracing::info!(volume_groups = ?vgs, every_seconds = INTERVAL.as_secs(),
        "automatic repair of degraded mirrors on");
    super::rounds::spawn(INTERVAL, "automatic repair", move |last| {
        round(engine.as_ref(), &vgs, last)
    });
}
