//! Listening sockets (socket2, for backlog, SO_REUSEADDR and SO_REUSEPORT) and the accept
//! loops, which survive descriptor exhaustion by backing off instead of failing.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::{ListenerConfig, ListenerKind};
use crate::proxy_listener::ProxyListener;
use crate::server::Shared;
use crate::stats::{Limit, ListenerStats};

/// First pause after an accept failed for lack of descriptors or memory.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause: short enough to recover quickly once descriptors free up.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this interval for repeated accept failures.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// A bound listening socket and what it serves.
#[derive(Debug)]
pub struct Bound {
    pub kind: ListenerKind,
    pub listener: std::net::TcpListener,
    /// Set when connections start with a PROXY header.
    pub proxy: Option<Arc<ProxyListener>>,
}

/// Binds one configured listener: a single socket, or `reuse_port_workers` sockets
/// sharing the port through SO_REUSEPORT (port 0 is resolved by the first one).
pub fn bind(config: &ListenerConfig, proxy: Option<Arc<ProxyListener>>) -> io::Result<Vec<Bound>> {
    let reuse_port = config.reuse_port_workers > 0;
    let count = config.reuse_port_workers.max(1);
    let mut address = config.address;
    let mut bound = Vec::new();
    for _ in 0..count {
        let listener = bind_one(address, config.backlog, reuse_port)?;
        address = listener.local_addr()?;
        bound.push(Bound {
            kind: config.kind,
            listener,
            proxy: proxy.clone(),
        });
    }
    Ok(bound)
}

/// A non-blocking listening socket: SO_REUSEADDR (and SO_REUSEPORT when asked), IPv6
/// sockets IPv6-only, TCP_NODELAY inherited by accepted sockets. The admin listener uses
/// it too.
pub(crate) fn bind_one(
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

/// Whether an accept error means the process or system is out of a resource (as opposed
/// to one aborted connection).
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// Whether an accept error concerns only the connection being accepted (it was reset or
/// aborted before accept), so accepting can go on at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(
        error.raw_os_error().map(Errno::from_raw),
        Some(Errno::EPROTO | Errno::EPERM)
    )
}

/// Accepts until `stop` turns true, handing each connection to admission.
pub async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    proxy: Option<Arc<ProxyListener>>,
    counters: Arc<ListenerStats>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut last_log: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                crate::conn::admit(&shared, stream, peer, kind, proxy.as_ref(), &counters);
            }
            Err(error) if is_resource_exhaustion(&error) => {
                shared.stats.limit(Limit::AcceptResources);
                if last_log.is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
                    warn!(
                        listener = %kind, %error, retry_in = ?backoff, suppressed,
                        "limit triggered: cannot accept (out of file descriptors or memory); existing sessions keep running"
                    );
                    last_log = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(error) if is_connection_error(&error) => {
                debug!(listener = %kind, %error, "accept failed for one connection");
            }
            Err(error) => {
                // Unexpected: pause briefly so a persistent error cannot spin the loop.
                warn!(listener = %kind, %error, "accept failed");
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(BACKOFF_MIN) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_port_workers_share_one_port() {
        let mut config =
            ListenerConfig::new(ListenerKind::Starttls, "127.0.0.1:0".parse().unwrap());
        config.reuse_port_workers = 3;
        let bound = bind(&config, None).unwrap();
        assert_eq!(bound.len(), 3);
        let port = bound[0].listener.local_addr().unwrap().port();
        assert!(
            bound
                .iter()
                .all(|b| b.listener.local_addr().unwrap().port() == port)
        );
    }

    #[test]
    fn exhaustion_errors() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            Errno::EMFILE as i32
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            Errno::ECONNABORTED as i32
        )));
    }
}
