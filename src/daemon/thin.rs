//! Thin pools and thin volumes through the daemon: a device class's pool made (or an
//! lvm2 pool adopted) at start, thin volumes created, removed and grown with the pool's
//! messages sent right after the commit that records them, and the guards that keep a
//! pool from running full under its writers.
//!
//! Every change follows `docs/thin.md`'s order, a crash point ([`super::crash`]) at
//! each step, so a `kill -9` anywhere leaves a state the next start (or the next thin
//! change of the pool) finishes:
//!
//! 1. the pool brought in step first ([`VolumeEngine::settle_pool`]: messages an
//!    earlier, killed run recorded are sent, their record committed away);
//! 2. the commit that creates (removes) the thin LV and records its message
//!    (`thin-committed` after it);
//! 3. the message sent to the pool, made active for it if it was not (`thin-sent`);
//! 4. the record dropped (`Edit::ThinMessagesSent`; `thin-recorded` after it).
//!
//! A new pool: committed marked `lvmd.fresh` (`pool-committed`), its whole `_tmeta`
//! zeroed (`pool-cleared`: dm-thin formats only an all-zero superblock, and takes
//! anything else for a pool's metadata), then the mark dropped. A pool still marked at
//! start was never activated by lvmd: its `_tmeta` is zeroed again.

use super::activation::ActivationError;
use super::config::{PoolSize, ThinPoolConfig};
use super::crash;
use super::engine::{EngineError, Result};
use super::volumes::{Metadata, VgRead, VolumeEngine};
use crate::activate::PoolStatus;
use crate::lvm::thin::{pending_messages, thin_lvs, ThinPoolSpec};
use crate::lvm::{Edit, LvmError};
use crate::model::{LogicalVolume, SegmentKind, VolumeGroup};
use crate::units::{human_bytes, Bytes};

/// A device class's rules for its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinPolicy {
    pub pool: String,
    /// The most the thin volumes' sizes may add up to, in percent of the pool's data
    /// size (the config's `overprovision_ratio` times 100).
    pub overprovision_percent: u64,
    /// New volumes are refused while data or metadata is at least this full.
    pub usage_limit_percent: u32,
}

impl ThinPolicy {
    pub fn of(config: &ThinPoolConfig) -> ThinPolicy {
        ThinPolicy {
            pool: config.name.clone(),
            overprovision_percent: (config.overprovision_ratio * 100.0).round() as u64,
            usage_limit_percent: config.usage_limit_percent,
        }
    }
}

/// A thin pool as capacity reports show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinPoolInfo {
    pub vg: String,
    pub name: String,
    pub data_size: Bytes,
    pub metadata_size: Bytes,
    pub chunk_size: Bytes,
    /// The sum of its thin volumes' sizes.
    pub provisioned: Bytes,
    pub thin_volumes: u32,
    /// What may still be provisioned under the ratio (0 without a policy).
    pub provisionable: Bytes,
    pub policy: Option<ThinPolicy>,
    /// dm-thin's count when the pool is active; `None` when it is not.
    pub usage: Option<PoolStatus>,
}

fn pool_segment<'a>(vg: &'a VolumeGroup, pool: &str) -> Option<&'a crate::model::Segment> {
    match vg.lv(pool)?.segments.as_slice() {
        [s] if matches!(s.kind, SegmentKind::ThinPool { .. }) => Some(s),
        _ => None,
    }
}

/// The pool a thin LV is in; `None` for any other LV.
pub fn pool_of_thin(lv: &LogicalVolume) -> Option<&str> {
    match lv.segments.as_slice() {
        [s] => match &s.kind {
            SegmentKind::Thin { thin_pool, .. } => Some(thin_pool),
            _ => None,
        },
        _ => None,
    }
}

/// The pool's data size and the sum of its thin volumes' sizes.
fn provisioning(vg: &VolumeGroup, pool: &str) -> (Bytes, Bytes, u32) {
    let data = pool_segment(vg, pool)
        .map(|s| vg.extent_size.span(s.extent_count).to_bytes())
        .unwrap_or_default();
    let thins = thin_lvs(vg, pool);
    let sum = thins
        .iter()
        .map(|(l, _)| vg.extent_size.span(l.extents()).to_bytes().0)
        .sum();
    (data, Bytes(sum), thins.len() as u32)
}

/// The provisioned total a pool of `data` may reach under `ratio_percent`.
fn ratio_limit(data: Bytes, ratio_percent: u64) -> Bytes {
    Bytes((u128::from(data.0) * u128::from(ratio_percent) / 100).min(u128::from(u64::MAX)) as u64)
}

fn percent(used: Bytes, total: Bytes) -> u64 {
    (used.0.saturating_mul(100))
        .checked_div(total.0)
        .unwrap_or(0)
}

