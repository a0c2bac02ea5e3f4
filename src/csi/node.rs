//! CSI Node: staging (activate, mkfs only if empty, mount: all lvmd's MountVolume),
//! publishing (bind from staging, or the block device), stats and expansion. Every mount
//! is made by lvmd in the host's namespace; this plugin then checks it can see it.
//! Inline ephemeral volumes (publish and unpublish with kubelet's ids) are in
//! [`super::ephemeral`].

use super::controller::vref;
use super::metrics::timed;
use super::mounts;
use super::params::{self, Access};
use super::pb::node_server::Node;
use super::pb::node_service_capability::{rpc, Rpc, Type as CapType};
use super::pb::*;
use super::status::{from_lvmd, invalid};
use super::volume_id::VolumeId;
use super::{MountCheck, Plugin};
use crate::rpc::pb as lvmd;
use std::path::Path;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

#[derive(Clone)]
pub struct NodeService(pub Arc<Plugin>);

/// A request's secrets, taken out of it: their values (the one taken out by
/// [`passphrase`] aside, which moves on into lvmd's request, zeroed there) are zeroed
/// when this is dropped, so no copy of a key is left in freed memory.
pub(super) struct Secrets(std::collections::HashMap<String, String>);

impl Secrets {
    pub(super) fn take(from: &mut std::collections::HashMap<String, String>) -> Secrets {
        Secrets(std::mem::take(from))
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        crate::rpc::WipeSecret::wipe(&mut self.0);
    }
}

/// Where kubelet's secret for a volume's key comes from, for the error that says it
/// is missing.
#[derive(Debug, Clone, Copy)]
pub(super) enum KeySecret {
    /// A PV's `<op>-secret-name/-namespace` of its StorageClass (`node-stage`, ...).
    StorageClass(&'static str),
    /// An inline ephemeral volume's `nodePublishSecretRef` (the pod's namespace).
    InlineVolume,
}

impl std::fmt::Display for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySecret::StorageClass(op) => write!(
                f,
                "the StorageClass names the secret with csi.storage.k8s.io/{op}-secret-name \
                 and -namespace"
            ),
            KeySecret::InlineVolume => write!(
                f,
                "the pod's inline volume names the secret with nodePublishSecretRef, a \
                 Secret in the pod's namespace"
            ),
        }
    }
}

/// The `passphrase` of a request's secrets, moved out of the map (no copy stays in the
/// request). `encrypted` and none there: INVALID_ARGUMENT naming the key, never a value.
/// Empty: no key (lvmd refuses an encrypted volume without one, too).
pub(super) fn passphrase(
    secrets: &mut Secrets,
    encrypted: bool,
    volume: &str,
    from: KeySecret,
) -> Result<Vec<u8>, Status> {
    match secrets.0.remove(params::SECRET_PASSPHRASE) {
        Some(v) if !v.is_empty() => Ok(v.into_bytes()),
        _ if encrypted => Err(invalid(format!(
            "volume {volume} is encrypted, and the request's secrets have no {:?} key \
             ({from})",
            params::SECRET_PASSPHRASE
        ))),
        _ => Ok(Vec::new()),
    }
}

pub(super) fn need<'a>(v: &'a str, what: &str) -> Result<&'a str, Status> {
    if v.is_empty() {
        Err(invalid(format!("{what} missing")))
    } else {
        Ok(v)
    }
}

impl NodeService {
    /// The id of a volume on this node, or NOT_FOUND.
    fn id(&self, v: &str) -> Result<VolumeId, Status> {
        let id = VolumeId::parse(need(v, "volume_id")?)
            .ok_or_else(|| Status::not_found(format!("no volume {v:?} (not an lvmd-csi id)")))?;
        if id.node != self.0.config.node_id {
            return Err(Status::not_found(format!(
                "volume {id} lives on node {}, not on {}",
                id.node, self.0.config.node_id
            )));
        }
        Ok(id)
    }

    /// Like [`Self::id`], and an inline ephemeral volume's id (kubelet's, which never
    /// parses as ours) resolves to its LV, found by name and tags.
    async fn resolve(&self, v: &str) -> Result<VolumeId, Status> {
        if VolumeId::parse(need(v, "volume_id")?).is_none() {
            if let Some(id) = self.ephemeral_id(v).await? {
                return Ok(id);
            }
        }
        self.id(v)
    }

