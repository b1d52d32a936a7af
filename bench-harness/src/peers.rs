//! Starting the peers for side-by-side runs, on loopback only, with
//! explicit configs: mosquitto 2.x (`listener <port> 127.0.0.1`,
//! `allow_anonymous true`, no connection cap) and nats-server
//! (`-a 127.0.0.1`, no HTTP monitor, no clustering).

use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
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
    dir: &std::path::Path,
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

/// mosquitto's config for a loopback benchmark listener on `port`.
#[must_use]
pub fn mosquitto_config(port: u16) -> String {
    format!(
        "# gateway-bench: loopback only, anonymous, no connection cap, no persistence\n\
         listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         max_connections -1\n\
         persistence false\n\
         max_queued_messages 10000\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n"
    )
}

/// Starts mosquitto on 127.0.0.1:`port`.
pub fn start_mosquitto(port: u16) -> Result<PeerProc, PeerError> {
    let what = "mosquitto";
    let dir = workdir(what, port).map_err(|source| PeerError::Config { what, source })?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, mosquitto_config(port))
        .map_err(|source| PeerError::Config { what, source })?;
    let log = std::fs::File::create(dir.join("peer.log"))
        .map_err(|source| PeerError::Config { what, source })?;
    let bin = ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("mosquitto");
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|source| PeerError::Spawn {
            what,
            package: "mosquitto",
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

/// Starts nats-server on 127.0.0.1:`port`.
pub fn start_nats(port: u16) -> Result<PeerProc, PeerError> {
    let what = "nats-server";
    let dir = workdir("nats", port).map_err(|source| PeerError::Config { what, source })?;
    let log = std::fs::File::create(dir.join("peer.log"))
        .map_err(|source| PeerError::Config { what, source })?;
    // max_connections defaults to 64k; max_payload 1 MB; no monitor port unless asked.
    let mut child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|source| PeerError::Spawn {
            what,
            package: "nats-server",
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
}
