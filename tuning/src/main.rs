//! `gateway-tune`: check and tune the host, derive per-core configs.

use clap::{Parser, Subcommand};

/// Command line of the tuner.
#[derive(Debug, Parser)]
#[command(version, about = "Check and tune the host for the gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What the tuner does.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check the host against a target connection count.
    Check,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!("{cli:?}");
    Ok(())
}
