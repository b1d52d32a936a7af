//! `gateway sub`: a client over TCP (the protocol crate's
//! [`ClientSession`], never a second implementation) that says Hello,
//! subscribes, prints each push as one JSON line on stdout, pings at the
//! negotiated heartbeat and acks durable pushes.
//!
//! Progress goes to stderr: `connected ...` once the Welcome is in, then
//! `ready ...` once the gateway has answered a Ping sent after the
//! Subscribe (so the subscription is in place).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use protocol::client::{ClientConfig, ClientEvent, ClientSession};
use protocol::proto::Push;
use protocol::time::Millis;
use serde_json::{Value, json};

use super::{CliError, DEFAULT_CLIENT, parse_addr, secret_from, token};

/// Arguments of `gateway sub`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("who").required(true).multiple(true).args(["user", "token"]))]
pub struct SubArgs {
    /// Connect as this user (a token is minted with the secret).
    #[arg(long)]
    pub user: Option<String>,
    /// Subscribe to this topic (repeatable).
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Open this app on the connection (repeatable; `Hello.apps`).
    #[arg(long = "app", value_name = "APP")]
    pub apps: Vec<String>,
    /// Client listener of the gateway.
    #[arg(long, default_value = DEFAULT_CLIENT, value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// The gateway's HS256 secret, to mint a token for `--user`.
    #[arg(long, env = "GATEWAY_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Use this token instead of minting one (wins over `--secret`).
    #[arg(long)]
    pub token: Option<String>,
    /// Exit 0 after this many pushes.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after this many seconds: 0 if no `--count` was given, else 1
    /// (fewer pushes than asked for).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// Device label sent in the Hello.
    #[arg(long, default_value = "gateway-sub")]
    pub device: String,
    /// Heartbeat to propose, ms; 0 lets the gateway choose.
    #[arg(long, default_value_t = 0)]
    pub heartbeat_ms: u32,
}

/// One push as the JSON line `gateway sub` prints: the payload as UTF-8
/// text when it is valid UTF-8, else base64, and `encoding` says which.
pub fn push_json(p: &Push) -> Value {
    let (payload, encoding) = match std::str::from_utf8(&p.payload) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&p.payload),
            "base64",
        ),
    };
    json!({
        "id": p.id,
        "app": p.app,
        "topic": p.topic,
        "payload": payload,
        "encoding": encoding,
        "ack": p.ack,
        "redelivery": p.redelivery,
        "ts_us": p.ts_us,
    })
}

/// Where `gateway sub` is.
struct Sub<'a> {
    args: &'a SubArgs,
    stream: TcpStream,
    session: ClientSession,
    epoch: Instant,
    ready_ping: Option<u64>,
    received: u64,
}

/// How the loop ended.
enum Done {
    /// `--count` pushes received.
    Count,
    /// `--timeout-secs` passed.
    Timeout,
}

