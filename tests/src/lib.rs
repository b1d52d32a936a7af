//! Helpers shared by the end-to-end tests: the real `gateway` binary in a
//! child process, blocking protocol clients over real TCP sockets, and a
//! tiny HTTP client for the control listener.
//!
//! Binaries are taken from the workspace's target directory (the newer of
//! `release/` and `debug/`), or from `$GATEWAY_BIN` when set.

// Test support: a failed set-up step must fail the calling test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod attack;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::auth::{Claims, mint_hs256};
use protocol::client::{ClientConfig, ClientEvent, ClientSession};
use protocol::proto::Welcome;
use protocol::time::Millis;

/// The JWT secret every test gateway is started with (the gateway refuses
/// HS256 secrets shorter than 32 bytes).
pub const SECRET: &str = "e2e-test-secret-0123456789abcdef-0123456789";

/// Path of a workspace binary: `$<NAME>_BIN` if set, else the newer of the
/// release and debug builds.
pub fn binary(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Ok(p) = std::env::var(&var) {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let candidates = [
        target.join("release").join(name),
        target.join("debug").join(name),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!("{name} is not built: run `cargo build --release --bins` (or set ${var})")
        })
}

/// The (client, control) addresses a gateway's `--ready-file` names, once
/// it has been written.
fn read_ready_file(path: &Path) -> Option<(SocketAddr, SocketAddr)> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some((field("client")?, field("control")?))
}

/// A free TCP port on 127.0.0.1 (free when asked; the OS may reuse it):
/// only for peers that cannot bind port 0 and say which port they got.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token for `user`, valid for an hour, signed with [`SECRET`].
pub fn token(user: &str) -> String {
    token_with(Claims {
        sub: user.into(),
        exp: Some(unix_now() + 3600),
        ..Claims::default()
    })
}

/// A token with arbitrary claims, signed with [`SECRET`].
pub fn token_with(claims: Claims) -> String {
    mint_hs256(SECRET.as_bytes(), &claims).expect("mint token")
}

