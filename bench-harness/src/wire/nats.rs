//! A minimal core-NATS client codec, sans-IO: INFO, CONNECT, SUB, PUB, MSG,
//! PING/PONG, +OK/-ERR. The session is established at the first PONG (the
//! server answers the PING sent after CONNECT once CONNECT is accepted).

use super::WireEvent;
use crate::stamp;

/// Largest control line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Writes `PUB subject n\r\npayload\r\n`.
pub fn publish(subject: &str, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The CONNECT line (no echo, no verbose +OKs) and the confirming PING.
pub fn connect(out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"lang\":\"rust\",\"version\":\"gateway-bench\",\"protocol\":0}\r\nPING\r\n",
    );
}

/// A parsed server operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op<'a> {
    /// INFO {...}
    Info,
    /// MSG with its payload.
    Msg(&'a [u8]),
    /// PING from the server.
    Ping,
    /// PONG.
    Pong,
    /// +OK.
    Ok,
    /// -ERR with the message.
    Err(&'a [u8]),
}

/// Decodes one server operation at the start of `buf`: (op, bytes used),
/// `Ok(None)` when incomplete.
pub fn decode(buf: &[u8]) -> Result<Option<(Op<'_>, usize)>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_LINE {
            return Err("control line too long".into());
        }
        return Ok(None);
    };
    let line = &buf[..eol];
    let used = eol + 2;
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let verb = words.next().unwrap_or_default().to_ascii_uppercase();
    let op = match verb.as_slice() {
        b"INFO" => Op::Info,
        b"PING" => Op::Ping,
        b"PONG" => Op::Pong,
        b"+OK" => Op::Ok,
        b"-ERR" => Op::Err(line.get(5..).unwrap_or_default()),
        b"MSG" => {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let rest: Vec<&[u8]> = words.collect();
            let n: usize = rest
                .last()
                .and_then(|w| std::str::from_utf8(w).ok())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| "MSG without a byte count".to_string())?;
            let end = used + n + 2;
            if buf.len() < end {
                return Ok(None);
            }
            return Ok(Some((Op::Msg(&buf[used..used + n]), end)));
        }
        other => {
            return Err(format!(
                "unknown operation {:?}",
                String::from_utf8_lossy(other)
            ));
        }
    };
    Ok(Some((op, used)))
}

/// One NATS connection.
#[derive(Debug)]
pub struct NatsClient {
    pending: Vec<u8>,
    established: bool,
    closed: bool,
    next_sid: u64,
    subs_unconfirmed: u32,
}

impl NatsClient {
    /// A fresh connection state.
    #[must_use]
    pub fn new(_now: protocol::time::Millis) -> Self {
        Self {
            pending: Vec::new(),
            established: false,
            closed: false,
            next_sid: 1,
            subs_unconfirmed: 0,
        }
    }

    /// Whether the session is over (and has said why).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes CONNECT + PING (the server's INFO may arrive before or after).
    pub fn start(&mut self, out: &mut Vec<u8>) {
        connect(out);
    }

    /// Writes SUB and a PING whose PONG confirms it.
    pub fn subscribe(&mut self, subject: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("SUB {subject} {}\r\nPING\r\n", self.next_sid).as_bytes());
        self.next_sid += 1;
        self.subs_unconfirmed += 1;
    }

    /// Feeds bytes from the server.
    pub fn input(&mut self, data: &[u8], ev: &mut Vec<WireEvent>, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            match decode(&buf[at..]) {
                Ok(Some((op, n))) => {
                    at += n;
                    match op {
                        Op::Info | Op::Ok => {}
                        Op::Ping => out.extend_from_slice(b"PONG\r\n"),
                        Op::Pong if !self.established => {
                            self.established = true;
                            ev.push(WireEvent::Established);
                        }
                        Op::Pong => {
                            if self.subs_unconfirmed > 0 {
                                self.subs_unconfirmed -= 1;
                                ev.push(WireEvent::Subscribed);
                            }
                        }
                        Op::Msg(payload) => ev.push(WireEvent::Delivery(stamp::decode(payload))),
                        Op::Err(msg) => {
                            self.closed = true;
                            ev.push(WireEvent::Closed(format!(
                                "nats: -ERR {}",
                                String::from_utf8_lossy(msg)
                            )));
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(why) => {
                    self.closed = true;
                    ev.push(WireEvent::Closed(format!("nats: {why}")));
                    return;
                }
            }
        }
        buf.drain(..at);
        self.pending = buf;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::time::Millis;

    #[test]
    fn session_flow_with_split_input() {
        let mut c = NatsClient::new(Millis(0));
        let mut out = Vec::new();
        c.start(&mut out);
        assert!(out.starts_with(b"CONNECT {"));
        assert!(out.ends_with(b"PING\r\n"));
        out.clear();
        c.subscribe("t", &mut out);
        assert_eq!(out, b"SUB t 1\r\nPING\r\n");
        let s = stamp::Stamp {
            seq: 1,
            intended_us: 5,
        };
        let p = stamp::encode(s, 40);
        let server = format!(
            "INFO {{\"max_payload\":1048576}}\r\nPONG\r\nPONG\r\nPING\r\nMSG t 1 {}\r\n{p}\r\nMSG t 1 r.x 2\r\nab\r\n",
            p.len()
        );
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        for chunk in server.as_bytes().chunks(5) {
            c.input(chunk, &mut ev, &mut out);
        }
        assert_eq!(
            ev,
            vec![
                WireEvent::Established,
                WireEvent::Subscribed,
                WireEvent::Delivery(Some(s)),
                WireEvent::Delivery(None)
            ]
        );
        assert_eq!(out, b"PONG\r\n");
    }

    #[test]
    fn errors_close() {
        let mut c = NatsClient::new(Millis(0));
        let (mut ev, mut out) = (Vec::new(), Vec::new());
        c.input(b"-ERR 'Authorization Violation'\r\n", &mut ev, &mut out);
        assert!(matches!(&ev[0], WireEvent::Closed(m) if m.contains("Authorization")));
        let mut c = NatsClient::new(Millis(0));
        ev.clear();
        c.input(b"BOGUS\r\n", &mut ev, &mut out);
        assert!(matches!(&ev[0], WireEvent::Closed(_)));
        let mut out = Vec::new();
        publish("a.b", b"hi", &mut out);
        assert_eq!(out, b"PUB a.b 2\r\nhi\r\n");
    }
}
