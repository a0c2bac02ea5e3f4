//! Connecting to lvmd's unix socket.

use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint, Uri};

/// A channel to the daemon listening on `socket`. The URI is a placeholder: every
/// connection goes to the socket.
pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket: PathBuf = socket.to_owned();
    Endpoint::from_static("http://lvmd.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let s = tokio::net::UnixStream::connect(&socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
}
