//! The XMPP listening sockets and their accept loops, which survive descriptor
//! exhaustion by backing off instead of failing, and the listener counters
//! (`xmpp_edge_connections_accepted_total`, `xmpp_edge_connections_closed_total`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::admission::LimitTrigger;
use crate::close::Ended;
use crate::config::{ListenerConfig, ListenerKind};
use crate::conn::{self, Endpoint, SessionMetrics};
use crate::metrics::{self, ListenerLabels, PerListener};
use crate::proxy_listener::ProxyListener;
use crate::socket;
use crate::state::Shared;
use crate::tls::{self, TlsOutcome};

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
        let listener = socket::bind(address, config.backlog, reuse_port)?;
        address = listener.local_addr()?;
        bound.push(Bound {
            kind: config.kind,
            listener,
            proxy: proxy.clone(),
        });
    }
    Ok(bound)
}

/// What the listeners' connections count: the listener counters, and what the
/// connection tasks count (TLS handshakes per address, the sessions).
#[derive(Debug)]
pub struct Metrics {
    accepted: Family<ListenerLabels, Counter>,
    closed: PerListener<Ended>,
    handshakes: PerListener<TlsOutcome>,
    sessions: Arc<SessionMetrics>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let accepted = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "xmpp_edge_connections_accepted",
            "Connections accepted, before admission limits",
            accepted.clone(),
        );
        let closed = PerListener::register(
            registry,
            "xmpp_edge_connections_closed",
            "Connections ended (or refused at admission), by reason",
            "reason",
        );
        let handshakes = tls::register_handshakes(registry);
        let sessions = Arc::new(SessionMetrics::register(registry));
        Self {
            accepted,
            closed,
            handshakes,
            sessions,
        }
    }
}

/// A bound socket with everything its accept loop needs.
#[derive(Debug)]
pub struct Listener {
    pub socket: std::net::TcpListener,
    /// `xmpp_edge_connections_accepted_total` of its address.
    pub accepted: Counter,
    pub endpoint: Arc<Endpoint>,
}

impl Listener {
    /// Readies `bound`, whose address is `address`, to serve with `shared`; the counters of
    /// that address are resolved here, once.
    pub fn new(bound: Bound, address: SocketAddr, metrics: &Metrics, shared: &Arc<Shared>) -> Self {
        let endpoint = Endpoint {
            kind: bound.kind,
            proxy: bound.proxy,
            shared: Arc::clone(shared),
            metrics: Arc::clone(&metrics.sessions),
            handshakes: metrics.handshakes.resolve(bound.kind, address),
            closed: metrics.closed.resolve(bound.kind, address),
        };
        let labels = metrics::listener_labels(bound.kind, address);
        Self {
            socket: bound.listener,
            accepted: metrics.accepted.get_or_create(&labels).clone(),
            endpoint: Arc::new(endpoint),
        }
    }
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

/// Accepts on `listener` (the tokio form of `socket`) until `stop` turns true, handing
/// each connection to admission.
pub async fn accept_loop(
    listener: TcpListener,
    accepted_total: Counter,
    endpoint: Arc<Endpoint>,
    mut stop: watch::Receiver<bool>,
) {
    let kind = endpoint.kind;
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
                admit(&endpoint, &accepted_total, stream, peer);
            }
            Err(error) if is_resource_exhaustion(&error) => {
                endpoint
                    .shared
                    .admission
                    .triggered(LimitTrigger::AcceptResources);
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

/// Admits an accepted connection against the limits and starts its task; refused
/// connections are closed at once. On a PROXY listener the peer must be a trusted
/// balancer, and the per-address limit waits for the client address in the header.
fn admit(endpoint: &Arc<Endpoint>, accepted_total: &Counter, stream: TcpStream, peer: SocketAddr) {
    accepted_total.inc();
    let kind = endpoint.kind;
    if let Some(proxy) = &endpoint.proxy
        && !proxy.admits(peer, kind)
    {
        endpoint.closed.inc(Ended::ProxyHeader);
        return;
    }
    let per_ip = endpoint.proxy.is_none();
    let (ticket, control) = match endpoint.shared.admission.admit(peer, per_ip) {
        Ok(admitted) => admitted,
        Err(limit) => {
            endpoint.closed.inc(Ended::Refused);
            warn!(client = %peer, listener = %kind, ?limit, "limit triggered: connection refused");
            return;
        }
    };
    if let Err(error) = stream.set_nodelay(true) {
        debug!(client = %peer, %error, "cannot set TCP_NODELAY");
    }
    tokio::spawn(conn::serve(stream, Arc::clone(endpoint), ticket, control));
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
