//! Group snapshots: read-only thin snapshots of several thin volumes of a device
//! class's pool taken at one instant. One `Edit::CreateThinSnapshotGroup` commit
//! records every `create` in one pool transaction, and the pool's catch-up suspends
//! every active source (flushed, in their thin ids' order) before the first
//! `create_snap` and resumes them all after the last (also on error), so the
//! snapshots are one cut of what was written: a write that reached one source before
//! a write to another is in the first's snapshot whenever the second's is in its own.
//! lvm2 has no command for this (each `lvcreate -s` is its own transaction).
//!
//! The order is a thin create's (`docs/thin.md`; [`VolumeEngine::commit_thin_locked`]),
//! crash points `group-committed`, `group-sent`, `group-recorded`; a kill -9 anywhere is
//! finished by the retry (the group found made, its record sent first), the next start,
//! or the next thin change of the pool.
//!
//! A group is its snapshots: each is marked `lvmd.group=<name>` ([`marks::GROUP_PREFIX`])
//! besides `lvmd.snapshot-of=<source>`, so it is a snapshot like any other (listed,
//! restored from, deleted alone), and lvm2 keeps the tags.

use super::engine::{Created, EngineError, GroupMember, Result, SnapshotGroupInfo};
use super::marks;
use super::snapshots::{not_found, snapshot_info};
use super::volumes::{Metadata, VgRead, VolumeEngine};
use crate::lvm::{Edit, GroupSnapshot, LvmError};
use crate::model::name::validate_lv_name;
use crate::units::Bytes;
use std::collections::BTreeSet;

/// The group as `read` has it; `None` when no snapshot carries its mark.
fn group_info(read: &VgRead, group: &str) -> Option<SnapshotGroupInfo> {
    let mut snapshots: Vec<_> = read
        .vg
        .lvs
        .iter()
        .filter(|lv| marks::group_of(&lv.tags) == Some(group))
        .filter_map(|lv| snapshot_info(read, lv))
        .collect();
    if snapshots.is_empty() {
        return None;
    }
    snapshots.sort_by(|a, b| a.name.cmp(&b.name));
    Some(SnapshotGroupInfo {
        vg: read.vg.name.clone(),
        name: group.into(),
        snapshots,
    })
}

/// The members of a group found, as (snapshot, source) pairs.
fn members_of(info: &SnapshotGroupInfo) -> BTreeSet<(String, String)> {
    info.snapshots
        .iter()
        .map(|s| (s.name.clone(), s.source.clone()))
        .collect()
}

fn describe(members: &BTreeSet<(String, String)>) -> String {
    let each: Vec<String> = members.iter().map(|(n, s)| format!("{n} of {s}")).collect();
    each.join(", ")
}

/// The checks that need no lock: names valid, at least one member, no snapshot name
/// and no source twice (a source snapshotted twice in one instant is the same blocks
/// twice: a mistake, named).
pub(crate) fn check_request(group: &str, members: &[GroupMember]) -> Result<()> {
    validate_lv_name(group).map_err(LvmError::from)?;
    if members.is_empty() {
        return Err(EngineError::InvalidArgument {
            what: "snapshot group",
            value: group.into(),
            why: "names no volume to snapshot".into(),
        });
    }
    let (mut names, mut sources) = (BTreeSet::new(), BTreeSet::new());
    for m in members {
        super::snapshots::check_names(&m.name, &m.source)?;
        if !names.insert(&m.name) {
            return Err(EngineError::InvalidArgument {
                what: "snapshot name",
                value: m.name.clone(),
                why: format!("appears twice in snapshot group {group}"),
            });
        }
        if !sources.insert(&m.source) {
            return Err(EngineError::InvalidArgument {
                what: "source volume",
                value: m.source.clone(),
                why: format!("appears twice in snapshot group {group}"),
            });
        }
    }
    Ok(())
}

