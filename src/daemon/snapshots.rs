//! Thin snapshots through the daemon, and volumes made from them (restore) or from
//! another volume (clone): all thin LVs of a device class's pool, made by one
//! `Edit::CreateThinSnapshot` in `docs/thin.md`'s order ([`VolumeEngine::commit_thin_locked`]),
//! so a `kill -9` anywhere is finished like a thin create (crash points
//! `snap-committed`, `snap-sent`, `snap-recorded` for a snapshot; `clone-*` for a volume
//! made from a source). Deleting a snapshot is a thin removal (`thin-*`).
//!
//! A snapshot is an LV marked `lvmd.snapshot-of=<source>` ([`marks::SNAPSHOT_OF_PREFIX`]),
//! read-only and flagged for activation skip as lvm2 flags its own; the volume calls do
//! not see it. It inherits its source's content marks (formatted as, encrypted), and so
//! does a volume made from it, which is writable, not skipped, and marked
//! `lvmd.from=<source>`: a second create of that name from another source is refused.

use super::crash;
use super::engine::{CowSize, Created, EngineError, LvInfo, LvSpec, Result, SnapshotInfo};
use super::marks;
use super::thin::pool_of_thin;
use super::volumes::{Metadata, VgRead, VolumeEngine};
use crate::lvm::{cow, Edit, LvmError};
use crate::model::name::validate_lv_name;
use crate::model::{Layout, LogicalVolume};
use crate::units::Bytes;

pub(super) fn snapshot_info(read: &VgRead, lv: &LogicalVolume) -> Option<SnapshotInfo> {
    let source = marks::snapshot_of(&lv.tags)?;
    let es = read.vg.extent_size;
    // A COW snapshot is as large as its origin (its `snapshotN`), its store its own.
    let (size, cow_size, read_only) = match cow::by_cow(&read.vg, &lv.name) {
        Some(c) => {
            let seg = read.vg.lv(&c.segment_lv)?;
            let store = es.span(lv.extents()).to_bytes();
            // lvmd never writes to its snapshots; the store is read-write for dm-snapshot.
            (es.span(seg.extents()).to_bytes(), Some(store), true)
        }
        None => (
            es.span(lv.extents()).to_bytes(),
            None,
            !lv.status.iter().any(|s| s == "WRITE"),
        ),
    };
    Some(SnapshotInfo {
        vg: read.vg.name.clone(),
        name: lv.name.clone(),
        uuid: lv.id.to_string(),
        source: source.into(),
        size,
        creation_time: lv.creation_time.unwrap_or(0),
        read_only,
        cow_size,
        group: marks::group_of(&lv.tags).map(Into::into),
    })
}

/// A COW snapshot's store when no size is asked for: this share of its source.
pub const DEFAULT_COW_SHARE: CowSize = CowSize::Percent(20);

/// A COW size asked for: some bytes, or 1 to 100 percent.
pub(crate) fn check_cow_size(size: Option<CowSize>) -> Result<()> {
    let bad = match size {
        Some(CowSize::Bytes(Bytes(0))) => {
            Some(("0".to_owned(), "a store holds at least one extent"))
        }
        Some(CowSize::Percent(p)) if p == 0 || p > 100 => {
            Some((format!("{p}%"), "a share of the source is 1% to 100%"))
        }
        _ => None,
    };
    match bad {
        Some((value, why)) => Err(EngineError::InvalidArgument {
            what: "COW size",
            value,
            why: why.into(),
        }),
        None => Ok(()),
    }
}

/// Snapshot `name` as just read (gone or unmarked since, by another writer: NOT_FOUND).
fn read_snapshot(read: &VgRead, vg: &str, name: &str) -> Result<SnapshotInfo> {
    read.vg
        .lv(name)
        .and_then(|lv| snapshot_info(read, lv))
        .ok_or_else(|| not_found("snapshot", vg, name))
}

pub(super) fn not_found(what: &'static str, vg: &str, name: &str) -> EngineError {
    EngineError::NotFound {
        what,
        name: format!("{vg}/{name}"),
    }
}

