//! lvmd-ctl: the admin's tool for lvmd. `inspect` reads devices directly, no daemon.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "lvmd-ctl", version, about = "Inspect and drive lvmd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read PV labels, metadata areas and volume groups straight from devices.
    Inspect {
        /// Block devices (or image files) to read.
        #[arg(required = true)]
        devices: Vec<PathBuf>,
        /// Print JSON (snake_case keys, sizes in bytes) instead of tables.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { devices, json } => {
            let report = lvmd::inspect::inspect(&devices);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serialises")
                );
            } else {
                print!("{}", report.to_text());
            }
            // Something unreadable is worth a non-zero exit for scripts.
            if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}
