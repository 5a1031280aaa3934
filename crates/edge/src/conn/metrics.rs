//! What the sessions report, counted as the connection tasks drive them: stanzas, SASL
//! attempts, IQ answers and SIC forms, stream errors, bytes, and the request latency.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use session::sasl::Mechanism;
use session::{AnswerKind, Counts, SaslOutcome, StanzaKind, StreamCondition};

use crate::histogram::Histogram;
use crate::metrics::{self, Labels};

/// The session metrics, shared by every connection task.
#[derive(Debug)]
pub struct SessionMetrics {
    /// By [`sasl_slot`], then [`SaslOutcome::index`].
    sasl: Vec<Vec<Counter>>,
    stanzas: Vec<Counter>,
    /// By [`AnswerKind::index`]; SIC forms, forbidden and the rest come from three
    /// families.
    answers: Vec<Counter>,
    stream_errors: Vec<Counter>,
    received_bytes: Counter,
    sent_bytes: Counter,
    latency: Histogram,
    throttled: Counter,
    throttled_seconds: Counter<f64, AtomicU64>,
    password_checks: Counter,
    auth_delays: Counter,
    auth_delay_seconds: Counter<f64, AtomicU64>,
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

impl SessionMetrics {
    /// Registers every family in `registry` and resolves all label sets.
    pub fn register(registry: &mut Registry) -> Self {
        let sasl_outcomes = |mechanism| {
            SaslOutcome::ALL.into_iter().map(move |outcome| {
                [
                    ("mechanism", mechanism_label(mechanism)),
                    ("outcome", outcome.as_str()),
                ]
            })
        };
        let flat = metrics::counters(
            registry,
            "xmpp_edge_sasl",
            "SASL attempts, by mechanism and outcome",
            sasl_mechanisms().flat_map(sasl_outcomes),
        );
        let sasl = flat
            .chunks(SaslOutcome::ALL.len())
            .map(<[Counter]>::to_vec)
            .collect();
        let stanzas = metrics::counters(
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
        let sic_forbidden = metrics::counter(
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
        let stream_errors = metrics::counters(
            registry,
            "xmpp_edge_stream_errors",
            "Stream errors sent, by condition",
            StreamCondition::ALL.map(|c| [("condition", c.as_str())]),
        );
        let received_bytes = metrics::counter(
            registry,
            "xmpp_edge_received_bytes",
            "XMPP bytes read from clients (after TLS decryption)",
        );
        let sent_bytes = metrics::counter(
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
        let throttled = metrics::counter(
            registry,
            "xmpp_edge_throttled",
            "Times a session's input was paused because its stanza or byte budget was spent",
        );
        let throttled_seconds = metrics::seconds_counter(
            registry,
            "xmpp_edge_throttled_seconds",
            "Time sessions spent with their input paused by the rate budgets",
        );
        let password_checks = metrics::counter(
            registry,
            "xmpp_edge_password_checks",
            "PLAIN password checks (PBKDF2) run on the bounded blocking pool",
        );
        let auth_delays = metrics::counter(
            registry,
            "xmpp_edge_auth_failure_delays",
            "Failed SASL attempts whose answer was delayed (per-address failure budget spent)",
        );
        let auth_delay_seconds = metrics::seconds_counter(
            registry,
            "xmpp_edge_auth_failure_delay_seconds",
            "Time failed SASL attempts were held before their failure was answered",
        );
        Self {
            sasl,
            stanzas,
            answers,
            stream_errors,
            received_bytes,
            sent_bytes,
            latency,
            throttled,
            throttled_seconds,
            password_checks,
            auth_delays,
            auth_delay_seconds,
        }
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
        if counts.throttled() > 0 {
            self.throttled.inc_by(u64::from(counts.throttled()));
        }
        let paused = counts.throttled_for();
        if !paused.is_zero() {
            self.throttled_seconds.inc_by(paused.as_secs_f64());
        }
    }

    /// A PLAIN password check was handed to the pool.
    pub fn password_checked(&self) {
        self.password_checks.inc();
    }

    /// A failed attempt's answer is held for `delay`.
    pub fn auth_delayed(&self, delay: Duration) {
        self.auth_delays.inc();
        self.auth_delay_seconds.inc_by(delay.as_secs_f64());
    }

    /// The session sent a stream error with `condition`.
    pub fn stream_error(&self, condition: StreamCondition) {
        self.stream_errors[condition.index()].inc();
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
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;
    use crate::scrape::Scrape;

    #[test]
    fn session_counts_are_added() {
        let mut registry = Registry::default();
        let metrics = SessionMetrics::register(&mut registry);
        metrics.record(&session_counts());
        metrics.stream_error(StreamCondition::PolicyViolation);
        metrics.answered(Duration::from_micros(15), 2);
        let scrape = Scrape::of(&registry);
        for (name, labels, value) in [
            ("xmpp_edge_stanzas_received_total", [("kind", "iq")], 4),
            ("xmpp_edge_sic_answers_total", [("form", "sic0_ip")], 1),
            ("xmpp_edge_sic_answers_total", [("form", "sic1_address")], 1),
            ("xmpp_edge_iq_answers_total", [("kind", "ping")], 1),
            ("xmpp_edge_iq_answers_total", [("kind", "bind")], 1),
            ("xmpp_edge_iq_answers_total", [("kind", "disco_info")], 0),
            (
                "xmpp_edge_stream_errors_total",
                [("condition", "policy-violation")],
                1,
            ),
            (
                "xmpp_edge_request_duration_seconds_bucket",
                [("le", "0.00002")],
                2,
            ),
        ] {
            assert_eq!(
                scrape.get(name, &labels),
                Some(value),
                "{name}{labels:?} in\n{}",
                scrape.text()
            );
        }
        let sasl = |mechanism, outcome| {
            scrape.get(
                "xmpp_edge_sasl_total",
                &[("mechanism", mechanism), ("outcome", outcome)],
            )
        };
        assert_eq!(sasl("PLAIN", "success"), Some(1));
        assert_eq!(sasl("none", "protocol_error"), Some(0));
        assert_eq!(
            scrape.sum("xmpp_edge_sasl_total", &[("outcome", "success")]),
            1
        );
        assert_eq!(scrape.sum("xmpp_edge_sic_answers_total", &[]), 2);
        assert_eq!(
            scrape.get("xmpp_edge_request_duration_seconds_count", &[]),
            Some(2)
        );
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
            // PLAIN's check is the I/O layer's to run.
            while let Some(event) = conn.poll_event() {
                if let session::Event::CheckPassword(check) = event {
                    conn.password_checked(check.run(), now);
                }
            }
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
}
