//! The protocol state behind [`crate::Connection`]: it reacts to one token at a time,
//! writes replies into its output buffer and queues events.
//!
//! State is grouped by concern, each group in its own module with the rules that keep it
//! consistent: [`Stream`] (phase, domain, transport), [`Identity`] (the JID and its parts),
//! [`Sasl`] (the exchange and its failures), [`Timers`], the rate [`Budget`], the [`Element`]
//! being read, and what goes out (output, events, counts). The IQ, bind and message
//! handlers are further `impl Machine` blocks in their own modules.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use stanza::Token;

use crate::auth::{self, Sasl};
use crate::budget::Budget;
use crate::counts::Counts;
use crate::element::{Element, Kind, Payload};
use crate::event::{Cause, CloseReason, Event, Violation};
use crate::features::{self, Transport};
use crate::identity::Identity;
use crate::link::{Addresses, TlsInfo};
use crate::stream::{self, Phase, Stream};
use crate::timers::Timers;
use crate::writer::Output;
use crate::{Accounts, Config, sasl};

/// What the token loop in [`crate::Connection`] does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// SASL succeeded: the stream restarts right after the element that ended at `end`
    /// (relative to the buffer given with the token); the tokenizer starts over there.
    Restart {
        end: usize,
    },
    /// Stop reading: the connection closed or awaits the TLS handshake.
    Stop,
}

#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) config: Arc<Config>,
    pub(crate) accounts: Arc<dyn Accounts>,
    pub(crate) addresses: Addresses,
    pub(crate) stream: Stream,
    pub(crate) identity: Identity,
    pub(crate) sasl: Sasl,
    pub(crate) timers: Timers,
    pub(crate) budget: Budget,
    /// The top-level element being read.
    pub(crate) element: Element,
    pub(crate) out: Output,
    pub(crate) events: VecDeque<Event>,
    /// What happened since the I/O layer last took the counts.
    pub(crate) counts: Counts,
}

impl Machine {
    pub(crate) fn new(
        config: Arc<Config>,
        accounts: Arc<dyn Accounts>,
        addresses: Addresses,
        transport: Transport,
        now: Instant,
    ) -> Self {
        Self {
            timers: Timers::new(&config, now),
            budget: Budget::new(&config, now),
            config,
            accounts,
            addresses,
            stream: Stream::new(transport),
            identity: Identity::default(),
            sasl: Sasl::default(),
            element: Element::new(),
            out: Output::default(),
            events: VecDeque::new(),
            counts: Counts::default(),
        }
    }

    /// One token from the tokenizer; `buffered` is the length of the buffer it came from,
    /// so a stanza end can tell whether more bytes follow it.
    pub(crate) fn on_token(&mut self, token: Token<'_>, buffered: usize, now: Instant) -> Flow {
        let flow = match token {
            Token::StreamOpen(tag) => match self.stream.accept_header(&tag, &self.config) {
                Ok(()) => {
                    let domain = self.stream.domain(&self.config);
                    let id = self.config.entropy.next_u64();
                    stream::write_header(&mut self.out, id, domain, stream::client_from(&tag));
                    features::write_features(
                        &mut self.out,
                        &self.config,
                        &self.stream.transport,
                        self.identity.is_authenticated(),
                    );
                    Flow::Continue
                }
                Err(error) => self.stop(Cause::Header(error)),
            },
            Token::Start(tag) => {
                self.element.start(&tag);
                Flow::Continue
            }
            Token::Text(text) => {
                self.element.text(text.raw);
                Flow::Continue
            }
            Token::End(tag) => {
                self.element.end(&tag);
                Flow::Continue
            }
            Token::StanzaEnd(span) => self.on_element(span.end, buffered > span.end, now),
            Token::NeedMore | Token::Whitespace => Flow::Continue,
            Token::StreamClose => {
                self.out.raw("</stream:stream>");
                self.close(CloseReason::ClientClosed);
                Flow::Stop
            }
        };
        if flow != Flow::Stop && self.overflowed() {
            return Flow::Stop;
        }
        flow
    }