fn exhausted(vg: &str, pool: &str, why: String) -> EngineError {
    EngineError::ThinPoolExhausted {
        pool: format!("{vg}/{pool}"),
        why,
    }
}

/// Refuses a thin volume that would take the pool's provisioned total from
/// `provisioned` by `more` past the policy's ratio.
fn check_ratio(
    vg: &VolumeGroup,
    policy: &ThinPolicy,
    pool: &str,
    more: Bytes,
    what: &str,
) -> Result<()> {
    let (data, provisioned, _) = provisioning(vg, pool);
    let limit = ratio_limit(data, policy.overprovision_percent);
    let after = Bytes(provisioned.0 + more.0);
    if after > limit {
        return Err(exhausted(
            &vg.name,
            pool,
            format!(
                "{what} would provision {} ({} bytes) of its {} ({} bytes) data, past the \
                 overprovision ratio {}.{:02} (at most {} bytes; {} bytes are provisioned now)",
                human_bytes(after),
                after.0,
                human_bytes(data),
                data.0,
                policy.overprovision_percent / 100,
                policy.overprovision_percent % 100,
                limit.0,
                provisioned.0
            ),
        ));
    }
    Ok(())
}

/// Refuses a new volume while the pool's data or metadata is at the policy's limit.
fn check_usage(vg: &str, policy: &ThinPolicy, s: &PoolStatus) -> Result<()> {
    if let Some(t) = &s.trouble {
        return Err(exhausted(vg, &policy.pool, format!("the pool is {t}")));
    }
    for (what, used, total) in [
        ("data", s.data_used, s.data_total),
        ("metadata", s.metadata_used, s.metadata_total),
    ] {
        let p = percent(used, total);
        if p >= u64::from(policy.usage_limit_percent) {
            return Err(exhausted(
                vg,
                &policy.pool,
                format!(
                    "its {what} is {p}% full ({} of {} bytes), at or past the usage limit of \
                     {}%: new volumes are refused so the existing ones keep the rest",
                    used.0, total.0, policy.usage_limit_percent
                ),
            ));
        }
    }
    Ok(())
}

/// Why an existing pool is not what the config asks for, naming both values.
fn pool_mismatch(vg: &VolumeGroup, want: &ThinPoolSpec, size: PoolSize) -> Option<String> {
    let seg = pool_segment(vg, &want.name)?;
    let SegmentKind::ThinPool {
        metadata,
        chunk_size,
        ..
    } = &seg.kind
    else {
        return None;
    };
    let fields = crate::activate::seg_fields::ThinPoolFields::of(seg).ok();
    let data = vg.extent_size.span(seg.extent_count).to_bytes();
    if let PoolSize::Bytes(_) = size {
        let asked = crate::model::Layout::Linear.rounded_size(want.data_size, vg.extent_size);
        // The config's size is what the pool is made with: one grown since is its own.
        if data < asked {
            return Some(format!(
                "its data size is {} bytes, less than the config's size {} bytes (rounded \
                 to extents); grow it (lvmd-ctl pool grow) or lower the config's size",
                data.0, asked.0
            ));
        }
    }
    if let Some(c) = want.chunk_size {
        if c != *chunk_size {
            return Some(format!(
                "its chunk size is {} bytes, the config's chunk_size {} bytes",
                chunk_size.to_bytes().0,
                c.to_bytes().0
            ));
        }
    }
    if let Some(m) = want.metadata_size {
        let have = vg
            .lv(metadata)
            .map(|l| vg.extent_size.span(l.extents()).to_bytes())
            .unwrap_or_default();
        let asked = crate::model::Layout::Linear.rounded_size(m, vg.extent_size);
        if have < asked {
            return Some(format!(
                "its metadata size is {} bytes, less than the config's metadata_size {} \
                 bytes (rounded to extents)",
                have.0, asked.0
            ));
        }
    }
    let fields = fields?;
    let zero = fields.zero_new_blocks;
    if zero != want.zero_new_blocks {
        return Some(format!(
            "it {} new blocks, the config says zero = {}",
            if zero { "zeroes" } else { "does not zero" },
            want.zero_new_blocks
        ));
    }
    let asked = crate::activate::target::Discards::from_lvm2(want.discards.as_lvm2());
    if Some(fields.discards) != asked {
        return Some(format!(
            "its discards are {:?}, the config's {:?}",
            fields.discards,
            want.discards.as_lvm2()
        ));
    }
    None
}

impl<M: Metadata> VolumeEngine<M> {
    /// The thin policy of `vg`'s device class.
    pub(crate) fn thin_policy(&self, vg: &str) -> Result<&ThinPolicy> {
        self.thin
            .get(vg)
            .ok_or_else(|| EngineError::FailedPrecondition {
                what: "volume group",
                name: vg.into(),
                why: "has no thin pool configured (a device class's thin_pool in lvmd.toml); \
                  thin volumes are made only in a configured pool"
                    .into(),
            })
    }

