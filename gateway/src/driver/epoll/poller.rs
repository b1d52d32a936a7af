//! A thin shell over one epoll instance (`libc`: the gateway already
//! depends on it, and a caller-driven loop needs nothing more than
//! `epoll_ctl` and `epoll_wait`; mio would add its own registry and
//! token model for no gain here).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Edge-triggered interest in reading, writing and the peer's hang-up.
pub const STREAM_EVENTS: u32 =
    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// Edge-triggered interest in reading only (listeners, the doorbell).
pub const READ_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLET) as u32;

/// One epoll instance.
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Poller {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain epoll_create1; the result is checked.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(Self {
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for `events`; its events carry `data`.
    pub fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: epoll_ctl with a live event struct; the result is checked.
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(drop)
    }

    /// Stops watching `fd` (closing it would too, unless it was shared).
    pub fn delete(&self, fd: RawFd) {
        // SAFETY: epoll_ctl on our instance; an error (not watched) is
        // harmless.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits up to `timeout_ms` (-1: no limit) for events, filling
    /// `events` (its capacity is the batch size). An interrupted wait
    /// returns no events.
    pub fn wait(&self, events: &mut Vec<libc::epoll_event>, timeout_ms: i32) -> io::Result<()> {
        events.clear();
        if events.capacity() == 0 {
            events.reserve(256);
        }
        let room = i32::try_from(events.capacity()).unwrap_or(i32::MAX).max(1);
        // SAFETY: the kernel writes at most `room` events into the
        // vector's spare capacity, and says how many.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                room,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: the kernel initialised the first `n` entries.
        unsafe { events.set_len(n as usize) };
        Ok(())
    }
}
