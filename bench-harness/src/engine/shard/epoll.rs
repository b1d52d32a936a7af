//! The epoll I/O of a shard, for hosts where io_uring is denied: one
//! non-blocking socket per connection (a process fd), bound to the slot's
//! source address with `IP_BIND_ADDRESS_NO_PORT` and connected without
//! blocking, all in one edge-triggered epoll set. Readable sockets are
//! read until `EAGAIN` into the shard's one scratch buffer and fed to the
//! shared session logic; a write that meets a full socket buffer waits for
//! `EPOLLOUT`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{Closed, Dial, ONE, Sent, Shard, ShardError, ShardIo, sockaddr, source_addrs};
use crate::engine::ShardPlan;

/// Bytes one read takes at most (the shard's scratch buffer).
const SCRATCH: usize = 64 * 1024;
/// Events one `epoll_wait` returns at most.
const MAX_EVENTS: usize = 1024;
/// What every connection is watched for (edge-triggered).
const WATCH: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
/// Readiness that means "read now": data, the peer's close, an error.
const READABLE: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// Readiness that ends a connect in progress (either way).
const CONNECT_DONE: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// One connection slot's socket.
#[derive(Debug, Default)]
struct SlotFd {
    /// The socket, while open.
    fd: Option<OwnedFd>,
    /// The incarnation it belongs to (events of an earlier one are stale).
    generation: u16,
    /// A non-blocking connect is in progress.
    connecting: bool,
    /// A write met a full socket buffer: `EPOLLOUT` resumes it.
    blocked: bool,
}

/// A shard's epoll set and sockets.
pub(super) struct EpollIo {
    epoll: OwnedFd,
    /// `epoll_pwait2` (a timeout in ns, Linux 5.11) works here; else
    /// `epoll_wait`, whose timeout counts milliseconds.
    pwait2: bool,
    slots: Vec<SlotFd>,
    target: libc::sockaddr_in,
    sources: Box<[libc::sockaddr_in]>,
    events: Vec<libc::epoll_event>,
    scratch: Vec<u8>,
}

/// The errno of the last failed call.
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// An epoll `data` word: the slot and its incarnation.
fn token(slot: u32, generation: u16) -> u64 {
    (u64::from(generation) << 32) | u64::from(slot)
}

/// The slot and incarnation of an epoll `data` word.
fn untoken(data: u64) -> (u32, u16) {
    ((data & 0xffff_ffff) as u32, ((data >> 32) & 0xffff) as u16)
}

/// Sets an `int` socket option to 1; the errno when refused.
fn set_flag(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Result<(), i32> {
    // SAFETY: `ONE` is a live int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const ONE).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// How a connect in progress ended: `0` connected, `-errno` failed, `None`
/// still in progress (writability seen before the handshake finished).
fn connect_result(fd: RawFd, flags: u32) -> Option<i32> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR into a live int of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Some(-errno());
    }
    if err != 0 {
        return Some(-err);
    }
    // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at
    // most `plen` bytes into it.
    let mut peer: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut plen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    let rc = unsafe { libc::getpeername(fd, (&raw mut peer).cast(), &raw mut plen) };
    if rc == 0 {
        return Some(0);
    }
    if flags & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
        return Some(-libc::ECONNREFUSED);
    }
    None
}

