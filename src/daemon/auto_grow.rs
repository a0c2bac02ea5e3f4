//! Thin pools that grow by themselves, for the device classes whose `thin_pool` sets
//! `autoextend_threshold_percent` below 100 (lvm2's `thin_pool_autoextend_threshold`,
//! which dmeventd acts on). Every [`INTERVAL`], each such pool that dm-thin counts at or
//! past the threshold in data or metadata grows that part by `autoextend_percent` of
//! its size (at least one extent), through the engine's own
//! [`Engine::grow_thin_pool`]: the same commit-then-reload as a grow by request. A grow
//! the VG has no room for changes nothing and is tried again at the next round; each
//! grow is logged, a failure again only when its reason changes.

use super::config::Config;
use super::engine::Engine;
use super::thin::ThinPoolInfo;
use crate::units::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often pools are looked at: dm-thin's low-water event would need a dm event
/// listener; a pool filling at disk speed still has seconds to go at a 80 % threshold.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// A class's rule: grow `vg`'s pool by `percent` once a part is `threshold` % full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub vg: String,
    pub threshold: u32,
    pub percent: u32,
}

/// The rules of the classes that want it.
pub fn rules(config: &Config) -> Vec<Rule> {
    config
        .device_classes
        .values()
        .filter_map(|c| {
            let p = c.thin_pool.as_ref()?;
            (p.autoextend_threshold_percent < 100).then(|| Rule {
                vg: c.volume_group.clone(),
                threshold: p.autoextend_threshold_percent,
                percent: p.autoextend_percent,
            })
        })
        .collect()
}

/// The new (data, metadata) sizes `rule` asks of `pool` now; `None` for a part below
/// the threshold (or a pool that is not active: nothing is counted).
pub fn wanted(rule: &Rule, pool: &ThinPoolInfo) -> (Option<Bytes>, Option<Bytes>) {
    let Some(usage) = &pool.usage else {
        return (None, None);
    };
    let grown = |used: Bytes, total: Bytes, size: Bytes| {
        let full = used.0.saturating_mul(100) >= total.0.saturating_mul(rule.threshold.into());
        // Rounded up to extents by the grow, so a sliver still adds one.
        (total.0 > 0 && full)
            .then(|| Bytes(size.0 + (size.0 * u64::from(rule.percent) / 100).max(1)))
    };
    (
        grown(usage.data_used, usage.data_total, pool.data_size),
        grown(
            usage.metadata_used,
            usage.metadata_total,
            pool.metadata_size,
        ),
    )
}

/// One round over `rules`; `last` keeps the last failure per VG, logged once.
pub fn round(engine: &dyn Engine, rules: &[Rule], last: &mut BTreeMap<String, String>) {
    for rule in rules {
        let vg = &rule.vg;
        let outcome = engine.thin_pool(vg).and_then(|pool| {
            let Some(pool) = pool else {
                return Ok(None);
            };
            match wanted(rule, &pool) {
                (None, None) => Ok(None),
                (data, metadata) => engine
                    .grow_thin_pool(vg, data, metadata)
                    .map(|now| Some((pool, now))),
            }
        });
        match outcome {
            Ok(None) => {}
            Ok(Some((was, now))) => {
                tracing::info!(
                    vg,
                    pool = now.name,
                    threshold_percent = rule.threshold,
                    data = now.data_size.0,
                    was_data = was.data_size.0,
                    metadata = now.metadata_size.0,
                    was_metadata = was.metadata_size.0,
                    "thin pool grown by itself"
                );
                last.remove(vg);
            }
            Err(e) => {
                let text = e.to_string();
                if last.get(vg) != Some(&text) {
                    tracing::warn!(
                        vg,
                        "thin pool past its autoextend threshold not grown: {text}"
                    );
                    last.insert(vg.clone(), text);
                }
            }
        }
    }
}

