//! Start-up: the channel to lvmd (lazy), the CSI socket (peers checked against an allow
//! list), the metrics port.

use super::controller::ControllerService;
use super::group_snapshots::GroupControllerService;
use super::identity::IdentityService;
use super::metrics::Metrics;
use super::node::NodeService;
use super::pb::controller_server::ControllerServer;
use super::pb::group_controller_server::GroupControllerServer;
use super::pb::identity_server::IdentityServer;
use super::pb::node_server::NodeServer;
use super::{Plugin, PluginConfig};
use crate::socket::peer::{checked_connections, AccessPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The unix socket path of a `unix://` endpoint (or a plain path).
pub fn endpoint_path(endpoint: &str) -> Result<PathBuf, String> {
    let p = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if !p.starts_with('/') {
        return Err(format!(
            "CSI endpoint {endpoint:?}: expected unix:///absolute/path"
        ));
    }
    Ok(PathBuf::from(p))
}

pub fn plugin(config: PluginConfig, lvmd_socket: &Path) -> Arc<Plugin> {
    Arc::new(Plugin::new(
        config,
        crate::rpc::client::connect_lazy(lvmd_socket),
        Arc::new(Metrics::default()),
    ))
}

/// Serves Identity, Controller, GroupController and Node on `csi_socket` until `shutdown` completes. A
/// stale socket file is replaced; one another plugin still answers on is not.
///
/// Only peers `policy` allows get through (SO_PEERCRED, [`crate::socket::peer`]): kubelet and
/// the sidecars run as root, so the default lets in root only.
///
/// The socket file is mode 0660 (owner and group: the plugin's uid and primary gid),
/// the same as lvmd's. The file mode is only the first gate: root with
/// CAP_DAC_OVERRIDE passes it anyway, so the allow list is what decides. 0600 would
/// make `--allow-uid`/`--allow-gid` useless for any uid but the plugin's own; with
/// 0660, sidecars run as another uid reach the socket by sharing the plugin's group
/// (the pod's `runAsGroup`/`supplementalGroups`) and are then checked by uid or gid.
pub async fn serve(
    plugin: Arc<Plugin>,
    csi_socket: &Path,
    policy: AccessPolicy,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = crate::socket::listen::bind(csi_socket, None)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    tracing::info!(socket = %csi_socket.display(), driver = %plugin.config.driver_name,
        node = %plugin.config.node_id, allow = %policy, "serving CSI");
    let incoming = checked_connections(listener, policy);
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService(plugin.clone())))
        .add_service(ControllerServer::new(ControllerService(plugin.clone())))
        .add_service(GroupControllerServer::new(GroupControllerService(
            plugin.clone(),
        )))
        .add_service(NodeServer::new(NodeService(plugin)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    let _ = std::fs::remove_file(csi_socket);
    Ok(())
}