    /// A complete top-level element; `more` says whether bytes follow it in the buffer.
    fn on_element(&mut self, end: usize, more: bool, now: Instant) -> Flow {
        self.counts.stanza(self.element.kind.counted());
        self.spend(|budget, config| budget.stanza(config, now));
        let authenticated = self.identity.is_authenticated();
        let bound = self.identity.is_bound();
        match self.element.kind {
            Kind::StartTls => self.on_starttls(more),
            Kind::Auth(_) | Kind::Response | Kind::Abort if authenticated => {
                self.stop(Cause::Violation(Violation::AlreadyAuthenticated))
            }
            Kind::Auth(_) | Kind::Response | Kind::Abort => self.on_sasl(end),
            Kind::Iq if authenticated && (bound || self.element.payload == Payload::Bind) => {
                self.on_iq()
            }
            Kind::Message if bound => self.on_message(),
            Kind::Presence if bound => Flow::Continue,
            Kind::Iq | Kind::Message | Kind::Presence if authenticated => {
                self.stop(Cause::NotBound)
            }
            Kind::Iq | Kind::Message | Kind::Presence => self.stop(Cause::NotAuthenticated),
            Kind::Unsupported => self.stop(Cause::UnsupportedStanza),
        }
    }

    /// Charges a budget, counting the pause it may start.
    pub(crate) fn spend(&mut self, charge: impl FnOnce(&mut Budget, &Config)) {
        let was_paused = self.budget.paused();
        charge(&mut self.budget, &self.config);
        if !was_paused && self.budget.paused() {
            self.counts.throttle_started();
        }
    }

    /// `<starttls/>`: proceed unless TLS is not on offer, or the client already sent more
    /// bytes. Those would be plaintext injected ahead of the TLS layer (the STARTTLS
    /// command injection attack class), so they end the connection instead.
    fn on_starttls(&mut self, more: bool) -> Flow {
        if !self.stream.transport.starttls_offered(&self.config) {
            return self.stop(Cause::Violation(Violation::StartTlsNotOffered));
        }
        if more {
            return self.stop(Cause::Violation(Violation::DataAfterStartTls));
        }
        self.out
            .raw("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        self.stream.phase = Phase::TlsPending;
        self.events.push_back(Event::StartTls);
        Flow::Stop
    }

    /// `<auth>`, `<response>` or `<abort/>` before authentication: the next SASL step.
    fn on_sasl(&mut self, end: usize) -> Flow {
        let kind = self.element.kind;
        let outcome = self.with_sasl(|sasl, text, ctx, answer| match kind {
            Kind::Auth(mechanism) => sasl.auth(mechanism, text, ctx, answer),
            Kind::Response => sasl.response(text, ctx, answer),
            _ => sasl.abort(ctx, answer),
        });
        self.sasl_outcome(outcome, end)
    }

    /// The verdict of the password check an [`Event::CheckPassword`] asked for; the held
    /// input restarts at offset 0 on success.
    pub(crate) fn password_checked(&mut self, verdict: sasl::PasswordVerdict) -> Flow {
        if !self.sasl.checking() || self.stream.phase == Phase::Closed {
            return Flow::Continue;
        }
        let outcome =
            self.with_sasl(|sasl, _, ctx, answer| sasl.password_checked(verdict, ctx, answer));
        self.sasl_outcome(outcome, 0)
    }

    /// Calls into the SASL state with what it may see of the connection: the element's
    /// text, the context, and where answers and counts go.
    fn with_sasl(
        &mut self,
        call: impl FnOnce(&mut Sasl, &str, &auth::Ctx<'_>, auth::Answer<'_>) -> auth::Outcome,
    ) -> auth::Outcome {
        let ctx = auth::Ctx {
            config: &self.config,
            accounts: &*self.accounts,
            domain: self.stream.domain(&self.config),
            transport: &self.stream.transport,
        };
        let answer = auth::Answer {
            out: &mut self.out,
            counts: &mut self.counts,
        };
        call(&mut self.sasl, &self.element.text, &ctx, answer)
    }

    /// Input waits: for the rate budgets, or for a password check.
    pub(crate) fn holding(&self) -> bool {
        self.budget.paused() || self.sasl.checking()
    }

    fn sasl_outcome(&mut self, outcome: auth::Outcome, end: usize) -> Flow {
        match outcome {
            auth::Outcome::Continue => Flow::Continue,
            auth::Outcome::CheckPassword(check) => {
                self.events.push_back(Event::CheckPassword(Box::new(check)));
                Flow::Continue
            }
            auth::Outcome::Success { username } => {
                // RFC 6120 6.4.6: the stream restarts, on the same domain.
                let domain = self.stream.domain(&self.config).unwrap_or_default();
                self.identity.authenticate(&username, domain);
                self.stream.phase = Phase::AwaitHeader;
                self.events.push_back(Event::Authenticated {
                    bare_jid: self.identity.bare().unwrap_or_default().to_owned(),
                });
                Flow::Restart { end }
            }
            auth::Outcome::TooManyFailures => self.stop(Cause::AuthFailures),
        }
    }

    /// The TLS handshake after `<proceed/>` completed; `false` if none was pending.
    pub(crate) fn tls_established(&mut self, info: TlsInfo) -> bool {
        if self.stream.phase != Phase::TlsPending {
            return false;
        }
        self.stream.transport.tls = Some(info);
        self.stream.phase = Phase::AwaitHeader;
        true
    }

    /// Heap bytes held in buffers and per-stream state.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.out.capacity()
            + self.element.heap_bytes()
            + self.identity.heap_bytes()
            + self.sasl.heap_bytes()
            + self.events.capacity() * std::mem::size_of::<Event>()
    }

