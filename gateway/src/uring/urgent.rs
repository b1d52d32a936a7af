//! Descriptors whose readiness ends a batched wait at once.
//!
//! A quiet shard lets completions gather before it wakes (see the shard's
//! `wake` module), and io_uring ends such a wait early only when enough
//! completions are ready or a timeout request fires. Client traffic may
//! wait; work someone is waiting on may not: a push arriving by the
//! control API or a mailbox, a new connection. So those descriptors (the
//! doorbell, the listeners, the control connections) are registered with
//! one epoll instance, and while the shard batches, a poll on that epoll
//! descriptor is armed on the ring, linked to a zero timeout. When any of
//! them becomes readable the poll completes, the timeout fires at once,
//! and a firing timeout makes the kernel return from the wait whatever the
//! number of completions ready.
//!
//! The poll asks for an exclusive wake-up (`EPOLLEXCLUSIVE`): io_uring
//! wakes a batching waiter at once only for such polls; others it lets
//! gather with the rest.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::op::{OpKind, OpTag};

/// The epoll instance of one shard's urgent descriptors, and whether its
/// watch is armed on the ring.
#[derive(Debug)]
pub struct UrgentWatch {
    epoll: OwnedFd,
    /// The poll of the epoll descriptor is on the ring (not completed).
    armed: bool,
    /// The linked timeout's duration (zero); the kernel reads it when the
    /// entry is submitted, so it lives as long as the watch.
    zero: Box<types::Timespec>,
}

impl UrgentWatch {
    /// An empty watch.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: false,
            zero: Box::new(types::Timespec::new()),
        })
    }

    /// Watches `fd` for input. It leaves the watch by itself when it is
    /// closed (once every reference to its file is gone).
    pub fn add(&self, fd: RawFd) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: `event` is a valid epoll_event for the call's duration;
        // a bad `fd` is reported as an error, not undefined behaviour.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The two entries that arm the watch (a poll of the epoll descriptor
    /// linked to a zero timeout), to be queued together; `None` when it
    /// is armed already. The caller must queue both or neither.
    pub fn arm(&mut self) -> Option<[squeue::Entry; 2]> {
        if self.armed {
            return None;
        }
        self.armed = true;
        let poll = opcode::PollAdd::new(
            types::Fd(self.epoll.as_raw_fd()),
            (libc::POLLIN as u32) | (libc::EPOLLEXCLUSIVE as u32),
        )
        .build()
        .flags(squeue::Flags::IO_LINK)
        .user_data(OpTag::new(OpKind::UrgentPoll, 0).encode());
        let timeout = opcode::Timeout::new(&*self.zero)
            .build()
            .user_data(OpTag::new(OpKind::UrgentTimeout, 0).encode());
        Some([poll, timeout])
    }

    /// Records the completion of the poll: the watch is disarmed.
    pub fn on_poll_done(&mut self) {
        self.armed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_is_armed_once_until_its_poll_completes() {
        let mut w = UrgentWatch::new().unwrap();
        assert!(w.arm().is_some());
        assert!(w.arm().is_none(), "armed twice");
        w.on_poll_done();
        assert!(w.arm().is_some(), "not re-armed after its poll");
    }

    #[test]
    fn watching_a_closed_descriptor_is_an_error() {
        let w = UrgentWatch::new().unwrap();
        assert!(w.add(-1).is_err());
    }
}
