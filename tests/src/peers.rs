//! The gateway's peers in the tests: [`Client`], a blocking protocol client
//! over a real socket in this process, and [`Holder`], an `e2e-holder` child
//! process holding many authenticated connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::client::{ClientConfig, ClientEvent, ClientSession};
use protocol::proto::Welcome;
use protocol::time::Millis;

use crate::host::binary;
use crate::tokens::{SECRET, token};

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