    /// Brings `pool`'s kernel metadata in step (see the module's comment, step 1) and
    /// drops a record whose messages the kernel has. With the VG's write lock held.
    pub(crate) fn settle_pool(&self, vg: &str, pool: &str) -> Result<(VgRead, PoolStatus)> {
        let read = self.meta.read(vg)?;
        let status = self.activation.thin_pool_sync(&read, pool)?;
        let seg = pool_segment(&read.vg, pool).ok_or_else(|| LvmError::LvNotFound {
            vg: vg.into(),
            lv: pool.into(),
        })?;
        if pending_messages(seg).is_empty() {
            return Ok((read, status));
        }
        self.record_sent(vg, pool, &status)?;
        tracing::info!(
            vg,
            pool,
            transaction_id = status.transaction_id,
            "thin pool in step: the messages a killed run recorded were sent"
        );
        Ok((self.meta.read(vg)?, status))
    }

    /// Steps 3 and 4 after a commit that recorded a message; crash points
    /// `<step>-sent` and `<step>-recorded`.
    fn send_recorded(&self, vg: &str, pool: &str, step: &str) -> Result<VgRead> {
        let read = self.meta.read(vg)?;
        let status = self.activation.thin_pool_sync(&read, pool)?;
        crash::point(&format!("{step}-sent"));
        self.record_sent(vg, pool, &status)?;
        crash::point(&format!("{step}-recorded"));
        Ok(self.meta.read(vg)?)
    }

    /// Commits away the pool's message record, the kernel being at `status`'s id.
    fn record_sent(&self, vg: &str, pool: &str, status: &PoolStatus) -> Result<()> {
        self.meta.edit(
            vg,
            &Edit::ThinMessagesSent {
                pool: pool.into(),
                transaction_id: status.transaction_id,
            },
        )?;
        Ok(())
    }

    /// A thin volume created with the VG's write lock held, `tags` lvmd's marks and the
    /// client's. The caller found no LV of this name.
    pub(crate) fn create_thin_locked(
        &self,
        vg: &str,
        name: &str,
        size: Bytes,
        tags: Vec<String>,
    ) -> Result<VgRead> {
        let policy = self.thin_policy(vg)?.clone();
        let edit = Edit::CreateThin {
            name: name.into(),
            pool: policy.pool.clone(),
            size,
            tags,
        };
        self.commit_thin_locked(vg, &edit, "thin", |vg| {
            let rounded = crate::model::Layout::Thin.rounded_size(size, vg.extent_size);
            (rounded, format!("a new thin volume of {} bytes", rounded.0))
        })
    }

    /// One new thin LV of the class's pool (a volume, a snapshot, a volume made from
    /// one), with the VG's write lock held, in `docs/thin.md`'s order: the pool
    /// settled, the guards (`adds`: what it provisions, and how to name it), the
    /// commit of `edit` (`<step>-committed`), the message sent, its record dropped.
    pub(crate) fn commit_thin_locked(
        &self,
        vg: &str,
        edit: &Edit,
        step: &str,
        adds: impl FnOnce(&VolumeGroup) -> (Bytes, String),
    ) -> Result<VgRead> {
        let policy = self.thin_policy(vg)?.clone();
        let (read, status) = self.settle_pool(vg, &policy.pool)?;
        let (more, what) = adds(&read.vg);
        check_ratio(&read.vg, &policy, &policy.pool, more, &what)?;
        check_usage(vg, &policy, &status)?;
        self.meta.edit(vg, edit)?;
        crash::point(&format!("{step}-committed"));
        self.send_recorded(vg, &policy.pool, step)
    }

    /// Removes thin LV `lv` (of `pool`), with the VG's write lock held and the LV
    /// already deactivated.
    pub(crate) fn remove_thin_locked(&self, vg: &str, lv: &str, pool: &str) -> Result<()> {
        self.meta.edit(vg, &Edit::RemoveThin { lv: lv.into() })?;
        crash::point("thin-committed");
        self.send_recorded(vg, pool, "thin")?;
        Ok(())
    }

    /// Refuses growing thin LV `lv` to `size` past the pool's ratio (no policy: the
    /// VG is no thin class's, nothing to hold to).
    pub(crate) fn check_thin_grow(&self, read: &VgRead, lv: &str, size: Bytes) -> Result<()> {
        let Some(policy) = self.thin.get(&read.vg.name) else {
            return Ok(());
        };
        let Some(model) = read.vg.lv(lv) else {
            return Ok(());
        };
        if pool_of_thin(model) != Some(policy.pool.as_str()) {
            return Ok(());
        }
        let have = read.vg.extent_size.span(model.extents()).to_bytes();
        if size <= have {
            return Ok(());
        }
        check_ratio(
            &read.vg,
            policy,
            &policy.pool,
            Bytes(size.0 - have.0),
            &format!("growing {lv} to {} bytes", size.0),
        )
    }

