//! Starting the peers for side-by-side runs, on loopback only, with
//! explicit configs: mosquitto 2.x (`listener <port> 127.0.0.1`,
//! `allow_anonymous true`, no connection cap) and nats-server
//! (`-a 127.0.0.1`, no HTTP monitor, no clustering).

use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors starting a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The binary is missing or failed to start.
    #[error("cannot start {what}: {source} (install it: apt-get install -y {package})")]
    Spawn {
        /// Binary.
        what: &'static str,
        /// Debian package.
        package: &'static str,
        /// Error.
        source: std::io::Error,
    },
    /// It did not listen in time.
    #[error("{what} did not listen on {addr} within 10 s; its log: {log}")]
    NotListening {
        /// Binary.
        what: &'static str,
        /// Address.
        addr: SocketAddrV4,
        /// Log file.
        log: String,
    },
    /// Writing its config failed.
    #[error("cannot write the {what} config: {source}")]
    Config {
        /// Binary.
        what: &'static str,
        /// Error.
        source: std::io::Error,
    },
}

/// A peer process, killed on drop.
#[derive(Debug)]
pub struct PeerProc {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddrV4,
    dir: PathBuf,
}

impl PeerProc {
    /// Its pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("peer.log")).unwrap_or_default()
    }
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn workdir(tag: &str, port: u16) -> Result<PathBuf, std::io::Error> {
    let d = std::env::temp_dir().join(format!("gateway-bench-{tag}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn wait_listening(
    child: &mut Child,
    what: &'static str,
    addr: SocketAddrV4,
    dir: &Path,
) -> Result<(), PeerError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(PeerError::NotListening {
        what,
        addr,
        log: std::fs::read_to_string(dir.join("peer.log")).unwrap_or_default(),
    })
}

/// How a peer's listener is reached: plain or WebSocket, with or without
/// TLS (its certificate chain and key, PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerListener {
    /// WebSocket (mosquitto's `protocol websockets`, nats-server's
    /// `websocket {}` block) instead of the peer's own protocol.
    pub websocket: bool,
    /// The certificate chain and key files, for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// mosquitto's config for a loopback benchmark listener on `port`.
#[must_use]
pub fn mosquitto_config(port: u16) -> String {
    mosquitto_config_for(port, &PeerListener::default(), Path::new("."), false)
}

/// mosquitto's config for a loopback benchmark listener on `port`, as
/// `listener` says (Debian's mosquitto 2.0 has websockets built in, on
/// libwebsockets), its files in `dir`.
///
/// - `started_as_root`: mosquitto started as root switches to the
///   `mosquitto` user, which cannot read a key only its owner may read (a
///   0600 key is the norm), so the config keeps the identity of whoever
///   started it, as the gateway does (`user root`).
/// - A websockets listener: mosquitto 2.0.11 refuses to start with only a
///   websockets listener ("Unable to start any listening sockets",
///   eclipse-mosquitto/mosquitto#2284), so the config adds an MQTT
///   listener on a unix socket in `dir` that nobody connects to. Its
///   libwebsockets binds that listener to every address whatever the
///   config says (#2085, #3045); the harness still connects over loopback.
#[must_use]
pub fn mosquitto_config_for(
    port: u16,
    listener: &PeerListener,
    dir: &Path,
    started_as_root: bool,
) -> String {
    let mut before = String::new();
    let mut extra = String::new();
    if listener.websocket {
        before.push_str(&format!("listener 0 {}\n", dir.join("mqtt.sock").display()));
        extra.push_str("protocol websockets\n");
    }
    if let Some((cert, key)) = &listener.tls {
        extra.push_str(&format!(
            "certfile {}\nkeyfile {}\n",
            cert.display(),
            key.display()
        ));
    }
    format!(
        "# gateway-bench: loopback only, anonymous, no connection cap, no persistence\n\
         {before}listener {port} 127.0.0.1\n{extra}\
         allow_anonymous true\n\
         max_connections -1\n\
         persistence false\n\
         max_queued_messages 10000\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n{}",
        if started_as_root { "user root\n" } else { "" }
    )
}

/// A peer as the harness runs it: binary, arguments and config, ready to
/// spawn (side-by-side runs) or to exec (`gateway-bench peer`, for
/// scripts that measure the peer's own process).
#[derive(Debug)]
pub struct PeerCommand {
    /// Binary name, for messages.
    pub what: &'static str,
    /// Debian package that provides it.
    pub package: &'static str,
    /// The command line.
    pub command: Command,
}

/// mosquitto on 127.0.0.1:`port`, its config written into `dir`.
pub fn mosquitto_command(port: u16, dir: &Path) -> Result<PeerCommand, PeerError> {
    mosquitto_command_for(port, &PeerListener::default(), dir)
}

/// mosquitto on 127.0.0.1:`port` with `listener`, its config written into `dir`.
pub fn mosquitto_command_for(
    port: u16,
    listener: &PeerListener,
    dir: &Path,
) -> Result<PeerCommand, PeerError> {
    let what = "mosquitto";
    let conf = dir.join("mosquitto.conf");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let started_as_root = unsafe { libc::geteuid() } == 0;
    let config = mosquitto_config_for(port, listener, dir, started_as_root);
    std::fs::write(&conf, config).map_err(|source| PeerError::Config { what, source })?;
    let bin = ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("mosquitto");
    let mut command = Command::new(bin);
    command.arg("-c").arg(&conf);
    Ok(PeerCommand {
        what,
        package: "mosquitto",
        command,
    })
}

/// nats-server on 127.0.0.1:`port`. Its defaults suit the runs:
/// max_connections 64k, max_payload 1 MB, no monitor port.
#[must_use]
pub fn nats_command(port: u16) -> PeerCommand {
    let mut command = Command::new("nats-server");
    command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    PeerCommand {
        what: "nats-server",
        package: "nats-server",
        command,
    }
}

/// nats-server's config for `listener` on 127.0.0.1:`port`: the client
/// port there (with `tls {}` for TLS), or a WebSocket port there
/// (`websocket { no_tls }` or with `tls {}`) and the client port on a
/// port of the kernel's choosing.
#[must_use]
pub fn nats_config(port: u16, listener: &PeerListener) -> String {
    let tls = listener.tls.as_ref().map(|(cert, key)| {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            cert.display(),
            key.display()
        )
    });
    if listener.websocket {
        let inner = tls.unwrap_or_else(|| "no_tls: true\n".into());
        format!(
            "listen: \"127.0.0.1:-1\"\nwebsocket {{\nhost: \"127.0.0.1\"\nport: {port}\n{inner}}}\n"
        )
    } else {
        format!("listen: \"127.0.0.1:{port}\"\n{}", tls.unwrap_or_default())
    }
}