impl<M: Metadata> VolumeEngine<M> {
    /// `source` as a thin LV of `vg`'s configured pool: a volume (`snapshots: false`),
    /// or a volume or snapshot. Missing: NOT_FOUND; of another kind: FAILED_PRECONDITION.
    pub(super) fn thin_source<'a>(
        &self,
        read: &'a VgRead,
        source: &str,
        snapshots: bool,
    ) -> Result<&'a LogicalVolume> {
        let vg = &read.vg.name;
        let what = if snapshots {
            "volume or snapshot"
        } else {
            "volume"
        };
        let lv = read
            .vg
            .lv(source)
            .filter(|l| {
                super::view::is_client_visible(l)
                    || (snapshots && marks::snapshot_of(&l.tags).is_some())
            })
            .ok_or_else(|| not_found(what, vg, source))?;
        let policy = self.thin_policy(vg)?;
        if pool_of_thin(lv) != Some(policy.pool.as_str()) {
            return Err(EngineError::FailedPrecondition {
                what,
                name: format!("{vg}/{source}"),
                why: format!(
                    "is a {} volume; snapshots and volumes made from a source are thin \
                     volumes of the device class's pool {}",
                    lv.type_name(),
                    policy.pool
                ),
            });
        }
        Ok(lv)
    }

    pub(crate) fn create_snapshot_locked(
        &self,
        vg: &str,
        name: &str,
        source: &str,
        cow_size: Option<CowSize>,
    ) -> Result<Created<SnapshotInfo>> {
        let mut read = self.meta.read(vg)?;
        if read
            .vg
            .lv(name)
            .is_some_and(|lv| lv.tags.iter().any(|t| t == marks::COW_PENDING))
            && marks::snapshot_of(&read.vg.lv(name).unwrap().tags) == Some(source)
        {
            // A COW create cut short before its snapshot was known active: it may have
            // missed writes to its origin, and nobody got it. Made again.
            self.remove_cow_locked(vg, name, source)?;
            read = self.meta.read(vg)?;
        }
        if let Some(lv) = read.vg.lv(name) {
            return match marks::snapshot_of(&lv.tags) {
                Some(s) if s == source && cow::by_cow(&read.vg, name).is_some() => Ok(Created {
                    value: read_snapshot(&read, vg, name)?,
                    created: false,
                }),
                Some(s) if s == source => {
                    // A create killed after its commit: its message goes first.
                    self.finish_pending(&read)?;
                    Ok(Created {
                        value: read_snapshot(&self.meta.read(vg)?, vg, name)?,
                        created: false,
                    })
                }
                other => Err(EngineError::AlreadyExists {
                    what: "snapshot",
                    name: format!("{vg}/{name}"),
                    why: match other {
                        Some(s) => format!("as a snapshot of {s} (asked for one of {source})"),
                        None => format!("as a volume (asked for a snapshot of {source})"),
                    },
                }),
            };
        }
        let thick = read
            .vg
            .lv(source)
            .filter(|l| super::view::is_client_visible(l) && l.is_plain());
        if let Some(src) = thick {
            let size = read.vg.extent_size.span(src.extents()).to_bytes();
            let cow_size = cow_size.unwrap_or(DEFAULT_COW_SHARE).for_source(size);
            let mut tags = vec![format!("{}{source}", marks::SNAPSHOT_OF_PREFIX)];
            tags.extend(marks::content_marks(&src.tags));
            return self.create_cow_locked(&read, name, source, cow_size, tags);
        }
        let src = self.thin_source(&read, source, false)?;
        let mut tags = vec![format!("{}{source}", marks::SNAPSHOT_OF_PREFIX)];
        tags.extend(marks::content_marks(&src.tags));
        let size = read.vg.extent_size.span(src.extents()).to_bytes();
        let edit = Edit::CreateThinSnapshot {
            name: name.into(),
            origin: source.into(),
            read_only: true,
            activation_skip: true,
            size: None,
            tags,
        };
        let read = self.commit_thin_locked(vg, &edit, "snap", |_| {
            (size, format!("a snapshot of {source} ({} bytes)", size.0))
        })?;
        tracing::info!(vg, snapshot = name, source, "created thin snapshot");
        Ok(Created {
            value: read_snapshot(&read, vg, name)?,
            created: true,
        })
    }

    pub(crate) fn delete_snapshot_locked(&self, vg: &str, name: &str) -> Result<bool> {
        let read = self.meta.read(vg)?;
        let Some(lv) = read.vg.lv(name) else {
            // A deletion killed after its commit: its pool's message goes now, and a
            // COW snapshot's devices.
            self.finish_pending(&read)?;
            self.activation.release_cow(&read, None)?;
            return Ok(false);
        };
        if let (Some(c), Some(source)) = (cow::by_cow(&read.vg, name), marks::snapshot_of(&lv.tags))
        {
            let _ = source;
            self.remove_cow_locked(vg, name, &c.origin)?;
            tracing::info!(
                vg,
                snapshot = name,
                origin = c.origin,
                "deleted COW snapshot"
            );
            return Ok(true);
        }
        if marks::snapshot_of(&lv.tags).is_none() {
            return Err(EngineError::FailedPrecondition {
                what: "snapshot",
                name: format!("{vg}/{name}"),
                why: "is a volume, not a snapshot (RemoveLogicalVolume removes volumes)".into(),
            });
        }
        let pool = pool_of_thin(lv)
            .ok_or_else(|| not_found("snapshot", vg, name))?
            .to_owned();
        // Volumes made from it keep their blocks: only their `origin` goes.
        crate::lvm::edit::check_thin_removable(&read.vg, name)?;
        self.settle_pool(vg, &pool)?;
        self.deactivate_volume(&read, name)?;
        self.remove_thin_locked(vg, name, &pool)?;
        tracing::info!(vg, snapshot = name, pool, "deleted thin snapshot");
        Ok(true)
    }

    pub(crate) fn snapshots_of(&self, read: &VgRead) -> Vec<SnapshotInfo> {
        read.vg
            .lvs
            .iter()
            .filter_map(|lv| snapshot_info(read, lv))
            .collect()
    }

    pub(crate) fn create_from_locked(
        &self,
        vg: &str,
        spec: &LvSpec,
        source: &str,
        encrypted: bool,
    ) -> Result<Created<LvInfo>> {
        if let Some(snap) = self
            .meta
            .read(vg)
            .ok()
            .and_then(|r| cow::by_cow(&r.vg, source))
        {
            return self.restore_cow_locked(vg, spec, source, &snap, encrypted);
        }
        if spec.layout != Layout::Thin {
            return Err(EngineError::InvalidArgument {
                what: "layout",
                value: spec.layout.to_string(),
                why: format!(
                    "a volume made from {source} is a thin volume of its pool (layout thin)"
                ),
            });
        }
        let read = self.meta.read(vg)?;
        if let Some(lv) = read.vg.lv(&spec.name) {
            let from = marks::made_from(&lv.tags);
            if from != Some(source) {
                return Err(EngineError::AlreadyExists {
                    what: "logical volume",
                    name: format!("{vg}/{}", spec.name),
                    why: match from {
                        Some(f) => format!("made from {f} (asked for one made from {source})"),
                        None => format!("not made from {source}"),
                    },
                });
            }
            let mut spec = spec.clone();
            if spec.size == Bytes(0) {
                // The source's size, which it had when this volume was made from it.
                spec.size = read.vg.extent_size.span(lv.extents()).to_bytes();
            }
            self.finish_pending(&read)?;
            return self.existing(&self.meta.read(vg)?, &spec, encrypted);
        }
        let src = self.thin_source(&read, source, true)?;
        let marks_of_source = marks::content_marks(&src.tags);
        if marks::is_encrypted(&marks_of_source) != encrypted {
            return Err(EngineError::InvalidArgument {
                what: "encrypted",
                value: encrypted.to_string(),
                why: format!(
                    "{source} is {}encrypted, and a volume made from it holds the same \
                     blocks",
                    if encrypted { "not " } else { "" }
                ),
            });
        }
        let have = read.vg.extent_size.span(src.extents()).to_bytes();
        let want = match spec.size {
            Bytes(0) => have,
            size => Layout::Thin.rounded_size(size, read.vg.extent_size),
        };
        if want < have {
            return Err(EngineError::SmallerThanSource {
                lv: format!("{vg}/{}", spec.name),
                size: spec.size,
                from: source.into(),
                source_size: have,
            });
        }
        let mut tags = spec.tags.clone();
        tags.extend(marks_of_source);
        tags.push(format!("{}{source}", marks::FROM_PREFIX));
        let edit = Edit::CreateThinSnapshot {
            name: spec.name.clone(),
            origin: source.into(),
            read_only: false,
            activation_skip: false,
            size: Some(want),
            tags,
        };
        let read = self.commit_thin_locked(vg, &edit, "clone", |_| {
            (
                want,
                format!("a volume of {} bytes made from {source}", want.0),
            )
        })?;
        tracing::info!(
            vg,
            lv = spec.name,
            source,
            size = want.0,
            "created volume from a source"
        );
        Ok(Created {
            value: self.info(&read, &spec.name)?,
            created: true,
        })
    }
}

