//! `gateway`: the thread-per-core connection gateway (DESIGN.md §5).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use gateway::runtime::Gateway;
use gateway::settings::Settings;
use protocol::auth::JwtVerifier;
use tuning::config::GatewayConfig;

/// Command line of the gateway.
#[derive(Debug, Parser)]
#[command(
    version = gateway::build_info::LONG_VERSION,
    about = "Thread-per-core sharded connection gateway on io_uring (epoll where io_uring is not allowed)",
    long_about = "Thread-per-core sharded connection gateway on io_uring, or on epoll where \
        io_uring is not allowed.\n\n\
        Without a subcommand it runs the gateway (embedded defaults unless --config). \
        The subcommands are tools for people: mint a token, subscribe, push, read the \
        counters, print a starter config.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// A tool instead of the server.
    #[command(subcommand)]
    command: Option<gateway::cli::Command>,
    /// TOML config file; embedded defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Client listen address [default: 0.0.0.0:7100].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Control listen address [default: 127.0.0.1:7101].
    #[arg(long)]
    control: Option<std::net::SocketAddr>,
    /// Number of shards [default: online CPUs].
    #[arg(long)]
    shards: Option<usize>,
    /// Which driver runs the shards: auto (io_uring where allowed, else
    /// epoll), io_uring or epoll [default: the config's, auto].
    #[arg(long)]
    driver: Option<tuning::config::DriverChoice>,
    /// Directory of the durable store [default: the config's `[store] dir`,
    /// gateway-data under the working directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Once every listener is bound, write their addresses to this file as
    /// `client=ADDR` and `control=ADDR` lines, and `websocket=`,
    /// `client_tls=`, `websocket_tls=`, `mqtt=` and `mqtt_tls=ADDR` for
    /// those listeners when they
    /// are configured (written whole, by rename), so
    /// that whoever asked for port 0 learns the ports without a race.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// Writes the bound addresses to `path` in one rename, so a reader never
