//! `gateway-bench`: the load harness (scenarios land with the harness issue).

use clap::{Parser, Subcommand};

/// Command line of the load harness.
#[derive(Debug, Parser)]
#[command(version, about = "Load harness for long-lived-connection systems")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Scenarios the harness runs.
#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open N connections at a rate, handshake, hold.
    Connect,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!("{cli:?}");
    Ok(())
}
