//! `gateway-tune`: check and tune the host, derive per-core configs.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tuning::apply::{self, Change};
use tuning::check::{self, CheckTarget, Mode};
use tuning::config::GatewayConfig;
use tuning::derive::{DeriveInput, derive_config};
use tuning::facts::OsFacts;
use tuning::host::{HostRoot, format_cpu_list, parse_cpu_list};
use tuning::plan::make_plan;

/// Columns `gateway-tune check` fits its table in without `--wide`.
const TABLE_WIDTH: usize = 100;

/// Command line of the tuner.
#[derive(Debug, Parser)]
#[command(version, about = "Check and tune the host for the gateway")]
struct Cli {
    /// Root of the host file system (for tests and chroots).
    #[arg(long, global = true, default_value = "/", hide = true)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// The connection target and shard placement.
#[derive(Debug, Args)]
struct Target {
    /// Client connections the host should hold.
    #[arg(long, default_value_t = 100_000)]
    target_conns: u64,
    /// CPUs to run one shard each on (`0-3,8`); default: every online CPU.
    #[arg(long)]
    cores: Option<String>,
}

/// What the tuner does.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check the host against a target (exit 0 ok, 1 warnings, 2 blocking).
    Check {
        #[command(flatten)]
        target: Target,
        /// Check this gateway config as the gateway does at start-up instead.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print a machine-readable JSON report.
        #[arg(long)]
        json: bool,
        /// One line per setting, however long (the table fits 100 columns
        /// otherwise, each why wrapped below its setting).
        #[arg(long)]
        wide: bool,
    },
    /// Print (or write) the sysctl.d file, systemd drop-in and gateway config.
    Plan {
        #[command(flatten)]
        target: Target,
        /// Write the three files into this directory instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Raise the plan's sysctls now (raise-only), recording the originals.
    Apply {
        #[command(flatten)]
        target: Target,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restore the sysctls `apply` changed.
    Revert {
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the per-core gateway config alone.
    Config {
        #[command(flatten)]
        target: Target,
    },
}

fn derive_input(root: &HostRoot, t: &Target) -> anyhow::Result<DeriveInput> {
    let online = root.online_cpus().context("reading online CPUs")?;
    let cpus = match &t.cores {
        Some(list) => {
            let cpus = parse_cpu_list(list)
                .with_context(|| format!("--cores `{list}` is not a CPU list like 0-3,8"))?;
            let offline: Vec<usize> = cpus
                .iter()
                .copied()
                .filter(|c| !online.contains(c))
                .collect();
            if !offline.is_empty() {
                bail!(
                    "--cores: CPU(s) {} are not online (online: {})",
                    format_cpu_list(&offline),
                    format_cpu_list(&online)
                );
            }
            cpus
        }
        None => online,
    };
    let mem_total_bytes = root
        .mem_total_bytes()?
        .context("/proc/meminfo has no MemTotal")?;
    Ok(DeriveInput {
        target_conns: t.target_conns,
        cpus,
        mem_total_bytes,
    })
}

fn print_changes(changes: &[Change], dry_run: bool, nothing: &str) {
    if changes.is_empty() {
        println!("{nothing}");
    }
    let prefix = if dry_run { "would change" } else { "changed" };
    for c in changes {
        println!("{prefix} {c}");
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let root = HostRoot::new(&cli.root);
    match cli.command {
        Command::Check {
            target,
            config,
            json,
            wide,
        } => {
            let report = match config {
                Some(path) => {
                    let cfg = GatewayConfig::from_file(&path)?;
                    let online = root.online_cpus()?.len();
                    cfg.validate(online)?;
                    check::check(
                        &root,
                        &OsFacts,
                        &CheckTarget::from_config(&cfg, online, Mode::Startup),
                    )
                }
                None => {
                    let derived = derive_config(&derive_input(&root, &target)?)?;
                    check::check(&root, &OsFacts, &CheckTarget::from_derived(&derived))
                }
            };
            if json {
                println!("{}", report.to_json());
            } else if wide {
                print!("{}", report.to_table());
            } else {
                print!("{}", report.to_table_width(TABLE_WIDTH));
            }
            Ok(report.exit_code())
        }
        Command::Plan { target, out } => {
            let plan = make_plan(&root, &OsFacts, &derive_input(&root, &target)?)?;
            match out {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    for (name, text) in plan.files() {
                        let path = dir.join(name);
                        std::fs::write(&path, text)
                            .with_context(|| format!("writing {}", path.display()))?;
                        println!("wrote {}", path.display());
                    }
                }
                None => {
                    for (name, text) in plan.files() {
                        println!("==> {name} <==\n{text}");
                    }
                }
            }
            Ok(0)
        }
        Command::Apply { target, dry_run } => {
            let plan = make_plan(&root, &OsFacts, &derive_input(&root, &target)?)?;
            let changes = apply::apply(&root, &plan.sysctls, dry_run)?;
            print_changes(
                &changes,
                dry_run,
                "nothing to raise: every sysctl is already high enough",
            );
            if !dry_run && !changes.is_empty() {
                println!(
                    "originals recorded in {}",
                    root.path(apply::STATE_FILE).display()
                );
            }
            Ok(0)
        }
        Command::Revert { dry_run } => {
            let changes = apply::revert(&root, dry_run)?;
            print_changes(&changes, dry_run, "nothing to revert");
            Ok(0)
        }
        Command::Config { target } => {
            print!(
                "{}",
                derive_config(&derive_input(&root, &target)?)?.to_toml()
            );
            Ok(0)
        }
    }
}

fn main() {
    let code = match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gateway-tune: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
