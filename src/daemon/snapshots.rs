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

use super::engine::{Created, EngineError, LvInfo, LvSpec, Result, SnapshotInfo};
use super::marks;
use super::thin::pool_of_thin;
use super::volumes::{Metadata, VgRead, VolumeEngine};
use crate::lvm::{Edit, LvmError};
use crate::model::name::validate_lv_name;
use crate::model::{Layout, LogicalVolume};
use crate::units::Bytes;

pub(super) fn snapshot_info(read: &VgRead, lv: &LogicalVolume) -> Option<SnapshotInfo> {
    let source = marks::snapshot_of(&lv.tags)?;
    Some(SnapshotInfo {
        vg: read.vg.name.clone(),
        name: lv.name.clone(),
        uuid: lv.id.to_string(),
        source: source.into(),
        size: read.vg.extent_size.span(lv.extents()).to_bytes(),
        creation_time: lv.creation_time.unwrap_or(0),
        read_only: !lv.status.iter().any(|s| s == "WRITE"),
        group: marks::group_of(&lv.tags).map(Into::into),
    })
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
    ) -> Result<Created<SnapshotInfo>> {
        let read = self.meta.read(vg)?;
        if let Some(lv) = read.vg.lv(name) {
            return match marks::snapshot_of(&lv.tags) {
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
            // A deletion killed after its commit: its pool's message goes now.
            self.finish_pending(&read)?;
            return Ok(false);
        };
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
        let s = e.create_snapshot("vg", "s", "a").unwrap();
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
        let again = e.create_snapshot("vg", "s", "a").unwrap();
        assert_eq!((again.created, again.value), (false, s.value.clone()));
        for (name, src, says) in [("s", "b", "snapshot of a"), ("b", "a", "as a volume")] {
            let err = e.create_snapshot("vg", name, src).unwrap_err();
            assert_eq!(code(&err), tonic::Code::AlreadyExists, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        let err = e.create_snapshot("vg", "s2", "nope").unwrap_err();
        assert_eq!(code(&err), tonic::Code::NotFound, "{err}");
        assert!(err.to_string().contains("vg/nope"), "{err}");
        let err = e.create_snapshot("vg", "s2", "s").unwrap_err();
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
        let again = e.create_snapshot("vg", "s", "a").unwrap();
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
}
