//! Counters of what the edge did and which limits triggered.
//!
//! One [`Stats`] is created at start and passed down (no globals), so swapping it for a
//! metrics registry later touches only this module.

use std::sync::atomic::{AtomicU64, Ordering};

use session::CloseReason;

/// A limit enforced by the edge or the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_connections` reached: the new connection was dropped.
    MaxConnections,
    /// `limits.max_connections_per_ip` reached for the client address.
    MaxConnectionsPerIp,
    /// Out of file descriptors (or kernel memory) on accept.
    AcceptResources,
    /// The TLS handshake did not finish within `limits.tls_handshake_timeout`.
    TlsHandshakeTimeout,
    /// SASL and bind did not finish within `limits.negotiation_timeout`.
    NegotiationTimeout,
    /// The client sent nothing for `limits.idle_timeout`.
    IdleTimeout,
    /// The client broke a stanza limit (size, rate, auth failures): `policy-violation`
    /// or `resource-constraint` from the session.
    StanzaPolicy,
    /// The client did not read its output: more than `limits.max_unsent_output` queued.
    OutputOverflow,
}

/// Monotonic counters (and one gauge); cheap relaxed atomics.
#[derive(Debug, Default)]
pub struct Stats {
    connections_accepted: AtomicU64,
    connections_active: AtomicU64,
    tls_handshake_failures: AtomicU64,
    authenticated: AtomicU64,
    replaced: AtomicU64,
    closed_by_client: AtomicU64,
    closed_by_stream_error: AtomicU64,
    closed_by_io_error: AtomicU64,
    closed_by_force: AtomicU64,
    limit_max_connections: AtomicU64,
    limit_max_connections_per_ip: AtomicU64,
    limit_accept_resources: AtomicU64,
    limit_tls_handshake_timeout: AtomicU64,
    limit_negotiation_timeout: AtomicU64,
    limit_idle_timeout: AtomicU64,
    limit_stanza_policy: AtomicU64,
    limit_output_overflow: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub connections_accepted: u64,
    pub connections_active: u64,
    pub tls_handshake_failures: u64,
    pub authenticated: u64,
    pub replaced: u64,
    pub closed_by_client: u64,
    pub closed_by_stream_error: u64,
    pub closed_by_io_error: u64,
    pub closed_by_force: u64,
    pub limit_max_connections: u64,
    pub limit_max_connections_per_ip: u64,
    pub limit_accept_resources: u64,
    pub limit_tls_handshake_timeout: u64,
    pub limit_negotiation_timeout: u64,
    pub limit_idle_timeout: u64,
    pub limit_stanza_policy: u64,
    pub limit_output_overflow: u64,
}

/// How a connection task ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Client,
    StreamError,
    Io,
    Forced,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// A connection passed admission and got its own task.
    pub fn connection_opened(&self) {
        bump(&self.connections_accepted);
        bump(&self.connections_active);
    }

    /// A connection task ended.
    pub fn connection_closed(&self, how: Ended) {
        bump(match how {
            Ended::Client => &self.closed_by_client,
            Ended::StreamError => &self.closed_by_stream_error,
            Ended::Io => &self.closed_by_io_error,
            Ended::Forced => &self.closed_by_force,
        });
        // Last, so whoever sees the gauge drop also sees why.
        self.connections_active.fetch_sub(1, Ordering::Release);
    }

    pub fn tls_handshake_failed(&self) {
        bump(&self.tls_handshake_failures);
    }

    pub fn authenticated(&self) {
        bump(&self.authenticated);
    }

    /// A session was told another connection bound its full JID.
    pub fn replaced(&self) {
        bump(&self.replaced);
    }

    pub fn limit(&self, limit: Limit) {
        bump(match limit {
            Limit::MaxConnections => &self.limit_max_connections,
            Limit::MaxConnectionsPerIp => &self.limit_max_connections_per_ip,
            Limit::AcceptResources => &self.limit_accept_resources,
            Limit::TlsHandshakeTimeout => &self.limit_tls_handshake_timeout,
            Limit::NegotiationTimeout => &self.limit_negotiation_timeout,
            Limit::IdleTimeout => &self.limit_idle_timeout,
            Limit::StanzaPolicy => &self.limit_stanza_policy,
            Limit::OutputOverflow => &self.limit_output_overflow,
        });
    }

    pub fn snapshot(&self) -> Snapshot {
        // Acquire on the gauge (read first) pairs with the Release in connection_closed.
        let connections_active = self.connections_active.load(Ordering::Acquire);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            connections_accepted: get(&self.connections_accepted),
            connections_active,
            tls_handshake_failures: get(&self.tls_handshake_failures),
            authenticated: get(&self.authenticated),
            replaced: get(&self.replaced),
            closed_by_client: get(&self.closed_by_client),
            closed_by_stream_error: get(&self.closed_by_stream_error),
            closed_by_io_error: get(&self.closed_by_io_error),
            closed_by_force: get(&self.closed_by_force),
            limit_max_connections: get(&self.limit_max_connections),
            limit_max_connections_per_ip: get(&self.limit_max_connections_per_ip),
            limit_accept_resources: get(&self.limit_accept_resources),
            limit_tls_handshake_timeout: get(&self.limit_tls_handshake_timeout),
            limit_negotiation_timeout: get(&self.limit_negotiation_timeout),
            limit_idle_timeout: get(&self.limit_idle_timeout),
            limit_stanza_policy: get(&self.limit_stanza_policy),
            limit_output_overflow: get(&self.limit_output_overflow),
        }
    }
}

/// The limit a session close stands for, if any. `bound` tells a negotiation timeout
/// (before a resource was bound) from an idle timeout.
pub fn limit_of(reason: &CloseReason, bound: bool) -> Option<Limit> {
    match reason {
        CloseReason::OutputOverflow => Some(Limit::OutputOverflow),
        CloseReason::StreamError {
            condition: "connection-timeout",
            ..
        } => Some(if bound {
            Limit::IdleTimeout
        } else {
            Limit::NegotiationTimeout
        }),
        CloseReason::StreamError {
            condition: "policy-violation" | "resource-constraint",
            ..
        } => Some(Limit::StanzaPolicy),
        CloseReason::StreamError { .. } | CloseReason::ClientClosed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let stats = Stats::default();
        stats.connection_opened();
        stats.connection_opened();
        stats.connection_closed(Ended::Client);
        stats.limit(Limit::MaxConnectionsPerIp);
        let s = stats.snapshot();
        assert_eq!(
            (
                s.connections_accepted,
                s.connections_active,
                s.closed_by_client
            ),
            (2, 1, 1)
        );
        assert_eq!(s.limit_max_connections_per_ip, 1);
    }

    #[test]
    fn close_reasons_map_to_limits() {
        let timeout = CloseReason::StreamError {
            condition: "connection-timeout",
            detail: String::new(),
        };
        assert_eq!(limit_of(&timeout, false), Some(Limit::NegotiationTimeout));
        assert_eq!(limit_of(&timeout, true), Some(Limit::IdleTimeout));
        assert_eq!(
            limit_of(&CloseReason::OutputOverflow, true),
            Some(Limit::OutputOverflow)
        );
        assert_eq!(limit_of(&CloseReason::ClientClosed, true), None);
    }
}