    async fn lv(&self, id: &VolumeId) -> Result<lvmd::LogicalVolume, Status> {
        self.0
            .lv()
            .get_logical_volume(lvmd::GetLogicalVolumeRequest {
                volume: Some(vref(id)),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| from_lvmd(s, &format!("GetLogicalVolume {id}")))
    }

    /// How full a thin volume's pool is, for its condition's message; `None` when lvmd
    /// cannot say (the stats are answered without it) or the pool is not active.
    async fn pool_use(&self, lv: &lvmd::LogicalVolume) -> Option<String> {
        let got = self
            .0
            .cap()
            .get_capacity(lvmd::GetCapacityRequest {
                device_class: lv.device_class.clone(),
            })
            .await
            .ok()?
            .into_inner();
        let pool = got.device_classes.first()?.thin_pool.as_ref()?;
        let percent = |used: u64, total: u64| used as f64 * 100.0 / total.max(1) as f64;
        pool.active.then(|| {
            format!(
                "thin pool {}/{}: data {:.1}% used ({} of {} bytes), metadata {:.1}% used",
                lv.volume_group,
                pool.name,
                percent(pool.data_used_bytes, pool.data_bytes),
                pool.data_used_bytes,
                pool.data_bytes,
                percent(pool.metadata_used_bytes, pool.metadata_bytes),
            )
        })
    }

    /// Whether `path` is a mount point, as the configured check sees it.
    async fn mounted(&self, path: &str) -> Result<bool, Status> {
        match self.0.config.mount_check {
            MountCheck::Mountinfo => mounts::is_mounted_here(Path::new(path))
                .map_err(|e| Status::internal(format!("reading /proc/self/mountinfo: {e}"))),
            MountCheck::Lvmd => match self.path_stats(path).await {
                Ok(_) => Ok(true),
                Err(s) if s.code() == Code::NotFound => Ok(false),
                Err(s) => Err(s),
            },
        }
    }

    async fn path_stats(&self, path: &str) -> Result<lvmd::PathStats, Status> {
        self.0
            .node()
            .get_path_stats(lvmd::GetPathStatsRequest { path: path.into() })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| from_lvmd(s, &format!("GetPathStats {path}")))
    }

    pub(super) async fn unmount(&self, path: &str, remove: bool) -> Result<bool, Status> {
        self.0
            .node()
            .unmount(lvmd::UnmountRequest {
                target_path: path.into(),
                remove_target: remove,
            })
            .await
            .map(|r| r.into_inner().was_mounted)
            .map_err(|s| from_lvmd(s, &format!("Unmount {path}")))
    }

    /// After lvmd mounted `path` on the host: fail, undone, unless this namespace sees it.
    pub(super) async fn confirm_visible(&self, path: &str, remove: bool) -> Result<(), Status> {
        if self.0.config.mount_check == MountCheck::Mountinfo && !self.mounted(path).await? {
            let hint = mounts::propagation_hint(Path::new(path));
            // The undo failing leaves lvmd's mount at `path` on the host: say so, to
            // the log and to the CO, rather than drop it.
            return Err(match self.unmount(path, remove).await {
                Ok(_) => Status::failed_precondition(hint),
                Err(u) => {
                    tracing::error!(
                        path,
                        "cannot undo the mount this namespace does not see: {}",
                        u.message()
                    );
                    Status::failed_precondition(format!(
                        "{hint}; undoing the mount failed, it is left on the host: {}",
                        u.message()
                    ))
                }
            });
        }
        Ok(())
    }

