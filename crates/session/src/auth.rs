//! SASL negotiation on the stream (RFC 6120 section 6): `<auth>`, `<response>` and
//! `<abort>` in, `<challenge>`, `<success>` and `<failure>` out, with the failed-attempt
//! limit. The state lives in [`Sasl`]; the mechanisms themselves are in [`crate::sasl`].

use std::borrow::Cow;

use crate::counts::{Counts, SaslOutcome};
use crate::features::Transport;
use crate::sasl::{
    self, Failure, Mechanism, PasswordCheck, PasswordVerdict, ServerContext, ServerExchange, Step,
};
use crate::writer::Output;
use crate::{Accounts, Config, ns};

/// The stream's SASL state before authentication.
#[derive(Debug, Default)]
pub(crate) struct Sasl {
    /// An exchange awaiting the client's next `<response>`.
    exchange: Option<Box<ServerExchange>>,
    /// Failed attempts so far, against [`Config::max_auth_failures`].
    failures: u32,
    /// The mechanism the client's last `<auth>` named, until its outcome is counted.
    mechanism: Option<Mechanism>,
    /// A password check is out with the I/O layer; input waits for its verdict.
    checking: bool,
}

/// What the exchange needs to know about the connection.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) accounts: &'a dyn Accounts,
    /// The served domain the stream names.
    pub(crate) domain: Option<&'a str>,
    pub(crate) transport: &'a Transport,
}

/// Where SASL writes its answers and counts its outcomes.
#[derive(Debug)]
pub(crate) struct Answer<'a> {
    pub(crate) out: &'a mut Output,
    pub(crate) counts: &'a mut Counts,
}

/// What a SASL element led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A challenge or a failure was written; negotiation goes on.
    Continue,
    /// `<success>` was written: `username` is authenticated.
    Success { username: String },
    /// The failure just written was the last one allowed: the stream must end.
    TooManyFailures,
    /// The password must be checked off the event loop; its verdict comes back through
    /// [`Sasl::password_checked`].
    CheckPassword(PasswordCheck),
}

impl Sasl {
    /// `<auth mechanism='..'>`: starts an exchange (replacing any unfinished one).
    pub(crate) fn auth(
        &mut self,
        mechanism: Option<Mechanism>,
        text: &str,
        ctx: &Ctx<'_>,
        answer: Answer<'_>,
    ) -> Outcome {
        self.mechanism = mechanism;
        if !ctx.transport.sasl_offered(ctx.config) {
            return self.failure(Failure::EncryptionRequired, ctx, answer);
        }
        let mechanism = match mechanism {
            Some(m) if ctx.transport.offers(ctx.config, m) => m,
            Some(Mechanism::Plain) => {
                return self.failure(Failure::EncryptionRequired, ctx, answer);
            }
            _ => return self.failure(Failure::InvalidMechanism, ctx, answer),
        };
        // No text means no initial response; `=` is an empty one (RFC 6120 6.4.2).
        let initial = if text.trim_ascii().is_empty() {
            None
        } else {
            match decode(text) {
                Ok(payload) => Some(payload),
                Err(failure) => return self.failure(failure, ctx, answer),
            }
        };
        let (exchange, step) =
            ServerExchange::start(mechanism, initial.as_deref(), &server_context(ctx));
        self.exchange = Some(Box::new(exchange));
        self.step(step, ctx, answer)
    }

    /// `<response>`: the next step of the exchange in progress.
    pub(crate) fn response(&mut self, text: &str, ctx: &Ctx<'_>, answer: Answer<'_>) -> Outcome {
        let response = if text.trim_ascii().is_empty() {
            Ok(Vec::new())
        } else {
            decode(text)
        };
        let step = match (&mut self.exchange, response) {
            (None, _) => Step::Failure(Failure::MalformedRequest),
            (Some(_), Err(failure)) => Step::Failure(failure),
            (Some(exchange), Ok(response)) => exchange.step(&response, &server_context(ctx)),
        };
        self.step(step, ctx, answer)
    }