impl<M: Metadata> VolumeEngine<M> {
    /// With the VG's write lock held; the request checked ([`check_request`]).
    pub(crate) fn create_snapshot_group_locked(
        &self,
        vg: &str,
        group: &str,
        members: &[GroupMember],
    ) -> Result<Created<SnapshotGroupInfo>> {
        let read = self.meta.read(vg)?;
        let asked: BTreeSet<(String, String)> = members
            .iter()
            .map(|m| (m.name.clone(), m.source.clone()))
            .collect();
        if let Some(found) = group_info(&read, group) {
            let have = members_of(&found);
            if have != asked {
                return Err(EngineError::AlreadyExists {
                    what: "snapshot group",
                    name: format!("{vg}/{group}"),
                    why: format!(
                        "with snapshots {} (asked for {})",
                        describe(&have),
                        describe(&asked)
                    ),
                });
            }
            // A create killed after its commit: its messages go first.
            self.finish_pending(&read)?;
            let read = self.meta.read(vg)?;
            return Ok(Created {
                value: group_info(&read, group)
                    .ok_or_else(|| not_found("snapshot group", vg, group))?,
                created: false,
            });
        }
        let mut snapshots = Vec::with_capacity(members.len());
        let mut size = Bytes(0);
        for m in members {
            if let Some(lv) = read.vg.lv(&m.name) {
                return Err(EngineError::AlreadyExists {
                    what: "snapshot",
                    name: format!("{vg}/{}", m.name),
                    why: match marks::snapshot_of(&lv.tags) {
                        Some(s) => format!(
                            "as a snapshot of {s}{} (asked for one of {} in group {group})",
                            marks::group_of(&lv.tags)
                                .map(|g| format!(" in group {g}"))
                                .unwrap_or_default(),
                            m.source
                        ),
                        None => format!("as a volume (asked for a snapshot of {})", m.source),
                    },
                });
            }
            let src = self.thin_source(&read, &m.source, false)?;
            let mut tags = vec![
                format!("{}{}", marks::SNAPSHOT_OF_PREFIX, m.source),
                format!("{}{group}", marks::GROUP_PREFIX),
            ];
            tags.extend(marks::content_marks(&src.tags));
            size = Bytes(size.0 + read.vg.extent_size.span(src.extents()).to_bytes().0);
            snapshots.push(GroupSnapshot {
                name: m.name.clone(),
                origin: m.source.clone(),
                tags,
            });
        }
        let edit = Edit::CreateThinSnapshotGroup { snapshots };
        let read = self.commit_thin_locked(vg, &edit, "group", |_| {
            (
                size,
                format!(
                    "snapshot group {group} ({} snapshots, {} bytes)",
                    members.len(),
                    size.0
                ),
            )
        })?;
        tracing::info!(
            vg,
            group,
            snapshots = describe(&asked),
            "created thin snapshot group"
        );
        Ok(Created {
            value: group_info(&read, group)
                .ok_or_else(|| not_found("snapshot group", vg, group))?,
            created: true,
        })
    }

    /// With the VG's write lock held. Each snapshot is a thin removal of its own (a
    /// kill -9 between two leaves the rest marked: the retry deletes them).
    pub(crate) fn delete_snapshot_group_locked(&self, vg: &str, group: &str) -> Result<bool> {
        let read = self.meta.read(vg)?;
        let Some(found) = group_info(&read, group) else {
            // A deletion killed after its last commit: its pool's message goes now.
            self.finish_pending(&read)?;
            return Ok(false);
        };
        for s in &found.snapshots {
            self.delete_snapshot_locked(vg, &s.name)?;
        }
        tracing::info!(vg, group, "deleted thin snapshot group");
        Ok(true)
    }

