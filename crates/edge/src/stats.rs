//! What the edge did, as Prometheus metrics in one `prometheus-client` registry.
//!
//! [`Stats::register`] registers every family in the registry created at start and
//! resolves each label combination once into a handle kept in a field, so counting on the
//! hot path is a relaxed atomic add on a known counter: no label hashing, no lock, no
//! allocation. Every label takes its values from a closed enum here or in the session
//! crate, so no input can grow the number of series.
//!
//! Families (counters end in `_total` on the wire):
//! - `xmpp_edge_connections_accepted_total{listener,address}`
//! - `xmpp_edge_connections_closed_total{listener,address,reason}` ([`Ended`])
//! - `xmpp_edge_tls_handshakes_total{listener,address,outcome}` ([`TlsOutcome`])
//! - `xmpp_edge_sessions{state}` ([`SessionState`]), `xmpp_edge_connections_limit`,
//!   `xmpp_edge_ready`
//! - `xmpp_edge_sasl_total{mechanism,outcome}`
//! - `xmpp_edge_proxy_headers_total{version,command,outcome}` ([`Stats::record_proxy`])
//! - `xmpp_edge_stanzas_received_total{kind}`
//! - `xmpp_edge_sic_answers_total{form}`, `xmpp_edge_sic_forbidden_total`,
//!   `xmpp_edge_iq_answers_total{kind}` (disco, ping, bind, session, other errors)
//! - `xmpp_edge_stream_errors_total{condition}`, `xmpp_edge_limit_triggers_total{limit}`
//! - `xmpp_edge_sessions_replaced_total`, `xmpp_edge_received_bytes_total`,
//!   `xmpp_edge_sent_bytes_total`
//! - `xmpp_edge_request_duration_seconds` (histogram, [`crate::histogram`])
//! - `process_*` from [`crate::process`].

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use session::sasl::Mechanism;
use session::{AnswerKind, CloseReason, Counts, SaslOutcome, StanzaKind, StreamCondition};

use crate::config::ListenerKind;
use crate::histogram::Histogram;

