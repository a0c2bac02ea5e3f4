//! CSI snapshots (CreateSnapshot, DeleteSnapshot, ListSnapshots) and the sources of
//! CreateVolume (`volume_content_source`: a snapshot, or a volume to clone), on lvmd's
//! thin snapshots (`docs/thin.md`). Thin device classes only: the daemon refuses
//! others, naming the class's lack of a pool.
//!
//! A snapshot id has the volume id's shape (`<node>#<device class>#<lv name>`,
//! [`VolumeId`]), so it names its node and class with no lookup; its LV name comes from
//! the CSI snapshot name as a volume's does ([`lv_name`]), so a retried CreateSnapshot
//! finds it.

use super::controller::{vref, ControllerService};
use super::pb::*;
use super::status::{from_lvmd, invalid};
use super::volume_id::{lv_name, VolumeId};
use crate::rpc::pb as lvmd;
use tonic::{Code, Status};

pub(super) fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// Where a CreateVolume's content comes from: the source LV of its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: VolumeId,
    pub size: u64,
    pub snapshot: bool,
    /// A copy-on-write snapshot of a thick volume: restored by copying into a thick
    /// volume (`docs/snapshots.md`), where the others make a thin volume of the pool.
    pub cow: bool,
}

impl ControllerService {
    pub(super) fn snapshot_out(&self, class: &str, s: &lvmd::Snapshot) -> Snapshot {
        let id = |lv: &str| VolumeId {
            node: self.0.config.node_id.clone(),
            class: class.into(),
            lv: lv.into(),
        };
        Snapshot {
            size_bytes: s.size_bytes as i64,
            snapshot_id: id(&s.name).to_string(),
            source_volume_id: id(&s.source_volume).to_string(),
            creation_time: Some(timestamp(s.creation_time)),
            // Cut when it exists: a thin snapshot needs no copying.
            ready_to_use: true,
            // Its group's id (`group_snapshots`); deletable alone all the same.
            group_snapshot_id: if s.group.is_empty() {
                String::new()
            } else {
                id(&s.group).to_string()
            },
        }
    }

    /// The snapshots lvmd lists in `class` (empty: every class).
    async fn lvmd_snapshots(&self, class: &str) -> Result<Vec<lvmd::Snapshot>, Status> {
        self.0
            .lv()
            .list_snapshots(lvmd::ListSnapshotsRequest {
                device_class: class.into(),
                volume_group: String::new(),
            })
            .await
            .map_err(|s| from_lvmd(s, "ListSnapshots"))
            .map(|r| r.into_inner().snapshots)
    }

    pub(super) fn on_this_node(&self, id: &VolumeId, what: &str) -> Result<(), Status> {
        if id.node != self.0.config.node_id {
            return Err(Status::failed_precondition(format!(
                "{what} {id} lives on node {}, this is {}",
                id.node, self.0.config.node_id
            )));
        }
        Ok(())
    }

    pub(super) async fn create_snapshot_rpc(
        &self,
        r: CreateSnapshotRequest,
    ) -> Result<CreateSnapshotResponse, Status> {
        if r.name.is_empty() {
            return Err(invalid("name missing"));
        }
        if r.source_volume_id.is_empty() {
            return Err(invalid("source_volume_id missing"));
        }
        let (cow_size_bytes, cow_size_percent) = cow_size_parameter(&r.parameters)?;
        let src = VolumeId::parse(&r.source_volume_id)
            .ok_or_else(|| Status::not_found(format!("no volume {:?}", r.source_volume_id)))?;
        self.on_this_node(&src, "volume")?;
        let snap = vref(&VolumeId {
            lv: lv_name(&r.name),
            ..src.clone()
        });
        let s = self
            .0
            .lv()
            .create_snapshot(lvmd::CreateSnapshotRequest {
                snapshot: Some(snap),
                source_volume: src.lv.clone(),
                cow_size_bytes,
                cow_size_percent,
            })
            .await
            .map_err(|s| from_lvmd(s, &format!("CreateSnapshot {} of {src}", r.name)))?
            .into_inner();
        tracing::info!(snapshot = %s.name, source = %src, name = %r.name, "snapshot created");
        Ok(CreateSnapshotResponse {
            snapshot: Some(self.snapshot_out(&src.class, &s)),
        })
    }

    pub(super) async fn delete_snapshot_rpc(
        &self,
        r: DeleteSnapshotRequest,
    ) -> Result<DeleteSnapshotResponse, Status> {
        if r.snapshot_id.is_empty() {
            return Err(invalid("snapshot_id missing"));
        }
        // An id we never made names no snapshot of ours: already gone.
        let Some(id) = VolumeId::parse(&r.snapshot_id) else {
            return Ok(DeleteSnapshotResponse {});
        };
        self.on_this_node(&id, "snapshot")?;
        match self
            .0
            .lv()
            .delete_snapshot(lvmd::DeleteSnapshotRequest {
                snapshot: Some(vref(&id)),
            })
            .await
        {
            Ok(_) => {}
            // The device class is gone from lvmd's configuration: so is the snapshot.
            Err(s) if s.code() == Code::InvalidArgument || s.code() == Code::NotFound => {}
            Err(s) => return Err(from_lvmd(s, &format!("DeleteSnapshot {id}"))),
        }
        tracing::info!(snapshot = %id, "snapshot deleted");
        Ok(DeleteSnapshotResponse {})
    }

