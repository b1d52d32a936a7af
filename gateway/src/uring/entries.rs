//! The entries of a stream on an ordinary descriptor (control and backend
//! connections): a receive into a buffer's spare capacity, and a send.
//! Building an entry is safe; queueing it ([`super::sq`]) is where the
//! buffer's lifetime is vouched for.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

/// A single-shot receive on `fd` into the spare capacity of `buf`, made at
/// least `chunk` bytes first. The kernel writes there; the caller sets the
/// length from the completion.
pub fn recv_into_spare(
    fd: RawFd,
    buf: &mut Vec<u8>,
    chunk: usize,
    user_data: u64,
) -> squeue::Entry {
    buf.reserve(chunk);
    let spare = buf.spare_capacity_mut();
    let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
    opcode::Recv::new(types::Fd(fd), spare.as_mut_ptr().cast(), len)
        .build()
        .user_data(user_data)
}

/// A send of `bytes` on `fd`, without SIGPIPE if the peer is gone.
pub fn send(fd: RawFd, bytes: &[u8], user_data: u64) -> squeue::Entry {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len)
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data)
}