/// A label set of fixed names and values from closed enums.
type Labels<const N: usize> = [(&'static str, &'static str); N];
/// The label set of per-listener families: kind and bound address.
type ListenerLabels = Vec<(&'static str, String)>;

/// Declares a closed label enum with its label values, in `ALL`/`index` order.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in [`Self::index`] order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The metric label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }

            /// The position in [`Self::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// A limit enforced by the edge or the session.
    Limit {
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
    /// How a connection ended (the `reason` of `xmpp_edge_connections_closed_total`).
    Ended {
        /// The client closed its stream or the socket.
        Client => "client_closed",
        /// The edge sent a stream error.
        StreamError => "stream_error",
        /// The client did not read its output.
        OutputOverflow => "output_overflow",
        /// The socket failed.
        Io => "io_error",
        TlsFailed => "tls_failed",
        TlsTimeout => "tls_timeout",
        /// Shutdown ran out of time.
        Forced => "forced",
        /// Refused at admission by a connection limit.
        Refused => "refused",
        /// No acceptable PROXY header (see `xmpp_edge_proxy_headers_total`).
        ProxyHeader => "proxy_header",
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

label_enum! {
    /// How a TLS handshake ended.
    TlsOutcome {
        Ok => "ok",
        /// Not finished within `limits.tls_handshake_timeout`.
        Timeout => "timeout",
        /// The client went away mid-handshake.
        Closed => "closed",
        /// Bytes that are not TLS (such as plaintext XMPP on the direct TLS port).
        BadMessage => "bad_message",
        /// No protocol version, cipher suite or ALPN protocol in common.
        Incompatible => "incompatible",
        /// The client sent an alert, typically because it does not trust the certificate.
        AlertReceived => "alert_received",
        Other => "other",
    }
}

label_enum! {
    /// The PROXY protocol version a header used.
    ProxyVersion {
        V1 => "v1",
        V2 => "v2",
        /// Not known: the header was rejected before its signature was complete (timeout,
        /// untrusted source, garbage).
        Unknown => "unknown",
    }
}

label_enum! {
    /// What a PROXY header said about the connection.
    ProxyCommand {
        /// A relayed client connection (every v1 header but `UNKNOWN`).
        Proxy => "proxy",
        /// The balancer's own connection, such as a health check (v2 LOCAL, v1 UNKNOWN).
        Local => "local",
        /// Not known because the header was rejected first.
        Unknown => "unknown",
    }
}

label_enum! {
    /// What became of a PROXY header.
    ProxyOutcome {
        /// Accepted.
        Ok => "ok",
        /// The socket's peer is not a trusted balancer; the connection was closed.
        UntrustedSource => "untrusted_source",
        /// Not a valid header.
        Malformed => "malformed",
        /// The header did not arrive in time.
        Timeout => "timeout",
        /// A v2 header whose CRC32C TLV does not match.
        BadCrc => "bad_crc",
        /// The peer closed (or reset) the connection before the header ended; plain TCP
        /// health checks and port probes do this.
        Closed => "closed",
    }
}

impl TlsOutcome {
    /// The outcome a failed handshake's error stands for. tokio-rustls reports TLS errors
    /// as `io::Error`s wrapping the `rustls::Error`.
    pub fn of_error(error: &io::Error) -> Self {
        use rustls::Error as E;
        if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<E>()) {
            return match tls {
                E::InvalidMessage(_)
                | E::InappropriateMessage { .. }
                | E::InappropriateHandshakeMessage { .. }
                | E::DecryptError => Self::BadMessage,
                E::PeerIncompatible(_) | E::NoApplicationProtocol => Self::Incompatible,
                E::AlertReceived(_) => Self::AlertReceived,
                _ => Self::Other,
            };
        }
        match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::Closed,
            _ => Self::Other,
        }
    }
}

/// Pre-resolved counters of one listening address (shared by its SO_REUSEPORT sockets).
#[derive(Debug)]
pub struct ListenerStats {
    labels: ListenerLabels,
    accepted: Counter,
    closed: Vec<Counter>,
    tls: Vec<Counter>,
}

impl ListenerStats {
    /// A connection was accepted (before admission).
    pub fn accepted(&self) {
        self.accepted.inc();
    }

    /// A connection ended (or was refused at admission).
    pub fn closed(&self, how: Ended) {
        self.closed[how.index()].inc();
    }

    /// A TLS handshake ended.
    pub fn tls(&self, outcome: TlsOutcome) {
        self.tls[outcome.index()].inc();
    }
}

/// The edge's metrics; see the module documentation for the families.
#[derive(Debug)]
pub struct Stats {
    accepted: Family<ListenerLabels, Counter>,
    closed: Family<ListenerLabels, Counter>,
    tls: Family<ListenerLabels, Counter>,
    /// Every listener's handles, for [`Stats::snapshot`] and to hand out one set per
    /// address.
    listeners: Mutex<Vec<Arc<ListenerStats>>>,
    sessions: Vec<Gauge>,
    connections_limit: Gauge,
    ready: Gauge,
    /// By [`sasl_slot`], then [`SaslOutcome::index`].
    sasl: Vec<Vec<Counter>>,
    /// By version, command and outcome index.
    proxy: Vec<Vec<Vec<Counter>>>,
    stanzas: Vec<Counter>,
    /// By [`AnswerKind::index`]; SIC forms, forbidden and the rest come from three
    /// families.
    answers: Vec<Counter>,
    stream_errors: Vec<Counter>,
    limits: Vec<Counter>,
    replaced: Counter,
    received_bytes: Counter,
    sent_bytes: Counter,
    latency: Histogram,
}

/// The SASL mechanisms counted, in slot order; `None` is an `<auth>` naming none the edge
/// knows.
fn sasl_mechanisms() -> impl Iterator<Item = Option<Mechanism>> {
    Mechanism::ALL.into_iter().map(Some).chain([None])
}

fn sasl_slot(mechanism: Option<Mechanism>) -> usize {
    sasl_mechanisms()
        .position(|m| m == mechanism)
        .unwrap_or(Mechanism::ALL.len())
}

fn mechanism_label(mechanism: Option<Mechanism>) -> &'static str {
    mechanism.map_or("none", Mechanism::name)
}