    /// Sends a stream error for `cause`, closes the stream and asks the I/O layer to close.
    pub(crate) fn fail(&mut self, cause: Cause) {
        let condition = cause.condition();
        match self.stream.phase {
            Phase::Closed => return,
            // Plaintext must not be written into a TLS handshake: just close.
            Phase::TlsPending => {}
            // RFC 6120 4.9.1.1: a stream error needs an open stream, so answer the
            // header first.
            Phase::AwaitHeader => {
                let from = self
                    .stream
                    .domain(&self.config)
                    .or_else(|| self.config.domains.first().map(String::as_str));
                let id = self.config.entropy.next_u64();
                stream::write_header(&mut self.out, id, from, None);
                self.out.stream_error(condition, &cause.to_string());
            }
            Phase::Open => self.out.stream_error(condition, &cause.to_string()),
        }
        self.close(CloseReason::StreamError(cause));
    }

    /// [`Machine::fail`], for handlers that then stop reading.
    pub(crate) fn stop(&mut self, cause: Cause) -> Flow {
        self.fail(cause);
        Flow::Stop
    }

    /// The client closed its side. Pending output stays: after a half-close the client
    /// may still read it, and the I/O layer drops it anyway if the socket failed.
    pub(crate) fn peer_closed(&mut self) {
        if self.stream.phase != Phase::Closed {
            self.close(CloseReason::ClientClosed);
        }
    }

    /// Ends the connection: queues the close request and frees per-stanza state. If the
    /// client is not reading, the unsent output is dropped and the reason says so.
    fn close(&mut self, reason: CloseReason) {
        let reason = if self.out.unsent() > self.config.max_unsent_output {
            self.out.discard();
            CloseReason::OutputOverflow
        } else {
            reason
        };
        self.stream.phase = Phase::Closed;
        self.sasl = Sasl::default();
        self.element = Element::new();
        self.events.push_back(Event::Close(reason));
    }

    /// Closes with [`CloseReason::OutputOverflow`] when the client does not read.
    pub(crate) fn overflowed(&mut self) -> bool {
        if self.stream.phase != Phase::Closed && self.out.unsent() > self.config.max_unsent_output {
            self.close(CloseReason::OutputOverflow);
            return true;
        }
        false
    }
}