/// nats-server with `listener` on 127.0.0.1:`port`, its config written
/// into `dir`.
pub fn nats_command_for(
    port: u16,
    listener: &PeerListener,
    dir: &Path,
) -> Result<PeerCommand, PeerError> {
    let what = "nats-server";
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, nats_config(port, listener))
        .map_err(|source| PeerError::Config { what, source })?;
    let mut command = Command::new("nats-server");
    command.arg("-c").arg(&conf);
    Ok(PeerCommand {
        what,
        package: "nats-server",
        command,
    })
}

/// Starts mosquitto on 127.0.0.1:`port`.
pub fn start_mosquitto(port: u16) -> Result<PeerProc, PeerError> {
    start_mosquitto_with(port, &PeerListener::default())
}

/// Starts mosquitto on 127.0.0.1:`port` with `listener`.
pub fn start_mosquitto_with(port: u16, listener: &PeerListener) -> Result<PeerProc, PeerError> {
    let dir = workdir("mosquitto", port).map_err(|source| PeerError::Config {
        what: "mosquitto",
        source,
    })?;
    let peer = mosquitto_command_for(port, listener, &dir)?;
    spawn(peer, port, dir)
}

/// Starts nats-server on 127.0.0.1:`port`.
pub fn start_nats(port: u16) -> Result<PeerProc, PeerError> {
    let dir = workdir("nats", port).map_err(|source| PeerError::Config {
        what: "nats-server",
        source,
    })?;
    spawn(nats_command(port), port, dir)
}