/// sees half a file.
fn write_ready_file(path: &std::path::Path, gateway: &Gateway) -> anyhow::Result<()> {
    let mut text = format!(
        "client={}\ncontrol={}\n",
        gateway.client_addr, gateway.control_addr
    );
    for (name, addr) in [
        ("websocket", gateway.websocket_addr),
        ("client_tls", gateway.client_tls_addr),
        ("websocket_tls", gateway.websocket_tls_addr),
        ("mqtt", gateway.mqtt_addr),
        ("mqtt_tls", gateway.mqtt_tls_addr),
    ] {
        if let Some(addr) = addr {
            text.push_str(&format!("{name}={addr}\n"));
        }
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .with_context(|| format!("--ready-file: cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("--ready-file: cannot rename to {}", path.display()))
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Raises the fd soft limit to the hard one (each ring's direct-descriptor
/// table is bounded by it) and returns the soft limit now in force.
fn raise_nofile() -> u64 {
    match tuning::facts::raise_nofile_soft_to_hard() {
        Ok(lim) => lim.soft,
        Err(e) => {
            tracing::warn!("could not raise RLIMIT_NOFILE: {e}");
            1024
        }
    }
}

/// The tuner's start-up check, with the io_uring verdict the driver choice
/// took: each warning logged once; blocking findings stop the gateway with
/// the check's own explanation.
fn startup_check(
    cfg: &GatewayConfig,
    cpus: usize,
    uring: &tuning::uring::UringFeatures,
) -> anyhow::Result<()> {
    let report = tuning::check::startup_check(&tuning::host::HostRoot::system(), cfg, cpus, uring);
    for w in report.warnings() {
        tracing::warn!(key = %w.key, current = %w.current, recommended = %w.recommended, "{}", w.why);
    }
    let blocking: Vec<String> = report
        .blocking()
        .map(|f| {
            format!(
                "{} = {} (needs {}): {}",
                f.key, f.current, f.recommended, f.why
            )
        })
        .collect();
    if !blocking.is_empty() {
        bail!("host check failed:\n  {}", blocking.join("\n  "));
    }
    Ok(())
}

/// Says once, when a TLS listener is configured, whether the kernel offers
/// kTLS; the records are encrypted by rustls in user space either way.
fn log_ktls(offer: &tuning::ktls::KtlsOffer) {
    use tuning::ktls::KtlsOffer;
    match offer {
        KtlsOffer::Offered => tracing::info!(
            "kTLS: the kernel offers the tls ULP; not used (offload is not built): rustls encrypts in user space"
        ),
        KtlsOffer::NotOffered(ulps) => tracing::info!(
            available_ulps = %ulps,
            "kTLS: the kernel has no tls ULP; rustls encrypts in user space"
        ),
        KtlsOffer::Unknown(why) => tracing::info!(
            "kTLS: unknown whether the kernel offers it ({why}); rustls encrypts in user space"
        ),
    }
}

/// Probes io_uring once and decides the driver (see `tuning::driver`);
/// `driver = "io_uring"` on a host without it is a one-line error. Why auto
/// fell back to epoll is the start-up check's `shard.driver` warning,
/// logged once. The verdict goes on to the start-up check.
fn choose_driver(
    choice: tuning::config::DriverChoice,
) -> anyhow::Result<(tuning::driver::Driver, tuning::uring::UringFeatures)> {
    let uring = tuning::check::io_uring_features(
        &tuning::host::HostRoot::system(),
        &tuning::facts::OsFacts,
    );
    let driver = tuning::driver::decide(choice, &uring)?.driver;
    Ok((driver, uring))
}

/// A random secret for when none is configured: nobody can mint tokens
/// for it, so the gateway is safe but refuses every client until one is set.
fn random_secret() -> Vec<u8> {
    let mut buf = vec![0u8; 32];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        buf = format!("{}:{}", t.as_nanos(), std::process::id()).into_bytes();
    }
    buf
}

fn load_config(cli: &Cli) -> anyhow::Result<GatewayConfig> {
    let mut cfg = match &cli.config {
        Some(path) => GatewayConfig::from_file(path)?,
        None => GatewayConfig::default(),
    };
    if let Some(a) = cli.listen {
        cfg.listen.client = a;
    }
    if let Some(a) = cli.control {
        cfg.listen.control = a;
    }
    if let Some(n) = cli.shards {
        if n == 0 {
            bail!("--shards must be at least 1");
        }
        cfg.shard.count = n;
    }
    if let Some(d) = cli.driver {
        cfg.shard.driver = d;
    }
    if let Some(dir) = &cli.data_dir {
        cfg.store.dir.clone_from(dir);
    }
    if let Ok(secret) = std::env::var("GATEWAY_JWT_SECRET")
        && !secret.is_empty()
    {
        let hs256 = cfg.auth.mode == tuning::backends::AuthMode::Jwt
            && cfg.auth.algorithm == tuning::backends::JwtAlgorithm::HS256;
        if hs256
            && let Some(why) = tuning::config::hs256_secret_problem(&secret, "GATEWAY_JWT_SECRET")
        {
            bail!("{why}");
        }
        cfg.auth.jwt_secret = Some(secret);
    }
    Ok(cfg)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread (and the shard threads
/// it spawns) so they are taken only by [`wait_for_signal`].
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set, then masking it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for SIGTERM/SIGINT, returning early `None` if `stop_early` says
/// so; a SIGHUP goes to `on_hangup` and the wait goes on.
fn wait_for_signal(
    set: &libc::sigset_t,
    mut stop_early: impl FnMut() -> bool,
    mut on_hangup: impl FnMut(),
) -> Option<i32> {
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    loop {
        // SAFETY: waits for a signal of `set`, which this thread blocks.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
        if sig == libc::SIGHUP {
            on_hangup();
            continue;
        }
        if sig > 0 {
            return Some(sig);
        }
        if stop_early() {
            return None;
        }
    }
}

fn main() {
    let mut cli = Cli::parse();
    let result = match cli.command.take() {
        Some(command) => command.run().map_err(anyhow::Error::from),
        None => run(cli),
    };
    if let Err(e) = result {
        // Each cause once, even when an error prints its source too.
        eprintln!("gateway: {}", gateway::cli::error_chain(e.as_ref()));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = load_config(&cli)?;
    init_logging(&cfg.log.level);
    let mut cfg = cfg;
    let cpus = online_cpus();
    let (driver, uring) = choose_driver(cfg.shard.driver)?;
    let shards = if cfg.shard.count == 0 {
        cpus
    } else {
        cfg.shard.count
    };
    gateway::settings::resolve_auto_limits(&mut cfg, raise_nofile(), driver, shards);
    cfg.validate(cpus)?;
    startup_check(&cfg, cpus, &uring)?;
    let mut settings = Settings::new(cfg, cpus)?;
    settings.driver = driver;
    let auth = &settings.config.auth;
    let hs256_in_use = auth.mode == tuning::backends::AuthMode::Jwt
        && auth.algorithm == tuning::backends::JwtAlgorithm::HS256;
    let secret = match &auth.jwt_secret {
        Some(s) => s.as_bytes().to_vec(),
        None if !hs256_in_use => random_secret(),
        None => {
            tracing::warn!(
                "no JWT secret (auth.jwt_secret or GATEWAY_JWT_SECRET): using a random one, so every client will be refused until you set one"
            );
            random_secret()
        }
    };
    let auth = &settings.config.auth;
    let verifier = match (&auth.algorithm, &auth.public_key_file) {
        (tuning::backends::JwtAlgorithm::RS256, Some(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("auth.public_key_file: cannot read {path}"))?;
            Arc::new(
                JwtVerifier::rs256_pem(&pem, auth.leeway_s)
                    .with_context(|| format!("auth.public_key_file: {path}"))?,
            )
        }
        _ => Arc::new(JwtVerifier::hs256(&secret, auth.leeway_s)),
    };
    let signals = block_signals();
    let c = &settings.config;
    tracing::info!(
        client = %c.listen.client,
        control = %c.listen.control,
        shards = settings.shards.len(),
        driver = %settings.driver,
        max_connections_per_shard = settings.shards.first().map(|s| s.settings.max_connections),
        heartbeat_ms = c.protocol.heartbeat_default_ms,
        config = cli.config.as_ref().map_or("embedded defaults".to_string(), |p| p.display().to_string()),
        "starting gateway"
    );
    let gateway = Gateway::start(settings, verifier).context("gateway failed to start")?;
    tracing::info!(
        client = %gateway.client_addr,
        control = %gateway.control_addr,
        websocket = gateway.websocket_addr.map(|a| a.to_string()),
        client_tls = gateway.client_tls_addr.map(|a| a.to_string()),
        websocket_tls = gateway.websocket_tls_addr.map(|a| a.to_string()),
        mqtt = gateway.mqtt_addr.map(|a| a.to_string()),
        mqtt_tls = gateway.mqtt_tls_addr.map(|a| a.to_string()),
        "listening"
    );
    let tls_listeners = [
        gateway.client_tls_addr,
        gateway.websocket_tls_addr,
        gateway.mqtt_tls_addr,
    ];
    if tls_listeners.iter().any(Option::is_some) {
        log_ktls(&tuning::ktls::ktls_offer(&tuning::host::HostRoot::system()));
    }
    if let Some(path) = &cli.ready_file {
        write_ready_file(path, &gateway)?;
    }
    let shared = gateway.shared().clone();
    let reload = || match gateway.reload_tls() {
        Some(Ok(n)) => tracing::info!(reloads = n, "SIGHUP: TLS certificate and key reloaded"),
        Some(Err(e)) => {
            tracing::error!("SIGHUP: TLS reload failed, the old certificate stays: {e}")
        }
        None => tracing::info!("SIGHUP: nothing to reload (no TLS listener)"),
    };
    let stopped_early = wait_for_signal(&signals, || gateway.any_finished(), reload).is_none();
    if stopped_early {
        tracing::error!("a shard stopped unexpectedly; shutting down");
    } else {
        tracing::info!("signal received: draining");
    }
    shared.request_shutdown();
    gateway.join()?;
    if stopped_early {
        bail!("a shard stopped unexpectedly");
    }
    tracing::info!("bye");
    Ok(())
}