    pub(super) async fn list_snapshots_rpc(
        &self,
        r: ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse, Status> {
        let page = super::paging::Page::of(&r.starting_token, r.max_entries)?;
        let mut all: Vec<Snapshot> = Vec::new();
        // One snapshot asked for: none when the id is not one of ours (the spec's
        // answer for an unknown id is an empty list).
        let only = (!r.snapshot_id.is_empty()).then(|| VolumeId::parse(&r.snapshot_id));
        if !matches!(only, Some(None)) {
            // Every class's; a VG no class maps to has no ids.
            for s in self.lvmd_snapshots("").await? {
                if !s.device_class.is_empty() {
                    all.push(self.snapshot_out(&s.device_class, &s));
                }
            }
        }
        all.retain(|s| {
            (r.snapshot_id.is_empty() || s.snapshot_id == r.snapshot_id)
                && (r.source_volume_id.is_empty() || s.source_volume_id == r.source_volume_id)
        });
        all.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
        let (entries, next_token) = page.take(all, "snapshots")?;
        Ok(ListSnapshotsResponse {
            entries: entries
                .into_iter()
                .map(|s| list_snapshots_response::Entry { snapshot: Some(s) })
                .collect(),
            next_token,
        })
    }

    /// A CreateVolume's `volume_content_source` in `class` (the StorageClass's): the
    /// snapshot or volume it names, with its size. Not one of ours or gone: NOT_FOUND;
    /// of another class or node: INVALID_ARGUMENT (the spec's incompatible source).
    pub(super) async fn content_source(
        &self,
        source: &VolumeContentSource,
        class: &str,
    ) -> Result<Source, Status> {
        use volume_content_source::Type;
        let (raw, snapshot) = match &source.r#type {
            Some(Type::Snapshot(s)) => (s.snapshot_id.as_str(), true),
            Some(Type::Volume(v)) => (v.volume_id.as_str(), false),
            None => {
                return Err(invalid(
                    "volume_content_source names neither a snapshot nor a volume",
                ))
            }
        };
        let what = if snapshot { "snapshot" } else { "volume" };
        if raw.is_empty() {
            return Err(invalid(format!("volume_content_source: {what} id missing")));
        }
        let id =
            VolumeId::parse(raw).ok_or_else(|| Status::not_found(format!("no {what} {raw:?}")))?;
        if id.node != self.0.config.node_id || id.class != class {
            return Err(invalid(format!(
                "volume_content_source: {what} {id} is not in device class {class} on node {}; \
                 a volume is made from a snapshot or volume of its own thin pool",
                self.0.config.node_id
            )));
        }
        let mut cow = false;
        let size = if snapshot {
            let found = self
                .lvmd_snapshots(class)
                .await?
                .into_iter()
                .find(|s| s.name == id.lv);
            cow = found.as_ref().is_some_and(|s| s.cow_size_bytes.is_some());
            found.map(|s| s.size_bytes)
        } else {
            match self
                .0
                .lv()
                .get_logical_volume(lvmd::GetLogicalVolumeRequest {
                    volume: Some(vref(&id)),
                })
                .await
            {
                Ok(v) => Some(v.into_inner().size_bytes),
                Err(s) if s.code() == Code::NotFound => None,
                Err(s) => return Err(from_lvmd(s, &format!("GetLogicalVolume {id}"))),
            }
        };
        let size = size.ok_or_else(|| Status::not_found(format!("no {what} {id}")))?;
        Ok(Source {
            id,
            size,
            snapshot,
            cow,
        })
    }
}

/// The VolumeSnapshotClass parameter of lvmd-csi: `cowSize`, the store of a
/// copy-on-write snapshot of a linear or striped volume, as a share of the volume
/// (`"20%"`) or a size (`"1Gi"`, bytes); absent: lvmd's default (20 %). Ignored for
/// thin volumes (their snapshots share the pool). Any other key is refused.
fn cow_size_parameter(
    parameters: &std::collections::HashMap<String, String>,
) -> Result<(Option<u64>, Option<u32>), Status> {
    let mut others: Vec<&String> = parameters.keys().filter(|k| *k != "cowSize").collect();
    if !others.is_empty() {
        others.sort();
        return Err(invalid(format!(
            "parameters {others:?}: lvmd-csi's VolumeSnapshotClass takes only cowSize"
        )));
    }
    let Some(v) = parameters.get("cowSize") else {
        return Ok((None, None));
    };
    if let Some(p) = v.trim().strip_suffix('%') {
        return match p.trim().parse::<u32>() {
            Ok(p @ 1..=100) => Ok((None, Some(p))),
            _ => Err(invalid(format!(
                "cowSize {v:?}: a share is 1% to 100% of the volume"
            ))),
        };
    }
    match crate::units::parse_size(v) {
        Ok(b) if b.0 > 0 => Ok((Some(b.0), None)),
        Ok(_) => Err(invalid(format!(
            "cowSize {v:?}: the store needs at least one byte"
        ))),
        Err(e) => Err(invalid(format!(
            "cowSize {v:?}: {e} (or a share such as \"20%\")"
        ))),
    }
}

#[cfg(test)]
mod cow_size_tests {
    use super::cow_size_parameter;
    use std::collections::HashMap;

    fn of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cow_size_is_a_share_or_a_size_and_anything_else_is_named() {
        assert_eq!(cow_size_parameter(&of(&[])).unwrap(), (None, None));
        assert_eq!(
            cow_size_parameter(&of(&[("cowSize", "25%")])).unwrap(),
            (None, Some(25))
        );
        assert_eq!(
            cow_size_parameter(&of(&[("cowSize", "1Gi")])).unwrap(),
            (Some(1 << 30), None)
        );
        for (k, v, says) in [
            ("cowSize", "0%", "0%"),
            ("cowSize", "101%", "101%"),
            ("cowSize", "lots", "lots"),
            ("cowSize", "0", "at least one byte"),
            ("size", "1Gi", "size"),
        ] {
            let e = cow_size_parameter(&of(&[(k, v)])).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(says), "{}", e.message());
        }
    }
}