/// Registers a labelled counter family and resolves one handle per label set.
fn counters<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label_sets: impl IntoIterator<Item = Labels<N>>,
) -> Vec<Counter> {
    let family = Family::<Labels<N>, Counter>::default();
    registry.register(name, help, family.clone());
    label_sets
        .into_iter()
        .map(|labels| family.get_or_create(&labels).clone())
        .collect()
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

fn sum(counters: &[Counter]) -> u64 {
    counters.iter().map(Counter::get).sum()
}

impl Stats {
    /// Registers every family in `registry` and resolves all label sets.
    pub fn register(registry: &mut Registry) -> Self {
        let accepted = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "xmpp_edge_connections_accepted",
            "Connections accepted, before admission limits",
            accepted.clone(),
        );
        let closed = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "xmpp_edge_connections_closed",
            "Connections ended (or refused at admission), by reason",
            closed.clone(),
        );
        let tls = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "xmpp_edge_tls_handshakes",
            "TLS handshakes, by outcome",
            tls.clone(),
        );
        let sessions_family = Family::<Labels<1>, Gauge>::default();
        registry.register(
            "xmpp_edge_sessions",
            "Live connections, by negotiation state",
            sessions_family.clone(),
        );
        let sessions = SessionState::ALL
            .iter()
            .map(|s| {
                sessions_family
                    .get_or_create(&[("state", s.as_str())])
                    .clone()
            })
            .collect();
        let connections_limit = gauge(
            registry,
            "xmpp_edge_connections_limit",
            "The connection limit in force (limits.max_connections or derived from RLIMIT_NOFILE)",
        );
        let ready = gauge(
            registry,
            "xmpp_edge_ready",
            "1 while all listeners accept and the node is not draining, else 0 (as /readyz)",
        );
        let sasl_outcomes = |mechanism| {
            SaslOutcome::ALL.into_iter().map(move |outcome| {
                [
                    ("mechanism", mechanism_label(mechanism)),
                    ("outcome", outcome.as_str()),
                ]
            })
        };
        let flat = counters(
            registry,
            "xmpp_edge_sasl",
            "SASL attempts, by mechanism and outcome",
            sasl_mechanisms().flat_map(sasl_outcomes),
        );
        let sasl = flat
            .chunks(SaslOutcome::ALL.len())
            .map(<[Counter]>::to_vec)
            .collect();
        let proxy_labels = ProxyVersion::ALL.iter().flat_map(|v| {
            ProxyCommand::ALL.iter().flat_map(move |c| {
                ProxyOutcome::ALL.iter().map(move |o| {
                    [
                        ("version", v.as_str()),
                        ("command", c.as_str()),
                        ("outcome", o.as_str()),
                    ]
                })
            })
        });
        let flat = counters(
            registry,
            "xmpp_edge_proxy_headers",
            "PROXY protocol headers, by version, command and outcome",
            proxy_labels,
        );
        let proxy = flat
            .chunks(ProxyCommand::ALL.len() * ProxyOutcome::ALL.len())
            .map(|by_version| {
                by_version
                    .chunks(ProxyOutcome::ALL.len())
                    .map(<[Counter]>::to_vec)
                    .collect()
            })
            .collect();
        let stanzas = counters(
            registry,
            "xmpp_edge_stanzas_received",
            "Top-level elements received, by kind",
            StanzaKind::ALL.map(|k| [("kind", k.as_str())]),
        );
        let sic = Family::<Labels<1>, Counter>::default();
        registry.register(
            "xmpp_edge_sic_answers",
            "XEP-0279 Server IP Check answers, by wire form",
            sic.clone(),
        );
        let sic_forbidden = counter(
            registry,
            "xmpp_edge_sic_forbidden",
            "SIC requests for someone else's address, answered with forbidden",
        );
        let others = Family::<Labels<1>, Counter>::default();
        registry.register(
            "xmpp_edge_iq_answers",
            "Other IQ answers (disco, ping, bind, session, stanza errors), by kind",
            others.clone(),
        );
        let answers = AnswerKind::ALL
            .into_iter()
            .map(|kind| match kind {
                AnswerKind::Sic0Ip | AnswerKind::Sic0Address | AnswerKind::Sic1Address => {
                    sic.get_or_create(&[("form", kind.as_str())]).clone()
                }
                AnswerKind::SicForbidden => sic_forbidden.clone(),
                AnswerKind::DiscoInfo
                | AnswerKind::DiscoItems
                | AnswerKind::Ping
                | AnswerKind::Bind
                | AnswerKind::Session
                | AnswerKind::Error => others.get_or_create(&[("kind", kind.as_str())]).clone(),
            })
            .collect();
        let stream_errors = counters(
            registry,
            "xmpp_edge_stream_errors",
            "Stream errors sent, by condition",
            StreamCondition::ALL.map(|c| [("condition", c.as_str())]),
        );
        let limits = counters(
            registry,
            "xmpp_edge_limit_triggers",
            "Limits that refused or closed a connection, by limit",
            Limit::ALL.iter().map(|l| [("limit", l.as_str())]),
        );
        let replaced = counter(
            registry,
            "xmpp_edge_sessions_replaced",
            "Sessions closed because another connection bound the same full JID",
        );
        let received_bytes = counter(
            registry,
            "xmpp_edge_received_bytes",
            "XMPP bytes read from clients (after TLS decryption)",
        );
        let sent_bytes = counter(
            registry,
            "xmpp_edge_sent_bytes",
            "XMPP bytes written to clients (before TLS encryption)",
        );
        let latency = Histogram::latency();
        registry.register(
            "xmpp_edge_request_duration_seconds",
            "From the read that completed an IQ request to its answer being written",
            latency.clone(),
        );
        Self {
            accepted,
            closed,
            tls,
            listeners: Mutex::new(Vec::new()),
            sessions,
            connections_limit,
            ready,
            sasl,
            proxy,
            stanzas,
            answers,
            stream_errors,
            limits,
            replaced,
            received_bytes,
            sent_bytes,
            latency,
        }
    }

    /// The counters of the listener of `kind` bound to `address`; sockets sharing an
    /// address (SO_REUSEPORT) share them.
    pub fn listener(&self, kind: ListenerKind, address: SocketAddr) -> Arc<ListenerStats> {
        let labels: ListenerLabels = vec![
            ("listener", kind.to_string()),
            ("address", address.to_string()),
        ];
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = listeners.iter().find(|l| l.labels == labels) {
            return Arc::clone(known);
        }
        let with = |extra: (&'static str, &'static str)| {
            let mut set = labels.clone();
            set.push((extra.0, extra.1.to_owned()));
            set
        };
        let stats = Arc::new(ListenerStats {
            accepted: self.accepted.get_or_create(&labels).clone(),
            closed: Ended::ALL
                .iter()
                .map(|e| {
                    self.closed
                        .get_or_create(&with(("reason", e.as_str())))
                        .clone()
                })
                .collect(),
            tls: TlsOutcome::ALL
                .iter()
                .map(|o| {
                    self.tls
                        .get_or_create(&with(("outcome", o.as_str())))
                        .clone()
                })
                .collect(),
            labels,
        });
        listeners.push(Arc::clone(&stats));
        stats
    }

    /// A connection passed admission; it starts in [`SessionState::PreTls`].
    pub fn session_opened(&self) {
        self.sessions[SessionState::PreTls.index()].inc();
    }

    /// A live connection moved on in its negotiation.
    pub fn session_moved(&self, from: SessionState, to: SessionState) {
        self.sessions[to.index()].inc();
        self.sessions[from.index()].dec();
    }

    /// A live connection in `state` ended.
    pub fn session_closed(&self, state: SessionState) {
        self.sessions[state.index()].dec();
    }

    /// Adds what a session reported after a call.
    pub fn record(&self, counts: &Counts) {
        for (kind, n) in counts.stanzas() {
            self.stanzas[kind.index()].inc_by(u64::from(n));
        }
        for (kind, n) in counts.answers() {
            self.answers[kind.index()].inc_by(u64::from(n));
        }
        for (mechanism, outcome, n) in counts.sasl() {
            self.sasl[sasl_slot(mechanism)][outcome.index()].inc_by(u64::from(n));
        }
    }

    /// The session sent a stream error with `condition` (from
    /// [`CloseReason::StreamError`]).
    pub fn stream_error(&self, condition: &str) {
        if let Some(condition) = StreamCondition::from_name(condition) {
            self.stream_errors[condition.index()].inc();
        }
    }

    /// A PROXY protocol header was read, rejected or timed out. `version` and `command`
    /// are [`ProxyVersion::Unknown`] and [`ProxyCommand::Unknown`] when the header was
    /// rejected before they were known.
    pub fn record_proxy(
        &self,
        version: ProxyVersion,
        command: ProxyCommand,
        outcome: ProxyOutcome,
    ) {
        self.proxy[version.index()][command.index()][outcome.index()].inc();
    }

    /// What [`Stats::record_proxy`] counted, for tests.
    pub fn proxy_headers(
        &self,
        version: ProxyVersion,
        command: ProxyCommand,
        outcome: ProxyOutcome,
    ) -> u64 {
        self.proxy[version.index()][command.index()][outcome.index()].get()
    }

    /// `answered` requests whose answers were fully written `elapsed` after the read that
    /// completed the first of them.
    pub fn answered(&self, elapsed: Duration, answered: u32) {
        self.latency.observe(elapsed, u64::from(answered));
    }

    pub fn received(&self, bytes: usize) {
        self.received_bytes.inc_by(bytes as u64);
    }

    pub fn sent(&self, bytes: usize) {
        self.sent_bytes.inc_by(bytes as u64);
    }

    /// A session was told another connection bound its full JID.
    pub fn replaced(&self) {
        self.replaced.inc();
    }

    pub fn limit(&self, limit: Limit) {
        self.limits[limit.index()].inc();
    }

    /// Exports the connection limit in force.
    pub fn set_connection_limit(&self, limit: u64) {
        self.connections_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Whether the node takes new clients: all listeners accepting, not draining.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get() == 1
    }

    /// A point-in-time summary, for tests and logs.
    pub fn snapshot(&self) -> Snapshot {
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let closed = |how: Ended| {
            listeners
                .iter()
                .map(|l| l.closed[how.index()].get())
                .sum::<u64>()
        };
        let limit = |limit: Limit| self.limits[limit.index()].get();
        Snapshot {
            connections_accepted: listeners.iter().map(|l| l.accepted.get()).sum(),
            connections_active: self
                .sessions
                .iter()
                .map(|g| u64::try_from(g.get()).unwrap_or(0))
                .sum(),
            tls_handshake_failures: listeners
                .iter()
                .map(|l| sum(&l.tls) - l.tls[TlsOutcome::Ok.index()].get())
                .sum(),
            authenticated: self
                .sasl
                .iter()
                .map(|by_outcome| by_outcome[SaslOutcome::Success.index()].get())
                .sum(),
            replaced: self.replaced.get(),
            closed_by_client: closed(Ended::Client),
            closed_by_stream_error: closed(Ended::StreamError) + closed(Ended::OutputOverflow),
            closed_by_io_error: closed(Ended::Io)
                + closed(Ended::TlsFailed)
                + closed(Ended::TlsTimeout),
            closed_by_force: closed(Ended::Forced),
            limit_max_connections: limit(Limit::MaxConnections),
            limit_max_connections_per_ip: limit(Limit::MaxConnectionsPerIp),
            limit_accept_resources: limit(Limit::AcceptResources),
            limit_tls_handshake_timeout: limit(Limit::TlsHandshakeTimeout),
            limit_negotiation_timeout: limit(Limit::NegotiationTimeout),
            limit_idle_timeout: limit(Limit::IdleTimeout),
            limit_stanza_policy: limit(Limit::StanzaPolicy),
            limit_output_overflow: limit(Limit::OutputOverflow),
            sic_answers: [
                AnswerKind::Sic0Ip,
                AnswerKind::Sic0Address,
                AnswerKind::Sic1Address,
            ]
            .map(|kind| self.answers[kind.index()].get())
            .iter()
            .sum(),
            requests_timed: self.latency.count(),
        }
    }
}