impl<M: Metadata> VolumeEngine<M> {
    /// A COW snapshot of plain volume `source` (see `docs/snapshots.md`):
    /// 1. the store's header chunk, on extents still free, zeroed where the edit will
    ///    put it (dm-snapshot takes a zeroed header for a new store; an old one would
    ///    bring another snapshot's exceptions along);
    /// 2. committed marked [`marks::COW_PENDING`] (crash point `cow-committed`);
    /// 3. if the origin is active, the snapshot activated with it (the origin suspended
    ///    meanwhile: the snapshot holds what was written before), `cow-activated`;
    /// 4. the mark dropped (`cow-recorded`), then answered.
    ///
    /// A crash before 4 leaves it marked: the retry makes it again.
    fn create_cow_locked(
        &self,
        read: &VgRead,
        name: &str,
        source: &str,
        cow_size: Bytes,
        mut tags: Vec<String>,
    ) -> Result<Created<SnapshotInfo>> {
        let vg = read.vg.name.as_str();
        tags.push(marks::COW_PENDING.into());
        let edit = Edit::CreateCowSnapshot {
            name: name.into(),
            origin: source.into(),
            cow_size,
            chunk_size: cow::DEFAULT_CHUNK_SIZE,
            tags,
        };
        let planned =
            crate::lvm::edit::apply(&read.vg, &edit, &crate::lvm::edit::Origin::now("lvmd"))
                .map_err(|e| self.no_space(vg, e))?;
        let header = |vg_model: &crate::model::VolumeGroup| {
            cow::header_spans(vg_model, name).map_err(EngineError::from)
        };
        let zeroed = header(&planned.vg)?;
        let planned_read = VgRead {
            vg: std::sync::Arc::new(planned.vg.clone()),
            ..read.clone()
        };
        let ranges = super::wipe::header_ranges(&planned_read, name, &zeroed)?;
        self.zero_ranges(vg, name, "a new COW store's header", &ranges, None)?;
        self.meta
            .edit(vg, &edit)
            .map_err(|e| self.no_space(vg, e))?;
        crash::point("cow-committed");
        let after = self.meta.read(vg)?;
        let landed = header(&after.vg)?;
        if landed != zeroed {
            // Another writer changed the VG between the read and the commit: the store
            // landed elsewhere; it is not active yet, so zeroed now.
            let ranges = super::wipe::header_ranges(&after, name, &landed)?;
            self.zero_ranges(vg, name, "a new COW store's header", &ranges, None)?;
        }
        if self
            .activation
            .active_volumes(&after)?
            .iter()
            .any(|a| a.lv == source)
        {
            self.activation.activate(&after, name)?;
            crash::point("cow-activated");
        }
        self.meta.edit(
            vg,
            &Edit::lv_tags(name, &[], &[marks::COW_PENDING.to_owned()]),
        )?;
        crash::point("cow-recorded");
        let read = self.meta.read(vg)?;
        tracing::info!(
            vg,
            snapshot = name,
            source,
            cow_size = cow_size.0,
            "created COW snapshot"
        );
        Ok(Created {
            value: read_snapshot(&read, vg, name)?,
            created: true,
        })
    }