impl EpollIo {
    /// Makes the shard's epoll set and its (empty) slots.
    pub(super) fn new(plan: &ShardPlan) -> Result<Self, ShardError> {
        // SAFETY: plain epoll_create1; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(ShardError::Epoll {
                shard: plan.index,
                call: "epoll_create1",
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            epoll,
            pwait2: true,
            slots: (0..plan.count).map(|_| SlotFd::default()).collect(),
            target: sockaddr(plan.target),
            sources: source_addrs(plan),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS],
            scratch: vec![0; SCRATCH],
        })
    }

    /// Waits at most `wait` for readiness into `events`; what
    /// `epoll_wait` returns. The shard's schedules are timed in µs, so
    /// `epoll_pwait2` is used where the kernel (and a seccomp profile)
    /// allows it, else `epoll_wait` with the timeout rounded up to a ms.
    fn wait(&mut self, events: &mut [libc::epoll_event], wait: Duration) -> i64 {
        let len = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        if self.pwait2 {
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(wait.subsec_nanos()),
            };
            // SAFETY: `events` holds `len` live entries the kernel may
            // fill; `ts` is a live timespec; no signal mask.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    len,
                    &raw const ts,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if n >= 0 || !matches!(errno(), libc::ENOSYS | libc::EPERM) {
                return n;
            }
            self.pwait2 = false;
        }
        // Round up, never spin on 0.
        let ms = libc::c_int::try_from(wait.as_micros().div_ceil(1000).max(1))
            .unwrap_or(libc::c_int::MAX);
        // SAFETY: as above.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), len, ms) };
        i64::from(n)
    }

    /// The open socket of `slot` in incarnation `generation`.
    fn fd_of(&self, slot: u32, generation: u16) -> Option<RawFd> {
        self.slots
            .get(slot as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.fd.as_ref())
            .map(AsRawFd::as_raw_fd)
    }

    /// Opens, binds and connects a socket; the step and errno that failed.
    fn dial(&self, slot: u32) -> Result<(OwnedFd, bool), (&'static str, i32)> {
        let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, flags, 0) };
        if raw < 0 {
            return Err(("socket", errno()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_flag(raw, libc::IPPROTO_TCP, libc::TCP_NODELAY).map_err(|e| ("setsockopt", e))?;
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if !self.sources.is_empty() {
            // Port chosen at connect time, per destination: many sources ×
            // the whole port range, not one port per socket at bind.
            set_flag(raw, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT)
                .map_err(|e| ("setsockopt", e))?;
            let src = &self.sources[slot as usize % self.sources.len()];
            // SAFETY: `src` is a live sockaddr_in of `len` bytes.
            if unsafe { libc::bind(raw, (src as *const libc::sockaddr_in).cast(), len) } != 0 {
                return Err(("bind", errno()));
            }
        }
        // SAFETY: the target is a live sockaddr_in of `len` bytes.
        let rc = unsafe { libc::connect(raw, (&raw const self.target).cast(), len) };
        if rc == 0 {
            return Ok((fd, false));
        }
        match errno() {
            libc::EINPROGRESS => Ok((fd, true)),
            e => Err(("connect", e)),
        }
    }
}

impl ShardIo for EpollIo {
    fn connect(&mut self, slot: u32, generation: u16) -> Result<Dial, ShardError> {
        let (fd, in_progress) = match self.dial(slot) {
            Ok(ok) => ok,
            Err(("connect", e)) => return Ok(Dial::Refused(e)),
            Err((step, e)) => return Ok(Dial::SetupFailed(step, e)),
        };
        let mut ev = libc::epoll_event {
            events: WATCH,
            u64: token(slot, generation),
        };
        // SAFETY: both descriptors are open; `ev` is a live event.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &raw mut ev,
            )
        };
        if rc != 0 {
            return Ok(Dial::SetupFailed("epoll_ctl", errno()));
        }
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return Ok(Dial::SetupFailed("socket", libc::EBADF));
        };
        *s = SlotFd {
            fd: Some(fd),
            generation,
            connecting: in_progress,
            blocked: false,
        };
        Ok(if in_progress {
            Dial::Pending
        } else {
            Dial::Connected
        })
    }

    fn arm_recv(&mut self, _slot: u32, _generation: u16) -> Result<(), ShardError> {
        // The socket is in the epoll set for reading since its connect.
        Ok(())
    }

    fn send(&mut self, slot: u32, generation: u16, bytes: &[u8]) -> Result<Sent, ShardError> {
        let Some(fd) = self.fd_of(slot, generation) else {
            return Ok(Sent::Now(-libc::EBADF));
        };
        loop {
            // SAFETY: `bytes` is live for the call; `fd` is open.
            let n = unsafe {
                libc::send(
                    fd,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                return Ok(Sent::Now(i32::try_from(n).unwrap_or(i32::MAX)));
            }
            match errno() {
                libc::EINTR => {}
                libc::EAGAIN => {
                    if let Some(s) = self.slots.get_mut(slot as usize) {
                        s.blocked = true;
                    }
                    return Ok(Sent::Blocked);
                }
                e => return Ok(Sent::Now(-e)),
            }
        }
    }

    fn close(&mut self, slot: u32, _generation: u16) -> Result<Closed, ShardError> {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if let Some(fd) = s.fd.take() {
                // SAFETY: `fd` is open; closing it (the drop) also takes it
                // out of the epoll set.
                unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
            s.connecting = false;
            s.blocked = false;
        }
        Ok(Closed::Now)
    }

    fn poll(shard: &mut Shard<'_, Self>, wait: Duration) -> Result<(), ShardError> {
        let mut events = std::mem::take(&mut shard.io.events);
        let n = shard.io.wait(&mut events, wait);
        let result = if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(ShardError::Epoll {
                    shard: shard.plan.index,
                    call: "epoll_wait",
                    source: e,
                })
            }
        } else {
            let ready = usize::try_from(n).unwrap_or(0).min(events.len());
            events[..ready].iter().try_for_each(|ev| {
                let (slot, generation) = untoken(ev.u64);
                shard.on_ready(slot, generation, ev.events)
            })
        };
        shard.io.events = events;
        result
    }
}

