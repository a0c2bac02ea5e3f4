//! Serving the API on a unix socket, with every peer checked by its kernel-reported
//! credentials (SO_PEERCRED) before tonic sees a byte from it.

use super::pb;
use super::service::Api;
use std::future::Future;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;

/// Who may talk to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// uid 0 is let in regardless of the lists (the default).
    pub allow_root: bool,
    pub uids: Vec<u32>,
    /// Matched against the peer's primary gid (the one SO_PEERCRED reports).
    pub gids: Vec<u32>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            allow_root: true,
            uids: vec![],
            gids: vec![],
        }
    }
}

impl AccessPolicy {
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        (self.allow_root && uid == 0) || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// Accepts connections and passes on those the policy allows; refused peers are logged
/// and closed at once.
fn checked_connections(
    listener: UnixListener,
    policy: AccessPolicy,
) -> ReceiverStream<std::io::Result<UnixStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if policy.allows(cred.uid(), cred.gid()) => {
                    tracing::debug!(
                        uid = cred.uid(),
                        gid = cred.gid(),
                        pid = cred.pid(),
                        "client connected"
                    );
                    if tx.send(Ok(stream)).await.is_err() {
                        return;
                    }
                }
                Ok(cred) => {
                    tracing::warn!(
                        uid = cred.uid(),
                        gid = cred.gid(),
                        pid = cred.pid(),
                        "refused a client not in the allow list"
                    );
                    drop(stream);
                }
                Err(e) => tracing::warn!("refused a client whose credentials cannot be read: {e}"),
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Serves every service and gRPC health on `listener` until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    api: Api,
    policy: AccessPolicy,
    capacity_poll: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::volume_group_service_server::VolumeGroupServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::logical_volume_service_server::LogicalVolumeServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::capacity_service_server::CapacityServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::node_service_server::NodeServiceServer<Api>>()
        .await;
    api.refresh_capacity().await;
    let capacity_task = api.spawn_capacity_task(capacity_poll);
    let incoming = checked_connections(listener, policy);
    let result = Server::builder()
        .add_service(health_service)
        .add_service(pb::volume_group_service_server::VolumeGroupServiceServer::new(api.clone()))
        .add_service(
            pb::logical_volume_service_server::LogicalVolumeServiceServer::new(api.clone()),
        )
        .add_service(pb::capacity_service_server::CapacityServiceServer::new(
            api.clone(),
        ))
        .add_service(pb::node_service_server::NodeServiceServer::new(api))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    capacity_task.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let p = AccessPolicy {
            allow_root: true,
            uids: vec![1000],
            gids: vec![50],
        };
        assert!(p.allows(0, 0));
        assert!(p.allows(1000, 1000));
        assert!(p.allows(1001, 50));
        assert!(!p.allows(1001, 1001));
        let strict = AccessPolicy {
            allow_root: false,
            ..p
        };
        assert!(!strict.allows(0, 0));
    }
}
