//! CSI Identity: who we are, what we offer, and whether lvmd answers.

use super::metrics::timed;
use super::pb::identity_server::Identity;
use super::pb::plugin_capability::{service, volume_expansion, Service, Type, VolumeExpansion};
use super::pb::*;
use super::Plugin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[derive(Clone)]
pub struct IdentityService(pub Arc<Plugin>);

fn service_cap(t: service::Type) -> PluginCapability {
    PluginCapability {
        r#type: Some(Type::Service(Service { r#type: t as i32 })),
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        timed(&self.0.metrics, "GetPluginInfo", async {
            Ok(GetPluginInfoResponse {
                name: self.0.config.driver_name.clone(),
                vendor_version: env!("CARGO_PKG_VERSION").into(),
                manifest: Default::default(),
            })
        })
        .await
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        timed(&self.0.metrics, "GetPluginCapabilities", async {
            Ok(GetPluginCapabilitiesResponse {
                capabilities: vec![
                    service_cap(service::Type::ControllerService),
                    service_cap(service::Type::VolumeAccessibilityConstraints),
                    // Group snapshots of a class's thin volumes (`group_snapshots`).
                    service_cap(service::Type::GroupControllerService),
                    PluginCapability {
                        r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                            r#type: volume_expansion::Type::Online as i32,
                        })),
                    },
                ],
            })
        })
        .await
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        timed(&self.0.metrics, "Probe", async {
            if self.0.config.controller_only {
                return Ok(ProbeResponse { ready: Some(true) });
            }
            let mut h = HealthClient::new(self.0.channel());
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                h.check(HealthCheckRequest {
                    service: String::new(),
                }),
            )
            .await;
            match r {
                Ok(Ok(r)) if r.get_ref().status == 1 => Ok(ProbeResponse { ready: Some(true) }),
                Ok(Ok(r)) => Err(Status::failed_precondition(format!(
                    "lvmd is not serving (health status {})",
                    r.get_ref().status
                ))),
                // lvmd down is not this plugin's fault: not ready, so the CO waits instead of
                // restarting a plugin that would come back to the same missing daemon.
                Ok(Err(s)) => {
                    tracing::warn!("lvmd health check failed: {}", s.message());
                    Ok(ProbeResponse { ready: Some(false) })
                }
                Err(_) => {
                    tracing::warn!("lvmd did not answer its health check in 5 s");
                    Ok(ProbeResponse { ready: Some(false) })
                }
            }
        })
        .await
    }
}
