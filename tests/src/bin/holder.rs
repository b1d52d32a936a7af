//! `e2e-holder`: opens N authenticated connections from one source address
//! and holds them, pinging every heartbeat, until its stdin closes or the
//! hold time runs out. Several of these processes together hold more
//! connections than one process may have descriptors.
//!
//! With `--websocket` it speaks v1 over WebSocket (the gateway's
//! `[listen] websocket`): an Upgrade request pipelined with the Hello, then
//! masked binary messages.
//!
//! Prints `ready <n>` once every handshake is done, `failed <n> <why>`
//! otherwise.

use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use protocol::codec::{decode_frame, encode_frame};
use protocol::proto::{Frame, Hello, Ping, frame::Kind};
use protocol::ws::client::{
    ServerFrames, UpgradeAnswer, read_upgrade_answer, upgrade_request, wrap_v1,
};

struct Args {
    target: SocketAddr,
    source: IpAddr,
    count: usize,
    user_prefix: String,
    heartbeat_ms: u32,
    hold_secs: u64,
    websocket: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        target: "127.0.0.1:7100".parse().map_err(|_| "default target")?,
        source: "127.0.0.1".parse().map_err(|_| "default source")?,
        count: 1000,
        user_prefix: "holder".into(),
        heartbeat_ms: 30_000,
        hold_secs: 600,
        websocket: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--websocket" {
            a.websocket = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--target" => a.target = value.parse().map_err(|_| format!("bad --target {value}"))?,
            "--source" => a.source = value.parse().map_err(|_| format!("bad --source {value}"))?,
            "--count" => a.count = value.parse().map_err(bad)?,
            "--user-prefix" => a.user_prefix = value,
            "--heartbeat-ms" => a.heartbeat_ms = value.parse().map_err(bad)?,
            "--hold-secs" => a.hold_secs = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// A TCP connection from `source` (any port) to `target`.
fn connect_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )?;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a live int: lets many
    // connections from one source address share local ports.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    sock.bind(&SocketAddr::new(source, 0).into())?;
    sock.connect_timeout(&target.into(), Duration::from_secs(10))?;
    Ok(TcpStream::from(sock))
}

fn frame(kind: Kind) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&Frame { kind: Some(kind) }, &mut out);
    out
}

/// v1 frames as they go on the wire: as they are, or as masked binary
/// messages over WebSocket.
fn wire(v1: Vec<u8>, websocket: bool) -> Vec<u8> {
    if !websocket {
        return v1;
    }
    let mut out = Vec::with_capacity(v1.len() + 8);
    wrap_v1(&v1, [0x1f, 0x2e, 0x3d, 0x4c], &mut out);
    out
}

