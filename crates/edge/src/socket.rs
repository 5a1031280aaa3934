//! Listening sockets built with socket2, for the backlog, SO_REUSEADDR and SO_REUSEPORT
//! that std's `TcpListener::bind` does not offer; the XMPP listeners and the admin
//! endpoint both use it.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// A non-blocking listening socket: SO_REUSEADDR (and SO_REUSEPORT when asked), IPv6
/// sockets IPv6-only, TCP_NODELAY inherited by accepted sockets.
pub fn bind(
    address: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if address.is_ipv6() {
        // So `[::]:5222` and `0.0.0.0:5222` can be separate listeners.
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}