    /// A record left by a killed run in `vg`'s configured pool is finished (a retried
    /// removal of a volume already gone comes here).
    pub(crate) fn finish_pending(&self, read: &VgRead) -> Result<()> {
        let Some(policy) = self.thin.get(&read.vg.name) else {
            return Ok(());
        };
        if pool_segment(&read.vg, &policy.pool).is_some_and(|s| !pending_messages(s).is_empty()) {
            self.settle_pool(&read.vg.name, &policy.pool)?;
        }
        Ok(())
    }

    /// At start: `vg`'s pool as the config says, made if absent (as `lvcreate --type
    /// thin-pool`, its `_tmeta` zeroed whole), adopted if lvm2 or an earlier run made
    /// it, refused (nothing changed) if it is not what the config asks for; then brought
    /// in step with the kernel.
    pub fn prepare_thin_pool(&self, vg: &str, config: &ThinPoolConfig) -> Result<ThinPoolInfo> {
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        let read = self.meta.read(vg)?;
        let vg_size = read.vg.extent_size.span(read.vg.total_extents()).to_bytes();
        let mut spec = config.spec(vg_size);
        match read.vg.lv(&config.name) {
            Some(_) if pool_segment(&read.vg, &config.name).is_none() => {
                return Err(EngineError::FailedPrecondition {
                    what: "thin pool",
                    name: format!("{vg}/{}", config.name),
                    why: format!(
                        "an LV of that name exists and is a {} volume, not a thin pool",
                        read.vg.lv(&config.name).map_or("", |l| l.type_name())
                    ),
                })
            }
            Some(_) => {
                if let Some(why) = pool_mismatch(&read.vg, &spec, config.size) {
                    return Err(EngineError::FailedPrecondition {
                        what: "thin pool",
                        name: format!("{vg}/{}", config.name),
                        why: format!(
                            "exists and does not match lvmd.toml: {why}; lvmd changed nothing \
                             (fix the config, or the pool with lvm2)"
                        ),
                    });
                }
            }
            None => {
                if let PoolSize::Percent(_) = config.size {
                    // The share is of the VG; the metadata, its spare and extent rounding
                    // come out of the rest, so a 100% share leaves room for them.
                    let (_, meta) = spec
                        .sizes(
                            read.vg
                                .extent_size
                                .extents_floor(spec.data_size.to_sectors_floor()),
                            read.vg.extent_size,
                        )
                        .map_err(EngineError::from)?;
                    let free = read.vg.extent_size.span(read.vg.free_extents()).to_bytes();
                    let room = read.vg.extent_size.span(meta).to_bytes().0 * 2;
                    spec.data_size = Bytes(spec.data_size.0.min(free.0.saturating_sub(room)));
                }
                spec.tags = vec![super::marks::FRESH.into()];
                self.meta.edit(vg, &Edit::CreateThinPool(spec.clone()))?;
                crash::point("pool-committed");
                tracing::info!(
                    vg,
                    pool = config.name,
                    data = spec.data_size.0,
                    "created thin pool"
                );
            }
        }
        // A pool lvmd made and never zeroed the metadata of (killed before, or just made).
        let read = self.meta.read(vg)?;
        let pool = read.vg.lv(&config.name).expect("made or found above");
        if super::marks::is_fresh(&pool.tags) {
            self.clear_edges(&read, pool)?;
            crash::point("pool-cleared");
            self.meta.edit(
                vg,
                &Edit::lv_tags(&config.name, &[], &[super::marks::FRESH.into()]),
            )?;
        }
        // A grow committed by a run killed before it reloaded the active pool: its
        // devices still have the old sizes, which the settle below would refuse.
        match self.activation.thin_pool_refresh(&read, &config.name) {
            Ok(_) | Err(ActivationError::Unavailable(_)) => {}
            Err(e) => return Err(e.into()),
        }
        match self.settle_pool(vg, &config.name) {
            Ok((read, status)) => Ok(self.pool_info(&read, &config.name, Some(status))),
            // No device-mapper here: the pool is there, its thin volumes wait for one
            // (their creates say why); the other classes serve on.
            Err(EngineError::Activation(ActivationError::Unavailable(why))) => {
                tracing::error!(vg, pool = config.name, "{why}");
                Ok(self.pool_info(&self.meta.read(vg)?, &config.name, None))
            }
            Err(e) => Err(e),
        }
    }