    async fn stage(
        &self,
        mut r: NodeStageVolumeRequest,
    ) -> Result<NodeStageVolumeResponse, Status> {
        // Out of the request at once: nothing below can print it with the request.
        let mut secrets = Secrets::take(&mut r.secrets);
        // The spec's order: every required field, then the lookup (a request missing
        // one is INVALID_ARGUMENT even for an unknown volume).
        need(&r.volume_id, "volume_id")?;
        let staging = need(&r.staging_target_path, "staging_target_path")?;
        let cap = params::required_capability(r.volume_capability.as_ref())?;
        let id = self.id(&r.volume_id)?;
        match cap.access {
            // Nothing to stage: publishing binds the device node itself.
            Access::Block => {
                self.lv(&id).await?;
            }
            Access::Mount { flags, .. } => {
                let fs_type = fs_type_for(&r.volume_capability, &r.volume_context)?;
                let key = passphrase(
                    &mut secrets,
                    params::is_encrypted(&r.volume_context),
                    &r.volume_id,
                    KeySecret::StorageClass("node-stage"),
                )?;
                self.0
                    .node()
                    .mount_volume(lvmd::MountVolumeRequest {
                        volume: Some(vref(&id)),
                        target_path: staging.into(),
                        fs_type: fs_type.clone(),
                        mount_options: flags,
                        read_only: cap.read_only_mode,
                        passphrase: key,
                    })
                    .await
                    .map_err(|s| from_lvmd(s, &format!("MountVolume {id} at {staging}")))?;
                self.confirm_visible(staging, false).await?;
                tracing::info!(volume = %id, staging, fs_type, "staged");
            }
        }
        Ok(NodeStageVolumeResponse {})
    }

    async fn unstage(
        &self,
        r: NodeUnstageVolumeRequest,
    ) -> Result<NodeUnstageVolumeResponse, Status> {
        need(&r.volume_id, "volume_id")?;
        let staging = need(&r.staging_target_path, "staging_target_path")?;
        // The LV stays active: a block publish of it may still be live elsewhere.
        let was_mounted = self.unmount(staging, false).await?;
        tracing::info!(volume = r.volume_id, staging, was_mounted, "unstaged");
        Ok(NodeUnstageVolumeResponse {})
    }

    async fn publish(
        &self,
        mut r: NodePublishVolumeRequest,
    ) -> Result<NodePublishVolumeResponse, Status> {
        if params::is_ephemeral(&r.volume_context) {
            return self.publish_ephemeral(r).await;
        }
        let mut secrets = Secrets::take(&mut r.secrets);
        need(&r.volume_id, "volume_id")?;
        let target = need(&r.target_path, "target_path")?;
        let cap = params::required_capability(r.volume_capability.as_ref())?;
        // Required because this plugin stages (STAGE_UNSTAGE_VOLUME): checked with the
        // other fields, before the lookup.
        if matches!(cap.access, Access::Mount { .. }) {
            need(&r.staging_target_path, "staging_target_path")?;
        }
        let id = self.id(&r.volume_id)?;
        let read_only = r.readonly || cap.read_only_mode;
        let lv = self.lv(&id).await?;
        match cap.access {
            Access::Block => {
                // Nothing is staged for a block volume: the key comes with the publish
                // (the StorageClass's node-publish secret).
                let encrypted = lv.encrypted || params::is_encrypted(&r.volume_context);
                let key = passphrase(
                    &mut secrets,
                    encrypted,
                    &r.volume_id,
                    KeySecret::StorageClass("node-publish"),
                )?;
                self.0
                    .node()
                    .publish_block(lvmd::PublishBlockRequest {
                        volume: Some(vref(&id)),
                        target_path: target.into(),
                        read_only,
                        passphrase: key,
                    })
                    .await
                    .map_err(|s| from_lvmd(s, &format!("PublishBlock {id} at {target}")))?;
            }
            Access::Mount { .. } => {
                let staging = r.staging_target_path.as_str();
                // Binding an unmounted staging directory would hand the pod an empty
                // directory on the node's disk.
                if !self.mounted(staging).await? {
                    return Err(Status::failed_precondition(format!(
                        "volume {id} is not staged at {staging}"
                    )));
                }
                self.0
                    .node()
                    .bind_mount(lvmd::BindMountRequest {
                        source_path: staging.into(),
                        target_path: target.into(),
                        read_only,
                    })
                    .await
                    .map_err(|s| from_lvmd(s, &format!("BindMount {staging} to {target}")))?;
            }
        }
        self.confirm_visible(target, true).await?;
        tracing::info!(volume = %id, target, read_only, "published");
        Ok(NodePublishVolumeResponse {})
    }