/// Whether `buf` (everything read so far) holds the Welcome: `Ok(false)`
/// to read more.
fn welcomed(buf: &[u8], key: Option<&str>) -> Result<bool, String> {
    let v1 = match key {
        None => buf.to_vec(),
        Some(key) => match read_upgrade_answer(buf, key) {
            UpgradeAnswer::NeedMore => return Ok(false),
            UpgradeAnswer::Refused { status, why } => {
                return Err(format!("upgrade refused ({status}): {why}"));
            }
            UpgradeAnswer::Upgraded { consumed } => {
                let mut v1 = Vec::new();
                let mut frames = ServerFrames::new();
                frames.decode(&buf[consumed..], &mut v1);
                if let Some(why) = frames.failed {
                    return Err(why);
                }
                v1
            }
        },
    };
    match decode_frame(&v1, 1 << 16) {
        Ok(Some((
            Frame {
                kind: Some(Kind::Welcome(_)),
            },
            _,
        ))) => Ok(true),
        Ok(Some((other, _))) => Err(format!("got {other:?}")),
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

fn run(args: &Args) -> Result<Vec<TcpStream>, String> {
    let secret = std::env::var("GATEWAY_JWT_SECRET").unwrap_or_else(|_| e2e_tests::SECRET.into());
    let exp = e2e_tests::unix_now() + 24 * 3600;
    let mut conns = Vec::with_capacity(args.count);
    let mut keys = Vec::new();
    // Connect and say Hello on every connection first, then collect the
    // Welcomes: handshakes overlap instead of running one at a time.
    for i in 0..args.count {
        let mut s =
            connect_from(args.source, args.target).map_err(|e| format!("connect #{i}: {e}"))?;
        let claims = protocol::auth::Claims {
            sub: format!("{}-{i}", args.user_prefix),
            exp: Some(exp),
            ..Default::default()
        };
        let token =
            protocol::auth::mint_hs256(secret.as_bytes(), &claims).map_err(|e| e.to_string())?;
        let hello = wire(
            frame(Kind::Hello(Hello {
                version: 1,
                token,
                device: "holder".into(),
                heartbeat_ms: args.heartbeat_ms,
                ..Default::default()
            })),
            args.websocket,
        );
        let mut first = Vec::new();
        if args.websocket {
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let (request, key) = upgrade_request(&args.target.to_string(), "/", nonce);
            first.extend_from_slice(&request);
            keys.push(key);
        }
        first.extend_from_slice(&hello);
        s.write_all(&first)
            .map_err(|e| format!("hello #{i}: {e}"))?;
        conns.push(s);
    }
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = s
                .read(&mut chunk)
                .map_err(|e| format!("welcome #{i}: {e}"))?;
            if n == 0 {
                return Err(format!("welcome #{i}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if welcomed(&buf, keys.get(i).map(String::as_str))
                .map_err(|e| format!("welcome #{i}: {e}"))?
            {
                break;
            }
        }
    }
    Ok(conns)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("e2e-holder: {e}");
            std::process::exit(2);
        }
    };
    let mut conns = match run(&args) {
        Ok(c) => c,
        Err(e) => {
            println!("failed 0 {e}");
            std::process::exit(1);
        }
    };
    println!("ready {}", conns.len());
    let _ = std::io::stdout().flush();
    // Hold until stdin closes (the parent is done) or the hold time ends,
    // pinging every heartbeat so the gateway keeps the sessions.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
        let _ = tx.send(());
    });
    let end = Instant::now() + Duration::from_secs(args.hold_secs);
    let beat = Duration::from_millis(u64::from(args.heartbeat_ms.max(100)));
    let mut beats = PingSchedule::new(Instant::now(), beat, conns.len());
    for s in &conns {
        let _ = s.set_nonblocking(true);
    }
    let ping = wire(frame(Kind::Ping(Ping { id: 1 })), args.websocket);
    let mut sink = [0u8; 256];
    loop {
        let now = Instant::now();
        while let Some(i) = beats.due(now) {
            let s = &mut conns[i];
            // Drain the last Pong first, so receive buffers never fill.
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            let _ = s.write(&ping);
        }
        let wait = beats.next_at().min(end).saturating_duration_since(now);
        if now >= end {
            break;
        }
        match rx.recv_timeout(wait) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// When each connection pings: connection `i` of `n` at offset
/// `i × beat / n` within every beat, so the Pings of the whole population
/// are spread evenly over time, as those of clients that connected at
/// different moments would be (a burst of every Ping at once would let
/// the gateway answer them in a few large batches, which flatters it).
struct PingSchedule {
    start: Instant,
    beat: Duration,
    n: usize,
    /// Pings sent so far, over all rounds.
    sent: u64,
}

impl PingSchedule {
    fn new(start: Instant, beat: Duration, n: usize) -> Self {
        Self {
            start,
            beat,
            n,
            sent: 0,
        }
    }

    /// When the next Ping is due.
    fn next_at(&self) -> Instant {
        if self.n == 0 {
            return self.start + Duration::from_secs(u64::from(u32::MAX));
        }
        let n = self.n as u64;
        let (round, i) = (self.sent / n, self.sent % n);
        let offset = self.beat.as_nanos() as u64 * i / n;
        self.start + self.beat * round as u32 + Duration::from_nanos(offset)
    }

    /// The connection whose Ping is due by `now`, if any.
    fn due(&mut self, now: Instant) -> Option<usize> {
        if self.n == 0 || self.next_at() > now {
            return None;
        }
        let i = (self.sent % self.n as u64) as usize;
        self.sent += 1;
        Some(i)
    }
}