/// A gateway child process with its own ports and config file.
pub struct Gateway {
    child: Option<Child>,
    /// Client listener.
    pub client: SocketAddr,
    /// Control listener.
    pub control: SocketAddr,
    /// The control address as bound (may be a wildcard address).
    bound_control: SocketAddr,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("e2e-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
        let dir = TempDir::new("gw");
        let path = dir.0.join("gateway.toml");
        let ready = dir.0.join("ready");
        std::fs::write(&path, config).expect("write config");
        let log = std::fs::File::create(dir.0.join("gateway.log")).expect("log file");
        let mut child = Command::new(binary("gateway"))
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
        let (client, bound_control) = loop {
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
        let probe = SocketAddr::from(([127, 0, 0, 1], bound_control.port()));
        let gw = Self {
            child: Some(child),
            client,
            control: probe,
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

/// One blocking HTTP/1.1 request on a fresh connection: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(http_request(method, path, body, true).as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| std::io::Error::other("bad HTTP response"))
}

/// Reads HTTP responses off `s` (a keep-alive connection) until `n` are
/// complete: (status, body, whether the server said it closes).
pub fn read_responses(s: &mut TcpStream, n: usize) -> Vec<(u16, String, bool)> {
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    while out.len() < n {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(&raw).unwrap() {
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
            };
            let len: usize = header("content-length").unwrap().parse().unwrap();
            if raw.len() >= head + len {
                let closes = header("connection").as_deref() == Some("close");
                let body = String::from_utf8_lossy(&raw[head..head + len]).into_owned();
                out.push((resp.code.unwrap(), body, closes));
                raw.drain(..head + len);
                continue;
            }
        }
        let got = s.read(&mut chunk).unwrap();
        assert!(got > 0, "connection closed after {} answers", out.len());
        raw.extend_from_slice(&chunk[..got]);
    }
    out
}

/// One HTTP/1.1 request as written on the wire; keep-alive unless `close`.
pub fn http_request(method: &str, path: &str, body: &str, close: bool) -> String {
    let connection = if close { "connection: close\r\n" } else { "" };
    format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\n{connection}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Splits a raw HTTP response into status and body.
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// A blocking protocol client over a real socket.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    /// The client session state machine.
    pub session: ClientSession,
    epoch: Instant,
    events: std::collections::VecDeque<ClientEvent>,
    eof: bool,
}

impl Client {
    /// Connects to `addr` (not yet saying Hello).
    pub fn connect(addr: SocketAddr, token: &str) -> Self {
        Self::connect_with(
            addr,
            ClientConfig {
                token: token.into(),
                device: "e2e".into(),
                ..ClientConfig::default()
            },
        )
    }

    /// Connects with a full client config.
    pub fn connect_with(addr: SocketAddr, cfg: ClientConfig) -> Self {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        Self::over(stream, cfg)
    }

    /// Wraps an already connected socket.
    pub fn over(stream: TcpStream, cfg: ClientConfig) -> Self {
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            session: ClientSession::new(Millis(0), cfg),
            epoch: Instant::now(),
            events: Default::default(),
            eof: false,
        }
    }

    fn now(&self) -> Millis {
        Millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// Sends Hello and waits for the Welcome; panics on anything else.
    pub fn handshake(&mut self) -> Welcome {
        let mut out = Vec::new();
        self.session.start(&mut out);
        self.send_raw(&out);
        match self.next_event(Duration::from_secs(5)) {
            Some(ClientEvent::Welcome(w)) => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Connects and completes the handshake as `user`.
    pub fn established(addr: SocketAddr, user: &str) -> Self {
        let mut c = Self::connect(addr, &token(user));
        c.handshake();
        c
    }

    /// Writes raw bytes to the socket.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Runs `f` against the session and sends what it wrote.
    pub fn send_with(&mut self, f: impl FnOnce(&mut ClientSession, &mut Vec<u8>)) {
        let mut out = Vec::new();
        f(&mut self.session, &mut out);
        self.send_raw(&out);
    }

    /// The next push within `timeout`, skipping other events; `None` on
    /// timeout or close.
    pub fn next_push(&mut self, timeout: Duration) -> Option<protocol::proto::Push> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if let ClientEvent::Push(p) = self.next_event(left)? {
                return Some(p);
            }
        }
    }

    /// The next event within `timeout` (reading from the socket as needed);
    /// `None` on timeout or once the connection is closed and drained.
    pub fn next_event(&mut self, timeout: Duration) -> Option<ClientEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.eof {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let mut buf = [0u8; 65536];
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    let now = self.now();
                    let mut events = Vec::new();
                    let mut out = Vec::new();
                    self.session
                        .handle_input(now, &buf[..n], &mut events, &mut out);
                    self.events.extend(events);
                    if !out.is_empty() {
                        let _ = self.stream.write_all(&out);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                // A reset closes the connection as surely as an EOF.
                Err(_) => self.eof = true,
            }
        }
    }

    /// Whether the peer closed the connection within `timeout` (after any
    /// remaining events, which are returned).
    pub fn wait_closed(&mut self, timeout: Duration) -> (bool, Vec<ClientEvent>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.next_event(deadline - Instant::now()) {
                Some(e) => seen.push(e),
                None => break,
            }
        }
        (self.eof, seen)
    }

    /// Sends a Ping and waits for its Pong.
    pub fn ping_pong(&mut self) -> bool {
        let mut out = Vec::new();
        let id = self.session.ping(&mut out);
        self.send_raw(&out);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.next_event(Duration::from_secs(5)) {
                Some(ClientEvent::Pong(p)) if p.id == id => return true,
                Some(_) => continue,
                None => return false,
            }
        }
        false
    }
}

/// An `e2e-holder` child process holding authenticated connections.
pub struct Holder {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Holder {
    /// Starts a holder of `count` connections from `source` to `target`.
    pub fn spawn(
        target: SocketAddr,
        source: &str,
        count: usize,
        user_prefix: &str,
        heartbeat_ms: u32,
    ) -> Self {
        let mut child = Command::new(binary("e2e-holder"))
            .args(["--target", &target.to_string(), "--source", source])
            .args(["--count", &count.to_string(), "--user-prefix", user_prefix])
            .args([
                "--heartbeat-ms",
                &heartbeat_ms.to_string(),
                "--hold-secs",
                "600",
            ])
            .env("GATEWAY_JWT_SECRET", SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn e2e-holder");
        let stdout = child.stdout.take().expect("holder stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for the holder's `ready <n>` line; the error is its failure line.
    pub fn wait_ready(&self, timeout: Duration) -> Result<usize, String> {
        let line = self
            .lines
            .recv_timeout(timeout)
            .map_err(|e| format!("no answer from holder: {e}"))?;
        match line.strip_prefix("ready ") {
            Some(n) => n.trim().parse().map_err(|_| line.clone()),
            None => Err(line),
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing stdin tells the holder to let go; kill in case it hangs.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Number of open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The (soft, hard) RLIMIT_NOFILE of this process.
pub fn nofile_limits() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (lim.rlim_cur, lim.rlim_max)
}
