//! Start-up and shutdown of the whole gateway: listeners, one pinned
//! thread per shard, signal handling and the join.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use protocol::auth::TokenVerifier;
use socket2::{Domain, Protocol, Socket, Type};

use shard_router::mailbox::Mailboxes;

use crate::driver::sockets::ClientListener;
use crate::driver::{ShardError, epoll, iouring};
use crate::instance_lock::{InstanceLock, LockError};
use crate::metrics::MetricsHub;
use crate::settings::Settings;
use crate::shard_core::{CountingPushIds, ListenerKind};
pub use crate::shared::Shared;
use crate::stats::PublishedStats;
use crate::tls::TlsAcceptor;
use tuning::driver::Driver;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// An eventfd could not be created.
    #[error("cannot create the shard doorbell eventfd: {0}")]
    Doorbell(io::Error),
    /// A shard failed to build.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// A shard thread could not be spawned.
    #[error("cannot spawn shard thread: {0}")]
    Spawn(io::Error),
    /// Another gateway already serves one of the addresses.
    #[error(transparent)]
    AlreadyServed(#[from] LockError),
    /// The TLS listeners' certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The durable store cannot be opened or recovered.
    #[error("durable store: {0}")]
    Store(#[from] crate::store_open::OpenError),
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Result<(), ShardError>>>,
    /// Where the client listener is bound (useful with port 0).
    pub client_addr: SocketAddr,
    /// Where the control listener is bound.
    pub control_addr: SocketAddr,
    /// Where the WebSocket listener is bound, when there is one.
    pub websocket_addr: Option<SocketAddr>,
    /// Where the TLS client listener is bound, when there is one.
    pub client_tls_addr: Option<SocketAddr>,
    /// Where the TLS WebSocket listener is bound, when there is one.
    pub websocket_tls_addr: Option<SocketAddr>,
    /// Where the MQTT listener is bound, when there is one.
    pub mqtt_addr: Option<SocketAddr>,
    /// Where the TLS MQTT listener is bound, when there is one.
    pub mqtt_tls_addr: Option<SocketAddr>,
    /// The lock on the store's directory, held while the gateway runs.
    _store_lock: std::fs::File,
    /// The instance locks of both addresses, held while the gateway runs.
    _locks: Vec<InstanceLock>,
}

/// A SO_REUSEPORT listener with the gateway's socket options.
fn listener(addr: SocketAddr, backlog: u32) -> Result<Socket, StartError> {
    let err = |source| StartError::Listen { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.set_tcp_nodelay(true).map_err(err)?;
    socket.set_keepalive(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket
        .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
        .map_err(err)?;
    Ok(socket)
}

fn local_addr(socket: &Socket, fallback: SocketAddr) -> SocketAddr {
    socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(fallback)
}

/// Tells the starting thread whether shard `built` could be built, then
/// runs it.
fn announce_and_run<S>(
    built: Result<S, ShardError>,
    ready: &std::sync::mpsc::Sender<Result<(), ShardError>>,
    run: fn(S) -> Result<(), ShardError>,
) -> Result<(), ShardError> {
    match built {
        Ok(shard) => {
            let _ = ready.send(Ok(()));
            run(shard)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            Ok(())
        }
    }
}

impl Gateway {
    /// Binds every shard's listeners and starts the shard threads.
    pub fn start(
        settings: Settings,
        verifier: Arc<dyn TokenVerifier + Send + Sync>,
    ) -> Result<Self, StartError> {
        let n = settings.shards.len();
        let listen = settings.config.listen.clone();
        // The first shard's bind fixes the port when port 0 was asked for;
        // the others join its SO_REUSEPORT group.
        let mut client_addr = listen.client;
        let mut control_addr = listen.control;
        // The optional client listeners, by kind: the address asked, then
        // the one bound (port 0 resolved by the first shard's bind).
        let mut extra: Vec<(ListenerKind, SocketAddr, SocketAddr)> = [
            (ListenerKind::WebSocket, listen.websocket),
            (ListenerKind::TlsRawV1, listen.client_tls),
            (ListenerKind::TlsWebSocket, listen.websocket_tls),
            (ListenerKind::Mqtt, listen.mqtt),
            (ListenerKind::TlsMqtt, listen.mqtt_tls),
        ]
        .into_iter()
        .filter_map(|(kind, addr)| addr.map(|a| (kind, a, a)))
        .collect();
        let tls = if extra.iter().any(|(kind, ..)| kind.is_tls()) {
            Some(Arc::new(TlsAcceptor::load(&settings.config.tls)?))
        } else {
            None
        };
        // One gateway per address: lock each before its first bind; a
        // port-0 address is locked once the first bind has chosen the port
        // (no other gateway can be on a port the kernel just handed out).
        let mut locks = Vec::with_capacity(2 + extra.len());
        for addr in [client_addr, control_addr]
            .into_iter()
            .chain(extra.iter().map(|e| e.1))
        {
            if addr.port() != 0 {
                locks.extend(InstanceLock::acquire(addr)?);
            }
        }
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let c = listener(client_addr, listen.backlog)?;
            client_addr = local_addr(&c, client_addr);
            let mut clients = vec![ClientListener {
                socket: c,
                kind: ListenerKind::RawV1,
            }];
            for (kind, _, bound) in &mut extra {
                let socket = listener(*bound, listen.backlog)?;
                *bound = local_addr(&socket, *bound);
                clients.push(ClientListener {
                    socket,
                    kind: *kind,
                });
            }
            let k = listener(control_addr, 1024)?;
            control_addr = local_addr(&k, control_addr);
            if i == 0 {
                let chosen = [(listen.client, client_addr), (listen.control, control_addr)]
                    .into_iter()
                    .chain(extra.iter().map(|e| (e.1, e.2)));
                for (asked, bound) in chosen {
                    if asked.port() == 0 {
                        locks.extend(InstanceLock::acquire(bound)?);
                    }
                }
            }
            sockets.push((clients, k));
        }
        let bound_of = |kind| extra.iter().find(|e| e.0 == kind).map(|e| e.2);
        let websocket_addr = bound_of(ListenerKind::WebSocket);
        let client_tls_addr = bound_of(ListenerKind::TlsRawV1);
        let websocket_tls_addr = bound_of(ListenerKind::TlsWebSocket);
        let mqtt_addr = bound_of(ListenerKind::Mqtt);
        let mqtt_tls_addr = bound_of(ListenerKind::TlsMqtt);
        let mut doorbells = Vec::with_capacity(n);
        for _ in 0..n {
            // SAFETY: plain eventfd creation; the result is checked.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(StartError::Doorbell(io::Error::last_os_error()));
            }
            // SAFETY: fd is a fresh descriptor we own.
            doorbells.push(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let opened = crate::store_open::open_stores(&settings.config.store, n)?;
        let shared = Arc::new(Shared {
            stats: (0..n).map(|_| PublishedStats::default()).collect(),
            doorbells,
            draining: AtomicBool::new(false),
            mailboxes: Mailboxes::new(n, settings.config.push.mailbox_capacity as usize),
            push_ids: Arc::new(CountingPushIds::starting_at(opened.first_id)),
            metrics: MetricsHub::install(),
            tls,
            stores: opened
                .stores
                .into_iter()
                .map(|s| std::sync::Mutex::new(Some(s)))
                .collect(),
            store_dirs: opened.dirs,
        });
        let settings = Arc::new(settings);
        let mut threads = Vec::with_capacity(n);
        // A single-issuer ring belongs to the thread that creates it, so each
        // shard is built on its own thread; build errors come back here.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for (index, (client, control)) in sockets.into_iter().enumerate() {
            let cpu = settings.shards[index].cpu;
            let (settings, shared, verifier, ready) = (
                settings.clone(),
                shared.clone(),
                verifier.clone(),
                ready_tx.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || {
                    if let Some(cpu) = cpu
                        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
                    {
                        tracing::warn!(shard = index, cpu, "could not pin shard thread");
                    }
                    match settings.driver {
                        Driver::IoUring => {
                            let built = iouring::Shard::new(
                                index, settings, shared, verifier, client, control,
                            );
                            announce_and_run(built, &ready, iouring::Shard::run)
                        }
                        Driver::Epoll => {
                            let built = epoll::Shard::new(
                                index, settings, shared, verifier, client, control,
                            );
                            announce_and_run(built, &ready, epoll::Shard::run)
                        }
                    }
                })
                .map_err(StartError::Spawn)?;
            threads.push(handle);
        }
        drop(ready_tx);
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    shared.request_shutdown();
                    return Err(e.into());
                }
                Err(_) => {
                    shared.request_shutdown();
                    return Err(ShardError::Panicked { shard: usize::MAX }.into());
                }
            }
        }
        Ok(Self {
            shared,
            threads,
            client_addr,
            control_addr,
            websocket_addr,
            client_tls_addr,
            websocket_tls_addr,
            mqtt_addr,
            mqtt_tls_addr,
            _locks: locks,
            _store_lock: opened.lock,
        })
    }

    /// The state shared with the shards (stats, shutdown).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Reads the TLS certificate and key again (SIGHUP): new TLS
    /// connections get the new ones. `None` without TLS listeners; on an
    /// error the old certificate stays.
    pub fn reload_tls(&self) -> Option<Result<u64, crate::tls::TlsError>> {
        self.shared.tls.as_ref().map(|t| t.reload())
    }

    /// Asks every shard to drain and exit.
    pub fn shutdown(&self) {
        self.shared.request_shutdown();
    }

    /// Whether any shard thread has ended (normally only after shutdown).
    pub fn any_finished(&self) -> bool {
        self.threads.iter().any(JoinHandle::is_finished)
    }

    /// Waits for every shard thread; the first error wins.
    pub fn join(self) -> Result<(), ShardError> {
        let mut first = Ok(());
        for (shard, t) in self.threads.into_iter().enumerate() {
            let r = t.join().unwrap_or(Err(ShardError::Panicked { shard }));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard_core::Message;

    /// The gateway's own mailboxes at 128 shards with the default capacity
    /// reserve one inbox per shard: well under what one queue per ordered
    /// pair of shards would (128 × 128 queues, gigabytes).
    #[test]
    fn mailboxes_for_128_shards_are_linear_in_the_shard_count() {
        let capacity = tuning::config::PushConfig::default().mailbox_capacity as usize;
        let boxes = Mailboxes::<Message>::new(128, capacity);
        let slot = std::mem::size_of::<(usize, (u32, Message))>();
        let one_inbox = capacity * slot + 1024;
        let reserved = boxes.reserved_bytes();
        assert!(
            reserved <= 128 * one_inbox,
            "{reserved} bytes for 128 shards, more than 128 inboxes of {one_inbox}"
        );
        // Per shard, under 1 MiB at the default capacity.
        assert!(
            reserved / 128 < 1 << 20,
            "{} bytes per shard",
            reserved / 128
        );
    }
}
