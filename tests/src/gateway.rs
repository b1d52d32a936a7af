//! [`Gateway`]: the real `gateway` binary in a child process, with its own
//! config file, ports chosen by the gateway itself, its log, counters and
//! signals, and the clean-up of its instance lock files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::host::{TempDir, binary};
use crate::http::http;
use crate::tokens::SECRET;

/// The addresses a gateway's `--ready-file` names, once it has been
/// written: every `name=ADDR` line.
fn read_ready_file(path: &Path) -> Option<std::collections::HashMap<String, SocketAddr>> {
    let text = std::fs::read_to_string(path).ok()?;
    let addrs: std::collections::HashMap<String, SocketAddr> = text
        .lines()
        .filter_map(|l| {
            let (name, addr) = l.split_once('=')?;
            Some((name.to_string(), addr.parse().ok()?))
        })
        .collect();
    (addrs.contains_key("client") && addrs.contains_key("control")).then_some(addrs)
}

/// The driver the tests ask of every gateway they start: `E2E_DRIVER`
/// (`io_uring` or `epoll`), or the gateway's default (`auto`) when unset.
pub fn test_driver() -> Option<String> {
    std::env::var("E2E_DRIVER").ok().filter(|d| !d.is_empty())
}

/// A gateway child process with its own ports and config file.
pub struct Gateway {
    child: Option<Child>,
    /// Client listener.
    pub client: SocketAddr,
    /// Control listener.
    pub control: SocketAddr,
    /// WebSocket listener, when the config has `[listen] websocket`.
    pub websocket: Option<SocketAddr>,
    /// TLS client listener, when the config has `[listen] client_tls`.
    pub client_tls: Option<SocketAddr>,
    /// TLS WebSocket listener, when the config has `[listen] websocket_tls`.
    pub websocket_tls: Option<SocketAddr>,
    /// MQTT listener, when the config has `[listen] mqtt`.
    pub mqtt: Option<SocketAddr>,
    /// TLS MQTT listener, when the config has `[listen] mqtt_tls`.
    pub mqtt_tls: Option<SocketAddr>,
    /// The control address as bound (may be a wildcard address).
    bound_control: SocketAddr,
    _dir: TempDir,
}

