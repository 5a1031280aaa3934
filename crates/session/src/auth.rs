//! SASL negotiation on the stream (RFC 6120 section 6): `<auth>`, `<response>` and
//! `<abort>` in, `<challenge>`, `<success>` and `<failure>` out, with the failed-attempt
//! limit. The mechanisms themselves are in [`crate::sasl`].

use std::borrow::Cow;

use crate::counts::SaslOutcome;
use crate::error::{StreamCondition, StreamError};
use crate::features::Transport;
use crate::machine::{Auth, Flow, Machine, Phase, served_domain};
use crate::sasl::{self, Failure, Mechanism, ServerContext, ServerExchange, Step};
use crate::{Accounts, Config, Event, ns};

impl Machine {
    /// `<auth mechanism='..'>`: starts an exchange (replacing any unfinished one).
    pub(crate) fn on_auth(&mut self, mechanism: Option<Mechanism>, end: usize) -> Flow {
        if matches!(self.auth, Auth::Done) {
            return self.already_authenticated();
        }
        self.sasl_mechanism = mechanism;
        if !self.transport.sasl_offered(&self.config) {
            return self.sasl_failure(Failure::EncryptionRequired);
        }
        let mechanism = match mechanism {
            Some(m) if self.transport.offers(&self.config, m) => m,
            Some(Mechanism::Plain) => return self.sasl_failure(Failure::EncryptionRequired),
            _ => return self.sasl_failure(Failure::InvalidMechanism),
        };
        // No text means no initial response; `=` is an empty one (RFC 6120 6.4.2).
        let initial = if self.element.text.trim_ascii().is_empty() {
            None
        } else {
            match decode(&self.element.text) {
                Ok(payload) => Some(payload),
                Err(failure) => return self.sasl_failure(failure),
            }
        };
        let ctx = context(&*self.accounts, &self.config, self.domain, &self.transport);
        let (exchange, step) = ServerExchange::start(mechanism, initial.as_deref(), &ctx);
        self.auth = Auth::Exchange(Box::new(exchange));
        self.sasl_step(step, end)
    }

    /// `<response>`: the next step of the exchange in progress.
    pub(crate) fn on_response(&mut self, end: usize) -> Flow {
        if matches!(self.auth, Auth::Done) {
            return self.already_authenticated();
        }
        let response = if self.element.text.trim_ascii().is_empty() {
            Ok(Vec::new())
        } else {
            decode(&self.element.text)
        };
        let ctx = context(&*self.accounts, &self.config, self.domain, &self.transport);
        let step = match (&mut self.auth, response) {
            (Auth::None | Auth::Done, _) => Step::Failure(Failure::MalformedRequest),
            (Auth::Exchange(_), Err(failure)) => Step::Failure(failure),
            (Auth::Exchange(exchange), Ok(response)) => exchange.step(&response, &ctx),
        };
        self.sasl_step(step, end)
    }

    /// `<abort/>`: the exchange ends and counts as a failed attempt.
    pub(crate) fn on_abort(&mut self) -> Flow {
        if matches!(self.auth, Auth::Done) {
            return self.already_authenticated();
        }
        self.sasl_failure(Failure::Aborted)
    }

    fn sasl_step(&mut self, step: Step, end: usize) -> Flow {
        match step {
            // An empty challenge (the mechanism's "go ahead" when `<auth>` carried no
            // initial response) is an empty element.
            Step::Challenge(challenge) if challenge.is_empty() => {
                self.out
                    .raw("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
                Flow::Continue
            }
            Step::Challenge(challenge) => {
                self.out
                    .raw("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                self.out.raw(&sasl::encode_payload(&challenge));
                self.out.raw("</challenge>");
                Flow::Continue
            }
            Step::Success {
                username,
                additional_data,
            } => {
                self.out.raw("<success");
                self.out.attr("xmlns", ns::SASL);
                if additional_data.is_empty() {
                    self.out.raw("/>");
                } else {
                    self.out.raw(">");
                    self.out.raw(&sasl::encode_payload(&additional_data));
                    self.out.raw("</success>");
                }
                self.sasl_ended(SaslOutcome::Success);
                self.authenticated(&username);
                Flow::Restart { end }
            }
            Step::Failure(failure) => self.sasl_failure(failure),
        }
    }

    /// Records the identity and restarts the stream (RFC 6120 6.4.6).
    fn authenticated(&mut self, username: &str) {
        let domain = served_domain(&self.config, self.domain).unwrap_or_default();
        self.jid.clear();
        self.jid.push_str(username);
        self.local_len = username.len();
        self.jid.push('@');
        self.jid.push_str(domain);
        self.auth = Auth::Done;
        self.phase = Phase::AwaitHeader;
        self.events.push_back(Event::Authenticated {
            bare_jid: self.jid.clone(),
        });
    }

    /// `<failure>`, counted against [`Config::max_auth_failures`]; at the limit the stream
    /// is closed, so credentials cannot be guessed on one connection without end.
    fn sasl_failure(&mut self, failure: Failure) -> Flow {
        self.sasl_ended(SaslOutcome::of(failure));
        self.auth = Auth::None;
        self.out
            .raw("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><");
        self.out.raw(failure.as_str());
        self.out.raw("/></failure>");
        self.auth_failures = self.auth_failures.saturating_add(1);
        if self.auth_failures >= self.config.max_auth_failures {
            return self.stop(StreamError::new(
                StreamCondition::PolicyViolation,
                "too many failed authentication attempts",
            ));
        }
        Flow::Continue
    }

    /// Counts the attempt's outcome under the mechanism its `<auth>` named.
    fn sasl_ended(&mut self, outcome: SaslOutcome) {
        self.counts.sasl_ended(self.sasl_mechanism.take(), outcome);
    }

    fn already_authenticated(&mut self) -> Flow {
        self.stop(StreamError::new(
            StreamCondition::PolicyViolation,
            "already authenticated",
        ))
    }
}

/// The unescaped, trimmed, base64-decoded payload of `<auth>`/`<response>` text.
fn decode(raw: &str) -> Result<Vec<u8>, Failure> {
    let text: Cow<'_, str> = stanza::unescape(raw).map_err(|_| Failure::IncorrectEncoding)?;
    sasl::decode_payload(text.trim_ascii().as_bytes())
}

fn context<'a>(
    accounts: &'a dyn Accounts,
    config: &'a Config,
    domain: Option<usize>,
    transport: &'a Transport,
) -> ServerContext<'a> {
    ServerContext {
        accounts,
        domain: served_domain(config, domain).unwrap_or_default(),
        tls_exporter: transport.exporter(),
        plus_advertised: transport.offers(config, Mechanism::ScramSha256Plus),
    }
}
