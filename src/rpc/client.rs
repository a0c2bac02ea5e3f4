//! Connecting to lvmd's unix socket.

use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint, Uri};

/// The URI is a placeholder: every connection goes to the socket.
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://lvmd.local")
}

/// Opens a new stream to `socket` for each connection tonic makes.
fn unix_connector(
    socket: &Path,
) -> impl tower::Service<
    Uri,
    Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
       + Send {
    let socket: PathBuf = socket.to_owned();
    tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move {
            let s = tokio::net::UnixStream::connect(&socket).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }
    })
}

/// A channel to the daemon listening on `socket`, connected now.
pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    endpoint()
        .connect_with_connector(unix_connector(socket))
        .await
}

/// A channel that connects on first use and reconnects after lvmd restarts (lvmd-csi
/// starts, and answers Probe "not ready", while lvmd is still coming up).
pub fn connect_lazy(socket: &Path) -> Channel {
    endpoint().connect_with_connector_lazy(unix_connector(socket))
}
