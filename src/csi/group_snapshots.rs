//! CSI GroupController: volume group snapshots (CreateVolumeGroupSnapshot,
//! GetVolumeGroupSnapshot, DeleteVolumeGroupSnapshot) on lvmd's snapshot groups
//! (`docs/thin.md`, Group snapshots): thin volumes of one device class's pool, every
//! active one suspended, snapshotted in one pool transaction, all resumed, which is the
//! spec's write-order consistency.
//!
//! A group snapshot id has the volume id's shape (`<node>#<class>#<group>`,
//! [`VolumeId`]), its group name the CSI name's LV name ([`lv_name`]); each member's
//! snapshot is named from the CSI group name and its source's LV, so a retried create
//! asks for the same members and finds them. The members are plain snapshots of the
//! class (their ids work with DeleteSnapshot and as a CreateVolume content source),
//! each saying its group (`group_snapshot_id`).

use super::controller::{wiped, ControllerService};
use super::pb::group_controller_server::GroupController;
use super::pb::group_controller_service_capability::{rpc, Rpc, Type};
use super::pb::*;
use super::snapshots::timestamp;
use super::status::{from_lvmd, invalid};
use super::volume_id::{lv_name, VolumeId};
use super::Plugin;
use crate::rpc::pb as lvmd;
use std::collections::BTreeSet;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

#[derive(Clone)]
pub struct GroupControllerService(pub Arc<Plugin>);

/// The LV name of group `group`'s snapshot of `source` (an LV name).
fn member_name(group: &str, source: &str) -> String {
    lv_name(&format!("{group}-{source}"))
}

impl GroupControllerService {
    fn controller(&self) -> ControllerService {
        ControllerService(self.0.clone())
    }

    fn group_out(&self, class: &str, g: &lvmd::SnapshotGroup) -> VolumeGroupSnapshot {
        let c = self.controller();
        let snapshots: Vec<Snapshot> = g
            .snapshots
            .iter()
            .map(|s| c.snapshot_out(class, s))
            .collect();
        // One commit made them all: one creation time.
        let created = g
            .snapshots
            .iter()
            .map(|s| s.creation_time)
            .min()
            .unwrap_or(0);
        VolumeGroupSnapshot {
            group_snapshot_id: VolumeId {
                node: self.0.config.node_id.clone(),
                class: class.into(),
                lv: g.name.clone(),
            }
            .to_string(),
            ready_to_use: snapshots.iter().all(|s| s.ready_to_use),
            snapshots,
            creation_time: Some(timestamp(created)),
        }
    }

    async fn create(
        &self,
        r: CreateVolumeGroupSnapshotRequest,
    ) -> Result<CreateVolumeGroupSnapshotResponse, Status> {
        if r.name.is_empty() {
            return Err(invalid("name missing"));
        }
        if r.source_volume_ids.is_empty() {
            return Err(invalid("source_volume_ids missing"));
        }
        if !r.parameters.is_empty() {
            let mut keys: Vec<&String> = r.parameters.keys().collect();
            keys.sort();
            return Err(invalid(format!(
                "parameters {keys:?}: lvmd-csi's VolumeGroupSnapshotClass takes none"
            )));
        }
        let c = self.controller();
        let mut sources = Vec::with_capacity(r.source_volume_ids.len());
        for raw in &r.source_volume_ids {
            let id = VolumeId::parse(raw)
                .ok_or_else(|| Status::not_found(format!("no volume {raw:?}")))?;
            c.on_this_node(&id, "volume")?;
            sources.push(id);
        }
        // One pool's transaction: the volumes of one device class (its one VG).
        let class = sources[0].class.clone();
        if let Some(other) = sources.iter().find(|s| s.class != class) {
            return Err(Status::failed_precondition(format!(
                "volume {other} is in device class {}, volume {} in {class}: a group \
                 snapshot is of thin volumes of one device class's pool",
                other.class, sources[0]
            )));
        }
        let group = lv_name(&r.name);
        let members = sources
            .iter()
            .map(|s| lvmd::SnapshotGroupMember {
                name: member_name(&r.name, &s.lv),
                source_volume: s.lv.clone(),
            })
            .collect();
        let g = self
            .0
            .lv()
            .create_snapshot_group(lvmd::CreateSnapshotGroupRequest {
                group: Some(lvmd::VolumeRef {
                    device_class: class.clone(),
                    volume_group: String::new(),
                    name: group,
                }),
                snapshots: members,
            })
            .await
            .map_err(|s| from_lvmd(s, &format!("CreateSnapshotGroup {}", r.name)))?
            .into_inner();
        tracing::info!(group = %g.name, name = %r.name, snapshots = g.snapshots.len(),
            "group snapshot created");
        Ok(CreateVolumeGroupSnapshotResponse {
            group_snapshot: Some(self.group_out(&class, &g)),
        })
    }

