//! Admission: whether a new connection gets a slot (connections in total and per client
//! address), its entry in the session table, and the metrics that follow a connection from
//! admission to close: `xmpp_edge_sessions{state}`, `xmpp_edge_connections_limit`,
//! `xmpp_edge_limit_triggers_total{limit}` and `xmpp_edge_sessions_replaced_total`.
//!
//! A [`Ticket`] is one connection's slot and table entry; it is given back on drop, whatever
//! way the connection task ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::metrics::{self, ByLabel, label_enum};
use crate::sessions::{Control, Request, SessionTable};

label_enum! {
    /// A limit enforced by the edge or the session (the `limit` of
    /// `xmpp_edge_limit_triggers_total`).
    LimitTrigger {
        /// `limits.max_connections` reached: the new connection was dropped.
        MaxConnections => "max_connections",
        /// `limits.max_connections_per_ip` reached for the client address.
        MaxConnectionsPerIp => "max_connections_per_ip",
        /// Out of file descriptors (or kernel memory) on accept.
        AcceptResources => "accept_resources",
        /// The TLS handshake did not finish within `limits.tls_handshake_timeout`.
        TlsHandshakeTimeout => "tls_handshake_timeout",
        /// SASL and bind did not finish within `limits.negotiation_timeout`.
        NegotiationTimeout => "negotiation_timeout",
        /// The client sent nothing for `limits.idle_timeout`.
        IdleTimeout => "idle_timeout",
        /// The client broke a stanza limit (size, rate, auth failures): `policy-violation`
        /// or `resource-constraint` from the session.
        StanzaPolicy => "stanza_policy",
        /// The client did not read its output: more than `limits.max_unsent_output` queued.
        OutputOverflow => "output_overflow",
    }
}

label_enum! {
    /// Where a live connection is in its negotiation (`xmpp_edge_sessions{state}`).
    SessionState {
        /// Accepted; no TLS yet (STARTTLS not done, or the direct TLS handshake running).
        PreTls => "pre_tls",
        /// Encrypted, not authenticated.
        PreAuth => "pre_auth",
        Authenticated => "authenticated",
    }
}

#[derive(Debug)]
struct Metrics {
    sessions: ByLabel<SessionState, Gauge>,
    triggers: ByLabel<LimitTrigger>,
    replaced: Counter,
}

/// The connection limits, the table of live connections and their metrics.
#[derive(Debug)]
pub struct Admission {
    max_total: u64,
    max_per_ip: u32,
    total: AtomicU64,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    sessions: SessionTable,
    metrics: Metrics,
}

impl Admission {
    /// Limits of `max_total` connections and `max_per_ip` per client address; registers
    /// the metrics in `registry` and exports `max_total` as the connection limit.
    pub fn new(max_total: u64, max_per_ip: u32, registry: &mut Registry) -> Self {
        let sessions = metrics::by_label(
            registry,
            "xmpp_edge_sessions",
            "Live connections, by negotiation state",
            "state",
        );
        let limit = metrics::gauge(
            registry,
            "xmpp_edge_connections_limit",
            "The connection limit in force (limits.max_connections or derived from RLIMIT_NOFILE)",
        );
        limit.set(i64::try_from(max_total).unwrap_or(i64::MAX));
        let triggers = metrics::by_label(
            registry,
            "xmpp_edge_limit_triggers",
            "Limits that refused or closed a connection, by limit",
            "limit",
        );
        let replaced = metrics::counter(
            registry,
            "xmpp_edge_sessions_replaced",
            "Sessions closed because another connection bound the same full JID",
        );
        Self {
            max_total,
            max_per_ip,
            total: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
            sessions: SessionTable::default(),
            metrics: Metrics {
                sessions,
                triggers,
                replaced,
            },
        }
    }

    /// Every live connection, for shutdown.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Counts a limit that refused or closed a connection.
    pub fn triggered(&self, limit: LimitTrigger) {
        self.metrics.triggers.inc(limit);
    }

    /// Gives a connection from `client` a slot and a table entry, or counts and returns the
    /// limit that refuses it. Without `per_ip` (PROXY listeners, whose client is known only
    /// once the header is read) only the total is checked, until [`Ticket::admit_client`].
    pub fn admit(
        self: &Arc<Self>,
        client: SocketAddr,
        per_ip: bool,
    ) -> Result<(Ticket, Arc<Control>), LimitTrigger> {
        let admitted = if per_ip {
            self.take_slot(client.ip())
        } else {
            self.admit_total()
        };
        admitted.inspect_err(|&limit| self.triggered(limit))?;
        let (id, control) = self.sessions.register();
        self.metrics.sessions.get(SessionState::PreTls).inc();
        let ticket = Ticket {
            admission: Arc::clone(self),
            id,
            client,
            per_ip,
            state: SessionState::PreTls,
            bound: None,
        };
        Ok((ticket, control))
    }

    /// Counts one more connection from `ip`, or says which limit refuses it. Every `Ok`
    /// must be matched by one [`Admission::free_slot`].
    fn take_slot(&self, ip: IpAddr) -> Result<(), LimitTrigger> {
        self.admit_total()?;
        self.admit_ip(ip).inspect_err(|_| self.release_total())
    }

    /// Forgets one connection from `ip`.
    fn free_slot(&self, ip: IpAddr) {
        self.release_ip(ip);
        self.release_total();
    }