    pub(crate) fn snapshot_group_of(
        &self,
        read: &VgRead,
        group: &str,
    ) -> Result<SnapshotGroupInfo> {
        group_info(read, group).ok_or_else(|| not_found("snapshot group", &read.vg.name, group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::activation::Activation;
    use crate::daemon::crash;
    use crate::daemon::engine::Engine;
    use crate::daemon::thin::tests::{engine, in_step, pool_config, thin};
    use crate::lvm::thin::pending_messages;

    fn code(e: &EngineError) -> tonic::Code {
        crate::api::status::engine_code(e)
    }

    fn member(name: &str, source: &str) -> GroupMember {
        GroupMember {
            name: name.into(),
            source: source.into(),
        }
    }

    #[test]
    fn a_group_is_one_pool_transaction_idempotent_by_name() {
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        for v in ["a", "b", "c"] {
            e.create_logical_volume("vg", &thin(v, 8)).unwrap();
        }
        assert_eq!(in_step(&e, &act), (vec![1, 2, 3], 3));
        let members = [member("ga", "a"), member("gb", "b")];
        let g = e.create_snapshot_group("vg", "g1", &members).unwrap();
        assert!(g.created);
        // One transaction for both: the pool's id moved by one, both ids made.
        assert_eq!(in_step(&e, &act), (vec![1, 2, 3, 4, 5], 4));
        let names: Vec<(&str, &str, bool)> = g
            .value
            .snapshots
            .iter()
            .map(|s| (s.name.as_str(), s.source.as_str(), s.read_only))
            .collect();
        assert_eq!(names, vec![("ga", "a", true), ("gb", "b", true)]);
        assert!(g
            .value
            .snapshots
            .iter()
            .all(|s| s.group.as_deref() == Some("g1")));
        // Snapshots like any other: listed, restorable.
        assert_eq!(e.snapshots("vg").unwrap().len(), 2);
        e.create_volume_from("vg", &thin("r", 8), "gb", false)
            .unwrap();
        let r = e.logical_volume("vg", "r").unwrap();
        assert!(!r.tags.iter().any(|t| t.starts_with(marks::GROUP_PREFIX)));
        assert_eq!(e.snapshot_group("vg", "g1").unwrap(), g.value);

        // Idempotent (in any order); other members, or a name taken, ALREADY_EXISTS.
        let again = e
            .create_snapshot_group("vg", "g1", &[member("gb", "b"), member("ga", "a")])
            .unwrap();
        assert_eq!((again.created, &again.value), (false, &g.value));
        let err = e
            .create_snapshot_group("vg", "g1", &[member("ga", "a"), member("gc", "c")])
            .unwrap_err();
        assert_eq!(code(&err), tonic::Code::AlreadyExists, "{err}");
        assert!(err.to_string().contains("gb of b"), "{err}");
        let err = e
            .create_snapshot_group("vg", "g2", &[member("gc", "c"), member("ga", "a")])
            .unwrap_err();
        assert_eq!(code(&err), tonic::Code::AlreadyExists, "{err}");
        assert!(err.to_string().contains("in group g1"), "{err}");
        // Refusals change nothing: a missing source, a snapshot as source, the same
        // source twice, a thick volume; no group g2 and the pool as it was.
        let before = in_step(&e, &act);
        for (members, want, says) in [
            (
                vec![member("x1", "c"), member("x2", "nope")],
                tonic::Code::NotFound,
                "vg/nope",
            ),
            (
                vec![member("x1", "c"), member("x2", "ga")],
                tonic::Code::NotFound,
                "vg/ga",
            ),
            (
                vec![member("x1", "c"), member("x2", "c")],
                tonic::Code::InvalidArgument,
                "c",
            ),
            (vec![], tonic::Code::InvalidArgument, "g2"),
        ] {
            let err = e.create_snapshot_group("vg", "g2", &members).unwrap_err();
            assert_eq!(code(&err), want, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        assert_eq!(in_step(&e, &act), before);
        let err = e.snapshot_group("vg", "g2").unwrap_err();
        assert_eq!(code(&err), tonic::Code::NotFound, "{err}");

        // Deleted whole; again: nothing there. The restored volume keeps its blocks.
        assert!(e.delete_snapshot_group("vg", "g1").unwrap());
        assert!(!e.delete_snapshot_group("vg", "g1").unwrap());
        assert!(e.snapshots("vg").unwrap().is_empty());
        assert_eq!(in_step(&e, &act), (vec![1, 2, 3, 6], 7));
        assert!(e.logical_volume("vg", "r").is_ok());
    }

    #[test]
    fn a_thick_source_is_refused_with_nothing_made() {
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        e.create_logical_volume("vg", &thin("a", 8)).unwrap();
        let mut thick = thin("lin", 8);
        thick.layout = crate::model::Layout::Linear;
        e.create_logical_volume("vg", &thick).unwrap();
        let before = in_step(&e, &act);
        let err = e
            .create_snapshot_group("vg", "g", &[member("sa", "a"), member("sl", "lin")])
            .unwrap_err();
        assert_eq!(code(&err), tonic::Code::FailedPrecondition, "{err}");
        assert!(err.to_string().contains("vg/lin"), "{err}");
        assert_eq!(in_step(&e, &act), before);
        assert!(e.snapshots("vg").unwrap().is_empty());
    }

    #[test]
    fn a_group_killed_after_its_commit_or_its_messages_is_finished_by_the_retry() {
        let config = pool_config("");
        let (e, act) = engine(&config);
        e.prepare_thin_pool("vg", &config).unwrap();
        e.create_logical_volume("vg", &thin("a", 8)).unwrap();
        e.create_logical_volume("vg", &thin("b", 8)).unwrap();
        // As a kill -9 at `group-committed`: both creates recorded, nothing sent.
        let tags = |source: &str, group: &str| {
            vec![
                format!("{}{source}", marks::SNAPSHOT_OF_PREFIX),
                format!("{}{group}", marks::GROUP_PREFIX),
            ]
        };
        e.metadata()
            .edit(
                "vg",
                &Edit::CreateThinSnapshotGroup {
                    snapshots: vec![
                        GroupSnapshot {
                            name: "sa".into(),
                            origin: "a".into(),
                            tags: tags("a", "g"),
                        },
                        GroupSnapshot {
                            name: "sb".into(),
                            origin: "b".into(),
                            tags: tags("b", "g"),
                        },
                    ],
                },
            )
            .unwrap();
        let read = e.metadata().read("vg").unwrap();
        let seg = &read.vg.lv("pool").unwrap().segments[0];
        assert_eq!(pending_messages(seg).len(), 2);
        assert_eq!(act.thin_pool("vg", "pool").transaction_id, 2);
        let again = e
            .create_snapshot_group("vg", "g", &[member("sa", "a"), member("sb", "b")])
            .unwrap();
        assert!(!again.created);
        assert_eq!(in_step(&e, &act), (vec![1, 2, 3, 4], 3));
        // As a kill -9 at `group-sent`: the kernel has both, the record is still there;
        // the retry only drops it.
        let group2 = Edit::CreateThinSnapshotGroup {
            snapshots: ["a", "b"]
                .map(|s| GroupSnapshot {
                    name: format!("t{s}"),
                    origin: s.into(),
                    tags: tags(s, "g2"),
                })
                .to_vec(),
        };
        e.metadata().edit("vg", &group2).unwrap();
        let read = e.metadata().read("vg").unwrap();
        act.thin_pool_sync(&read, "pool").unwrap();
        assert_eq!(act.thin_pool("vg", "pool").transaction_id, 4);
        let again = e
            .create_snapshot_group("vg", "g2", &[member("ta", "a"), member("tb", "b")])
            .unwrap();
        assert!(!again.created);
        assert_eq!(in_step(&e, &act), (vec![1, 2, 3, 4, 5, 6], 4));
        // The crash points are named in crash.rs's list.
        let doc = include_str!("crash.rs");
        for p in ["group-committed", "group-sent", "group-recorded"] {
            assert!(doc.contains(&format!("`{p}`")), "{p} in {}", crash::ENV);
        }
    }
}
