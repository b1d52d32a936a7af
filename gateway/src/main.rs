//! `gateway`: the thread-per-core connection gateway.

use clap::Parser;

/// Command line of the gateway (DESIGN.md §5).
#[derive(Debug, Parser)]
#[command(version, about = "Thread-per-core sharded connection gateway")]
struct Cli {
    /// TOML config file; embedded defaults when absent.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Client listen address (default 0.0.0.0:7100).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Control listen address (default 127.0.0.1:7101).
    #[arg(long)]
    control: Option<std::net::SocketAddr>,
    /// Number of shards (default: online CPUs).
    #[arg(long)]
    shards: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!("{cli:?}");
    Ok(())
}
