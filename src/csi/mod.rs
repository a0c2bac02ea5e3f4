//! lvmd-csi: the CSI v1 plugin. It speaks CSI to kubelet and the sidecars and only
//! `lvmd.v1` to the daemon over its unix socket: no LVM types and no privileged work here.
//!
//! - [`volume_id`]: the volume id (`<node>#<device class>#<lv name>`) and LV names.
//! - [`params`]: StorageClass parameters and volume capabilities, validated.
//! - [`status`]: lvmd's gRPC codes to CSI's, in one place.
//! - [`mounts`]: what this plugin's own mount namespace sees (`/proc/self/mountinfo`).
//! - [`identity`], [`controller`], [`node`]: the three CSI services; [`snapshots`]: the
//!   controller's snapshots and volume sources.
//! - [`ephemeral`]: the node's inline ephemeral volumes (made at publish, removed at
//!   unpublish, found again by name and tags alone).
//! - [`metrics`]: Prometheus text on a TCP port.
//! - [`server`]: the socket, the lvmd channel, start-up.

// Every handler answers with a tonic::Status; boxing it in the helpers would only add
// conversions at each `?`.
#![allow(clippy::result_large_err)]

pub mod controller;
pub mod ephemeral;
pub mod group_snapshots;
pub mod identity;
pub mod metrics;
pub mod mounts;
pub mod node;
pub mod paging;
pub mod params;
pub mod server;
pub mod snapshots;
pub mod status;
pub mod volume_id;

pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("csi.v1");
}

use crate::rpc::redacted_debug;

// Kubernetes' secrets (an encrypted volume's passphrase) never reach a Debug output.
redacted_debug!(pb::CreateVolumeRequest {
    name, capacity_range, volume_capabilities, parameters, volume_content_source,
    accessibility_requirements, mutable_parameters
} secret { secrets });
redacted_debug!(pb::DeleteVolumeRequest { volume_id } secret { secrets });
redacted_debug!(pb::CreateSnapshotRequest { source_volume_id, name, parameters } secret { secrets });
redacted_debug!(pb::DeleteSnapshotRequest { snapshot_id } secret { secrets });
redacted_debug!(pb::ListSnapshotsRequest {
    max_entries, starting_token, source_volume_id, snapshot_id
} secret { secrets });
redacted_debug!(pb::CreateVolumeGroupSnapshotRequest {
    name, source_volume_ids, parameters
} secret { secrets });
redacted_debug!(pb::DeleteVolumeGroupSnapshotRequest {
    group_snapshot_id, snapshot_ids
} secret { secrets });
redacted_debug!(pb::GetVolumeGroupSnapshotRequest {
    group_snapshot_id, snapshot_ids
} secret { secrets });
redacted_debug!(pb::ValidateVolumeCapabilitiesRequest {
    volume_id, volume_context, volume_capabilities, parameters, mutable_parameters
} secret { secrets });
redacted_debug!(pb::ControllerExpandVolumeRequest {
    volume_id, capacity_range, volume_capability
} secret { secrets });
redacted_debug!(pb::NodeStageVolumeRequest {
    volume_id, publish_context, staging_target_path, volume_capability, volume_context
} secret { secrets });
redacted_debug!(pb::NodePublishVolumeRequest {
    volume_id, publish_context, staging_target_path, target_path, volume_capability,
    readonly, volume_context
} secret { secrets });
redacted_debug!(pb::NodeExpandVolumeRequest {
    volume_id, volume_path, capacity_range, staging_target_path, volume_capability
} secret { secrets });

use crate::rpc::pb as lvmd;
use std::sync::Arc;
use tonic::transport::Channel;

pub const DEFAULT_DRIVER_NAME: &str = "lvmd.csi.local";
pub const DEFAULT_TOPOLOGY_KEY: &str = "topology.lvmd.csi.local/node";

/// How the node service confirms that a mount is really there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountCheck {
    /// In this process's `/proc/self/mountinfo`: what kubelet will bind into pods only
    /// shows up here if the kubelet directory is mounted with HostToContainer propagation.
    Mountinfo,
    /// Ask lvmd (`GetPathStats`): for `lvmd --simulate`, whose mounts exist only in memory.
    Lvmd,
}

#[derive(Clone, Debug)]
pub struct PluginConfig {
    pub driver_name: String,
    pub node_id: String,
    pub topology_key: String,
    /// 0: no limit announced to the scheduler.
    pub max_volumes: i64,
    pub mount_check: MountCheck,
    /// Serves only what the cluster-wide resizer calls (ControllerExpandVolume needs no
    /// lvmd): Probe answers ready without asking lvmd, since there is none beside it.
    pub controller_only: bool,
}

/// The state the three services share: configuration, the channel to lvmd, metrics.
pub struct Plugin {
    pub config: PluginConfig,
    lvmd: Channel,
    pub metrics: Arc<metrics::Metrics>,
}

type LvClient = lvmd::logical_volume_service_client::LogicalVolumeServiceClient<Channel>;
type CapClient = lvmd::capacity_service_client::CapacityServiceClient<Channel>;
type NodeClient = lvmd::node_service_client::NodeServiceClient<Channel>;

impl Plugin {
    pub fn new(config: PluginConfig, lvmd: Channel, metrics: Arc<metrics::Metrics>) -> Plugin {
        Plugin {
            config,
            lvmd,
            metrics,
        }
    }
    fn lv(&self) -> LvClient {
        LvClient::new(self.lvmd.clone())
    }
    fn cap(&self) -> CapClient {
        CapClient::new(self.lvmd.clone())
    }
    fn node(&self) -> NodeClient {
        NodeClient::new(self.lvmd.clone())
    }
    /// Every LV lvmd knows, in every device class.
    async fn all_lvs(&self) -> Result<Vec<lvmd::LogicalVolume>, tonic::Status> {
        self.lv()
            .list_logical_volumes(lvmd::ListLogicalVolumesRequest::default())
            .await
            .map_err(|s| status::from_lvmd(s, "ListLogicalVolumes"))
            .map(|r| r.into_inner().logical_volumes)
    }
    pub fn channel(&self) -> Channel {
        self.lvmd.clone()
    }
    /// This node's topology segment.
    pub fn topology(&self) -> pb::Topology {
        pb::Topology {
            segments: [(
                self.config.topology_key.clone(),
                self.config.node_id.clone(),
            )]
            .into(),
        }
    }
}
