//! lvmd: the host daemon that owns LVM on a node, serving gRPC on a unix socket.
//!
//! Here the layers meet: the daemon's engine ([`lvmd::daemon`]) served by the gRPC
//! front-end ([`lvmd::api`]) on a socket ([`lvmd::socket`]). None of them imports the
//! others above it.

use clap::Parser;
use lvmd::api::{serve, Api};
use lvmd::daemon::classes::DeviceClasses;
use lvmd::daemon::config::{Config, DEFAULT_CONFIG};
use lvmd::daemon::engine::Engine;
use lvmd::daemon::run;
use lvmd::logging::{self, LogFormat};
use lvmd::socket::listen::{listen, notify, NotifyState, Source};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

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
    /// Serve an in-memory engine that touches no device; CSI targets are plain directories
    /// and files beneath the mount roots (demos, tests, trying the chart).
    #[arg(long)]
    simulate: bool,
}

/// glibc gives each thread that allocates its own arena (up to 8 per core) and keeps
/// what was freed in it. The daemon runs each request on a blocking thread, so a burst
/// of a hundred requests on a VG of thousands of volumes, each rendering and
/// checking megabytes of metadata, left hundreds of MiB resident (385 MiB after a
/// burst of 100 at 5000 LVs in benches/scale, 85 MiB with two arenas, at the same
/// speed). With two, a listing's or a commit's short-lived megabytes still sat free in
/// both arenas at once: one arena left 5 to 6 MiB less resident at 5000 LVs (about 24
/// against 30 MiB), the bursts and create + remove within the noise (glibc's
/// per-thread caches serve the small allocations without the arena's lock). One
/// arena: called before any other thread exists.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
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
        .await??;
        serve_engine(config, engine).await
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

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let _ = notify(NotifyState::Stopping);
}

/// Serves `engine` as `config` says until SIGTERM/SIGINT.
async fn serve_engine(config: Config, engine: Arc<dyn Engine>) -> Result<(), Error> {
    let (listener, source) = listen(&config.socket, config.socket_group.as_deref())?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    lvmd::daemon::auto_repair::spawn(engine.clone(), &config);
    lvmd::daemon::auto_grow::spawn(engine.clone(), &config);
    let api = Api::new(engine.clone(), DeviceClasses::from_config(&config));
    let policy = config.access_policy();
    tracing::info!(socket = %config.socket.display(), from_systemd = (source == Source::Systemd), allow = %policy, "listening");
    if let Some(why) = run::unreachable_peers(&config, &source) {
        tracing::warn!(socket = %config.socket.display(), "{why}");
    }
    match notify(NotifyState::Ready) {
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot notify systemd: {e}"),
    }
    let poll = Duration::from_secs(config.capacity_poll_seconds);
    let r = serve(listener, api, policy, poll, shutdown_signal()).await;
    // Backups of the last commits, so a clean stop leaves them current.
    engine.flush_background_writes();
    if source == Source::Bound {
        let _ = std::fs::remove_file(&config.socket);
    }
    r?;
    Ok(())
}
