//! The hostile clients of each [`Case`]: one attacker thread's loop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::client::{ClientConfig, ClientEvent};
use protocol::codec;
use protocol::proto::frame::Kind;

use super::{ATTACKER_NICE, Case, PUSH_RATE, Scale};
use crate::{Client, token};

/// One attack in progress: what to do, against what, until `stop`.
pub(super) struct Attack {
    pub(super) case: Case,
    pub(super) scale: Scale,
    pub(super) client: SocketAddr,
    pub(super) control: SocketAddr,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) actions: Arc<AtomicU64>,
}

impl Attack {
    /// Starts the case's attacker threads.
    pub(super) fn spawn(&self) -> Vec<JoinHandle<()>> {
        let threads = match self.case {
            Case::Slowloris | Case::ControlStalls | Case::SlowConsumers => 1,
            _ => self.scale.attackers,
        };
        (0..threads)
            .map(|t| {
                let a = self.clone_for_thread();
                std::thread::spawn(move || a.run(t))
            })
            .collect()
    }

    fn clone_for_thread(&self) -> Attack {
        Attack {
            case: self.case,
            scale: self.scale,
            client: self.client,
            control: self.control,
            stop: self.stop.clone(),
            actions: self.actions.clone(),
        }
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn acted(&self) {
        self.actions.fetch_add(1, Ordering::Relaxed);
    }

    fn run(&self, thread: usize) {
        // The attackers share the box's cores with the gateway: at nice 10
        // they yield to it, so the healthy client's latency measures how
        // the gateway treats it, not how the scheduler shares two cores
        // between a load generator and the server it loads.
        // SAFETY: setpriority(2) on the calling thread (who = 0); Linux
        // keeps nice values per thread.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, ATTACKER_NICE) };
        match self.case {
            Case::Slowloris => self.slowloris(),
            Case::Garbage => self.looping(|n| self.garbage(n)),
            Case::OversizedHello => self.looping(|n| self.oversized_hello(n)),
            Case::ByeRace => self.looping(|_| self.bye_race()),
            Case::ReconnectStorm => self.looping(|n| self.reconnect(thread, n)),
            Case::SlowConsumers => self.slow_consumers(),
            Case::ControlSmuggling => self.looping(|n| self.smuggle(n)),
            Case::ControlStalls => self.control_stalls(),
        }
    }

    /// Repeats one hostile action until stopped.
    fn looping(&self, mut action: impl FnMut(u64)) {
        let mut n = 0;
        while self.running() {
            action(n);
            self.acted();
            n += 1;
        }
    }

    fn connect(&self) -> Option<TcpStream> {
        let s = TcpStream::connect_timeout(&self.client, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(s)
    }

    fn slowloris(&self) {
        let mut held: Vec<(TcpStream, usize)> = Vec::new();
        let mut hello = Vec::new();
        codec::encode_frame(
            &codec::frame(Kind::Hello(protocol::proto::Hello {
                version: 1,
                token: token("loris"),
                ..Default::default()
            })),
            &mut hello,
        );
        while self.running() {
            // Top up to the target (the gateway closes them at the handshake timeout).
            while held.len() < self.scale.held && self.running() {
                match self.connect() {
                    Some(s) => held.push((s, 0)),
                    None => break,
                }
                self.acted();
            }
            held.retain_mut(|(s, sent)| {
                let byte = hello.get(*sent).copied().unwrap_or(0);
                *sent += 1;
                s.write_all(&[byte]).is_ok()
            });
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn garbage(&self, n: u64) {
        let Some(mut s) = self.connect() else {
            return;
        };
        let junk: Vec<u8> = match n % 4 {
            0 => vec![0, 0, 0, 0],
            1 => vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            2 => {
                let mut v = vec![0, 0, 0, 16];
                v.extend((0..16).map(|i| (n as u8).wrapping_mul(31).wrapping_add(i)));
                v
            }
            _ => b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        };
        let _ = s.write_all(&junk);
        drain(&mut s);
    }

    fn oversized_hello(&self, n: u64) {
        let mut cfg = ClientConfig {
            token: token("oversized"),
            ..ClientConfig::default()
        };
        match n % 3 {
            0 => cfg.apps = (0..10_000).map(|i: u32| i.to_string()).collect(),
            1 => cfg.device = "d".repeat(32 * 1024),
            _ => cfg.apps = vec!["a".repeat(1000)],
        }
        let Some(s) = self.connect() else {
            return;
        };
        let mut c = Client::over(s, cfg);
        let mut out = Vec::new();
        c.session.start(&mut out);
        let _ = c.stream.write_all(&out);
        let _ = c.wait_closed(Duration::from_secs(2));
    }

    fn bye_race(&self) {
        let Some(s) = self.connect() else {
            return;
        };
        let mut c = Client::over(
            s,
            ClientConfig {
                token: token("bye"),
                ..ClientConfig::default()
            },
        );
        let mut out = Vec::new();
        c.session.start(&mut out);
        if c.stream.write_all(&out).is_err() {
            return;
        }
        if matches!(
            c.next_event(Duration::from_secs(2)),
            Some(ClientEvent::Welcome(_))
        ) {
            let mut bye = Vec::new();
            c.session.bye(&mut bye);
            let _ = c.stream.write_all(&bye);
        }
    }

    fn reconnect(&self, thread: usize, n: u64) {
        let Some(s) = self.connect() else {
            return;
        };
        let mut c = Client::over(
            s,
            ClientConfig {
                token: token(&format!("storm-{thread}-{}", n % 100)),
                ..ClientConfig::default()
            },
        );
        let mut out = Vec::new();
        c.session.start(&mut out);
        let _ = c.stream.write_all(&out);
        let _ = c.next_event(Duration::from_secs(2));
        // Dropped without a Bye: the gateway sees EOF.
    }

    fn slow_consumers(&self) {
        let sloths: Vec<Client> = (0..self.scale.slow_consumers)
            .filter_map(|i| {
                let s = self.connect()?;
                let mut c = Client::over(
                    s,
                    ClientConfig {
                        token: token(&format!("sloth-{i}")),
                        ..ClientConfig::default()
                    },
                );
                let mut out = Vec::new();
                c.session.start(&mut out);
                c.stream.write_all(&out).ok()?;
                matches!(
                    c.next_event(Duration::from_secs(2)),
                    Some(ClientEvent::Welcome(_))
                )
                .then_some(c)
            })
            .collect();
        let payload = "s".repeat(32 * 1024);
        let mut control = None;
        let mut i = 0usize;
        // The backend pushes at a steady PUSH_RATE: the attack is the
        // clients that stop reading, not a push load that saturates the
        // shard (that would slow every client, slow consumers or not).
        let started = Instant::now();
        while self.running() && !sloths.is_empty() {
            let due = started + Duration::from_secs_f64(i as f64 / PUSH_RATE);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let user = format!("sloth-{}", i % sloths.len());
            let body = format!(r#"{{"to": {{"user": "{user}"}}, "payload": "{payload}"}}"#);
            if control.is_none() {
                control = TcpStream::connect(self.control).ok();
            }
            let Some(s) = control.as_mut() else {
                break;
            };
            let req = crate::http_request("POST", "/v1/push", &body, false);
            if s.write_all(req.as_bytes()).is_err() || crate::read_responses(s, 1).is_empty() {
                control = None;
            }
            self.acted();
            i += 1;
        }
        drop(sloths);
    }

    fn smuggle(&self, n: u64) {
        let Ok(mut s) = TcpStream::connect(self.control) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req: Vec<u8> = match n % 4 {
            0 => b"POST /v1/push HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc".to_vec(),
            1 => b"POST /v1/push HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"
                .to_vec(),
            2 => format!("GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(100 * 1024))
                .into_bytes(),
            _ => b"\x16\x03\x01 garbage\r\n\r\n".to_vec(),
        };
        let _ = s.write_all(&req);
        drain(&mut s);
    }

    fn control_stalls(&self) {
        let mut held = Vec::new();
        let head = format!("POST /v1/push HTTP/1.1\r\nX-Pad: {}", "p".repeat(60 * 1024));
        while self.running() {
            while held.len() < self.scale.held / 4 && self.running() {
                let Ok(mut s) = TcpStream::connect(self.control) else {
                    break;
                };
                // Half stall in the middle of a large head, half sit idle.
                if held.len() % 2 == 0 {
                    let _ = s.write_all(head.as_bytes());
                }
                held.push(s);
                self.acted();
            }
            // Drop the ones the gateway closed, so they are replaced.
            held.retain_mut(|s| {
                let _ = s.set_nonblocking(true);
                let mut b = [0u8; 4096];
                matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads until EOF, an error or the read timeout.
fn drain(s: &mut TcpStream) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}