/// Starts nats-server with `listener` on 127.0.0.1:`port`.
pub fn start_nats_with(port: u16, listener: &PeerListener) -> Result<PeerProc, PeerError> {
    let dir = workdir("nats", port).map_err(|source| PeerError::Config {
        what: "nats-server",
        source,
    })?;
    let peer = nats_command_for(port, listener, &dir)?;
    spawn(peer, port, dir)
}

/// Replaces this process with `peer` (its stdio inherited), so the caller's
/// pid is the peer's: what a script measures is the peer itself. Returns
/// only if the exec failed.
#[must_use]
pub fn exec(mut peer: PeerCommand) -> PeerError {
    use std::os::unix::process::CommandExt;
    PeerError::Spawn {
        what: peer.what,
        package: peer.package,
        source: peer.command.exec(),
    }
}

/// Runs `peer` with its log in `dir` and waits until it listens on `port`.
fn spawn(mut peer: PeerCommand, port: u16, dir: PathBuf) -> Result<PeerProc, PeerError> {
    let what = peer.what;
    let log = std::fs::File::create(dir.join("peer.log"))
        .map_err(|source| PeerError::Config { what, source })?;
    let mut child = peer
        .command
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|source| PeerError::Spawn {
            what,
            package: peer.package,
            source,
        })?;
    let addr = SocketAddrV4::new([127, 0, 0, 1].into(), port);
    if let Err(e) = wait_listening(&mut child, what, addr, &dir) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(PeerProc { child, addr, dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosquitto_config_is_loopback_and_anonymous() {
        let c = mosquitto_config(18_830);
        assert!(c.contains("listener 18830 127.0.0.1\n"));
        assert!(c.contains("allow_anonymous true\n"));
        assert!(c.contains("max_connections -1\n"));
    }

    #[test]
    fn mosquitto_command_writes_its_config_and_points_at_it() {
        let dir = workdir("mosquitto-command-test", 18_831).unwrap();
        let peer = mosquitto_command(18_831, &dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        let args: Vec<_> = peer.command.get_args().collect();
        assert_eq!(args, [std::ffi::OsStr::new("-c"), conf.as_os_str()]);
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            mosquitto_config_for(18_831, &PeerListener::default(), &dir, root)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn websocket_and_tls_listeners_are_configured() {
        let tls = PeerListener {
            websocket: true,
            tls: Some(("/c.pem".into(), "/k.pem".into())),
        };
        let c = mosquitto_config_for(9001, &tls, Path::new("/run/peer"), true);
        assert!(
            c.contains(
                "listener 0 /run/peer/mqtt.sock\nlistener 9001 127.0.0.1\nprotocol websockets\ncertfile /c.pem\nkeyfile /k.pem\n"
            ),
            "{c}"
        );
        assert!(c.ends_with("user root\n"), "{c}");
        assert!(!mosquitto_config(9001).contains("user "));
        assert!(!mosquitto_config(9001).contains("listener 0"));
        let n = nats_config(9002, &tls);
        assert!(
            n.contains("websocket {\nhost: \"127.0.0.1\"\nport: 9002\ntls {"),
            "{n}"
        );
        assert!(n.contains("listen: \"127.0.0.1:-1\""), "{n}");
        let ws = PeerListener {
            websocket: true,
            tls: None,
        };
        assert!(nats_config(9003, &ws).contains("no_tls: true"));
        let plain_tls = PeerListener {
            websocket: false,
            tls: tls.tls.clone(),
        };
        let n = nats_config(9004, &plain_tls);
        assert!(n.starts_with("listen: \"127.0.0.1:9004\"\ntls {"), "{n}");
    }

    #[test]
    fn nats_command_listens_on_loopback_only() {
        let peer = nats_command(18_832);
        let args: Vec<_> = peer.command.get_args().filter_map(|a| a.to_str()).collect();
        assert_eq!(args, ["-a", "127.0.0.1", "-p", "18832"]);
    }
}