    fn pool_info(&self, read: &VgRead, pool: &str, usage: Option<PoolStatus>) -> ThinPoolInfo {
        let vg = &read.vg;
        let (data, provisioned, count) = provisioning(vg, pool);
        let (meta, chunk) = match pool_segment(vg, pool).map(|s| &s.kind) {
            Some(SegmentKind::ThinPool {
                metadata,
                chunk_size,
                ..
            }) => (
                vg.lv(metadata)
                    .map(|l| vg.extent_size.span(l.extents()).to_bytes())
                    .unwrap_or_default(),
                chunk_size.to_bytes(),
            ),
            _ => (Bytes(0), Bytes(0)),
        };
        let policy = self.thin.get(&vg.name).filter(|p| p.pool == pool).cloned();
        let provisionable = policy.as_ref().map_or(Bytes(0), |p| {
            Bytes(
                ratio_limit(data, p.overprovision_percent)
                    .0
                    .saturating_sub(provisioned.0),
            )
        });
        ThinPoolInfo {
            vg: vg.name.clone(),
            name: pool.into(),
            data_size: data,
            metadata_size: meta,
            chunk_size: chunk,
            provisioned,
            thin_volumes: count,
            provisionable,
            policy,
            usage,
        }
    }

    /// Grows `vg`'s configured pool online (data to `data`, metadata to `metadata`;
    /// `None` leaves that part), from the VG's free space: the metadata committed
    /// first, then the active pool's devices reloaded bottom-up (see
    /// [`crate::activate::Activator::refresh_thin_pool`]). Idempotent: the sizes it
    /// already has change nothing in the metadata and bring an active pool in line (a
    /// run killed between the two steps is finished by the same call, or at start).
    pub fn grow_thin_pool(
        &self,
        vg: &str,
        data: Option<Bytes>,
        metadata: Option<Bytes>,
    ) -> Result<ThinPoolInfo> {
        let Some(policy) = self.thin.get(vg) else {
            return Err(EngineError::FailedPrecondition {
                what: "volume group",
                name: vg.into(),
                why: "its device class has no thin pool configured (thin_pool in lvmd.toml)".into(),
            });
        };
        let pool = policy.pool.clone();
        let lock = self.locks.get(vg);
        let _g = lock.write().unwrap();
        let edit = Edit::ResizeThinPool {
            pool: pool.clone(),
            data,
            metadata,
        };
        let before = self.pool_info(&self.meta.read(vg)?, &pool, None);
        self.meta.edit(vg, &edit)?;
        let read = self.meta.read(vg)?;
        let after = self.pool_info(&read, &pool, None);
        if (after.data_size, after.metadata_size) != (before.data_size, before.metadata_size) {
            crash::point("pool-grown");
            tracing::info!(
                vg,
                pool,
                data = after.data_size.0,
                metadata = after.metadata_size.0,
                was_data = before.data_size.0,
                was_metadata = before.metadata_size.0,
                "thin pool grown in the metadata"
            );
        }
        let usage = match self.activation.thin_pool_refresh(&read, &pool) {
            Ok(usage) => usage,
            // No device-mapper: the next activation loads the new sizes.
            Err(ActivationError::Unavailable(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(self.pool_info(&read, &pool, usage))
    }

    /// `vg`'s configured pool, its usage as the kernel counts it if active.
    pub fn thin_pool_info(&self, vg: &str) -> Result<Option<ThinPoolInfo>> {
        let Some(policy) = self.thin.get(vg) else {
            return Ok(None);
        };
        let lock = self.locks.get(vg);
        let _g = lock.read().unwrap();
        let read = self.meta.read(vg)?;
        if pool_segment(&read.vg, &policy.pool).is_none() {
            return Ok(None);
        }
        let usage = self
            .activation
            .thin_pool_status(&read, &policy.pool)
            .unwrap_or_else(|e| {
                tracing::warn!(vg, pool = policy.pool, "cannot read the pool's status: {e}");
                None
            });
        Ok(Some(self.pool_info(&read, &policy.pool, usage)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::activate::ActivateError;
    use crate::daemon::config::Config;
    use crate::daemon::engine::{Engine, Layout, LvSpec};
    use crate::daemon::{SimActivation, SimEngine};
    use std::path::PathBuf;
    use std::sync::Arc;

    const MIB: u64 = 1 << 20;

    pub(crate) fn pool_config(extra: &str) -> ThinPoolConfig {
        let text = format!(
            "[device_classes.t]\nvolume_group = \"vg\"\n\
             thin_pool = {{ name = \"pool\", size = \"64MiB\", overprovision_ratio = 2.0{extra} }}\n"
        );
        Config::parse(&text).unwrap().device_classes["t"]
            .thin_pool
            .clone()
            .unwrap()
    }

    pub(crate) fn engine(config: &ThinPoolConfig) -> (SimEngine, Arc<SimActivation>) {
        engine_zeroing(config).0
    }

    fn engine_zeroing(
        config: &ThinPoolConfig,
    ) -> (
        (SimEngine, Arc<SimActivation>),
        Arc<crate::daemon::wipe::SimZeroer>,
    ) {
        let devs = vec![(PathBuf::from("/dev/sim0"), Bytes(256 * MIB))];
        let (e, act, _) = SimEngine::with_sims(&devs, vec![PathBuf::from("/k")]);
        let zeroer = Arc::new(crate::daemon::wipe::SimZeroer::default());
        let e = e
            .with_thin_pool("vg", ThinPolicy::of(config))
            .with_zeroer(zeroer.clone());
        e.create_volume_group("vg", &[PathBuf::from("/dev/sim0")])
            .unwrap();
        ((e, act), zeroer)
    }

    pub(crate) fn thin(name: &str, mib: u64) -> LvSpec {
        LvSpec {
            name: name.into(),
            size: Bytes(mib * MIB),
            layout: Layout::Thin,
            tags: vec![],
        }
    }

    /// The pool's thin ids in the VG metadata and in the (simulated) kernel, and both
    /// transaction ids: equal when nothing leaked.
    pub(crate) fn in_step(e: &SimEngine, act: &SimActivation) -> (Vec<u64>, u64) {
        let read = e.metadata().read("vg").unwrap();
        let ids: Vec<u64> = thin_lvs(&read.vg, "pool")
            .iter()
            .map(|(_, id)| *id)
            .collect();
        let seg = pool_segment(&read.vg, "pool").unwrap();
        let SegmentKind::ThinPool { transaction_id, .. } = seg.kind else {
            unreachable!()
        };
        assert!(pending_messages(seg).is_empty(), "a record was left");
        let kernel = act.thin_pool("vg", "pool");
        assert_eq!(kernel.devices.iter().copied().collect::<Vec<_>>(), ids);
        assert_eq!(kernel.transaction_id, transaction_id);
        (ids, transaction_id)
    }

    #[test]
    fn a_pool_is_made_zeroed_then_adopted_and_a_config_it_does_not_match_is_refused() {
        let config = pool_config("");
        let ((e, _), zeroer) = engine_zeroing(&config);
        let info = e.prepare_thin_pool("vg", &config).unwrap();
        assert_eq!(info.data_size, Bytes(64 * MIB));
        assert_eq!(
            (info.thin_volumes, info.provisionable),
            (0, Bytes(128 * MIB))
        );
        let read = e.metadata().read("vg").unwrap();
        let pool = read.vg.lv("pool").unwrap();
        assert!(
            !crate::daemon::marks::is_fresh(&pool.tags),
            "{:?}",
            pool.tags
        );
        // Its _tmeta was zeroed whole (4 MiB: 2 MiB, lvm2's least, in whole extents).
        let tmeta = read.vg.lv("pool_tmeta").unwrap();
        assert_eq!(tmeta.extents(), crate::units::Extents(1));
        let zeroed: u64 = zeroer.zeroed().iter().map(|(_, _, len)| len.0).sum();
        assert_eq!(zeroed, 4 * MIB);
        let seqno = read.vg.seqno;
        // A second start adopts it, changing nothing.
        e.prepare_thin_pool("vg", &config).unwrap();
        assert_eq!(e.metadata().read("vg").unwrap().vg.seqno, seqno);
        for (extra, says) in [
            (", zero = false", "zero = false"),
            (", chunk_size = \"128KiB\"", "131072"),
            (", discards = \"ignore\"", "ignore"),
        ] {
            let err = e.prepare_thin_pool("vg", &pool_config(extra)).unwrap_err();
            let m = err.to_string();
            assert!(m.contains(says) && m.contains("changed nothing"), "{m}");
        }
        // The config's size is the pool's size when made: a pool larger (grown since)
        // is adopted as it is, a smaller one is refused naming both sizes.
        let mut other = config.clone();
        other.size = PoolSize::Bytes(Bytes(32 * MIB));
        let info = e.prepare_thin_pool("vg", &other).unwrap();
        assert_eq!(info.data_size, Bytes(64 * MIB));
        other.size = PoolSize::Bytes(Bytes(96 * MIB));
        let m = e.prepare_thin_pool("vg", &other).unwrap_err().to_string();
        assert!(
            m.contains(&(64 * MIB).to_string()) && m.contains(&(96 * MIB).to_string()),
            "{m}"
        );
        assert_eq!(e.metadata().read("vg").unwrap().vg.seqno, seqno);
    }

    #[test]
    fn thin_volumes_are_created_and_removed_with_the_kernel_in_step() {
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        let a = e.create_logical_volume("vg", &thin("a", 10)).unwrap();
        assert!(a.created);
        assert_eq!(
            (a.value.layout, a.value.size),
            (Layout::Thin, Bytes(12 * MIB))
        );
        e.create_logical_volume("vg", &thin("b", 8)).unwrap();
        assert_eq!(in_step(&e, &act), (vec![1, 2], 2));
        // Idempotent: the same again changes nothing; another size is refused.
        assert!(
            !e.create_logical_volume("vg", &thin("a", 10))
                .unwrap()
                .created
        );
        assert!(matches!(
            e.create_logical_volume("vg", &thin("a", 20)),
            Err(EngineError::AlreadyExists { .. })
        ));
        assert!(e.remove_logical_volume("vg", "a").unwrap());
        assert!(!e.remove_logical_volume("vg", "a").unwrap());
        assert_eq!(in_step(&e, &act), (vec![2], 3));
        // A new volume gets a new id, never the removed one's blocks.
        e.create_logical_volume("vg", &thin("c", 8)).unwrap();
        assert_eq!(in_step(&e, &act), (vec![2, 3], 4));
        // Grown within the ratio, and reported so.
        let grown = e.resize_logical_volume("vg", "c", Bytes(40 * MIB)).unwrap();
        assert_eq!(grown.size, Bytes(40 * MIB));
        assert!(matches!(
            e.resize_logical_volume("vg", "c", Bytes(4 * MIB)),
            Err(EngineError::Lvm(LvmError::LvUnsupported { .. }))
        ));
        let info = e.thin_pool_info("vg").unwrap().unwrap();
        assert_eq!((info.provisioned, info.thin_volumes), (Bytes(48 * MIB), 2));
        assert_eq!(info.provisionable, Bytes(80 * MIB));
    }

    #[test]
    fn a_message_that_did_not_reach_the_kernel_is_sent_by_the_retry_or_the_next_start() {
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        e.create_logical_volume("vg", &thin("a", 8)).unwrap();
        // As a kill -9 right after the commit: the create's message never went.
        act.fail_next_activation(ActivateError::NotActive {
            vg: "vg".into(),
            lv: "pool".into(),
        });
        // The settle before the commit takes the fault: nothing committed.
        assert!(e.create_logical_volume("vg", &thin("b", 8)).is_err());
        assert!(e.metadata().read("vg").unwrap().vg.lv("b").is_none());
        // Commit, then the send fails: the record stays, the volume exists.
        let read = e.metadata().read("vg").unwrap();
        e.metadata()
            .edit(
                "vg",
                &Edit::CreateThin {
                    name: "b".into(),
                    pool: "pool".into(),
                    size: Bytes(8 * MIB),
                    tags: vec![],
                },
            )
            .unwrap();
        drop(read);
        assert_eq!(act.thin_pool("vg", "pool").transaction_id, 1);
        // The retry sends it and drops the record before answering.
        assert!(
            !e.create_logical_volume("vg", &thin("b", 8))
                .unwrap()
                .created
        );
        assert_eq!(in_step(&e, &act), (vec![1, 2], 2));
        // A removal killed after its commit: the retry (the volume is gone) sends it.
        e.metadata()
            .edit("vg", &Edit::RemoveThin { lv: "a".into() })
            .unwrap();
        assert!(!e.remove_logical_volume("vg", "a").unwrap());
        assert_eq!(in_step(&e, &act), (vec![2], 3));
        // And so does the next start.
        e.metadata()
            .edit("vg", &Edit::RemoveThin { lv: "b".into() })
            .unwrap();
        e.prepare_thin_pool("vg", &config).unwrap();
        assert_eq!(in_step(&e, &act), (vec![], 4));
    }

    #[test]
    fn the_ratio_and_the_usage_limit_refuse_new_volumes_naming_the_numbers() {
        let config = pool_config(", usage_limit_percent = 80");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        e.create_logical_volume("vg", &thin("a", 100)).unwrap();
        // 100 + 32 MiB > 2 x 64 MiB.
        let err = e.create_logical_volume("vg", &thin("b", 32)).unwrap_err();
        let m = err.to_string();
        assert!(matches!(err, EngineError::ThinPoolExhausted { .. }), "{m}");
        assert!(
            m.contains("2.00") && m.contains(&(132 * MIB).to_string()),
            "{m}"
        );
        assert_eq!(
            crate::api::status::engine_code(&err),
            tonic::Code::ResourceExhausted
        );
        let err = e
            .resize_logical_volume("vg", "a", Bytes(200 * MIB))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::ThinPoolExhausted { .. }),
            "{err}"
        );
        e.create_logical_volume("vg", &thin("b", 28)).unwrap();
        act.set_thin_usage("vg", "pool", Bytes(52 * MIB), Bytes(0));
        e.remove_logical_volume("vg", "b").unwrap();
        let err = e.create_logical_volume("vg", &thin("c", 4)).unwrap_err();
        let m = err.to_string();
        assert!(m.contains("data is 81% full") && m.contains("80%"), "{m}");
        act.set_thin_usage("vg", "pool", Bytes(0), Bytes(4 * MIB));
        let m = e
            .create_logical_volume("vg", &thin("c", 4))
            .unwrap_err()
            .to_string();
        assert!(m.contains("metadata is"), "{m}");
        act.set_thin_usage("vg", "pool", Bytes(0), Bytes(0));
        e.create_logical_volume("vg", &thin("c", 4)).unwrap();
        in_step(&e, &act);
    }

    #[test]
    fn a_pool_in_trouble_fails_its_active_volumes_naming_the_pool() {
        use crate::daemon::engine::Health;
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        e.create_logical_volume("vg", &thin("a", 8)).unwrap();
        e.create_logical_volume("vg", &thin("b", 8)).unwrap();
        e.activate("vg", "a").unwrap();
        let health = |lv: &str| e.logical_volume("vg", lv).unwrap().health;
        assert_eq!(health("a"), Health::Ok);
        act.set_thin_trouble("vg", "pool", Some("out of data space"));
        let want = Health::Failed("its thin pool vg/pool is out of data space".into());
        assert_eq!(health("a"), want);
        let listed = e.logical_volumes("vg").unwrap();
        let of = |lv: &str| listed.iter().find(|i| i.name == lv).unwrap().health.clone();
        assert_eq!(of("a"), want);
        // Inactive: nothing of it is in the pool's hands until it is activated.
        assert_eq!(of("b"), Health::Ok);
        // The trouble also stops new volumes, naming it.
        let m = e
            .create_logical_volume("vg", &thin("c", 8))
            .unwrap_err()
            .to_string();
        assert!(m.contains("out of data space"), "{m}");
        act.set_thin_trouble("vg", "pool", None);
        assert_eq!(health("a"), Health::Ok);
    }

    #[test]
    fn a_pool_grows_online_by_request_and_refuses_to_shrink() {
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        e.create_logical_volume("vg", &thin("a", 100)).unwrap();
        e.activate("vg", "a").unwrap();
        let before = e.thin_pool_info("vg").unwrap().unwrap();
        assert_eq!(before.data_size, Bytes(64 * MIB));
        // 2 x 64 MiB under the ratio, 100 MiB provisioned.
        assert_eq!(before.provisionable, Bytes(28 * MIB));
        let free = e.space("vg", 1).unwrap().free;
        let grown = e
            .grow_thin_pool("vg", Some(Bytes(96 * MIB)), Some(Bytes(8 * MIB)))
            .unwrap();
        assert_eq!(grown.data_size, Bytes(96 * MIB));
        assert_eq!(grown.metadata_size, Bytes(8 * MIB));
        assert_eq!(grown.provisionable, Bytes(92 * MIB));
        // The kernel's count follows the metadata once refreshed.
        let usage = grown.usage.expect("the pool is active");
        assert_eq!(usage.data_total, Bytes(96 * MIB));
        // 32 MiB of data, and 4 MiB more metadata with as much more spare.
        let took = free.0 - e.space("vg", 1).unwrap().free.0;
        assert_eq!(took, (32 + 4 + 4) * MIB);
        // The same again changes nothing; smaller is refused, naming it.
        let again = e.grow_thin_pool("vg", Some(Bytes(96 * MIB)), None).unwrap();
        assert_eq!(again.data_size, Bytes(96 * MIB));
        let m = e
            .grow_thin_pool("vg", Some(Bytes(32 * MIB)), None)
            .unwrap_err()
            .to_string();
        assert!(m.contains("never shrink") && m.contains("data"), "{m}");
        // A volume the old size refused now fits under the ratio.
        e.create_logical_volume("vg", &thin("b", 80)).unwrap();
        in_step(&e, &act);
    }

    #[test]
    fn a_vg_without_a_pool_refuses_thin_volumes() {
        let devs = vec![(PathBuf::from("/dev/sim0"), Bytes(256 * MIB))];
        let (e, _, _) = SimEngine::with_sims(&devs, vec![PathBuf::from("/k")]);
        e.create_volume_group("vg", &[PathBuf::from("/dev/sim0")])
            .unwrap();
        let m = e
            .create_logical_volume("vg", &thin("a", 8))
            .unwrap_err()
            .to_string();
        assert!(m.contains("no thin pool configured"), "{m}");
    }
}