    /// The verdict of the password check [`Outcome::CheckPassword`] handed out.
    pub(crate) fn password_checked(
        &mut self,
        verdict: PasswordVerdict,
        ctx: &Ctx<'_>,
        answer: Answer<'_>,
    ) -> Outcome {
        self.checking = false;
        self.step(verdict.into_step(), ctx, answer)
    }

    /// A password check is out: input waits.
    pub(crate) fn checking(&self) -> bool {
        self.checking
    }

    /// `<abort/>`: the exchange ends and counts as a failed attempt.
    pub(crate) fn abort(&mut self, ctx: &Ctx<'_>, answer: Answer<'_>) -> Outcome {
        self.failure(Failure::Aborted, ctx, answer)
    }

    /// Heap bytes held by an exchange in progress.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.exchange
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<ServerExchange>())
    }

    fn step(&mut self, step: Step, ctx: &Ctx<'_>, answer: Answer<'_>) -> Outcome {
        let out = answer.out;
        match step {
            // An empty challenge (the mechanism's "go ahead" when `<auth>` carried no
            // initial response) is an empty element.
            Step::Challenge(challenge) if challenge.is_empty() => {
                out.raw("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
                Outcome::Continue
            }
            Step::Challenge(challenge) => {
                out.raw("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                out.raw(&sasl::encode_payload(&challenge));
                out.raw("</challenge>");
                Outcome::Continue
            }
            Step::Success {
                username,
                additional_data,
            } => {
                out.raw("<success");
                out.attr("xmlns", ns::SASL);
                if additional_data.is_empty() {
                    out.raw("/>");
                } else {
                    out.raw(">");
                    out.raw(&sasl::encode_payload(&additional_data));
                    out.raw("</success>");
                }
                answer
                    .counts
                    .sasl_ended(self.mechanism.take(), SaslOutcome::Success);
                self.exchange = None;
                Outcome::Success { username }
            }
            Step::Failure(failure) => self.failure(failure, ctx, Answer { out, ..answer }),
            Step::CheckPassword(check) => {
                self.checking = true;
                Outcome::CheckPassword(check)
            }
        }
    }

    /// `<failure>`, counted against [`Config::max_auth_failures`]; at the limit the stream
    /// must end, so credentials cannot be guessed on one connection without end.
    fn failure(&mut self, failure: Failure, ctx: &Ctx<'_>, answer: Answer<'_>) -> Outcome {
        answer
            .counts
            .sasl_ended(self.mechanism.take(), outcome_of(failure));
        self.exchange = None;
        let out = answer.out;
        out.raw("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><");
        out.raw(failure.as_str());
        out.raw("/></failure>");
        self.failures = self.failures.saturating_add(1);
        if self.failures >= ctx.config.max_auth_failures {
            Outcome::TooManyFailures
        } else {
            Outcome::Continue
        }
    }
}

/// How a failed attempt is counted.
fn outcome_of(failure: Failure) -> SaslOutcome {
    match failure {
        Failure::Aborted => SaslOutcome::Aborted,
        Failure::NotAuthorized
        | Failure::AccountDisabled
        | Failure::CredentialsExpired
        | Failure::InvalidAuthzid
        | Failure::TemporaryAuthFailure => SaslOutcome::NotAuthorized,
        Failure::EncryptionRequired
        | Failure::IncorrectEncoding
        | Failure::InvalidMechanism
        | Failure::MalformedRequest
        | Failure::MechanismTooWeak => SaslOutcome::ProtocolError,
    }
}

/// The unescaped, trimmed, base64-decoded payload of `<auth>`/`<response>` text.
fn decode(raw: &str) -> Result<Vec<u8>, Failure> {
    let text: Cow<'_, str> = stanza::unescape(raw).map_err(|_| Failure::IncorrectEncoding)?;
    sasl::decode_payload(text.trim_ascii().as_bytes())
}

fn server_context<'a>(ctx: &Ctx<'a>) -> ServerContext<'a> {
    ServerContext {
        accounts: ctx.accounts,
        domain: ctx.domain.unwrap_or_default(),
        tls_exporter: ctx.transport.exporter(),
        plus_advertised: ctx.transport.offers(ctx.config, Mechanism::ScramSha256Plus),
        entropy: &*ctx.config.entropy,
    }
}