/// A point-in-time summary of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Accepted, including those refused at admission.
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
    /// SIC answers in all three forms.
    pub sic_answers: u64,
    /// Requests in the latency histogram.
    pub requests_timed: u64,
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
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn label_enums_index_their_all_lists() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(all: &[T], index: fn(T) -> usize) {
            for (i, value) in all.iter().enumerate() {
                assert_eq!(index(*value), i, "{value:?}");
            }
        }
        check(Limit::ALL, Limit::index);
        check(Ended::ALL, Ended::index);
        check(SessionState::ALL, SessionState::index);
        check(TlsOutcome::ALL, TlsOutcome::index);
        check(ProxyVersion::ALL, ProxyVersion::index);
        check(ProxyCommand::ALL, ProxyCommand::index);
        check(ProxyOutcome::ALL, ProxyOutcome::index);
    }

    #[test]
    fn counts_land_in_their_series() {
        let mut registry = Registry::default();
        let stats = Stats::register(&mut registry);
        let listener = stats.listener(ListenerKind::Starttls, "127.0.0.1:5222".parse().unwrap());
        listener.accepted();
        listener.accepted();
        listener.closed(Ended::Refused);
        listener.tls(TlsOutcome::AlertReceived);
        stats.session_opened();
        stats.session_moved(SessionState::PreTls, SessionState::PreAuth);
        stats.limit(Limit::MaxConnectionsPerIp);
        stats.record_proxy(ProxyVersion::V2, ProxyCommand::Local, ProxyOutcome::BadCrc);
        stats.stream_error("policy-violation");
        stats.stream_error("not-a-condition");
        stats.answered(Duration::from_micros(15), 2);
        let text = exposition(&registry);
        for line in [
            "xmpp_edge_connections_accepted_total{listener=\"starttls\",address=\"127.0.0.1:5222\"} 2",
            "xmpp_edge_connections_closed_total{listener=\"starttls\",address=\"127.0.0.1:5222\",reason=\"refused\"} 1",
            "xmpp_edge_tls_handshakes_total{listener=\"starttls\",address=\"127.0.0.1:5222\",outcome=\"alert_received\"} 1",
            "xmpp_edge_sessions{state=\"pre_auth\"} 1",
            "xmpp_edge_sessions{state=\"pre_tls\"} 0",
            "xmpp_edge_limit_triggers_total{limit=\"max_connections_per_ip\"} 1",
            "xmpp_edge_proxy_headers_total{version=\"v2\",command=\"local\",outcome=\"bad_crc\"} 1",
            "xmpp_edge_proxy_headers_total{version=\"unknown\",command=\"unknown\",outcome=\"timeout\"} 0",
            "xmpp_edge_stream_errors_total{condition=\"policy-violation\"} 1",
            "xmpp_edge_sasl_total{mechanism=\"none\",outcome=\"protocol_error\"} 0",
            "xmpp_edge_sic_answers_total{form=\"sic1_address\"} 0",
            "xmpp_edge_iq_answers_total{kind=\"disco_info\"} 0",
            "xmpp_edge_request_duration_seconds_count 2",
            "xmpp_edge_request_duration_seconds_bucket{le=\"0.00002\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // The same address gets the same handles; the snapshot counts them once.
        let again = stats.listener(ListenerKind::Starttls, "127.0.0.1:5222".parse().unwrap());
        assert!(Arc::ptr_eq(&listener, &again));
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.connections_accepted, 2);
        assert_eq!(snapshot.connections_active, 1);
        assert_eq!(snapshot.tls_handshake_failures, 1);
        assert_eq!(snapshot.limit_max_connections_per_ip, 1);
        assert_eq!(snapshot.requests_timed, 2);
    }

    #[test]
    fn session_counts_are_added() {
        let mut registry = Registry::default();
        let stats = Stats::register(&mut registry);
        stats.record(&session_counts());
        let text = exposition(&registry);
        for line in [
            "xmpp_edge_stanzas_received_total{kind=\"iq\"} 4",
            "xmpp_edge_sic_answers_total{form=\"sic0_ip\"} 1",
            "xmpp_edge_sic_answers_total{form=\"sic1_address\"} 1",
            "xmpp_edge_iq_answers_total{kind=\"ping\"} 1",
            "xmpp_edge_iq_answers_total{kind=\"bind\"} 1",
            "xmpp_edge_sasl_total{mechanism=\"PLAIN\",outcome=\"success\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(stats.snapshot().authenticated, 1);
        assert_eq!(stats.snapshot().sic_answers, 2);
    }

    /// Counts from a real session: PLAIN login, bind, two SIC forms and a ping.
    fn session_counts() -> Counts {
        #[derive(Debug)]
        struct Alice(session::sasl::ScramCredentials);
        impl session::Accounts for Alice {
            fn scram_credentials(
                &self,
                user: &str,
                _: &str,
                _: session::sasl::ScramHash,
            ) -> Option<session::sasl::ScramCredentials> {
                (user == "alice").then(|| self.0.clone())
            }
        }
        let hash = session::sasl::ScramHash::Sha256;
        let credentials = session::sasl::ScramCredentials::derive("pw", hash, b"salt", 16).unwrap();
        let address: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let now = std::time::Instant::now();
        let mut conn = session::Connection::new(
            Arc::new(session::Config::default()),
            Arc::new(Alice(credentials)),
            session::Addresses {
                client: address,
                peer: address,
                local: address,
            },
            session::ListenerKind::DirectTls,
            Some(session::TlsInfo {
                tls13: true,
                exporter: Some([1; 32]),
            }),
            now,
        );
        let header = "<stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
        let plain = session::sasl::encode_payload(b"\0alice\0pw");
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
        );
        for input in [header, &auth, header] {
            conn.receive(input.as_bytes(), now);
        }
        conn.receive(
            b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>\
              <iq type='get' id='s0'><ip xmlns='urn:xmpp:sic:0'/></iq>\
              <iq type='get' id='s1'><address xmlns='urn:xmpp:sic:1'/></iq>\
              <iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
            now,
        );
        conn.take_counts()
    }

    #[test]
    fn tls_errors_are_classified() {
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(TlsOutcome::of_error(&eof), TlsOutcome::Closed);
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        assert_eq!(TlsOutcome::of_error(&alert), TlsOutcome::AlertReceived);
        let garbage = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(TlsOutcome::of_error(&garbage), TlsOutcome::BadMessage);
        assert_eq!(
            TlsOutcome::of_error(&io::Error::other("weird")),
            TlsOutcome::Other
        );
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
