//! Sockets every driver opens the same way.

use std::os::fd::{IntoRawFd, RawFd};

use socket2::{SockAddr, Socket, Type};

use crate::shard_core::ListenerKind;

/// One of a shard's client listeners: its SO_REUSEPORT socket, bound and
/// listening, and what the connections it accepts speak.
#[derive(Debug)]
pub struct ClientListener {
    /// The listening socket.
    pub socket: Socket,
    /// What it speaks.
    pub kind: ListenerKind,
}

/// A TCP socket for a backend connection to `addr`, with TCP_NODELAY
/// (and close-on-exec, as every socket socket2 makes), non-blocking when
/// the driver waits for readiness.
pub fn open_tcp_socket(addr: Option<&SockAddr>, nonblocking: bool) -> std::io::Result<RawFd> {
    let Some(addr) = addr else {
        return Err(std::io::Error::other("no such backend connection"));
    };
    let socket = Socket::new(addr.domain(), Type::STREAM, None)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(nonblocking)?;
    Ok(socket.into_raw_fd())
}

/// The IP address in a sockaddr the kernel filled.
pub fn sockaddr_ip(sa: &libc::sockaddr_storage) -> Option<std::net::IpAddr> {
    match i32::from(sa.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin =
                unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).into())
        }
        _ => None,
    }
}
