//! The audit trail: one log line for every request that changes something and for
//! every request refused, naming who asked (the socket peer's uid, gid and pid, which
//! the kernel reports, SO_PEERCRED) and the outcome. The engine's own lines ("created
//! logical volume ...") run inside the request's span, so they carry the same peer.
//!
//! A tower layer rather than a line in each RPC: every service, health included, goes
//! through it, and no new RPC can forget it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::transport::server::UdsConnectInfo;
use tonic::Code;
use tracing::Instrument;

/// Where audit lines go (filter with `RUST_LOG=lvmd::audit=info`).
pub const TARGET: &str = "lvmd::audit";

#[derive(Debug, Clone, Copy, Default)]
pub struct AuditLayer;

impl<S> tower::Layer<S> for AuditLayer {
    type Service = Audit<S>;
    fn layer(&self, inner: S) -> Audit<S> {
        Audit { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Audit<S> {
    inner: S,
}

/// Whether a method only reads (`/lvmd.v1.LogicalVolumeService/ListLogicalVolumes`).
fn reads_only(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or("");
    path.starts_with("/grpc.health.")
        || ["List", "Get", "Watch", "Check"]
            .iter()
            .any(|p| method.starts_with(p))
}

/// The peer as `uid=… gid=… pid=…`, or `unknown` (a connection without credentials).
fn peer_of<B>(req: &http::Request<B>) -> String {
    match req
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred)
    {
        Some(c) => format!(
            "uid={} gid={} pid={}",
            c.uid(),
            c.gid(),
            c.pid().map_or_else(|| "?".to_string(), |p| p.to_string())
        ),
        None => "unknown".into(),
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Audit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let rpc = req.uri().path().to_owned();
        let peer = peer_of(&req);
        let span = tracing::info_span!("rpc", rpc = %rpc, peer = %peer);
        let fut = self.inner.call(req).instrument(span.clone());
        Box::pin(async move {
            let resp = fut.await?;
            // A refusal comes back "trailers-only": its status is in the headers. An
            // answer without one is OK (a stream's later failure is the stream's).
            let _g = span.enter();
            match tonic::Status::from_header_map(resp.headers()) {
                Some(s) if s.code() != Code::Ok => tracing::warn!(
                    target: TARGET,
                    code = ?s.code(),
                    message = s.message(),
                    "refused"
                ),
                _ if !reads_only(&rpc) => tracing::info!(target: TARGET, "done"),
                _ => {}
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_told_from_changes() {
        for r in [
            "/lvmd.v1.LogicalVolumeService/ListLogicalVolumes",
            "/lvmd.v1.LogicalVolumeService/GetLogicalVolume",
            "/lvmd.v1.CapacityService/WatchCapacity",
            "/lvmd.v1.NodeService/GetPathStats",
            "/grpc.health.v1.Health/Check",
        ] {
            assert!(reads_only(r), "{r}");
        }
        for c in [
            "/lvmd.v1.LogicalVolumeService/CreateLogicalVolume",
            "/lvmd.v1.LogicalVolumeService/RemoveLogicalVolume",
            "/lvmd.v1.NodeService/MountVolume",
            "/lvmd.v1.NodeService/Unmount",
            "/lvmd.v1.VolumeGroupService/ExtendVolumeGroup",
        ] {
            assert!(!reads_only(c), "{c}");
        }
    }
}