impl Gateway {
    /// Starts the gateway with `shards` shards and extra TOML `config`
    /// (sections other than `[listen]`'s addresses, which are chosen here:
    /// port 0 on 127.0.0.1, reported back by the gateway, so no port can be
    /// taken by someone else between choosing and binding it).
    pub fn start(shards: usize, config: &str) -> Self {
        Self::start_with_control(shards, config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Like [`Gateway::start`], with the control listener on `control`
    /// (readiness is still probed over 127.0.0.1).
    pub fn start_with_control(shards: usize, config: &str, control: SocketAddr) -> Self {
        Self::launch(None, test_driver(), shards, config, control, None)
    }

    /// Like [`Gateway::start`], with the durable store in `data_dir`
    /// (`--data-dir`), so that a later gateway can recover it. Every other
    /// gateway keeps its store in its own temporary directory.
    pub fn start_with_data(shards: usize, config: &str, data_dir: &Path) -> Self {
        Self::launch(
            None,
            test_driver(),
            shards,
            config,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(data_dir),
        )
    }

    /// Like [`Gateway::start`], with the gateway run by `launcher` (a
    /// program that sets something up, then execs the gateway with its
    /// arguments, such as `e2e-no-io-uring`), on the gateway's own driver
    /// choice (`auto`), whatever `E2E_DRIVER` says: the launcher decides
    /// what the driver can use.
    pub fn start_under(launcher: &Path, shards: usize, config: &str) -> Self {
        Self::launch(
            Some(launcher),
            None,
            shards,
            config,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            None,
        )
    }

    fn launch(
        launcher: Option<&Path>,
        driver: Option<String>,
        shards: usize,
        config: &str,
        control: SocketAddr,
        data_dir: Option<&Path>,
    ) -> Self {
        let dir = TempDir::new("gw");
        let path = dir.0.join("gateway.toml");
        let ready = dir.0.join("ready");
        std::fs::write(&path, config).expect("write config");
        let log = std::fs::File::create(dir.0.join("gateway.log")).expect("log file");
        let mut command = match launcher {
            Some(l) => {
                let mut c = Command::new(l);
                c.arg(binary("gateway"));
                c
            }
            None => Command::new(binary("gateway")),
        };
        // `make test` runs the behaviour tests once per driver.
        if let Some(driver) = driver {
            command.arg("--driver").arg(driver);
        }
        let mut child = command
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--control")
            .arg(control.to_string())
            .arg("--shards")
            .arg(shards.to_string())
            .arg("--ready-file")
            .arg(&ready)
            .arg("--data-dir")
            .arg(data_dir.unwrap_or(&dir.0.join("data")))
            .env("GATEWAY_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // The log goes to stdout, errors before it starts to stderr.
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log)
            .spawn()
            .expect("spawn gateway");
        let read_log = || std::fs::read_to_string(dir.0.join("gateway.log")).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let addrs = loop {
            if let Some(addrs) = read_ready_file(&ready) {
                break addrs;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "gateway exited ({status}) before it was ready; log:\n{}",
                    read_log()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gateway wrote no ready file in 10 s; log:\n{}", read_log());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let (client, bound_control) = (addrs["client"], addrs["control"]);
        let probe = SocketAddr::from(([127, 0, 0, 1], bound_control.port()));
        let gw = Self {
            child: Some(child),
            client,
            control: probe,
            websocket: addrs.get("websocket").copied(),
            client_tls: addrs.get("client_tls").copied(),
            websocket_tls: addrs.get("websocket_tls").copied(),
            mqtt: addrs.get("mqtt").copied(),
            mqtt_tls: addrs.get("mqtt_tls").copied(),
            bound_control,
            _dir: dir,
        };
        gw.wait_ready();
        gw
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http(self.control, "GET", "/healthz", "") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("gateway did not become ready; log:\n{}", self.log());
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("gateway.log")).unwrap_or_default()
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `GET /v1/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = http(self.control, "GET", "/v1/stats", "").expect("stats request");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("stats json")
    }

    /// A total counter from `/v1/stats`.
    pub fn total(&self, name: &str) -> u64 {
        self.stats()["totals"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// Polls `total(name)` until it equals `want` or 5 s pass; returns the last value.
    pub fn wait_total(&self, name: &str, want: u64) -> u64 {
        self.wait_total_until(name, Duration::from_secs(5), |v| v == want)
    }

    /// Polls `total(name)` until `done` accepts it or `within` passes
    /// (counters are published every 250 ms); returns the last value.
    pub fn wait_total_until(
        &self,
        name: &str,
        within: Duration,
        done: impl Fn(u64) -> bool,
    ) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let v = self.total(name);
            if done(v) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal to the gateway.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits up to `timeout` for the gateway to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A killed gateway leaves its instance lock files behind; remove
        // them the way a gateway does (locked, so never one that a new
        // gateway on the same port holds by now).
        for addr in [self.client, self.bound_control] {
            remove_stale_lock(&instance_lock_path(addr));
            if let Some(dir) = instance_lock_path(addr).parent() {
                remove_stale_lock(&dir.join(format!("gateway-any-{}.lock", addr.port())));
            }
        }
    }
}

/// Where the gateway keeps the instance lock of `addr` (see the gateway's
/// `instance_lock` module).
pub fn instance_lock_path(addr: SocketAddr) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let ip = addr.ip().to_string().replace(':', "_");
    dir.join(format!("gateway-{ip}-{}.lock", addr.port()))
}

/// Removes the lock file at `path` if nobody holds its lock.
fn remove_stale_lock(path: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        let _ = std::fs::remove_file(path);
    }
}