    async fn unpublish(
        &self,
        r: NodeUnpublishVolumeRequest,
    ) -> Result<NodeUnpublishVolumeResponse, Status> {
        let vid = need(&r.volume_id, "volume_id")?;
        let target = need(&r.target_path, "target_path")?;
        // Only inline ephemeral volumes have ids that are not ours (kubelet makes them);
        // their LV goes with the mount. This needs no memory of the publish, so it works
        // after lvmd-csi or lvmd restarted in between.
        if VolumeId::parse(vid).is_none() {
            self.unpublish_ephemeral(vid, target).await?;
        } else {
            let was_mounted = self.unmount(target, true).await?;
            tracing::info!(volume = vid, target, was_mounted, "unpublished");
        }
        Ok(NodeUnpublishVolumeResponse {})
    }

    async fn stats(
        &self,
        r: NodeGetVolumeStatsRequest,
    ) -> Result<NodeGetVolumeStatsResponse, Status> {
        need(&r.volume_id, "volume_id")?;
        let path = need(&r.volume_path, "volume_path")?;
        let id = self.resolve(&r.volume_id).await?;
        let lv = self.lv(&id).await?;
        // A mirror serving from fewer copies, or a volume with extents on a missing PV:
        // abnormal, whatever its mount says.
        let health = (lv.health != lvmd::Health::Ok as i32).then(|| VolumeCondition {
            abnormal: true,
            message: match &lv.mirror_sync {
                Some(m) => format!(
                    "volume {id}: {} (mirror {:.2}% in sync, {}, legs {})",
                    lv.health_message, m.sync_percent, m.sync_action, m.leg_health
                ),
                None => format!("volume {id}: {}", lv.health_message),
            },
        });
        if !Path::new(path).exists() {
            return Err(Status::not_found(format!(
                "volume_path {path} does not exist"
            )));
        }
        if !self.mounted(path).await? {
            return Ok(NodeGetVolumeStatsResponse {
                usage: vec![],
                volume_condition: Some(VolumeCondition {
                    abnormal: true,
                    message: format!("volume {id} is not mounted at {path}"),
                }),
            });
        }
        let s = self.path_stats(path).await?;
        let bytes = VolumeUsage {
            available: s.available_bytes as i64,
            total: s.total_bytes as i64,
            used: s.used_bytes as i64,
            unit: volume_usage::Unit::Bytes as i32,
        };
        let usage = if s.block {
            vec![VolumeUsage {
                available: 0,
                used: 0,
                ..bytes
            }]
        } else {
            vec![
                bytes,
                VolumeUsage {
                    available: s.free_inodes as i64,
                    total: s.total_inodes as i64,
                    used: s.used_inodes as i64,
                    unit: volume_usage::Unit::Inodes as i32,
                },
            ]
        };
        let condition = match health {
            Some(abnormal) => abnormal,
            // A healthy thin volume's condition carries its pool's use: its writes
            // fail when the pool runs full, whatever its own free space says.
            None => VolumeCondition {
                abnormal: false,
                message: if lv.layout == lvmd::Layout::Thin as i32 {
                    self.pool_use(&lv).await.unwrap_or_default()
                } else {
                    String::new()
                },
            },
        };
        Ok(NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(condition),
        })
    }

    /// Grows the LV through this node's lvmd, then (filesystem volumes) the filesystem
    /// mounted at the staging path, or at `volume_path` when kubelet names none.
    async fn expand(
        &self,
        mut r: NodeExpandVolumeRequest,
    ) -> Result<NodeExpandVolumeResponse, Status> {
        let mut secrets = Secrets::take(&mut r.secrets);
        let vid = need(&r.volume_id, "volume_id")?;
        let path = need(&r.volume_path, "volume_path")?;
        let (required, limit) = r
            .capacity_range
            .as_ref()
            .map_or((0, 0), |c| (c.required_bytes, c.limit_bytes));
        if required < 0 || limit < 0 || (limit > 0 && required > limit) {
            return Err(Status::out_of_range(format!(
                "capacity_range [{required}, {limit}] is not a range"
            )));
        }
        if VolumeId::parse(vid).is_none() && self.find_ephemeral(vid).await?.is_some() {
            return Err(Status::failed_precondition(format!(
                "{vid} is an inline ephemeral volume: its size is the pod's volumeAttributes \
                 size, fixed for the pod's life"
            )));
        }
        let id = self.id(vid)?;
        let block = match &r.volume_capability {
            Some(c) => params::capability(c)?.access == Access::Block,
            None => self.path_stats(path).await?.block,
        };
        // No size asked for: grow the filesystem to the LV as it is.
        let size = if required > 0 {
            required as u64
        } else {
            self.lv(&id).await?.size_bytes
        };
        let target = if block {
            String::new()
        } else if r.staging_target_path.is_empty() {
            path.to_owned()
        } else {
            r.staging_target_path.clone()
        };
        // An encrypted volume's mapping grows with its key (the StorageClass's
        // node-expand secret); lvmd says so when it is missing.
        let key = passphrase(
            &mut secrets,
            false,
            vid,
            KeySecret::StorageClass("node-expand"),
        )?;
        let x = self
            .0
            .node()
            .expand_volume(lvmd::ExpandVolumeRequest {
                volume: Some(vref(&id)),
                size_bytes: size,
                target_path: target.clone(),
                passphrase: key,
            })
            .await
            .map_err(|s| from_lvmd(s, &format!("ExpandVolume {id} to {size} at {target:?}")))?
            .into_inner();
        let lv = x
            .volume
            .ok_or_else(|| Status::internal("lvmd's ExpandVolume answered no volume"))?;
        if limit > 0 && lv.size_bytes > limit as u64 {
            tracing::warn!(volume = %id, size = lv.size_bytes, limit,
                "volume is larger than capacity_range.limit_bytes (whole extents)");
        }
        tracing::info!(volume = %id, size = lv.size_bytes, filesystem = x.filesystem_size_bytes,
            "expanded");
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: lv.size_bytes as i64,
        })
    }
}

