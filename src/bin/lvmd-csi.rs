//! lvmd-csi: the CSI plugin for lvmd. Serves CSI Identity, Controller and Node on its
//! own unix socket and does all privileged work through lvmd's socket.

use clap::Parser;
use lvmd::csi::{server, MountCheck, PluginConfig, DEFAULT_DRIVER_NAME, DEFAULT_TOPOLOGY_KEY};
use lvmd::logging::{self, LogFormat};
use lvmd::socket::AccessPolicy;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Check {
    /// This process's /proc/self/mountinfo (production).
    Mountinfo,
    /// lvmd's GetPathStats: only with `lvmd --simulate`, whose mounts are in memory.
    Lvmd,
}

#[derive(Parser)]
#[command(name = "lvmd-csi", version, about = "CSI plugin for lvmd")]
struct Cli {
    /// Where to serve CSI.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    csi_endpoint: String,
    /// lvmd's socket on the host.
    #[arg(long, env = "LVMD_SOCKET", default_value = "/run/lvmd/lvmd.sock")]
    lvmd_socket: PathBuf,
    /// This node's name (the Kubernetes node name: spec.nodeName).
    #[arg(long, env = "NODE_ID")]
    node_id: String,
    #[arg(long, env = "CSI_DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME)]
    driver_name: String,
    #[arg(long, env = "CSI_TOPOLOGY_KEY", default_value = DEFAULT_TOPOLOGY_KEY)]
    topology_key: String,
    /// Volumes the scheduler may place on this node (0: no limit).
    #[arg(long, env = "CSI_MAX_VOLUMES", default_value_t = 0)]
    max_volumes: i64,
    /// Prometheus metrics at http://ADDR/metrics (empty: off). Loopback unless told:
    /// the chart passes the pod's address for Prometheus to scrape.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "127.0.0.1:9808")]
    metrics_address: String,
    #[arg(long, value_enum, default_value = "mountinfo")]
    mount_check: Check,
    /// For the cluster-wide resizer's pod, which has no lvmd beside it.
    #[arg(long)]
    controller_only: bool,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// A uid, besides root, that may connect to the CSI socket (repeat, or comma-separated).
    /// Kubelet and the sidecars run as root; name here a sidecar given a runAsUser.
    #[arg(long = "allow-uid", env = "CSI_ALLOW_UIDS", value_delimiter = ',')]
    allow_uids: Vec<u32>,
    /// A primary gid whose processes may connect to the CSI socket (repeat, or
    /// comma-separated).
    #[arg(long = "allow-gid", env = "CSI_ALLOW_GIDS", value_delimiter = ',')]
    allow_gids: Vec<u32>,
}

impl Cli {
    /// Root always: kubelet is root and the plugin is useless without it.
    fn access_policy(&self) -> AccessPolicy {
        AccessPolicy {
            allow_root: true,
            uids: self.allow_uids.clone(),
            gids: self.allow_gids.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let socket = match server::endpoint_path(&cli.csi_endpoint) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("lvmd-csi: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.node_id.is_empty() || cli.node_id.contains('#') {
        eprintln!("lvmd-csi: --node-id must be a node name (non-empty, no '#')");
        return ExitCode::from(2);
    }
    let policy = cli.access_policy();
    let config = PluginConfig {
        driver_name: cli.driver_name,
        node_id: cli.node_id,
        topology_key: cli.topology_key,
        max_volumes: cli.max_volumes,
        mount_check: match cli.mount_check {
            Check::Mountinfo => MountCheck::Mountinfo,
            Check::Lvmd => MountCheck::Lvmd,
        },
        controller_only: cli.controller_only,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lvmd-csi: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async {
        let plugin = server::plugin(config, &cli.lvmd_socket);
        if !cli.metrics_address.is_empty() {
            let l = tokio::net::TcpListener::bind(&cli.metrics_address).await?;
            tracing::info!(address = %l.local_addr()?, "metrics");
            tokio::spawn(lvmd::csi::metrics::serve(l, plugin.clone()));
        }
        server::serve(plugin, &socket, policy, shutdown_signal()).await
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("lvmd-csi: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["lvmd-csi", "--node-id", "n"]).unwrap();
        assert_eq!(cli.access_policy(), AccessPolicy::default());
        let cli = Cli::try_parse_from([
            "lvmd-csi",
            "--node-id=n",
            "--allow-uid=1000",
            "--allow-uid",
            "1001,1002",
            "--allow-gid=50",
        ])
        .unwrap();
        let p = cli.access_policy();
        assert!(p.allow_root);
        assert_eq!(p.uids, [1000, 1001, 1002]);
        assert_eq!(p.gids, [50]);
        assert!(Cli::try_parse_from(["lvmd-csi", "--node-id=n", "--allow-uid=-1"]).is_err());
    }
}
