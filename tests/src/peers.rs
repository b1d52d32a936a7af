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
use protocol::ws::client::{
    ServerFrames, UpgradeAnswer, read_upgrade_answer, upgrade_request, wrap_v1,
};

use crate::host::binary;
use crate::tokens::{SECRET, token};

/// A blocking protocol client over a real socket: raw v1, or v1 over
/// WebSocket ([`Client::websocket`]).
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    /// The client session state machine.
    pub session: ClientSession,
    epoch: Instant,
    events: std::collections::VecDeque<ClientEvent>,
    eof: bool,
    /// The WebSocket framing, once upgraded.
    ws: Option<ServerFrames>,
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
            ws: None,
        }
    }

    /// Connects to WebSocket listener `addr` and upgrades (not yet saying
    /// Hello); panics if the upgrade is refused.
    pub fn websocket(addr: SocketAddr, cfg: ClientConfig) -> Self {
        let mut c = Self::connect_with(addr, cfg);
        let (request, key) = upgrade_request(&addr.to_string(), "/", *b"e2e-nonce-16byte");
        c.stream.write_all(&request).expect("write upgrade");
        let (answer, rest) = c.read_upgrade_answer(&key);
        match answer {
            UpgradeAnswer::Upgraded { .. } => {}
            other => panic!("upgrade refused: {other:?}"),
        }
        c.ws = Some(ServerFrames::new());
        c.take_input(&rest);
        c
    }

    /// Reads the answer to an Upgrade request made with `key`: the verdict
    /// and the bytes after the head.
    pub fn read_upgrade_answer(&mut self, key: &str) -> (UpgradeAnswer, Vec<u8>) {
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match read_upgrade_answer(&buf, key) {
                UpgradeAnswer::NeedMore if Instant::now() < deadline => {}
                UpgradeAnswer::Upgraded { consumed } => {
                    let rest = buf.split_off(consumed);
                    return (UpgradeAnswer::Upgraded { consumed }, rest);
                }
                other => return (other, Vec::new()),
            }
            self.stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return (UpgradeAnswer::NeedMore, Vec::new()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    /// Connects to WebSocket listener `addr` and completes the handshake as
    /// `user`.
    pub fn established_ws(addr: SocketAddr, user: &str) -> Self {
        let mut c = Self::websocket(
            addr,
            ClientConfig {
                token: token(user),
                device: "e2e-ws".into(),
                ..ClientConfig::default()
            },
        );
        c.handshake();
        c
    }

    /// The close frame the server sent over WebSocket: `Some(code)` once it
    /// came (`Some(None)`: a close without a code).
    pub fn ws_close(&self) -> Option<Option<u16>> {
        self.ws
            .as_ref()
            .and_then(|w| w.closed)
            .map(|c| c.map(|c| c.0))
    }

    /// Writes bytes to the socket as they are, bypassing any framing.
    pub fn send_wire(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Bytes from the socket into the session (through the WebSocket
    /// framing when upgraded); answers server pings.
    fn take_input(&mut self, bytes: &[u8]) {
        let now = self.now();
        let mut v1 = Vec::new();
        let input: &[u8] = match &mut self.ws {
            Some(ws) => {
                ws.decode(bytes, &mut v1);
                let mut pongs = Vec::new();
                for ping in ws.pings.drain(..) {
                    protocol::ws::encode::write_masked(
                        protocol::ws::Opcode::Pong,
                        true,
                        [9, 8, 7, 6],
                        &ping,
                        &mut pongs,
                    );
                }
                if ws.closed.is_some() || ws.failed.is_some() {
                    self.eof = self.eof || ws.failed.is_some();
                }
                if !pongs.is_empty() {
                    let _ = self.stream.write_all(&pongs);
                }
                &v1
            }
            None => bytes,
        };
        let mut events = Vec::new();
        let mut out = Vec::new();
        self.session.handle_input(now, input, &mut events, &mut out);
        self.events.extend(events);
        if !out.is_empty() {
            // The server may have closed already; a failed write shows as
            // the EOF that follows.
            let _ = self.write_v1(&out);
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

    /// Writes v1 frames to the socket (each as a masked binary message
    /// when upgraded to WebSocket).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.write_v1(bytes).expect("write");
    }

    fn write_v1(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.ws.is_some() {
            let mut wire = Vec::new();
            wrap_v1(bytes, [0x5a, 0x13, 0xc4, 0x7e], &mut wire);
            self.stream.write_all(&wire)
        } else {
            self.stream.write_all(bytes)
        }
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
                Ok(n) => self.take_input(&buf[..n]),
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