/// The filesystem to stage with: the capability's, else the StorageClass's `fsType`
/// (carried in the volume context), else ext4.
fn fs_type_for(
    cap: &Option<VolumeCapability>,
    ctx: &std::collections::HashMap<String, String>,
) -> Result<String, Status> {
    use super::pb::volume_capability::AccessType;
    let from_cap = match cap.as_ref().and_then(|c| c.access_type.as_ref()) {
        Some(AccessType::Mount(m)) => m.fs_type.as_str(),
        _ => "",
    };
    let chosen = if from_cap.is_empty() {
        ctx.get("fsType").map_or("", String::as_str)
    } else {
        from_cap
    };
    Ok(params::fs_type(chosen)?.to_string())
}

fn rpc_cap(t: rpc::Type) -> NodeServiceCapability {
    NodeServiceCapability {
        r#type: Some(CapType::Rpc(Rpc { r#type: t as i32 })),
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        r: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        timed(
            &self.0.metrics,
            "NodeStageVolume",
            self.stage(r.into_inner()),
        )
        .await
    }
    async fn node_unstage_volume(
        &self,
        r: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        timed(
            &self.0.metrics,
            "NodeUnstageVolume",
            self.unstage(r.into_inner()),
        )
        .await
    }
    async fn node_publish_volume(
        &self,
        r: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        timed(
            &self.0.metrics,
            "NodePublishVolume",
            self.publish(r.into_inner()),
        )
        .await
    }
    async fn node_unpublish_volume(
        &self,
        r: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        timed(
            &self.0.metrics,
            "NodeUnpublishVolume",
            self.unpublish(r.into_inner()),
        )
        .await
    }
    async fn node_get_volume_stats(
        &self,
        r: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        timed(
            &self.0.metrics,
            "NodeGetVolumeStats",
            self.stats(r.into_inner()),
        )
        .await
    }
    async fn node_expand_volume(
        &self,
        r: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        timed(
            &self.0.metrics,
            "NodeExpandVolume",
            self.expand(r.into_inner()),
        )
        .await
    }
    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        timed(&self.0.metrics, "NodeGetCapabilities", async {
            Ok(NodeGetCapabilitiesResponse {
                capabilities: [
                    rpc::Type::StageUnstageVolume,
                    rpc::Type::GetVolumeStats,
                    rpc::Type::ExpandVolume,
                    rpc::Type::VolumeCondition,
                ]
                .into_iter()
                .map(rpc_cap)
                .collect(),
            })
        })
        .await
    }
    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        timed(&self.0.metrics, "NodeGetInfo", async {
            Ok(NodeGetInfoResponse {
                node_id: self.0.config.node_id.clone(),
                max_volumes_per_node: self.0.config.max_volumes,
                accessible_topology: Some(self.0.topology()),
            })
        })
        .await
    }
}