/// Runs rounds until the runtime ends; nothing when no class asks for it.
pub fn spawn(engine: Arc<dyn Engine>, config: &Config) {
    let rules = rules(config);
    if rules.is_empty() {
        return;
    }
    tracing::info!(
        ?rules,
        every_seconds = INTERVAL.as_secs(),
        "thin pools grow by themselves"
    );
    super::rounds::spawn(INTERVAL, "thin pool growth", move |last| {
        round(engine.as_ref(), &rules, last)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::{Layout, LvSpec};
    use crate::daemon::thin::ThinPolicy;
    use crate::daemon::SimEngine;
    use std::path::PathBuf;

    const MIB: u64 = 1 << 20;

    fn config(extra: &str) -> Config {
        Config::parse(&format!(
            "[device_classes.t]\nvolume_group = \"vg\"\ndefault = true\n\
             thin_pool = {{ name = \"pool\", size = \"64MiB\"{extra} }}\n\
             [device_classes.plain]\nvolume_group = \"vg-plain\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn only_classes_with_a_threshold_below_100_grow_by_themselves() {
        assert!(rules(&config("")).is_empty());
        let c = config(", autoextend_threshold_percent = 80, autoextend_percent = 50");
        assert_eq!(
            rules(&c),
            [Rule {
                vg: "vg".into(),
                threshold: 80,
                percent: 50
            }]
        );
    }

    #[test]
    fn a_pool_past_its_threshold_grows_by_its_percent_until_the_vg_is_full() {
        let c = config(", autoextend_threshold_percent = 80, autoextend_percent = 50");
        let pool = c.device_classes["t"].thin_pool.clone().unwrap();
        let devs = vec![(PathBuf::from("/dev/sim0"), Bytes(256 * MIB))];
        let (e, act, _) = SimEngine::with_sims(&devs, vec![PathBuf::from("/k")]);
        let e = e.with_thin_pool("vg", ThinPolicy::of(&pool));
        e.create_volume_group("vg", &[PathBuf::from("/dev/sim0")])
            .unwrap();
        e.prepare_thin_pool("vg", &pool).unwrap();
        let spec = LvSpec {
            name: "a".into(),
            size: Bytes(100 * MIB),
            layout: Layout::Thin,
            tags: vec![],
        };
        e.create_logical_volume("vg", &spec).unwrap();
        e.activate("vg", "a").unwrap();
        let rules = rules(&c);
        let mut last = BTreeMap::new();
        let size = |e: &SimEngine| {
            let p = e.thin_pool("vg").unwrap().unwrap();
            (p.data_size.0 / MIB, p.metadata_size.0 / MIB)
        };
        // Below the threshold: nothing.
        act.set_thin_usage("vg", "pool", Bytes(51 * MIB), Bytes(0));
        round(&e, &rules, &mut last);
        assert_eq!(size(&e), (64, 4));
        // 52 of 64 MiB is 81 %: the data grows by half (the metadata is not full).
        act.set_thin_usage("vg", "pool", Bytes(52 * MIB), Bytes(0));
        round(&e, &rules, &mut last);
        assert_eq!(size(&e), (96, 4));
        // Still 52 MiB used of 96: nothing more.
        round(&e, &rules, &mut last);
        assert_eq!(size(&e), (96, 4));
        // Metadata at 3.5 of 4 MiB: it grows by half, rounded up to an extent.
        act.set_thin_usage("vg", "pool", Bytes(0), Bytes(3584 << 10));
        round(&e, &rules, &mut last);
        assert_eq!(size(&e), (96, 8));
        // Full data again, and no room left for half more: nothing changes, the reason
        // kept (logged once).
        act.set_thin_usage("vg", "pool", Bytes(90 * MIB), Bytes(0));
        let filler = LvSpec {
            name: "filler".into(),
            size: Bytes(100 * MIB),
            layout: Layout::Linear,
            tags: vec![],
        };
        e.create_logical_volume("vg", &filler).unwrap();
        round(&e, &rules, &mut last);
        assert_eq!(size(&e), (96, 8));
        assert!(last.contains_key("vg"), "{last:?}");
        // Room again: it grows, and the failure is forgotten.
        e.remove_logical_volume("vg", "filler").unwrap();
        round(&e, &rules, &mut last);
        assert_eq!(size(&e), (144, 8));
        assert!(last.is_empty(), "{last:?}");
    }
}
