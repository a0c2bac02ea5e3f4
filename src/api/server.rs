//! Serving the API on a unix socket, with every peer checked by its kernel-reported
//! credentials (SO_PEERCRED) before tonic sees a byte from it ([`crate::socket::peer`]).

use super::service::Api;
use crate::rpc::pb;
use crate::socket::peer::{checked_connections, AccessPolicy};
use std::future::Future;
use std::time::Duration;
use tokio::net::UnixListener;
use tonic::transport::Server;

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
        .layer(super::audit::AuditLayer)
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
