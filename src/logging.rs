//! Structured logs with `tracing`: plain lines without timestamps or colour under
//! systemd (journald stamps and stores them), JSON on request. `RUST_LOG` filters
//! (default `info`, and h2's server at `debug` for the streams it resets).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    // h2's server says at debug level why it reset a stream, and that is the only
    // trace of a client it refuses (a refused `:authority` no longer reaches it, see
    // socket::authority; other protocol errors do): worth seeing by default.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2::server=debug"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if journal => builder
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