    /// The total half of [`Admission::take_slot`]. Matched by [`Admission::release_total`].
    fn admit_total(&self) -> Result<(), LimitTrigger> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitTrigger::MaxConnections);
        }
        Ok(())
    }

    /// The per-address half of [`Admission::take_slot`]. Matched by
    /// [`Admission::release_ip`].
    fn admit_ip(&self, ip: IpAddr) -> Result<(), LimitTrigger> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip.to_canonical()).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(LimitTrigger::MaxConnectionsPerIp);
        }
        *count += 1;
        Ok(())
    }

    fn release_total(&self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
    }

    fn release_ip(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// A connection's place in the limits and the session table, given back on drop whatever
/// way the task ends.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    /// The socket's peer, or on a PROXY listener the client the header names once read.
    client: SocketAddr,
    /// The client's address is counted in the per-address limit.
    per_ip: bool,
    /// Where the session is, as counted in `xmpp_edge_sessions`.
    state: SessionState,
    bound: Option<String>,
}

impl Ticket {
    /// The client, as far as known (see [`Ticket::admit_client`]).
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// Admits the client a PROXY header names against the per-address limit; from then on
    /// it is this connection's client. Counts and returns the limit that refuses it.
    pub fn admit_client(&mut self, client: SocketAddr) -> Result<(), LimitTrigger> {
        self.admission
            .admit_ip(client.ip())
            .inspect_err(|&limit| self.admission.triggered(limit))?;
        self.client = client;
        self.per_ip = true;
        Ok(())
    }

    /// The session moved on in its negotiation.
    pub fn moved(&mut self, to: SessionState) {
        let sessions = &self.admission.metrics.sessions;
        sessions.get(to).inc();
        sessions.get(self.state).dec();
        self.state = to;
    }

    /// Counts and logs a limit that ended this connection.
    pub fn limit(&self, limit: LimitTrigger, detail: &str) {
        self.admission.triggered(limit);
        warn!(client = %self.client, ?limit, detail, "limit triggered");
    }

    /// Records the bound full JID and replaces the connection that held it before.
    pub fn bind(&mut self, full_jid: String) {
        let sessions = &self.admission.sessions;
        if let Some(old) = self.bound.take() {
            sessions.unbind(self.id, &old);
        }
        if let Some(previous) = sessions.bind(self.id, &full_jid) {
            previous.request(Request::Replaced);
            self.admission.metrics.replaced.inc();
            info!(client = %self.client, jid = %full_jid, "resource bound again: replacing the older session");
        }
        self.bound = Some(full_jid);
    }

    /// Gives the ticket back, then runs `count` (the close counters), then stops counting
    /// the connection as live. Releasing first means anyone who sees the connection gone
    /// from the counters also finds its slot free; the live gauge falls last, so whoever
    /// sees it fall also sees the close counted.
    pub fn close(self, count: impl FnOnce()) {
        let admission = Arc::clone(&self.admission);
        let state = self.state;
        drop(self);
        count();
        admission.metrics.sessions.get(state).dec();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission
            .sessions
            .remove(self.id, self.bound.as_deref());
        if self.per_ip {
            self.admission.free_slot(self.client.ip());
        } else {
            self.admission.release_total();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Scrape;

    #[test]
    fn total_and_per_ip() {
        let limits = Admission::new(3, 2, &mut Registry::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(limits.take_slot(a), Ok(()));
        assert_eq!(limits.take_slot(a), Ok(()));
        assert_eq!(limits.take_slot(a), Err(LimitTrigger::MaxConnectionsPerIp));
        assert_eq!(limits.take_slot(b), Ok(()));
        assert_eq!(
            limits.take_slot("10.0.0.2".parse().unwrap()),
            Err(LimitTrigger::MaxConnections)
        );
        limits.free_slot(a);
        // The IPv4-mapped form counts as the same address.
        assert_eq!(limits.take_slot("10.0.0.2".parse().unwrap()), Ok(()));
        limits.free_slot(a);
        assert_eq!(limits.take_slot(b), Err(LimitTrigger::MaxConnectionsPerIp));
        assert_eq!(limits.take_slot(a), Ok(()));
    }

    #[test]
    fn tickets_follow_a_connection() {
        let mut registry = Registry::default();
        let admission = Arc::new(Admission::new(5, 1, &mut registry));
        let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let (mut ticket, _) = admission.admit(client, true).unwrap();
        assert_eq!(
            admission.admit(client, true).unwrap_err(),
            LimitTrigger::MaxConnectionsPerIp
        );
        ticket.moved(SessionState::PreAuth);
        let scrape = Scrape::of(&registry);
        assert_eq!(scrape.sum("xmpp_edge_connections_limit", &[]), 5);
        assert_eq!(
            scrape.sum("xmpp_edge_sessions", &[("state", "pre_auth")]),
            1
        );
        assert_eq!(scrape.sum("xmpp_edge_sessions", &[("state", "pre_tls")]), 0);
        assert_eq!(
            scrape.sum(
                "xmpp_edge_limit_triggers_total",
                &[("limit", "max_connections_per_ip")]
            ),
            1
        );
        let mut counted = false;
        ticket.close(|| counted = true);
        assert!(counted);
        assert!(admission.sessions().is_empty());
        assert_eq!(Scrape::of(&registry).sum("xmpp_edge_sessions", &[]), 0);
        // The slot is free again.
        assert!(admission.admit(client, true).is_ok());
    }
}