    /// The group an id names, as lvmd has it now; `None`: not one of ours, or gone.
    async fn lookup(&self, raw: &str) -> Result<Option<(VolumeId, VolumeGroupSnapshot)>, Status> {
        let Some(id) = VolumeId::parse(raw) else {
            return Ok(None);
        };
        self.controller().on_this_node(&id, "group snapshot")?;
        match self
            .0
            .lv()
            .get_snapshot_group(lvmd::GetSnapshotGroupRequest {
                group: Some(super::controller::vref(&id)),
            })
            .await
        {
            Ok(g) => {
                let out = self.group_out(&id.class, &g.into_inner());
                Ok(Some((id, out)))
            }
            // Gone, or its device class gone from lvmd's configuration.
            Err(s) if s.code() == Code::NotFound || s.code() == Code::InvalidArgument => Ok(None),
            Err(s) => Err(from_lvmd(s, &format!("GetSnapshotGroup {id}"))),
        }
    }

    async fn get(
        &self,
        r: GetVolumeGroupSnapshotRequest,
    ) -> Result<GetVolumeGroupSnapshotResponse, Status> {
        if r.group_snapshot_id.is_empty() {
            return Err(invalid("group_snapshot_id missing"));
        }
        let Some((_, g)) = self.lookup(&r.group_snapshot_id).await? else {
            return Err(Status::not_found(format!(
                "no group snapshot {:?}",
                r.group_snapshot_id
            )));
        };
        check_snapshot_ids(&g, &r.snapshot_ids)?;
        Ok(GetVolumeGroupSnapshotResponse {
            group_snapshot: Some(g),
        })
    }

    async fn delete(
        &self,
        r: DeleteVolumeGroupSnapshotRequest,
    ) -> Result<DeleteVolumeGroupSnapshotResponse, Status> {
        if r.group_snapshot_id.is_empty() {
            return Err(invalid("group_snapshot_id missing"));
        }
        let Some((id, g)) = self.lookup(&r.group_snapshot_id).await? else {
            return Ok(DeleteVolumeGroupSnapshotResponse {});
        };
        check_snapshot_ids(&g, &r.snapshot_ids)?;
        self.0
            .lv()
            .delete_snapshot_group(lvmd::DeleteSnapshotGroupRequest {
                group: Some(super::controller::vref(&id)),
            })
            .await
            .map_err(|s| from_lvmd(s, &format!("DeleteSnapshotGroup {id}")))?;
        tracing::info!(group = %id, "group snapshot deleted");
        Ok(DeleteVolumeGroupSnapshotResponse {})
    }
}

/// The spec's mismatch check of a request's `snapshot_ids` against the group: each of
/// the group's snapshots must be listed, and nothing listed may be another snapshot.
/// Ids of snapshots already gone (deleted alone before) are no mismatch.
fn check_snapshot_ids(g: &VolumeGroupSnapshot, ids: &[String]) -> Result<(), Status> {
    if ids.is_empty() {
        return Ok(());
    }
    let listed: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let have: BTreeSet<&str> = g.snapshots.iter().map(|s| s.snapshot_id.as_str()).collect();
    if let Some(missing) = have.difference(&listed).next() {
        return Err(invalid(format!(
            "snapshot_ids lack {missing}, a snapshot of group snapshot {}",
            g.group_snapshot_id
        )));
    }
    let group = VolumeId::parse(&g.group_snapshot_id);
    for other in listed.difference(&have) {
        // Another group's snapshot, or one of another class: not this group's.
        let foreign = match (VolumeId::parse(other), &group) {
            (Some(o), Some(gid)) => o.node != gid.node || o.class != gid.class,
            _ => true,
        };
        if foreign {
            return Err(invalid(format!(
                "snapshot_ids name {other}, no snapshot of group snapshot {}",
                g.group_snapshot_id
            )));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl GroupController for GroupControllerService {
    async fn group_controller_get_capabilities(
        &self,
        _: Request<GroupControllerGetCapabilitiesRequest>,
    ) -> Result<Response<GroupControllerGetCapabilitiesResponse>, Status> {
        super::metrics::timed(&self.0.metrics, "GroupControllerGetCapabilities", async {
            Ok(GroupControllerGetCapabilitiesResponse {
                capabilities: vec![GroupControllerServiceCapability {
                    r#type: Some(Type::Rpc(Rpc {
                        r#type: rpc::Type::CreateDeleteGetVolumeGroupSnapshot as i32,
                    })),
                }],
            })
        })
        .await
    }

    async fn create_volume_group_snapshot(
        &self,
        r: Request<CreateVolumeGroupSnapshotRequest>,
    ) -> Result<Response<CreateVolumeGroupSnapshotResponse>, Status> {
        super::metrics::timed(
            &self.0.metrics,
            "CreateVolumeGroupSnapshot",
            self.create(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }

    async fn delete_volume_group_snapshot(
        &self,
        r: Request<DeleteVolumeGroupSnapshotRequest>,
    ) -> Result<Response<DeleteVolumeGroupSnapshotResponse>, Status> {
        super::metrics::timed(
            &self.0.metrics,
            "DeleteVolumeGroupSnapshot",
            self.delete(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }

    async fn get_volume_group_snapshot(
        &self,
        r: Request<GetVolumeGroupSnapshotRequest>,
    ) -> Result<Response<GetVolumeGroupSnapshotResponse>, Status> {
        super::metrics::timed(
            &self.0.metrics,
            "GetVolumeGroupSnapshot",
            self.get(wiped(r.into_inner(), |r| &mut r.secrets)),
        )
        .await
    }
}
