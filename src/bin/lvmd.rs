//! lvmd: the host daemon that owns LVM on a node, serving gRPC on a unix socket.

use clap::Parser;
use lvmd::daemon::config::{Config, DEFAULT_CONFIG};
use lvmd::daemon::logging::{self, LogFormat};
use lvmd::daemon::run;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lvmd",
    version,
    about = "LVM for Kubernetes nodes: the host daemon"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Socket path (overrides the configuration's `socket`).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Serve an in-memory engine that changes nothing on this machine (demos, tests).
    #[arg(long)]
    simulate: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let config = match &cli.config {
        Some(path) => Config::load(path),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
            Config::load(std::path::Path::new(DEFAULT_CONFIG))
        }
        None => {
            tracing::warn!("{DEFAULT_CONFIG} not found; using the built-in defaults");
            Ok(Config::default())
        }
    };
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lvmd: refusing to start: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(s) = cli.socket {
        config.socket = s;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lvmd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let c = config.clone();
        let simulate = cli.simulate;
        let engine = tokio::task::spawn_blocking(move || {
            if simulate {
                run::simulated_engine(&c)
            } else {
                run::real_engine(&c)
            }
        })
        .await?;
        run::run(config, engine).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("lvmd: {e}");
            ExitCode::FAILURE
        }
    }
}