impl Sub<'_> {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn send(&mut self, out: &[u8]) -> Result<(), CliError> {
        if out.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(out)
            .map_err(CliError::io(format!("send to {}", self.args.addr)))
    }

    /// Handles one event; `Some` when the command is done.
    fn on_event(&mut self, ev: ClientEvent, out: &mut Vec<u8>) -> Result<Option<Done>, CliError> {
        match ev {
            ClientEvent::Welcome(w) => {
                eprintln!(
                    "connected to {} as {} (session {}, heartbeat {} ms)",
                    self.args.addr, w.user, w.session, w.heartbeat_ms
                );
                if !self.args.topics.is_empty() {
                    self.session.subscribe(self.args.topics.clone(), out);
                }
                self.ready_ping = Some(self.session.ping(out));
            }
            ClientEvent::Pong(p) if Some(p.id) == self.ready_ping => {
                self.ready_ping = None;
                eprintln!("ready: topics {:?}", self.args.topics);
            }
            ClientEvent::Pong(_) | ClientEvent::Reply(_) => {}
            ClientEvent::Push(p) => {
                let line = push_json(&p).to_string();
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{line}")
                    .and_then(|()| stdout.flush())
                    .map_err(CliError::io("write to stdout"))?;
                if p.ack {
                    self.session.ack(vec![p.id], out);
                }
                self.received += 1;
                if self.args.count.is_some_and(|n| self.received >= n) {
                    self.session.bye(out);
                    return Ok(Some(Done::Count));
                }
            }
            ClientEvent::Kick(k) => eprintln!("kicked: code {} {}", k.code, k.reason),
            ClientEvent::Error(e) => eprintln!("gateway error: code {} {}", e.code, e.message),
            ClientEvent::Closed(reason) => {
                return Err(CliError::Session(format!("session closed: {reason:?}")));
            }
        }
        Ok(None)
    }

    fn run(&mut self) -> Result<Done, CliError> {
        let mut out = Vec::new();
        self.session.start(&mut out);
        self.send(&out)?;
        let end = self
            .args
            .timeout_secs
            .map(|s| self.epoch + Duration::from_secs(s));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            if end.is_some_and(|e| now >= e) {
                return Ok(Done::Timeout);
            }
            let wake = self
                .session
                .deadline()
                .map(|d| self.epoch + Duration::from_millis(d.as_u64()));
            let until = [wake, end].into_iter().flatten().min();
            let wait = until.map_or(Duration::from_secs(3600), |u| {
                u.saturating_duration_since(now)
            });
            self.stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .map_err(CliError::io("set a socket timeout"))?;
            let mut out = Vec::new();
            let mut events = Vec::new();
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(CliError::Session(format!(
                        "{} closed the connection",
                        self.args.addr
                    )));
                }
                Ok(n) => {
                    let now = self.now();
                    self.session
                        .handle_input(now, &buf[..n], &mut events, &mut out);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = self.now();
                    self.session.handle_timeout(now, &mut out);
                    if let Some(reason) = self.session.close_reason() {
                        return Err(CliError::Session(format!("session closed: {reason:?}")));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CliError::io(format!("read from {}", self.args.addr))(e)),
            }
            for ev in events {
                if let Some(done) = self.on_event(ev, &mut out)? {
                    self.send(&out)?;
                    return Ok(done);
                }
            }
            self.send(&out)?;
        }
    }
}

/// Runs `gateway sub`.
pub fn run(args: &SubArgs) -> Result<(), CliError> {
    let token = match (&args.token, &args.user) {
        (Some(t), _) => t.clone(),
        (None, Some(user)) => {
            let secret = secret_from(args.secret.as_deref())?;
            token::mint(&secret, user, None, 24 * 3600)?
        }
        (None, None) => return Err(CliError::Usage("give --user U or --token T".into())),
    };
    let stream =
        TcpStream::connect_timeout(&args.addr, Duration::from_secs(5)).map_err(CliError::io(
            format!("connect to {} (is the gateway running?)", args.addr),
        ))?;
    let _ = stream.set_nodelay(true);
    let cfg = ClientConfig {
        token,
        device: args.device.clone(),
        apps: args.apps.clone(),
        heartbeat_ms: args.heartbeat_ms,
        ..ClientConfig::default()
    };
    let mut sub = Sub {
        args,
        stream,
        session: ClientSession::new(Millis(0), cfg),
        epoch: Instant::now(),
        ready_ping: None,
        received: 0,
    };
    match sub.run()? {
        Done::Count => Ok(()),
        Done::Timeout => match args.count {
            Some(n) if sub.received < n => Err(CliError::Session(format!(
                "timed out after {} s with {} of {n} pushes",
                args.timeout_secs.unwrap_or(0),
                sub.received
            ))),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pushes_print_as_text_or_base64() {
        let p = Push {
            id: 7,
            app: "chat".into(),
            topic: "news".into(),
            payload: bytes::Bytes::from_static(b"hello"),
            ack: true,
            ts_us: 1,
            redelivery: false,
        };
        let v = push_json(&p);
        assert_eq!(v["payload"], "hello");
        assert_eq!(v["encoding"], "utf-8");
        assert_eq!(
            (v["id"].as_u64(), v["ack"].as_bool()),
            (Some(7), Some(true))
        );
        let bin = Push {
            payload: bytes::Bytes::from_static(&[0xff, 0x00, 0xfe]),
            ..p
        };
        let v = push_json(&bin);
        assert_eq!(v["encoding"], "base64");
        assert_eq!(v["payload"], "/wD+");
    }
}
