//! The layers between a connection's socket and its adapter: TLS
//! ([`TlsLayer`]) next to the socket, then WebSocket ([`WsLayer`]), either
//! or both or neither. One stack for every adapter (gateway v1, MQTT,
//! NATS) and for the brokers' publishers, so a transport is written once.
//! Sans-IO: bytes in, bytes out.

use std::cell::Cell;

use super::tls::TlsLayer;
use super::ws::WsLayer;

thread_local! {
    /// Plaintext out of the TLS layer, on its way to the WebSocket layer.
    static PLAIN: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// WebSocket frames on their way to the TLS layer.
    static FRAMED: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// What one input did besides passing bytes up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkSeen {
    /// The TLS handshake completed: what it agreed.
    pub tls_handshake: Option<String>,
    /// The link ended (a close frame, a refused Upgrade, a TLS alert) and why.
    pub ended: Option<String>,
}

/// A connection's layers.
#[derive(Debug, Default)]
pub struct Link {
    tls: Option<Box<TlsLayer>>,
    ws: Option<WsLayer>,
}

impl Link {
    /// The layers given (none: the adapter's bytes go to the socket as they are).
    #[must_use]
    pub fn new(tls: Option<TlsLayer>, ws: Option<WsLayer>) -> Self {
        Self {
            tls: tls.map(Box::new),
            ws,
        }
    }

    /// Whether there is no layer at all.
    #[must_use]
    pub fn is_plain(&self) -> bool {
        self.tls.is_none() && self.ws.is_none()
    }

    /// Whether the WebSocket layer, if any, is upgraded and holds no
    /// buffer (see [`WsLayer::open_at_rest`]).
    #[must_use]
    pub fn ws_open_at_rest(&self) -> Option<bool> {
        self.ws.as_ref().and_then(WsLayer::open_at_rest)
    }

    /// Writes the openings: the ClientHello, the Upgrade request (`Host:
    /// host`) inside TLS.
    pub fn start(&mut self, host: &str, out: &mut Vec<u8>) {
        if let Some(tls) = &mut self.tls {
            tls.start(out);
        }
        if let Some(ws) = &mut self.ws {
            let mut request = FRAMED.take();
            request.clear();
            ws.start(host, &mut request);
            seal(self.tls.as_deref_mut(), &request, out);
            FRAMED.set(request);
        }
    }

    /// The adapter's bytes, through the layers, into `out`.
    pub fn send(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        match &mut self.ws {
            None => seal(self.tls.as_deref_mut(), bytes, out),
            Some(ws) if self.tls.is_none() => ws.send(bytes, out),
            Some(ws) => {
                let mut framed = FRAMED.take();
                framed.clear();
                ws.send(bytes, &mut framed);
                seal(self.tls.as_deref_mut(), &framed, out);
                FRAMED.set(framed);
            }
        }
    }

    /// Bytes from the socket: what they carry for the adapter goes to
    /// `upper`, what the layers answer to `out`.
    pub fn input(&mut self, data: &[u8], upper: &mut Vec<u8>, out: &mut Vec<u8>) -> LinkSeen {
        let mut seen = LinkSeen::default();
        let Some(tls) = &mut self.tls else {
            match &mut self.ws {
                Some(ws) => seen.ended = ws.input(data, upper, out),
                None => upper.extend_from_slice(data),
            }
            return seen;
        };
        let mut plain = PLAIN.take();
        plain.clear();
        match tls.input(data, &mut plain, out) {
            Ok(done) => seen.tls_handshake = done,
            Err(why) => seen.ended = Some(why),
        }
        match &mut self.ws {
            None => upper.extend_from_slice(&plain),
            Some(ws) if !plain.is_empty() => {
                let mut answers = FRAMED.take();
                answers.clear();
                if let Some(why) = ws.input(&plain, upper, &mut answers) {
                    seen.ended.get_or_insert(why);
                }
                tls.send(&answers, out);
                FRAMED.set(answers);
            }
            Some(_) => {}
        }
        PLAIN.set(plain);
        seen
    }

    /// The polite end: a WebSocket close frame, a TLS close_notify.
    pub fn goodbye(&mut self, out: &mut Vec<u8>) {
        if let Some(ws) = &mut self.ws {
            let mut close = FRAMED.take();
            close.clear();
            ws.goodbye(&mut close);
            seal(self.tls.as_deref_mut(), &close, out);
            FRAMED.set(close);
        }
        if let Some(tls) = &mut self.tls {
            tls.goodbye(out);
        }
    }
}

/// `bytes` through TLS into `out`, or as they are without TLS.
fn seal(tls: Option<&mut TlsLayer>, bytes: &[u8], out: &mut Vec<u8>) {
    match tls {
        Some(tls) => tls.send(bytes, out),
        None => out.extend_from_slice(bytes),
    }
}
