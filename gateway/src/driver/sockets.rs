//! Sockets every driver opens the same way.

use std::os::fd::{IntoRawFd, RawFd};

use socket2::{SockAddr, Socket, Type};

/// A TCP socket for a backend connection to `addr`, with TCP_NODELAY
/// (and close-on-exec, as every socket socket2 makes).
pub fn open_tcp_socket(addr: Option<&SockAddr>) -> std::io::Result<RawFd> {
    let Some(addr) = addr else {
        return Err(std::io::Error::other("no such backend connection"));
    };
    let socket = Socket::new(addr.domain(), Type::STREAM, None)?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into_raw_fd())
}