    /// A volume restored from COW snapshot `source` by copying its bytes (see
    /// `docs/snapshots.md`): committed marked [`marks::COPYING`] (`restore-committed`),
    /// the snapshot (with its origin) and the volume activated, every byte of the
    /// snapshot copied and flushed (`restore-copied`), the mark dropped
    /// (`restore-recorded`). Until then it is never handed out; a retry copies again.
    fn restore_cow_locked(
        &self,
        vg: &str,
        spec: &LvSpec,
        source: &str,
        snap: &cow::CowInfo,
        encrypted: bool,
    ) -> Result<Created<LvInfo>> {
        if spec.layout == Layout::Thin {
            return Err(EngineError::InvalidArgument {
                what: "layout",
                value: spec.layout.to_string(),
                why: format!(
                    "{source} is a COW snapshot of a thick volume; a volume restored from \
                     it is linear or striped"
                ),
            });
        }
        let read = self.meta.read(vg)?;
        let store = read
            .vg
            .lv(source)
            .filter(|l| marks::snapshot_of(&l.tags).is_some())
            .ok_or_else(|| not_found("snapshot", vg, source))?;
        let marks_of_source = marks::content_marks(&store.tags);
        if marks::is_encrypted(&marks_of_source) != encrypted {
            return Err(EngineError::InvalidArgument {
                what: "encrypted",
                value: encrypted.to_string(),
                why: format!(
                    "{source} is {}encrypted, and a volume restored from it holds its bytes",
                    if encrypted { "not " } else { "" }
                ),
            });
        }
        let origin = read
            .vg
            .lv(&snap.segment_lv)
            .ok_or_else(|| not_found("snapshot", vg, source))?;
        let have = read.vg.extent_size.span(origin.extents()).to_bytes();
        let mut spec = spec.clone();
        if spec.size == Bytes(0) {
            spec.size = have;
        }
        if spec.layout.rounded_size(spec.size, read.vg.extent_size) < have {
            return Err(EngineError::SmallerThanSource {
                lv: format!("{vg}/{}", spec.name),
                size: spec.size,
                from: source.into(),
                source_size: have,
            });
        }
        match read.vg.lv(&spec.name) {
            Some(lv) if marks::made_from(&lv.tags) != Some(source) => {
                return Err(EngineError::AlreadyExists {
                    what: "logical volume",
                    name: format!("{vg}/{}", spec.name),
                    why: match marks::made_from(&lv.tags) {
                        Some(f) => format!("made from {f} (asked for one made from {source})"),
                        None => format!("not made from {source}"),
                    },
                });
            }
            Some(lv) if !lv.tags.iter().any(|t| t == marks::COPYING) => {
                return self.existing(&read, &spec, encrypted);
            }
            Some(_) => {
                tracing::info!(
                    vg,
                    lv = spec.name,
                    source,
                    "restore cut short: copying again"
                );
            }
            None => {
                let mut new = spec.clone();
                new.tags.extend(marks_of_source);
                new.tags.push(format!("{}{source}", marks::FROM_PREFIX));
                new.tags.push(marks::COPYING.into());
                self.meta
                    .edit(vg, &Edit::CreateLv(new))
                    .map_err(|e| self.no_space(vg, e))?;
                crash::point("restore-committed");
            }
        }
        let read = self.meta.read(vg)?;
        let origin_active = self
            .activation
            .active_volumes(&read)?
            .iter()
            .any(|a| a.lv == snap.origin);
        let from = self.activation.activate(&read, source)?;
        let to = self.activation.activate(&read, &spec.name)?;
        let copied = self
            .zeroer
            .copy(&from.device, &to.device, have)
            .map_err(|e| EngineError::Copy {
                from: from.device.clone(),
                to: to.device.clone(),
                source: e,
            });
        // Back as they were: the new volume inactive as any new one, the snapshot's
        // group only if this restore brought it up.
        let down = self.deactivate_volume(&read, &spec.name);
        if !origin_active {
            if let Err(e) = self.activation.deactivate(&read, &snap.origin) {
                tracing::warn!(vg, origin = snap.origin, "after a restore: {e}");
            }
        }
        copied?;
        down?;
        crash::point("restore-copied");
        self.meta.edit(
            vg,
            &Edit::lv_tags(&spec.name, &[], &[marks::COPYING.to_owned()]),
        )?;
        crash::point("restore-recorded");
        tracing::info!(
            vg,
            lv = spec.name,
            source,
            bytes = have.0,
            "restored volume from a COW snapshot"
        );
        Ok(Created {
            value: self.info(&self.meta.read(vg)?, &spec.name)?,
            created: true,
        })
    }