impl Shard<'_, EpollIo> {
    /// Readiness `flags` of `slot`'s socket in incarnation `generation`.
    fn on_ready(&mut self, slot: u32, generation: u16, flags: u32) -> Result<(), ShardError> {
        // An event fetched before its socket was closed (and maybe the
        // slot reused) in this same batch is stale.
        let Some(fd) = self.io.fd_of(slot, generation) else {
            return Ok(());
        };
        let connecting = self
            .io
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.connecting);
        if connecting {
            if flags & CONNECT_DONE == 0 {
                return Ok(());
            }
            let Some(res) = connect_result(fd, flags) else {
                return Ok(());
            };
            if let Some(s) = self.io.slots.get_mut(slot as usize) {
                s.connecting = false;
            }
            self.on_connect(slot, res)?;
        } else if flags & libc::EPOLLOUT as u32 != 0 {
            let blocked = self
                .io
                .slots
                .get_mut(slot as usize)
                .is_some_and(|s| std::mem::take(&mut s.blocked));
            if blocked {
                // Nothing more went; the send resumes where it stopped.
                self.on_send(slot, 0)?;
            }
        }
        if flags & READABLE != 0 {
            self.read_ready(slot, generation)?;
        }
        Ok(())
    }

    /// Reads `slot` until the socket is drained, feeding the session.
    fn read_ready(&mut self, slot: u32, generation: u16) -> Result<(), ShardError> {
        loop {
            // The session may have closed the socket while handling the
            // bytes before: stop reading then.
            let Some(fd) = self.io.fd_of(slot, generation) else {
                return Ok(());
            };
            let mut buf = std::mem::take(&mut self.io.scratch);
            // SAFETY: `buf` holds `len` writable bytes; `fd` is open.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let got = usize::try_from(n).ok();
            let err = if n < 0 { errno() } else { 0 };
            let result = match got {
                Some(0) => self.recv_failed(slot, 0),
                Some(len) => self.feed(slot, &buf[..len.min(buf.len())]),
                None => Ok(()),
            };
            self.io.scratch = buf;
            result?;
            match (got, err) {
                (Some(0), _) => return Ok(()),
                (Some(_), _) | (None, libc::EINTR) => {}
                (None, libc::EAGAIN) => return Ok(()),
                (None, e) => return self.recv_failed(slot, -e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_slot_and_generation() {
        for (slot, generation) in [(0, 0), (7, 1), (u32::MAX, u16::MAX), (123_456, 40_000)] {
            assert_eq!(untoken(token(slot, generation)), (slot, generation));
        }
        assert_ne!(token(1, 2), token(2, 1));
    }
}