    /// Removes COW snapshot `name` of `origin`: committed gone (crash point
    /// `cow-removed`), then its devices released, the origin back on its own table if
    /// it has no other (a crash between: the retry, or any later deletion, releases).
    fn remove_cow_locked(&self, vg: &str, name: &str, origin: &str) -> Result<()> {
        self.meta
            .edit(vg, &Edit::RemoveCowSnapshot { lv: name.into() })?;
        crash::point("cow-removed");
        let read = self.meta.read(vg)?;
        self.activation.release_cow(&read, Some(origin))?;
        Ok(())
    }
}

/// Names checked before any lock: the snapshot's and its source's.
pub(crate) fn check_names(name: &str, source: &str) -> Result<()> {
    for n in [name, source] {
        validate_lv_name(n).map_err(LvmError::from)?;
    }
    if name.starts_with(marks::WIPE_NAME_PREFIX) {
        return Err(EngineError::InvalidArgument {
            what: "snapshot name",
            value: name.into(),
            why: format!("names starting with {} are lvmd's", marks::WIPE_NAME_PREFIX),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::Engine;
    use crate::daemon::thin::tests::{engine, in_step, pool_config, thin};

    const MIB: u64 = 1 << 20;

    fn code(e: &EngineError) -> tonic::Code {
        crate::api::status::engine_code(e)
    }

    #[test]
    fn snapshots_restores_and_clones_keep_the_pool_in_step_and_outlive_their_sources() {
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        e.create_logical_volume("vg", &thin("a", 8)).unwrap();
        e.create_logical_volume("vg", &thin("b", 8)).unwrap();
        let s = e.create_snapshot("vg", "s", "a", None).unwrap();
        assert!(s.created);
        assert_eq!(
            (s.value.source.as_str(), s.value.size, s.value.read_only),
            ("a", Bytes(8 * MIB), true)
        );
        assert_eq!(in_step(&e, &act), (vec![1, 2, 3], 3));
        // Not a volume: listed as a snapshot only.
        let names: Vec<String> = e
            .logical_volumes("vg")
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, vec!["pool", "a", "b"]);
        assert_eq!(e.snapshots("vg").unwrap(), vec![s.value.clone()]);
        // Idempotent; a name taken otherwise is ALREADY_EXISTS; a missing source NOT_FOUND.
        let again = e.create_snapshot("vg", "s", "a", None).unwrap();
        assert_eq!((again.created, again.value), (false, s.value.clone()));
        for (name, src, says) in [("s", "b", "snapshot of a"), ("b", "a", "as a volume")] {
            let err = e.create_snapshot("vg", name, src, None).unwrap_err();
            assert_eq!(code(&err), tonic::Code::AlreadyExists, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        let err = e.create_snapshot("vg", "s2", "nope", None).unwrap_err();
        assert_eq!(code(&err), tonic::Code::NotFound, "{err}");
        assert!(err.to_string().contains("vg/nope"), "{err}");
        let err = e.create_snapshot("vg", "s2", "s", None).unwrap_err();
        assert_eq!(
            code(&err),
            tonic::Code::NotFound,
            "a snapshot of a snapshot: {err}"
        );
        // The volume calls do not take it.
        let err = e.remove_logical_volume("vg", "s").unwrap_err();
        assert_eq!(code(&err), tonic::Code::FailedPrecondition, "{err}");
        let err = e.create_logical_volume("vg", &thin("s", 8)).unwrap_err();
        assert_eq!(code(&err), tonic::Code::AlreadyExists, "{err}");

        // Restored, grown; idempotent; another source, a smaller size, a thick layout.
        let r = e
            .create_volume_from("vg", &thin("r", 16), "s", false)
            .unwrap();
        assert!(r.created);
        assert_eq!(
            (r.value.size, r.value.layout),
            (Bytes(16 * MIB), Layout::Thin)
        );
        assert!(r.value.tags.contains(&"lvmd.from=s".to_owned()));
        let fresh = |tags: &[String]| marks::is_fresh(tags);
        assert_eq!(
            fresh(&r.value.tags),
            fresh(&e.logical_volume("vg", "a").unwrap().tags)
        );
        assert!(
            !e.create_volume_from("vg", &thin("r", 16), "s", false)
                .unwrap()
                .created
        );
        let err = e
            .create_volume_from("vg", &thin("r", 16), "b", false)
            .unwrap_err();
        assert_eq!(code(&err), tonic::Code::AlreadyExists, "{err}");
        let err = e.create_logical_volume("vg", &thin("r", 16)).unwrap_err();
        assert_eq!(code(&err), tonic::Code::AlreadyExists, "{err}");
        let err = e
            .create_volume_from("vg", &thin("r2", 4), "s", false)
            .unwrap_err();
        assert_eq!(code(&err), tonic::Code::OutOfRange, "{err}");
        assert!(err.to_string().contains(&(8 * MIB).to_string()), "{err}");
        let mut thick = thin("r2", 8);
        thick.layout = Layout::Linear;
        let err = e.create_volume_from("vg", &thick, "s", false).unwrap_err();
        assert_eq!(code(&err), tonic::Code::InvalidArgument, "{err}");
        let err = e
            .create_volume_from("vg", &thin("r2", 8), "s", true)
            .unwrap_err();
        assert_eq!(code(&err), tonic::Code::InvalidArgument, "{err}");
        // A clone of a volume, at its size (0: the source's).
        let c = e
            .create_volume_from("vg", &thin("c", 0), "b", false)
            .unwrap();
        assert_eq!(c.value.size, Bytes(8 * MIB));
        assert!(
            !e.create_volume_from("vg", &thin("c", 0), "b", false)
                .unwrap()
                .created
        );
        assert!(c.value.tags.contains(&"lvmd.from=b".to_owned()));
        assert_eq!(in_step(&e, &act), (vec![1, 2, 3, 4, 5], 5));

        // The source goes, its snapshot stays (its `origin` dropped); then the snapshot
        // goes and the volume restored from it stays.
        assert!(e.remove_logical_volume("vg", "a").unwrap());
        assert_eq!(e.snapshots("vg").unwrap()[0].source, "a");
        let err = e.delete_snapshot("vg", "r").unwrap_err();
        assert_eq!(code(&err), tonic::Code::FailedPrecondition, "{err}");
        assert!(e.delete_snapshot("vg", "s").unwrap());
        assert!(!e.delete_snapshot("vg", "s").unwrap());
        assert!(e.snapshots("vg").unwrap().is_empty());
        assert_eq!(e.logical_volume("vg", "r").unwrap().size, Bytes(16 * MIB));
        assert_eq!(in_step(&e, &act), (vec![2, 4, 5], 7));
    }

    #[test]
    fn a_snapshot_or_restore_killed_after_its_commit_is_sent_by_the_retry() {
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        e.create_logical_volume("vg", &thin("a", 8)).unwrap();
        // As a kill -9 at `snap-committed`: the record is there, nothing sent.
        e.metadata()
            .edit(
                "vg",
                &Edit::CreateThinSnapshot {
                    name: "s".into(),
                    origin: "a".into(),
                    read_only: true,
                    activation_skip: true,
                    size: None,
                    tags: vec![format!("{}a", marks::SNAPSHOT_OF_PREFIX)],
                },
            )
            .unwrap();
        assert_eq!(act.thin_pool("vg", "pool").transaction_id, 1);
        let again = e.create_snapshot("vg", "s", "a", None).unwrap();
        assert!(!again.created);
        assert_eq!(in_step(&e, &act), (vec![1, 2], 2));
        // A restore killed at `clone-committed`: the retry sends it and answers it made.
        e.metadata()
            .edit(
                "vg",
                &Edit::CreateThinSnapshot {
                    name: "r".into(),
                    origin: "s".into(),
                    read_only: false,
                    activation_skip: false,
                    size: Some(Bytes(8 * MIB)),
                    tags: vec![format!("{}s", marks::FROM_PREFIX)],
                },
            )
            .unwrap();
        let r = e
            .create_volume_from("vg", &thin("r", 8), "s", false)
            .unwrap();
        assert!(!r.created);
        assert_eq!(in_step(&e, &act), (vec![1, 2, 3], 3));
        // A deletion killed after its commit: the retry (it is gone) sends the delete.
        e.metadata()
            .edit("vg", &Edit::RemoveThin { lv: "s".into() })
            .unwrap();
        assert!(!e.delete_snapshot("vg", "s").unwrap());
        assert_eq!(in_step(&e, &act), (vec![1, 3], 4));
    }

    /// COW snapshots of a linear volume through the engine (simulated store and
    /// activation): the store's header zeroed where it lands, before the commit; the
    /// snapshot as large as its source, its store 20 % by default or as asked; listed
    /// as a snapshot, never as a volume (nor lvm2's `snapshotN`); idempotent; a create
    /// cut short with the snapshot not yet known active is made again; the source
    /// refused removal while it has one; deletion idempotent.
    #[test]
    fn cow_snapshots_of_a_linear_volume_through_the_engine() {
        use crate::daemon::wipe::SimZeroer;
        let devs = vec![(std::path::PathBuf::from("/dev/sim0"), Bytes(256 * MIB))];
        let (e, act, _) = crate::daemon::sim::SimEngine::with_sims(&devs, vec![]);
        let zeroer = std::sync::Arc::new(SimZeroer::default());
        let e = e.with_zeroer(zeroer.clone());
        e.create_volume_group("vg", &[std::path::PathBuf::from("/dev/sim0")])
            .unwrap();
        let lin = LvSpec {
            name: "a".into(),
            size: Bytes(40 * MIB),
            layout: Layout::Linear,
            tags: vec![],
        };
        e.create_logical_volume("vg", &lin).unwrap();
        e.activate("vg", "a").unwrap();
        zeroer.clear();
        let s = e.create_snapshot("vg", "s", "a", None).unwrap();
        assert!(s.created);
        // 20 % of 40 MiB, rounded up to 4 MiB extents: 8 MiB.
        assert_eq!(
            (s.value.size, s.value.cow_size, s.value.source.as_str()),
            (Bytes(40 * MIB), Some(Bytes(8 * MIB)), "a")
        );
        let read = e.metadata().read("vg").unwrap();
        let header = cow::header_spans(&read.vg, "s").unwrap();
        let pe = header[0].offset.to_bytes();
        assert!(
            zeroer
                .zeroed()
                .iter()
                .any(|(_, at, len)| *at == pe && len.0 >= 4096),
            "{:?} lacks {pe:?}",
            zeroer.zeroed()
        );
        // Active with its origin, the pending mark gone.
        assert!(act.active_in("vg").iter().any(|a| a.lv == "s"));
        let store = read.vg.lv("s").unwrap();
        assert!(!store.tags.iter().any(|t| t == marks::COW_PENDING));
        let names: Vec<String> = e
            .logical_volumes("vg")
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, vec!["a"]);
        assert_eq!(e.snapshots("vg").unwrap(), vec![s.value.clone()]);
        let again = e.create_snapshot("vg", "s", "a", None).unwrap();
        assert_eq!((again.created, again.value), (false, s.value.clone()));
        // Asked sizes; bad ones named.
        let s2 = e
            .create_snapshot("vg", "s2", "a", Some(CowSize::Bytes(Bytes(MIB))))
            .unwrap();
        assert_eq!(s2.value.cow_size, Some(Bytes(4 * MIB)));
        for bad in [
            CowSize::Percent(0),
            CowSize::Percent(101),
            CowSize::Bytes(Bytes(0)),
        ] {
            let err = e.create_snapshot("vg", "s3", "a", Some(bad)).unwrap_err();
            assert_eq!(code(&err), tonic::Code::InvalidArgument, "{err}");
        }
        // The origin stays while it has snapshots; so do its size.
        let err = e.remove_logical_volume("vg", "a").unwrap_err();
        assert!(err.to_string().contains("COW snapshots"), "{err}");
        // Cut short after its commit (`cow-committed`): still marked pending; the
        // retry makes it again.
        e.metadata()
            .edit(
                "vg",
                &Edit::CreateCowSnapshot {
                    name: "p".into(),
                    origin: "a".into(),
                    cow_size: Bytes(4 * MIB),
                    chunk_size: cow::DEFAULT_CHUNK_SIZE,
                    tags: vec![
                        format!("{}a", marks::SNAPSHOT_OF_PREFIX),
                        marks::COW_PENDING.into(),
                    ],
                },
            )
            .unwrap();
        let old = e.metadata().read("vg").unwrap().vg.lv("p").unwrap().id;
        let p = e.create_snapshot("vg", "p", "a", None).unwrap();
        assert!(p.created);
        assert_ne!(p.value.uuid, old.to_string());
        // Restored by copying the snapshot's bytes (its origin's size) into a new linear
        // volume; a thin layout or a smaller size refused.
        let linear = |name: &str, mib: u64| LvSpec {
            name: name.into(),
            size: Bytes(mib * MIB),
            layout: Layout::Linear,
            tags: vec![],
        };
        let err = e
            .create_volume_from("vg", &crate::daemon::thin::tests::thin("r", 40), "s", false)
            .unwrap_err();
        assert_eq!(code(&err), tonic::Code::InvalidArgument, "{err}");
        let err = e
            .create_volume_from("vg", &linear("r", 20), "s", false)
            .unwrap_err();
        assert_eq!(code(&err), tonic::Code::OutOfRange, "{err}");
        let r = e
            .create_volume_from("vg", &linear("r", 0), "s", false)
            .unwrap();
        assert!(r.created);
        assert_eq!(r.value.size, Bytes(40 * MIB));
        assert!(r.value.tags.contains(&"lvmd.from=s".to_owned()));
        assert!(!r.value.tags.iter().any(|t| t == marks::COPYING));
        let copies = zeroer.copied();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(copies[0].2, Bytes(40 * MIB));
        assert!(
            copies[0].0.ends_with("vg-s") && copies[0].1.ends_with("vg-r"),
            "{copies:?}"
        );
        assert!(!act.active_in("vg").iter().any(|a| a.lv == "r"));
        let again = e
            .create_volume_from("vg", &linear("r", 0), "s", false)
            .unwrap();
        assert!(!again.created);
        assert_eq!(zeroer.copied().len(), 1);
        // Cut short after its commit (`restore-committed`): never handed out, the
        // retry copies again.
        let mut cut = linear("q", 40);
        cut.tags = vec![format!("{}s", marks::FROM_PREFIX), marks::COPYING.into()];
        e.metadata().edit("vg", &Edit::CreateLv(cut)).unwrap();
        let err = e.activate("vg", "q").unwrap_err();
        assert_eq!(code(&err), tonic::Code::FailedPrecondition, "{err}");
        let q = e
            .create_volume_from("vg", &linear("q", 40), "s", false)
            .unwrap();
        assert!(!q.value.tags.iter().any(|t| t == marks::COPYING));
        assert_eq!(zeroer.copied().len(), 2);
        e.activate("vg", "q").unwrap();
        assert!(e.remove_logical_volume("vg", "q").unwrap());
        assert!(e.remove_logical_volume("vg", "r").unwrap());
        // Deleted: the store and its snapshotN; again: nothing there.
        for name in ["s", "s2", "p"] {
            assert!(e.delete_snapshot("vg", name).unwrap(), "{name}");
            assert!(!e.delete_snapshot("vg", name).unwrap(), "{name}");
        }
        let read = e.metadata().read("vg").unwrap();
        assert!(cow::all(&read.vg).is_empty());
        assert_eq!(read.vg.lvs.len(), 1);
        assert!(!act.active_in("vg").iter().any(|a| a.lv != "a"));
        assert!(e.remove_logical_volume("vg", "a").is_ok());
    }
}
